/**
 * The one test every algorithm applies before considering a backend: usable right now and not in
 * this pick's avoid set (the backend that just failed, the ones already tried).
 */
import type { Candidate } from './types.js'

export function eligible(backend: Candidate, avoid: ReadonlySet<Candidate> | undefined): boolean {
  return (avoid === undefined || !avoid.has(backend)) && backend.usable()
}
