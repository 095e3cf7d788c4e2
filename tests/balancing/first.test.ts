import t from 'tap'
import { first } from '../../lib/balancing/first.js'
import { pool, sequence } from './backends.js'

t.test('always the first usable backend in list order', async (t) => {
  const [a, b, c] = pool({ a: 1, b: 5, c: 1 })
  const selector = first([a!, b!, c!])
  t.same(sequence(selector, 4), ['a', 'a', 'a', 'a'])
  a!.active = 1000 // load does not matter, only order
  t.equal(selector.pick(), a)
})

t.test('skips unusable and avoided backends', async (t) => {
  const [a, b, c] = pool({ a: 1, b: 1, c: 1 })
  const selector = first([a!, b!, c!])
  a!.up = false
  t.equal(selector.pick(), b)
  t.equal(selector.pick({ avoid: new Set([b!]) }), c)
  a!.up = true
  t.equal(selector.pick({ avoid: new Set([b!]) }), a)
  t.equal(selector.pick({ avoid: new Set([a!, b!]) }), c)
})

t.test('undefined when nothing is usable and not avoided', async (t) => {
  const [a, b] = pool({ a: 1, b: 1 })
  const selector = first([a!, b!])
  a!.up = false
  t.equal(selector.pick({ avoid: new Set([b!]) }), undefined)
  b!.up = false
  t.equal(selector.pick(), undefined)
  t.equal(first([]).pick(), undefined)
})
