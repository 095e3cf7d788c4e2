import t from 'tap'
import { random } from '../../lib/balancing/random.js'
import { pool, sequence, shares } from './backends.js'
import { mulberry32 } from './prng.js'

const near = (actual: number | undefined, expected: number, tolerance: number) =>
  actual !== undefined && Math.abs(actual - expected) <= tolerance

t.test('maps the random number onto cumulative weights', async (t) => {
  // Weights 1:2:3 split [0, 6) into a [0,1) b [1,3) c [3,6).
  const values = [0, 0.16, 0.17, 0.49, 0.5, 0.99999999]
  let next = 0
  const selector = random(pool({ a: 1, b: 2, c: 3 }), { random: () => values[next++]! })
  t.same(sequence(selector, values.length), ['a', 'a', 'b', 'b', 'c', 'c'])
})

t.test('the same seed gives the same sequence', async (t) => {
  const one = random(pool({ a: 1, b: 2, c: 3 }), { random: mulberry32(42) })
  const two = random(pool({ a: 1, b: 2, c: 3 }), { random: mulberry32(42) })
  t.same(sequence(one, 50), sequence(two, 50))
})

t.test('weights 1:2:3 over 10,000 picks within ±2%', async (t) => {
  const s = shares(random(pool({ a: 1, b: 2, c: 3 }), { random: mulberry32(1) }), 10_000)
  t.ok(near(s.a, 1 / 6, 0.02), `a: ${s.a}`)
  t.ok(near(s.b, 2 / 6, 0.02), `b: ${s.b}`)
  t.ok(near(s.c, 3 / 6, 0.02), `c: ${s.c}`)
})

t.test('unusable and avoided backends are skipped, the rest keep their ratio', async (t) => {
  const backends = pool({ a: 1, b: 2, c: 3 })
  const [a, b] = backends
  const selector = random(backends, { random: mulberry32(2) })
  b!.up = false
  let s = shares(selector, 10_000)
  t.equal(s.b, undefined)
  t.ok(near(s.a, 1 / 4, 0.02), `a: ${s.a}`)
  t.ok(near(s.c, 3 / 4, 0.02), `c: ${s.c}`)
  b!.up = true
  s = shares(selector, 10_000, { avoid: new Set([a!]) })
  t.equal(s.a, undefined)
  t.ok(near(s.b, 2 / 5, 0.02), `b: ${s.b}`)
  t.ok(near(s.c, 3 / 5, 0.02), `c: ${s.c}`)
})

t.test('undefined when nothing is usable and not avoided', async (t) => {
  const [a, b] = pool({ a: 1, b: 1 })
  const selector = random([a!, b!], { random: mulberry32(3) })
  a!.up = false
  t.equal(selector.pick({ avoid: new Set([b!]) }), undefined)
  b!.up = false
  t.equal(selector.pick(), undefined)
  t.equal(random([]).pick(), undefined)
})
