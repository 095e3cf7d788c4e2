/**
 * The balancing layer's entry point: one selector per listener, built by algorithm name.
 */
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
