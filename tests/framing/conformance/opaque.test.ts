/**
 * Conformance of the opaque framer (tests/framing/helpers/conformance.ts): one turn each way, cut
 * anywhere. A turn is the client's bytes since the server last spoke, so interleaving changes the
 * requests by design and is left out; a server that speaks first pins the session.
 */
import t from 'tap'
import { opaque } from '../../../lib/framing/opaque.js'
import { conformance, type ConformanceCase } from '../helpers/conformance.js'
import { between, mulberry32 } from '../helpers/frames.js'

function makeCase(seed: number, kind: 'turn' | 'unanswered' | 'server first'): ConformanceCase {
  const rand = mulberry32(seed * 7919 + kind.length)
  const data = (lo: number, hi: number): Buffer =>
    Buffer.from(Array.from({ length: between(rand, lo, hi) }, () => between(rand, 0, 255)))
  const requests = kind === 'server first' ? Buffer.alloc(0) : data(1, 60)
  const responses = kind === 'unanswered' ? Buffer.alloc(0) : data(1, 60)
  const model =
    kind === 'turn'
      ? { answered: [requests.length], pending: 0 }
      : kind === 'unanswered'
        ? { answered: [], pending: 1 }
        : { answered: [], pending: 0 }
  return {
    name: `seed ${seed}, ${kind}`,
    group: kind,
    requests,
    responses,
    bounds: 'never',
    need: [],
    model: { ...model, safe: true, pinned: kind === 'server first' },
  }
}

conformance(t, {
  factory: opaque,
  cases: (['turn', 'unanswered', 'server first'] as const).flatMap((kind) =>
    [1, 2, 3, 4].map((seed) => makeCase(seed, kind))
  ),
  interleave: false,
})
