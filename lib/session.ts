/**
 * A session: one accepted client connection and its current server connection, spliced both ways.
 * It is the session's entry in the connection table; a failover swaps the server side in place.
 * This is the splice core; the replay machinery sits beside it in `lib/replay/replayer.ts` and is
 * made only for sessions whose listener has a framer.
 *
 *   client ──read──► [replayer: framer, replay buffer] ──write──► server
 *   client ◄──write── [replayer: verify while resuming] ◄──read── server
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
 *
 * On a listener whose data plane is native (lib/native/data-plane.ts), the session is the same up
 * to the server's 'connect'; there both descriptors pass to the native splice plane and
 * `lib/native/link.ts` maps its events onto the outcomes, failovers and bounds below.
 */
import net, { type Socket } from 'node:net'
import type { Logger } from 'pino'
import type { Backend } from './backend.js'
import { BackendError, ClientError, type BatonError, type UnrecoverableReason } from './errors.js'
import { peerHost, peerName } from './address.js'
import type { ListenerConfig } from './config/schema.js'
import type { Framer, FramerExtras, FramerFactory } from './framing/types.js'
import type { ReplayBudget } from './replay/buffer.js'
import type { SessionState, TableEntry, ConnectionTable } from './table.js'
import { isLocalError } from './local.js'
import { readChunks, redirectChunks, releaseReader } from './splice/reader.js'
import { Replayer } from './replay/replayer.js'
import { connectStarted, witness } from './replay/crash-check.js'
import { NativeLink, ON_PLANE } from './native/link.js'
import type { Detached, NativePlane, PlaneAccepted, PlaneStats } from './native/plane.js'
import type { AcceptContext } from './accept/types.js'
import { endedInPipeline } from './accept/pipeline.js'
import { proxyHeader, type ProxyVersion } from './accept/proxy/send.js'

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

/** The bounds the sweep applies, in ms (0: off), resolved from the listener's config. */
export interface SessionBounds {
  client: number
  server: number
  request: number
  firstByte: number
  halfClosed: number
  /** `responseTimeout` where the sweep enforces it (native plane sessions; 0 otherwise). */
  response: number
  /** opaque: how long a session whose server died between turns waits for a request (`ORPHAN_FIN_MS`). */
  orphan: number
}

/**
 * opaque: a session whose server's FIN turned out to be a crash (the backend refused the check)
 * waits without a server for the client's next request, which goes to another backend. A client
 * that was instead waiting for that FIN (the server had closed on purpose, HTTP/1.0 style, just
 * before it died: the two are alike on the wire) gets it after this long without a request, as it
 * would have got it at once from a plain proxy. A keep-alive client idle that long sees what any
 * idle keep-alive connection may see: a close.
 */
export const ORPHAN_FIN_MS = 1000

/** Which bound closed a session in a sweep. */
export type SweepVerdict = 'request' | 'first-byte' | 'half-closed' | 'idle'

/** What a session needs from the listener that accepted it. */
export interface SessionHost {
  readonly name: string
  readonly config: ListenerConfig
  readonly table: ConnectionTable
  readonly log: Logger
  readonly framer: FramerFactory | undefined
  readonly budget: ReplayBudget
  /** The native plane, when this listener's sessions run on it (lib/native/data-plane.ts). */
  readonly native: NativePlane | undefined
  /** The backends that get a PROXY protocol header (`sendProxy`); undefined when none does. */
  readonly proxyTo: ReadonlyMap<Backend, ProxyVersion> | undefined
  /**
   * No backend for a session's first pick: the listener may hold it until a slot frees (`queue`);
   * true when it did (the session waits, or was closed by the queue).
   */
  queue?(session: Session): boolean
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
  /** A failure cannot be hidden: `reason` is a bounded label, `detail` a message for the log. */
  unrecoverable(session: Session, reason: UnrecoverableReason, detail?: string): void
  resumed(session: Session, ok: boolean): void
  /** The session left `from` at a clean boundary (the backend went down or drains). */
  migrated(session: Session, from: Backend): void
  /** A framed session left the native plane for JavaScript (`reason`: the plane's, or the bound's). */
  leftPlane(session: Session, reason: string): void
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

export class Session implements TableEntry {
  readonly id: number
  readonly listener: string
  /** The client connection (ON_PLANE once its descriptor passed to the native plane). */
  client: Socket
  /** The client's `address:port` (the real client's, where an accept stage read a PROXY header). */
  readonly remote: string
  /**
   * What the accept stages found (real client address, server name, group, tags), where the
   * listener has stages; every pick, the first and each failover's, reads it.
   */
  readonly accept: AcceptContext | undefined
  readonly startedAt = Date.now()
  server: Socket | undefined = undefined
  serverLocal: string | undefined = undefined
  backend: Backend | undefined = undefined
  history: Backend[] = []
  state: SessionState = 'connecting'
  outcome: Outcome | undefined = undefined
  error: Error | undefined = undefined
  /** Times this session moved to another server connection. */
  failovers = 0
  /** Who ended the session; set when it closes. */
  endedBy: EndSide | undefined = undefined
  /**
   * For the access log (lib/access-log.ts), read when the session ends: when its first backend
   * connection came up and when the first server byte arrived (ms since the epoch, 0: never; the
   * byte is not seen on the native plane), and its connect retries. The listener sets the first
   * and the last (`connected`, `pick`).
   */
  connectedAt = 0
  firstServerByteAt = 0
  retries = 0
  /**
   * The replay machinery (lib/replay/replayer.ts), only where the listener has a framer. The
   * members below marked @internal are the core's state that it reads and moves.
   */
  rp: Replayer | undefined
  /**
   * The native plane's side of the session, where the listener runs on it (lib/native/link.ts);
   * undefined again once a framed session left the plane (`leavePlane`).
   */
  np: NativeLink | undefined
  /** @internal */
  readonly host: SessionHost
  /** @internal Client bytes not (yet) in the replay buffer that arrived while no server was attached. */
  held: Buffer[] | undefined = undefined
  private heldBytes = 0
  /** @internal */
  clientEnded = false
  private clientClosed = false
  /** @internal */
  serverClosed = false
  /** @internal Connect attempts for the current (re)connect; the first one plus up to `retries` more. */
  attempts = 0
  /** @internal Backends that failed for this session (allocated only on the first failure). */
  failed: Set<Backend> | undefined = undefined
  private connectTimer: NodeJS.Timeout | undefined = undefined
  /**
   * @internal When the current server connection's connect started (performance.now()): its
   * success witnesses the backend alive. -1 for a connection taken from the pool.
   */
  connectStartedAt = -1
  /** @internal The side whose FIN came first, for a session that ended normally. */
  firstEnd: 'client' | 'server' | undefined = undefined
  /** @internal How the session ends once the client socket closes, while `closing`. */
  closingOutcome: Outcome = 'done'
  /** @internal How a session that ends normally is counted (a server that gave up on a slow client). */
  endOutcome: Outcome = 'done'
  /**
   * When the client and the server last sent bytes (ms since the epoch), for the listener's sweep
   * (`idleExpired`): one timer per listener instead of one per socket.
   */
  lastClient: number
  lastServer = 0
  /** @internal When the server died between turns and left the session waiting without one (0: not). */
  orphanedAt = 0
  /** Client byte counts already credited to a backend (lib/table.ts creditBackend). */
  creditedFromClient = 0
  creditedToClient = 0
  /** Bytes the plane moved before a framed session left it (`leavePlane`); the sockets count the rest. */
  private planeFromClient = 0
  private planeToClient = 0

  /**
   * `client` is the accepted socket; or, where the native plane accepted the client itself
   * (`accepted`: Listener.acceptNative), ON_PLANE, and the client goes to the plane at the attach
   * without a Node socket ever existing for it.
   */
  constructor(
    host: SessionHost,
    client: Socket,
    accept: AcceptContext | undefined,
    accepted?: { client: PlaneAccepted; remote: string }
  ) {
    this.host = host
    this.id = host.table.newId()
    this.listener = host.name
    this.client = client
    this.accept = accept
    if (accepted !== undefined) {
      this.remote = accepted.remote
      this.lastClient = this.startedAt
      this.np = new NativeLink(this, host.native!, accepted.client)
      this.rp = undefined
      host.table.add(this)
      return
    }
    const c = client as SessionSocket
    // Read (and so cached by Node) now: once the socket is closed its peer address is gone, and
    // the close log line and events still need it.
    this.remote =
      accept === undefined
        ? peerName(client, host.config.listen.path !== undefined)
        : `${accept.clientAddress}:${accept.clientPort}`
    client.setNoDelay(true)
    this.lastClient = this.startedAt
    // On the native plane the addon keeps the replay record (a pipe): no Replayer, and until the
    // server is up client bytes are only held, then handed over first.
    this.np = host.native !== undefined ? new NativeLink(this, host.native) : undefined
    this.rp = host.framer !== undefined && this.np === undefined ? new Replayer(this, host) : undefined
    watchClient(this, c)
    host.table.add(this)
    if (accept !== undefined) this.takeHead(accept)
  }

  /** The bytes the accept stages read and left (and a FIN they saw) come first, as if read now. */
  private takeHead(accept: AcceptContext): void {
    const head = accept.head
    accept.head = undefined
    accept.headBytes = 0
    if (head !== undefined) {
      const onChunk = this.rp === undefined ? onClientChunk : onClientChunkFramed
      for (const chunk of head) onChunk(this.client, chunk)
    }
    if (endedInPipeline(accept)) this.onClientEnd()
  }

  /** The framer, where the listener has one. */
  get framer(): (Framer & FramerExtras) | undefined {
    return this.rp?.framer
  }

  /** The client's address without the port (what source-hash hashes). */
  get remoteAddress(): string {
    return this.accept?.clientAddress ?? peerHost(this.remote)
  }

  /** Bytes read from the client (the native plane counts them once it has the session). */
  get bytesFromClient(): number {
    return this.np?.bytesFromClient ?? this.client.bytesRead + this.planeFromClient
  }

  /** Bytes written to the client. */
  get bytesToClient(): number {
    return this.np?.bytesToClient ?? this.client.bytesWritten + this.planeToClient
  }

  /** A failover is in progress: a connect that fails for good cannot be hidden. */
  private get handing(): boolean {
    return this.rp?.handoff !== undefined || this.np?.handoff !== undefined
  }

  /** Choose a backend and connect to it: at start, after a failed connect, and for a failover. */
  connect(): void {
    const backend = this.host.pick(this, this.failed, this.attempts > 0)
    if (backend === undefined) {
      const handing = this.handing
      if (!handing && this.attempts === 0 && this.host.queue?.(this) === true) return
      if (handing) this.host.unrecoverable(this, 'no-backend')
      this.destroy(
        handing ? 'unrecoverable' : 'no-backend',
        new BackendError('ERR_BATON_NO_BACKEND', 'no usable backend')
      )
      return
    }
    this.attempts++
    this.orphanedAt = 0
    backend.active++
    const pooled = backend.pool?.take()
    const np = this.np
    const family =
      pooled === undefined && np !== undefined
        ? np.connectFamily(backend, this.host.proxyTo?.get(backend) !== undefined)
        : 0
    if (family !== 0) {
      // The native plane connects the first server itself: no Node socket for it (link.ts). The
      // session's server is the shared placeholder until the plane has both descriptors.
      this.host.table.attach(this, backend, ON_PLANE)
      this.serverClosed = false
      this.connectStartedAt = performance.now()
      connectStarted(backend, this.connectStartedAt)
      this.connectTimer = setTimeout(onConnectTimeout, this.host.config.connectTimeout, this)
      np!.startConnect(backend, family)
      return
    }
    const server = (pooled ??
      net.connect({
        host: backend.host,
        port: backend.port,
        path: backend.path, // a unix-domain backend (then host and port are unused)
        allowHalfOpen: true,
        noDelay: true,
      })) as SessionSocket
    watchServer(this, server)
    this.host.table.attach(this, backend, server)
    this.serverClosed = false
    if (pooled !== undefined) {
      this.connectStartedAt = -1
      this.onConnected(server, true)
      return
    }
    server.once('connect', onServerConnect)
    this.connectStartedAt = performance.now()
    connectStarted(backend, this.connectStartedAt)
    this.connectTimer = setTimeout(onConnectTimeout, this.host.config.connectTimeout, this)
  }

  /** Client bytes while no server is attached: hold them, stop reading once a cap is reached. */
  hold(chunk: Buffer): void {
    ;(this.held ??= []).push(chunk)
    this.heldBytes += chunk.length
    if (this.heldBytes >= this.host.config.maxPendingBytes) this.client.pause()
  }

  onConnected(server: Socket, pooled: boolean): void {
    clearTimeout(this.connectTimer)
    this.connectTimer = undefined
    // The backend's listener accepted a connect: it answers the crash checks of closes seen
    // before the connect started (replay/crash-check.ts).
    if (!pooled) witness(this.backend!, this.connectStartedAt)
    this.state = 'open'
    this.host.connected(this, this.backend!)
    // Before anything else on this connection, new or pooled, first or a failover's replacement.
    const proxyTo = this.host.proxyTo
    if (proxyTo !== undefined) {
      const version = proxyTo.get(this.backend!)
      if (version !== undefined) server.write(proxyHeader(version, this.client, this.accept))
    }
    if (this.np !== undefined) return this.np.connected(server, pooled)
    const held = this.held
    this.held = undefined
    this.heldBytes = 0
    let flowing = true
    if (this.rp !== undefined) {
      flowing = this.rp.attached(server, pooled, held)
    } else if (held !== undefined) {
      server.cork()
      for (const chunk of held) flowing = server.write(chunk)
      server.uncork()
    }
    if (this.clientEnded) server.end()
    else if (flowing) this.client.resume()
    else this.client.pause()
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
      const handing = this.handing
      if (handing) this.host.unrecoverable(this, 'connect-failed')
      this.destroy(handing ? 'unrecoverable' : 'connect-failed', err)
      return
    }
    // Never the backend that just failed, unless it is the only one this listener has.
    ;(this.failed ??= new Set()).add(backend)
    this.connect()
  }

  /**
   * The open server connection failed (error, reset, EOF, response timeout). Without a framer it
   * goes on to the client as a plain proxy would pass it; with one, the replayer decides.
   */
  onServerFailed(server: Socket, kind: ServerFailure, err: Error): void {
    if (this.rp !== undefined) return this.rp.onServerFailed(server, kind, err)
    if (kind === 'eof') return void this.client.end()
    this.host.serverFailed(this, this.backend!, kind, err)
    return this.destroy(kind === 'timeout' ? 'server-timeout' : 'server-error', err)
  }

  /**
   * Called by the listener's sweep (one timer per listener, not one per socket): close a session
   * past one of its bounds, and say which. Precision: the sweep runs every quarter of the smallest
   * bound (at most every second), so a bound fires up to that much late.
   * - `request`: the client's partial request (http1 head, resp command, frame) is older than
   *   `requestTimeout` (HAProxy `timeout http-request`).
   * - `first-byte`: a new client has sent nothing within `firstByteTimeout`.
   * - `half-closed`: one side sent its FIN and the session has been idle `halfClosedTimeout`
   *   (HAProxy `timeout client-fin` / `server-fin`).
   * - `idle`: who owes the next byte decides the bound, as HAProxy's `timeout client` and `timeout
   *   server` do: the client spoke last (a request awaits its answer) → `serverTimeout`; the server
   *   spoke last, or nobody did → `clientTimeout`.
   */
  sweep(now: number, b: SessionBounds): SweepVerdict | undefined {
    if (this.state !== 'open' && this.state !== 'connecting') return undefined
    if (this.np?.attached === true) return this.np.sweep(now, b)
    const rp = this.rp
    if (b.request > 0 && rp !== undefined && rp.requestSince > 0 && now - rp.requestSince >= b.request) {
      rp.requestTimedOut()
      return 'request'
    }
    const last = Math.max(this.lastClient, this.lastServer)
    if (
      b.orphan > 0 &&
      this.orphanedAt > 0 &&
      this.server === undefined &&
      now - this.orphanedAt >= b.orphan
    ) {
      // The FIN it may be waiting for (see ORPHAN_FIN_MS); the session ends when the client closes.
      this.orphanedAt = 0
      this.client.end()
      return undefined
    }
    if (
      b.firstByte > 0 &&
      this.lastServer === 0 &&
      this.bytesFromClient === 0 &&
      now - this.startedAt >= b.firstByte
    ) {
      this.error = new ClientError('ERR_BATON_FIRST_BYTE_TIMEOUT', 'no first byte within firstByteTimeout')
      this.destroy('client-timeout')
      return 'first-byte'
    }
    const serverOwes = this.lastClient > this.lastServer && this.server !== undefined
    const halfClosed = this.clientEnded || this.client.writableEnded
    if (b.halfClosed > 0 && halfClosed && now - last >= b.halfClosed) {
      this.destroy(this.clientEnded ? 'server-timeout' : 'client-timeout')
      return 'half-closed'
    }
    const bound = serverOwes ? b.server : b.client
    if (bound <= 0 || now - last < bound) return undefined
    this.destroy(serverOwes ? 'server-timeout' : 'client-timeout')
    return 'idle'
  }

  /** Move to another backend at the next clean boundary, where the framer knows boundaries. */
  migrate(): void {
    // A framed session on the plane: JavaScript takes it over and moves it.
    this.np?.takeOver('move')
    this.rp?.migrate()
  }

  /**
   * @internal A framed session leaves the native plane (NativeLink.takeOver) and goes on as a
   * JavaScript session. A new replayer is fed what the plane already moved, each side's bytes
   * since the last clean point, with its writes going nowhere: it then stands where it would had it
   * parsed every byte itself. Then the real sockets, and what the plane read and did not send, for
   * real (through the framer: a partial head is held as the gate holds it). A server error the
   * plane saw comes last, as the failure it is.
   */
  leavePlane(d: Detached, st: PlaneStats | undefined, serverError: Error | undefined): void {
    this.np = undefined
    this.planeFromClient = st?.bytesFromClient ?? 0
    this.planeToClient = st?.bytesToClient ?? 0
    const client = fdSocket(d.clientFd)
    const server = d.serverFd >= 0 ? fdSocket(d.serverFd) : undefined
    if (client === undefined || server === undefined || this.state !== 'open') {
      client?.destroy()
      server?.destroy()
      return this.destroy('local-error', new Error('a framed session left the plane without its sockets'))
    }
    const now = Date.now()
    this.lastClient = now
    // Who owes the next byte (sweep): the server, while a request waits for its answer.
    this.lastServer = st?.answered === false ? now - 1 : now
    const rp = new Replayer(this, this.host)
    rp.adopted()
    this.rp = rp
    const c = sentSplit(d.clientHistory, d.clientUnsent)
    const sv = sentSplit(d.serverHistory, d.serverUnsent)
    this.client = NOWHERE
    this.server = NOWHERE
    if (c.done !== undefined) rp.fromClient(c.done)
    if (sv.done !== undefined && this.state === 'open') rp.fromServer(NOWHERE, sv.done)
    if (this.state !== 'open') {
      // The framer refused what the plane had followed (never expected): nothing more to save.
      client.destroy()
      server.destroy()
      return
    }
    this.client = client
    this.server = server
    watchClient(this, client)
    watchServer(this, server)
    if (c.raw !== undefined) server.write(c.raw)
    if (sv.raw !== undefined) client.write(sv.raw)
    if (c.real !== undefined) rp.fromClient(c.real)
    if (sv.real !== undefined && this.state === 'open' && this.server === server) {
      rp.fromServer(server, sv.real)
      if (rp.gated) rp.flushGate()
    }
    if (serverError !== undefined && this.state === 'open' && this.server === server)
      this.onServerFailed(server, 'error', serverError)
  }

  /**
   * @internal A socket passes to the native plane: none of its events reach this session any more
   * (destroying it still emits 'close'), and its read buffer goes back.
   */
  handOver(socket: Socket): void {
    // Not `delete`: that turns the socket into a dictionary-mode object, about 1.5 KiB more heap
    // for each of the two sockets a native session keeps.
    ;(socket as SessionSocket)[kSession] = undefined
    releaseReader(socket)
    // The table's `server` field: the socket forgets its address once its descriptor has moved on.
    if (socket !== this.client)
      this.serverLocal =
        socket.localPort !== undefined ? `${socket.localAddress}:${socket.localPort}` : 'unix'
  }

  /** @internal Let go of a server connection: no more of its events reach this session. */
  detachServer(server: Socket): void {
    this.np?.cancelConnect()
    delete (server as SessionSocket)[kSession]
    server.destroy()
    releaseReader(server)
    this.backend!.active--
    this.host.table.detach(this)
    this.rp?.detached()
  }

  onClientEnd(): void {
    this.clientEnded = true
    this.firstEnd ??= 'client'
    if (this.state !== 'open') return
    const server = this.server
    if (server === undefined) return void this.client.end() // nothing attached, nothing in flight
    if (
      this.host.config.pool.reuse &&
      this.rp !== undefined &&
      this.rp.reusable() &&
      // A connection that was sent a PROXY header belongs to this client (accept/proxy/send.ts).
      this.host.proxyTo?.has(this.backend!) !== true
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
    this.backend!.active--
    this.host.table.detach(this)
    this.rp?.detached()
  }

  onServerEnd(server: Socket): void {
    this.firstEnd ??= 'server'
    // No framer (plain proxy): the FIN goes on.
    if (this.rp === undefined) return void this.client.end()
    this.rp.onServerEnd(server)
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
    // A server's reset that cannot be hidden reaches the client as a reset, not a FIN: a response
    // cut by a reset must not look complete (a close-delimited body would).
    if (outcome !== 'client-error' && (err as NodeJS.ErrnoException | undefined)?.code === 'ECONNRESET')
      resetClient(this.client)
    else this.client.destroy()
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
    this.connectTimer = undefined
    this.rp?.finish()
    this.np?.finish()
    this.held = undefined
    releaseReader(this.client)
    if (this.server !== undefined) releaseReader(this.server)
    // The backend's slot was taken when the connect started and is given back once: here, or in
    // detachServer (which also clears `server`).
    if (this.backend !== undefined && this.server !== undefined) this.backend.active--
    this.host.table.remove(this)
    this.host.closed(this)
  }
}

/** Close the client with a reset (RST), or plainly where the socket cannot do that. */
function resetClient(client: Socket): void {
  try {
    client.resetAndDestroy()
  } catch {
    client.destroy()
  }
}

/** The side an outcome belongs to (`done`: whoever ended the conversation first). */
export function sideOf(
  outcome: Outcome,
  err: Error | undefined,
  firstEnd: 'client' | 'server' | undefined
): EndSide {
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

/** The session hears the client socket's bytes and events from now on. */
function watchClient(s: Session, client: Socket): void {
  ;(client as SessionSocket)[kSession] = s
  readChunks(client, s.rp === undefined ? onClientChunk : onClientChunkFramed)
  client.on('end', onClientEnd)
  client.on('error', onClientError)
  client.on('close', onClientClose)
  client.on('drain', onClientDrain)
}

/** The session hears the server socket's bytes and events from now on. */
function watchServer(s: Session, server: Socket): void {
  ;(server as SessionSocket)[kSession] = s
  readChunks(server, onServerChunk)
  server.on('end', onServerEnd)
  server.on('error', onServerError)
  server.on('close', onServerClose)
  server.on('drain', onServerDrain)
}

/** A connected TCP descriptor the plane gave back, as a Node socket; undefined for none. */
function fdSocket(fd: number): Socket | undefined {
  if (fd < 0) return undefined
  const socket = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true })
  socket.setNoDelay(true)
  return socket
}

/**
 * A side's bytes as the plane left them (`history` since the last clean point, `unsent` its
 * tail, or more when the unsent bytes reach back past that point): `done`, what went on already
 * (the replayer follows it with writes going nowhere); `raw`, what was read before the clean point
 * and not written (written as it is: it belongs to an exchange already over); `real`, the rest,
 * through the replayer for real.
 */
export function sentSplit(
  history: Buffer | undefined,
  unsent: Buffer | undefined
): { done?: Buffer; raw?: Buffer; real?: Buffer } {
  const h = history?.length ?? 0
  const u = unsent?.length ?? 0
  const realLen = Math.min(h, u)
  const out: { done?: Buffer; raw?: Buffer; real?: Buffer } = {}
  if (h > realLen) out.done = history!.subarray(0, h - realLen)
  if (u > h) out.raw = unsent!.subarray(0, u - h)
  if (realLen > 0) out.real = history!.subarray(h - realLen)
  return out
}

/**
 * Where a replayer catching up on what the plane already moved (`leavePlane`) writes: nowhere.
 * The replayer calls these and nothing else of its sockets while it does.
 */
class Nowhere {
  readonly writableLength = 0
  write(): boolean {
    return true
  }
  cork(): void {}
  uncork(): void {}
  pause(): this {
    return this
  }
  resume(): this {
    return this
  }
  end(): this {
    return this
  }
  destroy(): this {
    return this
  }
  destroySoon(): void {}
  resetAndDestroy(): this {
    return this
  }
}
const NOWHERE = new Nowhere() as unknown as Socket

// Module-level handlers: `this` is the socket, the session is found through kSession.

// Chunk handlers (lib/splice/reader.ts): each returns true when a reference to the chunk outlives
// the call (a write still queued, the replay buffer, bytes held while connecting), so the reader
// does not read into that buffer again.

function onClientChunk(socket: Socket, chunk: Buffer): boolean {
  const s = (socket as SessionSocket)[kSession]
  if (s === undefined) return false
  s.lastClient = Date.now()
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
  s.lastClient = Date.now()
  const rp = s.rp!
  const recorded = rp.recordingNow
  rp.fromClient(chunk)
  return rp.keepsViews || recorded || s.state !== 'open' || (s.server?.writableLength ?? 0) > 0
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

function onServerConnect(this: SessionSocket): void {
  const s = this[kSession]
  if (s !== undefined && s.server === this) s.onConnected(this, false)
}

function onServerChunk(socket: Socket, chunk: Buffer): boolean {
  const server = socket as SessionSocket
  const s = server[kSession]
  if (s === undefined) return false
  s.lastServer = Date.now()
  if (s.firstServerByteAt === 0) s.firstServerByteAt = s.lastServer
  const client = s.client
  const rp = s.rp
  if (rp === undefined) {
    if (!client.write(chunk)) {
      server.pause()
      return true
    }
    return client.writableLength > 0
  }
  rp.fromServer(server, chunk)
  if (rp.gated) rp.flushGate()
  return rp.keepsViews || client.writableLength > 0 || s.state !== 'open'
}

/** A server connection given back to the warm pool: its watcher listens for `data` again. */
function toPoolWatcher(socket: Socket, chunk: Buffer): boolean {
  socket.emit('data', chunk)
  return true
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

function onConnectTimeout(s: Session): void {
  const server = s.server
  if (server === undefined || s.state !== 'connecting') return
  s.onConnectFailed(
    server,
    new BackendError('ERR_BATON_CONNECT_TIMEOUT', `connect to ${s.backend?.address} timed out`)
  )
}
