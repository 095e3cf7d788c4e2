/**
 * Backend state that the `--workers` primary owns and its workers follow: admin state (ready,
 * drain, maint), weight, and health from the active checks that only the primary runs. The primary
 * sends the whole table on every change and to every worker that starts; a worker applies the
 * differences. Passive health (connect failures, cool-downs) is not part of it: each worker marks
 * backends from what its own sessions see.
 */
import type { Logger } from 'pino'
import { setAdmin } from '../admin/api.js'
import type { AdminState } from '../backend.js'
import type { Balancer } from '../balancer.js'

export interface BackendState {
  listener: string
  backend: string
  admin: AdminState
  /** The configured or admin-set weight (before any slow-start ramp). */
  weight: number
  /** Health from active checks. */
  up: boolean
}

export function stateOf(balancer: Balancer): BackendState[] {
  return balancer.frontends.flatMap((l) =>
    l.backends.map((b) => ({
      listener: l.name,
      backend: b.name,
      admin: b.admin,
      weight: b.baseWeight,
      up: b.checkedUp,
    }))
  )
}

/**
 * Make `balancer`'s backends follow `states`, matched by listener and backend name; a backend the
 * table does not name (a reload on its way) is left alone. Side effects as in a single process: a
 * backend set to maint or found down has its warm pool emptied, one that comes up starts its slow
 * start and refills its pool.
 */
export function applyState(balancer: Balancer, states: readonly BackendState[], log: Logger): void {
  const byName = new Map(states.map((s) => [`${s.listener}\0${s.backend}`, s]))
  for (const l of balancer.frontends) {
    for (const b of l.backends) {
      const s = byName.get(`${l.name}\0${b.name}`)
      if (s === undefined) continue
      if (b.admin !== s.admin) {
        const was = setAdmin(l, b, s.admin)
        log.debug(
          { listener: l.name, backend: b.name, from: was, to: s.admin },
          'backend admin state from the primary'
        )
      }
      if (b.baseWeight !== s.weight) b.weight = s.weight
      if (b.checkedUp !== s.up) {
        b.checkedUp = s.up
        if (s.up) {
          b.cameUp()
          if (l.listening && b.admin !== 'maint') b.pool?.start()
        } else {
          b.pool?.stop()
          if (l.onDown === 'migrate') l.migrateFrom(b)
        }
        log.debug({ listener: l.name, backend: b.name, up: s.up }, 'backend health from the primary')
      }
    }
  }
}

/** After listening: empty the pools that Listener.listen() started for backends down or in maint. */
export function settlePools(balancer: Balancer): void {
  for (const l of balancer.frontends) {
    for (const b of l.backends) if (!b.checkedUp || b.admin === 'maint') b.pool?.stop()
  }
}
