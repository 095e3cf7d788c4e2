/**
 * Active health checks in the `--workers` primary: one HealthChecker per backend of the view, as a
 * listening Listener runs them in a single process (its checks start only once it listens, and the
 * view never does). A flip sets the view backend's `checkedUp`, is logged once with the same words
 * as in a single process, and `onFlip` then tells the workers.
 */
import type { Backend } from '../backend.js'
import type { Balancer } from '../balancer.js'
import { checkerFor, type HealthChecker } from '../health/checker.js'
import { usableCount } from '../health/unusable.js'
import type { Listener } from '../listener.js'

export class PrimaryChecks {
  private checkers: HealthChecker[] = []

  constructor(
    private readonly view: Balancer,
    private readonly onFlip: () => void
  ) {}

  start(): void {
    for (const l of this.view.frontends) {
      const hc = l.config.healthCheck
      for (const b of l.backends) {
        const checker = checkerFor(b, hc, (up, reason) => this.flipped(l, b, up, reason))
        if (checker === undefined) break
        this.checkers.push(checker)
        checker.start()
      }
    }
  }

  stop(): void {
    for (const c of this.checkers.splice(0)) c.stop()
  }

  /** After a reload: checkers for the backends the view has now, with the health each already had. */
  restart(): void {
    this.stop()
    this.start()
  }

  private flipped(l: Listener, b: Backend, up: boolean, reason: string | undefined): void {
    b.checkedUp = up
    if (up) {
      b.cameUp()
      l.log.info(
        { backend: b.name, via: 'health check', up: usableCount(l.backends), of: l.backends.length },
        'backend is up again'
      )
    } else {
      l.log.warn(
        { backend: b.name, reason, up: usableCount(l.backends), of: l.backends.length },
        'health check: backend is down'
      )
    }
    this.onFlip()
  }
}
