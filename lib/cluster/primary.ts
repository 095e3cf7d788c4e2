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
 *     and the primary exits 0 once they have all gone (a second signal kills them and exits 1); the
 *     signals are handled as in one process (lib/fleet/signals.ts);
 *   - supervision (supervisor.ts): a worker that exits unexpectedly is logged (warn, with code and
 *     signal) and replaced, at once unless workers are dying in a tight loop (respawn.ts). The running
 *     totals of its last answers stay in /metrics and the view's sums (retired.ts), so counters never
 *     fall.
 *
 * Per worker, unshared: passive health (each worker's own sessions mark backends down), connection
 * limits (`maxConnections` holds per worker), the replay budget, warm pools, slow-start ramps.
 *
 * Questions to workers are request/response over IPC with an id and a timeout (ipc.ts); a worker
 * that does not answer (or dies meanwhile) is left out of that answer and logged. prom-client's own
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
import { ClusterError, ListenError } from '../errors.js'
import type { Inherited } from '../fleet/inherit.js'
import { ProcessSignals, sayIfRefused } from '../fleet/signals.js'
import { PrimaryChecks } from './health.js'
import { PrimarySockets } from './sockets.js'
import { isBatonMessage, workerConfig, type Ask, type FromWorker, type ToWorker } from './protocol.js'
import { Asker, type Gathered } from './ipc.js'
import { monotonic, Retired, sumFigures, type LastReport, type MetricJson } from './retired.js'
import { stateOf } from './state.js'
import { KILL_MARGIN_MS, Supervisor } from './supervisor.js'
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
  private readonly workers: Supervisor<Member>
  private readonly asker = new Asker()
  private readonly checks: PrimaryChecks
  private readonly registry = new Registry()
  /** The running totals of the workers that have exited, kept in /metrics and the view (retired.ts). */
  private readonly retired = new Retired()
  private admin: AdminServer | undefined
  private startup: { resolve(): void; reject(err: Error): void } | undefined
  private refresher: NodeJS.Timeout | undefined
  private reloading: Promise<unknown> = Promise.resolve()
  /** The listening sockets, held here for the workers and a successor; undefined under SCHED_RR. */
  private sockets: PrimarySockets | undefined
  private readonly inherited: Inherited | undefined
  private readonly argv: readonly string[] | undefined

  constructor(config: Config, options: PrimaryOptions) {
    this.config = config
    this.count = options.workers
    this.reread = options.reread
    this.inherited = options.inherited
    this.argv = options.argv
    this.log = options.logger
    this.view = new Balancer(config, { logger: this.log, bind: false, table: new WorkersTable() })
    this.checks = new PrimaryChecks(this.view, () => this.broadcastState())
    this.workers = new Supervisor<Member>(this.log, {
      make: (worker) => ({ worker, inited: false, ready: false, generation: this.generation, last: {} }),
      exited: (worker, gone) => {
        if (gone !== undefined) this.retired.add(gone.last)
        this.asker.workerGone(worker.id)
      },
      failedStart: (worker, how) =>
        this.startup?.reject(
          new ClusterError('ERR_BATON_WORKERS', `worker ${worker.id} exited during start-up (${how})`)
        ),
    })
    const workers = this.workers
    new Gauge({
      name: 'baton_workers',
      help: 'Worker processes accepting connections now (--workers).',
      registers: [this.registry],
      collect() {
        this.set(workers.readyCount())
      },
    })
    new Counter({
      name: 'baton_worker_restarts_total',
      help: 'Workers that exited unexpectedly and were replaced.',
      registers: [this.registry],
      collect() {
        this.reset()
        this.inc(workers.restarts)
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
    this.workers.start(this.count)
    try {
      await started
    } catch (err) {
      await this.abort()
      throw err
    } finally {
      clearTimeout(timer)
    }
    this.workers.phase = 'running'
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
          ready: () => this.workers.phase === 'running' && this.workers.readyCount() > 0,
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
        pids: [...this.workers.members.values()].map((m) => m.worker.process.pid),
        scheduling: cluster.schedulingPolicy === cluster.SCHED_RR ? 'rr' : 'none',
      },
      'workers started'
    )
    this.inherited?.closeRest(this.log)
    const sockets = this.sockets
    new ProcessSignals({
      log: this.log,
      drain: (signal, successorPid) => this.stop(signal, successorPid),
      kill: () => this.workers.killAll(),
      ...(this.reread !== undefined ? { reload: () => this.reload() } : {}),
      upgrade:
        sockets !== undefined && this.argv !== undefined
          ? {
              argv: this.argv,
              sockets: () => [
                ...sockets.entries().map((s) => ({ name: s.name, server: s.handle })),
                ...(this.admin !== undefined ? [{ name: 'admin', server: this.admin.server }] : []),
              ],
            }
          : {
              unavailable:
                'SIGUSR2: with NODE_CLUSTER_SCHED_POLICY=rr node:cluster holds the listening sockets, there are none to hand over (README: "Upgrades")',
            },
    }).install()
  }

  private send(m: Member, msg: ToWorker): void {
    // A worker that is exiting cannot be written to; its 'exit' is handled on its own.
    if (m.worker.isConnected()) m.worker.send(msg, () => {})
  }

  private onMessage(worker: Worker, msg: unknown): void {
    if (!isBatonMessage<FromWorker>(msg)) return
    const m = this.workers.members.get(worker.id)
    if (m === undefined) return
    switch (msg.type) {
      case 'baton:hello':
        if (this.workers.phase === 'stopping') return this.send(m, { type: 'baton:stop', graceMs: 0 })
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
        if (this.workers.phase === 'starting' && this.workers.readyCount() === this.count)
          this.startup?.resolve()
        break
      case 'baton:failed':
        if (this.workers.phase === 'starting') {
          this.startup?.reject(new ListenError(undefined, msg.message))
        } else {
          this.log.error({ worker: worker.id, reason: msg.message }, 'worker could not start')
        }
        break
      case 'baton:reply':
        this.asker.settle(msg)
        break
    }
  }

  /** A worker that started before a reload finished: give it the configuration it missed. */
  private catchUp(m: Member): void {
    const generation = this.generation
    this.asker.ask(m.worker, { op: 'reload', config: workerConfig(this.config) }, RELOAD_MS).then(
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

  /** Ask every listening worker, in worker id order; those that fail or time out are listed apart. */
  private async gather<T>(
    ask: Ask,
    timeoutMs: number,
    onAnswer?: (m: Member, value: T) => void
  ): Promise<Gathered<T>> {
    const out = await this.asker.askAll(this.workers.listening(), ask, timeoutMs, onAnswer)
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
        const m = this.workers.members.get(p.id)
        if (m === undefined) return []
        try {
          const r = (await this.asker.ask(
            m.worker,
            { op: 'sessions', offset: p.offset, limit: p.limit },
            ASK_MS
          )) as {
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
    for (const m of [...this.workers.members.values()].sort((a, b) => a.worker.id - b.worker.id)) {
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
    for (const m of this.workers.members.values()) if (m.inited) this.send(m, { type: 'baton:state', state })
  }

  /** SIGHUP and POST /api/reload; one at a time. */
  reload(): Promise<ReloadResult> {
    const next = this.reloading.then(() => this.applyReload())
    this.reloading = next.catch(() => {})
    return next
  }

  private applyReload(): Promise<ReloadResult> {
    return sayIfRefused(this.log, async () => {
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
        const m = this.workers.members.get(a.id)
        if (m !== undefined) m.generation = this.generation
      }
      this.checks.restart()
      this.broadcastState()
      return result
    })
  }

  /**
   * SIGINT/SIGTERM, or a successor that accepts (`successorPid`), through ProcessSignals: the workers
   * stop accepting and finish their sessions within the grace period; then exit 0.
   */
  private stop(signal: string, successorPid?: number): void {
    this.workers.stopping()
    const graceMs = this.config.shutdownGrace
    this.log.info({ signal, graceMs, workers: this.workers.members.size, successorPid }, 'stopping')
    clearInterval(this.refresher)
    this.checks.stop()
    for (const m of this.workers.members.values()) this.send(m, { type: 'baton:stop', graceMs })
    // The schema caps shutdownGrace at what a timer holds; the margin on top must not overflow it.
    const waitMs = Math.min(graceMs + KILL_MARGIN_MS, MAX_TIMER_MS)
    void Promise.all([this.admin?.close(), this.workers.allExited(waitMs)]).then(() => {
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
    this.workers.stopping()
    this.workers.killAll()
    await this.workers.allExited(KILL_MARGIN_MS)
    this.sockets?.close()
  }
}
