/**
 * Backup backends (HAProxy `backup`) with real servers: a backup gets nothing while a primary is
 * usable; once every primary is out (refusing, health-down, drained, full) it serves; when a
 * primary comes back, new sessions go to it again; a request in flight when the last primary dies
 * is replayed on the backup. The role shows in the snapshot, the JSON API, the page and /metrics.
 */
import t, { type Test } from 'tap'
import { backendJson } from '../../lib/admin/api.js'
import { createMetrics } from '../../lib/admin/metrics.js'
import { renderMain } from '../../lib/admin/page.js'
import { oneListener, scope } from '../helpers/balancer.js'
import { frameServer, type FrameServer, PROTOCOLS, listenerOptions } from '../helpers/failover-servers.js'
import { FrameClient } from '../helpers/net.js'
import { HOST } from '../helpers/servers.js'
import { once, until } from '../helpers/wait.js'

/** A frame server that answers `name:body`, so the client sees which backend served it. */
function named(name: string): Promise<FrameServer> {
  return frameServer(name, { answer: (b) => Buffer.from(`${name}:${b.toString()}`) })
}

/** One session, one request: the name of the backend that answered. */
async function servedBy(t: Test, port: number, tag = 'x'): Promise<string> {
  const c = await new FrameClient(t, { host: HOST, port }).connected()
  const answer = await c.request(tag)
  c.socket.destroy()
  return answer.slice(0, answer.indexOf(':'))
}

t.test('primaries up: the backup gets nothing; all refusing: the backup serves', async (t) => {
  const s = scope(t)
  const p1 = await s.server(named('p1'))
  const p2 = await s.server(named('p2'))
  const b = await s.server(named('b'))
  const { port, balancer } = await s.balancer(
    oneListener([p1, p2, { endpoint: b, backup: true }], { protocol: 'length-prefixed' })
  )
  const seen: string[] = []
  for (let i = 0; i < 10; i++) seen.push(await servedBy(t, port))
  t.same([...new Set(seen)].sort(), ['p1', 'p2'], 'round-robin over the primaries only')
  t.equal(b.accepted, 0, 'the backup never got a connection')

  await p1.kill()
  await p2.kill()
  for (let i = 0; i < 3; i++) t.equal(await servedBy(t, port), 'b', `session ${i} on the backup`)
  t.equal(balancer.counters().noBackend, 0, 'no client went without a backend')
})

t.test('a primary that comes back (health check up) takes new sessions again', async (t) => {
  const s = scope(t)
  const p = await s.server(named('p'))
  const b = await s.server(named('b'))
  const { port, balancer } = await s.balancer(
    oneListener([p, { endpoint: b, backup: true }], {
      protocol: 'length-prefixed',
      healthCheck: { type: 'tcp', interval: 50, rise: 1, fall: 1 },
    })
  )
  t.equal(await servedBy(t, port), 'p')
  const pPort = p.port
  // The health check marks it down (`down: true`); a passive failure alone would not.
  const down = once(balancer, 'backendFailure', {
    filter: (e: { backend: string; down: boolean }) => e.backend === 'p' && e.down,
  })
  await p.kill()
  await down
  t.equal(balancer.listenerSnapshots()[0]!.backends[0]!.health, 'down')
  t.equal(await servedBy(t, port), 'b', 'primary down: the backup serves')
  const up = once(balancer, 'backendUp', { filter: (e: { backend: string }) => e.backend === 'p' })
  await p.listen(pPort)
  await up
  for (let i = 0; i < 3; i++) t.equal(await servedBy(t, port), 'p', `new session ${i} on the primary again`)
})

t.test('sessions on a primary that goes down move to the backup at a clean boundary', async (t) => {
  const s = scope(t)
  const p = await s.server(named('p'))
  const b = await s.server(named('b'))
  const { port, balancer } = await s.balancer(
    oneListener([p, { endpoint: b, backup: true }], {
      protocol: 'length-prefixed', // onDown: migrate by default
      healthCheck: { type: 'tcp', interval: 50, rise: 1, fall: 1 },
    })
  )
  const c = await new FrameClient(t, { host: HOST, port }).connected()
  t.equal(await c.request('one'), 'p:one')
  const down = once(balancer, 'backendFailure', {
    filter: (e: { backend: string; down: boolean }) => e.backend === 'p' && e.down,
  })
  p.stopAccepting() // checks are refused; the open connection still works
  await down
  t.equal(
    await c.request('two'),
    'b:two',
    'the next request went to the backup, on the same client connection'
  )
  t.equal(balancer.counters().migrations, 1)
})

t.test('a drained primary and a full primary leave the work to the backup', async (t) => {
  const s = scope(t)
  const p = await s.server(named('p'))
  const b = await s.server(named('b'))
  const { port, balancer } = await s.balancer(
    oneListener(
      [
        { endpoint: p, maxConnections: 1 },
        { endpoint: b, backup: true },
      ],
      {
        protocol: 'length-prefixed',
      }
    )
  )
  const primary = balancer.frontends[0]!.backends[0]!
  // Full: one session holds the primary's only slot.
  const holder = await new FrameClient(t, { host: HOST, port }).connected()
  t.match(await holder.request('hold'), /^p:/)
  t.equal(await servedBy(t, port), 'b', 'primary full: the backup serves')
  holder.socket.destroy()
  await until(() => primary.active === 0, 'the primary slot freed')
  t.equal(await servedBy(t, port), 'p', 'a free slot: the primary again')
  primary.admin = 'drain'
  t.equal(await servedBy(t, port), 'b', 'primary drained: the backup serves')
  primary.admin = 'ready'
  t.equal(await servedBy(t, port), 'p', 'primary ready: the primary again')
})

t.test('several backups: the first usable one takes all, or all of them with allBackups', async (t) => {
  for (const allBackups of [false, true]) {
    const s = scope(t)
    const p = await s.server(named('p'))
    const b1 = await s.server(named('b1'))
    const b2 = await s.server(named('b2'))
    const { port } = await s.balancer(
      oneListener([p, { endpoint: b1, backup: true }, { endpoint: b2, backup: true }], {
        protocol: 'length-prefixed',
        allBackups,
      })
    )
    await p.kill()
    const seen: string[] = []
    for (let i = 0; i < 6; i++) seen.push(await servedBy(t, port))
    t.same(
      [...new Set(seen)].sort(),
      allBackups ? ['b1', 'b2'] : ['b1'],
      `allBackups ${allBackups}: ${seen.join(' ')}`
    )
  }
})

for (const protocol of PROTOCOLS) {
  t.test(
    `${protocol}: a request in flight when the last primary dies is replayed on the backup`,
    async (t) => {
      const s = scope(t)
      const p = await s.server(named('p'))
      const b = await s.server(named('b'))
      const { port, balancer } = await s.balancer(
        oneListener([p, { endpoint: b, backup: true }], listenerOptions(protocol, 'new'))
      )
      const c = await new FrameClient(t, { host: HOST, port }).connected()
      t.equal(await c.request('one'), 'p:one', 'first request on the primary')
      p.freeze()
      const read = once(p, 'request')
      const answer = c.request('two')
      await read // the primary has the request and will never answer it
      await p.kill()
      t.equal(await answer, 'b:two', 'the same client connection got the answer from the backup')
      t.equal(await c.request('three'), 'b:three', 'and carries on there')
      t.equal(c.error, undefined, 'the client saw no error')
      t.equal(balancer.counters().failovers, 1, 'one failover')
    }
  )
}

t.test('a reload may make a backend a backup, or a primary again', async (t) => {
  const s = scope(t)
  const p = await s.server(named('p'))
  const b = await s.server(named('b'))
  const config = (backup: boolean) =>
    oneListener([p, { endpoint: b, backup }], { name: 'l', protocol: 'length-prefixed' })
  const { port, balancer } = await s.balancer(config(false))
  const both = new Set<string>()
  for (let i = 0; i < 4; i++) both.add(await servedBy(t, port))
  t.same([...both].sort(), ['b', 'p'], 'two primaries')
  await balancer.reload(config(true))
  const one = new Set<string>()
  for (let i = 0; i < 4; i++) one.add(await servedBy(t, port))
  t.same([...one], ['p'], 'b is a backup now')
  t.equal(balancer.listenerSnapshots()[0]!.backends[1]!.role, 'backup')
  await balancer.reload(config(false))
  const again = new Set<string>()
  for (let i = 0; i < 4; i++) again.add(await servedBy(t, port))
  t.same([...again].sort(), ['b', 'p'], 'and a primary again')
})

t.test('the role shows in the snapshot, the JSON API, the status page and /metrics', async (t) => {
  const s = scope(t)
  const p = await s.server(named('p'))
  const b = await s.server(named('b'))
  const { balancer } = await s.balancer(oneListener([p, { endpoint: b, backup: true }]))
  const snap = balancer.listenerSnapshots()[0]!.backends
  t.same(
    snap.map((x) => [x.name, x.role]),
    [
      ['p', 'primary'],
      ['b', 'backup'],
    ]
  )
  const l = balancer.frontends[0]!
  t.equal(backendJson(l, l.backends[1]!).role, 'backup')
  t.equal(backendJson(l, l.backends[0]!).role, 'primary')
  t.match(renderMain(balancer), /<td>b <small>backup<\/small><\/td>/)
  t.notMatch(renderMain(balancer), /<td>p <small>backup/)
  const text = await createMetrics(balancer).metrics()
  t.match(text, new RegExp(`baton_backend_backup\\{listener="${l.name}",backend="b"\\} 1`))
  t.match(text, new RegExp(`baton_backend_backup\\{listener="${l.name}",backend="p"\\} 0`))
})
