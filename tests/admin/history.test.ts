/**
 * The status page's history: the sampler against stand-in listeners and a hand-turned clock (each
 * `sample()` called directly), its ring bound, reloads, the timer, then the chart drawn from it and
 * `GET /api/history` on a real admin server in front of a real balancer.
 */
import { pino } from 'pino'
import t from 'tap'
import {
  failoversPerInterval,
  History,
  sessionRate,
  type HistorySample,
  type SampledListener,
} from '../../lib/admin/history.js'
import { formatAge, formatBytes, formatSpan, renderChart } from '../../lib/admin/page.js'
import { startAdmin } from '../../lib/admin/server.js'
import { backendsOf, scope } from '../helpers/balancer.js'
import { echoServer, HOST } from '../helpers/servers.js'
import { until, within } from '../helpers/wait.js'

const log = pino({ level: 'silent' })

/** A listener as the sampler sees it, its numbers set by the test. */
function fakeListener(name: string) {
  return { name, active: 0, counters: { accepted: 0, failovers: 0 } }
}

/** A clock the test turns by hand. */
function clock(start = 1_000_000) {
  let now = start
  return { now: () => now, advance: (ms: number) => void (now += ms) }
}

t.test('each sample reads every listener; the ring keeps the newest, oldest first', async (t) => {
  const web = fakeListener('web')
  const api = fakeListener('api')
  const c = clock()
  const h = new History({ frontends: [web, api] }, { intervalMs: 5000, samples: 3, now: c.now })
  t.same(h.of('web'), [], 'nothing before the first sample')
  t.same(h.toJSON(), {
    intervalMs: 5000,
    capacity: 3,
    listeners: [
      { listener: 'web', samples: [] },
      { listener: 'api', samples: [] },
    ],
  })

  for (let i = 1; i <= 5; i++) {
    web.active = i
    web.counters.accepted = 10 * i
    web.counters.failovers = i * i
    api.active = 100 + i
    h.sample()
    c.advance(5000)
  }
  const s = h.of('web')
  t.equal(s.length, 3, 'bounded by samples')
  t.same(
    s.map((x) => x.t),
    [1_010_000, 1_015_000, 1_020_000],
    'the newest three, oldest first, stamped by the clock'
  )
  t.same(s[2], { t: 1_020_000, active: 5, accepted: 50, failovers: 25 })
  t.same(
    h.of('api').map((x) => x.active),
    [103, 104, 105]
  )
  t.same(
    h.toJSON().listeners.map((l) => l.listener),
    ['web', 'api'],
    'in the order of the listeners'
  )
  t.same(JSON.parse(JSON.stringify(h.toJSON())).listeners[0].samples, s, 'JSON as it is served')

  // The ring stays at its size however long it runs.
  for (let i = 0; i < 1000; i++) h.sample()
  t.equal(h.of('web').length, 3)
})

t.test('a listener that counts from zero again starts afresh; a removed one drops out', async (t) => {
  const frontends = [fakeListener('web'), fakeListener('old')]
  const c = clock()
  const h = new History({ frontends }, { samples: 10, now: c.now })
  frontends[0]!.counters.accepted = 3
  frontends[0]!.counters.failovers = 7
  h.sample()
  h.sample()
  t.equal(h.of('web').length, 2)

  // A view rebuilding its listener objects while the counts carry on keeps the series.
  const rebuilt = { ...frontends[0]!, counters: { accepted: 4, failovers: 7 } }
  frontends.splice(0, 1, rebuilt)
  h.sample()
  t.same(
    h.of('web').map((x) => x.accepted),
    [3, 3, 4]
  )

  // A reload that replaces it (same name, new address) and removes `old`: counters from zero.
  const replaced = fakeListener('web')
  replaced.counters.accepted = 1
  frontends.splice(0, 2, replaced)
  h.sample()
  t.same(
    h.of('web').map((x) => x.failovers),
    [0],
    'a new series, no negative step'
  )
  t.same(h.of('old'), [], 'the removed listener is gone')
  t.same(
    h.toJSON().listeners.map((l) => l.listener),
    ['web']
  )
})

t.test('failovers per interval are the differences of the totals', async (t) => {
  const at = (failovers: number[]): HistorySample[] =>
    failovers.map((f, i) => ({ t: i * 1000, active: 0, accepted: 0, failovers: f }))
  t.same(failoversPerInterval([]), [])
  t.same(failoversPerInterval(at([4])), [0], 'the first sample has nothing before it')
  t.same(failoversPerInterval(at([4, 4, 6, 9, 9])), [0, 0, 2, 3, 0])
  t.same(failoversPerInterval(at([5, 2])), [0, 0], 'never negative')
})

t.test('options are checked when the sampler is built', async (t) => {
  const src = { frontends: [] }
  for (const intervalMs of [0, 9, 1.5, NaN, -5000])
    t.throws(() => new History(src, { intervalMs }), { code: 'ERR_BATON_ADMIN' }, `intervalMs ${intervalMs}`)
  for (const samples of [0, 100_001, 2.5])
    t.throws(() => new History(src, { samples }), { code: 'ERR_BATON_ADMIN' }, `samples ${samples}`)
  const h = new History(src)
  t.equal(h.intervalMs, 5000, 'default: every 5 s')
  t.equal(h.capacity, 120, 'default: ten minutes of samples')
})

t.test('start() samples at once and on the timer; stop() ends it', async (t) => {
  const web = fakeListener('web')
  const h = new History({ frontends: [web] }, { intervalMs: 10 })
  t.teardown(() => h.stop())
  h.start()
  t.equal(h.of('web').length, 1, 'a first sample at start')
  h.start()
  t.equal(h.of('web').length, 1, 'starting again neither samples nor adds a timer')
  await until(() => h.of('web').length >= 4, 'three timer samples', { timeoutMs: 5000 })
  h.stop()
  const n = h.of('web').length
  // Timers of the same duration fire in the order they were set, so had the sampler's interval
  // survived stop(), it would have fired before each of these ticks.
  let ticks = 0
  await within(
    new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        if (++ticks < 3) return
        clearInterval(timer)
        resolve()
      }, 10)
    }),
    'three ticks'
  )
  t.equal(h.of('web').length, n, 'no sample after stop()')
})

t.test('a sample that throws on the timer is reported, not thrown', async (t) => {
  let calls = 0
  const broken = {
    get frontends(): SampledListener[] {
      if (++calls === 1) return [] // start()'s own sample passes
      throw new Error('no listeners today')
    },
  }
  const errors: unknown[] = []
  const h = new History(broken, { intervalMs: 10, onError: (err) => errors.push(err) })
  t.teardown(() => h.stop())
  h.start()
  await until(() => errors.length >= 2, 'two reported errors', { timeoutMs: 5000 })
  h.stop()
  t.match(errors[0], { message: 'no listeners today' })
})

t.test('the chart: a line of live sessions, failover bars, labelled axes, escaped names', async (t) => {
  t.equal(formatSpan(200), '200 ms')
  t.equal(formatSpan(5000), '5 s')
  t.equal(formatSpan(595_000), '10 min')
  t.equal(formatSpan(3 * 3_600_000), '3 h')

  const empty = renderChart('<web>', [], 5000, 120)
  t.match(empty, /^<svg class="chart"/)
  t.match(empty, 'no samples yet')
  t.notMatch(empty, /<path/)
  t.notMatch(empty, /<web>/, 'name escaped')
  t.match(empty, '&lt;web&gt;')

  const samples: HistorySample[] = [0, 1, 2, 3, 4].map((i) => ({
    t: 1_000_000 + i * 5000,
    active: [0, 3, 12, 5, 6][i]!,
    accepted: 10 * i,
    failovers: [0, 0, 2, 2, 3][i]!,
  }))
  const svg = renderChart('web', samples, 5000, 120)
  const d = /<path class="active" d="([^"]+)"/.exec(svg)?.[1]
  t.ok(d, 'the line is drawn')
  const points = d!.split(' ')
  t.equal(points.length, 5, 'one point per sample')
  t.match(points[0], /^M/)
  t.match(points[4], /^L476,/, 'the newest sample at the right edge')
  const ys = points.map((p) => Number(p.split(',')[1]))
  t.equal(Math.min(...ys), 18, 'the maximum touches the top of the plot')
  t.equal(Math.max(...ys), 94, 'zero sits on its bottom')
  t.equal((svg.match(/<rect class="fo"/g) ?? []).length, 2, 'a bar for each interval with failovers')
  t.match(svg, /<title>2 failovers<\/title>/)
  t.match(svg, 'active sessions · max 12')
  t.match(svg, 'failovers per 5 s · max 2')
  t.match(svg, '>−10 min<', 'the span of the x axis')
  t.match(svg, '>now<')
  t.notMatch(svg, /NaN|Infinity|undefined/)
})

t.test('GET /api/history and the page chart on a running admin server', async (t) => {
  const s = scope(t)
  const alpha = await s.server(echoServer('alpha'))
  const { balancer, port } = await s.balancer({
    log: { level: 'silent' },
    listeners: [{ name: 'web', listen: { host: HOST, port: 0 }, backends: backendsOf([alpha]) }],
  })
  await t.rejects(startAdmin(balancer, { host: HOST, port: 0, log, history: { intervalMs: 1 } }), {
    code: 'ERR_BATON_ADMIN',
  })
  const admin = await startAdmin(balancer, { host: HOST, port: 0, log, history: { intervalMs: 20 } })
  t.teardown(() => admin.close())
  const base = `http://${HOST}:${admin.address().port}`
  const get = async (path: string): Promise<Response> =>
    within(fetch(`${base}${path}`, { signal: AbortSignal.timeout(5000) }), `GET ${path}`)

  const c = await s.connect(port)
  t.same(await c.roundTrip(Buffer.from('hi\n')), Buffer.from('hi\n'))
  // The sampler runs every 20 ms: ask until a sample taken while the client is open comes back.
  const withClient = async (): Promise<any> => {
    const deadline = Date.now() + 5000
    let body: any
    do {
      body = await (await get('/api/history')).json()
      if (body.listeners?.[0]?.samples?.some((x: HistorySample) => x.active === 1)) break
    } while (Date.now() < deadline)
    return body
  }
  const body = await withClient()
  t.match(body, { intervalMs: 20, capacity: 120, listeners: [{ listener: 'web', samples: Array }] })
  t.match(
    body.listeners[0].samples.find((x: HistorySample) => x.active === 1),
    { t: Number, active: 1, accepted: 1, failovers: 0 },
    'the open session was sampled'
  )

  const res = await get('/api/history')
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /^application\/json/)
  const page = await (await get('/')).text()
  t.match(page, /<svg class="chart"[^>]*aria-label="web: live sessions and failovers per 20 ms, last 2 s"/)
  t.match(page, /<path class="active" d="M/)
})

t.test('sessionRate: per backend over the last minute of samples; undefined without two', async (t) => {
  const at = (points: [number, number | undefined][]): HistorySample[] =>
    points.map(([sec, n]) => ({
      t: sec * 1000,
      active: 0,
      accepted: 0,
      failovers: 0,
      ...(n !== undefined && { backends: { a: n } }),
    }))
  t.equal(sessionRate([], 'a'), undefined)
  t.equal(sessionRate(at([[0, 5]]), 'a'), undefined, 'one sample')
  t.equal(
    sessionRate(
      at([
        [0, 5],
        [10, 25],
      ]),
      'a'
    ),
    2,
    '20 sessions in 10 s'
  )
  t.equal(
    sessionRate(
      at([
        [0, 0],
        [50, 100],
        [110, 160],
      ]),
      'a'
    ),
    1,
    'only the last 60 s count'
  )
  t.equal(
    sessionRate(
      at([
        [0, 5],
        [10, 25],
      ]),
      'b'
    ),
    undefined,
    'an unknown backend'
  )
  t.equal(
    sessionRate(
      at([
        [0, 50],
        [10, 5],
      ]),
      'a'
    ),
    undefined,
    'a total that fell'
  )
  t.equal(
    sessionRate(
      at([
        [0, undefined],
        [5, 10],
        [10, 20],
      ]),
      'a'
    ),
    2,
    'samples without backends skipped'
  )

  // A real Listener's backends are sampled; the fake listeners above have none.
  const web = { ...fakeListener('web'), backends: [{ name: 'a', counters: { sessions: 3 } }] }
  const h = new History({ frontends: [web] }, { now: () => 1 })
  h.sample()
  t.same(h.of('web')[0]!.backends, { a: 3 })
})

t.test('formatAge and formatBytes', async (t) => {
  t.equal(formatAge(999), '0 s')
  t.equal(formatAge(59_000), '59 s')
  t.equal(formatAge(184_000), '3 min 4 s')
  t.equal(formatAge(2 * 3_600_000 + 5 * 60_000), '2 h 5 min')
  t.equal(formatAge(76 * 3_600_000), '3 d 4 h')
  t.equal(formatBytes(512), '512 B')
  t.equal(formatBytes(1536), '1.5 KiB')
  t.equal(formatBytes(20 * 1024 * 1024), '20.0 MiB')
})
