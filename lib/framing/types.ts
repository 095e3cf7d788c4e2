/**
 * The framer interface: finds request edges in the client's bytes and response edges in the
 * server's, incrementally, one chunk at a time, never joining buffers. One framer instance per
 * session; it is a pure parser (no sockets), unit-tested by feeding bytes.
 *
 * Offsets are absolute: the count of client bytes the framer has seen since the session began.
 * When a response completes, the framer tells the session up to which client offset the requests
 * are now answered, and the session releases those bytes from its replay buffer.
 *
 *   client bytes:  |== req 1 ==|== req 2 ==|== req 3 (partial)
 *                  ^released   ^answered(upTo) after response 1 completes
 */
export interface FramerSink {
  /** Every client byte before absolute offset `upTo` is answered and may be released. */
  answered(upTo: number): void
}

/**
 * A framing error closes the session with this message in the log and a counter: a BatonError
 * (lib/errors.ts) whose `side` is `client` from `request()` and `server` from `response()`.
 */
export { FramingError } from '../errors.js'
import type { FramingError } from '../errors.js'

/** Session state a replacement server connection must be given before the replayed requests. */
export interface Prologue {
  /** Requests to send first (Redis AUTH, HELLO, SELECT, CLIENT SETNAME, READONLY…), in order. */
  readonly requests: readonly Buffer[]
}

export interface Framer {
  /**
   * True when the framer delimits every response itself: a server FIN at a clean boundary can be
   * hidden from the client (the session just gets a new server connection), and a response that
   * was cut part-way can be resumed verified on another backend.
   */
  readonly delimited: boolean
  /** Parse client bytes (in order). Returns an error for malformed or oversized framing. */
  request(chunk: Buffer): FramingError | undefined
  /**
   * Parse server bytes (in order). Calls `sink.answered()` for each response completed. Afterwards
   * `responseOpen` says whether a response is still incomplete, and `openStart` where in this chunk
   * it began (-1 when it began in an earlier chunk).
   */
  response(chunk: Buffer): FramingError | undefined
  readonly responseOpen: boolean
  readonly openStart: number
  /** Requests sent (wholly or in part) and not yet fully answered. */
  pending(): number
  /**
   * The session cannot be replayed at all, whatever `replay` says: a replacement server could not
   * continue it (opaque: the server spoke first, so a new one would greet again; later framers:
   * transactions, subscriptions). A failure then closes the client as a plain proxy would.
   */
  readonly pinned: boolean
  /** Whether the oldest unanswered requests may all be re-sent under `replay: safe`. */
  pendingSafe(): boolean
  /** Nothing sent and unanswered, no request or response part-way. */
  atBoundary(): boolean
  /**
   * A new server connection replaces the old one: the response parser starts again at the start of
   * the oldest unanswered response (the replacement will send it whole).
   */
  restartResponse(): void
}

/**
 * Optional powers of protocol framers (http1, resp); the session uses them when present.
 */
export interface FramerExtras {
  /**
   * The session state recorded so far, to replay first on a replacement connection; undefined when
   * there is none.
   */
  prologue?(): Prologue | undefined
  /**
   * Parse one reply to a prologue request at the start of `chunk` without forwarding it. Returns
   * the number of bytes of `chunk` it used (the whole chunk while the reply is incomplete) and, once
   * complete, whether it was an error reply (a wrong password: the client is then closed).
   */
  swallowReply?(chunk: Buffer): { used: number; complete: boolean; error: boolean } | FramingError
  /**
   * The open response is delimited by the server's close (an HTTP/1.0-style body with neither
   * Content-Length nor chunked): the server's FIN completes it and goes on to the client.
   */
  readonly closeDelimited?: boolean
  /** http1: the last exchange announced the close (`Connection: close`): pass the server's FIN on. */
  readonly closeAfter?: boolean
  /** http1: the open response's head is not whole yet. */
  readonly responseInHead?: boolean
  /** http1: the open response's body is chunked. */
  readonly responseChunked?: boolean
  /**
   * A request has begun and not ended: a server failure now may be the server giving up on a slow
   * client (an nginx `client_header_timeout`), which is the client's doing, not the server's.
   */
  requestOpen?(): boolean
  /**
   * A request is partly read and must be completed within `requestTimeout`: the head for http1,
   * the whole command or frame for resp and length-prefixed.
   */
  requestPartial?(): boolean
  /** A reply to send the client when `requestTimeout` closes it (HTTP: `408 Request Timeout`). */
  readonly timeoutReply?: Buffer
  /**
   * http1: client bytes from this absolute offset on are held back from the server (-1: none): a
   * request head not yet whole, or bytes after an upgrade request awaiting its response.
   */
  holdFrom?(): number
  /**
   * Neither the framer nor the session's resume machinery keeps a view of a chunk past the call
   * that parsed it (opaque), so the reader may read into the same buffer again (splice/reader.ts).
   */
  readonly viewsSafe?: boolean
  /** The oldest unanswered request may legitimately wait long (BLPOP, XREAD BLOCK): no response timeout. */
  pendingBlocking?(): boolean
}

export type FramerFactory = (sink: FramerSink) => Framer & FramerExtras
