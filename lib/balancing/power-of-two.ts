/**
 * Power of two random choices (Mitzenmacher; HAProxy `balance random(2)`, Envoy LEAST_REQUEST):
 * draw two distinct eligible backends, each by weighted random, and keep the one with fewer active
 * sessions per unit of weight. Nearly as even as least-connections without every balancer instance
 * herding onto the same least-loaded backend. On a tie the first draw wins, so idle backends get
 * exactly their weighted-random share.
 */
import { weightedIndex } from './random.js'
import type { Candidate, PickContext, Selector, SelectorOptions } from './types.js'

export function powerOfTwo<T extends Candidate>(
  backends: readonly T[],
  options?: SelectorOptions
): Selector<T> {
  const rand = options?.random ?? Math.random
  return {
    pick(ctx?: PickContext): T | undefined {
      const avoid = ctx?.avoid
      const i = weightedIndex(backends, avoid, rand, -1)
      if (i === -1) return undefined
      const a = backends[i]!
      const j = weightedIndex(backends, avoid, rand, i)
      if (j === -1) return a // the only eligible backend
      const b = backends[j]!
      return b.active / b.weight < a.active / a.weight ? b : a
    },
  }
}
