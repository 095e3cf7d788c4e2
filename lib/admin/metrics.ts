/**
 * Prometheus metrics for the admin server, through prom-client with a registry of its own (never
 * the global one, so an embedding application's metrics and ours do not mix).
 *
 * Nothing is counted here: the data path already keeps plain counters on each Listener and Backend,
 * and every metric below copies them in its `collect()` callback, which prom-client runs at scrape
 * time. Counters are `reset()` and re-filled on each scrape, so a listener or backend that goes
 * away (a reload) drops out instead of lingering with its last value.
 *
 * Hand-off latency: the samples live in each listener's LatencyRing (the last 1024). The histogram
 * observes only the samples added since the previous scrape, found through the ring's running
 * `count`, so its `_count` and buckets are true cumulative counters as Prometheus expects. If more
 * than a ring's worth of hand-offs happen between two scrapes the oldest of them are not observed
 * (they are already gone from the ring); `baton_handoffs_total` still counts every one of them.
 *
 * With `--workers`, each worker builds this registry and the primary sums them with prom-client's
 * `AggregatorRegistry.aggregate` (lib/cluster/primary.ts). Counters, histograms and the gauges that
 * count things (sessions, pool) are summed. Per-backend state gauges are the same in every worker
 * except while a change travels or passive health differs between workers, and are combined so that
 * they say what all workers agree on: `backend_up` and `backend_admin_state` take the minimum (up,
 * or in a state, only when every worker says so), `backend_weight` the maximum, the time of the
 * last change of state the latest. Active health checks run only in the primary, so their metrics
 * (checkMetrics) are the primary's own there, and the workers' registries leave them out.
 *
 * The process's own metrics (prom-client's defaults and `baton_build_info`) are in
 * process-metrics.ts, one registry per process merged into each registry made here.
 *
 * Names follow Prometheus conventions: base units (seconds, bytes), the unit before `_total`
 * (`baton_client_received_bytes_total`), counters end in `_total`, timestamps in
 * `_timestamp_seconds`. The README lists every metric with its labels.
 */
import { Counter, Gauge, Histogram, Registry, type Aggregator } from 'prom-client'
import type { AdminState, Backend } from '../backend.js'
import type { Balancer } from '../balancer.js'
import type { LatencyRing, Listener, ListenerCounters } from '../listener.js'
import { uncreditedBytes } from '../table.js'
import { processRegistry } from './process-metrics.js'

const ADMIN_STATES: readonly AdminState[] = ['ready', 'drain', 'maint']

/**
 * Hand-offs take from tens of microseconds (a pooled connection on loopback: the median was about
 * 60 us when these were chosen) to a few seconds (a slow connect to a distant backend): 1-2.5-5 steps
 * from 10 us to 5 s, so the common case spreads over several buckets instead of all falling in one.
 */
export const HANDOFF_BUCKETS = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
  0.5, 1, 2.5, 5,
]

type ListenerLabel = 'listener'
type BackendLabel = 'listener' | 'backend'

/** Listener counters exposed as `baton_<name>_total{listener}`. */
const LISTENER_COUNTERS: readonly [name: string, help: string, key: keyof ListenerCounters][] = [
  ['sessions_total', 'Client connections accepted (including rejected ones).', 'accepted'],
  ['rejected_total', 'Clients closed at once because a connection limit was reached.', 'rejected'],
  ['no_backend_total', 'Clients closed because no backend could take them.', 'noBackend'],
  ['request_timeouts_total', 'Sessions closed because a request was not whole within requestTimeout.', 'requestTimeouts'],
  ['first_byte_timeouts_total', 'New clients closed for sending nothing within firstByteTimeout.', 'firstByteTimeouts'],
  ['half_closed_timeouts_total', 'Half-closed sessions closed after halfClosedTimeout idle.', 'halfClosedTimeouts'],
  [
    'rejected_per_source_total',
    'Clients refused because their address had maxConnectionsPerSource sessions.',
    'rejectedPerSource',
  ],
  [
    'local_errors_total',
    "Baton's own shortages (EMFILE, ENFILE, ENOBUFS, EADDRNOTAVAIL) and clients shed meanwhile; never a backend's fault.",
    'localErrors',
  ],
  ['connect_errors_total', 'Backend connects that failed.', 'connectErrors'],
  [
    'failovers_total',
    'Sessions moved to another server connection with their unanswered requests.',
    'failovers',
  ],
  ['replayed_requests_total', 'Requests re-sent to another backend on failover.', 'replayedRequests'],
  ['replayed_bytes_total', 'Bytes re-sent to another backend on failover.', 'replayedBytes'],
  ['verified_resumes_total', 'Responses cut part-way and completed from another backend.', 'verifiedResumes'],
  [
    'resume_mismatches_total',
    'Resumes abandoned because the new response differed from the part sent.',
    'resumeMismatches',
  ],
  [
    'response_timeouts_total',
    'Server connections that failed for want of a response in time.',
    'responseTimeouts',
  ],
  ['framing_errors_total', 'Sessions closed because a message could not be framed.', 'framingErrors'],
  [
    'migrations_total',
    'Sessions moved off a backend that went down or drains, at a clean boundary.',
    'migrations',
  ],
  [
    'plane_handoffs_total',
    'Framed sessions (http1, resp) the native plane handed to JavaScript: what it does not follow, a FIN or server error, a bound or a move.',
    'planeHandoffs',
  ],
  ['dns_lookups_total', 'DNS lookups of the listener\'s discover entries.', 'dnsLookups'],
  ['dns_failures_total', 'DNS lookups that failed; the last good answer was kept.', 'dnsFailures'],
]

/** Per-backend gauges, `baton_backend_<name>{listener,backend}`, and how workers' values combine. */
const BACKEND_GAUGES: readonly [name: string, help: string, read: (b: Backend) => number, Aggregator][] = [
  [
    'backend_up',
    'Backend health: 1 up, 0 down (passive cool-down or failing checks).',
    (b) => (b.isDown() || !b.checkedUp ? 0 : 1),
    'min',
  ],
  [
    'backend_sessions_active',
    'Sessions holding or connecting a server connection to the backend.',
    (b) => b.active,
    'sum',
  ],
  ['backend_pool_idle', 'Idle connections in the backend warm pool.', (b) => b.pool?.size ?? 0, 'sum'],
  ['backend_weight', 'Configured (or admin-set) weight of the backend.', (b) => b.weight, 'max'],
  [
    'backend_state_change_timestamp_seconds',
    'When the backend entered the state it is in (admin state, or up/down from checks or passive health), seconds since the epoch.',
    (b) => b.stateSince() / 1000,
    'max',
  ],
  [
    'backend_backup',
    'Backend role: 1 for a backup (used only while no primary is usable), 0 for a primary.',
    (b) => (b.backup ? 1 : 0),
    'max',
  ],
]

/** Per-backend counters, `baton_backend_<name>{listener,backend}`. */
const BACKEND_COUNTERS: readonly [name: string, help: string, read: (b: Backend) => number][] = [
  [
    'backend_sessions_total',
    'Sessions sent to the backend (successful connects).',
    (b) => b.counters.sessions,
  ],
  ['backend_connect_errors_total', 'Connects to the backend that failed.', (b) => b.counters.connectErrors],
  [
    'backend_server_failures_total',
    'Open server connections to the backend that failed.',
    (b) => b.counters.serverFailures,
  ],
  ['backend_ejections_total', 'Times the backend was put in cool-down.', (b) => b.counters.ejections],
]

/**
 * The samples added to `ring` after the first `seen` ever added, oldest first, given its running
 * `count`. Sample k (0-based, over the ring's life) sits at index k % length once the ring has
 * wrapped, and at index k before, which is the same formula; only the last `length` are still held.
 */
export function newSamples(ring: LatencyRing, seen: number): number[] {
  const values = ring.values()
  const from = Math.max(seen, ring.count - values.length)
  const out: number[] = []
  for (let k = from; k < ring.count; k++) out.push(values[k % values.length]!)
  return out
}

/** Per-backend byte counters: ended sessions' bytes plus live sessions' not yet credited. */
const BACKEND_BYTES: readonly [name: string, help: string, side: 'sent' | 'received'][] = [
  [
    'backend_sent_bytes_total',
    'Bytes read from clients while their session was on the backend, so sent on to it (replays not counted again).',
    'sent',
  ],
  [
    'backend_received_bytes_total',
    'Bytes written to clients while their session was on the backend, so received from it.',
    'received',
  ],
]

/** Live sessions' bytes per listener: the listener counters only include sessions that ended. */
function liveBytes(balancer: Balancer): Map<string, { from: number; to: number }> {
  const out = new Map<string, { from: number; to: number }>()
  for (const e of balancer.table.values()) {
    let sum = out.get(e.listener)
    if (sum === undefined) out.set(e.listener, (sum = { from: 0, to: 0 }))
    sum.from += e.bytesFromClient
    sum.to += e.bytesToClient
  }
  return out
}

export interface MetricsOptions {
  /** Merge in the process's own metrics (process-metrics.ts); default true. */
  process?: boolean
  /** Include the active health checks' metrics (checkMetrics); default true, false in a worker. */
  checks?: boolean
}

/** A registry whose metrics read `balancer` at scrape time. */
export function createMetrics(balancer: Balancer, options: MetricsOptions = {}): Registry {
  const registry = new Registry()
  const registers = [registry]
  const listeners = (): readonly Listener[] => balancer.frontends

  new Gauge<ListenerLabel>({
    name: 'baton_sessions_active',
    help: 'Sessions alive now.',
    labelNames: ['listener'],
    registers,
    aggregator: 'sum',
    collect() {
      this.reset()
      for (const l of listeners()) this.set({ listener: l.name }, l.active)
    },
  })

  new Gauge<ListenerLabel | 'plane'>({
    name: 'baton_data_plane',
    help: "The data plane of the listener's new sessions: 1 for the one in use, native (splice addon) or js.",
    labelNames: ['listener', 'plane'],
    registers,
    aggregator: 'max',
    collect() {
      this.reset()
      for (const l of listeners()) this.set({ listener: l.name, plane: l.plane }, 1)
    },
  })

  for (const [name, help, key] of LISTENER_COUNTERS) {
    new Counter<ListenerLabel>({
      name: `baton_${name}`,
      help,
      labelNames: ['listener'],
      registers,
      collect() {
        this.reset()
        for (const l of listeners()) this.inc({ listener: l.name }, l.counters[key])
      },
    })
  }

  for (const [name, help, side] of [
    ['baton_client_received_bytes_total', 'Bytes read from clients (live sessions included).', 'from'],
    ['baton_client_sent_bytes_total', 'Bytes written to clients (live sessions included).', 'to'],
  ] as const) {
    new Counter<ListenerLabel>({
      name,
      help,
      labelNames: ['listener'],
      registers,
      collect() {
        this.reset()
        const live = liveBytes(balancer)
        for (const l of listeners()) {
          const ended = side === 'from' ? l.counters.bytesFromClient : l.counters.bytesToClient
          this.inc({ listener: l.name }, ended + (live.get(l.name)?.[side] ?? 0))
        }
      },
    })
  }

  new Counter<'listener' | 'connection'>({
    name: 'baton_handoffs_total',
    help: 'Failover hand-offs, by whether the new server connection came from the warm pool.',
    labelNames: ['listener', 'connection'],
    registers,
    collect() {
      this.reset()
      for (const l of listeners()) {
        this.inc({ listener: l.name, connection: 'pooled' }, l.counters.handoffsPooled)
        this.inc({ listener: l.name, connection: 'new' }, l.counters.handoffsNew)
      }
    },
  })

  new Counter<'listener' | 'reason'>({
    name: 'baton_unrecoverable_total',
    help: 'Failures that could not be hidden from the client, by reason (the labels of UNRECOVERABLE in lib/errors.ts).',
    labelNames: ['listener', 'reason'],
    registers,
    collect() {
      this.reset()
      for (const l of listeners()) {
        for (const [reason, n] of Object.entries(l.unrecoverableBy)) this.inc({ listener: l.name, reason }, n)
      }
    },
  })

  new Gauge<ListenerLabel>({
    name: 'baton_queued_sessions',
    help: 'New clients waiting in the listener queue for a full backend (queue).',
    labelNames: ['listener'],
    registers,
    aggregator: 'sum',
    collect() {
      this.reset()
      for (const l of listeners()) this.set({ listener: l.name }, l.queued)
    },
  })

  new Counter<'listener' | 'reason'>({
    name: 'baton_refused_connections_total',
    help: 'Clients refused by an accept stage (access rules, limits, PROXY protocol, routing), by reason.',
    labelNames: ['listener', 'reason'],
    registers,
    collect() {
      this.reset()
      for (const l of listeners()) {
        for (const [reason, n] of l.refusals.counts) this.inc({ listener: l.name, reason }, n)
      }
    },
  })

  // Cumulative: never reset. Keyed by ring so a listener replaced on reload starts from zero.
  const seen = new WeakMap<LatencyRing, number>()
  new Histogram<'listener' | 'connection'>({
    name: 'baton_handoff_latency_seconds',
    help: 'Failover hand-off latency: from the failure to the first replayed byte reaching the client.',
    labelNames: ['listener', 'connection'],
    buckets: HANDOFF_BUCKETS,
    registers,
    collect() {
      for (const l of listeners()) {
        for (const connection of ['pooled', 'new'] as const) {
          const ring = l.latency[connection]
          const labels = { listener: l.name, connection }
          // zero() makes the series exist before the first hand-off, so rate() has a start point.
          if (!seen.has(ring)) this.zero(labels)
          for (const ms of newSamples(ring, seen.get(ring) ?? 0)) this.observe(labels, ms / 1000)
          seen.set(ring, ring.count)
        }
      }
    },
  })

  const eachBackend = (fn: (labels: Record<BackendLabel, string>, b: Backend) => void): void => {
    for (const l of listeners()) for (const b of l.backends) fn({ listener: l.name, backend: b.name }, b)
  }

  for (const [name, help, read, aggregator] of BACKEND_GAUGES) {
    new Gauge<BackendLabel>({
      name: `baton_${name}`,
      help,
      labelNames: ['listener', 'backend'],
      registers,
      aggregator,
      collect() {
        this.reset()
        eachBackend((labels, b) => this.set(labels, read(b)))
      },
    })
  }

  for (const [name, help, read] of BACKEND_COUNTERS) {
    new Counter<BackendLabel>({
      name: `baton_${name}`,
      help,
      labelNames: ['listener', 'backend'],
      registers,
      collect() {
        this.reset()
        eachBackend((labels, b) => this.inc(labels, read(b)))
      },
    })
  }

  for (const [name, help, side] of BACKEND_BYTES) {
    new Counter<BackendLabel>({
      name: `baton_${name}`,
      help,
      labelNames: ['listener', 'backend'],
      registers,
      collect() {
        this.reset()
        const live = uncreditedBytes(balancer.table.values())
        eachBackend((labels, b) => {
          const ended = side === 'sent' ? b.counters.bytesSent : b.counters.bytesReceived
          this.inc(labels, ended + (live.get(b)?.[side] ?? 0))
        })
      },
    })
  }

  new Gauge<BackendLabel | 'state'>({
    name: 'baton_backend_admin_state',
    help: 'Backend admin state: 1 for the current one of ready, drain, maint.',
    labelNames: ['listener', 'backend', 'state'],
    registers,
    aggregator: 'min',
    collect() {
      this.reset()
      eachBackend((labels, b) => {
        for (const state of ADMIN_STATES) this.set({ ...labels, state }, b.admin === state ? 1 : 0)
      })
    },
  })

  if (options.checks ?? true) checkMetrics(balancer, registry)
  return (options.process ?? true) ? Registry.merge([registry, processRegistry()]) : registry
}

/**
 * Active health checks per backend, for the listeners that run them: results counted by outcome,
 * and the last check's outcome and duration (as HAProxy's `check_status` and `check_duration`).
 * Registered in `registry` (a single process's, or the `--workers` primary's own, whose view runs
 * the checks).
 */
export function checkMetrics(balancer: Balancer, registry: Registry): void {
  const registers = [registry]
  const checked = (fn: (labels: Record<BackendLabel, string>, b: Backend) => void): void => {
    for (const l of balancer.frontends) {
      if (l.config.healthCheck.type === 'none') continue
      for (const b of l.backends) fn({ listener: l.name, backend: b.name }, b)
    }
  }
  new Counter<BackendLabel | 'result'>({
    name: 'baton_backend_checks_total',
    help: 'Active health checks of the backend, by result: passed or failed.',
    labelNames: ['listener', 'backend', 'result'],
    registers,
    collect() {
      this.reset()
      checked((labels, b) => {
        this.inc({ ...labels, result: 'passed' }, b.checks.passed)
        this.inc({ ...labels, result: 'failed' }, b.checks.failed)
      })
    },
  })
  new Gauge<BackendLabel>({
    name: 'baton_backend_check_success',
    help: 'Whether the last active health check of the backend passed (1) or failed (0); absent before the first.',
    labelNames: ['listener', 'backend'],
    registers,
    collect() {
      this.reset()
      checked((labels, b) => {
        if (b.checks.last !== undefined) this.set(labels, b.checks.last.ok ? 1 : 0)
      })
    },
  })
  new Gauge<BackendLabel>({
    name: 'baton_backend_check_duration_seconds',
    help: 'How long the last active health check of the backend took, connect included.',
    labelNames: ['listener', 'backend'],
    registers,
    collect() {
      this.reset()
      checked((labels, b) => {
        if (b.checks.last !== undefined) this.set(labels, b.checks.last.ms / 1000)
      })
    },
  })
}
