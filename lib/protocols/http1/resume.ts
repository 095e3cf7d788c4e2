/**
 * http1's resume (lib/replay/resume.ts), around the classes of lib/framing/http1-resume.ts:
 * `ClientView` follows what the client has of the open response, `Http1Resumer` fits a
 * replacement's answer onto it (a new head checked and swallowed, the body verified, a chunked body
 * re-chunked), and `rangeRequest` adds a `Range`/`If-Range` to a re-sent GET so that the replacement
 * sends only the rest.
 *
 * A response head goes to the client only once whole (`heldHead`): a failure inside it then counts
 * as "not started", and the view always sees a head in one piece. A head spanning reads is joined
 * with `Buffer.concat` (rare); the fast path forwards the chunk itself.
 */
import { DEFAULT_MAX_HEAD_BYTES } from '../../framing/http1.js'
import { ClientView, Http1Resumer, rangeRequest } from '../../framing/http1-resume.js'
import type { FramingError } from '../../framing/types.js'
import type {
  RequestInsert,
  RequestPeek,
  Resume,
  ResumeFactory,
  ResumeFramer,
  ResumeStep,
} from '../../replay/resume.js'

class Http1Resume implements Resume {
  /** What the client has of the open response. */
  private readonly view = new ClientView()
  /** Server bytes of a response head not yet whole, held back from the client. */
  private heldHead: Buffer[] | undefined = undefined
  /** After a failover mid-response: fits the replacement's answer onto the client's view. */
  private resumer: Http1Resumer | undefined = undefined

  get resuming(): boolean {
    return this.resumer !== undefined
  }

  forwarded(chunk: Buffer, framer: ResumeFramer, recording: boolean): Buffer | undefined {
    const held = this.heldHead
    if (!recording && held === undefined) return chunk
    const view = this.view
    if (!framer.responseOpen) {
      view.reset()
      if (held === undefined) return chunk
      this.heldHead = undefined
      return Buffer.concat([...held, chunk])
    }
    const start = framer.openStart
    if (start >= 0) {
      view.reset()
      const opened = start === 0 ? chunk : chunk.subarray(start)
      if (framer.responseInHead === true) {
        this.heldHead = [opened]
        if (held === undefined) return start === 0 ? undefined : chunk.subarray(0, start)
        return Buffer.concat([...held, chunk.subarray(0, start)])
      }
      view.observe(opened, framer.responseChunked === true)
      if (held === undefined) return chunk
      this.heldHead = undefined
      return Buffer.concat([...held, chunk])
    }
    if (held !== undefined) {
      if (framer.responseInHead === true) {
        held.push(chunk)
        return undefined
      }
      const whole = Buffer.concat([...held, chunk])
      this.heldHead = undefined
      view.observe(whole, framer.responseChunked === true)
      return whole
    }
    view.observe(chunk, false)
    return chunk
  }

  cut(framer: ResumeFramer): boolean {
    // A head held back never reached the client; the response has not started for it.
    this.heldHead = undefined
    return this.resumer !== undefined || (framer.responseOpen && !this.view.empty)
  }

  failover(partial: boolean, requests: RequestPeek): string | RequestInsert | undefined {
    this.resumer = undefined
    const view = this.view
    if (!partial) {
      view.reset()
      return undefined
    }
    const point = view.resumePoint()
    if (typeof point === 'string') return point
    // Where the representation allows it, ask the replacement for the rest only.
    const whole = view.rangeable()
    const range =
      whole === undefined
        ? undefined
        : rangeRequest(requests.peek(DEFAULT_MAX_HEAD_BYTES), point.bodyBytes, whole.etag)
    this.resumer = new Http1Resumer(point, range && whole, DEFAULT_MAX_HEAD_BYTES)
    return range
  }

  feed(chunk: Buffer, framer: ResumeFramer): ResumeStep | FramingError | string {
    const step = this.resumer!.feed(chunk)
    if (typeof step === 'string') return step
    const err = framer.response(step.used === chunk.length ? chunk : chunk.subarray(0, step.used))
    if (err !== undefined) return err
    if (step.done) this.resumer = undefined
    const view = this.view
    if (!framer.responseOpen) view.reset()
    // The view follows every byte the client gets, made ones included.
    for (const b of step.out) view.observe(b, false)
    return step
  }
}

/** http1's resume: a module's `resume`. */
export const http1Resume: ResumeFactory = () => new Http1Resume()
