/**
 * Limits on who may open sessions, as accept stages. Every one decides at once (no promise).
 */
import type { AcceptContext, AcceptStage } from './types.js'

/** Reasons, as counted in `baton_refused_connections_total{reason}`. */
export const PER_SOURCE_LIMIT = 'per-source-limit'

/**
 * `maxConnectionsPerSource`: most live sessions from one client address (the real one, after a
 * PROXY header). The counts live in the listener's accept state, so a reload keeps them.
 */
export function perSourceStage(max: number, state: Record<string, unknown>): AcceptStage {
  let counts = state.perSource as Map<string, number> | undefined
  if (counts === undefined) state.perSource = counts = new Map<string, number>()
  return {
    name: 'per-source',
    run(ctx: AcceptContext) {
      const n = counts.get(ctx.clientAddress) ?? 0
      if (n >= max) return PER_SOURCE_LIMIT
      counts.set(ctx.clientAddress, n + 1)
      return undefined
    },
    closed(ctx: AcceptContext) {
      const n = (counts.get(ctx.clientAddress) ?? 1) - 1
      if (n <= 0) counts.delete(ctx.clientAddress)
      else counts.set(ctx.clientAddress, n)
    },
  }
}
