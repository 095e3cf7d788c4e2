/**
 * A session on the native plane: the part of `Session` that talks to the addon once both sockets
 * are up (docs/native-plane.md). Node accepted, picked and connected as for any session; in the
 * server socket's 'connect' the two descriptors pass to the plane and JavaScript leaves the byte
 * path. What comes back are the plane's events, mapped here onto the session's usual semantics:
 *
 *   client-eof        the plane passes the FIN on itself; bookkeeping only
 *   server-eof (held) nothing unanswered → the crash check (crash-check.ts): alive, the FIN goes
 *                     on (shutdownClient); dead, between turns, the client keeps its connection
 *                     and the plane moves to another server at once (replaceServer, nothing re-sent)
 *                     unanswered bytes while the client still talks → a failover at once
 *                     (policy.ts decides; replaceServer re-sends the replay pipe); after the
 *                     client's FIN → the crash check as between turns
 *   error (server)    the same paths (between turns: the crash check); a reset that cannot be
 *                     hidden reaches the client as a reset (close with SO_LINGER 0)
 *   error (client)    recorded; the `close` that follows ends the session (client-error)
 *   error (internal)  Baton's own (no pipe: EMFILE): local-error, never the backend's fault
 *   close             the session ends (done, client-error, local-error)
 *   handoff           an http1 or resp session the plane no longer follows (anything outside
 *                     its plain exchanges, any FIN or server error): `takeOver` detaches it and
 *                     Session.leavePlane carries on with Node sockets and a replayer
 *
 * One module-level listener serves every session, finding its link by handle (no closure per
 * session keeps the destroyed sockets alive). Bytes for the table and metrics are read from the
 * plane's stats when someone asks (the admin API, the sweep) and once at the end, never per chunk.
 *
 * What differs from the JavaScript plane, by construction:
 * - A move between turns (the server died after answering) happens when the crash check says so,
 *   not when the client next speaks: the plane has no event for client bytes.
 * - `responseTimeout` is checked by the listener's sweep on the plane's idle clock: the server owes
 *   an answer and nothing has moved for that long (the JavaScript plane times it from the request).
 * - The hand-off latency is measured to the `replaceServer` call, not to the first replayed byte.
 * - Replay bytes are held in pipes, not counted against `replay.maxTotalBytes`; the pipe's capacity
 *   is `replay.maxBytes`, at most /proc/sys/fs/pipe-max-size for an unprivileged process.
 */
import { readFileSync } from 'node:fs'
import { isIP, Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import type { Backend } from '../backend.js'
import { BackendError, ClientError, serverEof, socketError } from '../errors.js'
import { cancelCheck, checkBackend, type CheckWaiter } from '../replay/crash-check.js'
import { NOT_REPLAYABLE, whyNotReplay } from '../replay/policy.js'
import { protocolOf } from '../protocols/index.js'
import type { ServerFailure, Session, SessionBounds, SweepVerdict } from '../session.js'
import {
  emptyStats,
  type NativePlane,
  type PlaneAccepted,
  type PlaneConnection,
  type Detached,
  type PlaneEvent,
  type PlaneHandle,
  type PlaneStats,
} from './plane.js'

/**
 * What a session's `client` and `server` point at once their descriptors belong to the plane: one
 * socket that never connects, shared, so that the two destroyed originals (about 1 KiB of heap with
 * their stream states) are not kept for the session's whole life. What a session on the plane
 * still needs of them was read before (`remote`, `serverLocal`); its bytes come from the plane.
 */
export const ON_PLANE: Socket = new Socket()
// Whatever a session does to it (destroy, resetAndDestroy) is a no-op or an error nobody needs.
ON_PLANE.on('error', ignore)

function ignore(): void {}

/** Live links by plane handle, for the one module-level listener. */
const links = new Map<PlaneHandle, NativeLink>()

function onPlaneEvent(event: PlaneEvent, handle: PlaneHandle): void {
  links.get(handle)?.onEvent(event)
}

/** Links whose first server connect the plane is making, by connection. */
const connecting = new Map<PlaneConnection, NativeLink>()

function onPlaneConnect(connection: PlaneConnection, errno: number, code: string): void {
  connecting.get(connection)?.onConnect(connection, errno, code)
}

/** Links whose client the plane accepted, until the attach takes it (a reset while connecting). */
const accepting = new Map<PlaneAccepted, NativeLink>()

function onAcceptedGone(client: PlaneAccepted, errno: number, code: string): void {
  accepting.get(client)?.clientGone(client, errno, code)
}

/** Live native sessions of this thread (for tests and the admin page). */
export function nativeSessions(): number {
  return links.size
}

let pipeMax: number | undefined
/** Read once: process.getuid() is a system call, and this runs for every session. */
const ROOT = process.getuid?.() === 0

/** The replay pipe's capacity for `maxBytes`: an unprivileged process cannot pass pipe-max-size. */
export function replayCapacity(maxBytes: number): number {
  if (ROOT) return maxBytes
  if (pipeMax === undefined) {
    try {
      pipeMax = Number(readFileSync('/proc/sys/fs/pipe-max-size', 'utf8').trim()) || 1 << 20
    } catch {
      pipeMax = 1 << 20
    }
  }
  return Math.min(maxBytes, pipeMax)
}

/**
 * The sweep's view of the session it looks at, filled in place: the sweep visits every session a
 * few times a second, and an object each time was 2.4 MB of garbage per sweep at 9,800 idle
 * sessions. What a verdict passes on is a copy.
 */
const SWEPT: PlaneStats = emptyStats()

/** Moves between turns in a row with no client byte between them: past it the FIN goes on. */
const MAX_IDLE_MOVES = 3

export class NativeLink implements CheckWaiter {
  private readonly s: Session
  private readonly plane: NativePlane
  /** The plane's session, once attached; undefined before, and after it ended. */
  private handle: PlaneHandle | undefined = undefined
  /** Attached at least once: bytes now come from the plane. */
  private attachedOnce = false
  /** The plane follows the protocol's boundaries (http1, resp) and hands the session over (`takeOver`). */
  private framed = false
  /** The final stats, once the plane's session ended (live ones are read when asked, not kept). */
  private last: PlaneStats | undefined = undefined
  /** `bytesFromServer` when the current server connection was attached. */
  private serverBase = 0
  /** The backend check in flight for the current server: crash or graceful close? */
  private checking = false
  private probeKind: ServerFailure = 'eof'
  private probeError: Error | undefined = undefined
  /** The plane is paused by this link (a check, a move). */
  private paused = false
  /** A failover in progress (unanswered bytes re-sent once the next server connects). */
  handoff: { from: Backend; at: number; requests: number } | undefined = undefined
  /** Times the oldest unanswered request has been sent; reset when the server next answers. */
  private headAttempts = 0
  private turnsAtFailover = -1
  /** `turns` at the last move: `Session.failed` is forgotten once the session made progress since. */
  private turnsAtMove = -1
  /** Moves between turns since the client last sent a byte (a backend that closes on accept). */
  private idleMoves = 0
  private clientBytesAtMove = -1
  /** When the last move between turns happened (Date.now(); 0: none pending), for ORPHAN_FIN_MS. */
  private movedAt = 0
  /** The error the plane reported on the client side, for the `close` that follows. */
  private clientError: Error | undefined = undefined
  /**
   * The plane's own connect to the session's first server (no Node socket for it; `startConnect`),
   * from its start until the attach takes it or it is cancelled.
   */
  private conn: PlaneConnection | undefined = undefined
  /**
   * The client, where the plane accepted it (Listener.acceptNative): no Node socket for it either.
   * Held until the attach takes it, or closed when the session ends before.
   */
  private client: PlaneAccepted | undefined

  constructor(session: Session, plane: NativePlane, client?: PlaneAccepted) {
    this.s = session
    this.plane = plane
    this.client = client
    if (client !== undefined) {
      accepting.set(client, this)
      plane.watchAccepted(client, onAcceptedGone)
    }
  }

  /** The accepted client, if the link still holds it, no longer watched: the caller's to attach or close. */
  private takeClient(): PlaneAccepted | undefined {
    const client = this.client
    if (client === undefined) return undefined
    this.client = undefined
    accepting.delete(client)
    return client
  }

  /** The accepted client reset before the attach: the session ends, as on a Node socket's error. */
  clientGone(client: PlaneAccepted, errno: number, code: string): void {
    if (this.client !== client) return
    this.s.destroy('client-error', Object.assign(new Error(`read ${code}`), { code, errno: -errno }))
  }

  /** The plane holds the session's descriptors now. */
  get attached(): boolean {
    return this.handle !== undefined
  }

  /**
   * The plane can make the session's first server connection itself: an IP address (a unix-domain
   * backend or a host name takes Node's connect), and nothing to write before the session's bytes
   * (a PROXY header goes through Node's socket). Later connects (failovers) take Node's connect and
   * `replaceServer`. Returns the address family, or 0 when Node connects.
   */
  connectFamily(backend: Backend, header: boolean): 0 | 4 | 6 {
    if (this.handle !== undefined || this.attachedOnce || header || backend.path !== undefined) return 0
    // A scoped IPv6 address (fe80::1%eth0) takes Node's connect.
    if (backend.host.includes('%')) return 0
    return isIP(backend.host) as 0 | 4 | 6
  }

  /**
   * Start the plane's connect to `backend`, an address of `family` (connectFamily). Its outcome
   * comes to the session as for Node's connect: `onConnected` or `onConnectFailed`, never from
   * inside this call.
   */
  startConnect(backend: Backend, family: 4 | 6): void {
    try {
      // A client the plane accepted waits for nothing but this connect: told of it at once.
      this.conn = this.plane.connect(family, backend.host, backend.port, onPlaneConnect, {
        now: this.client !== undefined,
      })
      connecting.set(this.conn, this)
    } catch (err) {
      // Could not even start (descriptors, no route): reported as a failed connect, a turn later.
      const e = connectError(err as NodeJS.ErrnoException, backend)
      process.nextTick(() => {
        if (this.s.state === 'connecting' && this.conn === undefined && this.s.server === ON_PLANE)
          this.s.onConnectFailed(ON_PLANE, e)
      })
    }
  }

  /** The plane's connect is no longer wanted (timed out, the session ended). */
  cancelConnect(): void {
    const conn = this.conn
    if (conn === undefined) return
    this.conn = undefined
    connecting.delete(conn)
    this.plane.cancelConnect(conn)
  }

  /** The plane's connect is done: connected (`errno` 0), or failed and closed by the plane. */
  onConnect(connection: PlaneConnection, errno: number, code: string): void {
    connecting.delete(connection)
    if (this.conn !== connection) return
    const s = this.s
    if (errno !== 0) {
      this.conn = undefined
      return s.onConnectFailed(
        ON_PLANE,
        connectError(Object.assign(new Error(code), { code, errno: -errno }), s.backend!)
      )
    }
    if (s.state !== 'connecting') return this.cancelConnect()
    s.onConnected(ON_PLANE, false)
  }

  /** A server connection is up (the first, or one to move to): hand it to the plane. */
  connected(server: Socket, pooled: boolean): void {
    if (this.handle === undefined) this.attach(server)
    else this.replace(server, pooled)
  }

  private attach(server: Socket): void {
    const s = this.s
    const config = s.host.config
    const replay = config.replay.mode !== 'none'
    const held = s.held
    s.held = undefined
    const head = held === undefined ? undefined : held.length === 1 ? held[0] : Buffer.concat(held)
    // An accepted client passes to the attach, which owns it from the call on (closed if it fails).
    const client = this.takeClient() ?? s.client
    const conn = this.conn
    this.conn = undefined
    if (typeof client !== 'number') s.handOver(client)
    if (conn === undefined) s.handOver(server)
    else s.serverLocal = this.plane.localName(conn)
    let handle: PlaneHandle
    const framing = protocolOf(config.protocol).nativeFraming
    try {
      const options = {
        replayBytes: replay && framing === undefined ? replayCapacity(config.replay.maxBytes) : 0,
        holdServerEof: replay,
        ...(framing !== undefined ? framing : {}),
        ...(head !== undefined ? { head } : {}),
      }
      handle =
        conn === undefined
          ? this.plane.attach(client, server, onPlaneEvent, options)
          : this.plane.attachConnected(client, conn, onPlaneEvent, options)
    } catch (err) {
      // What the plane did not take of its own connection and accepted client is closed (a no-op
      // for what it did take).
      if (conn !== undefined) this.plane.cancelConnect(conn)
      if (typeof client === 'number') this.plane.closeAccepted(client as PlaneAccepted)
      // Out of descriptors or pipes (dup, pipe2): this process's shortage, not the backend's.
      s.host.localError(s, err as Error)
      s.destroy('local-error', err as Error)
      return
    }
    this.handle = handle
    this.attachedOnce = true
    this.framed = framing !== undefined
    this.serverBase = 0
    links.set(handle, this)
    s.client = ON_PLANE
    s.server = ON_PLANE
  }

  private replace(server: Socket, pooled: boolean): void {
    const s = this.s
    const handle = this.handle!
    s.handOver(server)
    let resent: number
    try {
      resent = this.plane.replaceServer(handle, server)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      // The plane thread closed the session (the client went away) while this connect ran: its
      // `close` event is on its way and ends the session with the new server socket.
      if (code === 'ERR_NATIVE_PLANE_CLOSED') return
      if (code === 'ERR_NATIVE_PLANE_NOT_REPLAYABLE') {
        s.host.unrecoverable(s, NOT_REPLAYABLE.overBound)
        return s.destroy('unrecoverable', err as Error)
      }
      s.host.localError(s, err as Error)
      return s.destroy('local-error', err as Error)
    }
    s.server = ON_PLANE
    this.serverBase = this.read()?.bytesFromServer ?? 0
    this.resume()
    const h = this.handoff
    if (h === undefined) return
    this.handoff = undefined
    const ms = performance.now() - h.at
    s.host.handedOff(s, {
      from: h.from,
      to: s.backend!,
      pooled,
      requests: h.requests,
      bytes: resent,
      ms: Math.round(ms * 1000) / 1000,
    })
    s.host.handoffLatency(s, pooled, ms)
  }

  /** Current stats, or the last ones once the session is gone. */
  read(): PlaneStats | undefined {
    return this.handle !== undefined ? (this.plane.stats(this.handle) ?? this.last) : this.last
  }

  /** Client bytes so far, or undefined before the plane had the session (then the socket counts). */
  get bytesFromClient(): number | undefined {
    return this.attachedOnce ? (this.read()?.bytesFromClient ?? 0) : undefined
  }

  get bytesToClient(): number | undefined {
    return this.attachedOnce ? (this.read()?.bytesToClient ?? 0) : undefined
  }

  /** End the plane's session now: both descriptors close (the client's with an RST on `reset`). */
  close(reset = false): void {
    const handle = this.handle
    if (handle === undefined) return
    this.handle = undefined
    links.delete(handle)
    const st = this.plane.close(handle, reset)
    if (st !== undefined) this.last = st
  }

  /**
   * The session ended: the plane's session closes, and a pending check is no longer wanted. As on
   * the JavaScript plane, a server's reset that could not be hidden reaches the client as a reset:
   * a response cut by it must not look complete.
   */
  finish(): void {
    const s = this.s
    this.cancelConnect()
    const client = this.takeClient()
    if (client !== undefined) this.plane.closeAccepted(client)
    this.close(
      s.outcome !== 'client-error' && (s.error as NodeJS.ErrnoException | undefined)?.code === 'ECONNRESET'
    )
    if (this.checking) {
      this.checking = false
      if (s.backend !== undefined) cancelCheck(s.backend, this)
    }
  }

  private pause(): void {
    if (this.paused || this.handle === undefined) return
    this.paused = true
    this.plane.pause(this.handle)
  }

  private resume(): void {
    if (!this.paused || this.handle === undefined) return
    this.paused = false
    this.plane.resume(this.handle)
  }

  /**
   * A framed session leaves the plane for JavaScript (after the plane's `handoff`, or for a bound or
   * a move): Session.leavePlane takes the descriptors and the bytes since the last clean point. A
   * no-op for a session that is not framed or not on the plane.
   */
  takeOver(reason: string, serverError?: Error): void {
    const handle = this.handle
    if (handle === undefined || !this.framed) return
    const s = this.s
    s.host.leftPlane(s, reason)
    const st = this.plane.stats(handle)
    this.handle = undefined
    links.delete(handle)
    this.last = st
    let d: Detached
    try {
      d = this.plane.detach(handle)
    } catch (err) {
      s.host.localError(s, err as Error)
      return s.destroy('local-error', err as Error)
    }
    s.leavePlane(d, st, serverError)
  }

  /** @internal One event of this session's plane (module-level listener above). */
  onEvent(e: PlaneEvent): void {
    const s = this.s
    switch (e.type) {
      case 'handoff': {
        if (e.reason === 'history' && e.errno !== 0) {
          // Out of memory for the history: what JavaScript would need to go on is not all there.
          const err = socketError(e.code, `history ${e.code}`)
          s.host.localError(s, err)
          return s.destroy('local-error', err)
        }
        return this.takeOver(
          e.reason,
          e.reason === 'server-error' ? socketError(e.code, `server ${e.code}`) : undefined
        )
      }
      case 'client-eof':
        // The plane passes it to the server once what came before has gone.
        s.clientEnded = true
        s.firstEnd ??= 'client'
        return
      case 'server-eof':
        s.firstEnd ??= 'server'
        if (e.held) this.onServerEof(e.stats)
        return
      case 'error': {
        const err = socketError(e.code, `${e.side} ${e.code}`)
        if (e.side === 'client') this.clientError = err
        else if (e.side === 'internal') s.host.localError(s, err)
        // While a check runs (a write after the FIN failed) its verdict sees `serverDown`; while
        // moving, the server is being replaced anyway.
        else if (s.state === 'open' && !this.checking) this.onServerFailed('error', err, e.stats)
        return
      }
      case 'close': {
        this.last = e.stats
        const handle = this.handle
        this.handle = undefined
        if (handle !== undefined) links.delete(handle)
        if (e.reason === 'client-error') return s.destroy('client-error', this.clientError)
        if (e.reason === 'internal-error') return s.destroy('local-error')
        return s.destroy(s.endOutcome)
      }
    }
  }

  /** A held server FIN (opaque: a graceful close and a crash look the same on the wire). */
  private onServerEof(st: PlaneStats): void {
    const s = this.s
    if (s.state !== 'open') return
    // A greeting server pins the session (a new one would greet again): the FIN goes on.
    if (this.pinned(st)) return this.passFin()
    // The client already half-closed and everything is answered: the ordinary end.
    if (s.clientEnded && st.answered) return this.passFin()
    const eof = serverEof()
    // A connection closed without a word is as good as a refused connect. A request left
    // unanswered goes elsewhere whether the server died or closed on purpose (a keep-alive race):
    // the check is for a close between turns, where a crash and a graceful close must be told apart
    // (and a dying process's listener can still complete a connect). Not once the client has sent
    // its FIN: a server that reads to the client's end and then closes is the ordinary end of a
    // conversation (a stream each way, the server's done first), and re-sending would answer twice.
    const silent = st.bytesFromServer === this.serverBase && st.replayable
    const unanswered = !st.answered && !st.clientEof
    if (silent || this.checking || unanswered) return this.onServerFailed('eof', eof, st)
    this.check('eof', eof)
  }

  /** A greeting server, or an answered client-first handshake: no other server could continue. */
  private pinned(st: PlaneStats): boolean {
    return st.serverFirst || (st.clientFirst && st.bytesFromServer > 0)
  }

  private passFin(): void {
    this.resume()
    if (this.handle !== undefined) this.plane.shutdownClient(this.handle)
  }

  /**
   * The server connection failed or closed. As the JavaScript plane's opaque replayer: a pinned
   * session fails as a plain proxy would; between turns the crash check decides; with unanswered
   * bytes, fail over when policy.ts allows it.
   */
  private onServerFailed(kind: ServerFailure, err: Error, st: PlaneStats, checked = false): void {
    const s = this.s
    const host = s.host
    const backend = s.backend!
    if (host.config.replay.mode === 'none') {
      // Nothing recorded (no framer on the JavaScript plane either): a plain proxy's failure.
      host.serverFailed(s, backend, kind, err)
      return s.destroy(kind === 'timeout' ? 'server-timeout' : 'server-error', err)
    }
    const pending = !st.answered
    if (this.pinned(st)) {
      host.serverFailed(s, backend, kind, err)
      if (!pending) {
        if (kind === 'eof') return this.passFin()
        return s.destroy('server-error', err)
      }
      host.unrecoverable(s, 'pinned')
      return s.destroy('unrecoverable', err)
    }
    if (!pending) {
      // The close may end a response, or the backend may have died between turns: ask it.
      if (st.bytesFromServer > this.serverBase && !checked) return this.check(kind, err)
      if (kind !== 'eof') host.serverFailed(s, backend, kind, err)
      return this.moveBetweenTurns(st, err)
    }
    host.serverFailed(s, backend, kind, err)
    if (st.turns !== this.turnsAtFailover) this.headAttempts = 0
    const why = whyNotReplay({
      mode: host.config.replay.mode,
      recording: st.replayable,
      pendingSafe: true,
      partial: st.responseStarted,
      delimited: false,
      attempts: this.headAttempts,
      maxAttempts: host.config.replay.maxAttempts,
    })
    if (why !== undefined) {
      host.unrecoverable(s, why)
      return s.destroy('unrecoverable', err)
    }
    this.headAttempts++
    this.turnsAtFailover = st.turns
    s.failovers++
    this.handoff = { from: backend, at: performance.now(), requests: 1 }
    this.moveServer(st)
  }

  /**
   * Between turns the server is gone: the client keeps its connection and the plane moves to
   * another server now (nothing to re-send). A backend that keeps closing on accept while the
   * client says nothing is given up on after a few moves: the FIN goes on, as a plain proxy's.
   */
  private moveBetweenTurns(st: PlaneStats, err: Error): void {
    if (st.bytesFromClient === this.clientBytesAtMove) this.idleMoves++
    else this.idleMoves = 1
    this.clientBytesAtMove = st.bytesFromClient
    if (this.idleMoves <= MAX_IDLE_MOVES && !st.clientEof) {
      this.movedAt = Date.now()
      return this.moveServer(st)
    }
    // Nothing more will be asked (the client half-closed), or nothing is being asked.
    if (!st.serverDown) return this.passFin()
    // The server's descriptor is gone (an error): no FIN can complete the plane's session.
    this.s.destroy(st.clientEof ? this.s.endOutcome : 'server-error', err)
  }

  /**
   * Leave the current server for another backend (a failover or a move between turns). The
   * backends to avoid are those that failed this session since it last made progress (a request
   * answered): one that failed an hour ago and came back is a candidate again.
   */
  private moveServer(st: PlaneStats): void {
    const s = this.s
    const backend = s.backend!
    this.pause()
    const server = s.server
    if (server !== undefined) s.detachServer(server)
    if (st.turns !== this.turnsAtMove) s.failed = undefined
    this.turnsAtMove = st.turns
    ;(s.failed ??= new Set()).add(backend)
    s.state = 'connecting'
    s.attempts = 0
    s.connect()
  }

  /**
   * Ask the backend whether it is alive, with the plane paused (crash-check.ts: answered by a
   * connect to it that started after the close, another session's or a shared probe).
   */
  private check(kind: ServerFailure, err: Error): void {
    this.checking = true
    this.probeKind = kind
    this.probeError = err
    this.pause()
    const s = this.s
    checkBackend(s.backend!, Math.min(s.host.config.connectTimeout, 1000), this, s.connectStartedAt)
  }

  /** CheckWaiter: the backend check's verdict. */
  checked(alive: boolean): void {
    if (!this.checking) return
    this.checking = false
    const s = this.s
    const st = this.read()
    if (s.state !== 'open' || this.handle === undefined || st === undefined) return
    const kind = this.probeKind
    const err = this.probeError!
    this.probeError = undefined
    if (alive) {
      // The client sent a request while the check ran (the plane moved it before it paused): this
      // server closed and will not answer it; re-send it elsewhere, as an unanswered close is.
      if (!st.answered && !st.clientEof) return this.onServerFailed(kind, err, st, true)
      // Closed on purpose: the FIN goes on, as a plain proxy would pass it.
      if (kind === 'eof' && !st.serverDown) return this.passFin()
      s.host.serverFailed(s, s.backend!, kind, err)
      return s.destroy('server-error', err)
    }
    if (!st.answered) return this.onServerFailed(kind, err, st, true)
    // Between turns, and the backend is gone: the client need not know.
    s.host.serverFailed(s, s.backend!, kind, err)
    this.moveBetweenTurns(st, err)
  }

  /**
   * The listener's sweep (Session.sweep) for a session on the plane, on the plane's clock: who
   * owes the next byte is the side that did not speak last (unanswered client bytes: the server).
   */
  sweep(now: number, b: SessionBounds): SweepVerdict | undefined {
    const s = this.s
    const handle = this.handle
    if (handle === undefined) return undefined
    const st = this.plane.statsInto(handle, SWEPT) ? SWEPT : this.last
    if (st === undefined) return undefined
    const idle = st.idleMs
    if (
      b.firstByte > 0 &&
      st.bytesFromClient === 0 &&
      st.bytesFromServer === 0 &&
      now - s.startedAt >= b.firstByte
    ) {
      s.error = new ClientError('ERR_BATON_FIRST_BYTE_TIMEOUT', 'no first byte within firstByteTimeout')
      s.destroy('client-timeout')
      return 'first-byte'
    }
    if (this.checking || s.state !== 'open') return undefined // a verdict or a connect is on its way
    if (this.framed && b.request > 0 && st.partialMs >= b.request) {
      // A command part-read past `requestTimeout` (resp): JavaScript's replayer closes the client.
      this.takeOver('request-timeout')
      s.rp?.requestTimedOut()
      return 'request'
    }
    if (b.orphan > 0 && this.movedAt > 0 && now - this.movedAt >= b.orphan) {
      // Moved between turns and the client has asked nothing since: it may be waiting for the
      // FIN of a server that closed on purpose just before it died (see ORPHAN_FIN_MS).
      this.movedAt = 0
      if (st.bytesFromClient === this.clientBytesAtMove && !st.finSentToClient) this.passFin()
    }
    const serverOwes = !st.answered
    if (b.halfClosed > 0 && (st.clientEof || st.finSentToClient) && idle >= b.halfClosed) {
      s.destroy(st.clientEof ? 'server-timeout' : 'client-timeout')
      return 'half-closed'
    }
    if (b.response > 0 && serverOwes && !st.serverDown && idle >= b.response && this.framed) {
      // JavaScript's replayer has the requests in flight: it times them out (and re-sends them).
      this.takeOver('response-timeout')
      s.rp?.responseTimedOut()
      return undefined
    }
    if (b.response > 0 && serverOwes && !st.serverDown && idle >= b.response) {
      const ms = s.host.config.responseTimeout
      this.onServerFailed(
        'timeout',
        new BackendError('ERR_BATON_RESPONSE_TIMEOUT', `no response within ${ms} ms`),
        { ...st }
      )
      return undefined
    }
    const bound = serverOwes ? b.server : b.client
    if (bound <= 0 || idle < bound) return undefined
    s.destroy(serverOwes ? 'server-timeout' : 'client-timeout')
    return 'idle'
  }
}

/**
 * A failed plane connect as Node's connect would report it (`connect ECONNREFUSED 127.0.0.1:7001`,
 * with `code`, `errno`, `syscall`, `address` and `port`): the session's accounting (a backend's
 * refusal, or Baton's own shortage such as EMFILE) reads the code, as for a Node socket.
 */
function connectError(err: NodeJS.ErrnoException, backend: Backend): NodeJS.ErrnoException {
  const code = err.code ?? 'EIO'
  return Object.assign(new Error(`connect ${code} ${backend.host}:${backend.port}`), {
    code,
    errno: err.errno,
    syscall: 'connect',
    address: backend.host,
    port: backend.port,
  })
}
