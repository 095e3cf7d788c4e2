/**
 * Active health checks in the `--workers` primary: one HealthChecker per backend of the view, as a
 * listening Listener runs them in a single process (its checks start only once it listens, and the
 * view never does). A flip sets the view backend's `checkedUp`, is logged once with the same words
 * as in a single process, and `onFlip` then tells the workers.
 *
 * The CheckSpec built here from `healthCheck` mirrors the private one in Listener.startChecks; the
 * two should become one function in lib/health/ (not ours to edit).
 */
import type { Backend } from '../backend.js'
import type { Balancer } from '../balancer.js'
import type { ListenerConfig } from '../config/schema.js'
import { HealthChecker } from '../health/checker.js'
import type { CheckSpec } from '../health/checks.js'
import type { Listener } from '../listener.js'

export function checkSpecOf(hc: ListenerConfig['healthCheck']): CheckSpec | undefined {
  switch (hc.type) {
    case 'none':
      return undefined
    case 'http':
      return { type: 'http', path: hc.path, expectStatus: hc.expectStatus }
    case 'send-expect':
      return {
        type: 'send-expect',
        ...(hc.send !== undefined ? { send: hc.send } : {}),
        ...(hc.sendHex !== undefined ? { sendHex: hc.sendHex } : {}),
        expect: hc.expect ?? '',
        expectRegex: hc.expectRegex,
      }
    default:
      return { type: hc.type }
  }
}

export class PrimaryChecks {
  private checkers: HealthChecker[] = []

  constructor(
    private readonly view: Balancer,
    private readonly onFlip: () => void
  ) {}

  start(): void {
    for (const l of this.view.frontends) {
      const hc = l.config.healthCheck
      const spec = checkSpecOf(hc)
      if (spec === undefined) continue
      for (const b of l.backends) {
        const checker = new HealthChecker(
          { host: b.host, port: b.port },
          spec,
          {
            interval: hc.interval,
            timeout: hc.timeout ?? hc.interval,
            rise: hc.rise,
            fall: hc.fall,
            // A backend found down before a reload stays down until it passes `rise` checks.
            initiallyUp: b.checkedUp,
          },
          (up, reason) => this.flipped(l, b, up, reason)
        )
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
      l.log.info({ backend: b.name }, 'health check: backend is up')
    } else {
      l.log.warn({ backend: b.name, reason }, 'health check: backend is down')
    }
    this.onFlip()
  }
}
