/**
 * `memcached`: the text protocol of memcached 1.6, classic and meta commands. Every request is a
 * line (`\r\n`, or a bare `\n` as memcached allows), storage commands (`set`, `cas`, `ms`…) then a
 * data block of the length the line gives plus `\r\n`. Replies come in order:
 *
 *   client:  |get a b|set k 0 0 5 + data|mg x v q|mn|delete k noreply|
 *   queue:         ^e1                  ^e2      ^e3 ^e4               <- noreply: released with e4
 *   server:  |VALUE a 0 1 + data, END|STORED|VA 1 + data (x's hit), MN|
 *            one reply each; `mg … q` and the `mn` after it share one (see below)
 *
 * Reply shapes (commands.ts): one unit (`STORED`, `HD`, a number, or `VA <n>` and its data block);
 * `VALUE` blocks then `END` for get/gets/gat/gats; any lines then `END` for `stats` and
 * `lru_crawler metadump`. An error line (`ERROR`, `CLIENT_ERROR …`, `SERVER_ERROR …`) ends any reply.
 *
 * No reply at all: classic `noreply` (where memcached's arity allows it) and `quit`. Such a request
 * is released with the request before it, or at once when nothing is pending, like resp's empty
 * lines: a server that dies before running it loses it, as it would without Baton.
 *
 * Quiet meta commands (flag `q`) answer only when there is something to say (a hit, a failure),
 * so a reply cannot be paired with one of them. Clients end a run of them with `mn`, answered
 * `MN`: the framer treats the run and its `mn` as one request whose reply is whatever comes up to
 * and including `MN`. A run ended by any other command cannot be paired any more: the session
 * turns pinned and passes everything through from there, as it does after `watch` (a log stream)
 * and `lru_crawler mgdump`. After `quit`, the server's FIN goes on to the client (`closeAfter`).
 *
 * `pendingSafe()`: every queued request is safe per commands.ts. A partial request is safe:
 * memcached runs a command only once it has all of it, data block included.
 *
 * Limits: a line is at most `maxLineBytes` either way (memcached itself closes a connection whose
 * command line passes 2048 bytes, retrievals excepted: their keys may run on, and the framer keeps
 * only the name of those); a data block at most `maxValueBytes`. The binary protocol (first byte
 * 0x80) is not framed: a framing error says to use `opaque`.
 *
 * Nothing is joined: a line that straddles chunks has its first 2048 bytes copied into a small
 * buffer made on first need; data blocks are only counted.
 */
import { ConfigError, FramingError } from '../../errors.js'
import { RequestQueue } from '../../framing/queue.js'
import type { Framer, FramerExtras, FramerFactory, FramerSink } from '../../framing/types.js'
import {
  COMMANDS,
  commandOf,
  REPLY_LIST,
  REPLY_NONE,
  REPLY_ONE,
  REPLY_VALUES,
  type Command,
} from './commands.js'

export interface MemcachedOptions {
  /** Longest request or reply line; default 64 KiB (a multi-get of a few hundred keys). */
  readonly maxLineBytes?: number
  /** Largest data block (either side); default 1 GiB, memcached's own ceiling for `-I`. */
  readonly maxValueBytes?: number
}

export interface MemcachedLimits {
  readonly maxLineBytes: number
  readonly maxValueBytes: number
}

export const MEMCACHED_DEFAULTS: MemcachedLimits = Object.freeze({
  maxLineBytes: 64 * 1024,
  maxValueBytes: 1024 * 1024 * 1024,
})

/** Checks the options once, at the edge. */
export function memcachedLimits(options: MemcachedOptions = {}): MemcachedLimits {
  const issues: string[] = []
  const out = { ...MEMCACHED_DEFAULTS }
  for (const key of ['maxLineBytes', 'maxValueBytes'] as const) {
    const value = options[key]
    if (value === undefined) continue
    if (!Number.isSafeInteger(value) || value < 16)
      issues.push(`memcached.${key}: expected an integer of at least 16, got ${String(value)}`)
    else out[key] = value
  }
  if (issues.length > 0) throw new ConfigError(issues)
  return Object.freeze(out)
}

const CR = 13
const LF = 10
const SP = 32
/** Bytes of a line kept when it straddles chunks; memcached's own bound for a command line. */
const LINE_KEEP = 2048
/** Tokens looked at in one line (memcached: 24 for classic commands); the count goes on past it. */
const MAX_TOKENS = 32

// Queue flags.
const F_SAFE = 1
/** A quiet meta command: answered, if at all, before the `mn` that ends its run. */
const F_QUIET = 2
/** `mn`. */
const F_MN = 4
/** The reply shape sits above the flags. */
const SHAPE = 8

// Reply units, by their first word.
const U_OTHER = 0
const U_VALUE = 1
const U_END = 2
const U_ERROR = 3
const U_MN = 4

const STATS = COMMANDS.get('stats')!
const LRU_CRAWLER = COMMANDS.get('lru_crawler')!

const EMPTY = Buffer.alloc(0)

/** The words of one line, as offsets into its buffer: nothing allocated per line. */
class Tokens {
  readonly starts = new Int32Array(MAX_TOKENS)
  readonly ends = new Int32Array(MAX_TOKENS)
  /** Tokens kept (at most MAX_TOKENS). */
  kept = 0
  /** Tokens in the line. */
  count = 0
  lastStart = 0
  lastEnd = 0
  buf: Buffer = EMPTY

  /** memcached splits on spaces only. */
  split(buf: Buffer, from: number, to: number): void {
    this.buf = buf
    this.kept = 0
    this.count = 0
    let i = from
    while (i < to) {
      while (i < to && buf[i] === SP) i++
      if (i >= to) break
      const s = i
      while (i < to && buf[i] !== SP) i++
      if (this.kept < MAX_TOKENS) {
        this.starts[this.kept] = s
        this.ends[this.kept++] = i
      }
      this.count++
      this.lastStart = s
      this.lastEnd = i
    }
  }

  /** Let go of the line's buffer (a read buffer the reader may reuse, or a big chunk). */
  done(): void {
    this.buf = EMPTY
  }

  is(k: number, word: string): boolean {
    if (k >= this.kept) return false
    return equals(this.buf, this.starts[k]!, this.ends[k]!, word)
  }

  lastIs(word: string): boolean {
    return this.count > 0 && equals(this.buf, this.lastStart, this.lastEnd, word)
  }

  /** Token k as a decimal number (digits only, at most 15), or -1. */
  number(k: number): number {
    if (k >= this.kept) return -1
    const s = this.starts[k]!
    const e = this.ends[k]!
    if (e - s > 15) return -1
    let n = 0
    for (let i = s; i < e; i++) {
      const d = this.buf[i]! - 0x30
      if (d < 0 || d > 9) return -1
      n = n * 10 + d
    }
    return n
  }

  /** The first byte of token k (-1 if none). */
  first(k: number): number {
    return k < this.kept ? this.buf[this.starts[k]!]! : -1
  }

  /** The byte after the first of token k (-1 if none). */
  second(k: number): number {
    return k < this.kept && this.ends[k]! - this.starts[k]! > 1 ? this.buf[this.starts[k]! + 1]! : -1
  }

  length(k: number): number {
    return k < this.kept ? this.ends[k]! - this.starts[k]! : 0
  }
}

function equals(buf: Buffer, from: number, to: number, word: string): boolean {
  if (to - from !== word.length) return false
  for (let k = 0; k < word.length; k++) if (buf[from + k] !== word.charCodeAt(k)) return false
  return true
}

export class MemcachedFramer implements Framer, FramerExtras {
  readonly delimited = true
  pinned = false
  responseOpen = false
  openStart = -1
  /** `quit` was sent: the server's FIN that follows is the answer, and goes on to the client. */
  closeAfter = false
  private readonly sink: FramerSink
  private readonly limits: MemcachedLimits
  private readonly tokens = new Tokens()
  private readonly queue = new RequestQueue(F_SAFE, 16)
  /** Quiet requests queued since the last `mn`. */
  private openQuiet = 0
  private passThrough = false
  private failed: FramingError | undefined
  private clientSeen = 0
  private serverSeen = 0
  private released = 0

  // Request side.
  private midRequest = false
  private inData = false
  private reqLeft = 0
  private reqStart = 0
  private reqLine = 0
  private reqKept = 0
  private reqScratch: Buffer | undefined
  /** What the request whose line was read will be queued as. */
  private reqFlags = 0
  private reqShape = REPLY_ONE
  private reqCommand: Command | undefined

  // Reply side.
  /** Inside one unit (a line, or a line and its data block). */
  private midUnit = false
  /** Inside a reply of several units (VALUE blocks before END, a quiet run before MN). */
  private midReply = false
  private resData = false
  private resLeft = 0
  private resUnit = U_OTHER
  private resStart = 0
  private resLine = 0
  private resKept = 0
  private resScratch: Buffer | undefined

  constructor(limits: MemcachedLimits, sink: FramerSink) {
    this.limits = limits
    this.sink = sink
  }

  request(chunk: Buffer): FramingError | undefined {
    if (this.failed !== undefined) return this.failed
    const base = this.clientSeen
    const len = chunk.length
    let i = 0
    while (i < len && !this.passThrough) {
      if (this.inData) {
        const n = Math.min(len - i, this.reqLeft)
        i += n
        this.reqLeft -= n
        if (this.reqLeft === 0) {
          this.inData = false
          this.requestEnded(base + i)
        }
        continue
      }
      if (!this.midRequest) {
        this.midRequest = true
        if (chunk[i] === 0x80) {
          return this.fail(
            'ERR_BATON_FRAME_MALFORMED',
            'client',
            `request at offset ${base + i}: binary protocol (0x80) is not framed; use protocol opaque`
          )
        }
        this.midRequest = true
        this.reqStart = base + i
        this.reqLine = 0
        this.reqKept = 0
      }
      const nl = chunk.indexOf(LF, i)
      const stop = nl < 0 ? len : nl
      this.reqLine += stop - i
      if (this.reqLine > this.limits.maxLineBytes) {
        return this.fail(
          'ERR_BATON_FRAME_TOO_LARGE',
          'client',
          `request at offset ${this.reqStart}: line over maxLineBytes ${this.limits.maxLineBytes}`
        )
      }
      if (nl < 0) {
        this.reqKept = keep(chunk, i, len, (this.reqScratch ??= Buffer.allocUnsafe(LINE_KEEP)), this.reqKept)
        break
      }
      let err: FramingError | undefined
      if (this.reqKept === 0) {
        err = this.requestLine(chunk, i, nl)
      } else {
        this.reqKept = keep(chunk, i, nl, this.reqScratch!, this.reqKept)
        err = this.requestLine(this.reqScratch!, 0, this.reqKept)
      }
      if (err !== undefined) return err
      i = nl + 1
      if (!this.inData) this.requestEnded(base + i)
    }
    this.clientSeen = base + len
    if (this.passThrough) this.release(this.clientSeen)
    return undefined
  }

  /** A whole request line in `buf[from, to)` (without its LF): what it is, and whether data follows. */
  private requestLine(buf: Buffer, from: number, to: number): FramingError | undefined {
    if (to > from && buf[to - 1] === CR && this.reqLine <= LINE_KEEP) to--
    const t = this.tokens
    t.split(buf, from, to)
    const command = t.count === 0 ? commandOf(buf, 0, 0) : commandOf(buf, t.starts[0]!, t.ends[0]!)
    if (this.reqLine > LINE_KEEP && command.keysOnly !== true) {
      return this.fail(
        'ERR_BATON_FRAME_TOO_LARGE',
        'client',
        `request at offset ${this.reqStart}: command line over ${LINE_KEEP} bytes (memcached closes such a connection)`
      )
    }
    let shape = command.reply
    let flags = command.safe ? F_SAFE : 0
    this.reqCommand = command
    if (command === STATS) {
      // `stats reset` and `stats detail on|off` answer one line; `stats detail dump` is a list.
      if (t.is(1, 'reset') || (t.is(1, 'detail') && !t.is(2, 'dump'))) shape = REPLY_ONE
    } else if (command === LRU_CRAWLER) {
      if (t.is(1, 'metadump')) shape = REPLY_LIST
      else if (t.is(1, 'mgdump')) this.reqCommand = MGDUMP
    }
    const [min, max] = command.noreply
    if (min > 0 && t.count >= min && t.count <= max && t.lastIs('noreply')) shape = REPLY_NONE
    if (command.meta >= 0) {
      for (let k = command.meta; k < t.kept; k++) {
        const f = t.first(k)
        if (f === 0x71 /* q */ && t.length(k) === 1) flags |= F_QUIET
        // ms/md with a CAS to compare: a second run answers EX (exists).
        else if (f === 0x43 /* C */) flags &= ~F_SAFE
        // ms mode E (add), A (append), P (prepend): not idempotent.
        else if (f === 0x4d /* M */) {
          const m = t.second(k) | 0x20
          if (m === 0x65 || m === 0x61 || m === 0x70) flags &= ~F_SAFE
        }
      }
      // memcached's own quiet mode needs a reply shape: `q` never hides an error.
    }
    if (command.data >= 0 && t.count >= command.arity[0] && t.count <= command.arity[1]) {
      // A length that is not a number gets an error line and no data block read, as in memcached.
      const n = t.number(command.data)
      if (n >= 0) {
        if (n > this.limits.maxValueBytes) {
          return this.fail(
            'ERR_BATON_FRAME_TOO_LARGE',
            'client',
            `request at offset ${this.reqStart}: data block of ${n} bytes over maxValueBytes ${this.limits.maxValueBytes}`
          )
        }
        this.inData = true
        this.reqLeft = n + 2
      }
    }
    this.reqShape = shape
    this.reqFlags = flags
    t.done()
    return undefined
  }

  private requestEnded(end: number): void {
    this.midRequest = false
    const command = this.reqCommand!
    if (command.quit === true) this.closeAfter = true
    if (command.pass === true) return this.passThroughNow()
    if (this.reqShape === REPLY_NONE) {
      if (this.queue.count > 0) this.queue.extendLast(end)
      else this.release(end)
      return
    }
    let flags = this.reqFlags
    if (flags & F_QUIET) {
      this.openQuiet++
    } else if (this.openQuiet > 0) {
      // A run of quiet commands not ended by `mn`: its replies cannot be told from this one's.
      if (command !== MN) return this.passThroughNow()
      this.openQuiet = 0
      flags |= F_MN
    } else if (command === MN) {
      flags |= F_MN
    }
    this.queue.push(end, flags | (this.reqShape * SHAPE))
  }

  response(chunk: Buffer): FramingError | undefined {
    if (this.failed !== undefined) return this.failed
    const base = this.serverSeen
    const len = chunk.length
    let i = 0
    let start = -1
    while (i < len && !this.passThrough) {
      if (this.resData) {
        const n = Math.min(len - i, this.resLeft)
        i += n
        this.resLeft -= n
        if (this.resLeft === 0) {
          this.resData = false
          const err = this.unitEnded()
          if (err !== undefined) return err
        }
        continue
      }
      if (!this.midUnit) {
        if (!this.midReply) {
          if (this.queue.count === 0) {
            return this.fail(
              'ERR_BATON_FRAME_MALFORMED',
              'server',
              `reply at offset ${base + i}: a reply without a request`
            )
          }
          start = i
          this.resStart = base + i
        }
        this.midUnit = true
        this.resLine = 0
        this.resKept = 0
      }
      const nl = chunk.indexOf(LF, i)
      const stop = nl < 0 ? len : nl
      this.resLine += stop - i
      if (this.resLine > this.limits.maxLineBytes) {
        return this.fail(
          'ERR_BATON_FRAME_TOO_LARGE',
          'server',
          `reply at offset ${this.resStart}: line over maxLineBytes ${this.limits.maxLineBytes}`
        )
      }
      if (nl < 0) {
        this.resKept = keep(chunk, i, len, (this.resScratch ??= Buffer.allocUnsafe(LINE_KEEP)), this.resKept)
        break
      }
      let err: FramingError | undefined
      if (this.resKept === 0) {
        err = this.replyLine(chunk, i, nl)
      } else {
        this.resKept = keep(chunk, i, nl, this.resScratch!, this.resKept)
        err = this.replyLine(this.resScratch!, 0, this.resKept)
      }
      if (err !== undefined) return err
      i = nl + 1
      if (!this.resData) {
        const e = this.unitEnded()
        if (e !== undefined) return e
      }
    }
    this.serverSeen = base + len
    this.responseOpen = !this.passThrough && (this.midUnit || this.midReply)
    this.openStart = this.responseOpen ? start : -1
    return undefined
  }

  /** A whole reply line: which unit it begins, and whether a data block follows. */
  private replyLine(buf: Buffer, from: number, to: number): FramingError | undefined {
    if (to > from && buf[to - 1] === CR) to--
    const t = this.tokens
    t.split(buf, from, to)
    let unit = U_OTHER
    let data = -1
    if (t.is(0, 'VALUE')) {
      unit = U_VALUE
      data = t.number(3)
      if (t.count < 4 || data < 0)
        return this.fail(
          'ERR_BATON_FRAME_MALFORMED',
          'server',
          `reply at offset ${this.resStart}: a VALUE line without a length`
        )
    } else if (t.is(0, 'VA')) {
      data = t.number(1)
      if (data < 0)
        return this.fail(
          'ERR_BATON_FRAME_MALFORMED',
          'server',
          `reply at offset ${this.resStart}: a VA line without a length`
        )
    } else if (t.is(0, 'END')) {
      unit = U_END
    } else if (t.is(0, 'MN')) {
      unit = U_MN
    } else if (t.is(0, 'ERROR') || t.is(0, 'CLIENT_ERROR') || t.is(0, 'SERVER_ERROR')) {
      unit = U_ERROR
    }
    if (data > this.limits.maxValueBytes) {
      return this.fail(
        'ERR_BATON_FRAME_TOO_LARGE',
        'server',
        `reply at offset ${this.resStart}: data block of ${data} bytes over maxValueBytes ${this.limits.maxValueBytes}`
      )
    }
    t.done()
    this.resUnit = unit
    if (data >= 0) {
      this.resData = true
      this.resLeft = data + 2
    }
    return undefined
  }

  /** A reply unit is whole: does it end the oldest request's reply? */
  private unitEnded(): FramingError | undefined {
    this.midUnit = false
    const unit = this.resUnit
    const head = this.queue.peek()
    if (head & F_QUIET) {
      if (unit !== U_MN) {
        // A quiet command's answer: the run's reply goes on until MN.
        this.midReply = true
        return undefined
      }
      let end = 0
      while (this.queue.count > 0 && this.queue.peek() & F_QUIET) end = this.queue.shift()
      // The run's `mn` (queued, or the run would not be framed any more).
      if (this.queue.count > 0 && this.queue.peek() & F_MN) end = this.queue.shift()
      this.midReply = false
      this.release(end)
      return undefined
    }
    const shape = Math.floor(head / SHAPE)
    if (shape === REPLY_VALUES || shape === REPLY_LIST) {
      if (unit !== U_END && unit !== U_ERROR) {
        if (shape === REPLY_VALUES && unit !== U_VALUE) {
          return this.fail(
            'ERR_BATON_FRAME_MALFORMED',
            'server',
            `reply at offset ${this.resStart}: not a VALUE, END or error line in a retrieval's reply`
          )
        }
        this.midReply = true
        return undefined
      }
    }
    this.midReply = false
    this.release(this.queue.shift())
    return undefined
  }

  pending(): number {
    return this.passThrough ? 0 : this.queue.count + (this.midRequest ? 1 : 0)
  }

  requestOpen(): boolean {
    return !this.passThrough && this.midRequest
  }

  requestPartial(): boolean {
    return !this.passThrough && this.midRequest
  }

  /** A partial request counts as safe: memcached has not run it. */
  pendingSafe(): boolean {
    return this.queue.unsafe === 0
  }

  atBoundary(): boolean {
    return !this.passThrough && this.queue.count === 0 && !this.midRequest && !this.midUnit && !this.midReply
  }

  restartResponse(): void {
    this.midUnit = false
    this.midReply = false
    this.resData = false
    this.resLeft = 0
    this.responseOpen = false
    this.openStart = -1
  }

  /** Replies no longer pair with requests: every byte passes, the session is pinned. */
  private passThroughNow(): void {
    this.passThrough = true
    this.pinned = true
    this.queue.clear()
    this.openQuiet = 0
    this.midUnit = false
    this.midReply = false
    this.resData = false
    this.responseOpen = false
    this.openStart = -1
  }

  private release(upTo: number): void {
    if (upTo > this.released) {
      this.released = upTo
      this.sink.answered(upTo)
    }
  }

  private fail(code: FramingError['code'], side: 'client' | 'server', message: string): FramingError {
    this.tokens.done()
    this.responseOpen = false
    this.openStart = -1
    return (this.failed = new FramingError(code, side, message))
  }
}

const MN = COMMANDS.get('mn')!
/** `lru_crawler mgdump`: streams `mg` lines then `EN`, unlike any other reply; passed through. */
const MGDUMP: Command = Object.freeze({ ...LRU_CRAWLER, pass: true })

/** Copy `chunk[from, to)` after `kept` bytes of `into`, up to its size; returns the new count. */
function keep(chunk: Buffer, from: number, to: number, into: Buffer, kept: number): number {
  const n = Math.min(to - from, into.length - kept)
  if (n <= 0) return kept
  chunk.copy(into, kept, from, from + n)
  return kept + n
}

/** Validates `options` now (throwing `ConfigError`) and returns a factory of framers that share them. */
export function memcached(options?: MemcachedOptions): FramerFactory {
  const limits = memcachedLimits(options)
  return (sink: FramerSink) => new MemcachedFramer(limits, sink)
}
