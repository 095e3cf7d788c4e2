/**
 * The health state of one target, fed one check result at a time (HAProxy's `rise`/`fall`,
 * Pingora's `HealthStatus`): a down target needs `rise` successes in a row to go up, an up one
 * `fall` failures in a row to go down. A contrary result resets the run. `observe` returns the new
 * state only on a flip, so callers log and act on flips alone.
 */
export class HealthState {
  private isUp: boolean
  /** Consecutive results that argue against the current state. */
  private run = 0

  constructor(
    readonly rise: number,
    readonly fall: number,
    initiallyUp = true
  ) {
    if (!Number.isInteger(rise) || rise < 1) throw new RangeError(`rise must be an integer >= 1, got ${rise}`)
    if (!Number.isInteger(fall) || fall < 1) throw new RangeError(`fall must be an integer >= 1, got ${fall}`)
    this.isUp = initiallyUp
  }

  get up(): boolean {
    return this.isUp
  }

  observe(ok: boolean): 'up' | 'down' | undefined {
    if (ok === this.isUp) {
      this.run = 0
      return undefined
    }
    this.run++
    if (this.run < (this.isUp ? this.fall : this.rise)) return undefined
    this.run = 0
    this.isUp = ok
    return ok ? 'up' : 'down'
  }
}
