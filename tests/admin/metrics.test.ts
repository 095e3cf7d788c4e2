/**
 * The scrape-time metrics without sockets: a balancer that is built but never listens, its counters
 * and latency rings written by hand, the registry read twice to check that the histogram observes
 * each hand-off once and that counters follow the balancer. One case with sockets: a real failure
 * that cannot be hidden, seen in `baton_unrecoverable_total` under its reason.
 */
import type { Socket } from 'node:net'
import t from 'tap'
import { HANDOFF_BUCKETS, newSamples, createMetrics } from '../../lib/admin/metrics.js'
import type { Backend } from '../../lib/backend.js'
import { createBalancer } from '../../lib/balancer.js'
import { recordCheck } from '../../lib/health/checker.js'
import { LatencyRing } from '../../lib/listener.js'
import { bareEntry } from '../helpers/table.js'
import { withPlane } from '../helpers/plane.js'
import { oneListener, scope } from '../helpers/balancer.js'
import { frame, frameServer, listenerOptions } from '../helpers/failover-servers.js'
import { resetServer } from '../helpers/servers.js'
import { once, within } from '../helpers/wait.js'
import type { SessionCloseEvent } from '../../lib/balancer.js'
import { UNRECOVERABLE } from '../../lib/errors.js'

function build() {
  return createBalancer(
    withPlane({
      log: { level: 'silent' },
      listeners: [
        {
          name: 'web',
          listen: { host: '127.0.0.1', port: 0 },
          backends: [{ name: 'a', host: '127.0.0.1', port: 1 }],
        },
      ],
    })
  )
}

t.test('newSamples: what was added since a count, oldest first, across the wrap', async (t) => {
  const ring = new LatencyRing(4)
  t.same(newSamples(ring, 0), [])
  ring.add(1)
  ring.add(2)
  t.same(newSamples(ring, 0), [1, 2])
  t.same(newSamples(ring, 1), [2])
  for (const v of [3, 4, 5, 6]) ring.add(v)
  t.same(newSamples(ring, 2), [3, 4, 5, 6], 'wrapped: still in order')
  t.same(newSamples(ring, 5), [6])
  t.same(newSamples(ring, 0), [3, 4, 5, 6], 'samples gone from the ring are skipped')
  t.same(newSamples(ring, 6), [])
})

t.test('the histogram observes each hand-off once; counters are re-read each scrape', async (t) => {
  const balancer = build()
  const registry = createMetrics(balancer)
  const l = balancer.frontends[0]!
  const count = async (connection: string): Promise<number> => {
    const m = await registry.getSingleMetric('baton_handoff_latency_seconds')!.get()
    const v = m.values.find(
      (x) =>
        (x as { metricName?: string }).metricName === 'baton_handoff_latency_seconds_count' &&
        x.labels.connection === connection
    )
    return v?.value ?? -1
  }
  t.equal(await count('pooled'), 0, 'series exist before any hand-off')
  l.latency.pooled.add(0.4)
  l.latency.pooled.add(3)
  l.latency.new.add(40)
  l.counters.handoffsPooled = 2
  l.counters.handoffsNew = 1
  const text = await registry.metrics()
  t.match(text, 'baton_handoff_latency_seconds_bucket{le="0.0005",listener="web",connection="pooled"} 1')
  t.match(text, 'baton_handoff_latency_seconds_bucket{le="0.005",listener="web",connection="pooled"} 2')
  t.match(text, 'baton_handoff_latency_seconds_count{listener="web",connection="new"} 1')
  t.match(text, 'baton_handoffs_total{listener="web",connection="pooled"} 2')
  t.equal(await count('pooled'), 2, 'a second scrape does not observe them again')
  l.latency.pooled.add(1)
  t.equal(await count('pooled'), 3)

  l.counters.failovers = 5
  l.backends[0]!.admin = 'drain'
  l.backends[0]!.coolingUntil = Date.now() + 60_000
  const after = await registry.metrics()
  t.match(after, 'baton_failovers_total{listener="web"} 5')
  t.match(after, 'baton_backend_up{listener="web",backend="a"} 0')
  t.match(after, 'baton_backend_admin_state{listener="web",backend="a",state="drain"} 1')
  t.match(after, 'baton_backend_admin_state{listener="web",backend="a",state="ready"} 0')
})

function build2(healthCheck: Record<string, unknown> = { type: 'none' }) {
  return createBalancer(
    withPlane({
      log: { level: 'silent' },
      listeners: [
        {
          name: 'web',
          listen: { host: '127.0.0.1', port: 0 },
          healthCheck,
          backends: [
            { name: 'a', host: '127.0.0.1', port: 1 },
            { name: 'b', host: '127.0.0.1', port: 2 },
          ],
        },
      ],
    })
  )
}

/** The value of one sample line of `text`, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

t.test('hand-off buckets resolve tens of microseconds', async (t) => {
  const balancer = build()
  const registry = createMetrics(balancer, { process: false })
  const l = balancer.frontends[0]!
  for (const ms of [0.02, 0.06, 0.06, 0.07, 0.3]) l.latency.pooled.add(ms)
  const text = await registry.metrics()
  const bucket = (le: string): number | undefined =>
    sample(text, `baton_handoff_latency_seconds_bucket{le="${le}",listener="web",connection="pooled"}`)
  t.equal(HANDOFF_BUCKETS[0], 0.00001, 'the first bucket is 10 us')
  t.equal(bucket('0.00001'), 0)
  t.equal(bucket('0.000025'), 1, '20 us')
  t.equal(bucket('0.00005'), 1)
  t.equal(bucket('0.0001'), 4, 'the ~60 us median has a bucket of its own')
  t.equal(bucket('0.0005'), 5)
  t.equal(bucket('+Inf'), 5)
})

t.test('bytes per backend: credited at a switch and at the end, live ones added at scrape', async (t) => {
  const balancer = build2()
  const registry = createMetrics(balancer, { process: false })
  const [a, b] = balancer.frontends[0]!.backends as [Backend, Backend]
  // bytesFromClient: read before any backend was chosen: goes to the first one.
  const entry = bareEntry(balancer.table.newId(), 'web', { bytesFromClient: 10 })
  const bytes = async (): Promise<number[]> => {
    const text = await registry.metrics()
    return ['a', 'b'].flatMap((name) =>
      ['sent', 'received'].map(
        (side) => sample(text, `baton_backend_${side}_bytes_total{listener="web",backend="${name}"}`) ?? -1
      )
    )
  }
  balancer.table.add(entry)
  balancer.table.attach(entry, a, {} as Socket)
  entry.state = 'open'
  ;(entry as { bytesFromClient: number }).bytesFromClient = 30
  ;(entry as { bytesToClient: number }).bytesToClient = 100
  t.same(await bytes(), [30, 100, 0, 0], 'a live session counts for its backend')
  t.same([a.counters.bytesSent, a.counters.bytesReceived], [0, 0], 'nothing credited yet')

  balancer.table.attach(entry, b, {} as Socket) // a failover
  t.same([a.counters.bytesSent, a.counters.bytesReceived], [30, 100], 'credited to a at the switch')
  ;(entry as { bytesFromClient: number }).bytesFromClient = 35
  ;(entry as { bytesToClient: number }).bytesToClient = 150
  t.same(await bytes(), [30, 100, 5, 50], 'after the switch, the rest goes to b')

  balancer.table.remove(entry)
  t.same([b.counters.bytesSent, b.counters.bytesReceived], [5, 50], 'credited to b at the end')
  t.same(await bytes(), [30, 100, 5, 50], 'the same once ended')
  t.equal(balancer.listenerSnapshots()[0]!.backends[1]!.counters.bytesReceived, 50, 'in the snapshot')
})

t.test('health check metrics: only for listeners that check; last result and duration', async (t) => {
  const none = createMetrics(build2(), { process: false })
  t.notMatch(await none.metrics(), /^baton_backend_checks_total\{/m, 'no checks, no series')

  const balancer = build2({ type: 'tcp', interval: 1000 })
  const registry = createMetrics(balancer, { process: false })
  const [a, b] = balancer.frontends[0]!.backends as [Backend, Backend]
  recordCheck(a.checks, { ok: true }, 1.5)
  recordCheck(a.checks, { ok: false, reason: 'connect ECONNREFUSED' }, 0.25)
  recordCheck(a.checks, { ok: true }, 2)
  const text = await registry.metrics()
  t.equal(sample(text, 'baton_backend_checks_total{listener="web",backend="a",result="passed"}'), 2)
  t.equal(sample(text, 'baton_backend_checks_total{listener="web",backend="a",result="failed"}'), 1)
  t.equal(sample(text, 'baton_backend_check_success{listener="web",backend="a"}'), 1)
  t.equal(sample(text, 'baton_backend_check_duration_seconds{listener="web",backend="a"}'), 0.002)
  t.equal(sample(text, 'baton_backend_checks_total{listener="web",backend="b",result="failed"}'), 0)
  t.equal(
    sample(text, 'baton_backend_check_success{listener="web",backend="b"}'),
    undefined,
    'no last result before the first check'
  )
  recordCheck(b.checks, { ok: false, reason: 'timeout' }, 1000)
  t.equal(sample(await registry.metrics(), 'baton_backend_check_success{listener="web",backend="b"}'), 0)
  t.same(b.checks.last && { ok: b.checks.last.ok, reason: b.checks.last.reason }, {
    ok: false,
    reason: 'timeout',
  })
})

t.test('state change timestamp: admin state, checked health, a cool-down at both ends', async (t) => {
  const balancer = build2()
  const registry = createMetrics(balancer, { process: false })
  const a = balancer.frontends[0]!.backends[0]!
  const stamp = async (): Promise<number> =>
    sample(
      await registry.metrics(),
      'baton_backend_state_change_timestamp_seconds{listener="web",backend="a"}'
    )!
  const built = a.stateSince()
  t.ok(Math.abs(built - Date.now()) < 60_000, 'starts when the backend was made')
  t.equal(await stamp(), built / 1000)

  const now = Date.now()
  a.setPassive({ failures: 1, cooldown: 1000 })
  t.equal(a.recordFailure('connect', now + 5000), 1000, 'ejected (clock passed in)')
  t.equal(a.stateSince(now + 5500), now + 5000, 'down since the ejection')
  t.equal(a.stateSince(now + 7000), now + 6000, 'up again when the cool-down ran out')
  a.admin = 'drain'
  t.ok(a.stateSince() >= now, 'an admin change moves it')
  const before = a.stateSince()
  a.checkedUp = a.checkedUp // no change
  t.equal(a.stateSince(), before, 'setting the same health is not a change')
})

t.test('baton_unrecoverable_total: a real unrecoverable failure, labelled by its reason', async (t) => {
  // A request over replay.maxBytes to a backend that resets once it has read it: the session
  // cannot be moved (tests/failover/limits.test.ts, the first case), the client is closed.
  const s = scope(t)
  const req = frame(Buffer.alloc(64 * 1024, 0x71))
  const bad = await s.server(resetServer({ afterRead: req.length }, 'bad'))
  const good = await s.server(frameServer('good'))
  const { balancer, port } = await s.balancer(
    oneListener([bad, good], {
      name: 'lp',
      balance: 'first',
      replay: { maxBytes: 1024 },
      ...listenerOptions('length-prefixed', 'new'),
    })
  )
  const registry = createMetrics(balancer, { process: false })
  const series = async (): Promise<Map<string, number>> => {
    const m = await registry.getSingleMetric('baton_unrecoverable_total')!.get()
    return new Map(m.values.map((v) => [`${v.labels.listener}/${v.labels.reason}`, v.value]))
  }
  const before = await series()
  t.equal(before.size, Object.keys(UNRECOVERABLE).length, 'a series per reason before any failure')
  t.ok(
    [...before.values()].every((v) => v === 0),
    'all at 0'
  )

  const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
  const client = await s.connect(port)
  await client.write(req)
  const [close] = await closed
  await within(client.closed, 'client closed')
  t.equal(close.outcome, 'unrecoverable', `outcome (${close.error ?? ''})`)

  const after = await series()
  t.equal(after.get('lp/replay-over-budget'), 1, 'counted under its reason')
  const others = [...after].filter(([k]) => k !== 'lp/replay-over-budget')
  t.strictSame(
    others.filter(([, v]) => v !== 0),
    [],
    'no other reason counted'
  )
  t.equal(balancer.counters().unrecoverable, 1, 'the unlabelled total (API, status page) agrees')
  t.match(
    await registry.metrics(),
    'baton_unrecoverable_total{listener="lp",reason="replay-over-budget"} 1',
    'in the exposition text'
  )
})
