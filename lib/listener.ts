/**
 * A listener: one `net.Server` acceptor with its own backends, balancing algorithm, limits and
 * timeouts. It turns each accepted socket into a session, or closes it at once when a limit is hit.
 */
import cluster from 'node:cluster'
import { chmodSync } from 'node:fs'
import net, { isIP, type Socket } from 'node:net'
import type { Logger } from 'pino'
import { formatAddress, peerHost, peerName, removeStaleSocket, UNIX_CLIENT } from './address.js'
import { Backend, type BackendChange } from './backend.js'
import { createListenerSelector } from './balancing/index.js'
import type { Selector } from './balancing/types.js'
import type { ListenerConfig } from './config/schema.js'
import { ListenError } from './errors.js'
import { framerFor, type FramerFactory } from './framing/index.js'
import { protocolOf } from './protocols/index.js'
import { checkerFor, type HealthChecker } from './health/checker.js'
import { WarmPool } from './pool/warm-pool.js'
import type { ReplayBudget } from './replay/buffer.js'
import { ORPHAN_FIN_MS, Session, type HandoffInfo, type ServerFailure, type SessionBounds, type SessionHost } from './session.js'
import type { ConnectionTable } from './table.js'
import { isLocalError, SHED_MS } from './local.js'
import { resolveDataPlane, type DataPlane } from './native/data-plane.js'
import { terminationCode } from './access-log.js'
import { unusableOthers, usableCount } from './health/unusable.js'
import type { NativePlane, PlaneAccepted } from './native/plane.js'
import { ON_PLANE } from './native/link.js'
import { Pipeline, Refusals, stagesFor, type AcceptContext, type AcceptState, type PipelineHost } from './accept/index.js'
import { pipelineOf } from './accept/pipeline.js'
import { PER_SOURCE_LIMIT } from './accept/limits.js'
import { proxyVersions, type ProxyVersion } from './accept/proxy/send.js'
import { SessionQueue } from './accept/queue.js'
import { LimitError, UNRECOVERABLE, type UnrecoverableReason } from './errors.js'
import { adoptHandle, bindHandle, type Adoptable, type NativeHandle } from './fleet/inherit.js'
import { backendName, DNS_DEFAULTS, DnsDiscovery, type DnsConfig } from './discovery/dns.js'
import type { BackendConfig } from './config/schema.js'

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
  /** Clients refused by an accept stage, every reason (per reason: `Listener.refusals`). */
  refused: number
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
  /**
   * Failures that could not be hidden: the client was closed as a plain L4 proxy would. Per reason:
   * `Listener.unrecoverableBy`, whose sum this is.
   */
  unrecoverable: number
  framingErrors: number
  /** Sessions moved off a backend that went down or drains, at a clean boundary, unseen by the client. */
  migrations: number
  /**
   * Framed sessions (http1, resp) the native plane handed to JavaScript: anything it does not
   * follow, every FIN or server error, a bound or a move (docs/native-plane.md, "http1 on the plane").
   */
  planeHandoffs: number
  /** Bytes of sessions that have ended (live sessions are added at read time). */
  bytesFromClient: number
  bytesToClient: number
  /** DNS lookups of `discover` entries, and those that failed (the last good answer was kept). */
  dnsLookups: number
  dnsFailures: number
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
    refused: 0,
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
    planeHandoffs: 0,
    bytesFromClient: 0,
    bytesToClient: 0,
    dnsLookups: 0,
    dnsFailures: 0,
  }
}

/** Unrecoverable failures per reason, every reason at 0 (so each series exists from the start). */
export function zeroUnrecoverable(): Record<UnrecoverableReason, number> {
  const out = {} as Record<UnrecoverableReason, number>
  for (const reason of Object.keys(UNRECOVERABLE) as UnrecoverableReason[]) out[reason] = 0
  return out
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
  /** `log.access`: one line per session when it ends (lib/access-log.ts). */
  readonly accessLog: boolean
  /** DNS settings for `discover` entries (the top-level `dns`). */
  readonly config: { readonly dns?: DnsConfig | undefined }
}

export class Listener implements SessionHost, PipelineHost {
  readonly name: string
  config: ListenerConfig
  backends: Backend[]
  readonly log: Logger
  readonly counters: ListenerCounters = zeroCounters()
  /**
   * `counters.unrecoverable` by reason (`baton_unrecoverable_total{reason}`). Counted in
   * unrecoverable(), which every path calls just before it ends the session `unrecoverable` (where
   * the total is counted, in the same tick).
   */
  readonly unrecoverableBy: Record<UnrecoverableReason, number> = zeroUnrecoverable()
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
  /** One selector per backend group, where the listener routes to groups (`tls`); else undefined. */
  private groups: Map<string, { selector: Selector<Backend>; backends: Backend[] }> | undefined
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
    orphan: 0,
  }
  /** The accept stages (lib/accept/); undefined when none is configured: the plain accept path. */
  private pipeline: Pipeline | undefined
  /** State the stages keep across reloads (per-source counts, token buckets). */
  private readonly acceptState: AcceptState = {}
  /** Clients refused by a stage, per reason. */
  readonly refusals: Refusals
  /** The backends that get a PROXY protocol header (`sendProxy`); undefined when none does. */
  proxyTo: Map<Backend, ProxyVersion> | undefined
  /** New clients waiting for a full backend's slot (`queue`); undefined when off. */
  private waiting: SessionQueue | undefined = undefined
  /** DNS lookups of `discover` entries, while listening. */
  private discovery: DnsDiscovery | undefined = undefined
  /** The backends DNS found last, kept beside the configured ones across reloads. */
  private discovered: BackendConfig[] = []
  /**
   * Where the native plane accepts this listener's clients (`acceptNative`) instead of
   * `server`: the bound socket (a bare handle, as node:cluster's primary holds) and the plane
   * watching it. Undefined on Node's accept path, and once accepting stopped.
   */
  private acceptor: { handle: NativeHandle; fd: number; plane: NativePlane } | undefined = undefined
  /** Resolved once accepting stopped and the last session ended (native accept; see whenClosed). */
  private drained: (() => void)[] = []

  constructor(config: ListenerConfig, owner: ListenerOwner, log: Logger) {
    this.config = config
    this.name = config.name ?? formatAddress(config.listen)
    this.owner = owner
    this.log = log.child({ listener: this.name })
    this.refusals = new Refusals(this.log)
    this.backends = config.backends.map((b) => new Backend(b, config.passive))
    for (const b of this.backends) {
      b.slowStart = config.slowStart
      b.onChange = this.onBackendChange
    }
    this.selector = createListenerSelector(config.balance, this.backends, config.allBackups)
    this.groups = groupSelectors(config, this.backends)
    this.framer = framerFor(config)
    const plane = resolveDataPlane(config)
    this.plane = plane.plane
    this.planeReason = plane.reason
    this.native = plane.native
    if (config.pool.idle > 0) {
      for (const b of this.backends) b.pool = new WarmPool(b, config.pool)
    }
    this.pipeline = this.pipelineFor(config)
    this.proxyTo = proxyVersions(config, this.backends)
    this.setQueue(config)
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.accept(socket))
  }

  get table(): ConnectionTable {
    return this.owner.table
  }

  get budget(): ReplayBudget {
    return this.owner.budget
  }

  /**
   * Bind the listen address, or take `inherited`, a listening socket passed to this process
   * (systemd socket activation, an upgrade: lib/fleet/inherit.ts).
   */
  async listen(inherited?: Adoptable): Promise<void> {
    // The first answers come before the first client, so that it finds backends.
    await this.startDiscovery()
    try {
      await this.bind(inherited)
    } catch (err) {
      this.stopDiscovery()
      throw err
    }
  }

  private async bind(inherited: Adoptable | undefined): Promise<void> {
    const { host, port, path, mode } = this.config.listen
    // A socket file left by a dead process (nginx removes its own at start). Never in a --workers
    // worker: the primary binds for all of them and cleaned up before forking.
    if (inherited === undefined && path !== undefined && !cluster.isWorker && (await removeStaleSocket(path)))
      this.log.info({ path }, 'removed a stale unix socket file (nothing accepted on it)')
    if (this.acceptsNatively(inherited)) return this.bindNative(inherited as NativeHandle | undefined)
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(new ListenError(this.name, formatAddress(this.config.listen), err))
      }
      this.server.once('error', onError)
      const listening = (): void => {
        this.server.off('error', onError)
        if (path !== undefined && mode !== undefined) {
          try {
            chmodSync(path, mode)
          } catch (err) {
            this.server.close()
            return reject(new ListenError(this.name, formatAddress(this.config.listen), err as Error))
          }
        }
        // accept() out of descriptors: libuv closes the client for us.
        this.server.on('error', (err) => this.acceptFailed(err))
        this.serve()
        this.server.once('close', () => {
          clearInterval(this.sweeper)
          this.sweeper = undefined
        })
        resolve()
      }
      if (inherited !== undefined) {
        adoptHandle(this.server, inherited, this.config.backlog)
        this.server.once('listening', listening)
      } else {
        const where = path !== undefined ? { path } : { host, port }
        this.server.listen({ ...where, backlog: this.config.backlog }, listening)
      }
    })
  }

  /**
   * Whether the native plane accepts this listener's clients (docs/native-plane.md, "Accepts"):
   * its sessions start on the plane (opaque, native); its socket is a TCP one it binds to an IP
   * address itself, or a bare TCP handle passed to it (a `--workers` primary's, systemd's, an
   * upgrade's: every worker then accepts on the same socket, as node:cluster's SCHED_NONE does);
   * and nothing reads or writes the client before the plane has it (no accept stage, no PROXY
   * header to send). A unix-domain listener and a passed `net.Server` keep Node's accept, as does
   * `nativeAccept: false`.
   */
  private acceptsNatively(inherited: Adoptable | undefined): boolean {
    const c = this.config
    if (this.native === undefined || !c.nativeAccept || c.listen.path !== undefined) return false
    if (this.pipeline !== undefined || this.proxyTo !== undefined) return false
    if (inherited !== undefined) return !(inherited instanceof net.Server) && isTcpHandle(inherited)
    return !cluster.isWorker && c.listen.host !== undefined && isIP(c.listen.host) !== 0
  }

  /** Bind (or take `passed`), and let the native plane accept (`acceptNative`). */
  private bindNative(passed: NativeHandle | undefined): void {
    const plane = this.native!
    const { host, port } = this.config.listen
    let handle: NativeHandle
    try {
      handle = passed ?? bindHandle({ host: host!, port: port ?? 0 })
    } catch (err) {
      throw new ListenError(this.name, formatAddress(this.config.listen), err as Error)
    }
    const fd = handle.fd
    try {
      plane.listen(fd, this.config.backlog, (client, errno, code, address, p) =>
        this.acceptNative(plane, fd, client, errno, code, address, p)
      )
    } catch (err) {
      handle.close()
      throw new ListenError(this.name, formatAddress(this.config.listen), err as Error)
    }
    this.acceptor = { handle, fd, plane }
    this.serve()
  }

  /** Listening: the warm pools, the health checks and the sweep start (again, after a reload). */
  private serve(): void {
    for (const b of this.backends) b.pool?.start()
    this.startChecks()
    this.startSweep()
  }

  /** An accept failed (Node's or the plane's): a shortage of this process sheds and says so once a second. */
  private acceptFailed(err: Error): void {
    if (isLocalError(err)) this.localError(undefined, err)
    else this.log.error({ err }, 'listener error')
  }

  /** Accepting now (Node's server listens, or the plane accepts). */
  get listening(): boolean {
    return this.acceptor !== undefined || this.server.listening
  }

  /** The listening socket, to pass on to an upgrade's successor; undefined when not listening. */
  get listenSocket(): Adoptable | undefined {
    if (this.acceptor !== undefined) return this.acceptor.handle
    return this.server.listening ? this.server : undefined
  }

  /** Who accepts this listener's clients: the native plane, or Node (the status page, `/metrics`). */
  get acceptPlane(): 'native' | 'node' {
    return this.acceptor !== undefined ? 'native' : 'node'
  }

  /** The bound address (useful with port 0); a unix-domain listener's has its `path` (host '', port 0). */
  address(): { host: string; port: number; path?: string } {
    const { host = '', port = 0, path } = this.config.listen
    if (path !== undefined) return { host, port, path }
    if (this.acceptor !== undefined) {
      const out: Record<string, unknown> = {}
      if (this.acceptor.handle.getsockname?.(out) === 0 && typeof out.port === 'number')
        return { host: String(out.address), port: out.port }
      return { host, port }
    }
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
    this.stopDiscovery()
    for (const c of this.checkers.splice(0)) c.stop()
    for (const b of this.backends) b.pool?.stop()
    if (this.server.listening) this.server.close()
    const a = this.acceptor
    if (a !== undefined) {
      this.acceptor = undefined
      a.plane.unlisten(a.fd)
      a.handle.close()
      this.settle()
    }
  }

  /** Resolves once the listening socket and every connection it accepted are closed. */
  whenClosed(): Promise<void> {
    if (!this.listening && this.active === 0) return Promise.resolve()
    if (this.server.listening) return new Promise((resolve) => this.server.once('close', () => resolve()))
    return new Promise((resolve) => this.drained.push(resolve))
  }

  /**
   * A session of a listener whose plane accepted ended, or accepting stopped: once both, what
   * Node's server 'close' does for the other path (the sweep stops, `whenClosed` resolves).
   */
  private settle(): void {
    if (this.acceptor !== undefined || this.active !== 0 || this.server.listening) return
    clearInterval(this.sweeper)
    this.sweeper = undefined
    for (const done of this.drained.splice(0)) done()
  }

  /**
   * Take a new configuration for this listener (reload): backends are matched by name and address
   * and keep their state and live sessions; new ones are added; removed ones drain (no new
   * sessions, live ones finish on them). Timeouts, limits, algorithm and protocol apply to new
   * sessions. The listen address is not changed here (the balancer adds and removes listeners).
   */
  reconfigure(config: ListenerConfig): {
    added: string[]
    removed: string[]
    /** Kept backends whose weight or maxConnections changed, as `name (weight 1 → 2)`. */
    changed: string[]
    /** This listener's own settings that changed (backends aside), by name. */
    settings: string[]
  } {
    const settings = changedKeys(this.config, config)
    const restartDiscovery =
      this.discovery !== undefined &&
      (JSON.stringify(config.discover ?? []) !== JSON.stringify(this.discovery.entries) ||
        JSON.stringify(this.owner.config.dns ?? DNS_DEFAULTS) !== JSON.stringify(this.discovery.settings))
    if ((config.discover ?? []).length === 0) this.discovered = []
    const result = this.applyBackends(config)
    if (restartDiscovery || (this.discovery === undefined && this.listening)) {
      this.stopDiscovery()
      // The backends found so far stay until the new lookups answer.
      void this.startDiscovery()
    }
    return { ...result, settings }
  }

  /** Configured backends plus those DNS found: matched, added and drained as on a reload. */
  private applyBackends(config: ListenerConfig): { added: string[]; removed: string[]; changed: string[] } {
    const old = new Map(this.backends.map((b) => [b.name, b]))
    const next: Backend[] = []
    const added: string[] = []
    const changed: string[] = []
    const staticNames = new Set(config.backends.map((b) => new Backend(b, config.passive).name))
    const wanted = [
      ...config.backends,
      ...this.discovered.filter((b) => !staticNames.has(backendName(b.host, b.port))),
    ]
    for (const bc of wanted) {
      const fresh = new Backend(bc, config.passive)
      const kept = old.get(fresh.name)
      if (kept !== undefined && kept.address === fresh.address && kept.group === fresh.group) {
        const what: string[] = []
        if (kept.baseWeight !== bc.weight) what.push(`weight ${kept.baseWeight} → ${bc.weight}`)
        if (kept.maxConnections !== bc.maxConnections)
          what.push(`maxConnections ${kept.maxConnections} → ${bc.maxConnections}`)
        if (what.length > 0) changed.push(`${kept.name} (${what.join(', ')})`)
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
    this.groups = groupSelectors(config, next)
    this.framer = framerFor(config)
    // Clients already past the stages keep the context (and the stages) that admitted them.
    this.pipeline = this.pipelineFor(config)
    this.proxyTo = proxyVersions(config, next)
    this.setQueue(config)
    // Live sessions stay on the plane they started on; new ones take the new setting.
    const plane = resolveDataPlane(config)
    this.plane = plane.plane
    this.planeReason = plane.reason
    this.native = plane.native
    if (this.listening) this.serve()
    return { added, removed: [...old.keys()], changed }
  }

  /** Start the lookups of `discover` entries (if any); resolves once each has answered or failed. */
  private async startDiscovery(): Promise<void> {
    const entries = this.config.discover ?? []
    if (entries.length === 0 || this.discovery !== undefined) return
    const log = this.log.child({ component: 'dns' })
    const discovery = new DnsDiscovery(
      entries,
      this.owner.config.dns ?? DNS_DEFAULTS,
      log,
      this.counters,
      (found) => {
        if (this.discovery !== discovery) return
        this.discovered = found
        const { added, removed } = this.applyBackends(this.config)
        if (added.length > 0 || removed.length > 0)
          this.log.info({ added, removed, backends: this.backends.length }, 'dns: backends changed')
      }
    )
    this.discovery = discovery
    await discovery.start()
  }

  private stopDiscovery(): void {
    const d = this.discovery
    if (d === undefined) return
    this.discovery = undefined
    d.stop()
  }

  /** The bounds of this listener's sessions, as the sweep applies them (see `Session.sweep`). */
  get bounds(): SessionBounds {
    const c = this.config
    const requests = protocolOf(c.protocol).defaults.requests
    const framed = this.framer !== undefined && requests
    return {
      client: c.clientTimeout,
      server: c.serverTimeout,
      request: framed ? c.requestTimeout : 0,
      firstByte: c.firstByteTimeout ?? (requests ? 10_000 : 0),
      halfClosed: c.halfClosedTimeout,
      // The JavaScript plane times responses per request (replayer.ts); the native plane's
      // sessions are checked by the sweep.
      response: this.native !== undefined && c.replay.mode !== 'none' ? c.responseTimeout : 0,
      orphan: c.protocol === 'opaque' && c.replay.mode !== 'none' ? ORPHAN_FIN_MS : 0,
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
      this.log.info(
        { backend: b.name, via: 'health check', up: usableCount(this.backends), of: this.backends.length },
        'backend is up again'
      )
      b.pool?.start()
      this.owner.onBackendUp(this, b)
    } else {
      this.log.warn(
        { backend: b.name, reason, up: usableCount(this.backends), of: this.backends.length },
        'health check: backend is down'
      )
      b.pool?.stop()
      this.owner.onBackendFailure(this, b, new Error(`health check failed: ${reason ?? 'no reason'}`), true)
      if (this.onDown === 'migrate') this.migrateFrom(b)
    }
  }

  /** `onDown`, with its default: migrate where the framer knows clean boundaries. */
  get onDown(): 'migrate' | 'keep' {
    return this.config.onDown ?? protocolOf(this.config.protocol).defaults.onDown
  }

  /** `onDrain`, with its default: migrate where the framer knows clean boundaries. */
  get onDrain(): 'migrate' | 'finish' {
    return this.config.onDrain ?? protocolOf(this.config.protocol).defaults.onDrain
  }

  /** A backend's admin state or configured weight changed (API, reload). */
  private readonly onBackendChange = (b: Backend, what: BackendChange): void => {
    if (what === 'weight') {
      // Tables built from weights (source-hash's Maglev table) are built again.
      this.selector = createListenerSelector(this.config.balance, this.backends, this.config.allBackups)
      this.groups = groupSelectors(this.config, this.backends)
      return
    }
    if (b.admin !== 'ready' && this.onDrain === 'migrate') this.migrateFrom(b)
  }

  /** Move every live session on `b` to another backend, each at its next clean boundary. */
  migrateFrom(b: Backend): void {
    // With no other backend usable, a session that left would find none for its next request:
    // it stays where it is (a drained backend still serves its live sessions).
    if (!this.backends.some((x) => x !== b && x.group === b.group && x.usable())) {
      this.log.warn(
        { backend: b.name, others: unusableOthers(this.backends, b) },
        'no other backend is usable: sessions stay on this one for now'
      )
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
  private passiveFailure(backend: Backend, kind: 'connect' | 'server', err: Error): boolean {
    const now = Date.now()
    const cooldown = backend.recordFailure(kind, now, this.mayEject(now))
    if (cooldown === 0) return false
    this.log.warn(
      {
        backend: backend.name,
        reason: (err as NodeJS.ErrnoException).code ?? err.message,
        failures: backend.consecutiveFailures,
        cooldownMs: cooldown,
        up: usableCount(this.backends),
        of: this.backends.length,
      },
      kind === 'connect'
        ? 'backend marked down after consecutive connect failures'
        : 'backend marked down after consecutive failures'
    )
    backend.pool?.stop()
    if (this.onDown === 'migrate') this.migrateFrom(backend)
    return true
  }

  private accept(socket: Socket): void {
    if (!this.admitNew()) {
      socket.on('error', ignore)
      socket.destroy()
      return
    }
    this.start(socket)
  }

  /** A new client counts as accepted; false when it must be closed at once (shedding, limits). */
  private admitNew(): boolean {
    this.counters.accepted++
    const max = this.config.maxConnections
    if (this.shedUntil !== 0) {
      if (Date.now() < this.shedUntil) {
        this.counters.localErrors++
        return false
      }
      this.shedUntil = 0
    }
    if ((max > 0 && this.active >= max) || !this.owner.admit()) {
      this.counters.rejected++
      this.logRejection()
      return false
    }
    this.active++
    return true
  }

  /** An admitted client with a Node socket: through the accept stages, or straight to a session. */
  private start(socket: Socket): void {
    if (this.pipeline !== undefined) return this.pipeline.start(socket)
    const session = new Session(this, socket, undefined)
    this.owner.onSessionOpen(session)
    session.connect()
  }

  /**
   * A client the native plane accepted on `fd` (or, with `client` undefined, an accept that
   * failed: the plane stopped accepting on `fd`, and starts again after SHED_MS, as Node's path
   * sheds new clients that long). The session starts with no Node socket for its client; where
   * something must read or write the client first (accept stages, a PROXY header, a listener
   * reloaded onto the JavaScript plane) the descriptor becomes a Node socket and takes Node's path.
   */
  private acceptNative(
    plane: NativePlane,
    fd: number,
    client: PlaneAccepted | undefined,
    errno: number,
    code: string,
    address: string,
    port: number
  ): void {
    if (client === undefined) {
      this.acceptFailed(Object.assign(new Error(`accept ${code}`), { code, errno: -errno }))
      setTimeout(resumeAccept, SHED_MS, this, fd).unref()
      return
    }
    if (this.acceptor?.fd !== fd || !this.admitNew()) return plane.closeAccepted(client)
    if (this.native === undefined || this.pipeline !== undefined || this.proxyTo !== undefined) {
      const socket = new net.Socket({ fd: plane.takeAccepted(client), readable: true, writable: true, allowHalfOpen: true })
      return this.start(socket)
    }
    const session = new Session(this, ON_PLANE, undefined, { client, remote: `${address}:${port}` })
    this.owner.onSessionOpen(session)
    session.connect()
  }

  /** @internal Accept again on `fd` after a failed accept paused it. */
  resumeAccept(fd: number): void {
    const a = this.acceptor
    if (a !== undefined && a.fd === fd) a.plane.resumeAccept(fd)
  }

  private pipelineFor(config: ListenerConfig): Pipeline | undefined {
    const stages = stagesFor(config, this.acceptState)
    return stages === undefined ? undefined : new Pipeline(stages, this)
  }

  private setQueue(config: ListenerConfig): void {
    const q = config.queue
    if (q === undefined) {
      this.waiting?.flush()
      this.waiting = undefined
    } else if (this.waiting === undefined) {
      this.waiting = new SessionQueue(q.timeout, q.max)
    } else {
      this.waiting.timeout = q.timeout
      this.waiting.max = q.max
    }
  }

  /** SessionHost: no backend for a first pick; wait in the queue when one is only full. */
  queue(session: Session): boolean {
    const q = this.waiting
    if (q === undefined) return false
    return q.offer(
      {
        get waiting() {
          return session.state === 'connecting' && session.server === undefined
        },
        retry: () => session.connect(),
        reject: (reason) => {
          this.counters.refused++
          this.refusals.add(reason, session.remote)
          session.destroy('no-backend', new LimitError('ERR_BATON_QUEUE', `queue: ${reason}`))
        },
      },
      // A routed session waits only for a slot in its own group.
      this.groups?.get(session.accept?.group ?? '')?.backends ?? this.backends
    )
  }

  /** Clients waiting in the queue. */
  get queued(): number {
    return this.waiting?.length ?? 0
  }

  /** @internal PipelineHost: the client passed every accept stage. */
  admitted(ctx: AcceptContext): void {
    const session = new Session(this, ctx.socket, ctx)
    this.owner.onSessionOpen(session)
    session.connect()
  }

  /** @internal PipelineHost: a stage refused the client. */
  refused(ctx: AcceptContext, reason: string): void {
    this.active--
    this.settle()
    this.counters.refused++
    if (reason === PER_SOURCE_LIMIT) this.counters.rejectedPerSource++
    this.refusals.add(reason, `${ctx.clientAddress}:${ctx.clientPort}`)
    ctx.socket.on('error', ignore)
    ctx.socket.destroy()
  }

  /** @internal PipelineHost: the client left while the stages ran. */
  abandoned(ctx: AcceptContext): void {
    this.active--
    this.settle()
    this.counters.clientErrors++
    ctx.socket.on('error', ignore)
    ctx.socket.destroy()
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
    // A routed session picks within its group, the first time and at every failover.
    const group = this.groups !== undefined ? this.groups.get(session.accept?.group ?? '') : undefined
    const members = group?.backends ?? this.backends
    let picked = (group?.selector ?? this.selector).pick({ source, avoid })
    // Every usable backend failed for this session: try again only when it is the only one.
    if (picked === undefined && avoid !== undefined && members.length === 1 && members[0]!.usable()) {
      picked = members[0]
    }
    if (retry && picked !== undefined) {
      this.counters.retries++
      session.retries++
    }
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
    const down = this.passiveFailure(backend, 'connect', err)
    this.owner.onBackendFailure(this, backend, err, down)
  }

  serverFailed(session: Session, backend: Backend, kind: ServerFailure, err: Error): void {
    this.counters.serverFailures++
    if (kind === 'timeout') this.counters.responseTimeouts++
    this.log.info(
      { session: session.id, backend: backend.name, failure: kind, err: err.message },
      'server connection failed'
    )
    const down = this.passiveFailure(backend, 'server', err)
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

  unrecoverable(session: Session, reason: UnrecoverableReason, detail?: string): void {
    this.unrecoverableBy[reason]++
    this.log.warn(
      {
        session: session.id,
        backend: session.backend?.name,
        reason,
        why: detail ?? UNRECOVERABLE[reason],
        // Why the hand-off found nowhere to go.
        ...(reason === 'no-backend'
          ? { others: unusableOthers(this.backends, session.backend, session.failed) }
          : {}),
      },
      'failure cannot be hidden, closing client'
    )
  }

  migrated(session: Session, from: Backend): void {
    this.counters.migrations++
    this.log.info({ session: session.id, from: from.name }, 'session leaves its backend at a clean boundary')
  }

  leftPlane(session: Session, reason: string): void {
    this.counters.planeHandoffs++
    this.log.debug({ session: session.id, reason }, 'session leaves the native plane for JavaScript')
  }

  connected(session: Session, backend: Backend): void {
    if (session.connectedAt === 0) session.connectedAt = Date.now()
    if (backend.recordSuccess()) {
      backend.cameUp()
      if (this.listening) backend.pool?.start()
      this.log.info(
        { backend: backend.name, via: 'traffic', up: usableCount(this.backends), of: this.backends.length },
        'backend is up again'
      )
      this.owner.onBackendUp(this, backend)
    }
  }

  closed(session: Session): void {
    this.active--
    this.settle()
    if (session.accept !== undefined) pipelineOf(session.accept).closed(session.accept)
    // A slot may have freed on a full backend: the oldest waiting client picks again.
    if (this.waiting !== undefined && this.waiting.length > 0) this.waiting.retry()
    const c = this.counters
    c.bytesFromClient += session.bytesFromClient
    c.bytesToClient += session.bytesToClient
    switch (session.outcome) {
      case 'no-backend':
      case 'connect-failed':
        c.noBackend++
        this.log.warn(
          {
            session: session.id,
            client: session.remote,
            // The last backend tried failed too (it is not in `failed`: no connect followed it).
            backends: unusableOthers(
              this.backends,
              undefined,
              new Set([...(session.failed ?? []), ...(session.backend !== undefined ? [session.backend] : [])])
            ),
          },
          'no backend available, client closed'
        )
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
    if (this.owner.accessLog && this.log.isLevelEnabled('info')) this.logAccess(session)
    this.owner.onSessionClose(session)
  }

  /**
   * The access log line (README "Access log"): times in ms from accept, -1 for what never happened
   * (as HAProxy logs them); `backends` every backend the session was attached to, in order, the
   * ones whose connect failed included.
   */
  private logAccess(session: Session): void {
    const start = session.startedAt
    const line: Record<string, unknown> = {
      session: session.id,
      client: session.remote,
      backends: session.history.map((b) => b.name),
      termination: terminationCode({
        outcome: session.outcome!,
        error: session.error,
        connectedAt: session.connectedAt,
        bytesFromClient: session.bytesFromClient,
        bytesToClient: session.bytesToClient,
      }),
      connectMs: session.connectedAt === 0 ? -1 : session.connectedAt - start,
      ttfbMs: session.firstServerByteAt === 0 ? -1 : session.firstServerByteAt - start,
      durationMs: Date.now() - start,
      bytesFromClient: session.bytesFromClient,
      bytesToClient: session.bytesToClient,
      retries: session.retries,
      failovers: session.failovers,
      outcome: session.outcome,
      endedBy: session.endedBy,
    }
    if (session.error !== undefined) line.err = session.error.message
    this.log.info(line, 'access')
  }
}

function ignore(): void {}

/** A bare handle on a TCP socket (its address has a port; a unix-domain one has none). */
function isTcpHandle(h: NativeHandle): boolean {
  const out: Record<string, unknown> = {}
  return typeof h.getsockname === 'function' && h.getsockname(out) === 0 && typeof out.port === 'number'
}

function resumeAccept(listener: Listener, fd: number): void {
  listener.resumeAccept(fd)
}

/** The keys whose values differ between two configs (`backends` and `listen` aside: matched apart). */
export function changedKeys(a: object, b: object, skip: readonly string[] = ['backends', 'listen']): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)])
  const out: string[] = []
  for (const k of keys) {
    if (skip.includes(k)) continue
    const x = (a as Record<string, unknown>)[k]
    const y = (b as Record<string, unknown>)[k]
    if (JSON.stringify(x) !== JSON.stringify(y)) out.push(k)
  }
  return out
}

/** Selectors per backend group, for a listener that routes (`tls`); undefined otherwise. */
function groupSelectors(
  config: ListenerConfig,
  backends: Backend[]
): Map<string, { selector: Selector<Backend>; backends: Backend[] }> | undefined {
  if (config.tls === undefined) return undefined
  const members = new Map<string, Backend[]>()
  for (const b of backends) {
    // Backends a reload removed are draining: they take no new session.
    let list = members.get(b.group)
    if (list === undefined) members.set(b.group, (list = []))
    list.push(b)
  }
  const out = new Map<string, { selector: Selector<Backend>; backends: Backend[] }>()
  for (const [name, list] of members) out.set(name, { selector: createListenerSelector(config.balance, list, config.allBackups), backends: list })
  return out
}

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
