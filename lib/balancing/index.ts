/**
 * The balancing layer's entry point: one selector per listener, built by algorithm name.
 */
import { tiered, type TieredCandidate } from './backup.js'
import { first } from './first.js'
import { leastConnections } from './least-connections.js'
import { powerOfTwo } from './power-of-two.js'
import { random } from './random.js'
import { roundRobin } from './round-robin.js'
import { sourceHash } from './source-hash.js'
import type { AlgorithmName, Candidate, Selector, SelectorFactory, SelectorOptions } from './types.js'

export * from './types.js'
export { first, leastConnections, powerOfTwo, random, roundRobin, sourceHash }

const FACTORIES: Readonly<Record<AlgorithmName, SelectorFactory>> = Object.freeze({
  'round-robin': roundRobin,
  'least-connections': leastConnections,
  random,
  'power-of-two': powerOfTwo,
  'source-hash': sourceHash,
  first,
})

export function createSelector<T extends Candidate>(
  name: AlgorithmName,
  backends: readonly T[],
  options?: SelectorOptions
): Selector<T> {
  return FACTORIES[name](backends, options)
}

/**
 * The selector of a listener whose backends may include backups (backup.ts): the algorithm over the
 * primaries, then the backups once no primary is usable.
 */
export function createListenerSelector<T extends TieredCandidate>(
  name: AlgorithmName,
  backends: readonly T[],
  allBackups: boolean,
  options?: SelectorOptions
): Selector<T> {
  return tiered(name, FACTORIES[name], backends, allBackups, options)
}
