/**
 * The scrape-time metrics without sockets: a balancer that is built but never listens, its counters
 * and latency rings written by hand, the registry read twice to check that the histogram observes
 * each hand-off once and that counters follow the balancer.
 */
import t from 'tap'
import { newSamples, createMetrics } from '../../lib/admin/metrics.js'
import { createBalancer } from '../../lib/balancer.js'
import { LatencyRing } from '../../lib/listener.js'
import { withPlane } from '../helpers/plane.js'

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
