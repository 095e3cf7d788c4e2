/**
 * The RESP command table: which commands are safe to re-send, which block, set session state, pin
 * the session or stop the pairing of replies with requests, and which need their arguments
 * looked at; and the small helpers that read a command's name and arguments.
 */

/**
 * Reads and idempotent writes: sending one twice leaves the data as sending it once would (the
 * second reply may differ: DEL answers 0 the second time). `CLIENT x` entries are subcommands.
 * ZADD with the INCR option is the exception the framer checks for.
 */
// prettier-ignore
export const SAFE_COMMANDS: ReadonlySet<string> = new Set([
  // strings and keys
  'GET', 'MGET', 'EXISTS', 'TTL', 'PTTL', 'EXPIRETIME', 'PEXPIRETIME', 'TYPE', 'STRLEN', 'GETRANGE',
  'SUBSTR', 'GETBIT', 'BITCOUNT', 'BITPOS', 'LCS', 'KEYS', 'SCAN', 'RANDOMKEY', 'DBSIZE', 'DUMP',
  'TOUCH', 'OBJECT', 'MEMORY',
  // hashes, lists, sets, sorted sets
  'HGET', 'HMGET', 'HGETALL', 'HKEYS', 'HVALS', 'HLEN', 'HEXISTS', 'HSTRLEN', 'HRANDFIELD', 'HSCAN',
  'LRANGE', 'LLEN', 'LINDEX', 'LPOS',
  'SMEMBERS', 'SISMEMBER', 'SMISMEMBER', 'SCARD', 'SRANDMEMBER', 'SINTER', 'SINTERCARD', 'SUNION',
  'SDIFF', 'SSCAN',
  'ZRANGE', 'ZRANGEBYSCORE', 'ZRANGEBYLEX', 'ZREVRANGE', 'ZREVRANGEBYSCORE', 'ZREVRANGEBYLEX', 'ZSCORE',
  'ZMSCORE', 'ZCARD', 'ZCOUNT', 'ZLEXCOUNT', 'ZRANK', 'ZREVRANK', 'ZRANDMEMBER', 'ZINTER', 'ZUNION',
  'ZDIFF', 'ZSCAN',
  // streams, hyperloglog, geo
  'XRANGE', 'XREVRANGE', 'XLEN', 'XREAD', 'XINFO', 'XPENDING', 'PFCOUNT',
  'GEOPOS', 'GEODIST', 'GEOHASH', 'GEOSEARCH', 'GEORADIUS_RO', 'GEORADIUSBYMEMBER_RO',
  // server and connection
  'PING', 'ECHO', 'INFO', 'TIME', 'LASTSAVE', 'ROLE', 'COMMAND',
  'AUTH', 'HELLO', 'SELECT', 'READONLY', 'READWRITE', 'RESET',
  'CLIENT GETNAME', 'CLIENT ID', 'CLIENT INFO', 'CLIENT SETNAME',
  // idempotent writes: the same value again
  'SET', 'MSET', 'SETEX', 'PSETEX', 'SETRANGE', 'SETBIT', 'HSET', 'HMSET', 'HDEL', 'LSET', 'DEL', 'UNLINK',
  'EXPIRE', 'PEXPIRE', 'EXPIREAT', 'PEXPIREAT', 'PERSIST', 'SADD', 'SREM', 'ZADD', 'ZREM', 'PFADD',
])

// Request flags, kept with each queued request.
export const F_SAFE = 1
export const F_BLOCKING = 2
/** Sets session state: recorded for the prologue once answered without an error. */
export const F_STATE = 4
/** Pins the session. */
export const F_PIN = 8
/** After this one replies no longer pair with requests: pass everything through. */
export const F_PASS = 16
/** The arguments matter: keep the first few (bounded). */
export const F_ARGS = 32

export const COMMANDS = new Map<string, number>()
for (const name of SAFE_COMMANDS) if (!name.includes(' ')) COMMANDS.set(name, F_SAFE)
const flag = (names: readonly string[], f: number): void => {
  for (const name of names) COMMANDS.set(name, (COMMANDS.get(name) ?? 0) | f)
}
flag(
  ['BLPOP', 'BRPOP', 'BLMOVE', 'BRPOPLPUSH', 'BZPOPMIN', 'BZPOPMAX', 'BLMPOP', 'BZMPOP', 'WAIT', 'WAITAOF'],
  F_BLOCKING
)
flag(['AUTH', 'HELLO', 'SELECT', 'READONLY', 'READWRITE', 'RESET'], F_STATE)
flag(['MULTI', 'WATCH'], F_PIN)
flag(['SUBSCRIBE', 'PSUBSCRIBE', 'SSUBSCRIBE', 'UNSUBSCRIBE', 'PUNSUBSCRIBE', 'SUNSUBSCRIBE'], F_PASS)
flag(['MONITOR', 'SYNC', 'PSYNC'], F_PASS)
flag(['AUTH', 'HELLO', 'SELECT', 'CLIENT', 'XREAD', 'XREADGROUP', 'ZADD'], F_ARGS)

/**
 * Arguments (after the name) kept for F_ARGS commands: the ones that need only the first few keep
 * these; a state command with more (HELLO has at most 6) is not kept but pins the session.
 */
export const FEW_ARGS = 16
/** Longest command name (or short argument) looked at; longer ones are no command we know. */
export const NAME_MAX = 32

/** Command names of up to this many bytes have a numeric key (length, then the bytes): no string per request. */
export const SHORT_NAME = 6
export const SHORT_NAMES = new Map<number, string>()
for (const name of COMMANDS.keys()) {
  if (name.length > SHORT_NAME) continue
  let key = name.length
  for (let k = 0; k < name.length; k++) key = key * 256 + name.charCodeAt(k)
  SHORT_NAMES.set(key, name)
}

/** ASCII case-insensitive: is `arg` the upper-case word `word`? */
export function argIs(arg: Buffer | undefined, word: string): boolean {
  if (arg === undefined || arg.length !== word.length) return false
  for (let k = 0; k < word.length; k++) {
    const b = arg[k]!
    if ((b >= 0x61 && b <= 0x7a ? b - 0x20 : b) !== word.charCodeAt(k)) return false
  }
  return true
}

export const upper = (arg: Buffer | undefined): string =>
  arg === undefined || arg.length > NAME_MAX ? '' : arg.toString('latin1').toUpperCase()

/** A command as RESP multibulk: how state commands are kept, whatever form the client used. */
export function encodeCommand(args: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)]
  for (const arg of args) parts.push(Buffer.from(`$${arg.length}\r\n`), arg, Buffer.from('\r\n'))
  return Buffer.concat(parts)
}
