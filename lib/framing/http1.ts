/**
 * `http1`: HTTP/1.0 and HTTP/1.1 (RFC 9112), pipelining included. Two incremental parsers, one per
 * direction, find where each request and each response ends; bodies are only counted, never held.
 * The one thing kept is the current head line (start line, header line, chunk-size line or
 * trailer line), in a small buffer that grows up to `maxHeadBytes`, so that header names and
 * values can be read.
 *
 *   client:   |== GET ==|== POST (head, body) ==|== HEAD ==|== GET (partial)
 *   queue:              ^e1                     ^e2        ^e3           <- ends + flags, oldest first
 *   server:   |== 200 ==|== 100 ==|== 201 ==|== 200 (partial)
 *             complete -> answered(e1)        complete -> answered(e2); the 100 answers nothing
 *
 * Each response is matched to the oldest unanswered request, whose method decides how the
 * response is framed (a HEAD response has no body; a 2xx to CONNECT starts a tunnel). A response
 * that completes while its request is still partial (an early 413, or a 417 to an
 * `Expect: 100-continue` whose body has not come yet) is held back, as in `length-prefixed`, until
 * the request's last byte is seen, since only then is its end offset known.
 *
 * Interim (1xx) responses answer nothing, but each is a response unit of its own for
 * `responseOpen`/`openStart`: if the server fails after a `100 Continue`, the replacement's
 * `100 Continue` simply goes to the client again (several 1xx are legal), rather than having to
 * match byte for byte.
 *
 * Response bodies (RFC 9112 §6.3): none after HEAD, 1xx, 204, 304; else chunked when the final
 * transfer coding is `chunked`; else Content-Length; else the server's close ends the body. While
 * such a close-delimited response is open, `closeDelimited` is true and `delimited` false: the
 * server's FIN is the response's end and goes on to the client (the framer never sees it).
 *
 * A `101 Switching Protocols`, or a 2xx to CONNECT, turns the session into a tunnel: `pinned`
 * becomes true, every client byte seen is released, and from then on neither direction is parsed
 * (`pending()` is 0, `delimited` false, so the session passes a server FIN on as a plain proxy
 * would). Client bytes after a CONNECT, or after a request asking to upgrade, are not parsed until
 * its response says whether they are tunnel data; if the server refuses and bytes did come, the
 * framing is lost and that is a (server-side) framing error.
 *
 * Strictness against request smuggling: CRLF only (bare CR or LF is an error), no obs-fold, no
 * space before the colon, token header names, Content-Length digits only (repeats allowed only
 * when identical), no Content-Length with Transfer-Encoding, `chunked` only once and last, strict
 * chunk-size lines. Client-side errors carry a `400 Bad Request` (431 for an oversized head) to
 * send before closing; the same rules on the server side close the session without a reply. Stray
 * empty lines before a request line are ignored (RFC 9112 §2.2); they belong to no request.
 */
import { ConfigError, FramingError } from '../errors.js'
import type { Framer, FramerExtras, FramerFactory, FramerSink } from './types.js'
import { RequestQueue } from './queue.js'

export interface Http1Options {
  /** Largest request or response head (start line, headers, final CRLF), and largest trailer section and chunk-size line. Default 64 KiB. */
  readonly maxHeadBytes?: number
}

export const DEFAULT_MAX_HEAD_BYTES = 64 * 1024
/** Smallest `maxHeadBytes` accepted: room for a minimal head. */
const MIN_HEAD_BYTES = 64

const CR = 13
const LF = 10
const SP = 32
const HTAB = 9

/** RFC 9110 tchar: the bytes allowed in a method and a header name. */
const TCHAR = new Uint8Array(256)
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = TCHAR[c + 32] = 1

/** Hex digit values, -1 for other bytes. */
const HEX = new Int8Array(256).fill(-1)
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c
for (let c = 0; c < 6; c++) HEX[0x41 + c] = HEX[0x61 + c] = 10 + c

/** Field values, reason phrases, chunk extensions: HTAB, SP, VCHAR, obs-text. */
const isText = (b: number): boolean => b === HTAB || (b >= 0x20 && b !== 0x7f)
const isOws = (b: number): boolean => b === SP || b === HTAB

// Request flags, kept per queued request.
const F_SAFE = 1 // idempotent method or Idempotency-Key: may be re-sent under `replay: safe`
const F_HEAD = 2 // its response has no body
const F_CONNECT = 4 // a 2xx answer starts a tunnel
const F_TUNNEL = 8 // CONNECT or an upgrade request: later client bytes wait for its response
const F_EXPECT = 16 // Expect: 100-continue (recorded; framing needs nothing more than 1xx handling)
const F_METHOD = 32 // the request line has been read (the method is known)
const F_CLOSE = 64 // the client asked for the connection to close after the response

const SAFE_METHODS = ['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']

// Parser states.
const S_START = 0 // the start line (or stray empty lines before a request line)
const S_HEADER = 1
const S_BODY = 2 // Content-Length body: `remaining` bytes to go
const S_CHUNK_SIZE = 3
const S_CHUNK_DATA = 4 // `remaining` bytes of chunk data to go
const S_CHUNK_CR = 5 // the CRLF after chunk data
const S_CHUNK_LF = 6
const S_TRAILER = 7
const S_CLOSE = 8 // close-delimited response body: everything until the FIN
const S_AWAIT = 9 // request side, after CONNECT or an upgrade request: not parsed until its response

// What `scan()` stopped for.
const E_NONE = 0
const E_HEAD = 1 // the head is whole: the framer picks the body with `beginBody()`
const E_END = 2 // a message ended at the index returned

type Body = 'none' | 'length' | 'chunked' | 'close'

/** Sent to a client whose request head did not arrive whole within `requestTimeout`. */
const REQUEST_TIMEOUT_REPLY = Buffer.from(
  'HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: 22\r\nConnection: close\r\n\r\nrequest head too slow\n',
  'latin1'
)

/** The `reply` of a client-side error: a complete response, then the session closes the client. */
function errorReply(status: 400 | 431, what: string): Buffer {
  const reason = status === 400 ? 'Bad Request' : 'Request Header Fields Too Large'
  const text = `${reason}: ${what}\n`
  return Buffer.from(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Length: ${Buffer.byteLength(text)}\r\n` +
      `Connection: close\r\n\r\n${text}`
  )
}

/** `buf[start, start + len)` equals the lower-case ASCII `name`, ignoring case. */
function nameIs(buf: Buffer, start: number, len: number, name: string): boolean {
  if (len !== name.length) return false
  for (let k = 0; k < len; k++) {
    if ((buf[start + k]! | 0x20) !== name.charCodeAt(k)) return false
  }
  return true
}

/** `buf[start, start + len)` equals `text` exactly (methods are case-sensitive). */
function bytesAre(buf: Buffer, start: number, len: number, text: string): boolean {
  if (len !== text.length) return false
  for (let k = 0; k < len; k++) if (buf[start + k] !== text.charCodeAt(k)) return false
  return true
}

/** The `line` of a parser between lines. */
const NO_LINE = Buffer.alloc(0)

/**
 * Where a line found whole in one chunk is read, shared by every parser of the process: parsing is
 * synchronous and `onLine` calls nothing outside the parser, so no two parsers use it at once. Only
 * a line split across chunks needs bytes of a parser's own (`partial`), so an idle parser holds no
 * buffer (issue 11: two 256-byte line buffers per http1 session, 0.5 KiB of every idle one).
 */
let scratch = Buffer.allocUnsafeSlow(256)

/**
 * Follows the messages of one direction. `scan()` consumes bytes until a head is whole, a message
 * ends, or the chunk ends; `event` says which.
 */
class MessageParser {
  private readonly side: 'request' | 'response'
  private readonly max: number
  state = S_START
  event = E_NONE
  /** The whole line being read, CRLF included: set only while `onLine` runs (see `scratch`). */
  private line: Buffer = NO_LINE
  /** Bytes of the current line so far: gathered in `partial` while it spans chunks. */
  private lineLen = 0
  /** A line split across chunks, until its LF arrives; grows by doubling up to `max`. */
  private partial: Buffer | undefined = undefined
  /** Bytes of the completed lines of the current head or trailer section. */
  private headBytes = 0
  /** Body or chunk-data bytes still to come. */
  private remaining = 0
  /** Client bytes seen in `S_AWAIT`. */
  held = 0
  /** Absolute offset where `S_AWAIT` began: the first byte after the tunnel request. */
  awaitFrom = 0
  /** Absolute offset (in this direction) of the current message's first byte, for messages. */
  private messageStart = 0
  error: FramingError | undefined

  // What the head said. Reset at each message's first byte.
  /** F_* flags (request side). */
  flags = 0
  status = 0
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor = 1
  contentLength = -1
  /** Transfer codings listed, how many of them were `chunked`, and whether the last one was. */
  private codings = 0
  private chunkedCount = 0
  private chunkedLast = false
  private upgrade = false
  private connectionUpgrade = false
  /** `Connection: close`, and `Connection: keep-alive` (which HTTP/1.0 needs to stay open). */
  connectionClose = false
  keepAlive = false

  constructor(side: 'request' | 'response', max: number) {
    this.side = side
    this.max = max
  }

  /** A message has begun and not ended (a request waiting in `S_AWAIT` has ended). */
  get midMessage(): boolean {
    return (this.state !== S_START && this.state !== S_AWAIT) || this.lineLen > 0
  }

  /** Forget the current message: the next byte starts a new one. */
  reset(): void {
    this.state = S_START
    this.lineLen = 0
    this.partial = undefined
    this.headBytes = 0
    this.remaining = 0
    this.held = 0
  }

  /** Request side: wait (counting, not parsing) until the response says what follows. */
  await(at: number): void {
    this.state = S_AWAIT
    this.held = 0
    this.awaitFrom = at
  }

  /** Absolute offset of the current message's first byte. */
  get start(): number {
    return this.messageStart
  }

  /** The message's head is not whole yet. */
  get inHead(): boolean {
    return this.midMessage && (this.state === S_START || this.state === S_HEADER)
  }

  /**
   * After `E_HEAD`, frame the body. `'none'` ends the message here (`event` becomes `E_END`).
   */
  beginBody(body: Body, length = 0): void {
    this.headBytes = 0
    if (body === 'length' && length > 0) {
      this.state = S_BODY
      this.remaining = length
    } else if (body === 'chunked') {
      this.state = S_CHUNK_SIZE
    } else if (body === 'close') {
      this.state = S_CLOSE
    } else {
      this.state = S_START
      this.event = E_END
    }
  }

  /**
   * Consume `chunk` from `i` (< chunk.length; `base` is the absolute offset of chunk[0]) until the
   * chunk ends or an event. Returns the index reached, or -1 with `error` set.
   */
  scan(chunk: Buffer, i: number, base: number): number {
    this.event = E_NONE
    const len = chunk.length
    switch (this.state) {
      case S_BODY:
      case S_CHUNK_DATA: {
        const avail = len - i
        if (avail < this.remaining) {
          this.remaining -= avail
          return len
        }
        i += this.remaining
        this.remaining = 0
        if (this.state === S_BODY) {
          this.state = S_START
          this.event = E_END
        } else {
          this.state = S_CHUNK_CR
        }
        return i
      }
      case S_CHUNK_CR:
        if (chunk[i] !== CR) return this.fail('bad chunk terminator: no CRLF after the chunk data')
        this.state = S_CHUNK_LF
        return i + 1
      case S_CHUNK_LF:
        if (chunk[i] !== LF) return this.fail('bad chunk terminator: no CRLF after the chunk data')
        this.state = S_CHUNK_SIZE
        return i + 1
      case S_CLOSE:
        return len
      case S_AWAIT:
        this.held += len - i
        return len
      default:
        return this.scanLine(chunk, i, base)
    }
  }

  /** Gather one line (start, header, chunk-size or trailer) and act on it once its LF is in. */
  private scanLine(chunk: Buffer, i: number, base: number): number {
    if (this.state === S_START && this.lineLen === 0) this.beginMessage(base + i)
    const lf = chunk.indexOf(LF, i)
    const stop = lf < 0 ? chunk.length : lf + 1
    const n = stop - i
    if (this.headBytes + this.lineLen + n > this.max) return this.tooLarge()
    const have = this.lineLen
    const total = have + n
    let line: Buffer
    if (lf >= 0 && have === 0) {
      // Whole in this chunk, the common case: read in the buffer every parser shares.
      if (scratch.length < n) scratch = Buffer.allocUnsafeSlow(Math.max(n, scratch.length * 2))
      line = scratch
    } else {
      // Split across chunks: this parser's own bytes until the LF, let go once the line is whole.
      let part = this.partial
      if (part === undefined || part.length < total) {
        const grown = Buffer.allocUnsafe(Math.min(this.max, Math.max(part === undefined ? 256 : part.length * 2, total)))
        if (part !== undefined) part.copy(grown, 0, 0, have)
        part = grown
      }
      line = part
      this.partial = lf < 0 ? part : undefined
    }
    chunk.copy(line, have, i, stop)
    this.lineLen = total
    if (lf < 0) return stop
    const end = total - 2 // content ends before the CRLF
    if (end < 0 || line[end] !== CR) return this.fail('bare LF (lines must end in CRLF)')
    if (line.indexOf(CR) < end) return this.fail('bare CR')
    this.headBytes += total
    this.lineLen = 0
    this.line = line
    const ok = this.onLine(end)
    this.line = NO_LINE
    return ok ? stop : -1
  }

  private beginMessage(at: number): void {
    this.messageStart = at
    this.headBytes = 0
    this.flags = 0
    this.status = 0
    this.minor = 1
    this.contentLength = -1
    this.codings = 0
    this.chunkedCount = 0
    this.chunkedLast = false
    this.upgrade = false
    this.connectionUpgrade = false
    this.connectionClose = false
    this.keepAlive = false
  }

  /** A whole line of `end` content bytes is in `this.line`. False on error. */
  private onLine(end: number): boolean {
    switch (this.state) {
      case S_START:
        if (end === 0) {
          if (this.side === 'response') return this.bad('empty line before the status line')
          this.headBytes = 0 // a stray CRLF before a request line: no part of any request
          return true
        }
        this.state = S_HEADER
        return this.side === 'request' ? this.requestLine(end) : this.statusLine(end)
      case S_HEADER:
        if (end === 0) {
          this.event = E_HEAD
          return true
        }
        return this.fieldLine(end, true)
      case S_TRAILER:
        if (end === 0) {
          this.state = S_START
          this.event = E_END
          return true
        }
        return this.fieldLine(end, false)
      default:
        return this.chunkSizeLine(end)
    }
  }

  /** `METHOD SP request-target SP HTTP/1.x` */
  private requestLine(end: number): boolean {
    const line = this.line
    let j = 0
    while (j < end && TCHAR[line[j]!] === 1) j++
    if (j === 0 || line[j] !== SP) return this.malformedStartLine()
    let k = j + 1
    while (k < end && line[k]! > SP && line[k] !== 0x7f) k++
    if (k === j + 1 || line[k] !== SP || !this.version(k + 1, end)) return this.malformedStartLine()
    let flags = F_METHOD
    for (const m of SAFE_METHODS) if (bytesAre(line, 0, j, m)) flags |= F_SAFE
    if (bytesAre(line, 0, j, 'HEAD')) flags |= F_HEAD
    if (bytesAre(line, 0, j, 'CONNECT')) flags |= F_CONNECT | F_TUNNEL
    this.flags = flags
    return true
  }

  /** `HTTP/1.x SP 3DIGIT SP reason`; the SP before an empty reason may be missing. */
  private statusLine(end: number): boolean {
    const line = this.line
    if (end < 12 || !this.version(0, 8) || line[8] !== SP) return this.malformedStartLine()
    let status = 0
    for (let k = 9; k < 12; k++) {
      const d = line[k]! - 0x30
      if (d < 0 || d > 9) return this.malformedStartLine()
      status = status * 10 + d
    }
    if (status < 100 || (end > 12 && line[12] !== SP)) return this.malformedStartLine()
    for (let k = 13; k < end; k++) if (!isText(line[k]!)) return this.malformedStartLine()
    this.status = status
    return true
  }

  /** `HTTP/1.` and a digit, exactly filling [from, to). */
  private version(from: number, to: number): boolean {
    const line = this.line
    if (to - from !== 8 || !bytesAre(line, from, 7, 'HTTP/1.')) return false
    const minor = line[from + 7]! - 0x30
    if (minor < 0 || minor > 9) return false
    this.minor = minor === 0 ? 0 : 1
    return true
  }

  private malformedStartLine(): boolean {
    return this.bad(
      this.side === 'request'
        ? 'malformed request line (expected METHOD SP target SP HTTP/1.x)'
        : 'malformed status line (expected HTTP/1.x SP status SP reason)'
    )
  }

  /** `name ":" OWS value OWS`; in the head (`semantic`), the framing headers are read. */
  private fieldLine(end: number, semantic: boolean): boolean {
    const line = this.line
    const first = line[0]!
    if (isOws(first)) return this.bad('obs-fold (a field line starting with whitespace)')
    let j = 0
    while (j < end && TCHAR[line[j]!] === 1) j++
    if (j < end && line[j] !== 0x3a) {
      return this.bad(
        isOws(line[j]!)
          ? 'whitespace between a field name and its colon'
          : 'invalid character in a field name'
      )
    }
    if (j === 0 || j === end) return this.bad('a field line without a name and a colon')
    let from = j + 1
    let to = end
    while (from < to && isOws(line[from]!)) from++
    while (to > from && isOws(line[to - 1]!)) to--
    for (let k = from; k < to; k++)
      if (!isText(line[k]!)) return this.bad('invalid character in a field value')
    if (!semantic) return true
    if (nameIs(line, 0, j, 'content-length')) return this.contentLengthField(from, to)
    if (nameIs(line, 0, j, 'transfer-encoding')) return this.transferEncodingField(from, to)
    if (this.side === 'request') {
      if (nameIs(line, 0, j, 'idempotency-key')) this.flags |= F_SAFE
      else if (nameIs(line, 0, j, 'expect')) {
        if (nameIs(line, from, to - from, '100-continue')) this.flags |= F_EXPECT
      } else if (nameIs(line, 0, j, 'upgrade')) this.upgrade = to > from
    }
    if (nameIs(line, 0, j, 'connection')) this.connectionField(from, to)
    return true
  }

  /** `1*DIGIT`, or a comma list of identical ones; every repeat of the field must agree. */
  private contentLengthField(from: number, to: number): boolean {
    const line = this.line
    let k = from
    for (;;) {
      while (k < to && isOws(line[k]!)) k++
      let value = 0
      let digits = 0
      while (k < to && line[k]! >= 0x30 && line[k]! <= 0x39) {
        value = value * 10 + line[k]! - 0x30
        digits++
        k++
      }
      while (k < to && isOws(line[k]!)) k++
      if (digits === 0 || (k < to && line[k] !== 0x2c)) {
        return this.bad('Content-Length is not a non-negative integer')
      }
      if (digits > 15) return this.bad('Content-Length has more than 15 digits')
      if (this.contentLength >= 0 && this.contentLength !== value) {
        return this.bad('differing Content-Length values')
      }
      this.contentLength = value
      if (k === to) return true
      k++ // the comma
    }
  }

  /** A comma list of codings (parameters after `;`); empty list elements are skipped. */
  private transferEncodingField(from: number, to: number): boolean {
    const line = this.line
    let k = from
    while (k <= to) {
      let e = k
      while (e < to && line[e] !== 0x2c) e++
      let s = k
      while (s < e && isOws(line[s]!)) s++
      let name = s
      while (name < e && TCHAR[line[name]!] === 1) name++
      if (name > s) {
        this.codings++
        let rest = name
        while (rest < e && isOws(line[rest]!)) rest++
        const chunked = nameIs(line, s, name - s, 'chunked') && rest === e
        if (chunked) this.chunkedCount++
        this.chunkedLast = chunked
      } else if (s < e) {
        return this.bad('malformed Transfer-Encoding')
      }
      k = e + 1
    }
    return true
  }

  /** Connection: a comma list of tokens; `upgrade`, `close` and `keep-alive` matter. */
  private connectionField(from: number, to: number): void {
    const line = this.line
    let k = from
    while (k < to) {
      while (k < to && (isOws(line[k]!) || line[k] === 0x2c)) k++
      const s = k
      while (k < to && TCHAR[line[k]!] === 1) k++
      if (nameIs(line, s, k - s, 'upgrade')) this.connectionUpgrade = true
      else if (nameIs(line, s, k - s, 'close')) this.connectionClose = true
      else if (nameIs(line, s, k - s, 'keep-alive')) this.keepAlive = true
      while (k < to && line[k] !== 0x2c) k++
    }
  }

  /** `1*HEXDIG [ BWS ";" chunk-ext ]`; a zero size starts the trailer section. */
  private chunkSizeLine(end: number): boolean {
    const line = this.line
    let size = 0
    let k = 0
    while (k < end && HEX[line[k]!]! >= 0) {
      size = size * 16 + HEX[line[k]!]!
      k++
    }
    if (k === 0) return this.bad('malformed chunk size (no hex digits)')
    if (k > 16 || size > Number.MAX_SAFE_INTEGER) return this.bad('malformed chunk size (too long)')
    while (k < end && isOws(line[k]!)) k++
    if (k < end) {
      if (line[k] !== 0x3b) return this.bad('malformed chunk size')
      for (k++; k < end; k++) if (!isText(line[k]!)) return this.bad('invalid character in a chunk extension')
    } else if (isOws(line[end - 1]!)) {
      return this.bad('malformed chunk size (trailing whitespace)')
    }
    this.headBytes = 0
    if (size === 0) {
      this.state = S_TRAILER
    } else {
      this.state = S_CHUNK_DATA
      this.remaining = size
    }
    return true
  }

  /**
   * After `E_HEAD`: how the body is framed by Transfer-Encoding and Content-Length, or a message
   * for what is wrong with them. `chunked` only once and last; no Content-Length beside it; no
   * transfer coding at all in HTTP/1.0 (RFC 9112 §6.1: faulty framing).
   */
  framing(): 'chunked' | 'length' | 'none' | 'not chunked' | { problem: string } {
    if (this.codings === 0) return this.contentLength >= 0 ? 'length' : 'none'
    if (this.contentLength >= 0) return { problem: 'both Content-Length and Transfer-Encoding' }
    if (this.minor === 0) return { problem: 'Transfer-Encoding in an HTTP/1.0 message' }
    if (this.chunkedCount > 1) return { problem: 'chunked applied more than once' }
    return this.chunkedLast ? 'chunked' : 'not chunked'
  }

  /** The request asks to switch protocols (`Upgrade` named in `Connection`). */
  /** The message says the connection ends after this exchange. */
  get closes(): boolean {
    return this.connectionClose || (this.minor === 0 && !this.keepAlive)
  }

  get upgradeRequested(): boolean {
    return this.upgrade && this.connectionUpgrade
  }

  private tooLarge(): -1 {
    const what =
      this.state === S_CHUNK_SIZE
        ? 'chunk-size line'
        : this.state === S_TRAILER
          ? 'trailer section'
          : `${this.side} head`
    return this.fail(`${what} larger than maxHeadBytes ${this.max}`, 'ERR_BATON_FRAME_TOO_LARGE')
  }

  /** `fail()` for the line handlers, which return false on error. */
  private bad(what: string): false {
    this.fail(what)
    return false
  }

  fail(what: string, code: FramingError['code'] = 'ERR_BATON_FRAME_MALFORMED'): -1 {
    const message = `${this.side} at offset ${this.messageStart}: ${what}`
    if (this.side === 'request') {
      const status = code === 'ERR_BATON_FRAME_TOO_LARGE' && this.state !== S_CHUNK_SIZE ? 431 : 400
      this.error = new FramingError(code, 'client', message, errorReply(status, what))
    } else {
      this.error = new FramingError(code, 'server', message)
    }
    return -1
  }
}

export class Http1Framer implements Framer, FramerExtras {
  responseOpen = false
  openStart = -1
  pinned = false
  closeDelimited = false
  /**
   * The last exchange said the connection ends after it (`Connection: close` either way, or
   * HTTP/1.0 without keep-alive): the server's FIN that follows is expected and goes on to the
   * client, where an unannounced one (an idle keep-alive close) is hidden.
   */
  closeAfter = false
  private readonly sink: FramerSink
  private readonly requests: MessageParser
  private readonly responses: MessageParser
  private readonly queue = new RequestQueue(F_SAFE)
  /** The partial request's response has already completed; answer it when the request does. */
  private answeredEarly = false
  /** The response being parsed is interim (1xx): it answers nothing. */
  private interim = false
  private clientSeen = 0
  private serverSeen = 0
  /** The highest offset given to `sink.answered()`. */
  private released = 0
  /** The first framing error; once set, the framer is finished and returns it on every call. */
  private failed: FramingError | undefined

  constructor(maxHeadBytes: number, sink: FramerSink) {
    this.sink = sink
    this.requests = new MessageParser('request', maxHeadBytes)
    this.responses = new MessageParser('response', maxHeadBytes)
  }

  /** The open response's head is not whole yet (the session holds such bytes back from the client). */
  get responseInHead(): boolean {
    const r = this.responses
    return r.midMessage && (r.state === S_START || r.state === S_HEADER)
  }

  /** The open response's body is chunked. */
  get responseChunked(): boolean {
    const state = this.responses.state
    return state >= S_CHUNK_SIZE && state <= S_TRAILER
  }

  /** False while the server's close is what ends the open response, and in a tunnel. */
  get delimited(): boolean {
    return !this.closeDelimited && !this.pinned
  }

  request(chunk: Buffer): FramingError | undefined {
    if (this.failed !== undefined) return this.failed
    const len = chunk.length
    if (this.pinned) {
      // Tunnel bytes: release everything before this chunk (the session holds it by now).
      if (this.clientSeen > this.released) this.answer(this.clientSeen)
      this.clientSeen += len
      return undefined
    }
    const parser = this.requests
    const base = this.clientSeen
    let i = 0
    while (i < len) {
      i = parser.scan(chunk, i, base)
      if (i < 0) return (this.failed = parser.error)
      if (parser.event === E_HEAD && !this.requestHead()) return (this.failed = parser.error)
      if (parser.event === E_END) this.requestEnded(base + i)
    }
    this.clientSeen = base + len
    return undefined
  }

  response(chunk: Buffer): FramingError | undefined {
    if (this.failed !== undefined) return this.failed
    if (this.pinned) return undefined
    const parser = this.responses
    const base = this.serverSeen
    const len = chunk.length
    let i = 0
    // Where in this chunk the response still open at the end of it began; -1 if in an earlier chunk.
    let start = -1
    while (i < len) {
      if (!parser.midMessage) {
        if (this.queue.count === 0 && !(this.requests.midMessage && !this.answeredEarly)) {
          return this.fail(
            new FramingError(
              'ERR_BATON_FRAME_MALFORMED',
              'server',
              `response at offset ${base + i}: a response without a request`
            )
          )
        }
        start = i
      }
      i = parser.scan(chunk, i, base)
      if (i < 0) return this.fail(parser.error)
      if (parser.event === E_HEAD) {
        if (!this.responseHead()) return this.fail(parser.error)
        if (this.pinned) return undefined
      }
      if (parser.event === E_END) this.responseEnded()
    }
    this.serverSeen = base + len
    this.responseOpen = parser.midMessage
    this.openStart = this.responseOpen ? start : -1
    return undefined
  }

  /**
   * Client bytes from this absolute offset on must not reach the server yet (-1: none held): a
   * request head that is not whole (it is checked whole first: an oversized or malformed head is
   * refused without a byte of it forwarded), or bytes after a CONNECT or upgrade request, which wait
   * for its response (a 101 makes them tunnel bytes; a refusal, the next request).
   */
  holdFrom(): number {
    if (this.pinned || this.failed !== undefined) return -1
    const r = this.requests
    if (r.state === S_AWAIT) return r.awaitFrom
    return r.inHead ? r.start : -1
  }

  /** A request head is partly read (`requestTimeout` bounds it, as HAProxy's `timeout http-request`). */
  requestPartial(): boolean {
    return !this.pinned && this.requests.inHead
  }

  readonly timeoutReply = REQUEST_TIMEOUT_REPLY

  /** A request has begun and not ended. */
  requestOpen(): boolean {
    return !this.pinned && this.requests.midMessage
  }

  pending(): number {
    if (this.pinned) return 0
    const partial = this.requests.midMessage || this.requests.held > 0
    return this.queue.count + (partial ? 1 : 0)
  }

  pendingSafe(): boolean {
    if (this.queue.unsafe > 0 || this.requests.held > 0) return false
    // A request whose request line is not whole cannot have been acted on: safe to re-send.
    const flags = this.requests.flags
    return !this.requests.midMessage || (flags & F_METHOD) === 0 || (flags & F_SAFE) !== 0
  }

  atBoundary(): boolean {
    return (
      !this.pinned &&
      this.queue.count === 0 &&
      !this.requests.midMessage &&
      this.requests.held === 0 &&
      !this.responses.midMessage
    )
  }

  restartResponse(): void {
    this.responses.reset()
    this.responseOpen = false
    this.openStart = -1
    this.closeDelimited = false
    this.interim = false
  }

  /** The request head is whole: frame its body. False on error. */
  private requestHead(): boolean {
    const parser = this.requests
    const framing = parser.framing()
    if (framing === 'not chunked') {
      parser.fail('Transfer-Encoding whose final coding is not chunked')
      return false
    }
    if (typeof framing === 'object') {
      parser.fail(framing.problem)
      return false
    }
    if (parser.upgradeRequested) parser.flags |= F_TUNNEL
    if (parser.closes) parser.flags |= F_CLOSE
    // CONNECT has no content (RFC 9110 §9.3.6): what follows the head is for the tunnel.
    if ((parser.flags & F_CONNECT) !== 0) parser.beginBody('none')
    else parser.beginBody(framing, parser.contentLength)
    return true
  }

  private requestEnded(end: number): void {
    const parser = this.requests
    if (this.answeredEarly) {
      this.answeredEarly = false
      this.answer(end)
      return
    }
    this.queue.push(end, parser.flags)
    if ((parser.flags & F_TUNNEL) !== 0) parser.await(end)
  }

  /** The response head is whole: pin, or frame its body. False on error. */
  private responseHead(): boolean {
    const parser = this.responses
    const status = parser.status
    const queued = this.queue.count > 0
    const flags = queued ? this.queue.peek() : this.requests.flags
    if (status === 101 || ((flags & F_CONNECT) !== 0 && status >= 200 && status < 300)) {
      this.pin()
      return true
    }
    this.interim = status < 200
    if (!this.interim && (flags & F_TUNNEL) !== 0) {
      // A CONNECT or an upgrade refused: HTTP goes on, if nothing else came meanwhile.
      if (!queued) {
        this.requests.flags &= ~F_TUNNEL // still partial: it must not wait once complete
      } else if (this.requests.held > 0) {
        parser.fail('the client sent data after a request whose tunnel the server refused')
        return false
      } else {
        this.requests.reset()
      }
    }
    if (this.interim || (flags & F_HEAD) !== 0 || status === 204 || status === 304) {
      parser.beginBody('none')
      return true
    }
    const framing = parser.framing()
    if (framing === 'not chunked') {
      // RFC 9112 §6.3: a response whose final coding is not chunked runs to the close.
      this.closeDelimited = true
      parser.beginBody('close')
    } else if (framing === 'chunked' || framing === 'length') {
      parser.beginBody(framing, parser.contentLength)
    } else if (framing === 'none') {
      this.closeDelimited = true
      parser.beginBody('close')
    } else {
      parser.fail(framing.problem)
      return false
    }
    return true
  }

  private responseEnded(): void {
    if (this.interim) {
      this.interim = false
      return
    }
    const flags = this.queue.count > 0 ? this.queue.peek() : this.requests.flags
    this.closeAfter = (flags & F_CLOSE) !== 0 || this.responses.closes
    if (this.queue.count > 0) this.answer(this.queue.shift())
    else this.answeredEarly = true // its request is the partial one (checked when the response began)
  }

  /** A tunnel from here on: release every client byte and stop parsing. */
  private pin(): void {
    this.pinned = true
    this.responseOpen = false
    this.openStart = -1
    this.closeDelimited = false
    this.queue.clear()
    this.answeredEarly = false
    this.requests.reset()
    this.responses.reset()
    if (this.clientSeen > this.released) this.answer(this.clientSeen)
  }

  private answer(upTo: number): void {
    this.released = upTo
    this.sink.answered(upTo)
  }

  private fail(error: FramingError | undefined): FramingError | undefined {
    this.responseOpen = false
    this.openStart = -1
    return (this.failed = error)
  }
}

/** Validates `options` now (throwing `ConfigError`) and returns a factory of framers that share them. */
export function http1(options: Http1Options = {}): FramerFactory {
  const { maxHeadBytes = DEFAULT_MAX_HEAD_BYTES } = options
  if (!Number.isSafeInteger(maxHeadBytes) || maxHeadBytes < MIN_HEAD_BYTES) {
    throw new ConfigError([
      `http1.maxHeadBytes: expected an integer of at least ${MIN_HEAD_BYTES}, got ${String(maxHeadBytes)}`,
    ])
  }
  return (sink: FramerSink) => new Http1Framer(maxHeadBytes, sink)
}
