/**
 * Refused clients, counted per reason (`baton_refused_connections_total{listener,reason}`) and
 * logged at most once a second per reason, with how many refusals the line stands for: a listener
 * under a flood must not log a line per connection.
 */
import type { Logger } from 'pino'

export class Refusals {
  /** Refusals per reason since start (never reset: Prometheus counters). */
  readonly counts = new Map<string, number>()
  private readonly lastLog = new Map<string, number>()
  private readonly unlogged = new Map<string, number>()

  constructor(private readonly log: Logger) {}

  get total(): number {
    let n = 0
    for (const v of this.counts.values()) n += v
    return n
  }

  add(reason: string, client: string): void {
    this.counts.set(reason, (this.counts.get(reason) ?? 0) + 1)
    const pending = (this.unlogged.get(reason) ?? 0) + 1
    const now = Date.now()
    if (now - (this.lastLog.get(reason) ?? 0) < 1000) {
      this.unlogged.set(reason, pending)
      return
    }
    this.lastLog.set(reason, now)
    this.unlogged.set(reason, 0)
    this.log.warn({ reason, client, refused: pending }, 'client refused at accept')
  }
}
