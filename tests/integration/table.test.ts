/**
 * The connection table as `sessions()` shows it: one entry per live session with a unique id, the
 * client's address, the current backend and server connection, the history of backends, and bytes.
 */
import t from 'tap'
import type { SessionCloseEvent } from '../../lib/balancer.js'
import { oneListener, scope } from '../helpers/balancer.js'
import { pattern } from '../helpers/clients.js'
import { echoServer, refusedPort } from '../helpers/servers.js'
import { collect, within } from '../helpers/wait.js'

t.test('sessions() lists each live session with its client, backend and history', async (t) => {
  const s = scope(t)
  const dead = await s.server(refusedPort('dead'))
  const live = await s.server(echoServer('live'))
  const { balancer, port } = await s.balancer(
    oneListener([dead, live], { name: 'front', balance: 'first', passive: { failures: 100 } })
  )
  const clients = await Promise.all([0, 1, 2].map(() => s.connect(port)))
  const sizes = [100, 2000, 30_000]
  for (const [i, c] of clients.entries()) {
    const data = pattern(sizes[i]!, i + 1)
    t.ok((await c.roundTrip(data)).equals(data), `client ${i} served`)
  }

  const table = balancer.sessions()
  t.equal(table.length, 3, 'one entry per session')
  t.equal(new Set(table.map((e) => e.id)).size, 3, 'ids are unique')
  for (const [i, c] of clients.entries()) {
    const entry = table.find((e) => e.client === `127.0.0.1:${c.socket.localPort}`)
    if (entry === undefined) {
      t.fail(`no entry for client ${i} (127.0.0.1:${c.socket.localPort})`)
      continue
    }
    t.equal(entry.listener, 'front')
    t.equal(entry.state, 'open')
    t.equal(entry.backend, 'live', 'current backend')
    t.same(entry.backends, ['dead', 'live'], 'history: the refused backend, then the live one')
    const serverSide = [...live.sockets].find(
      (sock) => `${sock.remoteAddress}:${sock.remotePort}` === entry.server
    )
    t.ok(serverSide !== undefined, `the server connection ${entry.server} is one the backend holds`)
    t.equal(entry.bytesFromClient, sizes[i], 'bytes from the client')
    t.equal(entry.bytesToClient, sizes[i], 'bytes to the client')
    t.ok(entry.durationMs >= 0 && entry.startedAt <= Date.now())
  }

  const closes = collect<SessionCloseEvent>(balancer, 'sessionClose', 3)
  for (const c of clients) c.socket.end()
  const closed = await closes
  t.same(new Set(closed.map((e) => e.id)), new Set(table.map((e) => e.id)), 'the same ids close')
  t.same(balancer.sessions(), [], 'the table is empty once they have closed')
})

t.test('ids stay unique across many sessions, and are never reused', async (t) => {
  const s = scope(t)
  const echo = await s.server(echoServer())
  const { balancer, port } = await s.balancer(oneListener([echo]))
  const seen = new Set<number>()
  balancer.on('sessionOpen', (e: { id: number }) => {
    if (seen.has(e.id)) t.fail(`id ${e.id} reused`)
    seen.add(e.id)
  })
  for (let round = 0; round < 5; round++) {
    const batch = await Promise.all(Array.from({ length: 10 }, () => s.connect(port)))
    const ids = balancer.sessions().map((e) => e.id)
    if (new Set(ids).size !== ids.length) t.fail(`duplicate ids in round ${round}`)
    const closes = collect(balancer, 'sessionClose', batch.length)
    for (const c of batch) c.destroy()
    await within(closes, `round ${round} closed`)
  }
  t.equal(seen.size, 50, '50 sessions, 50 distinct ids')
})
