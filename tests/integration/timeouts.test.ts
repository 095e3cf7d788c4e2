/**
 * Timeouts: an idle client (`clientTimeout`), a backend that accepts and then says nothing
 * (`serverTimeout`), and a backend whose connect never completes (`connectTimeout`, with a loopback
 * listener whose accept queue is full: see `blackholeServer()`).
 */
import t from 'tap'
import type { BackendFailureEvent, SessionCloseEvent } from '../../lib/balancer.js'
import { oneListener, scope } from '../helpers/balancer.js'
import { pattern } from '../helpers/clients.js'
import { blackholeServer, echoServer, hangServer } from '../helpers/servers.js'
import { once, within } from '../helpers/wait.js'

t.test('clientTimeout closes an idle client', async (t) => {
  const s = scope(t)
  const echo = await s.server(echoServer())
  const { balancer, port } = await s.balancer(oneListener([echo], { clientTimeout: 150, serverTimeout: 0 }))
  const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
  const client = await s.connect(port)
  const data = pattern(100)
  t.ok((await client.roundTrip(data)).equals(data), 'the session works before going idle')
  const idleFrom = Date.now()
  await within(client.closed, 'idle client closed', 5000)
  const idle = Date.now() - idleFrom
  t.ok(idle >= 100, `closed after ${idle} ms idle (clientTimeout 150)`)
  const [event] = await closed
  t.equal(event.outcome, 'client-timeout')
  t.equal(balancer.counters().clientTimeouts, 1)
  await within(
    new Promise<void>((resolve) =>
      echo.connections === 0 ? resolve() : echo.once('disconnect', () => resolve())
    ),
    'backend connection closed too'
  )
  t.equal(echo.connections, 0, 'the server connection went with it')
})

t.test('serverTimeout closes a session whose backend hangs', async (t) => {
  const s = scope(t)
  const hang = await s.server(hangServer())
  const { balancer, port } = await s.balancer(oneListener([hang], { clientTimeout: 0, serverTimeout: 150 }))
  const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
  const client = await s.connect(port)
  client.socket.write('hello?')
  await within(client.closed, 'client closed after the server timeout', 5000)
  const [event] = await closed
  t.equal(event.outcome, 'server-timeout')
  t.equal(event.backend, 'hang')
  const c = balancer.counters()
  t.equal(c.serverTimeouts, 1)
  t.equal(c.clientTimeouts, 0)
  t.equal(c.active, 0)
})

t.test('connectTimeout: a connect that never completes fails over, or closes the client', async (t) => {
  const s = scope(t)
  const hole = await s.server(blackholeServer())

  await t.test('with no other backend: client closed, connect-failed', async (t) => {
    const { balancer, port } = await s.balancer(oneListener([hole], { connectTimeout: 150, retries: 0 }))
    const failure = once<[BackendFailureEvent]>(balancer, 'backendFailure')
    const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
    const started = Date.now()
    const client = s.client(port)
    const [event] = await failure
    const took = Date.now() - started
    t.equal(
      (event.error as { code?: string }).code,
      'ERR_BATON_CONNECT_TIMEOUT',
      'the failure is a connect timeout'
    )
    t.equal(event.backend, 'blackhole')
    t.ok(took >= 120 && took < 2000, `it took ${took} ms (connectTimeout 150)`)
    await within(client.closed, 'client closed', 2000)
    t.equal((await closed)[0].outcome, 'connect-failed')
    const c = balancer.counters()
    t.equal(c.connectErrors, 1)
    t.equal(c.noBackend, 1)
    t.equal(
      balancer.listenerSnapshots()[0]!.backends[0]!.active,
      0,
      'the timed-out connect gave its slot back'
    )
  })

  await t.test('with an echo backend behind it: the client is served', async (t) => {
    const echo = await s.server(echoServer())
    const { balancer, port } = await s.balancer(
      oneListener([hole, echo], { balance: 'first', connectTimeout: 150, retries: 1 })
    )
    const failure = once<[BackendFailureEvent]>(balancer, 'backendFailure')
    const client = await s.connect(port)
    const data = pattern(10_000)
    const reply = await client.roundTrip(data)
    t.ok(reply.equals(data), 'echo came back through the second backend')
    t.equal((await failure)[0].backend, 'blackhole')
    const [session] = balancer.sessions()
    t.same(session!.backends, ['blackhole', 'echo'], 'the session history shows both')
    t.equal(balancer.counters().retries, 1)
  })
})
