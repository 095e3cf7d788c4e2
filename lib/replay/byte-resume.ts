/**
 * The default resume (./resume.ts) for any framer that delimits its responses (length-prefixed,
 * resp, memcached): verified skip-and-compare. The replacement server is sent the same request and
 * must answer with the same bytes; the ones the client already has are parsed, hashed and compared,
 * never forwarded, and only the rest goes on.
 *
 *   client has:     |==== sent (count + SHA-1) ====|
 *   replacement:    |==== skip: hashed, compared ===|=== forwarded ===>
 *                                                   ^ verified: `sent` runs on from here
 *
 * While recording, `sent` follows the open response's forwarded bytes (reset where a response
 * opens); a `LazyHash` only references them until 64 KiB, so a response that completes costs an
 * array push, and a session whose responses each fit in one read never makes one.
 */
import type { FramingError } from '../framing/types.js'
import { LazyHash } from './lazy-hash.js'
import {
  RESUME_DIFFERS,
  type Resume,
  type ResumeFactory,
  type ResumeFramer,
  type ResumeStep,
} from './resume.js'

const NOTHING: Buffer[] = []

class ByteResume implements Resume {
  /** The open response's bytes already forwarded: count and (lazy) hash. */
  private sent: LazyHash | undefined = undefined
  /** While resuming: replacement bytes still to check against `expected` before forwarding. */
  private skip = 0
  /** What the client has of the response being resumed (the skip a second failure starts again from). */
  private total = 0
  private expected: Buffer | undefined = undefined
  private verifying: LazyHash | undefined = undefined

  get resuming(): boolean {
    return this.skip > 0
  }

  forwarded(chunk: Buffer, framer: ResumeFramer, recording: boolean): Buffer {
    if (!recording) return chunk
    const start = framer.openStart
    if (!framer.responseOpen) {
      this.sent?.reset()
    } else if (start >= 0) {
      const sent = (this.sent ??= new LazyHash())
      sent.reset()
      sent.update(start === 0 ? chunk : chunk.subarray(start))
    } else {
      ;(this.sent ??= new LazyHash()).update(chunk)
    }
    return chunk
  }

  cut(framer: ResumeFramer): boolean {
    return framer.responseOpen || this.expected !== undefined
  }

  failover(partial: boolean): undefined {
    if (this.expected !== undefined) {
      // Failed again while checking a replacement: the client still has the same `total` bytes.
      this.skip = this.total
      this.verifying = new LazyHash()
    } else if (partial) {
      // The replacement's first bytes must hash to what was sent.
      const sent = (this.sent ??= new LazyHash())
      this.total = this.skip = sent.bytes
      this.expected = sent.digest()
      this.verifying = new LazyHash()
    }
    this.sent?.reset()
    return undefined
  }

  feed(chunk: Buffer, framer: ResumeFramer): ResumeStep | FramingError | string {
    const n = Math.min(this.skip, chunk.length)
    const part = n === chunk.length ? chunk : chunk.subarray(0, n)
    const err = framer.response(part)
    if (err !== undefined) return err
    this.verifying!.update(part)
    this.skip -= n
    if (this.skip > 0) {
      // The replacement's response ended before reaching what the client has.
      if (!framer.responseOpen) return RESUME_DIFFERS
      return { used: n, out: NOTHING, verified: false, done: false }
    }
    if (!this.verifying!.digest().equals(this.expected!)) return RESUME_DIFFERS
    this.sent = this.verifying // the client's bytes so far, and the hash runs on
    this.verifying = undefined
    this.expected = undefined
    return { used: n, out: NOTHING, verified: true, done: true }
  }
}

/** The byte-level resume: a module's `resume` for any framer that delimits responses. */
export const byteResume: ResumeFactory = () => new ByteResume()
