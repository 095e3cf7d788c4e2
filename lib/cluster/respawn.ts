/**
 * How soon a dead worker is replaced. At once, unless workers are dying in a tight loop (a crash at
 * start, a bad host): then no more than `limit` replacements start in any `windowMs`, and the next
 * waits until the oldest death of the window has left it. The wait is therefore never longer than
 * the window, and a single crash now and then is always replaced at once.
 */
export interface RespawnLimits {
  /** Replacements allowed per window before they are held back; default 5. */
  limit: number
  /** Default 10 s. */
  windowMs: number
}

export const RESPAWN_DEFAULTS: RespawnLimits = { limit: 5, windowMs: 10_000 }

export class RespawnThrottle {
  private readonly deaths: number[] = []
  private readonly limits: RespawnLimits

  constructor(limits: Partial<RespawnLimits> = {}) {
    this.limits = { ...RESPAWN_DEFAULTS, ...limits }
    if (!(Number.isInteger(this.limits.limit) && this.limits.limit >= 1))
      throw new RangeError(`respawn limit must be an integer >= 1, got ${this.limits.limit}`)
  }

  /** A worker died at `now`: milliseconds to wait before starting its replacement (0: at once). */
  died(now = Date.now()): number {
    const { limit, windowMs } = this.limits
    while (this.deaths.length > 0 && this.deaths[0]! <= now - windowMs) this.deaths.shift()
    this.deaths.push(now)
    if (this.deaths.length <= limit) return 0
    // The replacement may start once only `limit` deaths (this one included) remain in the window.
    return this.deaths[this.deaths.length - limit - 1]! + windowMs - now
  }
}
