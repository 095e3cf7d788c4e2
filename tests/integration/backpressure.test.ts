/**
 * Backpressure: a reader that does not keep up must stop its writer, with Baton holding no more
 * than a socket buffer or so in between, and the data must still arrive intact afterwards.
 *
 * What is measured is Baton's own user-space buffering (Node's writable queue towards the slow
 * side plus the readable queue of the fast side) and the process RSS; the kernel's socket buffers
 * (several MiB on loopback) are allowed to fill, which is why the writer stalls only after a while.
 */
import { randomBytes } from 'node:crypto'
import type { Socket } from 'node:net'
import t from 'tap'
import type { Balancer } from '../../lib/balancer.js'
import type { Session } from '../../lib/session.js'
import { oneListener, scope } from '../helpers/balancer.js'
import { sha256, sinkServer, streamServer, type Digest } from '../helpers/servers.js'
import { BULK_MS, once, until, within } from '../helpers/wait.js'

const MiB = 1024 * 1024
/** Baton's user-space queues for one session: a high-water mark plus a chunk on each side, or so. */
const BUFFER_BOUND = 1 * MiB
const RSS_BOUND = 32 * MiB

function onlySession(balancer: Balancer): { client: Socket; server: Socket; session: Session } {
  const entries = [...balancer.table.values()]
  if (entries.length !== 1 || entries[0]!.server === undefined)
    throw new Error('expected one connected session')
  return { client: entries[0]!.client, server: entries[0]!.server, session: entries[0] as Session }
}

/**
 * What Baton holds for the session and whether it stopped reading the fast side. The JavaScript
 * plane: the slow side's writable queue plus the fast side's readable one, and the fast socket
 * paused. The native plane: the bytes in its pipe towards the slow side, which it fills only when
 * empty, so a pipe with bytes in it means the fast side is not read.
 */
function held(
  session: Session,
  toSlow: Socket,
  fromFast: Socket,
  towards: 'client' | 'server'
): { buffered: number; stopped: boolean } {
  const st = session.np?.attached === true ? session.np.read() : undefined
  if (st === undefined)
    return { buffered: toSlow.writableLength + fromFast.readableLength, stopped: fromFast.isPaused() }
  const pending = towards === 'client' ? st.pendingToClient : st.pendingToServer
  return { buffered: st.pendingToClient + st.pendingToServer, stopped: pending > 0 }
}

/**
 * Wait until `flushed()` (bytes the writer got into the kernel) has not moved for `turns` polls
 * while the writer is blocked: the pipe through Baton is full and stays full.
 */
async function stalled(
  what: string,
  blocked: () => boolean,
  flushed: () => number,
  turns = 20
): Promise<void> {
  let last = -1
  let still = 0
  await until(
    () => {
      const now = flushed()
      still = blocked() && now === last ? still + 1 : 0
      last = now
      return still >= turns
    },
    what,
    { timeoutMs: BULK_MS / 2, intervalMs: 5 }
  )
}

t.test('slow client: the backend is stopped, Baton buffers stay bounded, all data arrives', async (t) => {
  const s = scope(t)
  const payload = randomBytes(64 * MiB)
  const server = await s.server(streamServer(payload))
  const { balancer, port } = await s.balancer(oneListener([server]))
  const rssBefore = process.memoryUsage().rss

  // The client connects and reads nothing (a net.Socket with no 'data' listener fills its 16 KiB
  // readable buffer and stops).
  const client = await s.connect(port)
  await stalled(
    'backend writes stall behind the unread client',
    () => server.waiting,
    () => server.flushed
  )

  const { client: toClient, server: fromServer, session } = onlySession(balancer)
  const { buffered, stopped } = held(session, toClient, fromServer, 'client')
  t.ok(server.blockedCount > 0, 'the backend saw write() return false')
  t.ok(
    server.flushed < payload.length,
    `the backend is stuck at ${server.flushed} of ${payload.length} bytes`
  )
  t.ok(stopped, 'Baton stopped reading from the backend')
  t.ok(buffered <= BUFFER_BOUND, `Baton holds ${buffered} bytes for the session (bound ${BUFFER_BOUND})`)
  const rssGrowth = process.memoryUsage().rss - rssBefore
  t.ok(
    rssGrowth < RSS_BOUND,
    `RSS grew by ${(rssGrowth / MiB).toFixed(1)} MiB (bound ${RSS_BOUND / MiB} MiB)`
  )

  const got = await client.digest(BULK_MS)
  t.same(got, { bytes: payload.length, sha256: sha256(payload) }, 'the client then reads all 64 MiB intact')
})

t.test('slow backend: the client is stopped, Baton buffers stay bounded, all data arrives', async (t) => {
  const s = scope(t)
  const payload = randomBytes(32 * MiB)
  const sink = await s.server(sinkServer())
  sink.pause()
  const { balancer, port } = await s.balancer(oneListener([sink]))
  const rssBefore = process.memoryUsage().rss

  const client = await s.connect(port)
  let offered = 0
  let blocked = false
  const writing = new Promise<void>((resolve) => {
    const pump = (): void => {
      blocked = false
      while (offered < payload.length) {
        const slice = payload.subarray(offered, offered + 64 * 1024)
        offered += slice.length
        if (!client.socket.write(slice)) {
          blocked = true
          client.socket.once('drain', pump)
          return
        }
      }
      client.socket.end()
      resolve()
    }
    pump()
  })
  await stalled(
    'client writes stall behind the paused backend',
    () => blocked,
    () => offered - client.socket.writableLength
  )

  const { client: fromClient, server: toServer, session } = onlySession(balancer)
  const { buffered, stopped } = held(session, toServer, fromClient, 'server')
  t.ok(offered < payload.length, `the client is stuck at ${offered} of ${payload.length} bytes`)
  t.ok(stopped, 'Baton stopped reading from the client')
  t.ok(buffered <= BUFFER_BOUND, `Baton holds ${buffered} bytes for the session (bound ${BUFFER_BOUND})`)
  const rssGrowth = process.memoryUsage().rss - rssBefore
  t.ok(
    rssGrowth < RSS_BOUND,
    `RSS grew by ${(rssGrowth / MiB).toFixed(1)} MiB (bound ${RSS_BOUND / MiB} MiB)`
  )

  const digest = once<[Digest]>(sink, 'digest', { timeoutMs: BULK_MS })
  sink.resume()
  await within(writing, 'the client to finish writing', BULK_MS)
  const [got] = await digest
  t.same(got, { bytes: payload.length, sha256: sha256(payload) }, 'the backend then reads all 32 MiB intact')
})
