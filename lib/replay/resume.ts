/**
 * The one resume interface (DESIGN.md "Failover", docs/protocols.md): how a response that a dying
 * server cut part-way is completed from another backend without the client seeing a seam. A
 * protocol module offers a factory (`ProtocolModule.resume`); the replayer makes one `Resume` per
 * session with replay on and drives it at four points:
 *
 *   server bytes ─► framer.response() ─► forwarded() ─► client        (every response)
 *   server failed ─► cut() ─► policy ─► failover() ─► re-send          (a failure)
 *   replacement bytes ─► feed() ─► out ─► client, until !resuming     (after a failover)
 *
 * `byteResume` (./byte-resume.ts) is the default for any framer that delimits its responses: the
 * replacement's first bytes must be exactly the ones the client has. http1 has its own
 * (lib/protocols/http1/resume.ts): a new head, a `Range`, a re-chunked body. Opaque has none.
 *
 * The resumed / mismatch counters, the unrecoverable reasons' accounting and every write to a
 * socket stay in the replayer: an implementation is a pure state machine over buffers, unit-tested
 * without sockets (tests/replay/byte-resume.test.ts, tests/protocols/http1-resume.test.ts).
 */
import type { Framer, FramerExtras, FramingError } from '../framing/types.js'

export type ResumeFramer = Framer & FramerExtras

/** One step of a replacement's answer through `Resume.feed()`. */
export interface ResumeStep {
  /** Bytes of the chunk this step consumed; the rest is for the ordinary path. */
  readonly used: number
  /** Bytes to write to the client, in order (made by the resume, or views of the chunk). */
  readonly out: Buffer[]
  /** The replacement matched what the client had (reported once, counted `verifiedResumes`). */
  readonly verified: boolean
  /** The resume is finished: from `used` on, the ordinary path carries the replacement's bytes. */
  readonly done: boolean
}

/** Bytes of Baton's own to insert into the first re-sent request (http1: `Range`/`If-Range`). */
export interface RequestInsert {
  /** Offset from the start of the re-sent bytes. */
  readonly at: number
  readonly lines: Buffer
}

/** A look at the start of what will be re-sent (the replay buffer). */
export interface RequestPeek {
  /** The first `max` bytes (or fewer), copied. */
  peek(max: number): Buffer
}

export interface Resume {
  /**
   * A replacement's answer is being fitted onto what the client already has: its bytes go to
   * `feed()`, not to the framer directly.
   */
  readonly resuming: boolean
  /**
   * Server bytes the framer has just parsed, on their way to the client. `recording` is false while
   * the session is past its replay bound (nothing could be resumed: keep no state). Returns what to
   * write now: `chunk` itself on the fast path, or nothing (bytes held back, released later
   * together with a later chunk's). Must not allocate per chunk on the fast path.
   */
  forwarded(chunk: Buffer, framer: ResumeFramer, recording: boolean): Buffer | undefined
  /**
   * The server connection failed. Drops whatever was held back (the client never got it) and says
   * whether the client has part of a response, open or being resumed: the failure policy's
   * `partial`.
   */
  cut(framer: ResumeFramer): boolean
  /**
   * The session fails over and re-sends what is unanswered (`partial` from `cut()`). Sets up to
   * fit the replacement's answer onto the client's bytes. Returns why the open response cannot be
   * resumed (the client is closed, counted `unrecoverable`), or bytes to insert into the first
   * re-sent request, or undefined.
   */
  failover(partial: boolean, requests: RequestPeek): string | RequestInsert | undefined
  /**
   * Replacement bytes while `resuming`: consumes a prefix of `chunk` (handing it to
   * `framer.response()` itself), returns what goes to the client; a framing error of the
   * replacement; or why it does not fit (a string: the client is closed, counted as a mismatch).
   */
  feed(chunk: Buffer, framer: ResumeFramer): ResumeStep | FramingError | string
}

/**
 * Made once per session with replay on. A resume may keep views of the chunks it was given (the
 * forwarded bytes it has yet to hash, a response head): a session with one never lets its reader
 * reuse a buffer.
 */
export type ResumeFactory = () => Resume

/** The reason a replacement that does not match is given (the replayer's counters name it). */
export const RESUME_DIFFERS = 'the replacement response differs from what the client already has'
