/**
 * The library's entry point: `createBalancer(config)` builds the listeners from a validated config;
 * `listen()` binds them, `close()` stops accepting and lets sessions finish up to a grace period.
 *
 * Events: `sessionOpen` (SessionSnapshot), `sessionClose` (SessionSnapshot & { outcome }),
 * `backendFailure` ({ listener, backend, error, down }), `backendUp` ({ listener, backend }).
 * They are built only when someone listens, so an idle API costs the data path nothing.
 */
import cluster from 'node:cluster'
import { EventEmitter } from 'node:events'
import net from 'node:net'
import { lookup } from 'node:dns/promises'
import type { Logger } from 'pino'
import type { Backend, BackendSnapshot } from './backend.js'
import type { Config, ConfigInput } from './config/schema.js'
import { validateConfig } from './config/validate.js'
import { formatAddress } from './address.js'
import {
  changedKeys,
  LatencyRing,
  Listener,
  zeroCounters,
  type ListenerCounters,
  type ListenerOwner,
} from './listener.js'
import { terminationCode } from './access-log.js'
import { createLogger } from './log.js'
import { ReplayBudget } from './replay/buffer.js'
import { openFileLimit, sessionsForLimit } from './local.js'
import { applyNativeThreads, sayIfUnavailable, type DataPlane } from './native/data-plane.js'
import type { EndSide, Outcome, Session } from './session.js'
import { ConnectionTable, snapshotOf, type SessionSnapshot } from './table.js'
import type { SocketPool } from './fleet/inherit.js'

export interface BalancerOptions {
  /** A pino logger to use instead of one made from `config.log`. */
  logger?: Logger
  /**
   * False: a view of the configuration that never binds a port, for a process where others accept
   * (the `--workers` primary: its admin server, health checks and reloads act on this view, and its
   * workers are told). `listen()` and reloads then bind nothing, and `close()` resolves at once.
   * Default true.
   */
  bind?: boolean
  /** The connection table to use (the cluster primary passes one that counts its workers' sessions). */
  table?: ConnectionTable
}

export interface Counters extends ListenerCounters {
  /** Sessions alive now, over all listeners. */
  active: number
}

export interface ListenerSnapshot {
  name: string
  /** `path` for a unix-domain listener (host '' and port 0). */
  address: { host: string; port: number; path?: string }
  balance: string
  /** The data plane of the listener's new sessions: `native` (splice addon) or `js`. */
  dataPlane: DataPlane
  active: number
  counters: ListenerCounters
  backends: BackendSnapshot[]
}

export interface ReloadResult {
  listenersAdded: string[]
  listenersRemoved: string[]
  /** `listener/backend` names. */
  backendsAdded: string[]
  backendsRemoved: string[]
  /** `listener/backend (weight 1 → 2)`: kept backends whose weight or maxConnections changed. */
  backendsChanged: string[]
  /** `listener (connectTimeout, retries)`: kept listeners whose own settings changed. */
  listenersChanged: string[]
  /** Top-level settings that changed (`maxConnections`, `log`...). */
  settingsChanged: string[]
}

export interface BackendFailureEvent {
  listener: string
  backend: string
  error: Error
  /** True when this failure put the backend in cool-down. */
  down: boolean
}

export type SessionCloseEvent = SessionSnapshot & {
  outcome: Outcome
  endedBy: EndSide
  /** The access log's two-letter termination code (lib/access-log.ts, README "Access log"). */
  termination: string
  error?: string
}

export class Balancer extends EventEmitter implements ListenerOwner {
  config: Config
  readonly log: Logger
  readonly table: ConnectionTable
  readonly budget: ReplayBudget
  frontends: Listener[]
  /** False for a view that never binds (BalancerOptions.bind). */
  readonly binds: boolean
  private closing: Promise<void> | undefined
  /** `log.access` (ListenerOwner): read by each listener when a session ends. */
  accessLog: boolean
  /** Sessions the descriptor limit allows (0: no limit known), read once at start. */
  readonly fdSessions = sessionsForLimit(openFileLimit())

  constructor(config: Config, options: BalancerOptions = {}) {
    super()
    this.config = config
    this.log = options.logger ?? createLogger(config.log)
    this.accessLog = config.log.access === true
    this.table = options.table ?? new ConnectionTable()
    this.binds = options.bind ?? true
    this.budget = new ReplayBudget(config.replay.maxTotalBytes)
    this.frontends = config.listeners.map((l) => new Listener(l, this, this.log))
  }

  /**
   * Bind every listener. On failure the ones already bound are closed and the error names the
   * listener. `inherited`: listening sockets passed to this process (systemd, an upgrade), each
   * taken by the listener it matches instead of binding (lib/fleet/inherit.ts).
   */
  async listen(inherited?: SocketPool): Promise<void> {
    if (!this.binds) return
    // Once per process (a --workers primary says it for its workers).
    if (!cluster.isWorker) sayIfUnavailable(this.log, this.config.listeners)
    const threads = applyNativeThreads(this.config)
    try {
      for (const l of this.frontends) {
        const { host, port } = l.config.listen
        const handed = inherited?.take(l.name, host ?? '', port ?? 0)
        await l.listen(handed)
        const a = l.address()
        this.log.info(
          {
            listener: l.name,
            address: formatAddress(a),
            balance: l.config.balance,
            dataPlane: l.plane,
            ...(l.plane === 'native' ? { nativeThreads: threads, accept: l.acceptPlane } : {}),
            ...(handed !== undefined ? { inherited: inherited?.passed?.(l.name) ?? true } : {}),
            backends: l.backends.map((b) => `${b.name}${b.weight !== 1 ? ` weight=${b.weight}` : ''}`),
          },
          'listening'
        )
      }
    } catch (err) {
      for (const l of this.frontends) l.stopAccepting()
      throw err
    }
  }

  /**
   * Look up and try each backend once, warning about those that do not resolve or refuse.
   * Start-up never fails on a backend: it may come up later, and passive marking handles it.
   */
  async probeBackends(timeoutMs = 1000): Promise<void> {
    const probes: Promise<void>[] = []
    for (const l of this.frontends) {
      for (const b of l.backends) probes.push(this.probe(l, b, timeoutMs))
    }
    await Promise.all(probes)
  }

  private async probe(l: Listener, b: Backend, timeoutMs: number): Promise<void> {
    if (b.path === undefined && net.isIP(b.host) === 0) {
      try {
        await lookup(b.host)
      } catch (err) {
        this.log.warn(
          { listener: l.name, backend: b.name, err: (err as Error).message },
          'backend does not resolve'
        )
        return
      }
    }
    await new Promise<void>((resolve) => {
      const socket = net.connect({ host: b.host, port: b.port, path: b.path, timeout: timeoutMs })
      const done = (why?: string): void => {
        socket.destroy()
        if (why !== undefined)
          this.log.warn({ listener: l.name, backend: b.name, reason: why }, 'backend not reachable at start')
        resolve()
      }
      socket.once('connect', () => done())
      socket.once('timeout', () => done('connect timed out'))
      socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message))
    })
  }

  /**
   * Stop accepting, let live sessions finish for up to `graceMs` (default `shutdownGrace`), then end
   * the rest. Resolves when every session is gone.
   */
  close(graceMs = this.config.shutdownGrace): Promise<void> {
    if (!this.binds) return Promise.resolve()
    this.closing ??= this.shutdown(graceMs)
    return this.closing
  }

  private async shutdown(graceMs: number): Promise<void> {
    for (const l of this.frontends) l.stopAccepting()
    if (this.table.size > 0) {
      this.log.info({ sessions: this.table.size, graceMs }, 'waiting for sessions to finish')
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.off('sessionsDrained', onDrained)
          const left = this.table.size
          for (const e of [...this.table.values()]) (e as Session).destroy('shutdown')
          if (left > 0) this.log.info({ sessions: left }, 'grace period over, closed remaining sessions')
          resolve()
        }, graceMs)
        const onDrained = (): void => {
          clearTimeout(timer)
          resolve()
        }
        this.once('sessionsDrained', onDrained)
      })
    }
    await Promise.all(this.frontends.map((l) => l.whenClosed()))
    this.log.info('stopped')
  }

  /**
   * Apply a new configuration without dropping a live session (SIGHUP, `POST /api/reload`).
   * Listeners are matched by name and address: new ones are bound first (if one cannot be, nothing
   * changes and the error says why), removed ones stop accepting while their sessions finish, kept
   * ones take their new backends, weights and settings. An invalid config throws ConfigError and
   * leaves the running one in place.
   */
  async reload(input: unknown): Promise<ReloadResult> {
    const config = validateConfig(input)
    const current = new Map(this.frontends.map((l) => [l.name, l]))
    const plan: { config: Config['listeners'][number]; kept: Listener | undefined }[] = []
    for (const lc of config.listeners) {
      const name = lc.name ?? formatAddress(lc.listen)
      const kept = current.get(name)
      // The same address as configured, or as bound (a port 0 listener named by its real port).
      const same =
        kept !== undefined &&
        kept.config.listen.host === lc.listen.host &&
        kept.config.listen.path === lc.listen.path &&
        (kept.config.listen.port === lc.listen.port || kept.address().port === lc.listen.port)
      plan.push({ config: lc, kept: same ? kept : undefined })
      if (same) current.delete(name)
    }
    const bound: Listener[] = []
    try {
      for (const p of plan) {
        if (p.kept !== undefined) continue
        const l = new Listener(p.config, this, this.log)
        if (this.binds) await l.listen()
        bound.push(l)
      }
    } catch (err) {
      for (const l of bound) l.stopAccepting()
      throw err
    }
    const result: ReloadResult = {
      listenersAdded: bound.map((l) => l.name),
      listenersRemoved: [],
      backendsAdded: [],
      backendsRemoved: [],
      backendsChanged: [],
      listenersChanged: [],
      settingsChanged: changedKeys(this.config, config, ['listeners']),
    }
    for (const l of current.values()) {
      l.stopAccepting()
      result.listenersRemoved.push(l.name)
    }
    // Before the listeners take theirs: they read the top-level `dns` settings from here.
    this.config = config
    const next: Listener[] = []
    for (const p of plan) {
      if (p.kept !== undefined) {
        const { added, removed, changed, settings } = p.kept.reconfigure(p.config)
        result.backendsAdded.push(...added.map((b) => `${p.kept!.name}/${b}`))
        result.backendsRemoved.push(...removed.map((b) => `${p.kept!.name}/${b}`))
        result.backendsChanged.push(...changed.map((b) => `${p.kept!.name}/${b}`))
        if (settings.length > 0) result.listenersChanged.push(`${p.kept.name} (${settings.join(', ')})`)
        next.push(p.kept)
      } else {
        next.push(bound.shift()!)
      }
    }
    this.frontends = next
    this.config = config
    this.accessLog = config.log.access === true
    this.budget.max = config.replay.maxTotalBytes
    if (this.binds) applyNativeThreads(config)
    // What changed, each list only when not empty; `unchanged` when nothing did.
    const changes = Object.fromEntries(Object.entries(result).filter(([, v]) => (v as string[]).length > 0))
    this.log.info(Object.keys(changes).length > 0 ? changes : { unchanged: true }, 'configuration reloaded')
    return result
  }

  /** Every live session: client, current backend and server connection, history, bytes. */
  sessions(): SessionSnapshot[] {
    return this.table.snapshot()
  }

  /** Counters summed over listeners, including the bytes of live sessions. */
  counters(): Counters {
    const sum: Counters = { active: this.table.size, ...zeroCounters() }
    for (const l of this.frontends) {
      for (const k of Object.keys(l.counters) as (keyof ListenerCounters)[]) sum[k] += l.counters[k]
    }
    for (const e of this.table.values()) {
      sum.bytesFromClient += e.bytesFromClient
      sum.bytesToClient += e.bytesToClient
    }
    return sum
  }

  /** Hand-off latency over recent failovers (ms, from the failure to the first replayed byte at the client). */
  handoffLatency(): Record<
    'pooled' | 'new',
    { count: number; p50: number | undefined; p99: number | undefined }
  > {
    const pooled = new LatencyRing(4096)
    const fresh = new LatencyRing(4096)
    for (const l of this.frontends) {
      for (const v of l.latency.pooled.values()) pooled.add(v)
      for (const v of l.latency.new.values()) fresh.add(v)
    }
    const stat = (r: LatencyRing) => ({ count: r.count, p50: r.percentile(50), p99: r.percentile(99) })
    return { pooled: stat(pooled), new: stat(fresh) }
  }

  listenerSnapshots(): ListenerSnapshot[] {
    return this.frontends.map((l) => ({
      name: l.name,
      address: l.address(),
      balance: l.config.balance,
      dataPlane: l.plane,
      active: l.active,
      counters: { ...l.counters },
      backends: l.backends.map((b) => b.snapshot()),
    }))
  }

  /** The bound address of a listener, by index or name (handy with port 0). */
  address(listener: number | string = 0): { host: string; port: number; path?: string } {
    const l =
      typeof listener === 'number'
        ? this.frontends[listener]
        : this.frontends.find((x) => x.name === listener)
    if (l === undefined) throw new RangeError(`no listener ${String(listener)}`)
    return l.address()
  }

  // ListenerOwner

  admit(): boolean {
    // Without a `maxConnections` of the user's, the descriptor limit sets one: past it a new
    // session would only end in EMFILE (HAProxy derives its default maxconn from `ulimit -n`).
    const max = this.config.maxConnections !== 0 ? this.config.maxConnections : this.fdSessions
    return max === 0 || this.table.size < max
  }

  onSessionOpen(session: Session): void {
    if (this.listenerCount('sessionOpen') > 0) this.emit('sessionOpen', snapshotOf(session))
  }

  onSessionClose(session: Session): void {
    if (this.listenerCount('sessionClose') > 0) {
      const event: SessionCloseEvent = {
        ...snapshotOf(session),
        outcome: session.outcome!,
        endedBy: session.endedBy!,
        termination: terminationCode({
          outcome: session.outcome!,
          error: session.error,
          connectedAt: session.connectedAt,
          bytesFromClient: session.bytesFromClient,
          bytesToClient: session.bytesToClient,
        }),
      }
      if (session.error !== undefined) event.error = session.error.message
      this.emit('sessionClose', event)
    }
    if (this.closing !== undefined && this.table.size === 0) this.emit('sessionsDrained')
  }

  onBackendFailure(listener: Listener, backend: Backend, error: Error, down: boolean): void {
    if (this.listenerCount('backendFailure') > 0) {
      const event: BackendFailureEvent = { listener: listener.name, backend: backend.name, error, down }
      this.emit('backendFailure', event)
    }
  }

  onBackendUp(listener: Listener, backend: Backend): void {
    if (this.listenerCount('backendUp') > 0)
      this.emit('backendUp', { listener: listener.name, backend: backend.name })
  }
}

/** Validate `config` (throws ConfigError with one line per problem) and build a balancer. */
export function createBalancer(config: ConfigInput, options?: BalancerOptions): Balancer {
  return new Balancer(validateConfig(config), options)
}
