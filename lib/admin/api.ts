/**
 * The admin API's operations on a balancer, apart from HTTP: finding a backend by name, paging
 * sessions, changing admin state and weight. Each failure is an HttpError carrying its status, so
 * the server turns it into `{ error }` with that status and nothing else.
 */
import type { AdminState, Backend } from '../backend.js'
import type { Balancer } from '../balancer.js'
import { WorkersTable } from '../cluster/view.js'
import type { Listener } from '../listener.js'
import { snapshotOf, uncreditedBytes, type SessionSnapshot } from '../table.js'

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {}
  ) {
    super(message)
    this.name = 'HttpError'
  }
}

export const ADMIN_STATES: readonly AdminState[] = ['ready', 'drain', 'maint']
export const MAX_PAGE = 1000
export const WEIGHT_MIN = 1
export const WEIGHT_MAX = 1000 // as the config schema

export interface BackendJson {
  listener: string
  name: string
  address: string
  /** `backup`: used only while no primary is usable. */
  role: 'primary' | 'backup'
  weight: number
  health: 'up' | 'down'
  admin: AdminState
  active: number
  maxConnections: number
  pool: number
  /** Successful connects ever. */
  sessions: number
  failures: { consecutive: number; connectErrors: number; serverFailures: number; ejections: number }
  /** Client bytes of its sessions, live ones included (backend.ts `bytesSent` says what they count). */
  bytes: { sent: number; received: number }
  /** Epoch ms since which the backend has been in its current state (admin state and health). */
  stateSince: number
  /** Active health checks: counts and the last result; absent where the listener runs none. */
  check?: {
    passed: number
    failed: number
    last?: { ok: boolean; reason?: string; ms: number; at: number }
  }
}

/** `live`: bytes of live sessions not yet credited to the backend (table.ts `uncreditedBytes`). */
export function backendJson(
  listener: Listener,
  backend: Backend,
  live?: { sent: number; received: number }
): BackendJson {
  const s = backend.snapshot()
  const checked = listener.config.healthCheck.type !== 'none'
  const last = backend.checks.last
  return {
    listener: listener.name,
    name: s.name,
    address: s.address,
    role: s.role,
    weight: s.weight,
    health: s.health,
    admin: s.admin,
    active: s.active,
    maxConnections: s.maxConnections,
    pool: s.pool,
    sessions: s.counters.sessions,
    failures: {
      consecutive: s.consecutiveFailures,
      connectErrors: s.counters.connectErrors,
      serverFailures: s.counters.serverFailures,
      ejections: s.counters.ejections,
    },
    bytes: {
      sent: s.counters.bytesSent + (live?.sent ?? 0),
      received: s.counters.bytesReceived + (live?.received ?? 0),
    },
    stateSince: backend.stateSince(),
    ...(checked && {
      check: {
        passed: backend.checks.passed,
        failed: backend.checks.failed,
        ...(last !== undefined && {
          last: {
            ok: last.ok,
            ...(last.reason !== undefined && { reason: last.reason }),
            ms: last.ms,
            at: last.at,
          },
        }),
      },
    }),
  }
}

export function allBackends(balancer: Balancer): BackendJson[] {
  const live = uncreditedBytes(balancer.table.values())
  return balancer.frontends.flatMap((l) => l.backends.map((b) => backendJson(l, b, live.get(b))))
}

/** Columns of `GET /api/backends.csv`, in order. */
export const CSV_COLUMNS = [
  'listener',
  'backend',
  'address',
  'health',
  'admin',
  'state_since',
  'weight',
  'active',
  'sessions',
  'bytes_sent',
  'bytes_received',
  'connect_errors',
  'server_failures',
  'ejections',
  'consecutive_failures',
  'checks_passed',
  'checks_failed',
  'last_check',
  'last_check_ms',
] as const

/** A CSV field: quoted when it holds a comma, a quote or a line break (RFC 4180). */
function csvField(v: string | number | undefined): string {
  const s = v === undefined ? '' : String(v)
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s
}

/** Every backend as CSV with a header line (RFC 4180, CRLF line ends), for spreadsheets and scripts. */
export function backendsCsv(balancer: Balancer): string {
  const rows = allBackends(balancer).map((b) => [
    b.listener,
    b.name,
    b.address,
    b.health,
    b.admin,
    new Date(b.stateSince).toISOString(),
    b.weight,
    b.active,
    b.sessions,
    b.bytes.sent,
    b.bytes.received,
    b.failures.connectErrors,
    b.failures.serverFailures,
    b.failures.ejections,
    b.failures.consecutive,
    b.check?.passed,
    b.check?.failed,
    b.check?.last === undefined
      ? undefined
      : b.check.last.ok
        ? 'passed'
        : `failed: ${b.check.last.reason ?? ''}`,
    b.check?.last === undefined ? undefined : Math.round(b.check.last.ms * 1000) / 1000,
  ])
  return [CSV_COLUMNS, ...rows].map((r) => `${r.map(csvField).join(',')}\r\n`).join('')
}

/**
 * `listener/backend`, or a backend name alone when only one listener has it. The qualified form is
 * tried first, so a backend whose own name holds a `/` can still be reached through its listener.
 */
export function findBackend(balancer: Balancer, name: string): { listener: Listener; backend: Backend } {
  const qualified: { listener: Listener; backend: Backend }[] = []
  const bare: { listener: Listener; backend: Backend }[] = []
  for (const listener of balancer.frontends) {
    for (const backend of listener.backends) {
      if (`${listener.name}/${backend.name}` === name) qualified.push({ listener, backend })
      if (backend.name === name) bare.push({ listener, backend })
    }
  }
  const found = qualified.length > 0 ? qualified : bare
  if (found.length === 0) throw new HttpError(404, `no backend "${name}"`)
  if (found.length > 1) {
    const which = found.map((f) => `${f.listener.name}/${f.backend.name}`).join(', ')
    throw new HttpError(409, `backend name "${name}" is ambiguous, use one of: ${which}`)
  }
  return found[0]!
}

/**
 * Set the admin state. `maint` also empties the warm pool (no connections held to a server being
 * worked on); `ready` refills it, unless the listener has stopped accepting (shutting down).
 */
export function setAdmin(listener: Listener, backend: Backend, state: AdminState): AdminState {
  const was = backend.admin
  backend.admin = state
  if (state === 'maint') backend.pool?.stop()
  else if (state === 'ready' && listener.listening) backend.pool?.start()
  return was
}

/** The weight from a `{ "weight": N }` body, N an integer from 1 to 1000. */
export function parseWeight(body: unknown): number {
  const w = typeof body === 'object' && body !== null ? (body as { weight?: unknown }).weight : undefined
  if (typeof w !== 'number' || !Number.isInteger(w) || w < WEIGHT_MIN || w > WEIGHT_MAX)
    throw new HttpError(400, `weight: expected an integer from ${WEIGHT_MIN} to ${WEIGHT_MAX}`)
  return w
}

function intParam(params: URLSearchParams, name: string, fallback: number, min: number, max: number): number {
  const raw = params.get(name)
  if (raw === null || raw === '') return fallback
  const n = /^\d+$/.test(raw) ? Number(raw) : NaN
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw new HttpError(400, `${name}: expected an integer from ${min} to ${max}`)
  return n
}

export interface SessionPage {
  total: number
  offset: number
  limit: number
  /** With `--workers`, each also carries `worker` (the cluster worker id) and that worker's `pid`. */
  sessions: SessionSnapshot[]
}

/** `offset` and `limit` of a session page request (400 when out of range). */
export function pageParams(params: URLSearchParams): { offset: number; limit: number } {
  return {
    offset: intParam(params, 'offset', 0, 0, Number.MAX_SAFE_INTEGER),
    limit: intParam(params, 'limit', 100, 1, MAX_PAGE),
  }
}

/**
 * One page of live sessions in id order; only the page's entries are snapshotted. On a `--workers`
 * primary, the page its workers were asked for just before (WorkersTable) is served instead.
 */
export function sessionPage(balancer: Balancer, params: URLSearchParams): SessionPage {
  const { offset, limit } = pageParams(params)
  if (balancer.table instanceof WorkersTable) {
    return (
      balancer.table.takePage(offset, limit) ?? { total: balancer.table.size, offset, limit, sessions: [] }
    )
  }
  const total = balancer.table.size
  const sessions: SessionSnapshot[] = []
  const now = Date.now()
  let i = 0
  for (const e of balancer.table.values()) {
    if (i++ < offset) continue
    if (sessions.length === limit) break
    sessions.push(snapshotOf(e, now))
  }
  return { total, offset, limit, sessions }
}
