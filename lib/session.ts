/**
 * A session: one accepted client connection and its current server connection, spliced both ways.
 * It is the session's entry in the connection table; a failover swaps the server side in place.
 *
 *   client ──data──► framer ─► replay buffer (refs) ──write──► server
 *   client ◄──write── [verify while resuming] ◄── framer ◄──data── server
 *
 * - Backpressure: a `write()` that returns false pauses the other side's reads until `drain`.
 * - Half-close: both sockets are `allowHalfOpen`; a FIN from one side ends the other side's write
 *   half, and the session ends when both sockets have closed.
 * - Failover: when the server fails (error, reset, EOF with a request unanswered, response timeout)
 *   and the unanswered requests may be re-sent, the session takes a pooled or new connection to
 *   another backend, re-sends them, and carries on; the client sees nothing. A response that was cut
 *   part-way is resumed verified: the replacement's first bytes are hashed against what the client
 *   already has, and only the rest is passed on. Anything else ends the session as a plain L4 proxy
 *   would, counted as `unrecoverable`.
 *
 * The handlers are module-level functions that find their session through `socket[kSession]`
 * (as Node's net.js and undici do) so a session costs no closures. A server socket that is no
 * longer the session's current one has its back-reference removed, so its late events are ignored.
 */
import net, { type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import type { Logger } from 'pino'
import type { Backend } from './backend.js'
import { BatonError } from './errors.js'
import type { ListenerConfig } from './config/schema.js'
import { DEFAULT_MAX_HEAD_BYTES } from './framing/http1.js'
import { ClientView, Http1Resumer, rangeRequest } from './framing/http1-resume.js'
import type { Framer, FramerExtras, FramerFactory, FramerSink, FramingError } from './framing/types.js'
import { ReplayBuffer, type ReplayBudget } from './replay/buffer.js'
import { LazyHash } from './replay/lazy-hash.js'
import type { SessionState, TableEntry, ConnectionTable } from './table.js'
import { isLocalError } from './local.js'
import { readChunks, redirectChunks, releaseReader } from './splice/reader.js'
import { cancelCheck, checkBackend, type CheckWaiter } from './replay/crash-check.js'
import { whyNotReplay } from './replay/policy.js'

export const kSession = Symbol('baton.session')
type SessionSocket = Socket & { [kSession]?: Session }

/** How a session ended; one counter each, and the `outcome` field of the close log line. */
export type Outcome =
  | 'done'
  | 'client-error'
  | 'server-error'
  | 'client-timeout'
  | 'server-timeout'
  | 'no-backend'
  | 'connect-failed'
  | 'unrecoverable'
  | 'framing-error'
  /** The server gave up on a request the client never finished (a header or body timeout). */
  | 'client-incomplete'
  | 'local-error'
  | 'shutdown'

/**
 * Which side ended a session (DESIGN.md, "Blame the right side"): the client (it left, went silent,
 * sent garbage, or the server gave up on its incomplete request), the server (it failed in a way
 * that could not be hidden), or Baton itself (out of descriptors, a limit, shutdown). Only
 * server-side failures count against a backend.
 */
export type EndSide = 'client' | 'server' | 'local'

export type ServerFailure = 'error' | 'eof' | 'timeout'

/** What a session needs from the listener that accepted it. */
export interface SessionHost {
  readonly name: string
  readonly config: ListenerConfig
  readonly table: ConnectionTable
  readonly log: Logger
  readonly framer: FramerFactory | undefined
  readonly budget: ReplayBudget
  /** A backend for this session, avoiding `avoid`; undefined when none is usable. */
  /** `retry`: this connect replaces one that failed for the same request (counted `retries`). */
  pick(session: Session, avoid: ReadonlySet<Backend> | undefined, retry: boolean): Backend | undefined
  connectFailed(session: Session, backend: Backend, err: Error): void
  /** A connect failed for a reason of this process's own (EMFILE…): never the backend's fault. */
  localError(session: Session, err: Error): void
  connected(session: Session, backend: Backend): void
  serverFailed(session: Session, backend: Backend, kind: ServerFailure, err: Error): void
  handedOff(session: Session, info: HandoffInfo): void
  handoffLatency(session: Session, pooled: boolean, ms: number): void
  unrecoverable(session: Session, reason: string): void
  resumed(session: Session, ok: boolean): void
  /** The session left `from` at a clean boundary (the backend went down or drains). */
  migrated(session: Session, from: Backend): void
  closed(session: Session): void
}

export interface HandoffInfo {
  from: Backend
  to: Backend
  pooled: boolean
  requests: number
  bytes: number
  ms: number
}

export class Session implements TableEntry, FramerSink, CheckWaiter {
  readonly id: number
  readonly listener: string
  readonly client: Socket
  /** The client's `address:port`. */
  readonly remote: string
  readonly startedAt = Date.now()
  server: Socket | undefined = undefined
  backend: Backend | undefined = undefined
  readonly history: Backend[] = []
  state: SessionState = 'connecting'
  outcome: Outcome | undefined = undefined
  error: Error | undefined = undefined
  /** Times this session moved to another server connection. */
  failovers = 0
  /** Who ended the session; set when it closes. */
  endedBy: EndSide | undefined = undefined
  /** The side whose FIN came first, for a session that ended normally. */
  private firstEnd: 'client' | 'server' | undefined = undefined

  private readonly host: SessionHost
  /** Client bytes not (yet) in the replay buffer that arrived while no server was attached. */
  private held: Buffer[] | undefined = undefined
  private heldBytes = 0
  private clientEnded = false
  private clientClosed = false
  private serverClosed = false
  /** Connect attempts for the current (re)connect; the first one plus up to `retries` more. */
  private attempts = 0
  /** Backends that failed for this session (allocated only on the first failure). */
  private failed: Set<Backend> | undefined = undefined
  private connectTimer: NodeJS.Timeout | undefined = undefined

  // Replay state, used only when the listener has a framer.
  readonly framer: (Framer & FramerExtras) | undefined
  private readonly replay: ReplayBuffer | undefined
  /** False once the replay bound was passed, until the session is at a clean boundary again. */
  private recording: boolean
  /** Absolute count of client bytes seen by the framer. */
  private clientOffset = 0
  /** Times the oldest unanswered request has been sent. */
  private headAttempts = 0
  /** The open (incomplete) response's bytes already forwarded: count and (lazy) hash. */
  private sent = new LazyHash()
  /** While resuming: replacement bytes still to check against `expected` before forwarding. */
  private skip = 0
  private resumeTotal = 0
  /** http1 with replay on: what the client has of the open response (http1-resume.ts). */
  private readonly view: ClientView | undefined
  /** http1: server bytes of a response head not yet whole, held back from the client. */
  private heldHead: Buffer[] | undefined = undefined
  /** http1, after a failover mid-response: fits the replacement's answer onto the client's view. */
  private resumer: Http1Resumer | undefined = undefined
  /** http1: `Range`/`If-Range` lines to add to the re-sent GET, to fetch only the rest. */
  private rangeInsert: { at: number; lines: Buffer } | undefined = undefined
  private expected: Buffer | undefined = undefined
  private verifying: LazyHash | undefined = undefined
  private waiting = false
  /** The server connection whose close is being checked: crash or graceful? (opaque, blame) */
  private checking: Socket | undefined = undefined
  private probeKind: ServerFailure = 'eof'
  /** How the session ends once the client socket closes, while `closing`. */
  private closingOutcome: Outcome = 'done'
  /** The session has had a server connection before: a new one first gets the prologue. */
  private connectedOnce = false
  /** Client offset answered while no server was attached, released once the buffer is written. */
  private releaseAfterWrite = 0
  /** Replies to prologue requests still to be read and dropped on the current server connection. */
  private swallow = 0
  private probeError: Error | undefined = undefined
  private responseTimer: NodeJS.Timeout | undefined = undefined
  /** Set while a failover is in progress, until the replacement's first byte reaches the client. */
  private handoff: { from: Backend; at: number; requests: number; pooled: boolean } | undefined
  /** The backend went down or drains: leave it at the next clean boundary. */
  private leaving = false
  /**
   * http1: client bytes held back from the server (a request head not yet whole, bytes after an
   * upgrade request awaiting its response), from absolute offset `gateStart`. Undefined when none.
   */
  private gate: Buffer[] | undefined = undefined
  private gateStart = 0
  private gateBytes = 0
  /** The backend check was asked because the server failed on an incomplete request (whose fault?). */
  private probeBlame = false
  /** How a session that ends normally is counted (a server that gave up on a slow client). */
  private endOutcome: Outcome = 'done'

  /** The framer or the resume machinery may keep views of chunks past their handler (all but opaque). */
  readonly keepsViews: boolean

  /** Client chunks go into the replay buffer now. */
  get recordingNow(): boolean {
    return this.recording
  }

  constructor(host: SessionHost, client: Socket) {
    this.host = host
    this.id = host.table.newId()
    this.listener = host.name
    this.client = client
    const c = client as SessionSocket
    c[kSession] = this
    // Read (and so cached by Node) now: once the socket is closed its peer address is gone, and
    // the close log line and events still need it.
    this.remote = `${client.remoteAddress}:${client.remotePort}`
    client.setNoDelay(true)
    readChunks(client, host.framer === undefined ? onClientChunk : onClientChunkFramed)
    client.on('end', onClientEnd)
    client.on('error', onClientError)
    client.on('close', onClientClose)
    client.on('drain', onClientDrain)
    if (host.config.clientTimeout > 0) {
      client.setTimeout(host.config.clientTimeout)
      client.on('timeout', onClientTimeout)
    }
    if (host.framer !== undefined) {
      this.framer = host.framer(this)
      this.keepsViews = this.framer.viewsSafe !== true
      this.replay = new ReplayBuffer(host.budget)
      this.recording = host.config.replay.mode !== 'none'
      this.view = this.recording && host.config.protocol === 'http1' ? new ClientView() : undefined
    } else {
      this.recording = false
      this.view = undefined
      this.keepsViews = false
    }
    host.table.add(this)
  }

  /** Choose a backend and connect to it: at start, after a failed connect, and for a failover. */
  connect(): void {
    const backend = this.host.pick(this, this.failed, this.attempts > 0)
    if (backend === undefined) {
      if (this.handoff !== undefined) this.host.unrecoverable(this, 'no other backend is usable')
      this.destroy(
        this.handoff !== undefined ? 'unrecoverable' : 'no-backend',
        new BatonError('ERR_BATON_NO_BACKEND', 'server', 'no usable backend')
      )
      return
    }
    this.attempts++
    backend.active++
    const pooled = backend.pool?.take()
    const server = (pooled ??
      net.connect({
        host: backend.host,
        port: backend.port,
        allowHalfOpen: true,
        noDelay: true,
      })) as SessionSocket
    server[kSession] = this
    readChunks(server, onServerChunk)
    server.on('end', onServerEnd)
    server.on('error', onServerError)
    server.on('close', onServerClose)
    server.on('drain', onServerDrain)
    this.host.table.attach(this, backend, server)
    this.serverClosed = false
    if (pooled !== undefined) {
      this.onConnected(server, true)
      return
    }
    server.once('connect', onServerConnect)
    this.connectTimer = setTimeout(onConnectTimeout, this.host.config.connectTimeout, this)
  }

  /** Client bytes while no server is attached: hold them, stop reading once a cap is reached. */
  hold(chunk: Buffer): void {
    ;(this.held ??= []).push(chunk)
    this.heldBytes += chunk.length
    if (this.heldBytes >= this.host.config.maxPendingBytes) this.client.pause()
  }

  /** Client bytes on the replay path: find request edges, keep a reference, forward. */
  fromClient(chunk: Buffer): void {
    const framer = this.framer!
    // Keep the reference before parsing: a response that came before its request was whole is
    // answered inside request(), and its release must reach the end of this chunk.
    if (this.recording) this.replay!.push(chunk)
    const err = framer.request(chunk)
    if (err !== undefined) return this.framingError(err, 'client')
    const at = this.clientOffset
    this.clientOffset += chunk.length
    // http1: a head goes on only once whole and valid; bytes after an upgrade wait for its answer.
    const out = framer.holdFrom === undefined ? chunk : this.passGate(chunk, at, framer.holdFrom())
    const server = this.server
    const open = this.state === 'open' && server !== undefined
    if (this.recording) {
      const replay = this.replay!
      if (open) {
        if (replay.bytes > this.host.config.replay.maxBytes || this.host.budget.exceeded) {
          // Past the bound: not replayable until every request in flight is answered.
          this.recording = false
          replay.reset(this.clientOffset)
        }
      } else if (replay.bytes >= this.host.config.maxPendingBytes) {
        // No server to write to yet: nothing may be dropped, so stop reading instead.
        this.client.pause()
      }
    } else if (!open && out !== undefined) {
      if (Array.isArray(out)) for (const b of out) this.hold(b)
      else this.hold(out)
    }
    if (open) {
      if (out !== undefined && !writeAll(server, out)) this.client.pause()
      if (!this.waiting && this.host.config.responseTimeout > 0 && this.awaitsResponse()) this.armResponseTimer()
    } else if (this.state === 'open') {
      // The server left at a clean boundary: this request opens a new server connection.
      this.state = 'connecting'
      this.attempts = 0
      this.connect()
    }
  }

  /**
   * Client bytes [at, at + chunk.length) pass the http1 gate: what lies before `hold` (-1: nothing
   * held) may go on now, the rest waits. Returns the bytes to send, as one buffer or several.
   */
  private passGate(chunk: Buffer, at: number, hold: number): Buffer | Buffer[] | undefined {
    const end = at + chunk.length
    if (this.gate === undefined) {
      if (hold < 0 || hold >= end) return chunk
      const cut = Math.max(0, hold - at)
      this.gate = [cut === 0 ? chunk : chunk.subarray(cut)]
      this.gateStart = at + cut
      this.gateBytes = end - this.gateStart
      return cut === 0 ? undefined : chunk.subarray(0, cut)
    }
    this.gate.push(chunk)
    this.gateBytes += chunk.length
    // Bytes held after an upgrade request are bounded like any other pending client bytes.
    if (this.gateBytes >= this.host.config.maxPendingBytes) this.client.pause()
    return this.releaseGate(hold < 0 ? end : hold)
  }

  /** Let the gate's bytes before absolute offset `limit` go. */
  private releaseGate(limit: number): Buffer[] | undefined {
    const gate = this.gate!
    if (limit <= this.gateStart) return undefined
    const out: Buffer[] = []
    while (gate.length > 0 && this.gateStart < limit) {
      const b = gate[0]!
      const take = Math.min(b.length, limit - this.gateStart)
      if (take === b.length) {
        out.push(b)
        gate.shift()
      } else {
        out.push(b.subarray(0, take))
        gate[0] = b.subarray(take)
      }
      this.gateStart += take
      this.gateBytes -= take
    }
    if (gate.length === 0) this.gate = undefined
    if (this.gateBytes < this.host.config.maxPendingBytes && this.server !== undefined) this.client.resume()
    return out
  }

  /** Client bytes are held back (http1). */
  get gated(): boolean {
    return this.gate !== undefined
  }

  /** @internal After server bytes: a response may have opened the gate (a 101, a refused upgrade). */
  flushGate(): void {
    const hold = this.framer!.holdFrom!()
    const out = this.releaseGate(hold < 0 ? this.clientOffset : hold)
    const server = this.server
    if (out === undefined || this.state !== 'open' || server === undefined) {
      if (out !== undefined) for (const b of out) this.hold(b)
      return
    }
    if (!writeAll(server, out)) this.client.pause()
  }

  /** A whole request waits for its response (not only one the client is still sending). */
  private awaitsResponse(): boolean {
    const framer = this.framer!
    const pending = framer.pending()
    return pending > (framer.requestOpen?.() === true ? 1 : 0)
  }

  /** Server bytes on the replay path. */
  fromServer(server: Socket, chunk: Buffer): void {
    const framer = this.framer!
    while (this.swallow > 0) {
      const r = framer.swallowReply!(chunk)
      if ('code' in r) return this.framingError(r, 'server')
      if (r.complete) {
        this.swallow--
        if (r.error) {
          this.host.unrecoverable(this, 'the replacement server refused the session state (prologue)')
          return this.destroy(
            'unrecoverable',
            new BatonError('ERR_BATON_PROLOGUE', 'server', 'prologue refused')
          )
        }
      }
      if (r.used >= chunk.length) return
      chunk = chunk.subarray(r.used)
    }
    if (this.resumer !== undefined) {
      // http1: the replacement's answer is fitted onto what the client already has.
      const step = this.resumer.feed(chunk)
      if (typeof step === 'string') return this.resumeFailed(step)
      const err = framer.response(step.used === chunk.length ? chunk : chunk.subarray(0, step.used))
      if (err !== undefined) return this.framingError(err, 'server')
      if (step.verified) this.host.resumed(this, true)
      if (step.done) this.resumer = undefined
      if (!framer.responseOpen) this.view!.reset()
      if (step.out.length > 0) this.sendMade(server, step.out)
      if (step.used === chunk.length) return this.responseRead()
      chunk = chunk.subarray(step.used)
    } else if (this.skip > 0) {
      const n = Math.min(this.skip, chunk.length)
      const part = n === chunk.length ? chunk : chunk.subarray(0, n)
      const err = framer.response(part)
      if (err !== undefined) return this.framingError(err, 'server')
      this.verifying!.update(part)
      this.skip -= n
      if (this.skip > 0 && !framer.responseOpen) return this.resumeFailed()
      if (this.skip === 0 && !this.resumeVerified()) return
      if (n === chunk.length) return
      chunk = chunk.subarray(n)
    }
    const err = framer.response(chunk)
    if (err !== undefined) return this.framingError(err, 'server')
    if (this.view !== undefined && (this.recording || this.heldHead !== undefined)) {
      const out = this.viewHttp1(chunk)
      if (out === undefined) return this.responseRead()
      chunk = out
    } else if (framer.delimited && this.recording) {
      // Keep a running hash of the open response's forwarded bytes, for a verified resume.
      const start = framer.openStart
      if (!framer.responseOpen) {
        this.sent.reset()
      } else if (start >= 0) {
        this.sent.reset()
        this.sent.update(start === 0 ? chunk : chunk.subarray(start))
      } else {
        this.sent.update(chunk)
      }
    }
    if (this.handoff !== undefined) this.handoffDone()
    this.responseRead()
    if (!this.client.write(chunk)) server.pause()
  }

  /**
   * http1: follow what the client gets of the open response, holding back a head that is not whole
   * (a failure inside it then counts as "not started"). Returns the bytes to write now, if any.
   */
  private viewHttp1(chunk: Buffer): Buffer | undefined {
    const framer = this.framer!
    const view = this.view!
    const held = this.heldHead
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

  /** Write bytes a resumer made to the client; the client's view follows them. */
  private sendMade(server: Socket, out: Buffer[]): void {
    const view = this.view!
    const client = this.client
    let flowing = true
    if (out.length > 1) client.cork()
    for (const b of out) {
      view.observe(b, false)
      flowing = client.write(b)
    }
    if (out.length > 1) client.uncork()
    if (this.handoff !== undefined) this.handoffDone()
    if (!flowing) server.pause()
  }

  /**
   * Move to another backend at the next clean boundary, unseen by the client: the server
   * connection is dropped between requests and the next request opens one elsewhere (with the
   * session's prologue, for Redis). Only where the framer knows the boundaries; pinned sessions stay.
   */
  migrate(): void {
    const framer = this.framer
    if (framer === undefined || !framer.delimited || framer.pinned || this.state !== 'open') return
    this.leaving = true
    this.leaveAtBoundary()
  }

  private leaveAtBoundary(): void {
    const server = this.server
    const framer = this.framer!
    if (server === undefined) return void (this.leaving = false)
    if (!framer.atBoundary() || this.resumer !== undefined || this.skip > 0 || this.swallow > 0) return
    if (framer.pinned) return void (this.leaving = false)
    this.leaving = false
    const from = this.backend!
    this.detachServer(server)
    this.serverClosed = true
    if (!this.recording && this.host.config.replay.mode !== 'none') {
      this.recording = true
      this.replay!.reset(this.clientOffset)
    }
    this.host.migrated(this, from)
    if (this.clientEnded) this.client.end()
  }

  /** After server bytes were read: the response timer, and recording again at a clean boundary. */
  private responseRead(): void {
    const framer = this.framer!
    if (this.leaving) this.leaveAtBoundary()
    if (this.waiting) {
      if (this.awaitsResponse() && framer.pendingBlocking?.() !== true) this.responseTimer!.refresh()
      else this.waiting = false
    }
    if (!this.recording && this.host.config.replay.mode !== 'none' && framer.atBoundary()) {
      this.recording = true
      this.replay!.reset(this.clientOffset)
    }
  }

  /** FramerSink: the requests before `upTo` are answered. */
  answered(upTo: number): void {
    this.headAttempts = 0
    if (this.state === 'open' && this.server !== undefined) return this.replay!.release(upTo)
    // No server yet: the replay buffer is what will be written once connected (a Redis SUBSCRIBE
    // passes through "answered" at once), so let go only after that write.
    if (upTo > this.releaseAfterWrite) this.releaseAfterWrite = upTo
  }

  onConnected(server: Socket, pooled: boolean): void {
    clearTimeout(this.connectTimer)
    this.connectTimer = undefined
    this.state = 'open'
    const backend = this.backend!
    this.host.connected(this, backend)
    if (this.host.config.serverTimeout > 0) {
      server.setTimeout(this.host.config.serverTimeout)
      server.on('timeout', onServerTimeout)
    }
    let flowing = true
    const replayBytes = this.recording ? this.replay!.bytes : 0
    // Session state (Redis AUTH, SELECT…) goes first on every connection after the first one.
    const prologue = this.connectedOnce ? this.framer?.prologue?.() : undefined
    this.connectedOnce = true
    if (prologue !== undefined && prologue.requests.length > 0) {
      server.cork()
      for (const request of prologue.requests) server.write(request)
      this.swallow = prologue.requests.length
      server.uncork()
    }
    if (replayBytes > 0 || this.held !== undefined) {
      server.cork()
      if (replayBytes > 0) {
        const upTo = this.gate !== undefined ? this.gateStart : undefined
        flowing = this.replay!.writeTo(server, this.rangeInsert, upTo)
      }
      this.rangeInsert = undefined
      if (this.releaseAfterWrite > 0) {
        this.replay!.release(this.releaseAfterWrite)
        this.releaseAfterWrite = 0
      }
      if (replayBytes > this.host.config.replay.maxBytes) {
        // Read whole while connecting, past the bound: sent, but not replayable until it drains.
        this.recording = false
        this.replay!.reset(this.clientOffset)
      }
      if (this.held !== undefined) for (const chunk of this.held) flowing = server.write(chunk)
      server.uncork()
      this.held = undefined
      this.heldBytes = 0
    }
    const h = this.handoff
    if (h !== undefined) {
      h.pooled = pooled
      this.host.handedOff(this, {
        from: h.from,
        to: backend,
        pooled,
        requests: h.requests,
        bytes: replayBytes,
        ms: Math.round((performance.now() - h.at) * 1000) / 1000,
      })
    }
    if (this.framer !== undefined && this.host.config.responseTimeout > 0 && this.awaitsResponse()) {
      this.armResponseTimer()
    }
    if (this.clientEnded) server.end()
    else if (flowing) this.client.resume()
    else this.client.pause()
  }

  private handoffDone(): void {
    const h = this.handoff!
    this.handoff = undefined
    this.host.handoffLatency(this, h.pooled, performance.now() - h.at)
  }

  /** The current connect failed or timed out: count it against the backend and try another. */
  onConnectFailed(server: Socket, err: Error): void {
    clearTimeout(this.connectTimer)
    this.connectTimer = undefined
    const backend = this.backend!
    this.detachServer(server)
    if (isLocalError(err)) {
      // Baton's own shortage (descriptors, ports, buffers): another backend would fail the same
      // way, and this one did nothing wrong.
      this.host.localError(this, err)
      if (this.state === 'connecting') this.destroy('local-error', err)
      return
    }
    this.host.connectFailed(this, backend, err)
    if (this.state !== 'connecting') return // the client went away meanwhile
    if (this.attempts > this.host.config.retries) {
      if (this.handoff !== undefined) this.host.unrecoverable(this, 'every connect for the hand-off failed')
      this.destroy(this.handoff !== undefined ? 'unrecoverable' : 'connect-failed', err)
      return
    }
    // Never the backend that just failed, unless it is the only one this listener has.
    ;(this.failed ??= new Set()).add(backend)
    this.connect()
  }

  /**
   * The open server connection failed. Fail over when what is in flight may be re-sent; pass the
   * failure on as a plain proxy would when not.
   */
  onServerFailed(server: Socket, kind: ServerFailure, err: Error, checked = false): void {
    const framer = this.framer
    const backend = this.backend!
    if (framer === undefined) {
      if (kind === 'eof') return void this.client.end()
      this.host.serverFailed(this, backend, kind, err)
      return this.destroy(kind === 'timeout' ? 'server-timeout' : 'server-error', err)
    }
    // A request held whole in the gate never reached this server: not pending on it.
    const pending = framer.pending() - (this.gate !== undefined ? 1 : 0)
    if (!checked && this.gate === undefined && framer.requestOpen?.() === true && !framer.pinned) {
      // The client's request is incomplete: the server may have given up on a slow client (a
      // header or body timeout), which is the client's doing, or it may have died. Ask the
      // backend before blaming anyone (see checked()).
      return this.checkBackend(kind, err, true)
    }
    const view = this.view
    // http1: a head held back never reached the client; the response has not started for it.
    this.heldHead = undefined
    const resuming = view !== undefined ? this.resumer !== undefined : this.expected !== undefined
    const partial =
      view !== undefined ? resuming || (framer.responseOpen && !view.empty) : framer.responseOpen || resuming
    if (framer.pinned) {
      // Server-side state (a transaction, subscriptions, a tunnel) that no other connection has:
      // pass the failure on as a plain proxy would.
      this.host.serverFailed(this, backend, kind, err)
      if (pending === 0 && !partial) {
        if (kind === 'eof') return void this.client.end()
        return this.destroy('server-error', err)
      }
      this.host.unrecoverable(this, 'the session is pinned to its server')
      return this.destroy('unrecoverable', err)
    }
    if (pending === 0 && !partial) {
      if (!framer.delimited && server.bytesRead > 0 && !checked) {
        // opaque, nothing unanswered: the close may end a response, or the backend may have died
        // between turns. Ask the backend before deciding (see checkBackend).
        return this.checkBackend(kind, err)
      }
      // A clean boundary: drop the connection; the next request opens another.
      if (kind !== 'eof') this.host.serverFailed(this, backend, kind, err)
      this.detachServer(server)
      this.serverClosed = true
      if (!this.recording && this.host.config.replay.mode !== 'none') {
        this.recording = true
        this.replay!.reset(this.clientOffset)
      }
      if (this.clientEnded) this.client.end()
      return
    }
    this.host.serverFailed(this, backend, kind, err)
    const why = whyNotReplay({
      mode: this.host.config.replay.mode,
      recording: this.recording,
      pendingSafe: framer.pendingSafe(),
      partial,
      delimited: framer.delimited,
      attempts: this.headAttempts,
      maxAttempts: this.host.config.replay.maxAttempts,
    })
    if (why !== undefined) {
      this.host.unrecoverable(this, why)
      return this.destroy('unrecoverable', err)
    }
    if (view !== undefined) {
      this.resumer = undefined
      this.rangeInsert = undefined
      if (partial) {
        const point = view.resumePoint()
        if (typeof point === 'string') {
          this.host.unrecoverable(this, point)
          return this.destroy('unrecoverable', err)
        }
        // Where the representation allows it, ask the replacement for the rest only.
        const whole = view.rangeable()
        const range =
          whole === undefined
            ? undefined
            : rangeRequest(this.replay!.peek(DEFAULT_MAX_HEAD_BYTES), point.bodyBytes, whole.etag)
        this.rangeInsert = range
        this.resumer = new Http1Resumer(point, range && whole, DEFAULT_MAX_HEAD_BYTES)
      } else {
        view.reset()
      }
    } else if (resuming) {
      // Failed again while checking a replacement: the client still has the same `resumeTotal` bytes.
      this.skip = this.resumeTotal
      this.verifying = new LazyHash()
    } else if (partial) {
      // Resume verified: the replacement's first bytes must hash to what was sent.
      this.resumeTotal = this.skip = this.sent.bytes
      this.expected = this.sent.digest()
      this.verifying = new LazyHash()
    }
    this.sent.reset()
    framer.restartResponse()
    this.headAttempts++
    this.failovers++
    this.handoff = { from: backend, at: performance.now(), requests: pending, pooled: false }
    this.detachServer(server)
    ;(this.failed ??= new Set()).add(backend)
    this.state = 'connecting'
    this.attempts = 0
    this.connect()
  }

  /** The replacement matched every byte the client already had: pass on the rest. */
  private resumeVerified(): boolean {
    if (!this.verifying!.digest().equals(this.expected!)) {
      this.resumeFailed()
      return false
    }
    this.host.resumed(this, true)
    this.sent = this.verifying! // the client's bytes so far, and the hash runs on
    this.verifying = undefined
    this.expected = undefined
    return true
  }

  private resumeFailed(why = 'the replacement response differs from what the client already has'): void {
    this.host.resumed(this, false)
    this.host.unrecoverable(this, why)
    this.destroy(
      'unrecoverable',
      new BatonError('ERR_BATON_RESUME_MISMATCH', 'server', 'resumed response differs')
    )
  }

  private framingError(err: FramingError, side: 'client' | 'server'): void {
    const error = new BatonError(err.code, side, `${side} framing: ${err.message}`)
    if (side === 'server' || err.reply === undefined) return this.destroy('framing-error', error)
    // Tell the client why (HTTP: 400 Bad Request), then close it once the reply is written.
    this.error = error
    const server = this.server
    if (server !== undefined) this.detachServer(server)
    this.serverClosed = true
    this.state = 'closing'
    this.closingOutcome = 'framing-error'
    this.client.write(err.reply)
    this.client.destroySoon()
  }

  private armResponseTimer(): void {
    if (this.framer?.pendingBlocking?.() === true) return // BLPOP and friends may wait as long as they like
    this.waiting = true
    if (this.responseTimer === undefined) {
      this.responseTimer = setTimeout(onResponseTimeout, this.host.config.responseTimeout, this)
    } else {
      this.responseTimer.refresh()
    }
  }

  /** @internal */
  responseTimedOut(): void {
    if (!this.waiting || this.server === undefined || this.state !== 'open') return
    this.waiting = false
    const ms = this.host.config.responseTimeout
    this.onServerFailed(
      this.server,
      'timeout',
      new BatonError('ERR_BATON_RESPONSE_TIMEOUT', 'server', `no response within ${ms} ms`)
    )
  }

  /** Let go of a server connection: no more of its events reach this session. */
  private detachServer(server: Socket): void {
    delete (server as SessionSocket)[kSession]
    server.destroy()
    releaseReader(server)
    this.backend!.active--
    this.host.table.detach(this)
    this.waiting = false
  }

  onClientEnd(): void {
    this.clientEnded = true
    this.firstEnd ??= 'client'
    if (this.state !== 'open') return
    const server = this.server
    if (server === undefined) return void this.client.end() // nothing attached, nothing in flight
    if (
      this.host.config.pool.reuse &&
      this.framer?.delimited === true &&
      this.framer.atBoundary() &&
      this.skip === 0 &&
      this.resumer === undefined &&
      !this.framer.pinned &&
      this.framer.prologue?.() === undefined
    ) {
      // The client left at a clean boundary with no session state (a Redis SELECT or AUTH would
      // follow the connection): the server connection can serve someone else.
      const pool = this.backend!.pool
      this.releaseServer(server)
      if (pool === undefined || !pool.give(server)) server.end()
      this.serverClosed = true
      return void this.client.end()
    }
    server.end()
  }

  /** Hand a healthy server connection back (pool.reuse): none of this session's listeners stay on it. */
  private releaseServer(server: Socket): void {
    delete (server as SessionSocket)[kSession]
    redirectChunks(server, toPoolWatcher)
    server.off('end', onServerEnd)
    server.off('error', onServerError)
    server.off('close', onServerClose)
    server.off('drain', onServerDrain)
    server.off('timeout', onServerTimeout)
    server.setTimeout(0)
    this.backend!.active--
    this.host.table.detach(this)
    this.waiting = false
  }

  onServerEnd(server: Socket): void {
    this.firstEnd ??= 'server'
    const framer = this.framer
    // No framer (plain proxy), an HTTP body that ends at the close, or a pinned session (a tunnel,
    // a subscription): the FIN goes on.
    if (framer === undefined || framer.closeDelimited === true || framer.pinned) return void this.client.end()
    // The client already half-closed and everything is answered: the ordinary end of the conversation.
    // So is a close the last exchange announced (`Connection: close`): the client expects it.
    if ((this.clientEnded || framer.closeAfter === true) && framer.pending() === 0 && !framer.responseOpen)
      return void this.client.end()
    const eof = new BatonError('ERR_BATON_SERVER_EOF', 'server', 'server closed')
    // A framer that delimits responses knows whether anything was cut; a connection closed without
    // a word (at accept, or a pooled one already closing) is as good as a refused connect.
    const silent = server.bytesRead === 0 && this.recording
    if (framer.delimited || silent || this.checking !== undefined) return this.onServerFailed(server, 'eof', eof)
    this.checkBackend('eof', eof)
  }

  /**
   * opaque: a crash and a graceful close look the same on the wire (DESIGN.md). Ask the backend at
   * once, with the client paused: if it still accepts, the server closed on purpose and the FIN (or
   * reset) goes on to the client as a plain proxy would pass it; if it refuses, it died — requests
   * in flight are re-sent elsewhere, and between turns the client simply gets a new server
   * connection for its next request. Costs one connect per server-side close, only with replay on,
   * shared by the closes of one backend that come within a few milliseconds (crash-check.ts).
   */
  private checkBackend(kind: ServerFailure, err: Error, blame = false): void {
    this.probeBlame = blame
    this.client.pause()
    this.checking = this.server
    this.probeKind = kind
    this.probeError = err
    checkBackend(this.backend!, Math.min(this.host.config.connectTimeout, 1000), this)
  }

  /** CheckWaiter: the backend check's verdict (replay/crash-check.ts). */
  checked(alive: boolean): void {
    const checking = this.checking
    this.checking = undefined
    if (checking === undefined || checking !== this.server) return
    const server = this.server
    if (this.state !== 'open' || server === undefined) return
    this.client.resume()
    const kind = this.probeKind
    const err = this.probeError!
    this.probeError = undefined
    if (alive && this.probeBlame) {
      // The backend is fine: it closed on a client whose request never completed. Not the
      // server's failure (no passive-health count, no replay elsewhere): the client gets what a
      // plain proxy would give it.
      this.endOutcome = 'client-incomplete'
      this.detachServer(server)
      this.serverClosed = true
      if (kind === 'eof') return void this.client.end()
      return this.destroy('client-incomplete', err)
    }
    if (alive) {
      if (kind === 'eof') return void this.client.end()
      this.host.serverFailed(this, this.backend!, kind, err)
      return this.destroy('server-error', err)
    }
    const framer = this.framer!
    if (framer.pending() > 0 || framer.responseOpen) return this.onServerFailed(server, kind, err, true)
    // Between turns, and the backend is gone: the client need not know.
    const backend = this.backend!
    this.host.serverFailed(this, backend, kind, err)
    this.detachServer(server)
    this.serverClosed = true
    ;(this.failed ??= new Set()).add(backend)
    if (!this.recording && this.host.config.replay.mode !== 'none') {
      this.recording = true
      this.replay!.reset(this.clientOffset)
    }
    if (this.clientEnded) this.client.end()
  }

  onClientClose(): void {
    this.clientClosed = true
    if (this.state === 'closing') return this.finish(this.closingOutcome)
    if (this.state === 'connecting') this.destroy('client-error')
    else if (this.serverClosed) this.finish(this.endOutcome)
  }

  onServerClose(): void {
    this.serverClosed = true
    if (this.clientClosed) this.finish(this.endOutcome)
  }

  /** End the session now: destroy both sockets and release everything. */
  destroy(outcome: Outcome, err?: Error): void {
    if (this.state === 'closed') return
    this.client.destroy()
    const server = this.server
    if (server !== undefined) {
      delete (server as SessionSocket)[kSession]
      server.destroy()
    }
    this.error ??= err
    this.finish(outcome)
  }

  private finish(outcome: Outcome): void {
    if (this.state === 'closed') return
    this.state = 'closed'
    this.outcome = outcome
    this.endedBy = sideOf(outcome, this.error, this.firstEnd)
    clearTimeout(this.connectTimer)
    clearTimeout(this.responseTimer)
    this.connectTimer = undefined
    if (this.checking !== undefined) {
      this.checking = undefined
      if (this.backend !== undefined) cancelCheck(this.backend, this)
    }
    this.held = undefined
    this.replay?.reset(0)
    releaseReader(this.client)
    if (this.server !== undefined) releaseReader(this.server)
    // The backend's slot was taken when the connect started and is given back once: here, or in
    // detachServer (which also clears `server`).
    if (this.backend !== undefined && this.server !== undefined) this.backend.active--
    this.host.table.remove(this)
    this.host.closed(this)
  }
}

/** The side an outcome belongs to (`done`: whoever ended the conversation first). */
export function sideOf(outcome: Outcome, err: Error | undefined, firstEnd: 'client' | 'server' | undefined): EndSide {
  switch (outcome) {
    case 'done':
      return firstEnd ?? 'client'
    case 'client-error':
    case 'client-timeout':
    case 'client-incomplete':
      return 'client'
    case 'framing-error':
      return (err as BatonError | undefined)?.side === 'server' ? 'server' : 'client'
    case 'local-error':
    case 'shutdown':
      return 'local'
    default:
      return 'server'
  }
}

// Module-level handlers: `this` is the socket, the session is found through kSession.

// Chunk handlers (lib/splice/reader.ts): each returns true when a reference to the chunk outlives
// the call (a write still queued, the replay buffer, bytes held while connecting), so the reader
// does not read into that buffer again.

function onClientChunk(socket: Socket, chunk: Buffer): boolean {
  const s = (socket as SessionSocket)[kSession]
  if (s === undefined) return false
  const server = s.server
  if (s.state === 'open' && server !== undefined) {
    if (!server.write(chunk)) {
      socket.pause()
      return true
    }
    return server.writableLength > 0
  }
  if (s.state === 'connecting') {
    s.hold(chunk)
    return true
  }
  return false
}

function onClientChunkFramed(socket: Socket, chunk: Buffer): boolean {
  const s = (socket as SessionSocket)[kSession]
  if (s === undefined || (s.state !== 'open' && s.state !== 'connecting')) return false
  const recorded = s.recordingNow
  s.fromClient(chunk)
  return s.keepsViews || recorded || s.state !== 'open' || (s.server?.writableLength ?? 0) > 0
}

function onClientEnd(this: SessionSocket): void {
  this[kSession]?.onClientEnd()
}

function onClientError(this: SessionSocket, err: Error): void {
  this[kSession]?.destroy('client-error', err)
}

function onClientClose(this: SessionSocket): void {
  this[kSession]?.onClientClose()
}

function onClientDrain(this: SessionSocket): void {
  this[kSession]?.server?.resume()
}

function onClientTimeout(this: SessionSocket): void {
  this[kSession]?.destroy('client-timeout')
}

function onServerConnect(this: SessionSocket): void {
  const s = this[kSession]
  if (s !== undefined && s.server === this) s.onConnected(this, false)
}

function onServerChunk(socket: Socket, chunk: Buffer): boolean {
  const server = socket as SessionSocket
  const s = server[kSession]
  if (s === undefined) return false
  const client = s.client
  if (s.framer === undefined) {
    if (!client.write(chunk)) {
      server.pause()
      return true
    }
    return client.writableLength > 0
  }
  s.fromServer(server, chunk)
  if (s.gated) s.flushGate()
  return s.keepsViews || client.writableLength > 0 || s.state !== 'open'
}

/** A server connection given back to the warm pool: its watcher listens for `data` again. */
function toPoolWatcher(socket: Socket, chunk: Buffer): boolean {
  socket.emit('data', chunk)
  return true
}

/** Write one buffer or several; false when the socket asked to wait for `drain`. */
function writeAll(socket: Socket, out: Buffer | Buffer[]): boolean {
  if (!Array.isArray(out)) return socket.write(out)
  let flowing = true
  for (const b of out) flowing = socket.write(b)
  return flowing
}

function onServerEnd(this: SessionSocket): void {
  const s = this[kSession]
  if (s !== undefined && s.server === this) s.onServerEnd(this)
}

function onServerError(this: SessionSocket, err: Error): void {
  const s = this[kSession]
  if (s === undefined || s.server !== this) return
  if (s.state === 'connecting') s.onConnectFailed(this, err)
  else s.onServerFailed(this, 'error', err)
}

function onServerClose(this: SessionSocket): void {
  const s = this[kSession]
  if (s !== undefined && s.server === this) s.onServerClose()
}

function onServerDrain(this: SessionSocket): void {
  const s = this[kSession]
  if (s !== undefined && s.server === this) s.client.resume()
}

function onServerTimeout(this: SessionSocket): void {
  const s = this[kSession]
  if (s !== undefined && s.server === this) s.destroy('server-timeout')
}

function onConnectTimeout(s: Session): void {
  const server = s.server
  if (server === undefined || s.state !== 'connecting') return
  s.onConnectFailed(
    server,
    new BatonError('ERR_BATON_CONNECT_TIMEOUT', 'server', `connect to ${s.backend?.address} timed out`)
  )
}


function onResponseTimeout(s: Session): void {
  s.responseTimedOut()
}
