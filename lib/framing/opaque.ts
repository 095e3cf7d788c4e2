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
 */
import type { Framer, FramerExtras, FramerSink, FramingError } from './types.js'

export class OpaqueFramer implements Framer, FramerExtras {
  readonly delimited = false
  /** Keeps no view of a chunk: the reader may reuse its buffers. */
  readonly viewsSafe = true
  readonly responseOpen = false
  readonly openStart = -1
  /** The server spoke before the client's first byte (a greeting): a new server would greet again. */
  pinned = false
  private readonly sink: FramerSink
  /** Absolute client offset seen so far. */
  private seen = 0
  /** Client offset up to which the server has answered. */
  private answeredTo = 0

  constructor(sink: FramerSink) {
    this.sink = sink
  }

  request(chunk: Buffer): FramingError | undefined {
    this.seen += chunk.length
    return undefined
  }

  response(_chunk: Buffer): FramingError | undefined {
    if (this.seen === 0) this.pinned = true
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
}

export const opaque = (sink: FramerSink): Framer & FramerExtras => new OpaqueFramer(sink)
