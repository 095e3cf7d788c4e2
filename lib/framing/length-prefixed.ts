/**
 * `length-prefixed`: binary protocols whose every message carries its own length, one response
 * frame per request frame, in order (pipelining allowed). A frame is
 *
 *   |<-------------- header -------------->|
 *   | leading field (lengthOffset bytes)   | length (lengthBytes) | body ... |
 *
 * and its total size is `lengthOffset + lengthBytes + length`, or just `length` when the length
 * counts the whole frame (`lengthIncludesHeader`; then a length smaller than the header is
 * malformed). `maxFrameBytes` bounds the total size; a longer frame is an error the moment its
 * header is read, so a body is never buffered (and never could be: the framer only counts bytes).
 *
 * Request and response sides are parsed by the same scanner. Each completed request pushes its
 * absolute client end offset onto a queue; each completed response pops the oldest and reports it
 * to `sink.answered()`:
 *
 *   client:   |== req 1 ==|== req 2 ==|== req 3 ==|== req 4 (partial)
 *   ends:                 ^e1         ^e2         ^e3        <- queue (oldest first)
 *   server:   |== res 1 ==|== res 2 (partial)
 *             response 1 complete -> answered(e1); response 2 will report e2
 *
 * A response may start (and even end) while its request is still partial: a server may reply
 * before reading a whole request (an early rejection). Its answer is held back until the request's
 * last byte is seen, since only then is the request's end offset known; until then the request
 * still counts in `pending()`. So `pending() === 0` exactly when every client byte seen has been
 * released through `answered()`. (Should the server fail in that window, the replacement's reply
 * to the replayed part is a second reply to one request: a framing error, so the client is closed
 * as a plain proxy would close it, rather than sent the reply twice.)
 *
 * `pendingSafe()` is always true: the framer knows nothing of what a frame means, so it cannot
 * tell an idempotent request from one that is not. Under `replay: safe` every pending
 * length-prefixed request is re-sent; a deployment whose protocol has unsafe requests should set
 * `replay: none`.
 *
 * The hot path allocates nothing: header bytes that straddle chunks are copied one by one into a
 * small buffer allocated with the framer, body bytes are only counted, and the end-offset queue
 * is a ring that grows (by doubling) only when the pipeline gets deeper than ever before.
 */
import { ConfigError, FramingError } from '../errors.js'
import type { Framer, FramerFactory, FramerSink } from './types.js'

export interface LengthPrefixedOptions {
  /** Width of the length field in bytes. */
  readonly lengthBytes: 1 | 2 | 4 | 8
  /** Byte order of the length field. Default false (big-endian, network order). */
  readonly littleEndian?: boolean
  /** The length counts the whole frame, header included, not just the body. Default false. */
  readonly lengthIncludesHeader?: boolean
  /**
   * Bytes of a leading field (a type or flags byte, say) before the length field; they are part of
   * the header. 0 to 16, default 0.
   */
  readonly lengthOffset?: number
  /** Largest total frame size (header included) on either side; larger frames are an error. */
  readonly maxFrameBytes: number
}

/** The longest leading field accepted: enough for the protocols seen in practice, and it keeps the header buffer tiny. */
export const MAX_LENGTH_OFFSET = 16

interface FrameFormat {
  readonly lengthBytes: 1 | 2 | 4 | 8
  readonly littleEndian: boolean
  readonly lengthIncludesHeader: boolean
  readonly lengthOffset: number
  readonly headerBytes: number
  readonly maxFrameBytes: number
}

const TWO_32 = 2 ** 32
/** A high 32-bit half at or above this puts a 64-bit length at or above 2^53. */
const HIGH_HALF_LIMIT = 2 ** 21

/** Checks the options once, at the edge; the framers trust the frozen result. */
function frameFormat(options: LengthPrefixedOptions): FrameFormat {
  const issues: string[] = []
  const { lengthBytes, littleEndian = false, lengthIncludesHeader = false, lengthOffset = 0 } = options
  const { maxFrameBytes } = options
  if (lengthBytes !== 1 && lengthBytes !== 2 && lengthBytes !== 4 && lengthBytes !== 8) {
    issues.push(`length-prefixed.lengthBytes: expected 1, 2, 4 or 8, got ${String(lengthBytes)}`)
  }
  if (typeof littleEndian !== 'boolean') {
    issues.push(`length-prefixed.littleEndian: expected a boolean, got ${String(littleEndian)}`)
  }
  if (typeof lengthIncludesHeader !== 'boolean') {
    issues.push(
      `length-prefixed.lengthIncludesHeader: expected a boolean, got ${String(lengthIncludesHeader)}`
    )
  }
  if (!Number.isInteger(lengthOffset) || lengthOffset < 0 || lengthOffset > MAX_LENGTH_OFFSET) {
    issues.push(
      `length-prefixed.lengthOffset: expected an integer from 0 to ${MAX_LENGTH_OFFSET}, got ${String(lengthOffset)}`
    )
  }
  const headerBytes = lengthOffset + lengthBytes
  if (!Number.isSafeInteger(maxFrameBytes) || maxFrameBytes < headerBytes) {
    issues.push(
      `length-prefixed.maxFrameBytes: expected an integer of at least the header size, got ${String(maxFrameBytes)}`
    )
  }
  if (issues.length > 0) throw new ConfigError(issues)
  return Object.freeze({
    lengthBytes,
    littleEndian,
    lengthIncludesHeader,
    lengthOffset,
    headerBytes,
    maxFrameBytes,
  })
}

/**
 * Follows the frames of one direction. `scan()` consumes bytes until the current frame ends or
 * the chunk does; the caller learns which from `midFrame`.
 */
class FrameScanner {
  private readonly format: FrameFormat
  private readonly side: 'request' | 'response'
  /** Header bytes of the current frame, gathered across chunks. */
  private readonly header: Buffer
  /** Header bytes seen of the current frame; `headerBytes` while in the body, 0 between frames. */
  private have = 0
  /** Body bytes still to come, once the header is whole. */
  private remaining = 0
  /** Absolute offset (in this direction's bytes) where the current frame began. */
  private frameStart = 0
  /** Set when `scan()` returns -1. */
  error: FramingError | undefined

  constructor(format: FrameFormat, side: 'request' | 'response') {
    this.format = format
    this.side = side
    this.header = Buffer.allocUnsafe(format.headerBytes)
  }

  get midFrame(): boolean {
    return this.have > 0
  }

  /** Forget the current frame: the next byte starts a new one. */
  reset(): void {
    this.have = 0
    this.remaining = 0
  }

  /**
   * Consume `chunk` from `i` (which must be < chunk.length; `base` is the absolute offset of
   * chunk[0]) until the current frame or the chunk ends. Returns the index reached, or -1 on a
   * framing error. Afterwards `midFrame` is false exactly when a frame ended at the index returned.
   */
  scan(chunk: Buffer, i: number, base: number): number {
    const len = chunk.length
    const { headerBytes } = this.format
    if (this.have < headerBytes) {
      if (this.have === 0) this.frameStart = base + i
      const header = this.header
      while (this.have < headerBytes && i < len) header[this.have++] = chunk[i++]!
      if (this.have < headerBytes) return i
      const size = this.frameSize()
      if (size < 0) return -1
      this.remaining = size - headerBytes
      if (this.remaining === 0) {
        this.have = 0
        return i
      }
      if (i === len) return i
    }
    const avail = len - i
    if (avail < this.remaining) {
      this.remaining -= avail
      return len
    }
    i += this.remaining
    this.remaining = 0
    this.have = 0
    return i
  }

  /** The total size of the frame whose header is now whole, or -1 with `error` set. */
  private frameSize(): number {
    const { lengthBytes, littleEndian, lengthIncludesHeader, lengthOffset, headerBytes, maxFrameBytes } =
      this.format
    const h = this.header
    const o = lengthOffset
    let length: number
    switch (lengthBytes) {
      case 1:
        length = h[o]!
        break
      case 2:
        length = littleEndian ? h.readUInt16LE(o) : h.readUInt16BE(o)
        break
      case 4:
        length = littleEndian ? h.readUInt32LE(o) : h.readUInt32BE(o)
        break
      case 8: {
        // Two 32-bit halves: a Number holds every integer below 2^53 exactly, and no frame that
        // large could be below maxFrameBytes anyway.
        const high = littleEndian ? h.readUInt32LE(o + 4) : h.readUInt32BE(o)
        const low = littleEndian ? h.readUInt32LE(o) : h.readUInt32BE(o + 4)
        if (high >= HIGH_HALF_LIMIT) {
          return this.fail(
            'ERR_BATON_FRAME_TOO_LARGE',
            `length field is 2^53 or more, over maxFrameBytes ${maxFrameBytes}`
          )
        }
        length = high * TWO_32 + low
        break
      }
    }
    if (lengthIncludesHeader && length < headerBytes) {
      return this.fail(
        'ERR_BATON_FRAME_MALFORMED',
        `length ${length} is shorter than the ${headerBytes}-byte header it includes`
      )
    }
    // Compare the length itself: header + length may be past 2^53, where the sum is inexact.
    const maxLength = lengthIncludesHeader ? maxFrameBytes : maxFrameBytes - headerBytes
    if (length > maxLength) {
      const size = lengthIncludesHeader ? `${length}` : `${headerBytes} + ${length}`
      return this.fail(
        'ERR_BATON_FRAME_TOO_LARGE',
        `frame of ${size} bytes is over maxFrameBytes ${maxFrameBytes}`
      )
    }
    const size = lengthIncludesHeader ? length : headerBytes + length
    return size
  }

  private fail(code: FramingError['code'], what: string): -1 {
    this.error = new FramingError(
      code,
      this.side === 'request' ? 'client' : 'server',
      `${this.side} frame at offset ${this.frameStart}: ${what}`
    )
    return -1
  }
}

/**
 * The absolute client end offsets of complete, unanswered requests, oldest first. A ring of
 * Numbers: pushing and popping allocate nothing until the pipeline outgrows the ring.
 */
class OffsetQueue {
  private ring: number[] = new Array<number>(16).fill(0)
  private head = 0
  count = 0

  push(offset: number): void {
    if (this.count === this.ring.length) this.grow()
    this.ring[(this.head + this.count) % this.ring.length] = offset
    this.count++
  }

  shift(): number {
    const offset = this.ring[this.head]!
    this.head = (this.head + 1) % this.ring.length
    this.count--
    return offset
  }

  private grow(): void {
    const ring = new Array<number>(this.ring.length * 2).fill(0)
    for (let k = 0; k < this.count; k++) ring[k] = this.ring[(this.head + k) % this.ring.length]!
    this.ring = ring
    this.head = 0
  }
}

export class LengthPrefixedFramer implements Framer {
  readonly delimited = true
  readonly pinned = false
  responseOpen = false
  openStart = -1
  private readonly sink: FramerSink
  private readonly requests: FrameScanner
  private readonly responses: FrameScanner
  /** End offsets of complete requests not yet answered. */
  private readonly ends = new OffsetQueue()
  /** The partial request's response has already completed; answer it when the request does. */
  private answeredEarly = false
  /** Absolute client bytes seen. */
  private clientSeen = 0
  /** Absolute server bytes seen (for error messages). */
  private serverSeen = 0
  /** The first framing error; once set, the framer is finished and returns it on every call. */
  private failed: FramingError | undefined

  constructor(format: FrameFormat, sink: FramerSink) {
    this.sink = sink
    this.requests = new FrameScanner(format, 'request')
    this.responses = new FrameScanner(format, 'response')
  }

  request(chunk: Buffer): FramingError | undefined {
    if (this.failed !== undefined) return this.failed
    const base = this.clientSeen
    const len = chunk.length
    let i = 0
    while (i < len) {
      i = this.requests.scan(chunk, i, base)
      if (i < 0) return (this.failed = this.requests.error)
      if (!this.requests.midFrame) this.requestEnded(base + i)
    }
    this.clientSeen = base + len
    return undefined
  }

  response(chunk: Buffer): FramingError | undefined {
    if (this.failed !== undefined) return this.failed
    const base = this.serverSeen
    const len = chunk.length
    let i = 0
    // Where in this chunk the response still open at the end of it began; -1 if in an earlier chunk.
    let start = -1
    while (i < len) {
      if (!this.responses.midFrame) {
        if (this.ends.count === 0 && !(this.requests.midFrame && !this.answeredEarly)) {
          this.responseOpen = false
          this.openStart = -1
          return (this.failed = new FramingError(
            'ERR_BATON_FRAME_MALFORMED',
            'server',
            `response frame at offset ${base + i}: response without a request`
          ))
        }
        start = i
      }
      i = this.responses.scan(chunk, i, base)
      if (i < 0) {
        this.responseOpen = false
        this.openStart = -1
        return (this.failed = this.responses.error)
      }
      if (!this.responses.midFrame) this.responseEnded()
    }
    this.serverSeen = base + len
    this.responseOpen = this.responses.midFrame
    this.openStart = this.responseOpen ? start : -1
    return undefined
  }

  pending(): number {
    return this.ends.count + (this.requests.midFrame ? 1 : 0)
  }

  requestOpen(): boolean {
    return this.requests.midFrame
  }

  requestPartial(): boolean {
    return this.requests.midFrame
  }

  /** Always true: see the note at the top of this file. */
  pendingSafe(): boolean {
    return true
  }

  atBoundary(): boolean {
    return this.ends.count === 0 && !this.requests.midFrame && !this.responses.midFrame
  }

  restartResponse(): void {
    this.responses.reset()
    this.responseOpen = false
    this.openStart = -1
  }

  private requestEnded(end: number): void {
    if (this.answeredEarly) {
      this.answeredEarly = false
      this.sink.answered(end)
    } else {
      this.ends.push(end)
    }
  }

  private responseEnded(): void {
    if (this.ends.count > 0) this.sink.answered(this.ends.shift())
    else this.answeredEarly = true // its request is the partial one (checked when the response began)
  }
}

/** Validates `options` now (throwing `ConfigError`) and returns a factory of framers that share them. */
export function lengthPrefixed(options: LengthPrefixedOptions): FramerFactory {
  const format = frameFormat(options)
  return (sink: FramerSink): Framer => new LengthPrefixedFramer(format, sink)
}
