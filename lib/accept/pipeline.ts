/**
 * The accept pipeline: runs a listener's stages (lib/accept/types.ts) over one accepted client, in
 * order, and ends in one of three calls to its host: `admitted` (make the session), `refused`
 * (count, log, close), `abandoned` (the client went away first).
 *
 * Synchronous stages run in one loop with no promise and no tick; only a stage that returns a
 * promise (it waits for bytes) makes the pipeline wait. The client's reads go to `head` from the
 * moment the pipeline starts (lib/splice/reader.ts, as the session reads), so whatever arrives
 * while a stage waits is kept, in order, for the session.
 */
import type { Socket } from 'node:net'
import { readChunks } from '../splice/reader.js'
import type { AcceptContext, AcceptStage, MoreResult, StageVerdict } from './types.js'

/** Longest wait for bytes when no stage names one. */
export const DEFAULT_READ_TIMEOUT = 5000
/** Most bytes held when no stage names a bound. */
export const DEFAULT_MAX_BYTES = 16 * 1024

export interface PipelineHost {
  /** The client passed every stage: make its session (it takes `ctx.head` first). */
  admitted(ctx: AcceptContext): void
  /** A stage refused the client: count `reason`, log, close it. */
  refused(ctx: AcceptContext, reason: string): void
  /** The client closed (or failed) before the pipeline was done. */
  abandoned(ctx: AcceptContext): void
}

const kCtx = Symbol('baton.accept.ctx')
type CtxSocket = Socket & { [kCtx]?: Context }

export class Pipeline {
  readonly stages: readonly AcceptStage[]
  readonly readTimeout: number
  readonly maxBytes: number
  private readonly host: PipelineHost

  constructor(stages: readonly AcceptStage[], host: PipelineHost) {
    this.stages = stages
    this.host = host
    let timeout = 0
    let bytes = 0
    for (const s of stages) {
      timeout = Math.max(timeout, s.readTimeout ?? 0)
      bytes = Math.max(bytes, s.maxBytes ?? 0)
    }
    this.readTimeout = timeout > 0 ? timeout : DEFAULT_READ_TIMEOUT
    this.maxBytes = bytes > 0 ? bytes : DEFAULT_MAX_BYTES
  }

  /** Run the stages over a newly accepted client. */
  start(socket: Socket): void {
    const ctx = new Context(socket, this)
    if (peerGone(socket)) {
      // Reset before the accept ran: no stage can judge a client without an address (every one
      // would take '' for an untrusted, unlisted source and refuse it). It left: abandoned.
      ctx.closed = true
      return this.end(ctx, undefined)
    }
    this.next(ctx, 0)
  }

  /** The session of `ctx` closed: the stages that passed it let go of it. */
  closed(ctx: AcceptContext): void {
    const c = ctx as Context
    for (let i = 0; i < c.passed; i++) this.stages[i]!.closed?.(ctx)
  }

  private next(ctx: Context, from: number): void {
    const stages = this.stages
    for (let i = from; i < stages.length; i++) {
      let v: StageVerdict | Promise<StageVerdict>
      try {
        v = stages[i]!.run(ctx)
      } catch {
        v = 'internal-error'
      }
      if (typeof v === 'object') {
        v.then(
          (r) => this.after(ctx, i, r),
          () => this.after(ctx, i, 'internal-error')
        )
        return
      }
      if (v !== undefined) return this.end(ctx, v)
      ctx.passed = i + 1
    }
    this.end(ctx, undefined)
  }

  private after(ctx: Context, i: number, verdict: StageVerdict): void {
    if (verdict !== undefined) return this.end(ctx, verdict)
    ctx.passed = i + 1
    this.next(ctx, i + 1)
  }

  private end(ctx: Context, verdict: StageVerdict): void {
    ctx.stop()
    if (ctx.closed) {
      this.closed(ctx)
      return this.host.abandoned(ctx)
    }
    if (verdict === undefined) return this.host.admitted(ctx)
    this.closed(ctx)
    this.host.refused(ctx, verdict)
  }
}

class Context implements AcceptContext {
  readonly socket: Socket
  readonly pipeline: Pipeline
  clientAddress: string
  clientPort: number
  localAddress: string
  localPort: number
  head: Buffer[] | undefined = undefined
  headBytes = 0
  serverName?: string
  alpn?: string[]
  group?: string
  tags?: Record<string, string>
  proxy?: AcceptContext['proxy']
  /** Stages that passed this client (their `closed` is owed). */
  passed = 0
  /** The client sent its FIN (the session is told). */
  ended = false
  /** The client socket closed or failed. */
  closed = false
  private readonly startedAt = Date.now()
  private timedOut = false
  private timer: NodeJS.Timeout | undefined = undefined
  private waiting: ((r: MoreResult) => void) | undefined = undefined
  private joined: Buffer | undefined = undefined

  constructor(socket: Socket, pipeline: Pipeline) {
    this.socket = socket
    this.pipeline = pipeline
    this.clientAddress = socket.remoteAddress ?? ''
    this.clientPort = socket.remotePort ?? 0
    this.localAddress = socket.localAddress ?? ''
    this.localPort = socket.localPort ?? 0
    const s = socket as CtxSocket
    s[kCtx] = this
    readChunks(socket, onHeadChunk)
    socket.on('end', onHeadEnd)
    socket.on('error', onHeadError)
    socket.on('close', onHeadClose)
  }

  more(): Promise<MoreResult> {
    if (this.closed || this.ended) return Promise.resolve('end')
    if (this.headBytes >= this.pipeline.maxBytes) return Promise.resolve('full')
    if (this.timedOut) return Promise.resolve('timeout')
    if (this.timer === undefined) {
      const left = this.startedAt + this.pipeline.readTimeout - Date.now()
      if (left <= 0) {
        this.timedOut = true
        return Promise.resolve('timeout')
      }
      this.timer = setTimeout(onHeadTimeout, left, this)
    }
    return new Promise((resolve) => {
      this.waiting = resolve
    })
  }

  consume(n: number): void {
    const head = this.head
    if (head === undefined) return
    this.joined = undefined
    this.headBytes -= n
    while (n > 0 && head.length > 0) {
      const first = head[0]!
      if (first.length <= n) {
        n -= first.length
        head.shift()
      } else {
        head[0] = first.subarray(n)
        n = 0
      }
    }
    if (head.length === 0) this.head = undefined
  }

  peek(): Buffer {
    const head = this.head
    if (head === undefined) return EMPTY
    if (head.length === 1) return head[0]!
    // Joined once and kept as the only chunk: later peeks and the session see one buffer.
    this.joined ??= Buffer.concat(head, this.headBytes)
    this.head = [this.joined]
    return this.joined
  }

  /** @internal Bytes arrived. */
  chunk(b: Buffer): void {
    ;(this.head ??= []).push(b)
    this.headBytes += b.length
    this.joined = undefined
    if (this.headBytes >= this.pipeline.maxBytes) this.socket.pause()
    this.wake('data')
  }

  /** @internal */
  wake(r: MoreResult): void {
    const w = this.waiting
    if (w === undefined) return
    this.waiting = undefined
    w(r)
  }

  /** @internal The read deadline passed. */
  expire(): void {
    this.timer = undefined
    this.timedOut = true
    this.wake('timeout')
  }

  /** The pipeline is done with the socket: the session (or nobody) listens from here on. */
  stop(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    const s = this.socket as CtxSocket
    s[kCtx] = undefined
    s.off('end', onHeadEnd)
    s.off('error', onHeadError)
    s.off('close', onHeadClose)
  }
}

const EMPTY = Buffer.alloc(0)

/**
 * Whether an accepted TCP client was reset before Node asked for its address. The kernel keeps a
 * connection that completed its handshake in the accept queue even after the peer's RST, with the
 * bytes it sent before; `accept()` still returns it, but `getpeername()` then fails (ENOTCONN) and
 * Node gives `remoteAddress` undefined. HAProxy does exactly this to its server connection when its
 * own client leaves early (a health check, a port probe): connect, send the PROXY header, reset.
 * A unix-domain client has no address either, but its handle cannot be asked (no `getpeername`).
 */
function peerGone(socket: Socket): boolean {
  if (socket.remoteAddress !== undefined) return false
  const handle = (socket as Socket & { _handle?: { getpeername?: unknown } | null })._handle
  return handle == null || typeof handle.getpeername === 'function'
}

// Module-level handlers, as in session.ts: the context is found through the socket.

function onHeadChunk(socket: Socket, chunk: Buffer): boolean {
  const ctx = (socket as CtxSocket)[kCtx]
  if (ctx === undefined) return false
  ctx.chunk(chunk)
  return true // held in `head`: the reader must not read into this buffer again
}

function onHeadEnd(this: CtxSocket): void {
  const ctx = this[kCtx]
  if (ctx === undefined) return
  ctx.ended = true
  ctx.wake('end')
}

function onHeadError(this: CtxSocket): void {
  const ctx = this[kCtx]
  if (ctx === undefined) return
  ctx.closed = true
  this.destroy()
  ctx.wake('end')
}

function onHeadClose(this: CtxSocket): void {
  const ctx = this[kCtx]
  if (ctx === undefined) return
  ctx.closed = true
  ctx.wake('end')
}

function onHeadTimeout(ctx: Context): void {
  ctx.expire()
}

/** Whether the client of `ctx` sent its FIN while the pipeline ran. */
export function endedInPipeline(ctx: AcceptContext): boolean {
  return (ctx as Context).ended
}

/** The pipeline that admitted `ctx` (its stages are owed `closed`, even after a reload). */
export function pipelineOf(ctx: AcceptContext): Pipeline {
  return (ctx as Context).pipeline
}
