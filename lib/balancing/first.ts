/**
 * First: the first usable, non-avoided backend in list order (HAProxy `balance first`). Later
 * backends only see traffic once the earlier ones are down or full, which packs sessions onto as few
 * servers as possible.
 */
import { eligible } from './eligible.js'
import type { Candidate, PickContext, Selector, SelectorOptions } from './types.js'

export function first<T extends Candidate>(backends: readonly T[], _options?: SelectorOptions): Selector<T> {
  return {
    pick(ctx?: PickContext): T | undefined {
      const avoid = ctx?.avoid
      for (const backend of backends) {
        if (eligible(backend, avoid)) return backend
      }
      return undefined
    },
  }
}
