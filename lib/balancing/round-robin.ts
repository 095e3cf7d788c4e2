/**
 * Smooth weighted round-robin, as nginx's `ngx_http_upstream_get_peer`: on each pick every eligible
 * backend's `current` grows by its weight, the largest `current` wins (first in list order on a tie)
 * and pays back the total of the weights added. Weights {5,1,1} give `a a b a c a a`, interleaving
 * the light backends instead of sending five in a row to the heavy one.
 *
 * Backends that are unusable or avoided sit the pick out entirely (their `current` neither grows nor
 * pays), exactly as nginx skips down or already-tried peers, so the others keep their smooth order
 * and the skipped one resumes where it left off.
 */
import { eligible } from './eligible.js'
import type { Candidate, PickContext, Selector, SelectorOptions } from './types.js'

export function roundRobin<T extends Candidate>(
  backends: readonly T[],
  _options?: SelectorOptions
): Selector<T> {
  // Indexed like `backends`; a typed array so a pick touches no heap objects of its own.
  const current = new Float64Array(backends.length)

  return {
    pick(ctx?: PickContext): T | undefined {
      const avoid = ctx?.avoid
      let best = -1
      let total = 0
      for (let i = 0; i < backends.length; i++) {
        const backend = backends[i]!
        if (!eligible(backend, avoid)) continue
        // Read the weight live: slow start changes it between picks.
        current[i]! += backend.weight
        total += backend.weight
        if (best === -1 || current[i]! > current[best]!) best = i
      }
      if (best === -1) return undefined
      current[best]! -= total
      return backends[best]
    },
  }
}
