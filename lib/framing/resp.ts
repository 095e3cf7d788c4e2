/**
 * `resp`: Redis (RESP2 and RESP3). Every request gets exactly one reply, in order, so the framer
 * keeps a queue of the absolute client end offsets of complete requests and pops one per reply:
 *
 *   client:  |*2 $3 GET $1 a|PING\r\n|*3 $3 SET ...(partial)
 *   queue:                  ^e1      ^e2                      <- with each end, the request's flags
 *   server:  |$1 x|>3 (push)...|+PONG|
 *            reply 1 -> answered(e1); the push answers nothing; +PONG -> answered(e2)
 *
 * Both directions are incremental state machines over the bytes; nothing is joined. The request
 * side keeps at most the command name (32 bytes) and, for the few commands whose arguments matter
 * (AUTH, HELLO, SELECT, CLIENT, XREAD, ZADD…), their first 16 arguments within 4 KiB; an inline command
 * keeps its first 4 KiB of line. The reply side keeps a stack of element counts for nested
 * aggregates and nothing of the data.
 *
 * Replies, by first byte:
 *   + - : _ , # (     one line              $ ! =   length, body, CRLF ($-1: null)
 *   * ~ >             N elements (*-1: null) %       N pairs, 2N elements
 *   |                 attribute: N pairs that come before a reply and are no part of it
 *   >                 push (at top level): out of band, answers no request
 *   $? *? %? ~? |? >? streamed (RESP3): `;len` chunks up to `;0`, or elements up to `.`
 *
 * What a request means for failover:
 * - `pendingSafe()`: every complete unanswered request is in `SAFE_COMMANDS` (reads and idempotent
 *   writes). A partial request is always safe: Redis runs a command only once it has all of it.
 * - Session state (AUTH, HELLO, SELECT, CLIENT SETNAME, READONLY; READWRITE and RESET undo) is
 *   recorded once its reply comes back without an error, re-encoded as a multibulk command, for
 *   `prologue()`. A state command too long to keep pins the session instead.
 * - `pinned` (sticky): MULTI or WATCH (a transaction), CLIENT TRACKING ON, and the commands after
 *   which replies no longer pair with requests (SUBSCRIBE and friends, MONITOR, CLIENT REPLY
 *   OFF|SKIP, SYNC). For the latter, once every reply before that command is in, the framer stops
 *   framing: every server byte passes through, every client byte counts as answered, `pending()`
 *   is 0 and `atBoundary()` false for the rest of the session.
 * - `pendingBlocking()`: the oldest unanswered request is a blocking one (BLPOP…, XREAD BLOCK).
 *
 * A request that gets no reply (an empty inline line, `*0`, `*-1`) is released with the request
 * before it, or at once when nothing is pending.
 */
import { ConfigError } from '../errors.js'
import type { Framer, FramerExtras, FramerFactory, FramerSink, FramingError, Prologue } from './types.js'
import { RequestQueue } from './queue.js'

export interface RespOptions {
  /** Largest bulk string (either side); default 512 MiB, Redis's `proto-max-bulk-len`. */
  readonly maxBulkBytes?: number
  /** Longest inline command, and longest simple-type reply line; default 64 KiB, as Redis. */
  readonly maxInlineBytes?: number
  /** Deepest nesting of reply aggregates; default 64. */
  readonly maxDepth?: number
}

interface Limits {
  readonly maxBulkBytes: number
  readonly maxInlineBytes: number
  readonly maxDepth: number
}

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
const F_SAFE = 1
const F_BLOCKING = 2
/** Sets session state: recorded for the prologue once answered without an error. */
const F_STATE = 4
/** Pins the session. */
const F_PIN = 8
/** After this one replies no longer pair with requests: pass everything through. */
const F_PASS = 16
/** The arguments matter: keep the first few (bounded). */
const F_ARGS = 32

const COMMANDS = new Map<string, number>()
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
const FEW_ARGS = 16
/** Longest command name (or short argument) looked at; longer ones are no command we know. */
const NAME_MAX = 32

/** The length of the bulk string `wholeBulkString` last found (no object per call). */
let bulkLength = 0

/**
 * `$N\r\n` + N bytes + `\r\n` at `chunk[i]` (the `$`), wholly in `chunk[.., len)`, N at most
 * `max` and at most 15 digits: returns the index after it and sets `bulkLength`; else -1.
 */
function wholeBulkString(chunk: Buffer, i: number, len: number, max: number): number {
  let j = i + 1
  let n = 0
  const digitsEnd = Math.min(len, j + 15)
  while (j < digitsEnd) {
    const d = chunk[j]! - 0x30
    if (d < 0 || d > 9) break
    n = n * 10 + d
    j++
  }
  if (j === i + 1 || n > max) return -1
  const body = j + 2
  const end = body + n + 2
  if (end > len || chunk[j] !== CR || chunk[j + 1] !== LF) return -1
  if (chunk[body + n] !== CR || chunk[body + n + 1] !== LF) return -1
  bulkLength = n
  return end
}

/** Command names of up to this many bytes have a numeric key (length, then the bytes): no string per request. */
const SHORT_NAME = 6
const SHORT_NAMES = new Map<number, string>()
for (const name of COMMANDS.keys()) {
  if (name.length > SHORT_NAME) continue
  let key = name.length
  for (let k = 0; k < name.length; k++) key = key * 256 + name.charCodeAt(k)
  SHORT_NAMES.set(key, name)
}
/** Bytes kept of a state command's arguments, or of an inline line. */
const SCRATCH_MAX = 4096
/** Largest multibulk or aggregate count accepted (Redis: INT_MAX). */
const MAX_COUNT = 2 ** 31 - 1

const NO_ARGS: readonly Buffer[] = []

const CR = 13
const LF = 10

const DEFAULTS: Limits = { maxBulkBytes: 512 * 1024 * 1024, maxInlineBytes: 64 * 1024, maxDepth: 64 }

/** Checks the options once, at the edge. */
function respLimits(options: RespOptions = {}): Limits {
  const issues: string[] = []
  const out = { ...DEFAULTS }
  for (const key of ['maxBulkBytes', 'maxInlineBytes', 'maxDepth'] as const) {
    const value = options[key]
    if (value === undefined) continue
    if (!Number.isSafeInteger(value) || value < 1) {
      issues.push(`resp.${key}: expected a positive integer, got ${String(value)}`)
    } else {
      out[key] = value
    }
  }
  if (issues.length > 0) throw new ConfigError(issues)
  return Object.freeze(out)
}

/** ASCII case-insensitive: is `arg` the upper-case word `word`? */
function argIs(arg: Buffer | undefined, word: string): boolean {
  if (arg === undefined || arg.length !== word.length) return false
  for (let k = 0; k < word.length; k++) {
    const b = arg[k]!
    if ((b >= 0x61 && b <= 0x7a ? b - 0x20 : b) !== word.charCodeAt(k)) return false
  }
  return true
}

const upper = (arg: Buffer | undefined): string =>
  arg === undefined || arg.length > NAME_MAX ? '' : arg.toString('latin1').toUpperCase()

/** A command as RESP multibulk: how state commands are kept, whatever form the client used. */
function encodeCommand(args: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)]
  for (const arg of args) parts.push(Buffer.from(`$${arg.length}\r\n`), arg, Buffer.from('\r\n'))
  return Buffer.concat(parts)
}

const isSpace = (b: number | undefined): boolean =>
  b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09 || b === 0x0b || b === 0x0c
const hexValue = (b: number | undefined): number =>
  b === undefined
    ? -1
    : b >= 0x30 && b <= 0x39
      ? b - 0x30
      : b >= 0x61 && b <= 0x66
        ? b - 0x57
        : b >= 0x41 && b <= 0x46
          ? b - 0x37
          : -1

/**
 * Redis's `sdssplitargs()`, which splits inline commands: whitespace-separated, with "double
 * quotes" (escapes \n \r \t \b \a \xHH) and 'single quotes' (escape \'). Undefined for unbalanced
 * quotes (Redis answers a protocol error and closes; the framer lets it).
 */
export function splitInline(line: Buffer): Buffer[] | undefined {
  const args: Buffer[] = []
  const end = line.length
  let p = 0
  for (;;) {
    while (p < end && isSpace(line[p])) p++
    if (p >= end) return args
    const cur: number[] = []
    let inDouble = false
    let inSingle = false
    for (let done = false; !done;) {
      const c = line[p]
      if (inDouble) {
        if (p >= end) return undefined
        if (c === 0x5c && line[p + 1] === 0x78 && hexValue(line[p + 2]) >= 0 && hexValue(line[p + 3]) >= 0) {
          cur.push(hexValue(line[p + 2]) * 16 + hexValue(line[p + 3]))
          p += 3
        } else if (c === 0x5c && p + 1 < end) {
          const e = line[++p]!
          cur.push(e === 0x6e ? 10 : e === 0x72 ? 13 : e === 0x74 ? 9 : e === 0x62 ? 8 : e === 0x61 ? 7 : e)
        } else if (c === 0x22) {
          if (p + 1 < end && !isSpace(line[p + 1])) return undefined
          done = true
        } else {
          cur.push(c!)
        }
      } else if (inSingle) {
        if (p >= end) return undefined
        if (c === 0x5c && line[p + 1] === 0x27) {
          p++
          cur.push(0x27)
        } else if (c === 0x27) {
          if (p + 1 < end && !isSpace(line[p + 1])) return undefined
          done = true
        } else {
          cur.push(c!)
        }
      } else if (p >= end || c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09 || c === 0) {
        done = true
      } else if (c === 0x22) {
        inDouble = true
      } else if (c === 0x27) {
        inSingle = true
      } else {
        cur.push(c)
      }
      if (p < end) p++
    }
    args.push(Buffer.from(cur))
  }
}

// Request scanner states.
const R_IDLE = 0
const R_INLINE = 1
const R_COUNT = 2
const R_COUNT_LF = 3
const R_BULK_TYPE = 4
const R_BULK_LEN = 5
const R_BULK_LEN_LF = 6
const R_BODY = 7
const R_BODY_CR = 8
const R_BODY_LF = 9

// Where the bytes of the current bulk argument go.
const CAP_NONE = 0
const CAP_NAME = 1
const CAP_SCRATCH = 2

/**
 * Follows client requests. `scan()` consumes until the current request or the chunk ends; after a
 * request ends (`midRequest` false), `noop`, `flags`, `stateKind` and `stateRequest` describe it.
 */
class RequestScanner {
  midRequest = false
  /** The request got no reply (empty inline line, `*0`). */
  noop = false
  flags = 0
  /** The state a F_STATE request sets (`AUTH`, `CLIENT SETNAME`…) and the request to replay. */
  stateKind = ''
  stateRequest: Buffer | undefined
  error: FramingError | undefined
  private readonly limits: Limits
  private state = R_IDLE
  /** Absolute client offset where the current request began. */
  private start = 0
  private num = 0
  private digits = 0
  private negative = false
  private argc = 0
  private argIndex = 0
  private remaining = 0
  private readonly name = Buffer.alloc(NAME_MAX)
  /** Bytes of the command name kept; -1 when it is too long to be a command we know. */
  private nameLen = 0
  private cmdFlags = 0
  /** The command name, upper-case ('' when unknown), once the first argument is whole. */
  private command = ''
  private capture = CAP_NONE
  private capturePos = 0
  /** State-command arguments or an inline line; allocated the first time one is seen. */
  private scratch: Buffer | undefined
  private scratchLen = 0
  /** Where each kept argument ends in `scratch`. */
  private readonly argEnds: number[] = []
  /** An argument did not fit in `scratch`: the ones after it are not kept either. */
  private overflow = false
  private lineLen = 0

  constructor(limits: Limits) {
    this.limits = limits
  }

  /** Consume `chunk` from `i` (< chunk.length) until the request or the chunk ends; -1 on error. */
  scan(chunk: Buffer, i: number, base: number): number {
    const len = chunk.length
    while (i < len) {
      switch (this.state) {
        case R_IDLE:
          this.start = base + i
          this.midRequest = true
          if (chunk[i] === 0x2a /* * */) {
            i++
            this.startNumber(R_COUNT)
          } else {
            this.state = R_INLINE
            this.lineLen = 0
            this.scratchLen = 0
          }
          break
        case R_INLINE: {
          const nl = chunk.indexOf(LF, i)
          const stop = nl < 0 ? len : nl
          this.keep(chunk, i, stop)
          this.lineLen += stop - i
          if (this.lineLen > this.limits.maxInlineBytes) {
            return this.fail(
              'ERR_BATON_FRAME_TOO_LARGE',
              `inline command over maxInlineBytes ${this.limits.maxInlineBytes}`
            )
          }
          if (nl < 0) return len
          this.inlineEnded()
          return nl + 1
        }
        case R_COUNT:
        case R_BULK_LEN: {
          const b = chunk[i++]!
          if (b >= 0x30 && b <= 0x39) {
            this.num = this.num * 10 + (b - 0x30)
            this.digits++
            if (this.state === R_COUNT && this.num > MAX_COUNT) {
              return this.fail('ERR_BATON_FRAME_MALFORMED', 'invalid multibulk length')
            }
            if (this.state === R_BULK_LEN && this.num > this.limits.maxBulkBytes) {
              return this.fail(
                'ERR_BATON_FRAME_TOO_LARGE',
                `bulk string over maxBulkBytes ${this.limits.maxBulkBytes}`
              )
            }
          } else if (b === CR && this.digits > 0) {
            this.state++
          } else if (b === 0x2d /* - */ && this.state === R_COUNT && this.digits === 0 && !this.negative) {
            this.negative = true
          } else {
            const what = this.state === R_COUNT ? 'multibulk' : 'bulk'
            return this.fail('ERR_BATON_FRAME_MALFORMED', `invalid ${what} length`)
          }
          break
        }
        case R_COUNT_LF:
          if (chunk[i++] !== LF) return this.fail('ERR_BATON_FRAME_MALFORMED', 'invalid multibulk length')
          if (this.negative || this.num === 0) {
            this.ended(true)
            return i
          }
          this.argc = this.num
          this.argIndex = 0
          this.state = R_BULK_TYPE
          break
        case R_BULK_TYPE: {
          // An argument wholly in this chunk: one step instead of one per byte.
          const end = this.wholeArg(chunk, i, len)
          if (end > 0) {
            i = end
            if (this.argEnded()) return i
            break
          }
          const b = chunk[i++]!
          if (b !== 0x24 /* $ */) {
            return this.fail('ERR_BATON_FRAME_MALFORMED', `expected '$', got byte 0x${b.toString(16)}`)
          }
          this.startNumber(R_BULK_LEN)
          break
        }
        case R_BULK_LEN_LF:
          if (chunk[i++] !== LF) return this.fail('ERR_BATON_FRAME_MALFORMED', 'invalid bulk length')
          this.bulkBegins(this.num)
          break
        case R_BODY: {
          const n = Math.min(len - i, this.remaining)
          if (this.capture !== CAP_NONE) {
            const into = this.capture === CAP_NAME ? this.name : this.scratch!
            if (n <= 16) {
              // A command name or a short argument: a byte loop beats copy()'s checks.
              for (let k = 0; k < n; k++) into[this.capturePos + k] = chunk[i + k]!
            } else {
              chunk.copy(into, this.capturePos, i, i + n)
            }
            this.capturePos += n
          }
          i += n
          this.remaining -= n
          if (this.remaining === 0) this.state = R_BODY_CR
          break
        }
        case R_BODY_CR:
          if (chunk[i++] !== CR)
            return this.fail('ERR_BATON_FRAME_MALFORMED', 'bulk string not ended by CRLF')
          this.state = R_BODY_LF
          break
        case R_BODY_LF:
          if (chunk[i++] !== LF)
            return this.fail('ERR_BATON_FRAME_MALFORMED', 'bulk string not ended by CRLF')
          if (this.argEnded()) return i
          break
      }
    }
    return i
  }

  private startNumber(state: number): void {
    this.state = state
    this.num = 0
    this.digits = 0
    this.negative = false
  }

  /**
   * `$N\r\n` + N bytes + `\r\n` at `i`, all in `chunk`, N within maxBulkBytes: captured as the
   * byte-by-byte path would, and the index after it returned. Otherwise -1 (nothing changed), and
   * the byte-by-byte path takes it, errors included.
   */
  private wholeArg(chunk: Buffer, i: number, len: number): number {
    if (chunk[i] !== 0x24) return -1
    const end = wholeBulkString(chunk, i, len, this.limits.maxBulkBytes)
    if (end < 0) return -1
    const n = bulkLength
    const body = end - n - 2
    this.bulkBegins(n)
    if (this.capture !== CAP_NONE) {
      const into = this.capture === CAP_NAME ? this.name : this.scratch!
      if (n <= 16) for (let k = 0; k < n; k++) into[this.capturePos + k] = chunk[body + k]!
      else chunk.copy(into, this.capturePos, body, body + n)
      this.capturePos += n
    }
    this.remaining = 0
    return end
  }

  private bulkBegins(length: number): void {
    this.remaining = length
    this.state = length > 0 ? R_BODY : R_BODY_CR
    this.capture = CAP_NONE
    this.capturePos = 0
    if (this.argIndex === 0) {
      this.nameLen = length <= NAME_MAX ? length : -1
      if (this.nameLen > 0) this.capture = CAP_NAME
    } else if ((this.cmdFlags & F_ARGS) !== 0 && !this.overflow) {
      if (this.argIndex > FEW_ARGS) {
        // Past the first few: a state command must keep every argument or pin the session (no
        // real one has this many), so that empty arguments cannot grow `argEnds` without bound;
        // the others need only the first few.
        if ((this.cmdFlags & F_STATE) !== 0) this.overflow = true
      } else if (this.scratchLen + length > SCRATCH_MAX) {
        this.overflow = true
      } else {
        this.scratch ??= Buffer.allocUnsafe(SCRATCH_MAX)
        this.capture = CAP_SCRATCH
        this.capturePos = this.scratchLen
      }
    }
  }

  /** A bulk argument is whole. Returns true when it was the request's last. */
  private argEnded(): boolean {
    if (this.argIndex === 0) {
      this.command = this.nameLen < 0 ? '' : this.commandName()
      this.cmdFlags = COMMANDS.get(this.command) ?? 0
      // CLIENT SETNAME is state: keep all of CLIENT's arguments, like the state commands'.
      if (this.command === 'CLIENT') this.cmdFlags |= F_STATE
      this.scratchLen = 0
      this.argEnds.length = 0
      this.overflow = false
    } else if (this.capture === CAP_SCRATCH) {
      this.scratchLen = this.capturePos
      this.argEnds.push(this.scratchLen)
    }
    this.capture = CAP_NONE
    if (++this.argIndex < this.argc) {
      this.state = R_BULK_TYPE
      return false
    }
    let args = NO_ARGS
    if (this.cmdFlags & F_ARGS) {
      let from = 0
      args = this.argEnds.map((to) => this.scratch!.subarray(from, (from = to)))
    }
    const whole = !this.overflow && args.length === this.argc - 1
    this.classify(this.command, args, whole)
    this.ended(false)
    return true
  }

  private commandName(): string {
    const name = this.name
    const len = this.nameLen
    let key = len
    for (let k = 0; k < len; k++) {
      if (name[k]! >= 0x61 && name[k]! <= 0x7a) name[k] = name[k]! - 0x20
      if (k < SHORT_NAME) key = key * 256 + name[k]!
    }
    // A known short name (GET, SET, HGETALL…) is found without making a string per command.
    if (len <= SHORT_NAME) {
      const known = SHORT_NAMES.get(key)
      if (known !== undefined) return known
    }
    return name.toString('latin1', 0, len)
  }

  /** Keep inline line bytes, up to SCRATCH_MAX. */
  private keep(chunk: Buffer, from: number, to: number): void {
    const n = Math.min(to - from, SCRATCH_MAX - this.scratchLen)
    if (n <= 0) return
    this.scratch ??= Buffer.allocUnsafe(SCRATCH_MAX)
    chunk.copy(this.scratch, this.scratchLen, from, from + n)
    this.scratchLen += n
  }

  private inlineEnded(): void {
    const kept = this.scratchLen
    const whole = this.lineLen <= SCRATCH_MAX
    let line = this.scratch === undefined ? Buffer.alloc(0) : this.scratch.subarray(0, kept)
    if (whole && kept > 0 && line[kept - 1] === CR) line = line.subarray(0, kept - 1)
    let args = splitInline(line)
    // Only what certainly is whole: a cut line's last word may go on past what was kept.
    if (args !== undefined && !whole) args.pop()
    if (args !== undefined && args.length === 0 && whole) return this.ended(true)
    args ??= []
    const name = upper(args[0])
    this.cmdFlags = COMMANDS.get(name) ?? 0
    this.classify(name, args.slice(1), whole)
    this.ended(false)
  }

  /** Sets `flags` (and the state to record) from the name and the kept arguments. */
  private classify(name: string, args: readonly Buffer[], whole: boolean): void {
    let flags = this.cmdFlags
    let kind = name
    switch (name) {
      case 'CLIENT': {
        const sub = upper(args[0])
        kind = `CLIENT ${sub}`
        flags = SAFE_COMMANDS.has(kind) ? F_SAFE : 0
        if (sub === 'SETNAME') flags |= F_STATE
        else if (sub === 'TRACKING' && argIs(args[1], 'ON')) flags |= F_PIN
        else if (sub === 'REPLY' && !argIs(args[1], 'ON')) flags |= F_PASS
        break
      }
      case 'XREAD':
      case 'XREADGROUP': {
        // [GROUP g c] [COUNT n] [BLOCK ms] [NOACK] STREAMS ...: an option word can only be BLOCK
        // before STREAMS. Not seen STREAMS in what was kept: assume it blocks (no timeout).
        let k = 0
        while (k < args.length && !argIs(args[k], 'STREAMS') && !argIs(args[k], 'BLOCK')) k++
        if (k < args.length ? argIs(args[k], 'BLOCK') : !whole) flags |= F_BLOCKING
        break
      }
      case 'ZADD': {
        // ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member ...: INCR makes it ZINCRBY.
        let k = 1
        const option = (a: Buffer | undefined): boolean =>
          argIs(a, 'NX') || argIs(a, 'XX') || argIs(a, 'GT') || argIs(a, 'LT') || argIs(a, 'CH')
        while (k < args.length && option(args[k])) k++
        if (k >= args.length ? !whole : argIs(args[k], 'INCR')) flags &= ~F_SAFE
        break
      }
    }
    this.stateRequest = undefined
    if (flags & F_STATE) {
      if (whole) {
        this.stateKind = kind
        this.stateRequest = encodeCommand([Buffer.from(name === 'CLIENT' ? 'CLIENT' : name), ...args])
      } else {
        // Too long to keep: a replacement server could not be given this state.
        flags = (flags & ~F_STATE) | F_PIN
      }
    }
    this.flags = flags
  }

  private ended(noop: boolean): void {
    this.noop = noop
    if (noop) this.flags = 0
    this.midRequest = false
    this.state = R_IDLE
    this.cmdFlags = 0
    this.nameLen = 0
  }

  private fail(code: FramingError['code'], what: string): -1 {
    this.error = { code, message: `request at offset ${this.start}: ${what}` }
    return -1
  }
}

// Reply scanner states.
const S_TYPE = 0
const S_LINE = 1
const S_NUM = 2
const S_NUM_LF = 3
const S_BODY = 4
const S_BODY_CR = 5
const S_BODY_LF = 6

// Aggregate frame kinds.
const K_AGGREGATE = 0
const K_ATTRIBUTE = 1
const K_STREAMED_STRING = 2

const PUSH = 0x3e // >

/**
 * Follows replies of any RESP2/RESP3 type. `scan()` consumes until a top-level reply ends (an
 * attribute before it is part of it) or the chunk does; `midReply` says which. `topType` is the
 * reply's type byte (0 until read): `>` for a push, `-` or `!` for an error.
 */
class ReplyScanner {
  midReply = false
  topType = 0
  /** Absolute offset (in this scanner's bytes) where the current reply began. */
  replyStart = 0
  error: FramingError | undefined
  private readonly limits: Limits
  private readonly side: string
  private state = S_TYPE
  /** The type byte of the line or header being read. */
  private header = 0
  private num = 0
  private digits = 0
  /** 0, or '-' or '?' read before the digits. */
  private sign = 0
  private remaining = 0
  private lineLen = 0
  private lastCR = false
  private depth = 0
  /** Per open aggregate: elements still to come, or -1 for a streamed one (ends with `.`). */
  private readonly counts: number[] = []
  private readonly kinds: number[] = []

  constructor(limits: Limits, side: string) {
    this.limits = limits
    this.side = side
  }

  reset(): void {
    this.state = S_TYPE
    this.midReply = false
    this.topType = 0
    this.depth = 0
  }

  /** Consume `chunk` from `i` (< chunk.length) until a reply or the chunk ends; -1 on error. */
  scan(chunk: Buffer, i: number, base: number): number {
    const len = chunk.length
    while (i < len) {
      switch (this.state) {
        case S_TYPE: {
          if (!this.midReply) {
            this.midReply = true
            this.replyStart = base + i
            this.topType = 0
          }
          const b = chunk[i]!
          if (b === 0x24 /* $ */) {
            // The common reply, a bulk string wholly in this chunk: one step instead of one per byte.
            const end = this.wholeBulk(chunk, i, len)
            if (end > 0) {
              if (this.depth === 0 && this.topType === 0) this.topType = b
              this.valueDone(false)
              i = end
              if (!this.midReply) return i
              break
            }
          }
          i++
          if (!this.typeByte(b)) return -1
          break
        }
        case S_LINE: {
          const nl = chunk.indexOf(LF, i)
          const stop = nl < 0 ? len : nl
          const cr = stop > i ? chunk[stop - 1] === CR : this.lastCR
          this.lineLen += stop - i
          // + 1: the line's CR.
          if (this.lineLen > this.limits.maxInlineBytes + 1) {
            return this.stop(
              'ERR_BATON_FRAME_TOO_LARGE',
              `line over maxInlineBytes ${this.limits.maxInlineBytes}`
            )
          }
          if (nl < 0) {
            this.lastCR = cr
            return len
          }
          if (!cr || this.lineLen === 0)
            return this.stop('ERR_BATON_FRAME_MALFORMED', 'line not ended by CRLF')
          i = nl + 1
          if (this.header === 0x2e /* . */) {
            // The end of a streamed aggregate.
            this.valueDone(this.kinds[--this.depth] === K_ATTRIBUTE)
          } else {
            this.valueDone(false)
          }
          if (!this.midReply) return i
          break
        }
        case S_NUM: {
          const b = chunk[i++]!
          if (b >= 0x30 && b <= 0x39 && this.sign !== 0x3f) {
            this.num = this.num * 10 + (b - 0x30)
            this.digits++
            if (!this.checkNumber()) return -1
          } else if (b === CR && (this.digits > 0 || this.sign === 0x3f)) {
            this.state = S_NUM_LF
          } else if (b === 0x2d && this.digits === 0 && this.sign === 0) {
            this.sign = b
          } else if (b === 0x3f && this.digits === 0 && this.sign === 0 && this.streamable()) {
            this.sign = b
          } else {
            return this.stop(
              'ERR_BATON_FRAME_MALFORMED',
              `invalid length after '${String.fromCharCode(this.header)}'`
            )
          }
          break
        }
        case S_NUM_LF:
          if (chunk[i++] !== LF) {
            return this.stop(
              'ERR_BATON_FRAME_MALFORMED',
              `invalid length after '${String.fromCharCode(this.header)}'`
            )
          }
          if (!this.headerDone()) return -1
          if (!this.midReply) return i
          break
        case S_BODY: {
          const avail = len - i
          if (avail < this.remaining) {
            this.remaining -= avail
            return len
          }
          i += this.remaining
          this.remaining = 0
          this.state = S_BODY_CR
          break
        }
        case S_BODY_CR:
          if (chunk[i++] !== CR)
            return this.stop('ERR_BATON_FRAME_MALFORMED', 'bulk string not ended by CRLF')
          this.state = S_BODY_LF
          break
        case S_BODY_LF:
          if (chunk[i++] !== LF)
            return this.stop('ERR_BATON_FRAME_MALFORMED', 'bulk string not ended by CRLF')
          if (this.header === 0x3b /* ; */) {
            this.state = S_TYPE // a chunk of a streamed string: the string goes on
          } else {
            this.valueDone(false)
            if (!this.midReply) return i
          }
          break
      }
    }
    return i
  }

  /**
   * `$N\r\n` + N bytes + `\r\n` starting at `i`, all in `chunk`, N within maxBulkBytes and not
   * part of a streamed string: returns the index after it. Anything else (a null, a partial one, a
   * malformed one): -1, and the byte-by-byte path takes it, errors included.
   */
  private wholeBulk(chunk: Buffer, i: number, len: number): number {
    if (this.depth > 0 && this.kinds[this.depth - 1] === K_STREAMED_STRING) return -1
    return wholeBulkString(chunk, i, len, this.limits.maxBulkBytes)
  }

  private typeByte(b: number): boolean {
    const top = this.depth - 1
    if (top >= 0 && this.kinds[top] === K_STREAMED_STRING && b !== 0x3b) {
      return this.fail('ERR_BATON_FRAME_MALFORMED', `expected ';' in a streamed string`)
    }
    switch (b) {
      case 0x2b: // + simple string
      case 0x2d: // - error
      case 0x3a: // : integer
      case 0x5f: // _ null
      case 0x2c: // , double
      case 0x23: // # boolean
      case 0x28: // ( big number
        this.startLine(b)
        break
      case 0x2e: // . end of a streamed aggregate
        if (top < 0 || this.counts[top] !== -1 || this.kinds[top] === K_STREAMED_STRING) {
          return this.fail('ERR_BATON_FRAME_MALFORMED', `'.' outside a streamed aggregate`)
        }
        this.startLine(b)
        break
      case 0x3b: // ; streamed string chunk
        if (top < 0 || this.kinds[top] !== K_STREAMED_STRING) {
          return this.fail('ERR_BATON_FRAME_MALFORMED', `';' outside a streamed string`)
        }
        this.startHeader(b)
        break
      case 0x24: // $ bulk string
      case 0x21: // ! blob error
      case 0x3d: // = verbatim string
      case 0x2a: // * array
      case 0x25: // % map
      case 0x7e: // ~ set
      case 0x7c: // | attribute
      case PUSH:
        this.startHeader(b)
        break
      default:
        return this.fail('ERR_BATON_FRAME_MALFORMED', `unknown type byte 0x${b.toString(16)}`)
    }
    if (this.depth === 0 && b !== 0x7c && this.topType === 0) this.topType = b
    return true
  }

  private startHeader(b: number): void {
    this.header = b
    this.state = S_NUM
    this.num = 0
    this.digits = 0
    this.sign = 0
  }

  private startLine(b: number): void {
    this.header = b
    this.state = S_LINE
    this.lineLen = 0
    this.lastCR = false
  }

  private streamable(): boolean {
    const h = this.header
    return h === 0x24 || h === 0x2a || h === 0x25 || h === 0x7e || h === 0x7c || h === PUSH
  }

  private bulky(): boolean {
    const h = this.header
    return h === 0x24 || h === 0x21 || h === 0x3d || h === 0x3b
  }

  private checkNumber(): boolean {
    if (this.sign === 0x2d) {
      if (this.num > 1) return this.fail('ERR_BATON_FRAME_MALFORMED', 'a negative length other than -1')
    } else if (this.bulky()) {
      if (this.num > this.limits.maxBulkBytes) {
        return this.fail(
          'ERR_BATON_FRAME_TOO_LARGE',
          `bulk string over maxBulkBytes ${this.limits.maxBulkBytes}`
        )
      }
    } else if (this.num > MAX_COUNT) {
      return this.fail('ERR_BATON_FRAME_TOO_LARGE', `aggregate of over ${MAX_COUNT} elements`)
    }
    return true
  }

  /** A length header is whole. */
  private headerDone(): boolean {
    const h = this.header
    const n = this.num
    this.state = S_TYPE
    if (this.sign === 0x3f)
      return this.open(h === 0x24 ? K_STREAMED_STRING : h === 0x7c ? K_ATTRIBUTE : K_AGGREGATE, -1)
    if (this.sign === 0x2d) {
      if (h === 0x24 || h === 0x2a) return this.valueDone(false) // RESP2 null
      return this.fail('ERR_BATON_FRAME_MALFORMED', `a null '${String.fromCharCode(h)}'`)
    }
    if (h === 0x3b && n === 0) {
      this.depth-- // ';0': the streamed string is whole
      return this.valueDone(false)
    }
    switch (h) {
      case 0x3b:
      case 0x24:
      case 0x21:
      case 0x3d:
        this.remaining = n
        this.state = n > 0 ? S_BODY : S_BODY_CR
        return true
      case 0x25:
        return n === 0 ? this.valueDone(false) : this.open(K_AGGREGATE, 2 * n)
      case 0x7c:
        return n === 0 ? this.valueDone(true) : this.open(K_ATTRIBUTE, 2 * n)
      default: // * ~ >
        return n === 0 ? this.valueDone(false) : this.open(K_AGGREGATE, n)
    }
  }

  private open(kind: number, count: number): boolean {
    if (this.depth >= this.limits.maxDepth) {
      return this.fail('ERR_BATON_FRAME_TOO_LARGE', `nested deeper than maxDepth ${this.limits.maxDepth}`)
    }
    this.counts[this.depth] = count
    this.kinds[this.depth] = kind
    this.depth++
    return true
  }

  /**
   * A value is whole: count it in its aggregate, closing every aggregate it completes. An
   * attribute counts in nothing; at top level the reply it precedes is still to come.
   */
  private valueDone(attribute: boolean): true {
    this.state = S_TYPE
    while (this.depth > 0) {
      if (attribute) return true
      const top = this.depth - 1
      const left = this.counts[top]!
      if (left < 0) return true // streamed: ends with '.'
      if (left > 1) {
        this.counts[top] = left - 1
        return true
      }
      attribute = this.kinds[top] === K_ATTRIBUTE
      this.depth--
    }
    if (!attribute) this.midReply = false
    return true
  }

  private fail(code: FramingError['code'], what: string): false {
    this.error = { code, message: `${this.side} at offset ${this.replyStart}: ${what}` }
    return false
  }

  private stop(code: FramingError['code'], what: string): -1 {
    this.fail(code, what)
    return -1
  }
}

interface StateRequest {
  readonly kind: string
  readonly request: Buffer
}

export class RespFramer implements Framer, FramerExtras {
  readonly delimited = true
  pinned = false
  responseOpen = false
  openStart = -1
  private readonly sink: FramerSink
  private readonly limits: Limits
  private readonly requests: RequestScanner
  private readonly replies: ReplyScanner
  /** For `swallowReply()`; made on first use. */
  private swallower: ReplyScanner | undefined
  private swallowed = 0
  private readonly queue = new RequestQueue(0, 16)
  /** Queued requests not in SAFE_COMMANDS. */
  private unsafe = 0
  /** The queued F_STATE requests, oldest first: recorded when answered without an error. */
  private readonly stateRequests: StateRequest[] = []
  /** The recorded session state, one per kind, in the order first set. */
  private state: StateRequest[] = []
  /** Subscribed (or MONITOR…): nothing is framed any more. */
  private passThrough = false
  private clientSeen = 0
  private serverSeen = 0
  private released = 0
  /** The open reply's type has been checked against the queue. */
  private topChecked = false
  private failed: FramingError | undefined

  constructor(limits: Limits, sink: FramerSink) {
    this.sink = sink
    this.limits = limits
    this.requests = new RequestScanner(limits)
    this.replies = new ReplyScanner(limits, 'reply')
  }

  request(chunk: Buffer): FramingError | undefined {
    if (this.failed !== undefined) return this.failed
    const base = this.clientSeen
    const len = chunk.length
    let i = 0
    while (i < len && !this.passThrough) {
      i = this.requests.scan(chunk, i, base)
      if (i < 0) return (this.failed = this.requests.error)
      if (!this.requests.midRequest) this.requestEnded(base + i)
    }
    this.clientSeen = base + len
    if (this.passThrough) this.release(this.clientSeen)
    return undefined
  }

  response(chunk: Buffer): FramingError | undefined {
    if (this.failed !== undefined) return this.failed
    const base = this.serverSeen
    const len = chunk.length
    const replies = this.replies
    let i = 0
    let start = -1
    while (i < len && !this.passThrough) {
      if (!replies.midReply) start = i
      i = replies.scan(chunk, i, base)
      if (i < 0) return this.fail(replies.error!)
      if (!this.topChecked && replies.topType !== 0) {
        this.topChecked = true
        if (replies.topType !== PUSH && this.queue.count === 0) {
          return this.fail({
            code: 'ERR_BATON_FRAME_MALFORMED',
            message: `reply at offset ${replies.replyStart}: a reply without a request`,
          })
        }
      }
      if (!replies.midReply) this.replyEnded()
    }
    this.serverSeen = base + len
    this.responseOpen = !this.passThrough && replies.midReply
    this.openStart = this.responseOpen ? start : -1
    return undefined
  }

  pending(): number {
    return this.passThrough ? 0 : this.queue.count + (this.requests.midRequest ? 1 : 0)
  }

  requestOpen(): boolean {
    return !this.passThrough && this.requests.midRequest
  }

  requestPartial(): boolean {
    return !this.passThrough && this.requests.midRequest
  }

  /** A partial request counts as safe: Redis has not run it. */
  pendingSafe(): boolean {
    return this.unsafe === 0
  }

  pendingBlocking(): boolean {
    return this.queue.count > 0 && (this.queue.peek() & F_BLOCKING) !== 0
  }

  atBoundary(): boolean {
    return !this.passThrough && this.queue.count === 0 && !this.requests.midRequest && !this.replies.midReply
  }

  restartResponse(): void {
    this.replies.reset()
    this.topChecked = false
    this.responseOpen = false
    this.openStart = -1
  }

  prologue(): Prologue | undefined {
    return this.state.length === 0 ? undefined : { requests: this.state.map((s) => s.request) }
  }

  swallowReply(chunk: Buffer): { used: number; complete: boolean; error: boolean } | FramingError {
    const scanner = (this.swallower ??= new ReplyScanner(this.limits, 'prologue reply'))
    const len = chunk.length
    let i = 0
    while (i < len) {
      i = scanner.scan(chunk, i, this.swallowed)
      if (i < 0) return scanner.error!
      if (!scanner.midReply && scanner.topType !== PUSH) {
        this.swallowed += i
        const type = scanner.topType
        return { used: i, complete: true, error: type === 0x2d || type === 0x21 }
      }
    }
    this.swallowed += len
    return { used: len, complete: false, error: false }
  }

  private requestEnded(end: number): void {
    const r = this.requests
    if (r.noop) {
      if (this.queue.count > 0) this.queue.extendLast(end)
      else this.release(end)
      return
    }
    const flags = r.flags
    if (flags & F_PIN) this.pinned = true
    if (flags & F_STATE) this.stateRequests.push({ kind: r.stateKind, request: r.stateRequest! })
    if (!(flags & F_SAFE)) this.unsafe++
    this.queue.push(end, flags)
    if (flags & F_PASS) {
      this.pinned = true
      this.passThroughIfDue()
    }
  }

  private replyEnded(): void {
    this.topChecked = false
    const type = this.replies.topType
    if (type !== PUSH) {
      const flags = this.queue.peek()
      const end = this.queue.shift()
      if (!(flags & F_SAFE)) this.unsafe--
      if (flags & F_STATE) {
        const s = this.stateRequests.shift()!
        if (type !== 0x2d && type !== 0x21) this.record(s)
      }
      this.release(end)
    }
    if (this.passThroughIfDue()) this.release(this.clientSeen)
  }

  /** Every reply before a F_PASS request is in: from here on, pass everything through. */
  private passThroughIfDue(): boolean {
    if (this.queue.count === 0 || !(this.queue.peek() & F_PASS) || this.replies.midReply) return false
    this.passThrough = true
    this.pinned = true
    this.queue.clear()
    this.unsafe = 0
    this.stateRequests.length = 0
    return true
  }

  private record(s: StateRequest): void {
    if (s.kind === 'RESET') {
      this.state = []
      return
    }
    const kind = s.kind === 'READWRITE' ? 'READONLY' : s.kind
    const at = this.state.findIndex((t) => t.kind === kind)
    if (s.kind === 'READWRITE') {
      if (at >= 0) this.state.splice(at, 1)
    } else if (at >= 0) {
      this.state[at] = s // a later SELECT replaces the earlier one, where it was
    } else {
      this.state.push(s)
    }
  }

  private release(upTo: number): void {
    if (upTo > this.released) {
      this.released = upTo
      this.sink.answered(upTo)
    }
  }

  private fail(error: FramingError): FramingError {
    this.responseOpen = false
    this.openStart = -1
    return (this.failed = error)
  }
}

/** Validates `options` now (throwing `ConfigError`) and returns a factory of framers that share them. */
export function resp(options?: RespOptions): FramerFactory {
  const limits = respLimits(options)
  return (sink: FramerSink) => new RespFramer(limits, sink)
}
