/**
 * `resp`: Redis (RESP2 and RESP3). Every request gets exactly one reply, in order, so the framer
 * keeps a queue of the absolute client end offsets of complete requests and pops one per reply:
 *
 *   client:  |*2 $3 GET $1 a|PING\r\n|*3 $3 SET ...(partial)
 *   queue:                  ^e1      ^e2                      <- with each end, the request's flags
 *   server:  |$1 x|>3 (push)...|+PONG|
 *            reply 1 -> answered(e1); the push answers nothing; +PONG -> answered(e2)
 *
 * Both directions are incremental state machines over the bytes; nothing is joined. The request
 * side keeps at most the command name (32 bytes) and, for the few commands whose arguments matter
 * (AUTH, HELLO, SELECT, CLIENT, XREAD, ZADD…), their first 16 arguments within 4 KiB; an inline command
 * keeps its first 4 KiB of line. The reply side keeps a stack of element counts for nested
 * aggregates and nothing of the data.
 *
 * Replies, by first byte:
 *   + - : _ , # (     one line              $ ! =   length, body, CRLF ($-1: null)
 *   * ~ >             N elements (*-1: null) %       N pairs, 2N elements
 *   |                 attribute: N pairs that come before a reply and are no part of it
 *   >                 push (at top level): out of band, answers no request
 *   $? *? %? ~? |? >? streamed (RESP3): `;len` chunks up to `;0`, or elements up to `.`
 *
 * What a request means for failover:
 * - `pendingSafe()`: every complete unanswered request is in `SAFE_COMMANDS` (reads and idempotent
 *   writes). A partial request is always safe: Redis runs a command only once it has all of it.
 * - Session state (AUTH, HELLO, SELECT, CLIENT SETNAME, READONLY; READWRITE and RESET undo) is
 *   recorded once its reply comes back without an error, re-encoded as a multibulk command, for
 *   `prologue()`. A state command too long to keep pins the session instead.
 * - `pinned` (sticky): MULTI or WATCH (a transaction), CLIENT TRACKING ON, and the commands after
 *   which replies no longer pair with requests (SUBSCRIBE and friends, MONITOR, CLIENT REPLY
 *   OFF|SKIP, SYNC). For the latter, once every reply before that command is in, the framer stops
 *   framing: every server byte passes through, every client byte counts as answered, `pending()`
 *   is 0 and `atBoundary()` false for the rest of the session.
 * - `pendingBlocking()`: the oldest unanswered request is a blocking one (BLPOP…, XREAD BLOCK).
 *
 * A request that gets no reply (an empty inline line, `*0`, `*-1`) is released with the request
 * before it, or at once when nothing is pending.
 */
import { FramingError } from '../../errors.js'
import type { Framer, FramerExtras, FramerFactory, FramerSink, Prologue } from '../types.js'
import { RequestQueue } from '../queue.js'
import { F_BLOCKING, F_PASS, F_PIN, F_SAFE, F_STATE } from './commands.js'
import { RequestScanner } from './request-scanner.js'
import { PUSH, ReplyScanner } from './reply-scanner.js'
import { type Limits, type RespOptions, respLimits } from './wire.js'

export { SAFE_COMMANDS } from './commands.js'
export { splitInline } from './request-scanner.js'
export type { RespOptions } from './wire.js'

interface StateRequest {
  readonly kind: string
  readonly request: Buffer
}

export class RespFramer implements Framer, FramerExtras {
  readonly delimited = true
  pinned = false
  responseOpen = false
  openStart = -1
  private readonly sink: FramerSink
  private readonly limits: Limits
  private readonly requests: RequestScanner
  private readonly replies: ReplyScanner
  /** For `swallowReply()`; made on first use. */
  private swallower: ReplyScanner | undefined
  private swallowed = 0
  private readonly queue = new RequestQueue(0, 16)
  /** Queued requests not in SAFE_COMMANDS. */
  private unsafe = 0
  /** The queued F_STATE requests, oldest first: recorded when answered without an error. */
  private readonly stateRequests: StateRequest[] = []
  /** The recorded session state, one per kind, in the order first set. */
  private state: StateRequest[] = []
  /** Subscribed (or MONITOR…): nothing is framed any more. */
  private passThrough = false
  private clientSeen = 0
  private serverSeen = 0
  private released = 0
  /** The open reply's type has been checked against the queue. */
  private topChecked = false
  private failed: FramingError | undefined

  constructor(limits: Limits, sink: FramerSink) {
    this.sink = sink
    this.limits = limits
    this.requests = new RequestScanner(limits)
    this.replies = new ReplyScanner(limits, 'reply')
  }

  request(chunk: Buffer): FramingError | undefined {
    if (this.failed !== undefined) return this.failed
    const base = this.clientSeen
    const len = chunk.length
    let i = 0
    while (i < len && !this.passThrough) {
      i = this.requests.scan(chunk, i, base)
      if (i < 0) return (this.failed = this.requests.error)
      if (!this.requests.midRequest) this.requestEnded(base + i)
    }
    this.clientSeen = base + len
    if (this.passThrough) this.release(this.clientSeen)
    return undefined
  }

  response(chunk: Buffer): FramingError | undefined {
    if (this.failed !== undefined) return this.failed
    const base = this.serverSeen
    const len = chunk.length
    const replies = this.replies
    let i = 0
    let start = -1
    while (i < len && !this.passThrough) {
      if (!replies.midReply) start = i
      i = replies.scan(chunk, i, base)
      if (i < 0) return this.fail(replies.error!)
      if (!this.topChecked && replies.topType !== 0) {
        this.topChecked = true
        if (replies.topType !== PUSH && this.queue.count === 0) {
          return this.fail(
            new FramingError(
              'ERR_BATON_FRAME_MALFORMED',
              'server',
              `reply at offset ${replies.replyStart}: a reply without a request`
            )
          )
        }
      }
      if (!replies.midReply) this.replyEnded()
    }
    this.serverSeen = base + len
    this.responseOpen = !this.passThrough && replies.midReply
    this.openStart = this.responseOpen ? start : -1
    return undefined
  }

  pending(): number {
    return this.passThrough ? 0 : this.queue.count + (this.requests.midRequest ? 1 : 0)
  }

  requestOpen(): boolean {
    return !this.passThrough && this.requests.midRequest
  }

  requestPartial(): boolean {
    return !this.passThrough && this.requests.midRequest
  }

  /** A partial request counts as safe: Redis has not run it. */
  pendingSafe(): boolean {
    return this.unsafe === 0
  }

  pendingBlocking(): boolean {
    return this.queue.count > 0 && (this.queue.peek() & F_BLOCKING) !== 0
  }

  atBoundary(): boolean {
    return !this.passThrough && this.queue.count === 0 && !this.requests.midRequest && !this.replies.midReply
  }

  restartResponse(): void {
    this.replies.reset()
    this.topChecked = false
    this.responseOpen = false
    this.openStart = -1
  }

  prologue(): Prologue | undefined {
    return this.state.length === 0 ? undefined : { requests: this.state.map((s) => s.request) }
  }

  swallowReply(chunk: Buffer): { used: number; complete: boolean; error: boolean } | FramingError {
    const scanner = (this.swallower ??= new ReplyScanner(this.limits, 'prologue reply'))
    const len = chunk.length
    let i = 0
    while (i < len) {
      i = scanner.scan(chunk, i, this.swallowed)
      if (i < 0) return scanner.error!
      if (!scanner.midReply && scanner.topType !== PUSH) {
        this.swallowed += i
        const type = scanner.topType
        return { used: i, complete: true, error: type === 0x2d || type === 0x21 }
      }
    }
    this.swallowed += len
    return { used: len, complete: false, error: false }
  }

  private requestEnded(end: number): void {
    const r = this.requests
    if (r.noop) {
      if (this.queue.count > 0) this.queue.extendLast(end)
      else this.release(end)
      return
    }
    const flags = r.flags
    if (flags & F_PIN) this.pinned = true
    if (flags & F_STATE) this.stateRequests.push({ kind: r.stateKind, request: r.stateRequest! })
    if (!(flags & F_SAFE)) this.unsafe++
    this.queue.push(end, flags)
    if (flags & F_PASS) {
      this.pinned = true
      this.passThroughIfDue()
    }
  }

  private replyEnded(): void {
    this.topChecked = false
    const type = this.replies.topType
    if (type !== PUSH) {
      const flags = this.queue.peek()
      const end = this.queue.shift()
      if (!(flags & F_SAFE)) this.unsafe--
      if (flags & F_STATE) {
        const s = this.stateRequests.shift()!
        if (type !== 0x2d && type !== 0x21) this.record(s)
      }
      this.release(end)
    }
    if (this.passThroughIfDue()) this.release(this.clientSeen)
  }

  /** Every reply before a F_PASS request is in: from here on, pass everything through. */
  private passThroughIfDue(): boolean {
    if (this.queue.count === 0 || !(this.queue.peek() & F_PASS) || this.replies.midReply) return false
    this.passThrough = true
    this.pinned = true
    this.queue.clear()
    this.unsafe = 0
    this.stateRequests.length = 0
    return true
  }

  private record(s: StateRequest): void {
    if (s.kind === 'RESET') {
      this.state = []
      return
    }
    const kind = s.kind === 'READWRITE' ? 'READONLY' : s.kind
    const at = this.state.findIndex((t) => t.kind === kind)
    if (s.kind === 'READWRITE') {
      if (at >= 0) this.state.splice(at, 1)
    } else if (at >= 0) {
      this.state[at] = s // a later SELECT replaces the earlier one, where it was
    } else {
      this.state.push(s)
    }
  }

  private release(upTo: number): void {
    if (upTo > this.released) {
      this.released = upTo
      this.sink.answered(upTo)
    }
  }

  private fail(error: FramingError): FramingError {
    this.responseOpen = false
    this.openStart = -1
    return (this.failed = error)
  }
}

/** Validates `options` now (throwing `ConfigError`) and returns a factory of framers that share them. */
export function resp(options?: RespOptions): FramerFactory {
  const limits = respLimits(options)
  return (sink: FramerSink) => new RespFramer(limits, sink)
}
