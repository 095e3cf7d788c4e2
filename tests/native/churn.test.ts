/**
 * No leak under churn on the native plane, through Baton (issue 12, "What must be true" 3): a
 * phase of new connections per request, a phase of bulk transfers, then idle. Afterwards the
 * balancer's table, the plane's sessions and pipes in use are back to zero, the open descriptors
 * back to their level before, and RSS within a bound. Bounds, not timings: each phase runs for a
 * duration, and what is checked is what is left once it is over.
 *
 * 10 s per phase in `npm test`; `BATON_CHURN_SECONDS=60` runs the 60 s per phase
 * (`npm run test:churn`, which also raises tap's per-file timeout).
 *
 * Half the short sessions end with the client's FIN (the plane passes it on), half with the
 * server's (a held FIN: the crash check runs and lets it go on), so both end paths are churned.
 */
import { randomBytes } from 'node:crypto'
import type { Socket } from 'node:net'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t from 'tap'
import { nativeSessions } from '../../lib/native/link.js'
import { backendsOf, startBalancer } from '../helpers/balancer.js'
import { connectClient } from '../helpers/clients.js'
import { echoServer, TestServer } from '../helpers/servers.js'
import { until, within } from '../helpers/wait.js'
import { openFds, skip, thePlane } from './helpers/native-proxy.js'

const SECONDS = Number(process.env.BATON_CHURN_SECONDS ?? 10)
const PHASE_MS = SECONDS * 1000
const CONCURRENCY = 32
const BULK_CLIENTS = 4
const MiB = 1024 * 1024
/**
 * RSS may grow by this much over the whole run, from cold: what grows once (V8's young generation
 * up to 32 MiB, compiled code, the allocator's arenas, the test's own clients and bulk buffers).
 */
const RSS_BOUND = 96 * MiB
/**
 * RSS may grow by this much over the second half of the churn phase, once what grows once has:
 * a leak of 1 KiB per session is 16 MiB over the 10 s run's 16,000 sessions of a half.
 */
const HALF_BOUND = 16 * MiB

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

/**
 * Answers one request and closes its side: the server's FIN comes first. A connection that ends
 * without a request (the crash check's probe) is closed too.
 */
function answerAndClose(name = 'answer-and-close'): Promise<TestServer> {
  return new TestServer(name, (socket: Socket) => {
    socket.once('data', (chunk: Buffer) => socket.end(chunk))
    socket.once('end', () => socket.end())
  }).listen()
}

async function settle(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc()
    await new Promise((r) => setTimeout(r, 50))
  }
  return process.memoryUsage().rss
}

t.test(
  `native plane under churn: ${SECONDS} s of connections, ${SECONDS} s of bulk, then idle`,
  { skip },
  async (t) => {
    const plane = thePlane()
    const echo = await echoServer('echo')
    const closer = await answerAndClose('closer')
    t.teardown(() => Promise.all([echo.close(), closer.close()]))
    const { balancer, port } = await startBalancer({
      listeners: [
        { listen: { host: '127.0.0.1', port: 0 }, dataPlane: 'native', backends: backendsOf([echo]) },
        { listen: { host: '127.0.0.1', port: 0 }, dataPlane: 'native', backends: backendsOf([closer]) },
      ],
    })
    t.teardown(() => balancer.close(0))
    t.equal(balancer.frontends[0]!.plane, 'native', 'the listeners run on the native plane')
    const closerPort = balancer.address(1).port

    /** One session, one request: `echo` ends with the client's FIN, `closer` with the server's. */
    const request = async (i: number): Promise<void> => {
      const useCloser = i % 2 === 1
      const client = await connectClient(useCloser ? closerPort : port)
      const req = randomBytes(64 + (i % 1000))
      const reply = await client.roundTrip(req)
      if (!reply.equals(req)) throw new Error(`request ${i}: wrong reply`)
      client.socket.end()
      await within(client.closed, `request ${i}: closed`)
    }

    const quiet = async (what: string): Promise<void> => {
      await until(() => balancer.table.size === 0, `${what}: every session gone from the table`, {
        timeoutMs: 30_000,
      })
      await until(
        () => plane.poolStats().sessions === 0 && plane.poolStats().inUse === 0,
        `${what}: plane idle`
      )
      await until(() => echo.connections === 0 && closer.connections === 0, `${what}: backends idle`)
    }

    /** New connections, one request each, CONCURRENCY at a time, for `ms`: how many. */
    const churn = async (ms: number): Promise<number> => {
      let requests = 0
      const end = Date.now() + ms
      const churner = async (): Promise<void> => {
        while (Date.now() < end) await request(requests++)
      }
      await within(Promise.all(Array.from({ length: CONCURRENCY }, churner)), 'churn phase', ms + 30_000)
      return requests
    }

    /** Bulk both ways through the echo backend, BULK_CLIENTS sessions, for `ms`: bytes moved. */
    const chunk = randomBytes(256 * 1024)
    const bulk = async (ms: number): Promise<number> => {
      let moved = 0
      const bulkUntil = Date.now() + ms
      const one = async (): Promise<void> => {
        const client = await connectClient(port)
        const socket = client.socket
        let received = 0
        socket.on('data', (c: Buffer) => {
          received += c.length
        })
        let sent = 0
        while (Date.now() < bulkUntil) {
          if (!socket.write(chunk)) await new Promise((r) => socket.once('drain', r))
          sent += chunk.length
        }
        await until(() => received === sent, 'every byte echoed', { timeoutMs: 30_000 })
        moved += sent
        socket.end()
        await within(client.closed, 'bulk client closed')
      }
      await within(Promise.all(Array.from({ length: BULK_CLIENTS }, one)), 'bulk phase', ms + 60_000)
      return moved
    }

    // Warm-up: whatever Node and the plane open lazily on their first connections.
    for (let i = 0; i < 4; i++) await request(i)
    await quiet('warm-up')
    plane.configure({ maxIdlePipes: 0 }) // the idle pool is the only descriptors meant to stay
    const fdsBefore = openFds()
    const poolBefore = plane.poolStats()
    plane.configure({ maxIdlePipes: 1024 })
    t.teardown(() => plane.configure({ maxIdlePipes: 1024 }))
    const rssBefore = await settle()

    // Phase 1: a new connection per request, CONCURRENCY at a time, for PHASE_MS, in two halves.
    // What grows once (V8's young generation, compiled code, the allocator's arenas) grows in the
    // first; a leak grows with the sessions, in the second as much as in the first.
    const firstHalf = await churn(PHASE_MS / 2)
    await quiet('first half')
    const rssHalf = await settle()
    const secondHalf = await churn(PHASE_MS / 2)
    await quiet('second half')
    const halfGrowth = (await settle()) - rssHalf
    t.ok(
      halfGrowth < HALF_BOUND,
      `RSS grew by ${(halfGrowth / MiB).toFixed(1)} MiB over the second half's ${secondHalf} sessions ` +
        `(bound ${HALF_BOUND / MiB} MiB)`
    )
    const requests = firstHalf + secondHalf
    t.ok(requests > CONCURRENCY, `${requests} sessions of one request each`)
    const afterChurn = plane.poolStats()
    t.ok(
      afterChurn.created - poolBefore.created <= CONCURRENCY * 3 * 2,
      `pipes are reused: ${afterChurn.created - poolBefore.created} created for ${requests} sessions`
    )

    // Phase 2: bulk both ways through the echo backend, BULK_CLIENTS sessions, for PHASE_MS.
    const moved = await bulk(PHASE_MS)
    t.ok(moved > 0, `${(moved / MiB).toFixed(0)} MiB echoed through the plane`)

    // Idle: everything handed back.
    await quiet('idle')
    t.equal(nativeSessions(), 0, 'no native session left in the link map')
    const pool = plane.poolStats()
    t.equal(pool.inUse, 0, 'no pipe in use')
    t.equal(pool.sessions, 0, 'no plane session')
    t.ok(pool.idle <= pool.maxIdle, `idle pipes within maxIdlePipes (${pool.idle} <= ${pool.maxIdle})`)
    plane.configure({ maxIdlePipes: 0 })
    t.equal(plane.poolStats().idle, poolBefore.idle, 'the idle pool back to its level before')
    await until(() => openFds() <= fdsBefore, `open descriptors back to ${fdsBefore} (now ${openFds()})`)
    t.ok(openFds() <= fdsBefore, `open descriptors back to their level (${openFds()} <= ${fdsBefore})`)
    const rssGrowth = (await settle()) - rssBefore
    t.ok(
      rssGrowth < RSS_BOUND,
      `RSS grew by ${(rssGrowth / MiB).toFixed(1)} MiB over the run (bound ${RSS_BOUND / MiB} MiB)`
    )
    const c = balancer.counters()
    t.equal(c.unrecoverable + c.clientErrors + c.serverErrors + c.localErrors, 0, 'no session failed')
  }
)
