/**
 * The one interface every balancing algorithm implements.
 *
 * An algorithm is built once per listener over its ordered list of backends and asked, for each new
 * session (and for each retry or failover), to pick one. It never sees sockets: it reads a backend's
 * weight, active session count and whether it is usable right now, so each algorithm is a small pure
 * core that tests drive without the network.
 */
export interface Candidate {
  /** Stable identity of the backend within its listener (its name, `host:port` by default). */
  readonly name: string
  /** Effective weight, > 0. Slow start (a later issue) lowers it for a while; 0 never reaches here. */
  readonly weight: number
  /** Sessions currently using this backend. */
  readonly active: number
  /** False while the backend is down, cooling down after failures, in maintenance or full. */
  usable(): boolean
}

export interface PickContext {
  /** Client address, used by `source-hash`. */
  readonly source?: string
  /** Backends not to pick this time (the one that just failed, the ones already tried). */
  readonly avoid?: ReadonlySet<Candidate>
}

export interface Selector<T extends Candidate = Candidate> {
  /** The backend for this context, or undefined when none is usable and not avoided. */
  pick(ctx?: PickContext): T | undefined
}

export interface SelectorOptions {
  /** Source of randomness in [0, 1); tests pass a seeded one. Defaults to Math.random. */
  readonly random?: () => number
}

export type SelectorFactory = <T extends Candidate>(
  backends: readonly T[],
  options?: SelectorOptions
) => Selector<T>

export const ALGORITHMS = [
  'round-robin',
  'least-connections',
  'random',
  'power-of-two',
  'source-hash',
  'first',
] as const

export type AlgorithmName = (typeof ALGORITHMS)[number]
