/**
 * The `--workers` primary's picture of its workers. The admin server, the status page and the API
 * read a Balancer synchronously (lib/admin/), so the primary hands them a Balancer that serves no
 * traffic (`bind: false`, the view) and, before each read, writes into it what its workers report:
 * per listener and backend the sums of their counters and live sessions, the worst of their passive
 * health. The view's own state (admin state, weight, health from checks) is the primary's and is
 * what the workers follow (state.ts); only the figures below are copied in.
 *
 *   worker: figuresOf(balancer) ──ask/reply──► primary: applyFigures(view, [figures…])
 *
 * Sessions are not copied: a page of them is gathered in two steps (each worker's count from the
 * figures, then from each worker only the slice that falls in the page: planPages) and handed to
 * `sessionPage` through the view's table (WorkersTable).
 */
import { zeroBackendCounters, type BackendCounters } from '../backend.js'
import type { Balancer } from '../balancer.js'
import { zeroCounters, type Listener, type ListenerCounters } from '../listener.js'
import { ConnectionTable, uncreditedBytes, type SessionSnapshot } from '../table.js'
import type { SessionPage } from '../admin/api.js'

export interface BackendFigures {
  name: string
  active: number
  consecutiveFailures: number
  /** Epoch ms until which this worker's passive health skips the backend; 0 when it does not. */
  coolingUntil: number
  pool: number
  counters: BackendCounters
}

export interface ListenerFigures {
  name: string
  address: { host: string; port: number }
  active: number
  /** The listener's counters with the bytes of live sessions added. */
  counters: ListenerCounters
  backends: BackendFigures[]
}

/** What one worker reports for the primary's view. */
export interface WorkerFigures {
  /** Live sessions (the worker's table size). */
  sessions: number
  listeners: ListenerFigures[]
}

/** A worker's figures, read at once (no timers, nothing kept). */
export function figuresOf(balancer: Balancer): WorkerFigures {
  const live = new Map<string, { from: number; to: number }>()
  for (const e of balancer.table.values()) {
    let sum = live.get(e.listener)
    if (sum === undefined) live.set(e.listener, (sum = { from: 0, to: 0 }))
    sum.from += e.bytesFromClient
    sum.to += e.bytesToClient
  }
  const unpaid = uncreditedBytes(balancer.table.values())
  return {
    sessions: balancer.table.size,
    listeners: balancer.frontends.map((l) => {
      const counters = { ...l.counters }
      counters.bytesFromClient += live.get(l.name)?.from ?? 0
      counters.bytesToClient += live.get(l.name)?.to ?? 0
      return {
        name: l.name,
        address: l.address(),
        active: l.active,
        counters,
        backends: l.backends.map((b) => ({
          name: b.name,
          active: b.active,
          consecutiveFailures: b.consecutiveFailures,
          coolingUntil: b.coolingUntil,
          pool: b.pool?.size ?? 0,
          counters: withLive(b.counters, unpaid.get(b)),
        })),
      }
    }),
  }
}

/** A backend's counters with the bytes of its live sessions added. */
function withLive(c: BackendCounters, live: { sent: number; received: number } | undefined): BackendCounters {
  const out = { ...c }
  out.bytesSent += live?.sent ?? 0
  out.bytesReceived += live?.received ?? 0
  return out
}

/**
 * The view's connection table: counts the workers' sessions (for `table.size`, which the status
 * page and `counters()` read) and holds the session pages gathered for requests in flight.
 */
export class WorkersTable extends ConnectionTable {
  count = 0
  private readonly pages = new Map<string, SessionPage>()

  override get size(): number {
    return this.count
  }

  putPage(page: SessionPage): void {
    this.pages.set(`${page.offset}/${page.limit}`, page)
  }

  /** The page gathered for these parameters, once (a later request gathers its own). */
  takePage(offset: number, limit: number): SessionPage | undefined {
    const key = `${offset}/${limit}`
    const page = this.pages.get(key)
    this.pages.delete(key)
    return page
  }
}

/**
 * Write the workers' figures into the view: sums of counters, live sessions and pool sizes; the
 * worst passive health (most consecutive failures, latest cool-down), so a backend any worker is
 * skipping shows as down. Listeners and backends are matched by name; the view's admin state,
 * weight and checked health are left alone.
 */
export function applyFigures(view: Balancer, workers: readonly WorkerFigures[]): void {
  if (view.table instanceof WorkersTable) view.table.count = workers.reduce((n, w) => n + w.sessions, 0)
  for (const l of view.frontends) {
    const reports = workers.flatMap((w) => w.listeners.filter((x) => x.name === l.name))
    if (reports.length === 0) continue
    const sum = zeroCounters()
    for (const r of reports)
      for (const k of Object.keys(sum) as (keyof ListenerCounters)[]) sum[k] += r.counters[k]
    Object.assign(l.counters, sum)
    l.active = reports.reduce((n, r) => n + r.active, 0)
    showAddress(l, reports[0]!.address)
    for (const b of l.backends) {
      const bs = reports.flatMap((r) => r.backends.filter((x) => x.name === b.name))
      if (bs.length === 0) continue
      b.active = bs.reduce((n, x) => n + x.active, 0)
      const counters: BackendCounters = zeroBackendCounters()
      for (const x of bs)
        for (const k of Object.keys(counters) as (keyof BackendCounters)[]) counters[k] += x.counters[k]
      Object.assign(b.counters, counters)
      b.consecutiveFailures = Math.max(...bs.map((x) => x.consecutiveFailures))
      b.coolingUntil = Math.max(...bs.map((x) => x.coolingUntil))
      // The view's pool never starts (it does not listen); it only shows the workers' idle total.
      if (b.pool !== undefined) {
        const idle = bs.reduce((n, x) => n + x.pool, 0)
        Object.defineProperty(b.pool, 'size', { value: idle, configurable: true, writable: true })
      }
    }
  }
}

/**
 * The view does not listen, so its Listener.address() falls back to the configured address, which
 * for port 0 is not the one the workers bound. Pages and snapshots call `address()` on the listener
 * itself: an own property on the view's instance answers with the workers' address.
 */
function showAddress(l: Listener, address: { host: string; port: number }): void {
  const shown = { ...address }
  Object.defineProperty(l, 'address', { value: () => shown, configurable: true, writable: true })
}

/**
 * Which slice of a page each worker holds, sessions being listed worker after worker (in `workers`
 * order, each in its own id order): offsets within that worker's table.
 */
export function planPages(
  workers: readonly { id: number; total: number }[],
  offset: number,
  limit: number
): { id: number; offset: number; limit: number }[] {
  const plan: { id: number; offset: number; limit: number }[] = []
  let start = 0
  for (const w of workers) {
    const from = Math.max(0, offset - start)
    const to = Math.min(w.total, offset + limit - start)
    if (to > from) plan.push({ id: w.id, offset: from, limit: to - from })
    start += w.total
  }
  return plan
}

/** A session of one worker, as the primary's API lists it. */
export type WorkerSession = SessionSnapshot & { worker: number; pid: number }

/** One page from the slices the workers sent back (in plan order), at most `limit` long. */
export function mergePages(
  total: number,
  offset: number,
  limit: number,
  slices: readonly WorkerSession[][]
): SessionPage {
  return { total, offset, limit, sessions: slices.flat().slice(0, limit) }
}
