import t from 'tap'
import { leastConnections } from '../../lib/balancing/least-connections.js'
import { backend, pool, sequence } from './backends.js'
import { mulberry32 } from './prng.js'

t.test('follows active sessions per unit of weight', async (t) => {
  const a = backend('a', 1, 5)
  const b = backend('b', 1, 2)
  const c = backend('c', 1, 9)
  const selector = leastConnections([a, b, c])
  t.equal(selector.pick(), b)
  b.active = 6
  t.equal(selector.pick(), a)
  // Weighted: c carries 9 sessions but at weight 10 that is 0.9 per unit, below a's 5.
  c.weight = 10
  t.equal(selector.pick(), c)
})

t.test('ties are broken round-robin', async (t) => {
  const selector = leastConnections(pool({ a: 1, b: 1, c: 1 }))
  t.same(sequence(selector, 7), ['a', 'b', 'c', 'a', 'b', 'c', 'a'])
  // Only the tied backends take turns; a busier one in between does not skew them.
  const busy = [backend('a'), backend('b', 1, 5), backend('c')]
  t.same(sequence(leastConnections(busy), 6), ['a', 'c', 'a', 'c', 'a', 'c'])
  // 1/3 and 2/6 are the same load.
  const ratio = [backend('a', 3, 1), backend('b', 6, 2)]
  t.same(sequence(leastConnections(ratio), 4), ['a', 'b', 'a', 'b'])
})

t.test('sessions that never end fill backends exactly in proportion to weight', async (t) => {
  const backends = pool({ a: 1, b: 2, c: 3 })
  const selector = leastConnections(backends)
  for (let i = 0; i < 6000; i++) selector.pick()!.active++
  t.same(
    backends.map((b) => b.active),
    [1000, 2000, 3000]
  )
})

t.test('with sessions ending at random, picks follow the weights', async (t) => {
  const random = mulberry32(7)
  const backends = pool({ a: 1, b: 2, c: 3 })
  const selector = leastConnections(backends)
  const picks: Record<string, number> = { a: 0, b: 0, c: 0 }
  const n = 10_000
  for (let i = 0; i < n; i++) {
    const chosen = selector.pick()!
    chosen.active++
    picks[chosen.name]!++
    // Then one session ends, chosen uniformly among all open ones (while more than 60 are open).
    let open = backends.reduce((sum, b) => sum + b.active, 0)
    if (open <= 60) continue
    let r = Math.floor(random() * open)
    for (const b of backends) {
      if (r < b.active) {
        b.active--
        break
      }
      r -= b.active
    }
  }
  for (const [name, weight] of [
    ['a', 1],
    ['b', 2],
    ['c', 3],
  ] as const) {
    t.ok(Math.abs(picks[name]! / n - weight / 6) < 0.02, `${name}: ${picks[name]! / n}`)
  }
})

t.test('skips unusable and avoided backends', async (t) => {
  const a = backend('a', 1, 0)
  const b = backend('b', 1, 3)
  const c = backend('c', 1, 5)
  const selector = leastConnections([a, b, c])
  t.equal(selector.pick({ avoid: new Set([a]) }), b)
  a.up = false
  t.equal(selector.pick(), b)
  t.equal(selector.pick({ avoid: new Set([b]) }), c)
})

t.test('undefined when nothing is usable and not avoided', async (t) => {
  const [a, b] = pool({ a: 1, b: 1 })
  const selector = leastConnections([a!, b!])
  a!.up = false
  t.equal(selector.pick({ avoid: new Set([b!]) }), undefined)
  b!.up = false
  t.equal(selector.pick(), undefined)
  t.equal(leastConnections([]).pick(), undefined)
})
