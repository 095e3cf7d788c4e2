/**
 * Redispatch: a refused connect is retried on another backend before the client notices; when no
 * backend is left, the client is closed at once rather than left hanging.
 */
import t from 'tap'
import type { BackendFailureEvent, SessionCloseEvent } from '../../lib/balancer.js'
import { oneListener, scope } from '../helpers/balancer.js'
import { pattern } from '../helpers/clients.js'
import { echoServer, refusedPort } from '../helpers/servers.js'
import { collect, once, within } from '../helpers/wait.js'

t.test('refused backend: 20 sequential clients all served by the other one', async (t) => {
  const s = scope(t)
  const dead = await s.server(refusedPort('dead'))
  const live = await s.server(echoServer('live'))
  // Passive marking off in practice (100 failures), so every pick of `dead` is a refused connect.
  const { balancer, port } = await s.balancer(
    oneListener([dead, live], { balance: 'round-robin', passive: { failures: 100 } })
  )
  const failures: BackendFailureEvent[] = []
  balancer.on('backendFailure', (e: BackendFailureEvent) => failures.push(e))

  for (let i = 0; i < 20; i++) {
    const client = await s.connect(port)
    const data = pattern(1000, i + 1)
    const reply = await client.roundTrip(data)
    if (!reply.equals(data)) t.fail(`client ${i} got a different echo`)
    client.socket.end()
    await within(client.closed, `client ${i} close`)
    if (client.error !== undefined) t.fail(`client ${i} saw ${client.error}`)
  }
  t.equal(live.accepted, 20, 'every client reached the live backend')

  const c = balancer.counters()
  t.ok(c.connectErrors > 0, `connect errors were counted (${c.connectErrors})`)
  t.ok(c.retries > 0, `retries were counted (${c.retries})`)
  t.equal(c.retries, c.connectErrors, 'each refused connect was retried exactly once')
  t.equal(c.noBackend, 0)
  t.equal(c.clientErrors + c.serverErrors, 0, 'no session ended in error')
  t.ok(
    failures.length === c.connectErrors && failures.every((f) => f.backend === 'dead'),
    'each failure named dead'
  )
  t.equal((failures[0]?.error as NodeJS.ErrnoException | undefined)?.code, 'ECONNREFUSED')
  const [snap] = balancer.listenerSnapshots()
  t.equal(snap!.backends[0]!.counters.connectErrors, c.connectErrors, 'counted against dead')
  t.equal(snap!.backends[1]!.counters.sessions, 20, 'live has 20 sessions')
})

t.test('every backend refused: the client is closed at once, noBackend counted', async (t) => {
  const s = scope(t)
  const a = await s.server(refusedPort('a'))
  const b = await s.server(refusedPort('b'))
  const { balancer, port } = await s.balancer(oneListener([a, b]))
  const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')

  const client = s.client(port)
  client.socket.write('anyone there?')
  const end = await within(client.closed, 'client closed by Baton', 2000)
  t.ok(end.ended || end.error !== undefined, 'the client saw its connection end')
  const [event] = await closed
  t.equal(event.outcome, 'no-backend')
  t.same(event.backends, ['a', 'b'], 'both backends were tried, in order')

  const c = balancer.counters()
  t.equal(c.noBackend, 1, 'noBackend counted once')
  t.equal(c.connectErrors, 2, 'one connect error per backend')
  t.equal(c.active, 0)
})

t.test('retries counts connects actually re-tried, not picks that found nothing', async (t) => {
  const s = scope(t)
  const a = await s.server(refusedPort('a'))
  const b = await s.server(refusedPort('b'))
  const { balancer, port } = await s.balancer(oneListener([a, b], { passive: { failures: 100 } }))
  const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
  s.client(port)
  await closed
  const c = balancer.counters()
  t.equal(c.connectErrors, 2, 'two connects: a, then b')
  // Documented as "Connects re-tried on another backend": only the connect to b was a retry.
  // The third pick (every backend failed) finds nothing and starts no connect.
  t.equal(c.retries, 1, 'one connect was re-tried')
})

t.test('retries: 0 — the first refused connect closes the client', async (t) => {
  const s = scope(t)
  const dead = await s.server(refusedPort('dead'))
  const live = await s.server(echoServer('live'))
  const { balancer, port } = await s.balancer(oneListener([dead, live], { balance: 'first', retries: 0 }))
  const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
  const client = s.client(port)
  await within(client.closed, 'client closed by Baton', 2000)
  const [event] = await closed
  t.equal(event.outcome, 'connect-failed')
  t.equal(live.accepted, 0, 'the live backend was not tried')
  const c = balancer.counters()
  t.equal(c.connectErrors, 1)
  t.equal(c.retries, 0)
  t.equal(c.noBackend, 1)
})

t.test('a single refused backend is retried `retries` times, then the client is closed', async (t) => {
  const s = scope(t)
  const dead = await s.server(refusedPort('dead'))
  const { balancer, port } = await s.balancer(oneListener([dead], { retries: 2, passive: { failures: 100 } }))
  const failures = collect<BackendFailureEvent>(balancer, 'backendFailure', 3)
  const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
  const client = s.client(port)
  await within(client.closed, 'client closed by Baton', 2000)
  t.equal((await failures).length, 3, 'one attempt plus two retries')
  t.equal((await closed)[0].outcome, 'connect-failed')
  t.equal(balancer.counters().connectErrors, 3)
})

t.test('many clients at once against [refused, echo] all get through', async (t) => {
  const s = scope(t)
  const dead = await s.server(refusedPort('dead'))
  const live = await s.server(echoServer('live'))
  const { balancer, port } = await s.balancer(
    oneListener([dead, live], { balance: 'round-robin', passive: { failures: 100 } })
  )
  const results = await Promise.all(
    Array.from({ length: 40 }, async (_, i) => {
      const client = s.client(port)
      const data = pattern(5000, i + 100)
      const reply = await client.roundTrip(data)
      client.socket.end()
      await within(client.closed, `client ${i} close`)
      return reply.equals(data) && client.error === undefined
    })
  )
  t.equal(results.filter(Boolean).length, 40, 'all 40 concurrent clients got their echo')
  t.ok(balancer.counters().connectErrors > 0)
  t.equal(balancer.counters().noBackend, 0)
})
