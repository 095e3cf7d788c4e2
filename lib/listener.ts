/**
 * A listener: one `net.Server` acceptor with its own backends, balancing algorithm, limits and
 * timeouts. It turns each accepted socket into a session, or closes it at once when a limit is hit.
 */
import cluster from 'node:cluster'
import { chmodSync } from 'node:fs'
import net, { type Socket } from 'node:net'
import type { Logger } from 'pino'
import { formatAddress, peerHost, peerName, removeStaleSocket, UNIX_CLIENT } from './address.js'
import { Backend, type BackendChange } from './backend.js'
import { createListenerSelector } from './balancing/index.js'
import type { Selector } from './balancing/types.js'
import type { ListenerConfig } from './config/schema.js'
import { ListenError } from './errors.js'
import { framerFor, type FramerFactory } from './framing/index.js'
import { checkerFor, type HealthChecker } from './health/checker.js'
import { WarmPool } from './pool/warm-pool.js'
import type { ReplayBudget } from './replay/buffer.js'
import { Session, type HandoffInfo, type ServerFailure, type SessionBounds, type SessionHost } from './session.js'
import type { ConnectionTable } from './table.js'
import { isLocalError, SHED_MS } from './local.js'
import { resolveDataPlane, type DataPlane } from './native/data-plane.js'
import type { NativePlane } from './native/plane.js'

export interface ListenerCounters {
  accepted: number
  /** Clients closed at once because the global or listener `maxConnections` was reached. */
  rejected: number
  /**
   * Baton's own shortages (EMFILE, ENFILE, ENOBUFS, EADDRNOTAVAIL) on accept or connect, and clients
   * shed while they last. Never counted against a backend.
   */
  localErrors: number
  /** Clients closed because every backend was down, full or failed to connect. */
  noBackend: number
  connectErrors: number
  /** Connects re-tried on another backend. */
  retries: number
  clientTimeouts: number
  serverTimeouts: number
  /** Sessions closed because a request was not whole within `requestTimeout` (also client timeouts). */
  requestTimeouts: number
  /** New clients closed for sending nothing within `firstByteTimeout` (also client timeouts). */
  firstByteTimeouts: number
  /** Half-closed sessions closed after `halfClosedTimeout` idle (also client or server timeouts). */
  halfClosedTimeouts: number
  /** Clients refused at accept because their address had `maxConnectionsPerSource` sessions. */
  rejectedPerSource: number
  clientErrors: number
  serverErrors: number
  /** Open server connections that failed (error, reset, EOF mid-request, response timeout). */
  serverFailures: number
  responseTimeouts: number
  /** Sessions moved to another server connection with their unanswered requests. */
  failovers: number
  replayedRequests: number
  replayedBytes: number
  handoffsPooled: number
  handoffsNew: number
  /** Responses cut part-way and completed from another backend after checking the part already sent. */
  verifiedResumes: number
  resumeMismatches: number
  /** Failures that could not be hidden: the client was closed as a plain L4 proxy would. */
  unrecoverable: number
  framingErrors: number
  /** Sessions moved off a backend that went down or drains, at a clean boundary, unseen by the client. */
  migrations: number
  /** Bytes of sessions that have ended (live sessions are added at read time). */
  bytesFromClient: number
  bytesToClient: number
}

/** A fresh set of counters, every one at 0: one list of names for listeners and their sum. */
export function zeroCounters(): ListenerCounters {
  return {
    accepted: 0,
    rejected: 0,
    localErrors: 0,
    noBackend: 0,
    connectErrors: 0,
    retries: 0,
    clientTimeouts: 0,
    serverTimeouts: 0,
    requestTimeouts: 0,
    firstByteTimeouts: 0,
    halfClosedTimeouts: 0,
    rejectedPerSource: 0,
    clientErrors: 0,
    serverErrors: 0,
    serverFailures: 0,
    responseTimeouts: 0,
    failovers: 0,
    replayedRequests: 0,
    replayedBytes: 0,
    handoffsPooled: 0,
    handoffsNew: 0,
    verifiedResumes: 0,
    resumeMismatches: 0,
    unrecoverable: 0,
    framingErrors: 0,
    migrations: 0,
    bytesFromClient: 0,
    bytesToClient: 0,
  }
}

/** What a listener needs from the balancer that owns it. */
export interface ListenerOwner {
  readonly table: ConnectionTable
  readonly budget: ReplayBudget
  /** False when the global session limit is reached. */
  admit(): boolean
  onSessionOpen(session: Session): void
  onSessionClose(session: Session): void
  onBackendFailure(listener: Listener, backend: Backend, err: Error, down: boolean): void
  onBackendUp(listener: Listener, backend: Backend): void
}

export class Listener implements SessionHost {
  readonly name: string
  config: ListenerConfig
  backends: Backend[]
  readonly log: Logger
  readonly counters: ListenerCounters = zeroCounters()
  /** Sessions of this listener still alive. */
  active = 0
  readonly server: net.Server
  framer: FramerFactory | undefined
  /** The data plane of this listener's new sessions (`dataPlane`, resolved). */
  plane: DataPlane
  /** Why an opaque `auto` listener runs on js (the addon is not available), if so. */
  planeReason: string | undefined
  /** The native plane, when `plane` is native. */
  native: NativePlane | undefined
  /** Recent hand-off latencies (ms, failure to first replayed byte at the client), newest last. */
  readonly latency = { pooled: new LatencyRing(1024), new: new LatencyRing(1024) }
  private readonly checkers: HealthChecker[] = []
  private selector: Selector<Backend>
  private readonly owner: ListenerOwner
  private lastRejectLog = 0
  private lastLocalLog = 0
  /** Local errors since the last logged one (the log says how many it stands for). */
  private localUnlogged = 0
  /** New clients are shed until then (ms since the epoch): descriptors are short. */
  private shedUntil = 0
  /** The sweep of this listener's sessions for their bounds (one timer, not one per socket). */
  private sweeper: NodeJS.Timeout | undefined = undefined
  private sweepBounds: SessionBounds = {
    client: 0,
    server: 0,
    request: 0,
    firstByte: 0,
    halfClosed: 0,
    response: 0,
  }
  /** Live sessions per client address, when `maxConnectionsPerSource` is set. */
  private perSource: Map<string, number> | undefined = undefined

  constructor(config: ListenerConfig, owner: ListenerOwner, log: Logger) {
    this.config = config
    this.name = config.name ?? formatAddress(config.listen)
    this.owner = owner
    this.log = log.child({ listener: this.name })
    this.backends = config.backends.map((b) => new Backend(b, config.passive))
    for (const b of this.backends) {
      b.slowStart = config.slowStart
      b.onChange = this.onBackendChange
    }
    this.selector = createListenerSelector(config.balance, this.backends, config.allBackups)
    this.framer = framerFor(config)
    const plane = resolveDataPlane(config)
    this.plane = plane.plane
    this.planeReason = plane.reason
    this.native = plane.native
    if (config.pool.idle > 0) {
      for (const b of this.backends) b.pool = new WarmPool(b, config.pool)
    }
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.accept(socket))
  }

  get table(): ConnectionTable {
    return this.owner.table
  }

  get budget(): ReplayBudget {
    return this.owner.budget
  }

  async listen(): Promise<void> {
    const { host, port, path, mode } = this.config.listen
    // A socket file left by a dead process (nginx removes its own at start). Never in a --workers
    // worker: the primary binds for all of them and cleaned up before forking.
    if (path !== undefined && !cluster.isWorker && (await removeStaleSocket(path)))
      this.log.info({ path }, 'removed a stale unix socket file (nothing accepted on it)')
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(new ListenError(this.name, formatAddress(this.config.listen), err))
      }
      this.server.once('error', onError)
      const where = path !== undefined ? { path } : { host, port }
      this.server.listen({ ...where, backlog: this.config.backlog }, () => {
        this.server.off('error', onError)
        if (path !== undefined && mode !== undefined) {
          try {
            chmodSync(path, mode)
          } catch (err) {
            this.server.close()
            return reject(new ListenError(this.name, formatAddress(this.config.listen), err as Error))
          }
        }
        this.server.on('error', (err) => {
          // accept() out of descriptors: libuv closes the client for us; shed, and say so once a second.
          if (isLocalError(err)) this.localError(undefined, err)
          else this.log.error({ err }, 'listener error')
        })
        for (const b of this.backends) b.pool?.start()
        this.startChecks()
        this.startSweep()
        this.server.once('close', () => {
          clearInterval(this.sweeper)
          this.sweeper = undefined
        })
        resolve()
      })
    })
  }

  /** The bound address (useful with port 0); a unix-domain listener's has its `path` (host '', port 0). */
  address(): { host: string; port: number; path?: string } {
    const { host = '', port = 0, path } = this.config.listen
    if (path !== undefined) return { host, port, path }
    const a = this.server.address()
    if (a === null || typeof a === 'string') return { host, port }
    return { host: a.address, port: a.port }
  }

  /** Whether this listener accepts on a unix-domain socket (its clients have no address). */
  get unix(): boolean {
    return this.config.listen.path !== undefined
  }

  /** Stop accepting; live sessions carry on. */
  /**
   * Stop accepting and empty the warm pools; live sessions carry on. (net.Server's close callback
   * waits for every accepted connection, so it is not awaited here: see `closed()`.)
   */
  stopAccepting(): void {
    for (const c of this.checkers.splice(0)) c.stop()
    for (const b of this.backends) b.pool?.stop()
    if (this.server.listening) this.server.close()
  }

  /** Resolves once the listening socket and every connection it accepted are closed. */
  whenClosed(): Promise<void> {
    if (!this.server.listening && this.active === 0) return Promise.resolve()
    return new Promise((resolve) => this.server.once('close', () => resolve()))
  }

  /**
   * Take a new configuration for this listener (reload): backends are matched by name and address
   * and keep their state and live sessions; new ones are added; removed ones drain (no new
   * sessions, live ones finish on them). Timeouts, limits, algorithm and protocol apply to new
   * sessions. The listen address is not changed here (the balancer adds and removes listeners).
   */
  reconfigure(config: ListenerConfig): { added: string[]; removed: string[] } {
    const old = new Map(this.backends.map((b) => [b.name, b]))
    const next: Backend[] = []
    const added: string[] = []
    for (const bc of config.backends) {
      const fresh = new Backend(bc, config.passive)
      const kept = old.get(fresh.name)
      if (kept !== undefined && kept.address === fresh.address) {
        kept.weight = bc.weight
        kept.maxConnections = bc.maxConnections
        kept.backup = bc.backup ?? false // the selector below is built anew
        kept.setPassive(config.passive)
        old.delete(fresh.name)
        next.push(kept)
      } else {
        next.push(fresh)
        added.push(fresh.name)
      }
    }
    for (const gone of old.values()) {
      gone.pool?.stop()
      gone.pool = undefined
      gone.admin = 'drain' // its sessions finish or migrate, per onDrain
      gone.onChange = undefined
    }
    for (const c of this.checkers.splice(0)) c.stop()
    for (const b of next) {
      b.pool?.stop()
      b.pool = config.pool.idle > 0 ? new WarmPool(b, config.pool) : undefined
    }
    for (const b of next) {
      b.slowStart = config.slowStart
      b.onChange = this.onBackendChange
    }
    this.config = config
    this.backends = next
    this.selector = createListenerSelector(config.balance, next, config.allBackups)
    this.framer = framerFor(config)
    // Live sessions stay on the plane they started on; new ones take the new setting.
    const plane = resolveDataPlane(config)
    this.plane = plane.plane
    this.planeReason = plane.reason
    this.native = plane.native
    if (this.server.listening) {
      for (const b of next) b.pool?.start()
      this.startChecks()
      this.startSweep()
    }
    return { added, removed: [...old.keys()] }
  }

  /** The bounds of this listener's sessions, as the sweep applies them (see `Session.sweep`). */
  get bounds(): SessionBounds {
    const c = this.config
    const framed = this.framer !== undefined && c.protocol !== 'opaque'
    return {
      client: c.clientTimeout,
      server: c.serverTimeout,
      request: framed ? c.requestTimeout : 0,
      firstByte: c.firstByteTimeout ?? (c.protocol === 'opaque' ? 0 : 10_000),
      halfClosed: c.halfClosedTimeout,
      // The JavaScript plane times responses per request (replayer.ts); the native plane's
      // sessions are checked by the sweep.
      response: this.native !== undefined && c.replay.mode !== 'none' ? c.responseTimeout : 0,
    }
  }

  /**
   * One timer per listener enforces every session bound (`clientTimeout`, `serverTimeout`,
   * `requestTimeout`, `firstByteTimeout`, `halfClosedTimeout`; see `Session.sweep`), every quarter
   * of the smallest, at least every second, at most every 10 ms. It keeps running while sessions
   * drain after `stopAccepting()`; it never holds the process open.
   */
  private startSweep(): void {
    clearInterval(this.sweeper)
    this.sweeper = undefined
    this.sweepBounds = this.bounds
    const on = Object.values(this.sweepBounds).filter((b) => b > 0)
    if (on.length === 0) return
    const every = Math.min(1000, Math.max(10, Math.floor(Math.min(...on) / 4)))
    this.sweeper = setInterval(sweep, every, this)
    this.sweeper.unref()
  }

  /** @internal The sweep: every session of this listener checks its bounds. */
  sweepSessions(): void {
    const now = Date.now()
    const b = this.sweepBounds
    const c = this.counters
    for (const entry of this.table.values()) {
      if (entry.listener !== this.name || !(entry instanceof Session)) continue
      const verdict = entry.sweep(now, b)
      if (verdict === 'request') c.requestTimeouts++
      else if (verdict === 'first-byte') c.firstByteTimeouts++
      else if (verdict === 'half-closed') c.halfClosedTimeouts++
    }
  }

  /** Active health checks, one checker per backend, when `healthCheck.type` is not `none`. */
  private startChecks(): void {
    for (const b of this.backends) {
      const checker = checkerFor(b, this.config.healthCheck, (up, reason) =>
        this.healthFlipped(b, up, reason)
      )
      if (checker === undefined) return
      this.checkers.push(checker)
      checker.start()
    }
  }

  /** A backend's active-check health flipped: logged once, on the flip. */
  private healthFlipped(b: Backend, up: boolean, reason: string | undefined): void {
    b.checkedUp = up
    if (up) {
      b.cameUp()
      this.log.info({ backend: b.name }, 'health check: backend is up')
      b.pool?.start()
      this.owner.onBackendUp(this, b)
    } else {
      this.log.warn({ backend: b.name, reason }, 'health check: backend is down')
      b.pool?.stop()
      this.owner.onBackendFailure(this, b, new Error(`health check failed: ${reason ?? 'no reason'}`), true)
      if (this.onDown === 'migrate') this.migrateFrom(b)
    }
  }

  /** `onDown`, with its default: migrate where the framer knows clean boundaries. */
  get onDown(): 'migrate' | 'keep' {
    return this.config.onDown ?? (this.config.protocol === 'opaque' ? 'keep' : 'migrate')
  }

  /** `onDrain`, with its default: migrate where the framer knows clean boundaries. */
  get onDrain(): 'migrate' | 'finish' {
    return this.config.onDrain ?? (this.config.protocol === 'opaque' ? 'finish' : 'migrate')
  }

  /** A backend's admin state or configured weight changed (API, reload). */
  private readonly onBackendChange = (b: Backend, what: BackendChange): void => {
    if (what === 'weight') {
      // Tables built from weights (source-hash's Maglev table) are built again.
      this.selector = createListenerSelector(this.config.balance, this.backends, this.config.allBackups)
      return
    }
    if (b.admin !== 'ready' && this.onDrain === 'migrate') this.migrateFrom(b)
  }

  /** Move every live session on `b` to another backend, each at its next clean boundary. */
  migrateFrom(b: Backend): void {
    // With no other backend usable, a session that left would find none for its next request:
    // it stays where it is (a drained backend still serves its live sessions).
    if (!this.backends.some((x) => x !== b && x.usable())) {
      this.log.warn({ backend: b.name }, 'no other backend is usable: sessions stay on this one for now')
      return
    }
    for (const entry of this.table.values()) {
      if (entry.backend === b && entry instanceof Session) entry.migrate()
    }
  }

  /** Passive ejection stops short of taking out more than `maxEjectPercent` of the backends. */
  private mayEject(now: number): boolean {
    const cap = Math.max(1, Math.floor((this.backends.length * this.config.passive.maxEjectPercent) / 100))
    let out = 0
    for (const b of this.backends) if (b.isDown(now)) out++
    return out < cap
  }

  /** A failure (connect or open connection) counted against `backend`; it may eject it. */
  private passiveFailure(backend: Backend, kind: 'connect' | 'server'): boolean {
    const now = Date.now()
    const cooldown = backend.recordFailure(kind, now, this.mayEject(now))
    if (cooldown === 0) return false
    this.log.warn(
      { backend: backend.name, failures: backend.consecutiveFailures, cooldownMs: cooldown },
      kind === 'connect'
        ? 'backend marked down after consecutive connect failures'
        : 'backend marked down after consecutive failures'
    )
    backend.pool?.stop()
    if (this.onDown === 'migrate') this.migrateFrom(backend)
    return true
  }

  private accept(socket: Socket): void {
    this.counters.accepted++
    const max = this.config.maxConnections
    if (this.shedUntil !== 0) {
      if (Date.now() < this.shedUntil) {
        this.counters.localErrors++
        socket.on('error', ignore)
        socket.destroy()
        return
      }
      this.shedUntil = 0
    }
    if ((max > 0 && this.active >= max) || !this.owner.admit()) {
      this.counters.rejected++
      socket.on('error', ignore)
      socket.destroy()
      this.logRejection()
      return
    }
    const perSource = this.config.maxConnectionsPerSource
    if (perSource > 0) {
      const source = peerHost(peerName(socket, this.unix))
      const map = (this.perSource ??= new Map())
      const n = map.get(source) ?? 0
      if (n >= perSource) {
        this.counters.rejectedPerSource++
        socket.on('error', ignore)
        socket.destroy()
        this.logRejection()
        return
      }
      map.set(source, n + 1)
    }
    this.active++
    const session = new Session(this, socket)
    this.owner.onSessionOpen(session)
    session.connect()
  }

  /** A full balancer can be hit by thousands of connects a second: log at most once a second. */
  private logRejection(): void {
    const now = Date.now()
    if (now - this.lastRejectLog < 1000) return
    this.lastRejectLog = now
    this.log.warn({ rejected: this.counters.rejected }, 'connection limit reached, closing new clients')
  }

  pick(session: Session, avoid: ReadonlySet<Backend> | undefined, retry: boolean): Backend | undefined {
    // Read once at accept (`remote`): the socket may have passed to the native plane since.
    // A unix-domain client has no address to hash: the selector spreads those round-robin.
    const source =
      this.config.balance === 'source-hash' && session.remote !== UNIX_CLIENT ? session.remoteAddress : undefined
    let picked = this.selector.pick({ source, avoid })
    // Every usable backend failed for this session: try again only when it is the only one.
    if (
      picked === undefined &&
      avoid !== undefined &&
      this.backends.length === 1 &&
      this.backends[0]!.usable()
    ) {
      picked = this.backends[0]
    }
    if (retry && picked !== undefined) this.counters.retries++
    return picked
  }

  /** This process ran short (EMFILE…): count it, shed new clients briefly, log once a second. */
  localError(_session: Session | undefined, err: Error): void {
    this.counters.localErrors++
    this.shedUntil = Date.now() + SHED_MS
    this.localUnlogged++
    const now = Date.now()
    if (now - this.lastLocalLog < 1000) return
    this.lastLocalLog = now
    this.log.warn(
      { code: (err as NodeJS.ErrnoException).code, errors: this.localUnlogged, shedMs: SHED_MS },
      'out of local resources (not a backend failure): shedding new clients briefly'
    )
    this.localUnlogged = 0
  }

  connectFailed(session: Session, backend: Backend, err: Error): void {
    this.counters.connectErrors++
    const down = this.passiveFailure(backend, 'connect')
    this.owner.onBackendFailure(this, backend, err, down)
  }

  serverFailed(session: Session, backend: Backend, kind: ServerFailure, err: Error): void {
    this.counters.serverFailures++
    if (kind === 'timeout') this.counters.responseTimeouts++
    this.log.info(
      { session: session.id, backend: backend.name, failure: kind, err: err.message },
      'server connection failed'
    )
    const down = this.passiveFailure(backend, 'server')
    this.owner.onBackendFailure(this, backend, err, down)
  }

  handedOff(session: Session, h: HandoffInfo): void {
    const c = this.counters
    c.failovers++
    c.replayedRequests += h.requests
    c.replayedBytes += h.bytes
    if (h.pooled) c.handoffsPooled++
    else c.handoffsNew++
    this.log.info(
      {
        session: session.id,
        from: h.from.name,
        to: h.to.name,
        connection: h.pooled ? 'pooled' : 'new',
        requests: h.requests,
        bytes: h.bytes,
        ms: h.ms,
      },
      'failover'
    )
  }

  handoffLatency(_session: Session, pooled: boolean, ms: number): void {
    ;(pooled ? this.latency.pooled : this.latency.new).add(ms)
  }

  resumed(_session: Session, ok: boolean): void {
    if (ok) this.counters.verifiedResumes++
    else this.counters.resumeMismatches++
  }

  unrecoverable(session: Session, reason: string): void {
    this.log.warn(
      { session: session.id, backend: session.backend?.name, reason },
      'failure cannot be hidden, closing client'
    )
  }

  migrated(session: Session, from: Backend): void {
    this.counters.migrations++
    this.log.info({ session: session.id, from: from.name }, 'session leaves its backend at a clean boundary')
  }

  connected(_session: Session, backend: Backend): void {
    if (backend.recordSuccess()) {
      backend.cameUp()
      if (this.server.listening) backend.pool?.start()
      this.log.info({ backend: backend.name }, 'backend is answering again')
      this.owner.onBackendUp(this, backend)
    }
  }

  closed(session: Session): void {
    this.active--
    if (this.perSource !== undefined) {
      const source = session.remoteAddress
      const n = (this.perSource.get(source) ?? 1) - 1
      if (n <= 0) this.perSource.delete(source)
      else this.perSource.set(source, n)
    }
    const c = this.counters
    c.bytesFromClient += session.bytesFromClient
    c.bytesToClient += session.bytesToClient
    switch (session.outcome) {
      case 'no-backend':
      case 'connect-failed':
        c.noBackend++
        this.log.warn({ session: session.id, client: session.remote }, 'no backend available, client closed')
        break
      case 'client-timeout':
        c.clientTimeouts++
        break
      case 'server-timeout':
        c.serverTimeouts++
        break
      case 'client-error':
        c.clientErrors++
        break
      case 'local-error':
        break // counted in localError()
      case 'server-error':
        c.serverErrors++
        break
      case 'unrecoverable':
        c.unrecoverable++
        break
      case 'framing-error':
        c.framingErrors++
        this.log.warn(
          { session: session.id, backend: session.backend?.name, err: session.error?.message },
          'framing error, session closed'
        )
        break
    }
    if (this.log.isLevelEnabled('debug')) {
      this.log.debug(
        {
          session: session.id,
          client: session.remote,
          backend: session.backend?.name,
          bytesFromClient: session.bytesFromClient,
          bytesToClient: session.bytesToClient,
          durationMs: Date.now() - session.startedAt,
          outcome: session.outcome,
          err: session.error?.message,
        },
        'session closed'
      )
    }
    this.owner.onSessionClose(session)
  }
}

function ignore(): void {}

function sweep(listener: Listener): void {
  listener.sweepSessions()
}

/** The last `size` samples, for percentiles over recent hand-offs. */
export class LatencyRing {
  private readonly samples: number[] = []
  private next = 0
  count = 0
  constructor(private readonly size: number) {}

  add(v: number): void {
    this.count++
    if (this.samples.length < this.size) this.samples.push(v)
    else {
      this.samples[this.next] = v
      this.next = (this.next + 1) % this.size
    }
  }

  values(): number[] {
    return [...this.samples]
  }

  percentile(p: number): number | undefined {
    if (this.samples.length === 0) return undefined
    const sorted = [...this.samples].sort((a, b) => a - b)
    return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]
  }
}
