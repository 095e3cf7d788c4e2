/**
 * http1 verified resume: what the client already has of a response that was cut part-way, and how
 * a replacement server's answer is fitted onto it.
 *
 * `ClientView` follows the bytes written to the client for the open response: its head (kept as a
 * reference), then the body — decoded when chunked — as a running SHA-1 and a count, and, for a
 * chunked body, where in the chunk framing the client stands. It sees every byte the client gets,
 * whether it came straight from a server or was made by a resumer, so after any number of
 * failovers it is still exactly the client's view.
 *
 * `Http1Resumer` reads the replacement's answer to the re-sent request:
 *
 *   head     its own head, never forwarded: 1xx skipped; a `206` to our `Range` must say
 *            `bytes B-(L-1)/L` with the same ETag (then its body is the rest, passed on as-is);
 *            anything else must match the client's head on status and representation fields
 *   verify   the first B body bytes (decoded when chunked) must hash to what the client has
 *   finish   chunked: complete the chunk the client is in the middle of with exactly the missing
 *            bytes, or the CRLF after it
 *   rechunk  chunked: every further run of data becomes a chunk of its own; then `0`, and the
 *            replacement's trailer section as it is
 *
 * A Content-Length body needs no re-framing: once verified, the replacement's bytes go on as they
 * are (the resumer is done and the session's ordinary path takes over). A chunked one is re-chunked
 * to its end, since the replacement's chunks need not fall where the client's did.
 *
 * Only failovers use this code; the ordinary path pays for `ClientView.observe`: a `LazyHash` update
 * (an array push for bodies under 64 KiB) and,
 * for a chunked body, a small decoder.
 */
import { createHash } from 'node:crypto'
import { LazyHash } from '../replay/lazy-hash.js'
import { RESUME_DIFFERS, type ResumeStep } from '../replay/resume.js'

export type { ResumeStep }

export const HEAD_END = Buffer.from('\r\n\r\n')
const CRLF = Buffer.from('\r\n')
const LF_ONLY = Buffer.from('\n')
const LAST_CHUNK = Buffer.from('0\r\n')

/** Fields that identify an HTTP representation: a resumed body must come from the same one. */
const IDENTITY_FIELDS = new Set([
  'content-length',
  'transfer-encoding',
  'etag',
  'last-modified',
  'content-type',
  'content-encoding',
  'content-range',
])

/** Header fields of a head, names lower-cased; repeated fields joined with ", ". */
function fields(head: Buffer): Map<string, string> {
  const lines = head.toString('latin1').split('\r\n')
  const map = new Map<string, string>()
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!
    const colon = line.indexOf(':')
    if (colon <= 0) continue
    const name = line.slice(0, colon).toLowerCase()
    const value = line.slice(colon + 1).trim()
    const seen = map.get(name)
    map.set(name, seen === undefined ? value : `${seen}, ${value}`)
  }
  return map
}

function status(head: Buffer): number {
  return Number(head.toString('latin1', 9, 12))
}

/** The status code and the identifying fields of an HTTP response head, order-independent. */
export function headIdentity(head: Buffer): string {
  const parts: string[] = []
  for (const [name, value] of fields(head)) if (IDENTITY_FIELDS.has(name)) parts.push(`${name}:${value}`)
  return `${status(head)}\n${parts.sort().join('\n')}`
}

// Chunked decoder states.
const D_SIZE = 0
const D_EXT = 1 // after the size digits, up to the LF
const D_DATA = 2
const D_CR = 3
const D_LF = 4
const D_TRAILER = 5
const D_END = 6

export interface ChunkSink {
  /** A run of chunk data: `buf[start, end)`. */
  data(buf: Buffer, start: number, end: number): void
  /** The last-chunk line (`0`) was read. */
  lastChunk(): void
  /** Trailer-section bytes, the final CRLF included. */
  trailer(buf: Buffer, start: number, end: number): void
}

/**
 * Decodes a chunked body whose framing the http1 framer has already checked, so it is lenient:
 * hex digits, then anything up to the LF.
 */
export class ChunkedDecoder {
  state = D_SIZE
  /** Chunk-data bytes still to come. */
  remaining = 0
  /** Bytes of the current chunk-size or trailer line read so far. */
  lineBytes = 0
  private size = 0

  /** Consume `buf` from `i`. Returns the index just past the body's end, or -1 if it did not end. */
  feed(buf: Buffer, i: number, sink: ChunkSink): number {
    const len = buf.length
    while (i < len) {
      switch (this.state) {
        case D_DATA: {
          const n = Math.min(this.remaining, len - i)
          sink.data(buf, i, i + n)
          i += n
          this.remaining -= n
          if (this.remaining === 0) this.state = D_CR
          break
        }
        case D_CR:
          this.state = D_LF
          i++
          break
        case D_LF:
          this.state = D_SIZE
          i++
          break
        case D_SIZE:
        case D_EXT: {
          const b = buf[i++]!
          this.lineBytes++
          if (b === 10) {
            this.lineBytes = 0
            if (this.size === 0) {
              this.state = D_TRAILER
              sink.lastChunk()
            } else {
              this.state = D_DATA
              this.remaining = this.size
              this.size = 0
            }
          } else if (this.state === D_SIZE) {
            const digit = b <= 0x39 ? b - 0x30 : (b | 0x20) - 0x57
            if (digit >= 0 && digit < 16) this.size = this.size * 16 + digit
            else this.state = D_EXT
          }
          break
        }
        case D_TRAILER: {
          const lf = buf.indexOf(10, i)
          const stop = lf < 0 ? len : lf + 1
          sink.trailer(buf, i, stop)
          this.lineBytes += stop - i
          i = stop
          if (lf >= 0) {
            const empty = this.lineBytes === 2
            this.lineBytes = 0
            if (empty) {
              this.state = D_END
              return i
            }
          }
          break
        }
        default:
          return i
      }
    }
    return -1
  }
}

/** Where a client stands in a chunked body: ready for a chunk-size line, or owed data or a CRLF. */
export type ChunkPosition =
  | { readonly at: 'boundary' }
  | { readonly at: 'data'; readonly remaining: number }
  | { readonly at: 'crlf'; readonly missing: Buffer }

/** Everything a replacement's answer must match, taken when the server fails. */
export interface ResumePoint {
  readonly head: Buffer
  readonly chunked: boolean
  readonly bodyBytes: number
  readonly digest: Buffer
  readonly position: ChunkPosition
}

/** The client's view of the open response (see the top of the file). */
export class ClientView implements ChunkSink {
  head: Buffer | undefined = undefined
  chunked = false
  /** Made at the first body byte the client gets (an idle session has none). */
  private hash: LazyHash | undefined = undefined

  /** Body bytes the client has (decoded when chunked). */
  get bodyBytes(): number {
    return this.hash?.bytes ?? 0
  }
  private decoder: ChunkedDecoder | undefined = undefined
  /** Set when the view lost track (a head not seen whole): no resume for this response. */
  private lost = false

  /** Nothing of the open response has reached the client. */
  get empty(): boolean {
    return this.head === undefined && !this.lost
  }

  /** A new response begins (or none is open). */
  reset(): void {
    this.head = undefined
    this.hash?.reset()
    this.decoder = undefined
    this.lost = false
  }

  /**
   * Bytes of the open response as written to the client. The first call carries the whole head
   * (lib/protocols/http1/resume.ts holds a head back until it is complete); `chunked` says how its
   * body is framed.
   */
  observe(buf: Buffer, chunked: boolean): void {
    if (this.lost) return
    let i = 0
    if (this.head === undefined) {
      const end = buf.indexOf(HEAD_END)
      if (end < 0) {
        this.lost = true
        return
      }
      i = end + HEAD_END.length
      this.head = buf.subarray(0, i)
      this.chunked = chunked
      if (chunked) this.decoder = new ChunkedDecoder()
      if (i === buf.length) return
    }
    if (this.decoder !== undefined) {
      this.decoder.feed(buf, i, this)
    } else {
      ;(this.hash ??= new LazyHash()).update(i === 0 ? buf : buf.subarray(i))
    }
  }

  data(buf: Buffer, start: number, end: number): void {
    ;(this.hash ??= new LazyHash()).update(buf.subarray(start, end))
  }

  lastChunk(): void {}

  trailer(): void {}

  /** What a replacement must match, or why the response cannot be resumed. */
  resumePoint(): ResumePoint | string {
    if (this.lost || this.head === undefined) return 'the response head did not reach the client whole'
    let position: ChunkPosition = { at: 'boundary' }
    const d = this.decoder
    if (d !== undefined) {
      if (d.state === D_DATA) position = { at: 'data', remaining: d.remaining }
      else if (d.state === D_CR) position = { at: 'crlf', missing: CRLF }
      else if (d.state === D_LF) position = { at: 'crlf', missing: LF_ONLY }
      else if (d.state !== D_SIZE || d.lineBytes > 0)
        return 'the client is inside a chunk-size line or the trailer section'
    }
    return {
      head: this.head,
      chunked: this.chunked,
      bodyBytes: this.bodyBytes,
      digest: (this.hash ??= new LazyHash()).digest(),
      position,
    }
  }

  /**
   * `Range`/`If-Range` may fetch just the rest: a 200 with a strong ETag, `Accept-Ranges: bytes`
   * and a Content-Length, some body already sent. Returns the ETag and the full length.
   */
  rangeable(): { etag: string; length: number } | undefined {
    if (this.head === undefined || this.chunked || this.bodyBytes === 0 || status(this.head) !== 200)
      return undefined
    const f = fields(this.head)
    const etag = f.get('etag')
    const length = Number(f.get('content-length'))
    if (etag === undefined || !etag.startsWith('"') || !/^bytes$/i.test(f.get('accept-ranges') ?? ''))
      return undefined
    if (f.has('content-encoding') && f.get('content-encoding') !== 'identity') return undefined
    if (!Number.isSafeInteger(length) || length <= this.bodyBytes) return undefined
    return { etag, length }
  }
}

/**
 * The header lines to add to a re-sent GET so that the replacement sends only the rest, or
 * undefined when the request is not a plain GET (or already asks for a range). `requestHead` is
 * the start of the re-sent bytes; the lines go before its final CRLF at the returned offset.
 */
export function rangeRequest(
  requestHead: Buffer,
  from: number,
  etag: string
): { at: number; lines: Buffer } | undefined {
  if (!requestHead.subarray(0, 4).equals(Buffer.from('GET '))) return undefined
  const end = requestHead.indexOf(HEAD_END)
  if (end < 0) return undefined
  const f = fields(requestHead.subarray(0, end + HEAD_END.length))
  if (f.has('range') || f.has('if-range')) return undefined
  return { at: end + 2, lines: Buffer.from(`Range: bytes=${from}-\r\nIf-Range: ${etag}\r\n`, 'latin1') }
}

// Resumer phases.
const R_HEAD = 0
const R_VERIFY = 1
const R_FINISH = 2
const R_RECHUNK = 3
const R_TRAILER = 4

export class Http1Resumer implements ChunkSink {
  private readonly point: ResumePoint
  private readonly range: { etag: string; length: number } | undefined
  private readonly maxHead: number
  private phase = R_HEAD
  private headParts: Buffer[] = []
  private headBytes = 0
  private readonly hash = createHash('sha1')
  private verifiedBytes = 0
  /** Data bytes still owed to finish the client's chunk (R_FINISH). */
  private owed = 0
  private decoder: ChunkedDecoder | undefined = undefined
  private out: Buffer[] = []
  private justVerified = false
  private failure: string | undefined = undefined

  constructor(point: ResumePoint, range: { etag: string; length: number } | undefined, maxHead: number) {
    this.point = point
    this.range = range
    this.maxHead = maxHead
  }

  /** Read the replacement's next bytes. Returns the step, or why the replacement does not fit. */
  feed(chunk: Buffer): ResumeStep | string {
    this.out = []
    this.justVerified = false
    let i = 0
    if (this.phase === R_HEAD) {
      i = this.readHead(chunk)
      if (this.failure !== undefined) return this.failure
      if (this.phase === R_HEAD) return this.step(chunk.length, false)
      if (this.phase !== R_VERIFY) return this.step(i, true) // a 206: its body is the rest
      if (this.point.bodyBytes === 0 && this.verified()) {
        if (!this.point.chunked) return this.step(i, true)
      }
      if (this.failure !== undefined) return this.failure
    }
    if (!this.point.chunked) {
      // Content-Length: verify the first B bytes, then hand over.
      const n = Math.min(this.point.bodyBytes - this.verifiedBytes, chunk.length - i)
      this.hash.update(chunk.subarray(i, i + n))
      this.verifiedBytes += n
      i += n
      if (this.verifiedBytes < this.point.bodyBytes) return this.step(chunk.length, false)
      if (!this.verified()) return this.failure!
      return this.step(i, true)
    }
    const end = this.decoder!.feed(chunk, i, this)
    if (this.failure !== undefined) return this.failure
    if (end >= 0) return this.step(end, true)
    return this.step(chunk.length, false)
  }

  private step(used: number, done: boolean): ResumeStep {
    return { used, out: this.out, verified: this.justVerified, done }
  }

  /** Gather the replacement's head; returns the index after it (or the chunk's end). */
  private readHead(chunk: Buffer): number {
    let i = 0
    while (i < chunk.length && this.phase === R_HEAD) {
      let head: Buffer
      let next: number
      if (this.headParts.length === 0) {
        const end = chunk.indexOf(HEAD_END, i)
        if (end < 0) {
          this.keepHeadPart(chunk.subarray(i))
          return chunk.length
        }
        next = end + HEAD_END.length
        head = chunk.subarray(i, next)
      } else {
        // The head spans reads (rare): look for its end across the seam and in the new bytes
        // only, and join the pieces once it is found, so that a head trickled in a byte a read
        // costs linear time, not a copy of all of it per read.
        next = this.headEndAfterSeam(chunk, i)
        if (next < 0) {
          this.keepHeadPart(chunk.subarray(i))
          return chunk.length
        }
        head = Buffer.concat([...this.headParts, chunk.subarray(i, next)])
        this.headParts = []
        this.headBytes = 0
      }
      i = next
      if (this.failure === undefined) this.checkHead(head)
      if (this.failure !== undefined) return i
    }
    return i
  }

  /**
   * With head bytes kept from earlier reads (which hold no HEAD_END): the index in `chunk` just
   * past the head's end, or -1. The end may straddle the seam: up to 3 kept bytes, then new ones.
   */
  private headEndAfterSeam(chunk: Buffer, i: number): number {
    const tail: number[] = []
    for (let p = this.headParts.length - 1; p >= 0 && tail.length < 3; p--) {
      const part = this.headParts[p]!
      for (let k = part.length - 1; k >= 0 && tail.length < 3; k--) tail.unshift(part[k]!)
    }
    const seam = Buffer.concat([Buffer.from(tail), chunk.subarray(i, i + 3)])
    const at = seam.indexOf(HEAD_END)
    if (at >= 0) return i + at + HEAD_END.length - tail.length
    const end = chunk.indexOf(HEAD_END, i)
    return end < 0 ? -1 : end + HEAD_END.length
  }

  private keepHeadPart(part: Buffer): void {
    this.headParts.push(part)
    this.headBytes += part.length
    if (this.headBytes > this.maxHead) this.failure = "the replacement's response head is too large"
  }

  private checkHead(head: Buffer): void {
    const code = status(head)
    if (code >= 100 && code < 200) return // interim: the client has seen its like already
    const point = this.point
    if (this.range !== undefined && code === 206) {
      const f = fields(head)
      const expect = `bytes ${point.bodyBytes}-${this.range.length - 1}/${this.range.length}`
      if (f.get('content-range') !== expect || f.get('etag') !== this.range.etag) {
        this.failure = "the replacement's partial response is not the rest of the same representation"
        return
      }
      this.phase = R_RECHUNK // any phase past R_VERIFY: done, the body goes on as it is
      this.justVerified = true
      return
    }
    if (headIdentity(head) !== headIdentity(point.head)) {
      this.failure = RESUME_DIFFERS
      return
    }
    this.phase = R_VERIFY
    if (point.chunked) this.decoder = new ChunkedDecoder()
  }

  /** The first B body bytes are in: compare. Moves to the phase that follows; false on mismatch. */
  private verified(): boolean {
    if (!this.hash.digest().equals(this.point.digest)) {
      this.failure = RESUME_DIFFERS
      return false
    }
    this.justVerified = true
    const position = this.point.position
    if (position.at === 'data') {
      this.phase = R_FINISH
      this.owed = position.remaining
    } else {
      if (position.at === 'crlf') this.out.push(position.missing)
      this.phase = R_RECHUNK
    }
    return true
  }

  data(buf: Buffer, start: number, end: number): void {
    if (this.failure !== undefined) return
    if (this.phase === R_VERIFY) {
      const n = Math.min(this.point.bodyBytes - this.verifiedBytes, end - start)
      this.hash.update(buf.subarray(start, start + n))
      this.verifiedBytes += n
      start += n
      if (this.verifiedBytes < this.point.bodyBytes || !this.verified()) return
    }
    if (start < end && this.phase === R_FINISH) {
      const n = Math.min(this.owed, end - start)
      this.out.push(buf.subarray(start, start + n))
      this.owed -= n
      start += n
      if (this.owed === 0) {
        this.out.push(CRLF)
        this.phase = R_RECHUNK
      }
    }
    if (start < end) {
      this.out.push(
        Buffer.from(`${(end - start).toString(16)}\r\n`, 'latin1'),
        buf.subarray(start, end),
        CRLF
      )
    }
  }

  lastChunk(): void {
    if (this.failure !== undefined) return
    if (this.phase === R_VERIFY && this.verifiedBytes === this.point.bodyBytes) this.verified()
    if (this.phase !== R_RECHUNK) {
      this.failure = "the replacement's body is shorter than what the client already has"
      return
    }
    this.out.push(LAST_CHUNK)
    this.phase = R_TRAILER
  }

  trailer(buf: Buffer, start: number, end: number): void {
    if (this.failure === undefined) this.out.push(buf.subarray(start, end))
  }
}
