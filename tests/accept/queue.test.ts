/**
 * The listener's queue (lib/accept/queue.ts): with every backend full, a new client waits for a
 * slot up to `queue.timeout` instead of being closed at once; first come, first served; bounded
 * by `queue.max`; each refusal counted per reason.
 */
import t from 'tap'
import { oneListener, scope } from '../helpers/balancer.js'
import { echoServer } from '../helpers/servers.js'
import { until, within } from '../helpers/wait.js'

t.test('a client waits for a full backend and is served when a slot frees, in arrival order', async (t) => {
  const s = scope(t)
  const backend = await s.server(echoServer())
  const { balancer, port } = await s.balancer(
    oneListener([{ endpoint: backend, maxConnections: 1 }], { queue: { timeout: '10s' } })
  )
  const l = balancer.frontends[0]!
  const a = await s.connect(port)
  await until(() => backend.connections === 1, 'a holds the only slot')
  const b = await s.connect(port)
  b.socket.write('b-first')
  await until(() => l.queued === 1, 'b waits')
  const c = await s.connect(port)
  c.socket.write('c')
  await until(() => l.queued === 2, 'c waits behind b')
  t.notOk(b.isClosed || c.isClosed, 'neither was closed at once')
  a.destroy()
  t.equal((await b.read(7)).toString(), 'b-first', 'b (first in) served once a left, with the bytes it sent while waiting')
  t.equal(l.queued, 1, 'c still waits')
  b.destroy()
  t.equal((await c.read(1)).toString(), 'c', 'then c')
  t.equal(l.counters.refused, 0, 'nobody refused')
})

t.test('past queue.timeout the client is closed, counted queue-timeout; past queue.max, queue-full', async (t) => {
  const s = scope(t)
  const backend = await s.server(echoServer())
  const { balancer, port } = await s.balancer(
    oneListener([{ endpoint: backend, maxConnections: 1 }], { queue: { timeout: '200ms', max: 1 } })
  )
  const l = balancer.frontends[0]!
  await s.connect(port)
  await until(() => backend.connections === 1, 'slot taken')
  const started = Date.now()
  const waiter = await s.connect(port)
  await until(() => l.queued === 1, 'waiting')
  const over = s.client(port)
  await within(over.closed, 'queue full: closed at once')
  t.equal(l.refusals.counts.get('queue-full'), 1, 'queue-full counted')
  await within(waiter.closed, 'waiter closed at the timeout')
  t.ok(Date.now() - started >= 190, 'not before queue.timeout')
  t.equal(l.refusals.counts.get('queue-timeout'), 1, 'queue-timeout counted')
  t.equal(l.queued, 0)
})

t.test('without queue, or with every backend down rather than full, no client waits', async (t) => {
  const s = scope(t)
  const backend = await s.server(echoServer())
  const { balancer, port } = await s.balancer(oneListener([{ endpoint: backend, maxConnections: 1 }]))
  await s.connect(port)
  await until(() => backend.connections === 1, 'slot taken')
  const b = s.client(port)
  await within(b.closed, 'closed at once without a queue')
  t.equal(balancer.frontends[0]!.counters.noBackend, 1)
  const q = await s.balancer(oneListener([backend], { queue: { timeout: '10s' } }))
  const api = q.balancer.frontends[0]!
  api.backends[0]!.admin = 'maint'
  const c = s.client(q.port)
  await within(c.closed, 'closed at once: the backend is in maintenance, not full')
  t.equal(api.queued, 0)
})
