/**
 * The replay machinery of a session (DESIGN.md, "Failover"), beside the splice core in
 * `lib/session.ts` and made only for sessions whose listener has a framer (`replay` not `none`, or
 * a protocol that parses): recording the unanswered requests (`ReplayBuffer`), their bounds, the
 * session prologue, the hand-off to a pooled or new connection, the verified resume of a response
 * cut part-way (driving the protocol module's `Resume`, ./resume.ts), http1's request gate, the
 * response timeout, and the check that tells a crash from a close (`crash-check.ts`). Whether a
 * failure may be hidden is `policy.ts`, a pure function.
 *
 *   client ──data──► framer ─► replay buffer (refs) ──write──► server
 *   client ◄──write── [verify while resuming] ◄── framer ◄──data── server
 *
 * The core calls in at four points: client bytes (`fromClient`), server bytes (`fromServer`), a
 * server connection attached (`attached`), and a server failure or FIN (`onServerFailed`,
 * `onServerEnd`). The next backend is the balancer's pick, avoiding every backend that failed.
 */
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import type { Backend } from '../backend.js'
import { BackendError, ClientError, FramingError, serverEof } from '../errors.js'
import type { Framer, FramerExtras, FramerSink } from '../framing/types.js'
import type { ServerFailure, Session, SessionHost } from '../session.js'
import { protocolOf } from '../protocols/index.js'
import { ReplayBuffer } from './buffer.js'
import { cancelCheck, checkBackend, type CheckWaiter } from './crash-check.js'
import { whyNotReplay } from './policy.js'
import type { RequestInsert, Resume } from './resume.js'

export class Replayer implements FramerSink, CheckWaiter {
  readonly framer: Framer & FramerExtras
  /** The framer or the resume machinery may keep views of chunks past their handler (all but opaque). */
  readonly keepsViews: boolean
  private readonly s: Session
  private readonly replay: ReplayBuffer
  /** False once the replay bound was passed, until the session is at a clean boundary again. */
  private recording: boolean
  /** Absolute count of client bytes seen by the framer. */
  private clientOffset = 0
  /** Times the oldest unanswered request has been sent. */
  private headAttempts = 0
  /**
   * With replay on, the protocol's resume (./resume.ts): follows what the client has of the open
   * response, and fits a replacement's answer onto it after a failover. Undefined: opaque.
   */
  private readonly resume: Resume | undefined
  /** Bytes the resume asked to add to the first re-sent request (http1: `Range`/`If-Range`). */
  private rangeInsert: RequestInsert | undefined = undefined
  private waiting = false
  /** The server connection whose close is being checked: crash or graceful? (opaque, blame) */
  private checking: Socket | undefined = undefined
  private probeKind: ServerFailure = 'eof'
  private probeError: Error | undefined = undefined
  /** The backend check was asked because the server failed on an incomplete request (whose fault?). */
  private probeBlame = false
  /** The session has had a server connection before: a new one first gets the prologue. */
  private connectedOnce = false
  /** Client offset answered while no server was attached, released once the buffer is written. */
  private releaseAfterWrite = 0
  /** Replies to prologue requests still to be read and dropped on the current server connection. */
  private swallow = 0
  private responseTimer: NodeJS.Timeout | undefined = undefined
  /** Set while a failover is in progress, until the replacement's first byte reaches the client. */
  handoff: { from: Backend; at: number; requests: number; pooled: boolean } | undefined = undefined
  /** The backend went down or drains: leave it at the next clean boundary. */
  private leaving = false
  /**
   * http1: client bytes held back from the server (a request head not yet whole, bytes after an
   * upgrade request awaiting its response), from absolute offset `gateStart`. Undefined when none.
   */
  private gate: Buffer[] | undefined = undefined
  private gateStart = 0
  private gateBytes = 0
  /** When the request the client is partway through began (ms since the epoch; 0: none partial). */
  requestSince = 0

  constructor(session: Session, host: SessionHost) {
    this.s = session
    this.framer = host.framer!(this)
    this.replay = new ReplayBuffer(host.budget)
    this.recording = host.config.replay.mode !== 'none'
    this.resume = this.recording ? protocolOf(host.config.protocol).resume?.() : undefined
    this.keepsViews = this.framer.viewsSafe !== true || this.resume !== undefined
  }

  /** Client chunks go into the replay buffer now. */
  get recordingNow(): boolean {
    return this.recording
  }

  /**
   * A server connection is attached (new or pooled): the prologue, then the replayed requests;
   * `held` are the client bytes the core kept while connecting, written after them. Returns false
   * when the server asked to wait for `drain`.
   */
  attached(server: Socket, pooled: boolean, held: Buffer[] | undefined): boolean {
    const s = this.s
    const host = s.host
    let flowing = true
    const replayBytes = this.recording ? this.replay.bytes : 0
    // Session state (Redis AUTH, SELECT…) goes first on every connection after the first one.
    const prologue = this.connectedOnce ? this.framer.prologue?.() : undefined
    this.connectedOnce = true
    if (prologue !== undefined && prologue.requests.length > 0) {
      server.cork()
      for (const request of prologue.requests) server.write(request)
      this.swallow = prologue.requests.length
      server.uncork()
    }
    if (replayBytes > 0 || held !== undefined) {
      server.cork()
      if (replayBytes > 0) {
        const upTo = this.gate !== undefined ? this.gateStart : undefined
        flowing = this.replay.writeTo(server, this.rangeInsert, upTo)
      }
      this.rangeInsert = undefined
      if (this.releaseAfterWrite > 0) {
        this.replay.release(this.releaseAfterWrite)
        this.releaseAfterWrite = 0
      }
      if (replayBytes > host.config.replay.maxBytes) {
        // Read whole while connecting, past the bound: sent, but not replayable until it drains.
        this.recording = false
        this.replay.reset(this.clientOffset)
      }
      if (held !== undefined) for (const chunk of held) flowing = server.write(chunk)
      server.uncork()
    }
    const h = this.handoff
    if (h !== undefined) {
      h.pooled = pooled
      host.handedOff(s, {
        from: h.from,
        to: s.backend!,
        pooled,
        requests: h.requests,
        bytes: replayBytes,
        ms: Math.round((performance.now() - h.at) * 1000) / 1000,
      })
    }
    if (host.config.responseTimeout > 0 && this.awaitsResponse()) this.armResponseTimer()
    return flowing
  }

  /**
   * The session's server connection was attached before this replayer existed (a framed session
   * that left the native plane): a later connection gets the prologue, as after `attached`.
   */
  adopted(): void {
    this.connectedOnce = true
  }

  /** The client left: may its server connection serve someone else (pool.reuse)? */
  reusable(): boolean {
    const framer = this.framer
    return (
      framer.delimited &&
      framer.atBoundary() &&
      this.resume?.resuming !== true &&
      !framer.pinned &&
      framer.prologue?.() === undefined
    )
  }

  /** The server connection is no longer the session's: no response is awaited on it. */
  detached(): void {
    this.waiting = false
  }

  /** Start recording again from here, where the session is at a clean boundary. */
  private recordFromHere(): void {
    if (!this.recording && this.s.host.config.replay.mode !== 'none') {
      this.recording = true
      this.replay.reset(this.clientOffset)
    }
  }

  /**
   * The sweep found the client's partial request older than `requestTimeout`: tell the client why
   * where the protocol has words for it (HTTP 408), then close it. The client's doing: nothing is
   * counted against the backend.
   */
  requestTimedOut(): void {
    const s = this.s
    const reply = this.framer.timeoutReply
    s.error = new ClientError('ERR_BATON_REQUEST_TIMEOUT', 'request not whole within requestTimeout')
    if (reply === undefined) return s.destroy('client-timeout')
    const server = s.server
    if (server !== undefined) s.detachServer(server)
    s.serverClosed = true
    s.state = 'closing'
    s.closingOutcome = 'client-timeout'
    s.client.write(reply)
    s.client.destroySoon()
  }

  /** The session ended: timers, held references, a pending backend check. */
  finish(): void {
    clearTimeout(this.responseTimer)
    this.replay.reset(0)
    if (this.checking !== undefined) {
      this.checking = undefined
      if (this.s.backend !== undefined) cancelCheck(this.s.backend, this)
    }
  }

  /** Client bytes on the replay path: find request edges, keep a reference, forward. */
  fromClient(chunk: Buffer): void {
    const framer = this.framer
    // Keep the reference before parsing: a response that came before its request was whole is
    // answered inside request(), and its release must reach the end of this chunk.
    if (this.recording) this.replay.push(chunk)
    const pendingBefore = framer.requestPartial === undefined ? 0 : framer.pending()
    const err = framer.request(chunk)
    if (err !== undefined) return this.framingError(err, 'client')
    if (framer.requestPartial !== undefined) {
      // `requestTimeout` runs from the first byte of the request still partial after this chunk.
      if (!framer.requestPartial()) this.requestSince = 0
      else if (this.requestSince === 0 || framer.pending() > pendingBefore) this.requestSince = this.s.lastClient
    }
    const at = this.clientOffset
    this.clientOffset += chunk.length
    // http1: a head goes on only once whole and valid; bytes after an upgrade wait for its answer.
    const out = framer.holdFrom === undefined ? chunk : this.passGate(chunk, at, framer.holdFrom())
    const server = this.s.server
    const open = this.s.state === 'open' && server !== undefined
    if (this.recording) {
      const replay = this.replay
      if (open) {
        if (replay.bytes > this.s.host.config.replay.maxBytes || this.s.host.budget.exceeded) {
          // Past the bound: not replayable until every request in flight is answered.
          this.recording = false
          replay.reset(this.clientOffset)
        }
      } else if (replay.bytes >= this.s.host.config.maxPendingBytes) {
        // No server to write to yet: nothing may be dropped, so stop reading instead.
        this.s.client.pause()
      }
    } else if (!open && out !== undefined) {
      if (Array.isArray(out)) for (const b of out) this.s.hold(b)
      else this.s.hold(out)
    }
    if (open) {
      if (out !== undefined && !writeAll(server, out)) this.s.client.pause()
      if (!this.waiting && this.s.host.config.responseTimeout > 0 && this.awaitsResponse()) this.armResponseTimer()
    } else if (this.s.state === 'open') {
      // The server left at a clean boundary: this request opens a new server connection.
      this.s.state = 'connecting'
      this.s.attempts = 0
      this.s.connect()
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
    if (this.gateBytes >= this.s.host.config.maxPendingBytes) this.s.client.pause()
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
    if (this.gateBytes < this.s.host.config.maxPendingBytes && this.s.server !== undefined) this.s.client.resume()
    return out
  }

  /** Client bytes are held back (http1). */
  get gated(): boolean {
    return this.gate !== undefined
  }

  /** @internal After server bytes: a response may have opened the gate (a 101, a refused upgrade). */
  flushGate(): void {
    const hold = this.framer.holdFrom!()
    const out = this.releaseGate(hold < 0 ? this.clientOffset : hold)
    const server = this.s.server
    if (out === undefined || this.s.state !== 'open' || server === undefined) {
      if (out !== undefined) for (const b of out) this.s.hold(b)
      return
    }
    if (!writeAll(server, out)) this.s.client.pause()
  }

  /** A whole request waits for its response (not only one the client is still sending). */
  private awaitsResponse(): boolean {
    const framer = this.framer
    const pending = framer.pending()
    return pending > (framer.requestOpen?.() === true ? 1 : 0)
  }

  /** Server bytes on the replay path. */
  fromServer(server: Socket, chunk: Buffer): void {
    const framer = this.framer
    while (this.swallow > 0) {
      const r = framer.swallowReply!(chunk)
      if ('code' in r) return this.framingError(r, 'server')
      if (r.complete) {
        this.swallow--
        if (r.error) {
          this.s.host.unrecoverable(this.s, 'prologue-refused')
          return this.s.destroy(
            'unrecoverable',
            new BackendError('ERR_BATON_PROLOGUE', 'prologue refused')
          )
        }
      }
      if (r.used >= chunk.length) return
      chunk = chunk.subarray(r.used)
    }
    const resume = this.resume
    if (resume !== undefined && resume.resuming) {
      // After a failover: the replacement's answer is fitted onto what the client already has.
      const step = resume.feed(chunk, framer)
      if (typeof step === 'string') return this.resumeFailed(step)
      if ('code' in step) return this.framingError(step, 'server')
      if (step.verified) this.s.host.resumed(this.s, true)
      if (step.out.length > 0) this.sendMade(server, step.out)
      if (step.used === chunk.length) return this.responseRead()
      chunk = chunk.subarray(step.used)
    }
    const err = framer.response(chunk)
    if (err !== undefined) return this.framingError(err, 'server')
    if (resume !== undefined) {
      // The resume follows what the client gets (a hash, a view); it may hold a head back.
      const out = resume.forwarded(chunk, framer, this.recording)
      if (out === undefined) return this.responseRead()
      chunk = out
    }
    if (this.handoff !== undefined) this.handoffDone()
    this.responseRead()
    if (!this.s.client.write(chunk)) server.pause()
  }

  /** Write bytes a resume made to the client (it has already followed them). */
  private sendMade(server: Socket, out: Buffer[]): void {
    const client = this.s.client
    let flowing = true
    if (out.length > 1) client.cork()
    for (const b of out) flowing = client.write(b)
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
    if (framer === undefined || !framer.delimited || framer.pinned || this.s.state !== 'open') return
    this.leaving = true
    this.leaveAtBoundary()
  }

  private leaveAtBoundary(): void {
    const server = this.s.server
    const framer = this.framer
    if (server === undefined) return void (this.leaving = false)
    if (!framer.atBoundary() || this.resume?.resuming === true || this.swallow > 0) return
    if (framer.pinned) return void (this.leaving = false)
    this.leaving = false
    const from = this.s.backend!
    this.s.detachServer(server)
    this.s.serverClosed = true
    this.recordFromHere()
    this.s.host.migrated(this.s, from)
    if (this.s.clientEnded) this.s.client.end()
  }

  /** After server bytes were read: the response timer, and recording again at a clean boundary. */
  private responseRead(): void {
    const framer = this.framer
    if (this.leaving) this.leaveAtBoundary()
    if (this.waiting) {
      if (this.awaitsResponse() && framer.pendingBlocking?.() !== true) this.responseTimer!.refresh()
      else this.waiting = false
    }
    if (!this.recording && this.s.host.config.replay.mode !== 'none' && framer.atBoundary()) {
      this.recording = true
      this.replay.reset(this.clientOffset)
    }
  }

  /** FramerSink: the requests before `upTo` are answered. */
  answered(upTo: number): void {
    this.headAttempts = 0
    if (this.s.state === 'open' && this.s.server !== undefined) {
      // Progress: the backends that failed this session are candidates again (one that failed an
      // hour ago and came back must not be avoided for the rest of a long-lived session).
      this.s.failed = undefined
      return this.replay.release(upTo)
    }
    // No server yet: the replay buffer is what will be written once connected (a Redis SUBSCRIBE
    // passes through "answered" at once), so let go only after that write.
    if (upTo > this.releaseAfterWrite) this.releaseAfterWrite = upTo
  }

  private handoffDone(): void {
    const h = this.handoff!
    this.handoff = undefined
    this.s.host.handoffLatency(this.s, h.pooled, performance.now() - h.at)
  }

  private resumeFailed(why: string): void {
    this.s.host.resumed(this.s, false)
    this.s.host.unrecoverable(this.s, 'resume-mismatch', why)
    this.s.destroy(
      'unrecoverable',
      new BackendError('ERR_BATON_RESUME_MISMATCH', 'resumed response differs')
    )
  }

  private framingError(err: FramingError, side: 'client' | 'server'): void {
    const error = new FramingError(err.code, side, `${side} framing: ${err.message}`, err.reply)
    if (side === 'server' || err.reply === undefined) return this.s.destroy('framing-error', error)
    // Tell the client why (HTTP: 400 Bad Request), then close it once the reply is written.
    this.s.error = error
    const server = this.s.server
    if (server !== undefined) this.s.detachServer(server)
    this.s.serverClosed = true
    this.s.state = 'closing'
    this.s.closingOutcome = 'framing-error'
    this.s.client.write(err.reply)
    this.s.client.destroySoon()
  }

  private armResponseTimer(): void {
    if (this.framer.pendingBlocking?.() === true) return // BLPOP and friends may wait as long as they like
    this.waiting = true
    if (this.responseTimer === undefined) {
      this.responseTimer = setTimeout(onResponseTimeout, this.s.host.config.responseTimeout, this)
    } else {
      this.responseTimer.refresh()
    }
  }

  /** @internal */
  responseTimedOut(): void {
    if (!this.waiting || this.s.server === undefined || this.s.state !== 'open') return
    this.waiting = false
    const ms = this.s.host.config.responseTimeout
    this.onServerFailed(
      this.s.server,
      'timeout',
      new BackendError('ERR_BATON_RESPONSE_TIMEOUT', `no response within ${ms} ms`)
    )
  }

  /**
   * opaque: a crash and a graceful close look the same on the wire (DESIGN.md). Ask the backend at
   * once, with the client paused: if it still accepts, the server closed on purpose and the FIN (or
   * reset) goes on to the client as a plain proxy would pass it; if it refuses, it died — requests
   * in flight are re-sent elsewhere, and between turns the client simply gets a new server
   * connection for its next request. The answer comes from a connect to the backend that started
   * after the close: the next session's own connect under churn, or one probe shared by the closes
   * of that backend (crash-check.ts); only with replay on.
   */
  private checkBackend(kind: ServerFailure, err: Error, blame = false): void {
    this.probeBlame = blame
    this.checking = this.s.server
    this.probeKind = kind
    this.probeError = err
    this.s.client.pause()
    checkBackend(this.s.backend!, Math.min(this.s.host.config.connectTimeout, 1000), this, this.s.connectStartedAt)
  }

  /** CheckWaiter: the backend check's verdict (replay/crash-check.ts). */
  checked(alive: boolean): void {
    const checking = this.checking
    this.checking = undefined
    if (checking === undefined || checking !== this.s.server) return
    const server = this.s.server
    if (this.s.state !== 'open' || server === undefined) return
    this.s.client.resume()
    const kind = this.probeKind
    const err = this.probeError!
    this.probeError = undefined
    if (alive && this.probeBlame) {
      // The backend is fine: it closed on a client whose request never completed. Not the
      // server's failure (no passive-health count, no replay elsewhere): the client gets what a
      // plain proxy would give it.
      this.s.endOutcome = 'client-incomplete'
      this.s.detachServer(server)
      this.s.serverClosed = true
      if (kind === 'eof') return void this.s.client.end()
      return this.s.destroy('client-incomplete', err)
    }
    if (alive) {
      if (kind === 'eof') return void this.s.client.end()
      this.s.host.serverFailed(this.s, this.s.backend!, kind, err)
      return this.s.destroy('server-error', err)
    }
    const framer = this.framer
    if (framer.pending() > 0 || framer.responseOpen) return this.onServerFailed(server, kind, err, true)
    // Between turns, and the backend is gone: the client need not know.
    const backend = this.s.backend!
    this.s.host.serverFailed(this.s, backend, kind, err)
    this.s.detachServer(server)
    this.s.serverClosed = true
    ;(this.s.failed ??= new Set()).add(backend)
    this.recordFromHere()
    if (this.s.clientEnded) this.s.client.end()
    else this.s.orphanedAt = Date.now()
  }

  /**
   * The open server connection failed. Fail over when what is in flight may be re-sent; pass the
   * failure on as a plain proxy would when not.
   */
  onServerFailed(server: Socket, kind: ServerFailure, err: Error, checked = false): void {
    const framer = this.framer
    const backend = this.s.backend!
    // A request held whole in the gate never reached this server: not pending on it.
    const pending = framer.pending() - (this.gate !== undefined ? 1 : 0)
    if (!checked && this.gate === undefined && framer.requestOpen?.() === true && !framer.pinned) {
      // The client's request is incomplete: the server may have given up on a slow client (a
      // header or body timeout), which is the client's doing, or it may have died. Ask the
      // backend before blaming anyone (see checked()).
      return this.checkBackend(kind, err, true)
    }
    const resume = this.resume
    // Whether the client has part of a response (bytes held back from it do not count).
    const partial = resume !== undefined ? resume.cut(framer) : framer.responseOpen
    if (framer.pinned) {
      // Server-side state (a transaction, subscriptions, a tunnel) that no other connection has:
      // pass the failure on as a plain proxy would.
      this.s.host.serverFailed(this.s, backend, kind, err)
      if (pending === 0 && !partial) {
        if (kind === 'eof') return void this.s.client.end()
        return this.s.destroy('server-error', err)
      }
      this.s.host.unrecoverable(this.s, 'pinned')
      return this.s.destroy('unrecoverable', err)
    }
    if (pending === 0 && !partial) {
      if (!framer.delimited && server.bytesRead > 0 && !checked) {
        // opaque, nothing unanswered: the close may end a response, or the backend may have died
        // between turns. Ask the backend before deciding (see checkBackend).
        return this.checkBackend(kind, err)
      }
      // A clean boundary: drop the connection; the next request opens another.
      if (kind !== 'eof') this.s.host.serverFailed(this.s, backend, kind, err)
      this.s.detachServer(server)
      this.s.serverClosed = true
      this.recordFromHere()
      if (this.s.clientEnded) this.s.client.end()
      return
    }
    this.s.host.serverFailed(this.s, backend, kind, err)
    const why = whyNotReplay({
      mode: this.s.host.config.replay.mode,
      recording: this.recording,
      pendingSafe: framer.pendingSafe(),
      partial,
      delimited: framer.delimited,
      attempts: this.headAttempts,
      maxAttempts: this.s.host.config.replay.maxAttempts,
    })
    if (why !== undefined) {
      this.s.host.unrecoverable(this.s, why)
      return this.s.destroy('unrecoverable', err)
    }
    if (resume !== undefined) {
      // Set the resume up to fit the replacement's answer onto what the client has.
      const setup = resume.failover(partial, this.replay)
      if (typeof setup === 'string') {
        this.s.host.unrecoverable(this.s, 'not-resumable', setup)
        return this.s.destroy('unrecoverable', err)
      }
      this.rangeInsert = setup
    }
    framer.restartResponse()
    this.headAttempts++
    this.s.failovers++
    this.handoff = { from: backend, at: performance.now(), requests: pending, pooled: false }
    this.s.detachServer(server)
    ;(this.s.failed ??= new Set()).add(backend)
    this.s.state = 'connecting'
    this.s.attempts = 0
    this.s.connect()
  }

  onServerEnd(server: Socket): void {
    const framer = this.framer
    // An HTTP body that ends at the close, or a pinned session (a tunnel, a subscription): the FIN
    // goes on.
    if (framer.closeDelimited === true || framer.pinned) return void this.s.client.end()
    // The client already half-closed and everything is answered: the ordinary end of the conversation.
    // So is a close the last exchange announced (`Connection: close`): the client expects it.
    if ((this.s.clientEnded || framer.closeAfter === true) && framer.pending() === 0 && !framer.responseOpen)
      return void this.s.client.end()
    const eof = serverEof()
    // A framer that delimits responses knows whether anything was cut; a connection closed without
    // a word (at accept, or a pooled one already closing) is as good as a refused connect.
    const silent = server.bytesRead === 0 && this.recording
    // opaque with a request unanswered: the server closed without a word of answer. Whether it
    // died or closed on purpose (a keep-alive race), re-sending is what the client needs; the
    // backend check is only for a close between turns, where a crash and a graceful close must be
    // told apart. (A check can also be answered by a dying process's listener: the kernel completes
    // a connect until the last descriptor is gone.) Not once the client has sent its FIN: a server
    // that reads to the client's end and then closes is the ordinary end of a conversation (a
    // stream each way, the server finishing its own first), and re-sending would answer twice.
    const unanswered = framer.pending() > 0 && !this.s.clientEnded
    if (framer.delimited || silent || this.checking !== undefined || unanswered)
      return this.onServerFailed(server, 'eof', eof)
    this.checkBackend('eof', eof)
  }
}

/** Write one buffer or several; false when the socket asked to wait for `drain`. */
export function writeAll(socket: Socket, out: Buffer | Buffer[]): boolean {
  if (!Array.isArray(out)) return socket.write(out)
  let flowing = true
  for (const b of out) flowing = socket.write(b)
  return flowing
}

function onResponseTimeout(r: Replayer): void {
  r.responseTimedOut()
}
