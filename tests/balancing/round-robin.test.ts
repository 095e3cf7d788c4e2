import t from 'tap'
import { roundRobin } from '../../lib/balancing/round-robin.js'
import { pool, sequence, shares } from './backends.js'

t.test("weights {5,1,1} give nginx's documented order, cycle after cycle", async (t) => {
  const selector = roundRobin(pool({ a: 5, b: 1, c: 1 }))
  const cycle = ['a', 'a', 'b', 'a', 'c', 'a', 'a']
  t.same(sequence(selector, 7), cycle)
  t.same(sequence(selector, 7), cycle)
  t.same(sequence(selector, 7), cycle)
})

t.test('equal weights take plain turns', async (t) => {
  const selector = roundRobin(pool({ a: 1, b: 1, c: 1 }))
  t.same(sequence(selector, 6), ['a', 'b', 'c', 'a', 'b', 'c'])
})

t.test('weights 1:2:3 are exact over every full cycle', async (t) => {
  const selector = roundRobin(pool({ a: 1, b: 2, c: 3 }))
  t.same(sequence(selector, 6), ['c', 'b', 'a', 'c', 'b', 'c'])
  for (let cycle = 0; cycle < 1000; cycle++) {
    const names = sequence(selector, 6)
    const count = (n: string) => names.filter((x) => x === n).length
    if (count('a') !== 1 || count('b') !== 2 || count('c') !== 3) {
      t.fail(`cycle ${cycle}: ${names.join(' ')}`)
      return
    }
  }
  t.same(shares(selector, 6000), { a: 1 / 6, b: 2 / 6, c: 3 / 6 })
})

t.test('an unusable backend sits out without breaking the smooth order of the others', async (t) => {
  const backends = pool({ a: 5, b: 1, c: 1 })
  const c = backends[2]!
  const selector = roundRobin(backends)
  t.same(sequence(selector, 7), ['a', 'a', 'b', 'a', 'c', 'a', 'a'])
  c.up = false
  // Exactly what a fresh {a: 5, b: 1} produces.
  const alone = sequence(roundRobin(pool({ a: 5, b: 1 })), 12)
  t.same(sequence(selector, 12), alone)
  t.same(alone.slice(0, 6), ['a', 'a', 'a', 'b', 'a', 'a'])
  c.up = true
  t.same(sequence(selector, 7), ['a', 'a', 'b', 'a', 'c', 'a', 'a'], 'c resumes in its place')
})

t.test('avoided backends are skipped for that pick only', async (t) => {
  const backends = pool({ a: 5, b: 1, c: 1 })
  const [a, b, c] = backends
  const selector = roundRobin(backends)
  t.equal(selector.pick({ avoid: new Set([a!]) }), b)
  t.equal(selector.pick({ avoid: new Set([a!, b!]) }), c)
  for (let i = 0; i < 100; i++) {
    if (selector.pick({ avoid: new Set([a!]) }) === a) t.fail('picked an avoided backend')
  }
  // Long-run shares stay exact once nothing is avoided.
  t.same(shares(selector, 7000), { a: 5 / 7, b: 1 / 7, c: 1 / 7 })
})

t.test('weight changes between picks (slow start) are followed', async (t) => {
  const backends = pool({ a: 1, b: 1 })
  const selector = roundRobin(backends)
  backends[1]!.weight = 3
  const s = shares(selector, 4000)
  t.ok(Math.abs(s.a! - 0.25) < 0.001 && Math.abs(s.b! - 0.75) < 0.001, JSON.stringify(s))
})

t.test('undefined when nothing is usable and not avoided', async (t) => {
  const backends = pool({ a: 1, b: 1 })
  const [a, b] = backends
  const selector = roundRobin(backends)
  a!.up = false
  t.equal(selector.pick({ avoid: new Set([b!]) }), undefined)
  b!.up = false
  t.equal(selector.pick(), undefined)
  a!.up = true
  t.equal(selector.pick(), a)
  t.equal(roundRobin([]).pick(), undefined)
})
