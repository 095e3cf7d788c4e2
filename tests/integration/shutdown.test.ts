/**
 * `close(grace)`: stop accepting at once, let live sessions finish within the grace period, then
 * end whatever is left; the promise resolves when every session is gone.
 */
import t from 'tap'
import type { SessionCloseEvent } from '../../lib/balancer.js'
import { closeHard, oneListener, scope } from '../helpers/balancer.js'
import { Client, pattern } from '../helpers/clients.js'
import { echoServer } from '../helpers/servers.js'
import { once, settlesWithin, within } from '../helpers/wait.js'

t.test('a live session finishes within the grace; close() then resolves', async (t) => {
  const s = scope(t)
  const echo = await s.server(echoServer())
  const { balancer, port } = await s.balancer(oneListener([echo]))
  const client = await s.connect(port)
  const closedEvent = once<[SessionCloseEvent]>(balancer, 'sessionClose')

  const started = Date.now()
  const closing = balancer.close(10_000)
  const data = pattern(64 * 1024)
  t.ok((await client.roundTrip(data)).equals(data), 'the session keeps working during the grace')
  client.socket.end()
  await within(closing, 'close() after the last session ended', 5000)
  t.ok(Date.now() - started < 5000, 'close() resolved as soon as the session was done, not at the grace')
  t.equal((await closedEvent)[0].outcome, 'done', 'the session ended normally')
  t.equal(balancer.sessions().length, 0)
})

t.test('no new connections are accepted once close() has started', async (t) => {
  const s = scope(t)
  const echo = await s.server(echoServer())
  const { balancer, port } = await s.balancer(oneListener([echo]))
  const live = await s.connect(port) // keeps the balancer in its grace period
  void balancer.close(10_000)
  const late = new Client(port)
  const end = await within(late.closed, 'the late client is turned away', 2000)
  t.equal(end.error, 'ECONNREFUSED', 'the listening socket is closed: connect refused')
  t.equal(echo.accepted, 1, 'the backend saw only the live session')
  t.equal(balancer.counters().accepted, 1)
  live.destroy()
})

t.test('a session that outlives the grace is ended when it runs out', async (t) => {
  const s = scope(t)
  const echo = await s.server(echoServer())
  const { balancer, port } = await s.balancer(oneListener([echo]))
  const client = await s.connect(port) // idle: would live for clientTimeout (10 min)
  const closedEvent = once<[SessionCloseEvent]>(balancer, 'sessionClose', { timeoutMs: 5000 })
  const grace = 200
  const started = Date.now()
  const closing = balancer.close(grace)
  const inTime = await settlesWithin(closing, grace + 1500)
  t.ok(inTime, `close(${grace}) resolved within ${grace} ms + 1.5 s`)
  if (!inTime) {
    // Free the session so the file can end, and stop here: the rest would only repeat the failure.
    client.destroy()
    await closeHard(balancer)
    return
  }
  const took = Date.now() - started
  t.ok(took >= grace - 10, `not before the grace ran out (${took} ms)`)
  await within(client.closed, 'the client is closed', 2000)
  t.equal((await closedEvent)[0].outcome, 'shutdown')
  t.equal(balancer.sessions().length, 0)
  t.equal(balancer.counters().active, 0)
})

t.test('close() with no sessions resolves at once and is idempotent', async (t) => {
  const s = scope(t)
  const echo = await s.server(echoServer())
  const { balancer } = await s.balancer(oneListener([echo]))
  const first = balancer.close(60_000)
  t.equal(balancer.close(5), first, 'a second call returns the same promise')
  t.ok(await settlesWithin(first, 2000), 'resolved without waiting for the grace')
})
