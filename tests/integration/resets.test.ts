/**
 * Resets: a server that resets its connection takes the client's down with it when nothing can be
 * re-sent (counted as `serverErrors`), and a client that resets takes the server connection down
 * (`clientErrors`). Nothing of the session outlives it.
 *
 * Where a reset comes before the server has answered, the default `replay: safe` re-sends the
 * request elsewhere instead (the failover tests' business): the plain-proxy cases here either turn
 * replay off or have the server speak first.
 */
import t from 'tap'
import type { SessionCloseEvent } from '../../lib/balancer.js'
import { oneListener, scope } from '../helpers/balancer.js'
import { pattern } from '../helpers/clients.js'
import { echoServer, resetServer } from '../helpers/servers.js'
import { once, within } from '../helpers/wait.js'

t.test('server resets after reading N bytes (replay off): client closed, serverErrors', async (t) => {
  const s = scope(t)
  const reset = await s.server(resetServer({ afterRead: 1000 }))
  const { balancer, port } = await s.balancer(oneListener([reset], { replay: 'none' }))
  const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
  const resetSeen = once(reset, 'reset')
  const client = await s.connect(port)
  client.socket.write(pattern(4000))
  await resetSeen
  const end = await within(client.closed, 'client closed after the server reset', 3000)
  t.ok(end.ended || end.error !== undefined, `the client's connection ended (${end.error ?? 'FIN'})`)
  const [event] = await closed
  t.equal(event.outcome, 'server-error')
  t.equal(balancer.counters().serverErrors, 1)
  t.equal(balancer.counters().active, 0)
})

t.test('server sends N bytes then resets: client closed, serverErrors', async (t) => {
  const s = scope(t)
  // The server speaks first and the client says nothing: nothing is unanswered, nothing to re-send.
  const greeting = pattern(50_000, 9)
  const reset = await s.server(resetServer({ greeting }))
  const { balancer, port } = await s.balancer(oneListener([reset]))
  const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
  const client = await s.connect(port)
  t.ok((await client.read(greeting.length)).equals(greeting), 'the client got the server bytes')
  reset.resetAll()
  const end = await within(client.closed, 'client closed after the server reset', 3000)
  t.ok(end.ended || end.error !== undefined, `the client's connection ended (${end.error ?? 'FIN'})`)
  const [event] = await closed
  t.equal(event.outcome, 'server-error')
  t.ok(event.error !== undefined, `with the error (${event.error})`)
  t.equal(balancer.counters().serverErrors, 1)
})

t.test('client reset: the server connection is closed too, clientErrors', async (t) => {
  const s = scope(t)
  const echo = await s.server(echoServer())
  const { balancer, port } = await s.balancer(oneListener([echo]))
  const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
  const client = await s.connect(port)
  const data = pattern(1000)
  t.ok((await client.roundTrip(data)).equals(data))
  t.equal(echo.connections, 1)
  const gone = once(echo, 'disconnect')
  client.socket.resetAndDestroy()
  const [event] = await closed
  t.equal(event.outcome, 'client-error')
  await gone
  t.equal(echo.connections, 0, 'the backend connection was closed')
  t.equal(balancer.counters().clientErrors, 1)
})
