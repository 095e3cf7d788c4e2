/**
 * What a dead worker leaves in the `--workers` primary's sums. Counters are running totals, and a
 * worker that replaces a dead one starts again from 0: summing only the living, the primary's
 * `baton_sessions_total` fell when a worker was killed (Prometheus takes a fall for a counter reset,
 * and rate() over it is wrong), and so did the totals of the API and the status page's chart.
 *
 * So the primary keeps each worker's last report (its latest /metrics answer and its latest figures
 * for the view) and, when the worker exits, adds the running totals of it to the sums here, which
 * are then added to every later answer as one more worker:
 *
 *   live workers' reports ─┐
 *                          ├─► AggregatorRegistry.aggregate / applyFigures
 *   Retired (dead ones) ───┘
 *
 *   - metrics: counters and histograms (buckets, `_sum`, `_count`) summed series by series; gauges
 *     (live sessions, pool sizes, health, weight) describe the living and are not kept;
 *   - figures: listener and backend counters; live sessions, pools and passive health are not kept.
 *
 * A SIGKILLed worker cannot report at its death: what it counted after the primary last asked (a
 * scrape, the view's refresh every 2 s, a GET on the API) is lost. The sums never fall, which is what
 * Prometheus and the chart need. A reload that removes a listener or a backend drops its kept
 * series, as the workers' own registries drop it.
 */
import { zeroBackendCounters, type BackendCounters } from '../backend.js'
import { zeroCounters, type ListenerCounters } from '../listener.js'
import type { ListenerFigures, WorkerFigures } from './view.js'

/** One metric of a registry's `getMetricsAsJSON()`, as it crosses the IPC channel. */
export interface MetricJson {
  name: string
  help: string
  /** `counter`, `gauge`, `histogram` or `summary` (prom-client's MetricType enum is strings at run time). */
  type: string
  aggregator?: string
  values: MetricJsonValue[]
}

export interface MetricJsonValue {
  value: number
  labels: Record<string, string | number>
  /** A histogram's `_bucket`, `_sum` or `_count`. */
  metricName?: string
}

/** The running totals of a registry: counters and histograms that the primary sums. */
export function monotonic(metrics: readonly MetricJson[]): MetricJson[] {
  return metrics.filter(
    (m) => (m.type === 'counter' || m.type === 'histogram') && (m.aggregator ?? 'sum') === 'sum'
  )
}

function seriesKey(v: MetricJsonValue): string {
  const labels = Object.keys(v.labels)
    .sort()
    .map((k) => `${k}=${String(v.labels[k])}`)
  return `${v.metricName ?? ''}{${labels.join(',')}}`
}

/** `a` + `b`, series by series; a metric or series only one of them has is taken as it is. */
export function sumMetrics(a: readonly MetricJson[], b: readonly MetricJson[]): MetricJson[] {
  const out = new Map<string, { metric: MetricJson; series: Map<string, MetricJsonValue> }>()
  for (const m of [...a, ...b]) {
    let entry = out.get(m.name)
    if (entry === undefined) {
      entry = { metric: { ...m, values: [] }, series: new Map() }
      out.set(m.name, entry)
    }
    for (const v of m.values) {
      const key = seriesKey(v)
      const had = entry.series.get(key)
      if (had !== undefined) had.value += v.value
      else entry.series.set(key, { ...v, labels: { ...v.labels } })
    }
  }
  return [...out.values()].map(({ metric, series }) => ({ ...metric, values: [...series.values()] }))
}

/** `a` + the counters of `b`: live sessions, pools and passive health are left at 0. */
export function sumFigures(a: WorkerFigures | undefined, b: WorkerFigures): WorkerFigures {
  const listeners = new Map<string, ListenerFigures>()
  for (const l of [...(a?.listeners ?? []), ...b.listeners]) {
    let sum = listeners.get(l.name)
    if (sum === undefined) {
      sum = { name: l.name, address: l.address, active: 0, counters: zeroCounters(), backends: [] }
      listeners.set(l.name, sum)
    }
    for (const k of Object.keys(sum.counters) as (keyof ListenerCounters)[]) sum.counters[k] += l.counters[k]
    for (const x of l.backends) {
      let bs = sum.backends.find((y) => y.name === x.name)
      if (bs === undefined) {
        bs = {
          name: x.name,
          active: 0,
          consecutiveFailures: 0,
          coolingUntil: 0,
          pool: 0,
          counters: zeroBackendCounters(),
        }
        sum.backends.push(bs)
      }
      for (const k of Object.keys(bs.counters) as (keyof BackendCounters)[]) bs.counters[k] += x.counters[k]
    }
  }
  return { sessions: 0, listeners: [...listeners.values()] }
}

/** A worker's last report to the primary, either part absent until it has answered once. */
export interface LastReport {
  metrics?: MetricJson[]
  figures?: WorkerFigures
}

/** The running totals of every worker that has exited. */
export class Retired {
  private kept: MetricJson[] = []
  private keptFigures: WorkerFigures | undefined

  /** A worker exited: keep the running totals of its last report. */
  add(last: LastReport): void {
    if (last.metrics !== undefined) this.kept = sumMetrics(this.kept, monotonic(last.metrics))
    if (last.figures !== undefined) this.keptFigures = sumFigures(this.keptFigures, last.figures)
  }

  /** For AggregatorRegistry.aggregate: one more worker's metrics, or none. */
  metrics(): MetricJson[][] {
    return this.kept.length > 0 ? [this.kept] : []
  }

  /** For applyFigures: one more worker's figures, or none. */
  figures(): WorkerFigures[] {
    return this.keptFigures !== undefined ? [this.keptFigures] : []
  }

  /** After a reload: forget the series of listeners and backends that `view` no longer has. */
  prune(view: NamedListeners): void {
    const backends = new Map(
      view.frontends.map((l) => [l.name, new Set(l.backends.map((b) => b.name))] as const)
    )
    const keep = (labels: Record<string, string | number>): boolean => {
      if (labels.listener === undefined) return true
      const names = backends.get(String(labels.listener))
      return names !== undefined && (labels.backend === undefined || names.has(String(labels.backend)))
    }
    this.kept = this.kept
      .map((m) => ({ ...m, values: m.values.filter((v) => keep(v.labels)) }))
      .filter((m) => m.values.length > 0)
    if (this.keptFigures === undefined) return
    this.keptFigures.listeners = this.keptFigures.listeners.filter((l) => backends.has(l.name))
    for (const l of this.keptFigures.listeners) {
      const names = backends.get(l.name)!
      l.backends = l.backends.filter((b) => names.has(b.name))
    }
  }
}

/** What prune() reads of a Balancer (the primary's view after the reload). */
export interface NamedListeners {
  readonly frontends: readonly {
    readonly name: string
    readonly backends: readonly { readonly name: string }[]
  }[]
}
