/**
 * Weighted random: each eligible backend is picked with probability weight / total weight (HAProxy
 * `balance random(1)`, Envoy's RANDOM). Two passes over the list (sum, then walk) and no allocation.
 */
import { eligible } from './eligible.js'
import type { Candidate, PickContext, Selector, SelectorOptions } from './types.js'

/**
 * Weighted random pick among eligible backends, skipping index `skip` (-1 for none); -1 when none.
 * Shared with power-of-two, which draws its second choice with the first one skipped.
 */
export function weightedIndex(
  backends: readonly Candidate[],
  avoid: ReadonlySet<Candidate> | undefined,
  random: () => number,
  skip: number
): number {
  let total = 0
  let last = -1
  for (let i = 0; i < backends.length; i++) {
    const backend = backends[i]!
    if (i === skip || !eligible(backend, avoid)) continue
    total += backend.weight
    last = i
  }
  if (last === -1) return -1
  let r = random() * total
  for (let i = 0; i < last; i++) {
    const backend = backends[i]!
    if (i === skip || !eligible(backend, avoid)) continue
    r -= backend.weight
    if (r < 0) return i
  }
  // Also where rounding leaves r a hair above 0 after the next-to-last eligible backend.
  return last
}

export function random<T extends Candidate>(backends: readonly T[], options?: SelectorOptions): Selector<T> {
  const rand = options?.random ?? Math.random
  return {
    pick(ctx?: PickContext): T | undefined {
      const i = weightedIndex(backends, ctx?.avoid, rand, -1)
      return i === -1 ? undefined : backends[i]
    },
  }
}
