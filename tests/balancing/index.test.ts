import t from 'tap'
import { ALGORITHMS, createSelector } from '../../lib/balancing/index.js'
import { pool } from './backends.js'
import { mulberry32 } from './prng.js'

for (const name of ALGORITHMS) {
  t.test(`createSelector('${name}')`, async (t) => {
    const backends = pool({ a: 1, b: 2, c: 3 })
    const [a, b, c] = backends
    const selector = createSelector(name, backends, { random: mulberry32(11) })
    for (let i = 0; i < 100; i++) {
      const picked = selector.pick({ source: `203.0.113.${i}` })
      if (picked === undefined || !backends.includes(picked)) t.fail(`picked ${picked?.name}`)
    }
    a!.up = false
    t.equal(selector.pick({ source: '203.0.113.9', avoid: new Set([b!]) }), c, 'only c is left')
    t.equal(selector.pick({ source: '203.0.113.9', avoid: new Set([b!, c!]) }), undefined)
    b!.up = false
    c!.up = false
    t.equal(selector.pick({ source: '203.0.113.9' }), undefined, 'all unusable')
    t.equal(createSelector(name, []).pick(), undefined, 'no backends')
  })
}
