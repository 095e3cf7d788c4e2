/**
 * The `--workers N` primary (node:cluster). It accepts no client itself: N workers do (worker.ts),
 * each a whole Balancer built from the same configuration with active health checks off. The
 * primary keeps what must be one for all of them:
 *
 *   - active health checks (health.ts), on a view of the configuration that binds nothing;
 *   - backend state (admin ready/drain/maint, weight, checked health): its view holds it, the admin
 *     API changes it there, and the whole table goes to every worker on each change and to each
 *     worker that starts (state.ts);
 *   - the admin server: GETs read the view after it has been refreshed from the workers' figures
 *     (view.ts); /metrics sums the workers' prom-client registries with prom-client's
 *     AggregatorRegistry.aggregate; /api/sessions gathers the page from the workers;
 *   - reloads (SIGHUP, POST /api/reload): the primary validates the file (invalid: refused, the
 *     reason logged and answered, as in one process), the workers apply it, then the view does;
 *   - stopping (SIGINT/SIGTERM): workers are told to stop with the grace period, are not replaced,
 *     and the primary exits 0 once they have all gone (a second signal kills them and exits 1);
 *   - supervision: a worker that exits unexpectedly is logged (warn, with code and signal) and
 *     replaced, at once unless workers are dying in a tight loop (respawn.ts). The running totals of
 *     its last answers stay in /metrics and the view's sums (retired.ts), so counters never fall.
 *
 * Per worker, unshared: passive health (each worker's own sessions mark backends down), connection
 * limits (`maxConnections` holds per worker), the replay budget, warm pools, slow-start ramps.
 *
 * Questions to workers are request/response over IPC with an id and a timeout; a worker that does
 * not answer (or dies meanwhile) is left out of that answer and logged. prom-client's own
 * `clusterMetrics()` is not used: it asks every worker, also those still starting, and one that dies
 * mid-scrape fails the whole scrape after 5 s; the same aggregation over our own request/response
 * skips it instead.
 *
 * Scheduling: SCHED_NONE, the kernel hands connections to whichever worker accepts first on the
 * shared socket; with SCHED_RR the primary accepts every connection and passes it to a worker over
 * IPC, which costs it a hop per connection (measurements in the report of issue 5). The operator can
 * still choose with NODE_CLUSTER_SCHED_POLICY=rr|none.
 *
 * Listening sockets (SCHED_NONE): the primary holds them, bound or passed by systemd, and sends them
 * to each worker (sockets.ts), so that SIGUSR2 can hand them to a successor primary as one process
 * does (lib/fleet/upgrade.ts); once the successor accepts, this primary stops as on SIGTERM.
 */
import cluster, { type Worker } from 'node:cluster'
import { availableParallelism } from 'node:os'
import type { Logger } from 'pino'
import { AggregatorRegistry, Counter, Gauge, Registry, type PrometheusContentType } from 'prom-client'
import { removeStaleSocket } from '../address.js'
import { pageParams } from '../admin/api.js'
import { checkMetrics } from '../admin/metrics.js'
import { processRegistry } from '../admin/process-metrics.js'
import { startAdmin, type AdminServer } from '../admin/server.js'
import { sayIfUnavailable } from '../native/data-plane.js'
import { Balancer, type ReloadResult } from '../balancer.js'
import { MAX_TIMER_MS, type Config } from '../config/schema.js'
import { validateConfig } from '../config/validate.js'
import { BatonError, ClusterError, ListenError } from '../errors.js'
import type { Inherited } from '../fleet/inherit.js'
import { Upgrader } from '../fleet/upgrade.js'
import { PrimaryChecks } from './health.js'
import { PrimarySockets } from './sockets.js'
import { isBatonMessage, workerConfig, type Ask, type FromWorker, type ToWorker } from './protocol.js'
import { RespawnThrottle } from './respawn.js'
import { monotonic, Retired, sumFigures, type LastReport, type MetricJson } from './retired.js'
import { stateOf } from './state.js'
import {
  applyFigures,
  mergePages,
  planPages,
  WorkersTable,
  type WorkerFigures,
  type WorkerSession,
} from './view.js'

/** `workers: auto` is one per core the process may use. */
export function workerCount(setting: Config['workers']): number {
  return setting === 'auto' ? availableParallelism() : (setting ?? 1)
}

export interface PrimaryOptions {
  workers: number
  logger: Logger
  /** Reads the configuration input again (command line and file) for a reload; absent without a file. */
  reread?: () => unknown
  /** Sockets passed by systemd or an upgrade, as bare handles (takeInheritedHandles). */
  inherited?: Inherited
  /** The command line, run again by an upgrade (SIGUSR2). */
  argv?: readonly string[]
}

/** Figures, sessions, metrics: a worker that takes longer is left out of the answer. */
const ASK_MS = 2000
const RELOAD_MS = 30_000
const START_MS = 60_000
/** After the grace period, how long workers get to exit before they are killed. */
const KILL_MARGIN_MS = 5000
/** How often the view is refreshed while the admin server runs (its history samples the view). */
const REFRESH_MS = 2000

interface Member {
  readonly worker: Worker
  /** Sent its configuration: from now on it is sent every state change. */
  inited: boolean
  /** Listening. */
  ready: boolean
  /** The configuration generation it runs. */
  generation: number
  /** Its latest answers; kept in `retired` when it exits. */
  last: LastReport
}

interface Pending {
  worker: number
  timer: NodeJS.Timeout
  resolve: (value: unknown) => void
  reject: (err: Error) => void
}

interface Gathered<T> {
  answers: { id: number; value: T }[]
  failures: { id: number; error: string }[]
}

/** Start the workers and, once every one listens, the admin server and the checks. */
export async function startPrimary(config: Config, options: PrimaryOptions): Promise<Primary> {
  const primary = new Primary(config, options)
  await primary.start()
  return primary
}

export class Primary {
  readonly log: Logger
  /** The configuration as a Balancer that binds nothing: the state the workers follow, and the admin API's view. */
  readonly view: Balancer
  private config: Config
  private generation = 0
  private readonly count: number
  private readonly reread: (() => unknown) | undefined
  private readonly members = new Map<number, Member>()
  private readonly pending = new Map<number, Pending>()
  private nextAsk = 1
  private readonly checks: PrimaryChecks
  private readonly throttle = new RespawnThrottle()
  private readonly registry = new Registry()
  private restarts = 0
  /** The running totals of the workers that have exited, kept in /metrics and the view (retired.ts). */
  private readonly retired = new Retired()
  private admin: AdminServer | undefined
  private phase: 'starting' | 'running' | 'stopping' = 'starting'
  private startup: { resolve(): void; reject(err: Error): void } | undefined
  private readonly respawns = new Set<NodeJS.Timeout>()
  private refresher: NodeJS.Timeout | undefined
  private exitWaiters: (() => void)[] = []
  private reloading: Promise<unknown> = Promise.resolve()
  /** The listening sockets, held here for the workers and a successor; undefined under SCHED_RR. */
  private sockets: PrimarySockets | undefined
  private readonly inherited: Inherited | undefined
  private readonly argv: readonly string[] | undefined
  private upgrader: Upgrader | undefined

  constructor(config: Config, options: PrimaryOptions) {
    this.config = config
    this.count = options.workers
    this.reread = options.reread
    this.inherited = options.inherited
    this.argv = options.argv
    this.log = options.logger
    this.view = new Balancer(config, { logger: this.log, bind: false, table: new WorkersTable() })
    this.checks = new PrimaryChecks(this.view, () => this.broadcastState())
    const primary = this
    new Gauge({
      name: 'baton_workers',
      help: 'Worker processes accepting connections now (--workers).',
      registers: [this.registry],
      collect() {
        this.set([...primary.members.values()].filter((m) => m.ready).length)
      },
    })
    new Counter({
      name: 'baton_worker_restarts_total',
      help: 'Workers that exited unexpectedly and were replaced.',
      registers: [this.registry],
      collect() {
        this.reset()
        this.inc(primary.restarts)
      },
    })
    // prom-client's aggregation omits the workers' start times; the service started with the primary.
    const started = Math.round(Date.now() / 1000 - process.uptime())
    new Gauge({
      name: 'process_start_time_seconds',
      help: 'Start time of the process since unix epoch in seconds (with --workers: the primary).',
      registers: [this.registry],
      collect() {
        this.set(started)
      },
    })
    checkMetrics(this.view, this.registry)
  }

  async start(): Promise<void> {
    if (process.env.NODE_CLUSTER_SCHED_POLICY === undefined) cluster.schedulingPolicy = cluster.SCHED_NONE
    cluster.on('message', (worker, msg) => this.onMessage(worker, msg))
    cluster.on('exit', (worker, code, signal) => this.onExit(worker, code, signal))
    const started = new Promise<void>((resolve, reject) => (this.startup = { resolve, reject }))
    const timer = setTimeout(
      () =>
        this.startup?.reject(
          new ClusterError('ERR_BATON_WORKERS', `workers did not start within ${START_MS / 1000} s`)
        ),
      START_MS
    )
    // Workers never remove a unix socket file (one could remove what another just bound): stale
    // ones are removed here, once, before any worker binds.
    for (const l of this.config.listeners) {
      const path = l.listen.path
      if (path !== undefined && (await removeStaleSocket(path)))
        this.log.info({ path }, 'removed a stale unix socket file (nothing accepted on it)')
    }
    try {
      if (cluster.schedulingPolicy === cluster.SCHED_NONE) {
        const sockets = new PrimarySockets(this.log)
        await sockets.open(this.view.frontends, this.inherited)
        this.sockets = sockets
      } else if ((this.inherited?.size ?? 0) > 0) {
        throw new ClusterError(
          'ERR_BATON_INHERIT',
          'listening sockets passed by systemd or an upgrade (LISTEN_FDS) need NODE_CLUSTER_SCHED_POLICY=none with --workers'
        )
      }
    } catch (err) {
      clearTimeout(timer)
      throw err
    }
    for (let i = 0; i < this.count; i++) this.fork()
    try {
      await started
    } catch (err) {
      await this.abort()
      throw err
    } finally {
      clearTimeout(timer)
    }
    this.phase = 'running'
    const a = this.config.admin
    if (a.listen !== undefined) {
      try {
        const handed = this.inherited?.take('admin', a.listen.host, a.listen.port)
        this.admin = await startAdmin(this.view, {
          ...(handed !== undefined ? { inherited: handed } : {}),
          host: a.listen.host,
          port: a.listen.port,
          ...(a.token !== undefined ? { token: a.token } : {}),
          ...(a.hosts !== undefined ? { hosts: a.hosts } : {}),
          log: this.log.child({ component: 'admin' }),
          ...(this.reread !== undefined ? { reload: () => this.reload() } : {}),
          ready: () => this.phase === 'running' && this.readyCount() > 0,
          cluster: {
            metrics: () => this.metrics(),
            refresh: (url) => this.refresh(url),
            changed: () => this.broadcastState(),
          },
        })
      } catch (err) {
        await this.abort()
        throw err
      }
      processRegistry() // the primary's event-loop and GC monitors, sampling before the first scrape
      this.refresher = setInterval(() => void this.refresh().catch(() => {}), REFRESH_MS)
      this.refresher.unref()
    }
    this.checks.start()
    void this.view.probeBackends()
    sayIfUnavailable(this.log, this.config.listeners) // once, for every worker
    this.log.info(
      {
        workers: this.count,
        dataPlanes: Object.fromEntries(this.view.frontends.map((l) => [l.name, l.plane])),
        pids: [...this.members.values()].map((m) => m.worker.process.pid),
        scheduling: cluster.schedulingPolicy === cluster.SCHED_RR ? 'rr' : 'none',
      },
      'workers started'
    )
    process.on('SIGINT', (signal) => this.stop(signal))
    process.on('SIGTERM', (signal) => this.stop(signal))
    for (const s of this.inherited?.closeRest() ?? [])
      this.log.warn(
        { fd: s.fd, name: s.name, address: `${s.host}:${s.port}` },
        'passed socket matches no listener: closed'
      )
    if (this.sockets !== undefined && this.argv !== undefined) {
      const sockets = this.sockets
      const upgrader = new Upgrader(
        this.log,
        this.argv,
        () => [
          ...sockets.entries().map((s) => ({ name: s.name, server: s.handle })),
          ...(this.admin !== undefined ? [{ name: 'admin', server: this.admin.server }] : []),
        ],
        (pid) => this.stop('upgrade', pid)
      )
      this.upgrader = upgrader
      process.on('SIGUSR2', () => {
        if (this.phase !== 'running') return this.log.warn('SIGUSR2: stopping already, no upgrade')
        upgrader.start()
      })
    } else {
      process.on('SIGUSR2', () =>
        this.log.warn(
          'SIGUSR2: with NODE_CLUSTER_SCHED_POLICY=rr node:cluster holds the listening sockets, there are none to hand over (README: "Upgrades")'
        )
      )
    }
    process.on('SIGHUP', () => {
      if (this.reread === undefined) return this.log.warn('SIGHUP: nothing to reload without --config')
      this.reload().catch(() => {}) // reload() logs why
    })
  }

  private fork(): void {
    if (this.phase === 'stopping') return
    const worker = cluster.fork()
    this.members.set(worker.id, {
      worker,
      inited: false,
      ready: false,
      generation: this.generation,
      last: {},
    })
  }

  private send(m: Member, msg: ToWorker): void {
    // A worker that is exiting cannot be written to; its 'exit' is handled on its own.
    if (m.worker.isConnected()) m.worker.send(msg, () => {})
  }

  private onMessage(worker: Worker, msg: unknown): void {
    if (!isBatonMessage<FromWorker>(msg)) return
    const m = this.members.get(worker.id)
    if (m === undefined) return
    switch (msg.type) {
      case 'baton:hello':
        if (this.phase === 'stopping') return this.send(m, { type: 'baton:stop', graceMs: 0 })
        m.inited = true
        m.generation = this.generation
        // Each listening socket first, one message per handle; IPC keeps the order, so the worker has
        // them all when `init` comes.
        for (const s of this.sockets?.entries() ?? [])
          if (m.worker.isConnected())
            m.worker.send(
              { type: 'baton:socket', name: s.name, inherited: s.inherited },
              s.handle as never,
              () => {}
            )
        this.send(m, {
          type: 'baton:init',
          config: workerConfig(this.config),
          state: stateOf(this.view),
          sockets: this.sockets?.names ?? [],
        })
        break
      case 'baton:ready':
        m.ready = true
        this.log.debug({ worker: worker.id, workerPid: worker.process.pid }, 'worker listening')
        if (m.generation !== this.generation) this.catchUp(m)
        else this.send(m, { type: 'baton:state', state: stateOf(this.view) })
        if (this.phase === 'starting' && this.readyCount() === this.count) this.startup?.resolve()
        break
      case 'baton:failed':
        if (this.phase === 'starting') {
          this.startup?.reject(new ListenError(undefined, msg.message))
        } else {
          this.log.error({ worker: worker.id, reason: msg.message }, 'worker could not start')
        }
        break
      case 'baton:reply': {
        const p = this.pending.get(msg.id)
        if (p === undefined) return
        this.pending.delete(msg.id)
        clearTimeout(p.timer)
        if (msg.ok) p.resolve(msg.value)
        else p.reject(new Error(msg.error))
        break
      }
    }
  }

  private onExit(worker: Worker, code: number | null, signal: string | null): void {
    const gone = this.members.get(worker.id)
    if (gone !== undefined) this.retired.add(gone.last)
    this.members.delete(worker.id)
    for (const [id, p] of this.pending) {
      if (p.worker !== worker.id) continue
      this.pending.delete(id)
      clearTimeout(p.timer)
      p.reject(new Error(`worker ${worker.id} exited`))
    }
    if (this.phase === 'stopping') {
      this.log.debug({ worker: worker.id, workerPid: worker.process.pid, code, signal }, 'worker exited')
      if (this.members.size === 0) for (const done of this.exitWaiters.splice(0)) done()
      return
    }
    if (this.phase === 'starting') {
      const how = signal !== null ? `signal ${signal}` : `code ${code}`
      this.startup?.reject(
        new ClusterError('ERR_BATON_WORKERS', `worker ${worker.id} exited during start-up (${how})`)
      )
      return
    }
    this.restarts++
    const delayMs = this.throttle.died()
    this.log.warn(
      { worker: worker.id, workerPid: worker.process.pid, code, signal },
      'worker exited unexpectedly, starting a replacement'
    )
    if (delayMs > 0) this.log.warn({ delayMs }, 'workers are exiting in a tight loop: the replacement waits')
    const timer = setTimeout(() => {
      this.respawns.delete(timer)
      this.fork()
    }, delayMs)
    this.respawns.add(timer)
  }

  private readyCount(): number {
    let n = 0
    for (const m of this.members.values()) if (m.ready) n++
    return n
  }

  /** A worker that started before a reload finished: give it the configuration it missed. */
  private catchUp(m: Member): void {
    const generation = this.generation
    this.ask(m, { op: 'reload', config: workerConfig(this.config) }, RELOAD_MS).then(
      () => {
        m.generation = generation
        this.send(m, { type: 'baton:state', state: stateOf(this.view) })
      },
      (err: Error) =>
        this.log.error(
          { worker: m.worker.id, reason: err.message },
          'worker could not apply the new configuration'
        )
    )
  }

  private ask(m: Member, ask: Ask, timeoutMs: number): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (!m.worker.isConnected()) return reject(new Error(`worker ${m.worker.id} is not connected`))
      const id = this.nextAsk++
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`no answer within ${timeoutMs} ms`))
      }, timeoutMs)
      this.pending.set(id, { worker: m.worker.id, timer, resolve, reject })
      m.worker.send({ type: 'baton:ask', id, ...ask }, (err: Error | null) => {
        if (err === null || !this.pending.has(id)) return
        this.pending.delete(id)
        clearTimeout(timer)
        reject(err)
      })
    })
  }

  /**
   * Ask every listening worker, in worker id order; those that fail or time out are listed apart.
   * `onAnswer` runs as each answer arrives (before a later 'exit' of that worker is handled).
   */
  private async gather<T>(
    ask: Ask,
    timeoutMs: number,
    onAnswer?: (m: Member, value: T) => void
  ): Promise<Gathered<T>> {
    const asked = [...this.members.values()].filter((m) => m.ready).sort((a, b) => a.worker.id - b.worker.id)
    const settled = await Promise.allSettled(
      asked.map((m) =>
        this.ask(m, ask, timeoutMs).then((value) => {
          onAnswer?.(m, value as T)
          return value
        })
      )
    )
    const out: Gathered<T> = { answers: [], failures: [] }
    settled.forEach((s, i) => {
      const id = asked[i]!.worker.id
      if (s.status === 'fulfilled') out.answers.push({ id, value: s.value as T })
      else out.failures.push({ id, error: (s.reason as Error).message })
    })
    if (ask.op !== 'reload') {
      for (const f of out.failures)
        this.log.warn({ worker: f.id, op: ask.op, reason: f.error }, 'worker did not answer')
    }
    return out
  }

  /** Bring the view up to date from the workers; for /api/sessions, gather the page asked for. */
  private async refresh(url?: URL): Promise<void> {
    const { answers } = await this.gather<WorkerFigures>(
      { op: 'snapshot' },
      ASK_MS,
      (m, figures) => (m.last.figures = figures)
    )
    applyFigures(this.view, [
      ...this.latest(
        answers,
        (m) => m.last.figures,
        (f) => sumFigures(undefined, f)
      ),
      ...this.retired.figures(),
    ])
    if (url?.pathname !== '/api/sessions') return
    let page: { offset: number; limit: number }
    try {
      page = pageParams(url.searchParams)
    } catch {
      return // sessionPage answers the 400 itself
    }
    const plan = planPages(
      answers.map((a) => ({ id: a.id, total: a.value.sessions })),
      page.offset,
      page.limit
    )
    const slices = await Promise.all(
      plan.map(async (p) => {
        const m = this.members.get(p.id)
        if (m === undefined) return []
        try {
          const r = (await this.ask(m, { op: 'sessions', offset: p.offset, limit: p.limit }, ASK_MS)) as {
            sessions: WorkerSession[]
          }
          return r.sessions
        } catch {
          return []
        }
      })
    )
    const total = answers.reduce((n, a) => n + a.value.sessions, 0)
    ;(this.view.table as WorkersTable).putPage(mergePages(total, page.offset, page.limit, slices))
  }

  /**
   * Each worker's last answer, to be summed: as it came if it came just now, else only its running
   * totals (`totals`: it did not answer in time, and its gauges would be stale). A worker that
   * answered and then exited is no longer a member: it is summed through `retired`, once.
   */
  private latest<T>(
    answers: readonly { id: number }[],
    last: (m: Member) => T | undefined,
    totals: (report: T) => T
  ): T[] {
    const now = new Set(answers.map((a) => a.id))
    const out: T[] = []
    for (const m of [...this.members.values()].sort((a, b) => a.worker.id - b.worker.id)) {
      const report = last(m)
      if (report !== undefined) out.push(now.has(m.worker.id) ? report : totals(report))
    }
    return out
  }

  /**
   * The workers' registries summed (prom-client's cluster aggregation) with the primary's process
   * metrics as one more member (so memory, CPU and descriptors are those of every process), and the
   * primary's own metrics (workers, restarts, start time, health checks).
   */
  private async metrics(): Promise<{ text: string; contentType: string }> {
    const { answers } = await this.gather<MetricJson[]>(
      { op: 'metrics' },
      ASK_MS,
      (m, metrics) => (m.last.metrics = metrics)
    )
    const own = (await processRegistry().getMetricsAsJSON()) as unknown as MetricJson[]
    const summed = AggregatorRegistry.aggregate<PrometheusContentType>([
      own,
      ...this.latest(answers, (m) => m.last.metrics, monotonic),
      ...this.retired.metrics(),
    ])
    const all = Registry.merge([summed, this.registry])
    return { text: await all.metrics(), contentType: all.contentType }
  }

  /** Send the backend state table to every worker that has its configuration. */
  private broadcastState(): void {
    const state = stateOf(this.view)
    for (const m of this.members.values()) if (m.inited) this.send(m, { type: 'baton:state', state })
  }

  /** SIGHUP and POST /api/reload; one at a time. */
  reload(): Promise<ReloadResult> {
    const next = this.reloading.then(() => this.applyReload())
    this.reloading = next.catch(() => {})
    return next
  }

  private async applyReload(): Promise<ReloadResult> {
    try {
      if (this.reread === undefined) throw new Error('nothing to reload without --config')
      const config = validateConfig(this.reread())
      if (workerCount(config.workers) !== this.count)
        this.log.warn(
          { workers: config.workers, running: this.count },
          'workers: a new count applies at the next restart'
        )
      const { answers, failures } = await this.gather<ReloadResult>(
        { op: 'reload', config: workerConfig(config) },
        RELOAD_MS
      )
      // Listeners are bound through the primary's shared handles: a bind fails in every worker alike.
      if (answers.length === 0 && failures.length > 0)
        throw new ClusterError('ERR_BATON_RELOAD', failures[0]!.error)
      for (const f of failures)
        this.log.error({ worker: f.id, reason: f.error }, 'worker could not apply the new configuration')
      const result = await this.view.reload(config)
      this.sockets?.prune(this.view.frontends)
      this.admin?.setToken(config.admin.token) // the token file and BATON_ADMIN_TOKEN, read again
      this.retired.prune(this.view)
      this.config = config
      this.generation++
      for (const a of answers) {
        const m = this.members.get(a.id)
        if (m !== undefined) m.generation = this.generation
      }
      this.checks.restart()
      this.broadcastState()
      return result
    } catch (err) {
      this.log.error(
        { reason: err instanceof BatonError ? err.message.split('\n') : String(err) },
        'reload refused, the running configuration stays'
      )
      throw err
    }
  }

  /**
   * SIGINT/SIGTERM, or a successor that accepts (`successorPid`): the workers stop accepting and
   * finish their sessions within the grace period; then exit 0.
   */
  private stop(signal: string, successorPid?: number): void {
    if (this.phase === 'stopping') {
      this.log.warn({ signal }, 'second signal, exiting now')
      for (const m of this.members.values()) m.worker.process.kill('SIGKILL')
      this.log.flush()
      process.exit(1)
    }
    this.phase = 'stopping'
    if (successorPid === undefined) this.upgrader?.abort()
    const graceMs = this.config.shutdownGrace
    this.log.info({ signal, graceMs, workers: this.members.size, successorPid }, 'stopping')
    for (const t of this.respawns) clearTimeout(t)
    this.respawns.clear()
    clearInterval(this.refresher)
    this.checks.stop()
    for (const m of this.members.values()) this.send(m, { type: 'baton:stop', graceMs })
    // The schema caps shutdownGrace at what a timer holds; the margin on top must not overflow it.
    const waitMs = Math.min(graceMs + KILL_MARGIN_MS, MAX_TIMER_MS)
    void Promise.all([this.admin?.close(), this.allExited(waitMs)]).then(() => {
      // Handed over, the sockets are the successor's: closing a unix one here would unlink its file
      // (libuv does, for the handle that bound it). Exiting closes the descriptors alone.
      if (successorPid === undefined) this.sockets?.close()
      this.log.info('stopped')
      this.log.flush()
      process.exit(0)
    })
  }

  /** Start failed: kill what was started, wait (bounded) for it to go. */
  private async abort(): Promise<void> {
    this.phase = 'stopping'
    for (const m of this.members.values()) m.worker.process.kill('SIGKILL')
    await this.allExited(KILL_MARGIN_MS)
    this.sockets?.close()
  }

  /** Resolves once every worker has exited; those still there after `ms` are killed. */
  private allExited(ms: number): Promise<void> {
    if (this.members.size === 0) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        const left = [...this.members.values()]
        this.log.warn({ workers: left.map((m) => m.worker.id) }, 'workers did not exit in time, killing them')
        for (const m of left) m.worker.process.kill('SIGKILL')
        // A killed process is gone at once; do not wait on its 'exit' forever all the same.
        setTimeout(resolve, KILL_MARGIN_MS).unref()
      }, ms)
      this.exitWaiters.push(() => {
        clearTimeout(timer)
        resolve()
      })
    })
  }
}
