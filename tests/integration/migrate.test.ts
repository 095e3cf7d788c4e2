/**
 * Migrate: when a backend goes down (health check) or is set to drain, its live sessions move to
 * another backend at their next clean boundary, unseen by the client — so a backend can be
 * restarted with no client noticing. Also: `onDown: keep`, opaque's default, the ejection cap, and
 * a re-weight rebuilding source-hash's table.
 */
import net from 'node:net'
import t from 'tap'
import { createBalancer, type Balancer } from '../../lib/index.js'
import { body, expectedResponse, frame, frameServer, RecordingClient } from '../helpers/failover-servers.js'
import { refusedPort, type Endpoint } from '../helpers/servers.js'
import { until } from '../helpers/wait.js'
import { withPlane } from '../helpers/plane.js'

const CLIENTS = 24
const REQUESTS = 30

/** A client that sends one request at a time and checks each response; resolves with its errors. */
async function conversation(
  port: number,
  id: number,
  midway: { at: number; reached: () => void; go: Promise<void> }
): Promise<string[]> {
  const errors: string[] = []
  const c = new RecordingClient(port)
  c.socket.on('close', () => errors.push(`client ${id}: closed early`))
  let expected = 0
  for (let i = 0; i < REQUESTS; i++) {
    if (i === midway.at) {
      midway.reached()
      await midway.go
    }
    const b = body(`c${id}-r${i}`)
    const want = expectedResponse(b)
    c.write(frame(b))
    expected += want.length
    const data = await c.receivedAtLeast(expected, `client ${id} response ${i}`).catch((e: Error) => {
      errors.push(e.message)
      return c.data
    })
    if (!data.subarray(expected - want.length, expected).equals(want)) {
      errors.push(`client ${id}: response ${i} wrong`)
      break
    }
  }
  c.socket.removeAllListeners('close')
  c.destroy()
  if (c.error !== undefined) errors.push(`client ${id}: ${c.error}`)
  return errors
}

interface Run {
  errors: string[]
  /** Sessions on backend 0 when the clients were paused half-way, before the change. */
  before: number
  /** ... and once the change had been made and the clients had each sent one more request. */
  after: number
}

/**
 * CLIENTS conversations through `balancer`; half-way, with every client paused between requests,
 * `change()` runs; then they carry on. `settled` is awaited before counting sessions on backend 0.
 */
async function runWith(
  balancer: Balancer,
  change: () => Promise<void>,
  settled: () => Promise<void> = async () => {}
): Promise<Run> {
  const port = balancer.address().port
  let paused = 0
  let allPaused!: () => void
  const reachedAll = new Promise<void>((r) => (allPaused = r))
  let go!: () => void
  const goPromise = new Promise<void>((r) => (go = r))
  const midway = {
    at: REQUESTS / 2,
    reached: () => {
      if (++paused === CLIENTS) allPaused()
    },
    go: goPromise,
  }
  const runs = Array.from({ length: CLIENTS }, (_, i) => conversation(port, i, midway))
  await reachedAll
  const b0 = balancer.frontends[0]!.backends[0]!
  const before = b0.active
  await change()
  await settled()
  const after = b0.active
  go()
  const errors = (await Promise.all(runs)).flat()
  return { errors, before, after }
}

async function servers(t: Tap, n = 3) {
  const list = await Promise.all(Array.from({ length: n }, (_, i) => frameServer(`s${i}`)))
  t.teardown(() => Promise.all(list.map((s) => s.close())))
  return list
}

type Tap = { teardown(fn: () => unknown): void }

async function balancerFor(t: Tap, backends: readonly Endpoint[], extra: Record<string, unknown> = {}) {
  const balancer = createBalancer(
    withPlane({
      listeners: [
        {
          listen: '127.0.0.1:0',
          protocol: 'length-prefixed',
          framing: { lengthBytes: 4 },
          balance: 'round-robin',
          backends: backends.map((s) => ({ host: s.host, port: s.port, name: s.name })),
          ...extra,
        },
      ],
      log: { level: 'silent' },
    })
  )
  await balancer.listen()
  t.teardown(() => balancer.close(0))
  return balancer
}

t.test('drain (onDrain: migrate, the default with a framer): sessions leave between requests', async (t) => {
  const [s0, s1, s2] = await servers(t)
  const balancer = await balancerFor(t, [s0!, s1!, s2!])
  const b0 = balancer.frontends[0]!.backends[0]!
  const run = await runWith(balancer, async () => {
    b0.admin = 'drain'
  })
  t.same(run.errors, [], 'no client saw anything')
  t.ok(run.before >= CLIENTS / 3 - 1, `backend 0 had its share of sessions (${run.before})`)
  t.equal(run.after, 0, 'every session left backend 0 at once: each was between requests')
  t.equal(balancer.counters().migrations, run.before, 'one migration per session')
  t.equal(balancer.counters().failovers, 0, 'no failover was needed')
})

t.test('drain, then restart the backend: no client notices', async (t) => {
  const [s0, s1, s2] = await servers(t)
  const balancer = await balancerFor(t, [s0!, s1!, s2!])
  const b0 = balancer.frontends[0]!.backends[0]!
  const run = await runWith(balancer, async () => {
    b0.admin = 'drain'
    await until(() => b0.active === 0, 'backend 0 drained')
    await s0!.close() // "restart": down with every connection it had
    await s0!.listen(s0!.port)
    b0.admin = 'ready'
  })
  t.same(run.errors, [], 'no client saw anything')
  t.equal(balancer.counters().unrecoverable, 0)
})

t.test(
  'health check down (onDown: migrate): sessions leave the backend while it still answers',
  async (t) => {
    const [s0, s1, s2] = await servers(t)
    const balancer = await balancerFor(t, [s0!, s1!, s2!], {
      healthCheck: { type: 'tcp', interval: '100ms', fall: 1, rise: 1 },
    })
    const b0 = balancer.frontends[0]!.backends[0]!
    const run = await runWith(
      balancer,
      async () => {
        // Stop accepting (the check fails) while the connections it has keep working.
        s0!.stopAccepting()
      },
      () => until(() => !b0.checkedUp, 'backend 0 checked down')
    )
    t.same(run.errors, [], 'no client saw anything')
    t.ok(run.before > 0, `backend 0 had sessions (${run.before})`)
    t.equal(run.after, 0, 'they left it at their clean boundary')
    t.equal(balancer.counters().migrations, run.before)
  }
)

t.test('onDown: keep leaves the sessions on a backend checked down', async (t) => {
  const [s0, s1, s2] = await servers(t)
  const balancer = await balancerFor(t, [s0!, s1!, s2!], {
    healthCheck: { type: 'tcp', interval: '100ms', fall: 1, rise: 1 },
    onDown: 'keep',
  })
  const b0 = balancer.frontends[0]!.backends[0]!
  const run = await runWith(
    balancer,
    async () => {
      s0!.stopAccepting()
    },
    () => until(() => !b0.checkedUp, 'backend 0 checked down')
  )
  t.same(run.errors, [])
  t.ok(run.before > 0)
  t.equal(run.after, run.before, 'still there')
  t.equal(balancer.counters().migrations, 0)
})

t.test('opaque knows no boundaries: drain lets sessions finish where they are', async (t) => {
  const [s0, s1, s2] = await servers(t)
  const balancer = createBalancer(
    withPlane({
      listeners: [
        {
          listen: '127.0.0.1:0',
          balance: 'round-robin',
          backends: [s0!, s1!, s2!].map((s) => ({ host: s.host, port: s.port })),
        },
      ],
      log: { level: 'silent' },
    })
  )
  await balancer.listen()
  t.teardown(() => balancer.close(0))
  const b0 = balancer.frontends[0]!.backends[0]!
  const run = await runWith(balancer, async () => {
    b0.admin = 'drain'
  })
  t.same(run.errors, [])
  t.ok(run.before > 0)
  t.equal(run.after, run.before, 'sessions stay')
  t.equal(balancer.counters().migrations, 0)
})

t.test('passive ejection never takes out more than maxEjectPercent of the backends', async (t) => {
  const dead = await Promise.all([0, 1, 2, 3].map((i) => refusedPort(`dead${i}`)))
  const balancer = createBalancer(
    withPlane({
      listeners: [
        {
          listen: '127.0.0.1:0',
          balance: 'round-robin',
          retries: 0,
          passive: { failures: 1, cooldown: '1m', maxEjectPercent: 50 },
          backends: dead.map((s) => ({ host: s.host, port: s.port, name: s.name })),
        },
      ],
      log: { level: 'silent' },
    })
  )
  await balancer.listen()
  t.teardown(() => balancer.close(0))
  const backends = balancer.frontends[0]!.backends
  for (let i = 0; i < 8; i++) {
    const c = net.connect(balancer.address().port, '127.0.0.1')
    c.on('error', () => {})
    await new Promise((r) => c.once('close', r))
  }
  const out = backends.filter((b) => b.isDown()).length
  t.equal(out, 2, 'two of four ejected, no more')
  t.ok(
    backends.every((b) => b.counters.connectErrors > 0),
    'the others were still tried (and failed)'
  )
})

t.test('a new weight rebuilds source-hash: a client moves with the weights', async (t) => {
  const [s0, s1] = await servers(t, 2)
  const balancer = createBalancer(
    withPlane({
      listeners: [
        {
          listen: '127.0.0.1:0',
          balance: 'source-hash',
          backends: [s0!, s1!].map((s) => ({ host: s.host, port: s.port, name: s.name })),
        },
      ],
      log: { level: 'silent' },
    })
  )
  await balancer.listen()
  t.teardown(() => balancer.close(0))
  const backends = balancer.frontends[0]!.backends
  const landing = async (): Promise<string> => {
    const c = new RecordingClient(balancer.address().port, frame('x'))
    await c.receivedAtLeast(expectedResponse(Buffer.from('x')).length)
    const on = backends.find((b) => b.active === 1)!.name
    c.destroy()
    await c.closed
    await until(() => backends.every((b) => b.active === 0), 'session gone')
    return on
  }
  const first = await landing()
  t.equal(await landing(), first, 'the same source lands on the same backend')
  const other = backends.find((b) => b.name !== first)!
  backends.find((b) => b.name === first)!.weight = 1
  other.weight = 1000
  t.equal(await landing(), other.name, 'after the re-weight it lands where the weights now say')
})
