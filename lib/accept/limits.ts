/**
 * Access rules and limits on who may open sessions, as accept stages. Every one decides at once
 * (no promise, no timer), on the real client address where a PROXY stage ran before it.
 *
 * - `allow` / `deny` (nginx stream's `allow`/`deny`, HAProxy `tcp-request connection reject if
 *   !{ src ... }`): a client in `deny` is refused; with `allow` set, so is one not in it.
 * - `rateLimit.accept` (HAProxy `rate-limit sessions`): new clients per second on the listener,
 *   a token bucket of `acceptBurst` (default: the rate).
 * - `rateLimit.perSource` (HAProxy's `sc_conn_rate` in a stick table): new sessions per second
 *   from one address, a bucket each of `perSourceBurst`; idle buckets (full again) are forgotten.
 * - `maxConnectionsPerSource` (nginx `limit_conn`): live sessions from one address.
 */
import type { BlockList } from 'node:net'
import { inList } from './cidr.js'
import type { AcceptContext, AcceptStage } from './types.js'

/** Reasons, as counted in `baton_refused_connections_total{reason}`. */
export const PER_SOURCE_LIMIT = 'per-source-limit'
export const PER_SOURCE_RATE = 'per-source-rate'
export const ACCEPT_RATE = 'accept-rate'
export const DENY_LIST = 'deny-list'
export const NOT_ALLOWED = 'not-allowed'

/**
 * A token bucket: `rate` tokens a second up to `burst`; a session takes one. Pure (the time is
 * passed in), for tests.
 */
export class TokenBucket {
  tokens: number
  at: number
  constructor(
    readonly rate: number,
    readonly burst: number,
    now: number
  ) {
    this.tokens = burst
    this.at = now
  }

  take(now: number): boolean {
    this.refill(now)
    if (this.tokens < 1) return false
    this.tokens -= 1
    return true
  }

  /** Whether the bucket is full again at `now` (it can be forgotten). */
  full(now: number): boolean {
    this.refill(now)
    return this.tokens >= this.burst
  }

  private refill(now: number): void {
    if (now > this.at) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) * this.rate) / 1000)
      this.at = now
    }
  }
}

export function accessStage(allow: BlockList | undefined, deny: BlockList | undefined): AcceptStage {
  return {
    name: 'access',
    run(ctx: AcceptContext) {
      if (deny !== undefined && inList(deny, ctx.clientAddress)) return DENY_LIST
      if (allow !== undefined && !inList(allow, ctx.clientAddress)) return NOT_ALLOWED
      return undefined
    },
  }
}

/** The listener's accept rate. Its bucket lives in the accept state: a reload keeps it. */
export function acceptRateStage(rate: number, burst: number, state: Record<string, unknown>): AcceptStage {
  let bucket = state.acceptRate as TokenBucket | undefined
  if (bucket === undefined || bucket.rate !== rate || bucket.burst !== burst)
    state.acceptRate = bucket = new TokenBucket(rate, burst, Date.now())
  const b = bucket
  return { name: 'accept-rate', run: () => (b.take(Date.now()) ? undefined : ACCEPT_RATE) }
}

/** How often full buckets are swept out of the per-source map. */
const PRUNE_MS = 10_000

/** New sessions per second from one address. */
export function perSourceRateStage(rate: number, burst: number, state: Record<string, unknown>): AcceptStage {
  const key = `perSourceRate:${rate}:${burst}`
  let buckets = state[key] as Map<string, TokenBucket> | undefined
  if (buckets === undefined) state[key] = buckets = new Map<string, TokenBucket>()
  const map = buckets
  let pruned = Date.now()
  return {
    name: 'per-source-rate',
    run(ctx: AcceptContext) {
      const now = Date.now()
      if (now - pruned >= PRUNE_MS) {
        pruned = now
        for (const [address, b] of map) if (b.full(now)) map.delete(address)
      }
      let b = map.get(ctx.clientAddress)
      if (b === undefined) map.set(ctx.clientAddress, (b = new TokenBucket(rate, burst, now)))
      return b.take(now) ? undefined : PER_SOURCE_RATE
    },
  }
}

/**
 * `maxConnectionsPerSource`: most live sessions from one client address (the real one, after a
 * PROXY header). The counts live in the listener's accept state, so a reload keeps them.
 */
export function perSourceStage(max: number, state: Record<string, unknown>): AcceptStage {
  let counts = state.perSource as Map<string, number> | undefined
  if (counts === undefined) state.perSource = counts = new Map<string, number>()
  const map = counts
  return {
    name: 'per-source',
    run(ctx: AcceptContext) {
      const n = map.get(ctx.clientAddress) ?? 0
      if (n >= max) return PER_SOURCE_LIMIT
      map.set(ctx.clientAddress, n + 1)
      return undefined
    },
    closed(ctx: AcceptContext) {
      const n = (map.get(ctx.clientAddress) ?? 1) - 1
      if (n <= 0) map.delete(ctx.clientAddress)
      else map.set(ctx.clientAddress, n)
    },
  }
}
