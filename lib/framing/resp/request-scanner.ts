/**
 * The RESP request scanner: follows client commands (multibulk and inline) byte by byte across
 * chunks, keeps the command name and, for the commands whose arguments matter, the first few of
 * them, and classifies each whole request with the command table.
 */
import { FramingError } from '../../errors.js'
import {
  argIs,
  COMMANDS,
  encodeCommand,
  F_ARGS,
  F_BLOCKING,
  F_PASS,
  F_PIN,
  F_SAFE,
  F_STATE,
  FEW_ARGS,
  NAME_MAX,
  SAFE_COMMANDS,
  SHORT_NAME,
  SHORT_NAMES,
  upper,
} from './commands.js'
import { bulkLength, CR, LF, type Limits, MAX_COUNT, wholeBulkString } from './wire.js'

/** Bytes kept of a state command's arguments, or of an inline line. */
const SCRATCH_MAX = 4096

const NO_ARGS: readonly Buffer[] = []

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
export class RequestScanner {
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
    this.error = new FramingError(code, 'client', `request at offset ${this.start}: ${what}`)
    return -1
  }
}
