/**
 * `opaque`: no protocol knowledge, turn-taking only. A request is the client's bytes since the server
 * last spoke; it is answered the moment the server sends anything.
 *
 * What this can promise: if the server fails (reset, error, EOF, response timeout) after receiving
 * client bytes and before sending a single byte back, those bytes are re-sent to another backend and
 * the client never knows. What it cannot: once the server has spoken, a complete response and a
 * truncated one look the same, so a failure then is passed on as a plain L4 proxy would (a FIN
 * becomes a half-close to the client, a reset closes the client). Protocols where the server speaks
 * first or speaks unprompted (greetings, pushes) are spliced correctly but only the bytes since the
 * server's last word are ever replayed.
 *
 * Client-first stateful protocols (client-first.ts: TLS, HTTP/2 with prior knowledge, PostgreSQL)
 * are told from the client's first bytes; once the server has answered their handshake the
 * session is pinned as a greeting pins it (a new server never saw the handshake). Until the
 * server's first byte, the handshake itself is re-sent like any unanswered request.
 */
import { classifyFirstBytes, FIRST_BYTES_MAX, type ClientFirst } from './client-first.js'
import type { Framer, FramerExtras, FramerSink, FramingError } from './types.js'

export class OpaqueFramer implements Framer, FramerExtras {
  readonly delimited = false
  /** Keeps no view of a chunk: the reader may reuse its buffers. */
  readonly viewsSafe = true
  readonly responseOpen = false
  readonly openStart = -1
  /**
   * The server spoke before the client's first byte (a greeting): a new server would greet again.
   * Or it answered a client-first handshake (`clientFirst`): a new server never saw it.
   */
  pinned = false
  /** The handshake protocol the client's first bytes opened, once known (undefined: none or not yet). */
  clientFirst: ClientFirst | undefined = undefined
  /** Still looking at the client's first bytes (at most FIRST_BYTES_MAX of them). */
  private classifying = true
  /** The first bytes, copied only while they arrive in pieces shorter than FIRST_BYTES_MAX. */
  private head: Buffer | undefined = undefined
  private readonly sink: FramerSink
  /** Absolute client offset seen so far. */
  private seen = 0
  /** Client offset up to which the server has answered. */
  private answeredTo = 0

  constructor(sink: FramerSink) {
    this.sink = sink
  }

  request(chunk: Buffer): FramingError | undefined {
    if (this.classifying) this.classify(chunk)
    this.seen += chunk.length
    return undefined
  }

  response(_chunk: Buffer): FramingError | undefined {
    // The server's first byte ends the look at the client's: a handshake needs its answer whole.
    this.classifying = false
    this.head = undefined
    if (this.seen === 0 || this.clientFirst !== undefined) this.pinned = true
    if (this.answeredTo !== this.seen) {
      this.answeredTo = this.seen
      this.sink.answered(this.seen)
    }
    return undefined
  }

  pending(): number {
    return this.answeredTo === this.seen ? 0 : 1
  }

  pendingSafe(): boolean {
    return true
  }

  atBoundary(): boolean {
    return this.answeredTo === this.seen
  }

  restartResponse(): void {}

  private classify(chunk: Buffer): void {
    let view = chunk
    if (this.head !== undefined || (this.seen === 0 && chunk.length < FIRST_BYTES_MAX)) {
      // The first bytes came in pieces: keep a copy of at most FIRST_BYTES_MAX (rare; no copy otherwise).
      const head = this.head ?? Buffer.alloc(0)
      const add = chunk.subarray(0, FIRST_BYTES_MAX - head.length)
      view = this.head = Buffer.concat([head, add], head.length + add.length)
    }
    const kind = classifyFirstBytes(view)
    if (kind === 'more' && view.length < FIRST_BYTES_MAX) return
    this.classifying = false
    this.head = undefined
    if (kind !== 'more' && kind !== 'other') this.clientFirst = kind
  }
}

export const opaque = (sink: FramerSink): Framer & FramerExtras => new OpaqueFramer(sink)
