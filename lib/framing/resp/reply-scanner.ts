/**
 * The RESP reply scanner: follows RESP2 and RESP3 replies of any type, nested, across chunks,
 * keeping a stack of element counts and nothing of the data.
 */
import { FramingError } from '../../errors.js'
import { CR, LF, type Limits, MAX_COUNT, wholeBulkString } from './wire.js'

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

export const PUSH = 0x3e // >

/**
 * Follows replies of any RESP2/RESP3 type. `scan()` consumes until a top-level reply ends (an
 * attribute before it is part of it) or the chunk does; `midReply` says which. `topType` is the
 * reply's type byte (0 until read): `>` for a push, `-` or `!` for an error.
 */
export class ReplyScanner {
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
    this.error = new FramingError(code, 'server', `${this.side} at offset ${this.replyStart}: ${what}`)
    return false
  }

  private stop(code: FramingError['code'], what: string): -1 {
    this.fail(code, what)
    return -1
  }
}
