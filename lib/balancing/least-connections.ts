/**
 * Weighted least connections (HAProxy `balance leastconn`, nginx `least_conn`): the backend with the
 * fewest active sessions per unit of weight wins. Ties are broken round-robin: the scan starts just
 * after the previous winner, so equally loaded backends take turns instead of the first in the list
 * taking every new session while counts are equal (e.g. all idle at start).
 */
import { eligible } from './eligible.js'
import type { Candidate, PickContext, Selector, SelectorOptions } from './types.js'

export function leastConnections<T extends Candidate>(
  backends: readonly T[],
  _options?: SelectorOptions
): Selector<T> {
  const n = backends.length
  let start = 0

  return {
    pick(ctx?: PickContext): T | undefined {
      const avoid = ctx?.avoid
      let best = -1
      let bestLoad = Infinity
      for (let k = 0; k < n; k++) {
        const i = (start + k) % n
        const backend = backends[i]!
        if (!eligible(backend, avoid)) continue
        // Division is correctly rounded, so equal ratios (1/3, 2/6) compare equal and tie properly.
        const load = backend.active / backend.weight
        if (load < bestLoad) {
          best = i
          bestLoad = load
        }
      }
      if (best === -1) return undefined
      start = (best + 1) % n
      return backends[best]
    },
  }
}
