/**
 * Connection limits: the global and per-listener `maxConnections` close the extra client at once
 * (counted as `rejected`); a backend at its own `maxConnections` is skipped, and when every backend
 * is full the client is closed at once (counted as `noBackend`).
 */
import t from 'tap'
import type { SessionCloseEvent } from '../../lib/balancer.js'
import { scope, oneListener, backendsOf } from '../helpers/balancer.js'
import type { Client } from '../helpers/clients.js'
import { pattern } from '../helpers/clients.js'
import { echoServer, HOST } from '../helpers/servers.js'
import { once, within } from '../helpers/wait.js'

/** A client that Baton is serving: its echo round trip works. */
async function served(client: Client, seed: number): Promise<boolean> {
  const data = pattern(256, seed)
  return (await client.roundTrip(data)).equals(data)
}

/** Baton closes the client at once: well before any timeout, without the backend seeing it. */
async function closedAtOnce(client: Client): Promise<boolean> {
  await within(client.closed, 'the extra client closed by Baton', 2000)
  return true
}

t.test('global maxConnections, over two listeners', async (t) => {
  const s = scope(t)
  const a = await s.server(echoServer('a'))
  const b = await s.server(echoServer('b'))
  const { balancer } = await s.balancer({
    maxConnections: 2,
    listeners: [
      { name: 'one', listen: { host: HOST, port: 0 }, backends: backendsOf([a]) },
      { name: 'two', listen: { host: HOST, port: 0 }, backends: backendsOf([b]) },
    ],
  })
  const one = balancer.address('one').port
  const two = balancer.address('two').port

  const c1 = await s.connect(one)
  t.ok(await served(c1, 1), 'first session, listener one')
  const c2 = await s.connect(two)
  t.ok(await served(c2, 2), 'second session, listener two')

  const extra = s.client(one)
  extra.socket.write('let me in')
  t.ok(await closedAtOnce(extra), 'the third client is closed at once')
  t.equal(a.accepted, 1, 'it never reached a backend')
  const c = balancer.counters()
  t.equal(c.rejected, 1, 'rejected counted once')
  t.equal(c.active, 2)
  t.equal(balancer.listenerSnapshots()[0]!.counters.rejected, 1, 'on the listener that refused it')

  // A slot frees up: the next client is admitted again.
  const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
  c1.socket.end()
  await closed
  const c3 = await s.connect(two)
  t.ok(await served(c3, 3), 'a new client is served once a session has ended')
  t.equal(balancer.counters().rejected, 1)
})

t.test('listener maxConnections', async (t) => {
  const s = scope(t)
  const echo = await s.server(echoServer())
  const { balancer, port } = await s.balancer(oneListener([echo], { maxConnections: 2 }))
  const c1 = await s.connect(port)
  const c2 = await s.connect(port)
  t.ok((await served(c1, 1)) && (await served(c2, 2)), 'two sessions served')
  const extras = [s.client(port), s.client(port)]
  for (const e of extras) t.ok(await closedAtOnce(e), 'an extra client is closed at once')
  t.equal(balancer.counters().rejected, 2)
  t.equal(echo.accepted, 2, 'the extra clients never reached the backend')
  t.equal(balancer.sessions().length, 2)
})

t.test('backend maxConnections: a full backend is skipped, all full closes the client', async (t) => {
  const s = scope(t)
  const a = await s.server(echoServer('a'))
  const b = await s.server(echoServer('b'))
  const { balancer, port } = await s.balancer(
    oneListener(
      [
        { endpoint: a, maxConnections: 1 },
        { endpoint: b, maxConnections: 1 },
      ],
      { balance: 'first' }
    )
  )
  const c1 = await s.connect(port)
  t.ok(await served(c1, 1))
  const c2 = await s.connect(port)
  t.ok(await served(c2, 2))
  t.equal(a.accepted, 1, 'the first client went to A')
  t.equal(b.accepted, 1, 'A was full, so the second went to B')
  t.same(
    balancer.sessions().map((x) => x.backend),
    ['a', 'b']
  )
  const snaps = balancer.listenerSnapshots()[0]!.backends
  t.same(
    snaps.map((x) => [x.name, x.active, x.maxConnections]),
    [
      ['a', 1, 1],
      ['b', 1, 1],
    ]
  )

  const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose', {
    filter: (e) => e.outcome === 'no-backend',
  })
  const c3 = s.client(port)
  t.ok(await closedAtOnce(c3), 'with both full, the third client is closed at once')
  t.equal((await closed)[0].outcome, 'no-backend')
  const c = balancer.counters()
  t.equal(c.noBackend, 1, 'counted as noBackend')
  t.equal(c.rejected, 0, 'not as rejected')
  t.equal(c.connectErrors, 0, 'no connect was attempted')
  t.equal(a.accepted + b.accepted, 2)

  // A slot on A frees up: `first` sends the next client there again.
  const done = once<[SessionCloseEvent]>(balancer, 'sessionClose')
  c1.socket.end()
  await done
  const c4 = await s.connect(port)
  t.ok(await served(c4, 4))
  t.equal(a.accepted, 2, 'A takes sessions again once below its limit')
})
