/**
 * The balancer's events: `sessionOpen` and `sessionClose` (with `outcome`) for every session, and
 * `backendFailure` (with `down` on the failure that starts a cool-down).
 */
import t from 'tap'
import type { BackendFailureEvent, SessionCloseEvent } from '../../lib/balancer.js'
import type { SessionSnapshot } from '../../lib/table.js'
import { oneListener, scope } from '../helpers/balancer.js'
import { pattern } from '../helpers/clients.js'
import { echoServer, refusedPort } from '../helpers/servers.js'
import { collect, once, until, within } from '../helpers/wait.js'

t.test('sessionOpen and sessionClose for a normal session', async (t) => {
  const s = scope(t)
  const echo = await s.server(echoServer())
  const { balancer, port } = await s.balancer(oneListener([echo], { name: 'front' }))
  const opened = once<[SessionSnapshot]>(balancer, 'sessionOpen')
  const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')

  const client = await s.connect(port)
  const [open] = await opened
  t.equal(open.listener, 'front')
  t.equal(open.state, 'connecting', 'opened before the server connection is up')
  t.equal(open.client, `127.0.0.1:${client.socket.localPort}`)
  t.equal(typeof open.id, 'number')

  const data = pattern(5000)
  t.ok((await client.roundTrip(data)).equals(data))
  client.socket.end()
  const [close] = await closed
  t.equal(close.id, open.id, 'the same session')
  t.equal(close.outcome, 'done')
  t.equal(close.error, undefined)
  t.equal(close.backend, 'echo')
  t.same(close.backends, ['echo'])
  t.equal(close.bytesFromClient, data.length)
  t.equal(close.bytesToClient, data.length)
})

t.test('sessionClose carries the outcome of a failed session', async (t) => {
  const s = scope(t)
  const dead = await s.server(refusedPort('dead'))
  const { balancer, port } = await s.balancer(oneListener([dead], { retries: 0 }))
  const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
  const client = s.client(port)
  await within(client.closed, 'client closed')
  const [close] = await closed
  t.equal(close.outcome, 'connect-failed')
  t.ok(close.error !== undefined && close.error.length > 0, `with the error message (${close.error})`)
})

t.test('backendFailure for each refused connect, with down on the one that ejects', async (t) => {
  const s = scope(t)
  const dead = await s.server(refusedPort('dead'))
  const { balancer, port } = await s.balancer(
    oneListener([dead], { name: 'front', retries: 5, passive: { failures: 2, cooldown: 60_000 } })
  )
  const failures = collect<BackendFailureEvent>(balancer, 'backendFailure', 2)
  const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
  s.client(port)
  const [first, second] = await failures
  t.match(first, { listener: 'front', backend: 'dead', down: false })
  t.match(second, { listener: 'front', backend: 'dead', down: true })
  t.ok(first!.error instanceof Error)
  t.equal((first!.error as NodeJS.ErrnoException).code, 'ECONNREFUSED')
  const [close] = await closed
  t.equal(close.outcome, 'no-backend', 'once down, the only backend is not retried: no backend left')
  t.equal(balancer.counters().connectErrors, 2, 'retries stop at the ejection, not at `retries`')

  // While down, new sessions fail at once with no connect attempt and no backendFailure.
  balancer.on('backendFailure', () => t.fail('no backendFailure during the cool-down'))
  const next = once<[SessionCloseEvent]>(balancer, 'sessionClose')
  s.client(port)
  t.equal((await next)[0].outcome, 'no-backend')
  t.equal(balancer.counters().connectErrors, 2)
})

t.test('no listeners, no cost: a balancer with no event listeners still counts', async (t) => {
  const s = scope(t)
  const echo = await s.server(echoServer())
  const { balancer, port } = await s.balancer(oneListener([echo]))
  t.equal(balancer.listenerCount('sessionOpen') + balancer.listenerCount('sessionClose'), 0)
  const client = await s.connect(port)
  const data = pattern(100)
  t.ok((await client.roundTrip(data)).equals(data))
  client.socket.end()
  await within(client.closed, 'client closed')
  await until(() => balancer.counters().active === 0, 'the session to end')
  t.equal(balancer.counters().accepted, 1)
  t.equal(balancer.counters().bytesFromClient, 100)
})
