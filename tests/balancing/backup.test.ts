/**
 * Backup tiers around every algorithm (lib/balancing/backup.ts), without sockets.
 */
import t from 'tap'
import { createListenerSelector } from '../../lib/balancing/index.js'
import { ALGORITHMS } from '../../lib/balancing/types.js'
import { backend, sequence, type TestBackend } from './backends.js'

type Tiered = TestBackend & { backup?: boolean }

function tiers(primaries: string[], backups: string[]): Tiered[] {
  return [
    ...primaries.map((n) => backend(n)),
    ...backups.map((n) => Object.assign(backend(n), { backup: true })),
  ]
}

for (const name of ALGORITHMS) {
  t.test(`${name}: backups only once no primary is usable`, async (t) => {
    const list = tiers(['p1', 'p2'], ['b1', 'b2'])
    const s = createListenerSelector(name, list, false)
    const ctx = { source: '192.0.2.7' }
    const names = new Set(sequence(s, 200, ctx))
    t.notOk(names.has('b1') || names.has('b2'), `primaries up: ${[...names].join(' ')}`)
    list[0]!.up = false
    t.same([...new Set(sequence(s, 50, ctx))], ['p2'], 'one primary left: only it')
    t.same(
      [...new Set(sequence(s, 50, { ...ctx, avoid: new Set([list[1]!]) }))],
      ['b1'],
      'the last primary avoided (it just failed): the first backup'
    )
    list[1]!.up = false
    t.same([...new Set(sequence(s, 50, ctx))], ['b1'], 'no primary: the first backup takes all')
    list[2]!.up = false
    t.same([...new Set(sequence(s, 50, ctx))], ['b2'], 'first backup out: the next one')
    list[3]!.up = false
    t.same([...new Set(sequence(s, 5, ctx))], ['-'], 'nothing usable: no pick')
    list[0]!.up = true
    t.same([...new Set(sequence(s, 50, ctx))], ['p1'], 'a primary back: it takes new picks again')
  })

  t.test(`${name}: allBackups spreads over every usable backup`, async (t) => {
    const list = tiers(['p'], ['b1', 'b2', 'b3'])
    list[0]!.up = false
    const s = createListenerSelector(name, list, true)
    // source-hash keeps one source on one backup: vary the source to see the spread.
    const picks: string[] = []
    for (let i = 0; i < 300; i++) picks.push(s.pick({ source: `10.0.${i >> 8}.${i & 255}` })?.name ?? '-')
    // `first` over the backups is the first usable one, with or without allBackups.
    t.same([...new Set(picks)].sort(), name === 'first' ? ['b1'] : ['b1', 'b2', 'b3'])
  })
}

t.test('no backups: the algorithm as it is', async (t) => {
  const list = tiers(['a', 'b'], [])
  t.same(sequence(createListenerSelector('round-robin', list, false), 4), ['a', 'b', 'a', 'b'])
})

t.test('source-hash: a client without an address (unix) goes round-robin, not all to one', async (t) => {
  const list = tiers(['a', 'b', 'c'], ['z'])
  const s = createListenerSelector('source-hash', list, false)
  t.same(new Set(sequence(s, 30)), new Set(['a', 'b', 'c']), 'spread over the primaries')
  const one = s.pick({ source: '2001:db8::1' })!.name
  t.same(new Set(sequence(s, 20, { source: '2001:db8::1' })), new Set([one]), 'an IPv6 source stays put')
  for (const b of list.slice(0, 3)) b.up = false
  t.same(new Set(sequence(s, 5)), new Set(['z']), 'and the backup when no primary is usable')
})
