/**
 * The last minutes of each listener, for the status page's chart and `GET /api/history`: every
 * `intervalMs` (default 5 s) one sample per listener of its live sessions and its running totals of
 * accepted sessions and failovers, kept in a ring of `samples` entries (default 120: ten minutes).
 *
 * The sampler only reads counters the data path keeps anyway (`Listener.active` and
 * `Listener.counters`); the data path does nothing for it. Its timer is unref'd, so an admin server
 * left open does not keep the process alive for the sake of a chart.
 *
 * Totals are stored rather than per-interval counts so that a missed or late tick loses nothing:
 * the failovers between two samples are the difference of their totals, whatever the gap. Series
 * are keyed by listener name. A listener replaced on reload (same name, new address) counts from
 * zero again: when a total goes backwards the series starts afresh instead of showing a negative
 * step. (Not the listener object's identity: a view that rebuilds its listener objects while their
 * counts carry on must keep its series.) A listener removed on reload drops out.
 */
import { ConfigError } from '../errors.js'

export const HISTORY_INTERVAL_MS = 5000
export const HISTORY_SAMPLES = 120

/** What the sampler reads of a listener: a Listener, or a stand-in in tests. */
export interface SampledListener {
  readonly name: string
  readonly active: number
  readonly counters: { readonly accepted: number; readonly failovers: number }
  /** Where present (a Listener), each backend's running total of sessions is sampled too. */
  readonly backends?: readonly { readonly name: string; readonly counters: { readonly sessions: number } }[]
}

export interface HistorySource {
  readonly frontends: readonly SampledListener[]
}

export interface HistoryOptions {
  /** Time between samples, ms (default 5000, at least 10). */
  intervalMs?: number
  /** Samples kept per listener (default 120, 1..100000). */
  samples?: number
  /** The clock stamped on each sample (default Date.now); tests pass their own. */
  now?: () => number
  /** Told of a timer sample that threw, which must not become an uncaught exception. */
  onError?: (err: unknown) => void
}

export interface HistorySample {
  /** Epoch ms. */
  t: number
  /** Sessions alive at `t`. */
  active: number
  /** Sessions accepted since the listener started (rejected ones included, as `baton_sessions_total`). */
  accepted: number
  /** Failovers since the listener started. */
  failovers: number
  /** Sessions each backend has taken since the listener started, by backend name (the status page's rates). */
  backends?: Record<string, number>
}

export interface ListenerHistory {
  listener: string
  /** Oldest first. */
  samples: HistorySample[]
}

/** The body of `GET /api/history`. */
export interface HistoryJson {
  intervalMs: number
  /** Samples kept per listener at most. */
  capacity: number
  listeners: ListenerHistory[]
}

/** A fixed-size ring: push overwrites the oldest once full; `values()` is oldest first. */
class Ring<T> {
  private readonly items: T[] = []
  private next = 0

  constructor(readonly capacity: number) {}

  push(item: T): void {
    if (this.items.length < this.capacity) this.items.push(item)
    else this.items[this.next] = item
    this.next = (this.next + 1) % this.capacity
  }

  /** The newest item. */
  last(): T | undefined {
    return this.items.length === 0 ? undefined : this.items[(this.next + this.capacity - 1) % this.capacity]
  }

  values(): T[] {
    if (this.items.length < this.capacity) return this.items.slice()
    return [...this.items.slice(this.next), ...this.items.slice(0, this.next)]
  }
}

export class History {
  readonly intervalMs: number
  readonly capacity: number
  private readonly now: () => number
  private readonly onError: (err: unknown) => void
  private readonly series = new Map<string, Ring<HistorySample>>()
  private timer: NodeJS.Timeout | undefined

  /** Throws BatonError `ERR_BATON_ADMIN` on a bad interval or size. */
  constructor(
    private readonly source: HistorySource,
    options: HistoryOptions = {}
  ) {
    const {
      intervalMs = HISTORY_INTERVAL_MS,
      samples = HISTORY_SAMPLES,
      now = Date.now,
      onError = () => {},
    } = options
    if (!Number.isInteger(intervalMs) || intervalMs < 10)
      throw new ConfigError(
        [`history intervalMs must be an integer of at least 10, got ${intervalMs}`],
        'ERR_BATON_ADMIN'
      )
    if (!Number.isInteger(samples) || samples < 1 || samples > 100_000)
      throw new ConfigError(
        [`history samples must be an integer from 1 to 100000, got ${samples}`],
        'ERR_BATON_ADMIN'
      )
    this.intervalMs = intervalMs
    this.capacity = samples
    this.now = now
    this.onError = onError
  }

  /** Take one sample of every listener now (the timer calls this; tests may too). */
  sample(): void {
    const t = this.now()
    const seen = new Set<string>()
    for (const l of this.source.frontends) {
      seen.add(l.name)
      const { accepted, failovers } = l.counters
      let ring = this.series.get(l.name)
      const last = ring?.last()
      if (
        ring === undefined ||
        (last !== undefined && (accepted < last.accepted || failovers < last.failovers))
      ) {
        ring = new Ring(this.capacity)
        this.series.set(l.name, ring)
      }
      const sample: HistorySample = { t, active: l.active, accepted, failovers }
      if (l.backends !== undefined)
        sample.backends = Object.fromEntries(l.backends.map((b) => [b.name, b.counters.sessions]))
      ring.push(sample)
    }
    for (const name of this.series.keys()) if (!seen.has(name)) this.series.delete(name)
  }

  /** Sample now, then every `intervalMs` until `stop()`. Starting twice is a no-op. */
  start(): void {
    if (this.timer !== undefined) return
    this.sample()
    this.timer = setInterval(() => {
      try {
        this.sample()
      } catch (err) {
        this.onError(err)
      }
    }, this.intervalMs)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** The samples of one listener, oldest first (empty until it has been sampled). */
  of(listener: string): HistorySample[] {
    return this.series.get(listener)?.values() ?? []
  }

  /** Every listener's samples, in the order the balancer lists its listeners. */
  toJSON(): HistoryJson {
    return {
      intervalMs: this.intervalMs,
      capacity: this.capacity,
      listeners: this.source.frontends.map((l) => ({ listener: l.name, samples: this.of(l.name) })),
    }
  }
}

/**
 * Failovers in each interval, from the running totals: entry i is what happened between sample
 * i - 1 and sample i (0 for the first sample, which has nothing before it).
 */
export function failoversPerInterval(samples: readonly HistorySample[]): number[] {
  return samples.map((s, i) => (i === 0 ? 0 : Math.max(0, s.failovers - samples[i - 1]!.failovers)))
}

/**
 * Sessions per second that `backend` took over the last `windowMs` of samples (the newest sample and
 * the oldest one within the window), or undefined with fewer than two such samples. A total that
 * fell (a reload renamed or replaced the backend) gives undefined rather than a negative rate.
 */
export function sessionRate(
  samples: readonly HistorySample[],
  backend: string,
  windowMs = 60_000
): number | undefined {
  const last = samples[samples.length - 1]
  const now = last?.backends?.[backend]
  if (last === undefined || now === undefined) return undefined
  const first = samples.find((s) => last.t - s.t <= windowMs && s.backends?.[backend] !== undefined)
  if (first === undefined || first === last || last.t === first.t) return undefined
  const n = now - first.backends![backend]!
  return n < 0 ? undefined : (n * 1000) / (last.t - first.t)
}
