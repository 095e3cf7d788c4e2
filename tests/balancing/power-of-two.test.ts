import t from 'tap'
import { powerOfTwo } from '../../lib/balancing/power-of-two.js'
import { backend, pool, sequence, shares } from './backends.js'
import { mulberry32 } from './prng.js'

const near = (actual: number | undefined, expected: number, tolerance: number) =>
  actual !== undefined && Math.abs(actual - expected) <= tolerance

t.test('the two choices are distinct', async (t) => {
  // random() = 0 draws a first; were the second draw not distinct it would be a again.
  const a = backend('a', 1, 3)
  const b = backend('b', 1, 1)
  t.equal(powerOfTwo([a, b, backend('c')], { random: () => 0 }).pick(), b)
})

t.test('with two usable backends the less loaded one always wins', async (t) => {
  // Per unit of weight: a carries 10/10 = 1, b carries 2/1 = 2.
  const a = backend('a', 10, 10)
  const b = backend('b', 1, 2)
  const selector = powerOfTwo([a, b], { random: mulberry32(5) })
  t.same(new Set(sequence(selector, 200)), new Set(['a']))
})

t.test('with one usable backend it is returned, however loaded', async (t) => {
  const a = backend('a', 1, 1000)
  const b = backend('b')
  b.up = false
  t.equal(powerOfTwo([a, b], { random: mulberry32(6) }).pick(), a)
})

t.test('idle backends get their weighted share, 1:2:3 within ±2% over 10,000 picks', async (t) => {
  const s = shares(powerOfTwo(pool({ a: 1, b: 2, c: 3 }), { random: mulberry32(1) }), 10_000)
  t.ok(near(s.a, 1 / 6, 0.02), `a: ${s.a}`)
  t.ok(near(s.b, 2 / 6, 0.02), `b: ${s.b}`)
  t.ok(near(s.c, 3 / 6, 0.02), `c: ${s.c}`)
})

t.test('a backend with many active sessions is picked much less', async (t) => {
  const random = mulberry32(9)
  const backends = pool({ a: 1, b: 1, c: 1, d: 1 })
  const [a] = backends
  const selector = powerOfTwo(backends, { random })
  // a is stuck with 50 long sessions; the others' load moves between 0 and 4 on every pick.
  a!.active = 50
  let picked = 0
  for (let i = 0; i < 10_000; i++) {
    for (const b of backends.slice(1)) b.active = Math.floor(random() * 5)
    if (selector.pick() === a) picked++
  }
  t.equal(picked, 0, 'it loses every comparison against a lighter backend')
  // Only slightly heavier: a still loses whenever it is compared, i.e. it is never picked at all,
  // while plain random would have given it a quarter.
  a!.active = 5
  t.equal(shares(selector, 10_000).a, undefined)
  // Against equally loaded backends it gets its fair quarter back.
  for (const b of backends) b.active = 5
  t.ok(near(shares(selector, 10_000).a, 0.25, 0.02))
})

t.test('unusable and avoided backends are never drawn', async (t) => {
  const backends = pool({ a: 1, b: 2, c: 3 })
  const [a, b] = backends
  const selector = powerOfTwo(backends, { random: mulberry32(2) })
  b!.up = false
  const s = shares(selector, 10_000, { avoid: new Set([a!]) })
  t.same(s, { c: 1 })
  b!.up = true
  const s2 = shares(selector, 10_000, { avoid: new Set([a!]) })
  t.ok(near(s2.b, 2 / 5, 0.02) && near(s2.c, 3 / 5, 0.02), JSON.stringify(s2))
})

t.test('undefined when nothing is usable and not avoided', async (t) => {
  const [a, b] = pool({ a: 1, b: 1 })
  const selector = powerOfTwo([a!, b!], { random: mulberry32(3) })
  a!.up = false
  t.equal(selector.pick({ avoid: new Set([b!]) }), undefined)
  b!.up = false
  t.equal(selector.pick(), undefined)
  t.equal(powerOfTwo([]).pick(), undefined)
})
