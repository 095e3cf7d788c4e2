/**
 * Backup backends (HAProxy `backup`), around any algorithm: the listener's algorithm picks among the
 * primaries, and only when it finds none (every primary down, ejected, drained, full, or avoided by
 * this pick: the one that just failed mid-request) does a backup get the session. Then the first
 * usable backup in list order takes it (HAProxy's default), or with `allBackups` the same algorithm
 * picks among every backup (HAProxy `option allbackups`).
 *
 * Under `source-hash`, a client with no address (a unix-domain listener's) cannot be hashed: such
 * clients are spread round-robin, as HAProxy does for a source it cannot hash.
 *
 * With no backup configured this is the algorithm's own selector, unwrapped.
 */
import { first } from './first.js'
import { roundRobin } from './round-robin.js'
import type {
  AlgorithmName,
  Candidate,
  PickContext,
  Selector,
  SelectorFactory,
  SelectorOptions,
} from './types.js'

export interface TieredCandidate extends Candidate {
  /** Used only when no primary is usable. */
  readonly backup?: boolean
}

export function tiered<T extends TieredCandidate>(
  algorithm: AlgorithmName,
  factory: SelectorFactory,
  backends: readonly T[],
  allBackups: boolean,
  options?: SelectorOptions
): Selector<T> {
  const primaries = backends.filter((b) => b.backup !== true)
  const backups = backends.filter((b) => b.backup === true)
  const main = factory(primaries, options)
  const unaddressed = algorithm === 'source-hash' ? roundRobin(primaries, options) : undefined
  if (backups.length === 0 && unaddressed === undefined) return main
  const spare =
    backups.length === 0 ? undefined : allBackups ? factory(backups, options) : first(backups, options)
  const spareUnaddressed =
    spare !== undefined && allBackups && unaddressed !== undefined ? roundRobin(backups, options) : spare
  return {
    pick(ctx?: PickContext): T | undefined {
      const hashless = unaddressed !== undefined && ctx?.source === undefined
      const picked = (hashless ? unaddressed : main).pick(ctx)
      if (picked !== undefined || spare === undefined) return picked
      return (hashless ? spareUnaddressed! : spare).pick(ctx)
    },
  }
}
