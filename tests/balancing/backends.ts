/**
 * Plain-object backends for the balancing tests: what an algorithm sees of a backend, with the
 * knobs (weight, active, up) the tests turn. No sockets.
 */
import type { Candidate, PickContext, Selector } from '../../lib/balancing/types.js'

export interface TestBackend extends Candidate {
  weight: number
  active: number
  up: boolean
}

export function backend(name: string, weight = 1, active = 0): TestBackend {
  return {
    name,
    weight,
    active,
    up: true,
    usable() {
      return this.up
    },
  }
}

/** `pool({ a: 5, b: 1 })` -> backends a (weight 5) and b (weight 1), in that order. */
export function pool(weights: Record<string, number>): TestBackend[] {
  return Object.entries(weights).map(([name, weight]) => backend(name, weight))
}

/** Names of `n` consecutive picks ('-' for undefined). */
export function sequence(selector: Selector, n: number, ctx?: PickContext): string[] {
  const names: string[] = []
  for (let i = 0; i < n; i++) names.push(selector.pick(ctx)?.name ?? '-')
  return names
}

/** Share of `n` picks that went to each backend name. */
export function shares(selector: Selector, n: number, ctx?: PickContext): Record<string, number> {
  const counts: Record<string, number> = {}
  for (let i = 0; i < n; i++) {
    const name = selector.pick(ctx)?.name ?? '-'
    counts[name] = (counts[name] ?? 0) + 1
  }
  for (const name of Object.keys(counts)) counts[name]! /= n
  return counts
}

export function randomIPv4(random: () => number): string {
  const octet = () => Math.floor(random() * 256)
  return `${octet()}.${octet()}.${octet()}.${octet()}`
}
