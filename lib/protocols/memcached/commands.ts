/**
 * The memcached command table (text protocol, memcached 1.6): for each command, the shape of its
 * reply, whether it carries a data block and where its length is, where `noreply` may stand,
 * where meta flags begin, and whether it is safe to re-send under `replay: safe`.
 *
 * Safe to re-send (sending it twice leaves the cache as sending it once would; the second reply
 * may differ, as Redis's DEL answers 0 the second time):
 *   get gets gat gats mg mn me   reads (gat/gats and mg's T flag set a TTL: the same TTL again)
 *   set replace ms (set or replace mode, no C)   the same value again
 *   delete md (no C)             a second delete answers NOT_FOUND / NF
 *   touch                        the same TTL again
 *   version stats                reads
 * Never re-sent under `replay: safe` (the dead server may have run them, and a second run gives
 * the client a wrong answer or a wrong value):
 *   add, ms mode E               a second add answers NOT_STORED: the client lost a race it won
 *                                (add is what memcached locks are made of)
 *   cas, ms/md with C            a second cas answers EXISTS
 *   append prepend, ms mode A/P  the data twice
 *   incr decr ma                 counted twice
 *   flush_all verbosity and the other admin commands: they act on one server, whose failure the
 *                                operator should see
 */

/** Reply shapes. */
export const REPLY_NONE = 0
/** One unit: a line (`STORED`, `HD`, a number…), or `VA` and its data block. */
export const REPLY_ONE = 1
/** `VALUE` blocks, then `END` (or an error line). */
export const REPLY_VALUES = 2
/** Any lines (`STAT …`, `ITEM …`), then `END` (or an error line). */
export const REPLY_LIST = 3

export interface Command {
  readonly reply: number
  readonly safe: boolean
  /** Token index of the data block's length (set: 4, ms: 2); -1 for none. */
  readonly data: number
  /**
   * Token counts (the name included) at which a last token `noreply` means no reply: memcached
   * reads `noreply` only where the command's arity allows it (`delete noreply` deletes the key
   * "noreply"). [0, 0]: never.
   */
  readonly noreply: readonly [number, number]
  /** Token index where meta flags begin (`q` makes the reply optional); -1 for a classic command. */
  readonly meta: number
  /** Token counts (the name included) a data command must have for its data block to be read. */
  readonly arity: readonly [number, number]
  /** `quit`: no reply, and the server closes. */
  readonly quit?: boolean
  /** `watch`: the server streams log lines from here on; replies no longer pair with requests. */
  readonly pass?: boolean
  /** The name is enough (a retrieval's keys do not matter): its line may be long. */
  readonly keysOnly?: boolean
}

const c = (
  reply: number,
  safe: boolean,
  extra: {
    data?: number
    /** Token counts, as `Command.noreply`; may be given as one count. */
    noreply?: number | readonly [number, number]
    meta?: number
    /** Token counts a data command must have (memcached answers `ERROR` and reads no data otherwise). */
    arity?: readonly [number, number]
    quit?: boolean
    pass?: boolean
    keysOnly?: boolean
  } = {}
): Command => {
  const n = extra.noreply ?? 0
  return Object.freeze({
    ...extra,
    reply,
    safe,
    data: extra.data ?? -1,
    noreply: typeof n === 'number' ? ([n, n] as const) : n,
    meta: extra.meta ?? -1,
    arity: extra.arity ?? ([0, Infinity] as const),
  })
}

const get = c(REPLY_VALUES, true, { keysOnly: true })
/** <cmd> <key> <flags> <exptime> <bytes> [noreply] */
const STORE = { data: 4, noreply: 6, arity: [5, 6] as const }

export const COMMANDS: ReadonlyMap<string, Command> = new Map<string, Command>([
  ['get', get],
  ['gets', get],
  ['gat', get],
  ['gats', get],
  // <cmd> <key> <flags> <exptime> <bytes> [noreply]
  ['set', c(REPLY_ONE, true, STORE)],
  ['replace', c(REPLY_ONE, true, STORE)],
  ['add', c(REPLY_ONE, false, STORE)],
  ['append', c(REPLY_ONE, false, STORE)],
  ['prepend', c(REPLY_ONE, false, STORE)],
  // cas <key> <flags> <exptime> <bytes> <cas unique> [noreply]
  ['cas', c(REPLY_ONE, false, { data: 4, noreply: 7, arity: [6, 7] })],
  // delete <key> [0] [noreply]; incr|decr <key> <value> [noreply]; touch <key> <exptime> [noreply]
  ['delete', c(REPLY_ONE, true, { noreply: [3, 4] })],
  ['incr', c(REPLY_ONE, false, { noreply: 4 })],
  ['decr', c(REPLY_ONE, false, { noreply: 4 })],
  ['touch', c(REPLY_ONE, true, { noreply: 4 })],
  // Meta commands: mg <key> <flags>*, ms <key> <datalen> <flags>*, md <key> <flags>*, ma <key> <flags>*
  ['mg', c(REPLY_ONE, true, { meta: 2 })],
  ['ms', c(REPLY_ONE, true, { data: 2, meta: 3, arity: [3, Infinity] })],
  ['md', c(REPLY_ONE, true, { meta: 2 })],
  ['ma', c(REPLY_ONE, false, { meta: 2 })],
  ['mn', c(REPLY_ONE, true)],
  ['me', c(REPLY_ONE, true)],
  // Server and connection.
  ['version', c(REPLY_ONE, true)],
  ['stats', c(REPLY_LIST, true)],
  ['verbosity', c(REPLY_ONE, false, { noreply: 3 })],
  ['flush_all', c(REPLY_ONE, false, { noreply: [2, 3] })],
  ['cache_memlimit', c(REPLY_ONE, false, { noreply: 3 })],
  ['quit', c(REPLY_NONE, true, { quit: true })],
  ['watch', c(REPLY_ONE, false, { pass: true })],
  // lru_crawler metadump|mgdump …: a list; its other subcommands answer one line (see the framer).
  ['lru_crawler', c(REPLY_ONE, false)],
])

/** Unknown commands (and an empty line) are answered `ERROR`: one line. */
export const UNKNOWN: Command = c(REPLY_ONE, false)

/** Names of up to this many bytes have a numeric key (length, then the bytes): no string per request. */
const SHORT_NAME = 6
const SHORT_NAMES = new Map<number, Command>()
for (const [name, command] of COMMANDS) {
  if (name.length > SHORT_NAME) continue
  let key = name.length
  for (let k = 0; k < name.length; k++) key = key * 256 + name.charCodeAt(k)
  SHORT_NAMES.set(key, command)
}

/** The command named by `buf[from, to)` (memcached's names are lower case and case-sensitive). */
export function commandOf(buf: Buffer, from: number, to: number): Command {
  const len = to - from
  if (len <= SHORT_NAME) {
    let key = len
    for (let k = from; k < to; k++) key = key * 256 + buf[k]!
    return SHORT_NAMES.get(key) ?? UNKNOWN
  }
  return COMMANDS.get(buf.toString('latin1', from, to)) ?? UNKNOWN
}
