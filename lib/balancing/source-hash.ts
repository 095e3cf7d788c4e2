/**
 * Source hash: the client address picks the backend through a Maglev lookup table (Eisenbud et al.,
 * "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016, section 3.4), so a client
 * keeps landing on the same backend and a changed backend list moves few clients.
 *
 * Why Maglev rather than a hash ring with virtual nodes: the table splits sources within a fraction
 * of a percent of the weights (a ring needs hundreds of virtual nodes per backend to get within a few
 * percent), a pick is one hash and one array read (a ring is a binary search), and the table is a
 * single typed array. The price: removing one of N backends also moves a few of the other backends'
 * sources (0.6% of all going from 5 to 4 in the tests), where a ring moves none; the paper accepts
 * that for balance, and so do we.
 *
 * Each backend fills the table slots in the order of its own permutation of 0..M-1, taken from two
 * hashes of its name (offset and skip), taking turns in proportion to its weight (Envoy's weighted
 * variant). Weights are read once, when the table is built; a later change (slow start) does not
 * reshuffle clients.
 *
 * An unusable or avoided pick probes further slots, with a stride taken from a second hash of the
 * source, until one holds an eligible backend: deterministic per source, spread over the others in
 * proportion to their share, and every source whose own backend is fine stays where it was.
 *
 *   slot:    0   1   2   3   4   5   ...  M-1        M = 65537 (prime, so every skip is a full cycle)
 *   table: [ b | a | c | a | b | c | ... | a ]       hash(source) % M -> slot -> backend index
 */
import { eligible } from './eligible.js'
import type { Candidate, PickContext, Selector, SelectorOptions } from './types.js'

/** Table size. Prime, and at least 100 × backends (the paper's rule) for up to ~650 backends. */
export const MAGLEV_TABLE_SIZE = 65537

const FNV_OFFSET = 0x811c9dc5
const FNV_PRIME = 0x01000193
// Any other basis gives an independent-enough second hash for the permutation's skip.
const SECOND_SEED = 0x9e3779b9

/** FNV-1a 32-bit over UTF-16 code units (addresses and names are ASCII), then murmur3's fmix32 so
 * the low bits, which `% M` keeps, depend on every character. */
export function hash32(s: string, seed: number = FNV_OFFSET): number {
  let h = seed >>> 0
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, FNV_PRIME)
  }
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** The Maglev table: slot -> index into `backends`. */
function buildTable(backends: readonly Candidate[], m: number): Uint32Array {
  const n = backends.length
  const table = new Uint32Array(m)
  if (n === 0) return table
  const filled = new Uint8Array(m)
  const next = new Float64Array(n) // each backend's position in its own permutation, as a slot
  const skip = new Float64Array(n)
  const target = new Float64Array(n)
  let maxWeight = 0
  for (let i = 0; i < n; i++) {
    const name = backends[i]!.name
    next[i] = hash32(name) % m
    skip[i] = (hash32(name, SECOND_SEED) % (m - 1)) + 1
    maxWeight = Math.max(maxWeight, backends[i]!.weight)
  }
  // A backend of the largest weight takes a slot every round; one of a third of it, every third.
  let placed = 0
  for (let round = 1; placed < m; round++) {
    for (let i = 0; i < n && placed < m; i++) {
      if (round * backends[i]!.weight < target[i]!) continue
      target[i]! += maxWeight
      let slot = next[i]!
      while (filled[slot] === 1) slot = (slot + skip[i]!) % m
      filled[slot] = 1
      table[slot] = i
      placed++
      next[i] = (slot + skip[i]!) % m
    }
  }
  return table
}

export function sourceHash<T extends Candidate>(
  backends: readonly T[],
  _options?: SelectorOptions
): Selector<T> {
  const m = MAGLEV_TABLE_SIZE
  const table = buildTable(backends, m)

  return {
    pick(ctx?: PickContext): T | undefined {
      const avoid = ctx?.avoid
      const source = ctx?.source ?? ''
      let slot = hash32(source) % m
      let backend = backends[table[slot]!]
      if (backend === undefined) return undefined // no backends at all
      if (eligible(backend, avoid)) return backend
      // Make sure the probe below ends before walking up to M slots to find nothing.
      let any = false
      for (const b of backends) {
        if (eligible(b, avoid)) {
          any = true
          break
        }
      }
      if (!any) return undefined
      // Fallback: double hashing with a per-source stride. M is prime, so the probe visits every
      // slot and ends. (Stepping to slot + 1 instead would skew: neighbouring slots of a Maglev
      // table are correlated, and one backend would inherit far less than its share.)
      const stride = (hash32(source, SECOND_SEED) % (m - 1)) + 1
      for (;;) {
        slot = (slot + stride) % m
        backend = backends[table[slot]!]!
        if (eligible(backend, avoid)) return backend
      }
    },
  }
}
