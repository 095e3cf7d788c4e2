import t from 'tap'
import { sourceHash } from '../../lib/balancing/source-hash.js'
import { backend, randomIPv4, type TestBackend } from './backends.js'
import { mulberry32 } from './prng.js'

const servers = (n: number): TestBackend[] =>
  Array.from({ length: n }, (_, i) => backend(`10.0.0.${i + 1}:8080`))

const random = mulberry32(2024)
const sources = Array.from({ length: 10_000 }, () => randomIPv4(random))

/** Backend name for every source. */
function mapping(selector: { pick(ctx: { source: string }): TestBackend | undefined }): string[] {
  return sources.map((source) => selector.pick({ source })?.name ?? '-')
}

function shareOf(names: string[], name: string): number {
  return names.filter((n) => n === name).length / names.length
}

t.test('the same source always lands on the same backend', async (t) => {
  const selector = sourceHash(servers(5))
  const again = sourceHash(servers(5)) // a rebuilt table (restart, reload) agrees
  for (const source of sources.slice(0, 200)) {
    const first = selector.pick({ source })!.name
    for (let i = 0; i < 5; i++) {
      if (selector.pick({ source })!.name !== first) t.fail(`${source} moved`)
    }
    if (again.pick({ source })!.name !== first) t.fail(`${source} differs after rebuild`)
  }
  t.same(mapping(selector), mapping(again))
})

t.test('a missing source hashes as the empty string', async (t) => {
  const selector = sourceHash(servers(5))
  t.equal(selector.pick(), selector.pick({ source: '' }))
  t.equal(selector.pick({}), selector.pick({ source: '' }))
})

t.test('10,000 random IPv4 sources spread over 3 backends within ±5% of even', async (t) => {
  const names = mapping(sourceHash(servers(3)))
  for (const b of servers(3)) {
    const share = shareOf(names, b.name)
    t.ok(Math.abs(share - 1 / 3) <= 0.05, `${b.name}: ${share}`)
  }
})

t.test('weights 1:2:3 split the sources 1:2:3', async (t) => {
  const names = mapping(sourceHash([backend('a', 1), backend('b', 2), backend('c', 3)]))
  t.ok(Math.abs(shareOf(names, 'a') - 1 / 6) <= 0.03, `a: ${shareOf(names, 'a')}`)
  t.ok(Math.abs(shareOf(names, 'b') - 2 / 6) <= 0.03, `b: ${shareOf(names, 'b')}`)
  t.ok(Math.abs(shareOf(names, 'c') - 3 / 6) <= 0.03, `c: ${shareOf(names, 'c')}`)
})

t.test('removing one of 5 backends remaps about 1/5 of the sources', async (t) => {
  const five = servers(5)
  const removed = five[2]!
  const before = mapping(sourceHash(five))
  const after = mapping(sourceHash(five.filter((b) => b !== removed)))
  let moved = 0
  let movedFromSurvivors = 0
  for (let i = 0; i < sources.length; i++) {
    if (after[i] === removed.name) t.fail(`${sources[i]} still on the removed backend`)
    if (before[i] !== after[i]) {
      moved++
      if (before[i] !== removed.name) movedFromSurvivors++
    }
  }
  // Maglev trades a little extra movement for balance (see source-hash.ts).
  t.ok(moved / sources.length <= 1 / 5 + 0.05, `moved ${moved / sources.length}`)
  t.ok(movedFromSurvivors / sources.length <= 0.05, `extra ${movedFromSurvivors / sources.length}`)
})

t.test('an unusable backend moves only its own sources, each to a fixed fallback', async (t) => {
  const five = servers(5)
  const down = five[1]!
  const selector = sourceHash(five)
  const before = mapping(selector)
  down.up = false
  const after = mapping(selector)
  const fallbacks: Record<string, number> = {}
  let mine = 0
  for (let i = 0; i < sources.length; i++) {
    if (before[i] !== down.name) {
      if (after[i] !== before[i]) t.fail(`${sources[i]} moved off a usable backend`)
      continue
    }
    mine++
    fallbacks[after[i]!] = (fallbacks[after[i]!] ?? 0) + 1
  }
  t.same(mapping(selector), after, 'fallbacks are deterministic')
  t.equal(fallbacks[down.name], undefined)
  // Its sources spread over the four others rather than piling onto one neighbour.
  t.equal(Object.keys(fallbacks).length, 4)
  for (const [name, count] of Object.entries(fallbacks)) {
    t.ok(Math.abs(count / mine - 1 / 4) <= 0.05, `${name}: ${count / mine}`)
  }
  down.up = true
  t.same(mapping(selector), before, 'its sources come back when it does')
})

t.test('avoided backends fall back the same way, one after the other', async (t) => {
  const five = servers(5)
  const selector = sourceHash(five)
  const source = '192.0.2.7'
  const primary = selector.pick({ source })!
  const second = selector.pick({ source, avoid: new Set([primary]) })!
  t.not(second, primary)
  primary.up = false
  t.equal(selector.pick({ source }), second, 'avoided and unusable fall back alike')
  primary.up = true
  const third = selector.pick({ source, avoid: new Set([primary, second]) })!
  t.not(third, primary)
  t.not(third, second)
  t.equal(selector.pick({ source, avoid: new Set([primary, second]) }), third)
})

t.test('undefined when nothing is usable and not avoided', async (t) => {
  const [a, b] = servers(2)
  const selector = sourceHash([a!, b!])
  a!.up = false
  t.equal(selector.pick({ source: '198.51.100.1', avoid: new Set([b!]) }), undefined)
  b!.up = false
  t.equal(selector.pick({ source: '198.51.100.1' }), undefined)
  t.equal(sourceHash([]).pick({ source: '198.51.100.1' }), undefined)
})
