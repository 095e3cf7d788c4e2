/**
 * A backend of one listener: its address and weight, how many sessions use it, and its passive
 * health — a backend whose connects fail `failures` times in a row is skipped for `cooldown`
 * (nginx's `max_fails`/`fail_timeout`, without the active checks that a later issue adds).
 *
 * Health and admin state are kept apart (DESIGN.md): `coolingUntil` is health; admin state comes later.
 */
import { formatAddress } from './address.js'
import type { Candidate } from './balancing/types.js'
import type { BackendConfig } from './config/schema.js'
import type { WarmPool } from './pool/warm-pool.js'

export type AdminState = 'ready' | 'drain' | 'maint'

export interface BackendCounters {
  /** Sessions ever sent here (each connect that succeeded). */
  sessions: number
  connectErrors: number
  /** Open server connections that failed: error, reset, EOF mid-request, response timeout. */
  serverFailures: number
  /** Times this backend was put in cool-down. */
  ejections: number
  /**
   * Bytes of the sessions this backend served, counted on the client side as HAProxy's per-server
   * `bin`/`bout`: read from clients (so sent on to this backend) and written to clients (so received
   * from it). A session that fails over is split at the switch; replayed bytes are not counted again.
   * Sessions still open are added at read time (lib/table.ts `creditBackend`, the admin metrics).
   */
  bytesSent: number
  bytesReceived: number
}

/** A backend's counters, all 0. */
export function zeroBackendCounters(): BackendCounters {
  return { sessions: 0, connectErrors: 0, serverFailures: 0, ejections: 0, bytesSent: 0, bytesReceived: 0 }
}

/** The last active health check of a backend and the running counts (lib/health/checker.ts fills it). */
export interface CheckRecord {
  /** Checks that passed and failed since the checker started for this backend. */
  passed: number
  failed: number
  /** The last check: passed or not, why (for a failure), how long it took, when it ended (epoch ms). */
  last: { ok: boolean; reason: string | undefined; ms: number; at: number } | undefined
}

export interface BackendSnapshot {
  name: string
  address: string
  /** `backup`: used only while no primary backend is usable (HAProxy `backup`). */
  role: 'primary' | 'backup'
  weight: number
  active: number
  maxConnections: number
  /** `down` while active checks fail or passive marking has it cooling down. */
  health: 'up' | 'down'
  admin: AdminState
  consecutiveFailures: number
  /** Idle connections in the warm pool. */
  pool: number
  counters: BackendCounters
}

export interface PassiveHealth {
  readonly failures: number
  readonly cooldown: number
  /** Longest cool-down, however often the backend was ejected lately. Default: `cooldown` × 30. */
  readonly maxCooldown?: number
}

/** What changed on a backend, for the listener to act on (migrate sessions, rebuild a table). */
export type BackendChange = 'admin' | 'weight'

export class Backend implements Candidate {
  readonly name: string
  /** `''` for a unix-domain backend. */
  readonly host: string
  /** `0` for a unix-domain backend. */
  readonly port: number
  /** A unix-domain backend's socket path (connect with `{ path }`); undefined for TCP. */
  readonly path: string | undefined
  /** `address` printed once: `host:port`, `[v6]:port` or `unix:/path`. */
  readonly address: string
  /** Used only while no primary backend is usable (config `backup`; a reload may change it). */
  backup: boolean
  /** Configured weight (the API and reloads change it); `weight` is what balancing reads. */
  baseWeight: number
  maxConnections: number
  /** Slow start: after coming back up, the effective weight ramps from 5% to full over this long. */
  slowStart = 0
  /** Epoch ms when the backend last came back up, while it is still ramping; 0 otherwise. */
  private upSince = 0
  /** Sessions holding (or connecting) a server connection to this backend right now. */
  active = 0
  consecutiveFailures = 0
  /** Epoch ms until which passive health keeps this backend out; 0 when healthy. */
  coolingUntil = 0
  readonly counters: BackendCounters = zeroBackendCounters()
  /** Active health checks run on this backend (here or, with `--workers`, in the primary's view). */
  readonly checks: CheckRecord = { passed: 0, failed: 0, last: undefined }
  /**
   * Epoch ms of the last change of the state the status page shows (admin state, or health from
   * checks or passive marking); read through `stateSince()`, which also sees a cool-down that ended.
   */
  private changedAt = Date.now()
  /** Admin state (see `admin`). */
  private adminState: AdminState = 'ready'
  /** Ejections that still count towards a longer cool-down; one is forgiven per healthy `cooldown`. */
  private streak = 0
  /** When the last cool-down ended (or is due to). */
  private cooledAt = 0
  /** Told when the admin state or the configured weight changes (the listener sets it). */
  onChange: ((backend: Backend, what: BackendChange) => void) | undefined = undefined
  /** Health from active checks (`checkedUp`); true until a checker says otherwise. */
  private checkedUpState = true
  /** Established idle connections kept ready (`pool.idle` > 0). */
  pool: WarmPool | undefined = undefined
  private passive: PassiveHealth

  /** The backend group it belongs to (`group`; TLS routing picks within one). */
  readonly group: string

  constructor(config: BackendConfig, passive: PassiveHealth) {
    this.group = config.group ?? 'default'
    // The schema gives either path, or host and port.
    this.path = config.path
    this.host = config.host ?? ''
    this.port = config.port ?? 0
    this.address = formatAddress(this)
    this.name = config.name ?? this.address
    this.backup = config.backup ?? false
    this.baseWeight = config.weight
    this.maxConnections = config.maxConnections
    this.passive = passive
  }

  /** Effective weight: the configured one, ramped after coming back up when `slowStart` is set. */
  get weight(): number {
    if (this.upSince === 0) return this.baseWeight
    const elapsed = Date.now() - this.upSince
    if (elapsed >= this.slowStart) {
      this.upSince = 0
      return this.baseWeight
    }
    return this.baseWeight * Math.max(0.05, elapsed / this.slowStart)
  }

  set weight(weight: number) {
    if (weight === this.baseWeight) return
    this.baseWeight = weight
    this.onChange?.(this, 'weight')
  }

  /** Admin state, kept apart from health: `drain` takes no new sessions, `maint` none at all. */
  get admin(): AdminState {
    return this.adminState
  }

  set admin(state: AdminState) {
    if (state === this.adminState) return
    this.adminState = state
    this.changedAt = Date.now()
    this.onChange?.(this, 'admin')
  }

  /** The backend came back up (health check, end of cool-down): start the slow-start ramp. */
  cameUp(now = Date.now()): void {
    if (this.slowStart > 0) this.upSince = now
  }

  /** Health from active checks; setting it to another value counts as a change of state. */
  get checkedUp(): boolean {
    return this.checkedUpState
  }

  set checkedUp(up: boolean) {
    if (up === this.checkedUpState) return
    this.checkedUpState = up
    this.changedAt = Date.now()
  }

  /**
   * Since when (epoch ms) the backend has been in the state the status page shows. A passive
   * cool-down changes it at both ends: the ejection (recordFailure) and its end, which happens by
   * the clock alone (`coolingUntil` passing) or by a success that cuts it short (recordSuccess).
   */
  stateSince(now = Date.now()): number {
    const ended = this.coolingUntil !== 0 && this.coolingUntil <= now ? this.coolingUntil : 0
    return Math.max(this.changedAt, ended)
  }

  setPassive(passive: PassiveHealth): void {
    this.passive = passive
  }

  isDown(now = Date.now()): boolean {
    return this.coolingUntil > now
  }

  isFull(): boolean {
    return this.maxConnections > 0 && this.active >= this.maxConnections
  }

  usable(): boolean {
    return (
      this.admin === 'ready' &&
      this.checkedUp &&
      !this.isFull() &&
      !(this.coolingUntil !== 0 && this.isDown())
    )
  }

  /** A connect succeeded. Returns true when this ends a cool-down (the backend came back). */
  recordSuccess(): boolean {
    this.counters.sessions++
    this.consecutiveFailures = 0
    if (this.coolingUntil === 0) return false
    // The cool-down ended when it ran out, or now if this success cuts it short.
    this.changedAt = Math.max(this.changedAt, Math.min(this.coolingUntil, Date.now()))
    this.coolingUntil = 0
    return true
  }

  /**
   * A connect failed, or an open connection failed. Returns the cool-down in ms when this failure
   * starts one (log it once, on the flip), else 0. `mayEject` false (too many backends out
   * already) counts the failure without ejecting.
   */
  recordFailure(kind: 'connect' | 'server' = 'connect', now = Date.now(), mayEject = true): number {
    if (kind === 'connect') this.counters.connectErrors++
    else this.counters.serverFailures++
    this.consecutiveFailures++
    if (this.consecutiveFailures < this.passive.failures || this.isDown(now) || !mayEject) return 0
    const base = this.passive.cooldown
    if (this.streak > 0 && base > 0) {
      // Healthy since the last cool-down ended: forgive one ejection per `cooldown` of it.
      this.streak = Math.max(0, this.streak - Math.floor((now - this.cooledAt) / base))
    }
    this.streak++
    const cooldown = Math.min(base * this.streak, this.passive.maxCooldown ?? base * 30)
    this.coolingUntil = this.cooledAt = now + cooldown
    this.changedAt = now
    this.counters.ejections++
    return cooldown
  }

  snapshot(): BackendSnapshot {
    return {
      name: this.name,
      address: this.address,
      role: this.backup ? 'backup' : 'primary',
      weight: this.weight,
      active: this.active,
      maxConnections: this.maxConnections,
      health: this.isDown() || !this.checkedUp ? 'down' : 'up',
      admin: this.admin,
      consecutiveFailures: this.consecutiveFailures,
      pool: this.pool?.size ?? 0,
      counters: { ...this.counters },
    }
  }
}
