/**
 * `--workers`: first the pure parts of lib/cluster/ (respawn throttle, session paging across
 * workers, figures merged into the primary's view, state applied in a worker), then the built
 * `baton` run as a primary with two worker processes in front of in-process backends on 127.0.0.1:
 *
 *   (a) traffic flows and both workers serve it      (b) /metrics sums the workers' counters
 *   (c) a health check failing in the primary takes the backend out in every worker
 *   (d) POST drain on the primary reaches every worker
 *   (e) a SIGKILLed worker is logged and replaced, traffic still flows
 *   (f) SIGHUP reload with a new backend reaches the workers; an invalid file keeps the old one
 *   (g) SIGTERM: live sessions finish within the grace period, exit 0
 *
 * Workers bind port 0 through the primary's shared handle, so they all get the same port; it is
 * read from their "listening" lines. Every wait is bounded: log lines, polls with a bounded number
 * of turns, never a fixed sleep.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import http from 'node:http'
import net, { type Socket } from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import { pino } from 'pino'
import { AggregatorRegistry } from 'prom-client'
import t, { type Test } from 'tap'
import { children, CLI, ensureBuilt, parseLog, ROOT } from './helpers/cli.js'
import { createBalancer } from '../lib/balancer.js'
import { RespawnThrottle } from '../lib/cluster/respawn.js'
import { monotonic, Retired, sumMetrics, type MetricJson } from '../lib/cluster/retired.js'
import { applyState, stateOf } from '../lib/cluster/state.js'
import { workerConfig } from '../lib/cluster/protocol.js'
import {
  applyFigures,
  figuresOf,
  mergePages,
  planPages,
  WorkersTable,
  type WorkerSession,
} from '../lib/cluster/view.js'
import { sessionPage } from '../lib/admin/api.js'
import { createMetrics } from '../lib/admin/metrics.js'
import { validateConfig } from '../lib/config/validate.js'
import { TestServer } from './helpers/servers.js'
import { WAIT_MS } from './helpers/wait.js'
import { withPlane } from './helpers/plane.js'

const HOST = '127.0.0.1'
// Each case starts three node processes; on a loaded 2-core box that takes seconds.
t.setTimeout(300_000)
const LONG_MS = 20_000

// ---------------------------------------------------------------------------------------------
// Pure parts

t.test('respawn throttle: at once, until more than `limit` deaths fall in one window', async (t) => {
  const r = new RespawnThrottle({ limit: 3, windowMs: 10_000 })
  t.equal(r.died(0), 0)
  t.equal(r.died(100), 0)
  t.equal(r.died(200), 0)
  t.equal(r.died(300), 9_700, 'the 4th in the window waits until the oldest has left it')
  t.equal(r.died(400), 9_700, 'the 5th until the 2nd has left it')
  t.equal(r.died(30_000), 0, 'a calm spell: at once again')
  t.throws(() => new RespawnThrottle({ limit: 0 }), RangeError)
})

t.test('planPages: each worker gives only its slice of the page', async (t) => {
  const workers = [
    { id: 1, total: 5 },
    { id: 2, total: 0 },
    { id: 3, total: 4 },
  ]
  t.same(planPages(workers, 0, 3), [{ id: 1, offset: 0, limit: 3 }])
  t.same(planPages(workers, 3, 4), [
    { id: 1, offset: 3, limit: 2 },
    { id: 3, offset: 0, limit: 2 },
  ])
  t.same(planPages(workers, 6, 100), [{ id: 3, offset: 1, limit: 3 }])
  t.same(planPages(workers, 9, 10), [], 'past the end: nothing to ask')
  const s = (worker: number, id: number) => ({ id, worker }) as unknown as WorkerSession
  t.same(
    mergePages(9, 3, 3, [
      [s(1, 4), s(1, 5)],
      [s(3, 1), s(3, 2)],
    ]),
    {
      total: 9,
      offset: 3,
      limit: 3,
      sessions: [s(1, 4), s(1, 5), s(3, 1)],
    }
  )
})

function viewAndWorkers() {
  const config = validateConfig({
    log: { level: 'silent' },
    listeners: [
      {
        name: 'web',
        listen: '127.0.0.1:0',
        healthCheck: { type: 'tcp' },
        pool: { idle: 2 },
        backends: [
          { name: 'a', host: HOST, port: 1 },
          { name: 'b', host: HOST, port: 2 },
        ],
      },
    ],
  })
  const view = createBalancer(config, { bind: false, table: new WorkersTable() })
  const workers = [1, 2].map(() => createBalancer(workerConfig(config)))
  return { config, view, workers }
}

t.test('workerConfig: checks off, one process, the rest as it was', async (t) => {
  const { config } = viewAndWorkers()
  const w = workerConfig(validateConfig({ ...config, workers: 4 }))
  t.equal(w.workers, 1)
  t.equal(w.listeners[0]!.healthCheck.type, 'none')
  t.equal(config.listeners[0]!.healthCheck.type, 'tcp', 'the original is untouched')
  t.same(w.listeners[0]!.backends, config.listeners[0]!.backends)
  t.doesNotThrow(() => validateConfig(w), 'what a worker gets validates again')
})

t.test('applyFigures: sums into the view, worst passive health, workers’ address', async (t) => {
  const { view, workers } = viewAndWorkers()
  const [w1, w2] = workers as [ReturnType<typeof createBalancer>, ReturnType<typeof createBalancer>]
  w1.frontends[0]!.counters.accepted = 3
  w1.frontends[0]!.active = 1
  w2.frontends[0]!.counters.accepted = 4
  w2.frontends[0]!.counters.failovers = 2
  w1.frontends[0]!.backends[0]!.counters.sessions = 3
  w2.frontends[0]!.backends[0]!.counters.sessions = 1
  w2.frontends[0]!.backends[1]!.consecutiveFailures = 3
  w2.frontends[0]!.backends[1]!.coolingUntil = Date.now() + 60_000
  const figures = [figuresOf(w1), figuresOf(w2)]
  figures[0]!.sessions = 1
  figures[0]!.listeners[0]!.address = { host: HOST, port: 4321 }
  figures[0]!.listeners[0]!.backends[0]!.pool = 2
  applyFigures(view, figures)
  const l = view.listenerSnapshots()[0]!
  t.equal(l.counters.accepted, 7)
  t.equal(l.counters.failovers, 2)
  t.equal(l.active, 1)
  t.same(l.address, { host: HOST, port: 4321 }, 'the bound port, not the configured 0')
  t.equal(l.backends[0]!.counters.sessions, 4)
  t.equal(l.backends[0]!.pool, 2)
  t.equal(l.backends[0]!.health, 'up')
  t.equal(l.backends[1]!.health, 'down', 'a backend one worker is skipping shows down')
  t.equal(view.table.size, 1)
  t.equal(view.counters().active, 1)
  t.equal(sessionPage(view, new URLSearchParams()).total, 1, 'no page gathered: the count, no sessions')
})

t.test('applyState: a worker follows admin state, weight and checked health', async (t) => {
  const { view, workers } = viewAndWorkers()
  const w = workers[0]!
  const log = pino({ level: 'silent' })
  const [a, b] = view.frontends[0]!.backends as [any, any]
  a.admin = 'drain'
  b.checkedUp = false
  b.weight = 7
  applyState(w, stateOf(view), log)
  const [wa, wb] = w.frontends[0]!.backends
  t.equal(wa!.admin, 'drain')
  t.equal(wb!.checkedUp, false)
  t.equal(wb!.baseWeight, 7)
  t.same(stateOf(w), stateOf(view), 'the same table afterwards')
  // A backend the table does not name (a reload on its way) is left alone.
  applyState(w, [{ listener: 'web', backend: 'zz', admin: 'maint', weight: 1, up: false }], log)
  t.same(stateOf(w), stateOf(view))
})

t.test('Retired: a dead worker’s counters and histograms are kept and summed, not its gauges', async (t) => {
  const { view, workers } = viewAndWorkers()
  const [w1, w2] = workers as [ReturnType<typeof createBalancer>, ReturnType<typeof createBalancer>]
  w1.frontends[0]!.counters.accepted = 5
  w1.frontends[0]!.active = 2
  w1.frontends[0]!.backends[0]!.counters.sessions = 5
  w1.frontends[0]!.backends[0]!.consecutiveFailures = 3
  w2.frontends[0]!.counters.accepted = 1
  w2.frontends[0]!.backends[1]!.counters.sessions = 1
  const json = async (b: ReturnType<typeof createBalancer>) =>
    (await createMetrics(b).getMetricsAsJSON()) as unknown as MetricJson[]
  const [m1, m2] = [await json(w1), await json(w2)]
  const kinds = new Set(monotonic(m1).map((m) => m.type))
  t.same(kinds, new Set(['counter', 'histogram']), 'counters and histograms only')
  t.notOk(monotonic(m1).some((m) => m.name === 'baton_sessions_active'))

  const retired = new Retired()
  t.same(retired.metrics(), [], 'nothing kept yet')
  t.same(retired.figures(), [])
  retired.add({ metrics: m1, figures: figuresOf(w1) })
  retired.add({ metrics: m1, figures: figuresOf(w1) }) // a second dead worker with the same totals
  retired.add({}) // one that died before it ever answered
  const text = await AggregatorRegistry.aggregate([m2, ...retired.metrics()]).metrics()
  const value = (name: string, labels: string) =>
    Number(new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, 'm').exec(text)?.[1])
  t.equal(value('baton_sessions_total', 'listener="web"'), 11, '5 + 5 kept, 1 live')
  t.equal(value('baton_backend_sessions_total', 'listener="web",backend="a"'), 10)
  t.equal(value('baton_backend_sessions_total', 'listener="web",backend="b"'), 1)
  t.equal(value('baton_sessions_active', 'listener="web"'), 0, 'the dead workers’ live sessions are gone')
  t.equal(
    value('baton_handoff_latency_seconds_count', 'listener="web",connection="new"'),
    0,
    'histogram series kept and summed'
  )

  applyFigures(view, [figuresOf(w2), ...retired.figures()])
  const l = view.listenerSnapshots()[0]!
  t.equal(l.counters.accepted, 11)
  t.equal(l.active, 0, 'live sessions not kept')
  t.equal(l.backends[0]!.counters.sessions, 10)
  t.equal(l.backends[0]!.health, 'up', 'passive health not kept')

  // A reload that removes backend a: its kept series go, as they go from the workers' registries.
  const after = validateConfig({
    log: { level: 'silent' },
    listeners: [{ name: 'web', listen: '127.0.0.1:0', backends: [{ name: 'b', host: HOST, port: 2 }] }],
  })
  retired.prune(createBalancer(after, { bind: false }))
  const pruned = retired.metrics()[0]!
  const series = pruned.flatMap((m) => m.values.map((v) => v.labels.backend)).filter((b) => b !== undefined)
  t.notOk(series.includes('a'), 'backend a dropped')
  t.ok(
    pruned.some((m) => m.name === 'baton_sessions_total' && m.values[0]!.value === 10),
    'listener series kept'
  )
  t.same(
    retired.figures()[0]!.listeners[0]!.backends.map((b) => b.name),
    ['b'],
    'backend a dropped from the figures, b kept'
  )
  retired.prune(
    createBalancer(validateConfig({ ...after, listeners: [{ ...after.listeners[0]!, name: 'api' }] }), {
      bind: false,
    })
  )
  t.same(retired.figures()[0]!.listeners, [], 'a removed listener is dropped')
  t.notOk(
    retired
      .metrics()
      .flat()
      .some((m) => m.values.some((v) => v.labels.listener === 'web'))
  )
})

t.test('sumMetrics: series by series, by name, labels (in any order) and histogram part', async (t) => {
  const c = (values: MetricJson['values']): MetricJson => ({
    name: 'x_total',
    help: 'x',
    type: 'counter',
    values,
  })
  const sum = sumMetrics(
    [c([{ value: 1, labels: { a: '1', b: '2' } }])],
    [
      c([
        { value: 2, labels: { b: '2', a: '1' } },
        { value: 4, labels: { a: '3' } },
      ]),
    ]
  )
  t.same(sum, [
    c([
      { value: 3, labels: { a: '1', b: '2' } },
      { value: 4, labels: { a: '3' } },
    ]),
  ])
  const h = (metricName: string, value: number): MetricJson => ({
    name: 'h',
    help: 'h',
    type: 'histogram',
    values: [{ value, labels: {}, metricName }],
  })
  t.same(
    sumMetrics([h('h_sum', 1), h('h_count', 2)], [h('h_sum', 3)])[0]!.values.map((v) => [
      v.metricName,
      v.value,
    ]),
    [
      ['h_sum', 4],
      ['h_count', 2],
    ]
  )
})

// ---------------------------------------------------------------------------------------------
// The built CLI as primary and workers

t.before(() => ensureBuilt((text) => t.comment(text)))

type LogLine = Record<string, unknown> & { level: string; msg: string; pid: number; worker?: number }

/** JSON log lines of a stream, kept, with bounded waits for one (or several) that match. */
class Logs {
  readonly all: LogLine[] = []
  readonly text: string[] = []
  private waiters = new Set<() => void>()
  private closed = false

  constructor(stream: Readable) {
    const rl = createInterface({ input: stream, crlfDelay: Infinity })
    rl.on('line', (line) => {
      this.text.push(line)
      const log = parseLog<LogLine>(line)
      if (log !== undefined) this.all.push(log)
      for (const w of [...this.waiters]) w()
    })
    rl.on('close', () => {
      this.closed = true
      for (const w of [...this.waiters]) w()
    })
  }

  /** Resolves with the lines matching `match` once there are `n` of them. */
  waitFor(match: (l: LogLine) => boolean, what: string, n = 1, timeoutMs = LONG_MS): Promise<LogLine[]> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const hits = this.all.filter(match)
        if (hits.length >= n) {
          done()
          resolve(hits)
          return true
        }
        if (this.closed) {
          done()
          reject(new Error(`stream ended before ${n} × "${what}"; got:\n${this.text.join('\n')}`))
          return true
        }
        return false
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`no ${n} × "${what}" within ${timeoutMs} ms; got:\n${this.text.join('\n')}`))
      }, timeoutMs)
      const waiter = (): void => void check()
      const done = (): void => {
        clearTimeout(timer)
        this.waiters.delete(waiter)
      }
      if (!check()) this.waiters.add(waiter)
    })
  }
}

interface Cluster {
  child: ChildProcess
  pid: number
  logs: Logs
  stderr: Logs
  /** The listener's port (the same in every worker). */
  port: number
  adminPort: number
  /** Wait (bounded) for the primary to exit. */
  exit(timeoutMs?: number): Promise<Exit>
  /** Send `signal` to the primary and wait (bounded) for it to exit. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<Exit>
}

type Exit = { code: number | null; signal: NodeJS.Signals | null }

/** Write `config` as JSON, start `baton --config FILE --workers 2`, wait for both workers to listen. */
async function startCluster(t: Test, config: Record<string, unknown>, dir: string): Promise<Cluster> {
  const file = join(dir, 'baton.json')
  writeFileSync(file, JSON.stringify(withPlane(config)))
  const child = spawn(process.execPath, [CLI, '--config', file, '--workers', '2'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.add(child)
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => {
      children.delete(child)
      resolve({ code, signal })
    })
  })
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  const logs = new Logs(child.stdout!)
  const stderr = new Logs(child.stderr!)
  const started = await logs.waitFor((l) => l.msg === 'workers started', 'workers started')
  const listening = await logs.waitFor((l) => l.msg === 'listening', 'listening', 2)
  const ports = new Set(listening.map((l) => Number(/:(\d+)$/.exec(String(l.address))![1])))
  t.equal(ports.size, 1, 'both workers listen on the same port')
  t.same(new Set(listening.map((l) => l.worker)), new Set([1, 2]), 'workers 1 and 2 listen')
  // On the native plane each worker's plane accepts on the socket the primary passed it (these
  // listeners have no accept stage).
  for (const l of listening)
    if (l.dataPlane === 'native')
      t.equal(l.accept, 'native', `worker ${String(l.worker)}: its plane accepts on the passed socket`)
  t.equal(started[0]!.pid, child.pid, '"workers started" comes from the primary')
  const admin = await logs.waitFor((l) => l.msg === 'admin server listening', 'admin listening')
  const exit = async (timeoutMs = LONG_MS): Promise<Exit> => {
    let timer: NodeJS.Timeout | undefined
    try {
      return await Promise.race([
        exited,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`baton did not exit within ${timeoutMs} ms:\n${logs.text.join('\n')}`)),
            timeoutMs
          )
        }),
      ])
    } finally {
      clearTimeout(timer)
    }
  }
  return {
    child,
    pid: child.pid!,
    logs,
    stderr,
    port: [...ports][0]!,
    adminPort: Number(/:(\d+)$/.exec(String(admin[0]!.address))![1]),
    exit,
    stop(signal = 'SIGTERM', timeoutMs = LONG_MS) {
      child.kill(signal)
      return exit(timeoutMs)
    },
  }
}

/**
 * A backend that echoes, counting the sessions it served (`served`), and answers `GET /health`
 * with 200 or, once `healthy` is false, 503 (the checks do not count as served).
 */
class AppServer extends TestServer {
  healthy = true
  served = 0
  constructor(name: string) {
    super(name, (socket) => {
      socket.once('data', (first: Buffer) => {
        if (first.toString('latin1').startsWith('GET /health')) {
          const status = this.healthy ? '200 OK' : '503 Service Unavailable'
          socket.end(`HTTP/1.1 ${status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`)
          return
        }
        this.served++
        socket.write(first)
        socket.pipe(socket)
      })
    })
  }
}

async function appServer(t: Test, name: string): Promise<AppServer> {
  const s = await new AppServer(name).listen()
  t.teardown(() => s.close())
  return s
}

/** Send `payload`, half-close, collect the echo until the other side closes (bounded). */
function exchange(port: number, payload: string, timeoutMs = WAIT_MS): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    const socket = net.connect({ host: HOST, port, allowHalfOpen: true })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`exchange with port ${port} timed out after ${timeoutMs} ms`))
    }, timeoutMs)
    socket.on('connect', () => socket.end(payload))
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    socket.on('close', () => {
      clearTimeout(timer)
      resolve(Buffer.concat(chunks).toString())
    })
  })
}

async function exchanges(t: Test, port: number, n: number, what: string): Promise<void> {
  let ok = 0
  for (let i = 0; i < n; i++) if ((await exchange(port, `${what} ${i}`)) === `${what} ${i}`) ok++
  t.equal(ok, n, `${what}: ${n} sessions echoed`)
}

/** A session held open: connected, and one byte echoed back (so it is attached to a backend). */
function hold(port: number, timeoutMs = WAIT_MS): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: HOST, port })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`held session on ${port}: no echo within ${timeoutMs} ms`))
    }, timeoutMs)
    socket.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    socket.once('connect', () => socket.write('x'))
    socket.once('data', () => {
      clearTimeout(timer)
      resolve(socket)
    })
  })
}

interface Reply {
  status: number
  text: string
  body: any
}

function request(
  port: number,
  method: string,
  path: string,
  body?: string,
  headers?: Record<string, string>
): Promise<Reply> {
  return new Promise<Reply>((resolve, reject) => {
    const options = { host: HOST, port, method, path, headers, agent: false, timeout: WAIT_MS }
    const req = http.request(options, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('error', reject)
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let json: unknown
        try {
          json = JSON.parse(text)
        } catch {
          json = undefined
        }
        resolve({ status: res.statusCode ?? 0, text, body: json })
      })
    })
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out`)))
    req.on('error', reject)
    req.end(body)
  })
}

/** The value of one sample in Prometheus text, e.g. metric(text, 'baton_sessions_total', { listener: 'web' }). */
function metric(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`)
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null || m[1] !== name) continue
    const have = (m[2] ?? '').split(',')
    if (want.every((w) => have.includes(w))) return Number(m[3])
  }
  return undefined
}

async function metrics(c: Cluster): Promise<string> {
  const r = await request(c.adminPort, 'GET', '/metrics')
  if (r.status !== 200) throw new Error(`/metrics: ${r.status} ${r.text}`)
  return r.text
}

/** Read until `ok` holds; at most `timeoutMs`, a short pause between reads. */
async function eventually<T>(
  read: () => Promise<T>,
  ok: (v: T) => boolean,
  what: string,
  timeoutMs = LONG_MS
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last = await read()
  while (!ok(last)) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms; last: ${String(last)}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
    last = await read()
  }
  return last
}

function endAll(sockets: readonly Socket[]): void {
  for (const s of sockets) s.destroy()
}

t.test('(a, b) both workers serve; /metrics and the API sum them', async (t) => {
  const alpha = await appServer(t, 'alpha')
  const bravo = await appServer(t, 'bravo')
  const dir = t.testdir({})
  const c = await startCluster(
    t,
    {
      listeners: [
        {
          name: 'web',
          listen: '127.0.0.1:0',
          backends: [alpha, bravo].map((s) => ({ name: s.name, host: HOST, port: s.port })),
        },
      ],
      admin: { listen: '127.0.0.1:0', hosts: ['baton.test'] },
      shutdownGrace: '5s',
    },
    dir
  )
  // The primary's admin server checks Host as a single process's does (admin.hosts included).
  t.equal((await request(c.adminPort, 'GET', '/metrics', undefined, { host: 'baton.test:1' })).status, 200)
  t.equal((await request(c.adminPort, 'GET', '/metrics', undefined, { host: 'evil.example' })).status, 403)

  // Held sessions, opened a few at a time, until both workers hold some (the kernel picks the
  // worker for each connection: a burst may all land on one). Bounded: at most 30 batches.
  const held: Socket[] = []
  t.teardown(() => endAll(held))
  let workers = new Set<number>()
  let page: any
  for (let batch = 0; batch < 30 && workers.size < 2; batch++) {
    for (let i = 0; i < 3; i++) held.push(await hold(c.port))
    page = (await request(c.adminPort, 'GET', '/api/sessions?limit=1000')).body
    workers = new Set(page.sessions.map((s: { worker: number }) => s.worker))
  }
  t.same(workers, new Set([1, 2]), `sessions from both workers (${held.length} held)`)
  const K = held.length
  t.equal(page.total, K, 'total counts every worker')
  t.equal(page.sessions.length, K)
  t.equal(new Set(page.sessions.map((s: { pid: number }) => s.pid)).size, 2, 'two worker pids')
  t.ok(
    page.sessions.every((s: { pid: number }) => s.pid !== c.pid),
    'no session in the primary'
  )

  // Paging across workers: pages of 2 put together are the whole list, in the same order.
  const paged: unknown[] = []
  for (let offset = 0; offset < K; offset += 2) {
    const p = (await request(c.adminPort, 'GET', `/api/sessions?offset=${offset}&limit=2`)).body
    t.equal(p.total, K)
    paged.push(...p.sessions.map((s: { worker: number; id: number }) => `${s.worker}/${s.id}`))
  }
  t.same(
    paged,
    page.sessions.map((s: { worker: number; id: number }) => `${s.worker}/${s.id}`)
  )
  t.equal((await request(c.adminPort, 'GET', '/api/sessions?limit=0')).status, 400, 'bad paging: 400')

  // (b) the counters of both workers, summed.
  let text = await metrics(c)
  t.equal(metric(text, 'baton_sessions_total', { listener: 'web' }), K, `baton_sessions_total == ${K}`)
  t.equal(metric(text, 'baton_sessions_active', { listener: 'web' }), K, 'active summed')
  const perBackend = ['alpha', 'bravo'].map(
    (b) => metric(text, 'baton_backend_sessions_total', { listener: 'web', backend: b }) ?? 0
  )
  t.equal(perBackend[0]! + perBackend[1]!, K, 'backend sessions summed')
  t.equal(alpha.served + bravo.served, K)
  t.equal(metric(text, 'baton_backend_up', { backend: 'alpha' }), 1)
  t.equal(metric(text, 'baton_backend_admin_state', { backend: 'alpha', state: 'ready' }), 1)
  t.equal(metric(text, 'baton_workers'), 2, 'the primary’s own gauge')
  t.equal(metric(text, 'baton_worker_restarts_total'), 0)
  t.equal((text.match(/^# TYPE baton_sessions_total /gm) ?? []).length, 1, 'each metric once')

  const listeners = (await request(c.adminPort, 'GET', '/api/listeners')).body
  t.equal(listeners[0].counters.accepted, K)
  t.equal(listeners[0].active, K)
  t.equal(listeners[0].address.port, c.port, 'the workers’ port, not the configured 0')
  const backends = (await request(c.adminPort, 'GET', '/api/backends')).body
  t.equal(backends[0].sessions + backends[1].sessions, K)
  const html = (await request(c.adminPort, 'GET', '/')).text
  t.match(html, `${K} sessions alive`, 'the status page counts every worker')

  endAll(held)
  text = await eventually(
    () => metrics(c),
    (m) => metric(m, 'baton_sessions_active', { listener: 'web' }) === 0,
    'summed active back to 0'
  )
  t.pass('all closed, summed active back to 0')

  // New sessions after that still add up (sequential short ones).
  await exchanges(t, c.port, 6, 'more')
  text = await metrics(c)
  t.equal(metric(text, 'baton_sessions_total', { listener: 'web' }), K + 6)

  t.same(await c.stop('SIGTERM'), { code: 0, signal: null })
  t.equal(c.stderr.text.join('\n'), '', 'nothing on stderr')
})

t.test('(c, d) health checks and admin state in the primary reach every worker', async (t) => {
  const alpha = await appServer(t, 'alpha')
  const bravo = await appServer(t, 'bravo')
  const c = await startCluster(
    t,
    {
      listeners: [
        {
          name: 'web',
          listen: '127.0.0.1:0',
          healthCheck: { type: 'http', path: '/health', interval: '100ms', rise: 1, fall: 1 },
          backends: [alpha, bravo].map((s) => ({ name: s.name, host: HOST, port: s.port })),
        },
      ],
      admin: { listen: '127.0.0.1:0' },
      shutdownGrace: '5s',
      log: { level: 'debug' },
    },
    t.testdir({})
  )
  const fromWorkers = (msg: string, match: (l: LogLine) => boolean) => (l: LogLine) =>
    l.msg === msg && l.backend === 'bravo' && l.pid !== c.pid && match(l)

  // (c) bravo fails its check: the primary marks it down, both workers hear of it.
  bravo.healthy = false
  await c.logs.waitFor(
    (l) => l.msg === 'health check: backend is down' && l.backend === 'bravo' && l.pid === c.pid,
    'the primary: bravo down'
  )
  const down = await c.logs.waitFor(
    fromWorkers('backend health from the primary', (l) => l.up === false),
    'both workers: bravo down',
    2
  )
  t.same(new Set(down.map((l) => l.worker)), new Set([1, 2]))
  t.notOk(
    c.logs.all.some((l) => l.msg === 'health check: backend is down' && l.pid !== c.pid),
    'workers run no checks of their own'
  )
  let before = bravo.served
  await exchanges(t, c.port, 12, 'while bravo is down')
  t.equal(bravo.served, before, 'no new session went to bravo')
  const backends = (await request(c.adminPort, 'GET', '/api/backends')).body
  t.equal(backends.find((b: { name: string }) => b.name === 'bravo').health, 'down')

  bravo.healthy = true
  await c.logs.waitFor(
    fromWorkers('backend health from the primary', (l) => l.up === true),
    'both workers: bravo up',
    2
  )
  before = bravo.served
  await exchanges(t, c.port, 12, 'bravo back')
  t.ok(bravo.served > before, 'bravo takes sessions again')

  // (d) drain through the primary's API.
  const r = await request(c.adminPort, 'POST', '/api/backends/web%2Fbravo/drain')
  t.equal(r.status, 200, r.text)
  t.equal(r.body.admin, 'drain')
  const drained = await c.logs.waitFor(
    fromWorkers('backend admin state from the primary', (l) => l.to === 'drain'),
    'both workers: bravo drained',
    2
  )
  t.same(new Set(drained.map((l) => l.worker)), new Set([1, 2]))
  t.equal(
    metric(await metrics(c), 'baton_backend_admin_state', { backend: 'bravo', state: 'drain' }),
    1,
    'every worker reports drain'
  )
  before = bravo.served
  await exchanges(t, c.port, 12, 'while bravo drains')
  t.equal(bravo.served, before, 'no new session went to a drained backend')

  t.equal((await request(c.adminPort, 'POST', '/api/backends/bravo/ready')).status, 200)
  await c.logs.waitFor(
    fromWorkers('backend admin state from the primary', (l) => l.to === 'ready'),
    'both workers: bravo ready',
    2
  )
  before = bravo.served
  await exchanges(t, c.port, 12, 'bravo ready')
  t.ok(bravo.served > before, 'bravo takes sessions again')
  t.equal((await request(c.adminPort, 'POST', '/api/backends/nope/drain')).status, 404)

  t.same(await c.stop('SIGTERM'), { code: 0, signal: null })
})

t.test('(f, e) reload reaches the workers; a killed worker is replaced with the new config', async (t) => {
  const alpha = await appServer(t, 'alpha')
  const charlie = await appServer(t, 'charlie')
  const dir = t.testdir({})
  const listener = (backends: AppServer[], extra: Record<string, unknown> = {}) => ({
    listeners: [
      {
        name: 'web',
        listen: '127.0.0.1:0',
        backends: backends.map((s) => ({ name: s.name, host: HOST, port: s.port })),
        ...extra,
      },
    ],
    admin: { listen: '127.0.0.1:0' },
    shutdownGrace: '5s',
  })
  const c = await startCluster(t, listener([alpha]), dir)
  await exchanges(t, c.port, 4, 'before the reload')
  t.equal(alpha.served, 4)

  // (f) a new backend in place of the old one: every worker and the primary apply it.
  writeFileSync(join(dir, 'baton.json'), JSON.stringify(withPlane(listener([charlie]))))
  c.child.kill('SIGHUP')
  const reloaded = await c.logs.waitFor((l) => l.msg === 'configuration reloaded', 'reloaded ×3', 3)
  t.same(new Set(reloaded.map((l) => l.worker ?? 'primary')), new Set([1, 2, 'primary']))
  t.same(reloaded[0]!.backendsAdded, ['web/charlie'])
  await exchanges(t, c.port, 6, 'after the reload')
  t.equal(alpha.served, 4, 'the removed backend gets nothing new')
  t.equal(charlie.served, 6, 'the new backend takes every session')
  const names = (await request(c.adminPort, 'GET', '/api/backends')).body.map((b: { name: string }) => b.name)
  t.same(names, ['charlie'], 'the primary’s view has the new backends')

  // An invalid file is refused; the running configuration stays, in the primary and the workers.
  writeFileSync(join(dir, 'baton.json'), JSON.stringify(withPlane(listener([alpha], { balance: 'rr' }))))
  c.child.kill('SIGHUP')
  const refused = await c.logs.waitFor(
    (l) => l.msg === 'reload refused, the running configuration stays',
    'refused'
  )
  t.match(String(refused[0]!.reason), /listeners\[0\]\.balance: expected one of/)
  const viaApi = await request(c.adminPort, 'POST', '/api/reload')
  t.equal(viaApi.status, 400)
  t.match(viaApi.body.error, /balance/)
  await exchanges(t, c.port, 4, 'after a refused reload')
  t.equal(charlie.served, 10)
  t.equal(c.logs.all.filter((l) => l.msg === 'configuration reloaded').length, 3, 'nothing else reloaded')

  // (e) SIGKILL one worker: logged, replaced, and its replacement runs the configuration in force
  // (from the primary: the file on disk is still the invalid one).
  const victim = c.logs.all.find((l) => l.msg === 'listening' && l.worker === 1)!
  process.kill(victim.pid, 'SIGKILL')
  const died = await c.logs.waitFor(
    (l) => l.msg === 'worker exited unexpectedly, starting a replacement',
    'death logged'
  )
  t.equal(died[0]!.level, 'warn', 'a warning')
  t.equal(died[0]!.pid, c.pid, 'logged by the primary')
  t.equal(died[0]!.worker, 1)
  t.equal(died[0]!.signal, 'SIGKILL')
  const fresh = await c.logs.waitFor((l) => l.msg === 'listening' && l.worker === 3, 'worker 3 listening')
  t.same(fresh[0]!.backends, ['charlie'], 'the replacement starts with the current configuration')
  t.equal(fresh[0]!.address, `127.0.0.1:${c.port}`, 'on the same port')
  await exchanges(t, c.port, 8, 'after the replacement')
  t.equal(charlie.served, 18)
  const text = await eventually(
    () => metrics(c),
    (m) => metric(m, 'baton_workers') === 2,
    'two workers in the metrics'
  )
  t.equal(metric(text, 'baton_worker_restarts_total'), 1)
  const listeners = (await request(c.adminPort, 'GET', '/api/listeners')).body
  t.ok(listeners[0].counters.accepted >= 8, 'the replacement’s sessions are counted')

  t.same(await c.stop('SIGTERM'), { code: 0, signal: null })
  t.notOk(
    c.logs.all.some((l) => l.msg === 'listening' && (l.worker ?? 0) > 3),
    'no worker replaced on shutdown'
  )
})

t.test('(g) SIGTERM: live sessions finish within the grace period, exit 0', async (t) => {
  const alpha = await appServer(t, 'alpha')
  const c = await startCluster(
    t,
    {
      listeners: [
        { name: 'web', listen: '127.0.0.1:0', backends: [{ name: 'alpha', host: HOST, port: alpha.port }] },
      ],
      admin: { listen: '127.0.0.1:0' },
      shutdownGrace: '20s',
    },
    t.testdir({})
  )
  const live = await hold(c.port)
  t.teardown(() => live.destroy())
  const closed = new Promise<void>((resolve) => live.once('close', () => resolve()))
  c.child.kill('SIGTERM')
  await c.logs.waitFor((l) => l.msg === 'stopping' && l.pid === c.pid, 'the primary stopping')
  await c.logs.waitFor((l) => l.msg === 'waiting for sessions to finish', 'a worker waiting for its session')
  // The session still works during the grace period…
  const echoed = new Promise<string>((resolve) => live.once('data', (d: Buffer) => resolve(d.toString())))
  live.write('still here')
  t.equal(await echoed, 'still here', 'a live session carries on after SIGTERM')
  t.equal(c.child.exitCode, null, 'still running while a session is alive')
  // …and once it ends, everything exits 0 long before the 20 s grace.
  live.end()
  await closed
  t.same(await c.exit(), { code: 0, signal: null }, 'exit 0 without a second signal')
  t.ok(
    c.logs.all.some((l) => l.msg === 'stopped' && l.pid === c.pid),
    'the primary logged "stopped"'
  )
  t.notOk(
    c.logs.all.some((l) => l.msg === 'worker exited unexpectedly, starting a replacement'),
    'no replacement while stopping'
  )
})

t.test('(g) SIGTERM: a session that outlives the grace period is closed, exit 0', async (t) => {
  const alpha = await appServer(t, 'alpha')
  const c = await startCluster(
    t,
    {
      listeners: [
        { name: 'web', listen: '127.0.0.1:0', backends: [{ name: 'alpha', host: HOST, port: alpha.port }] },
      ],
      admin: { listen: '127.0.0.1:0' },
      shutdownGrace: '300ms',
    },
    t.testdir({})
  )
  const live = await hold(c.port)
  t.teardown(() => live.destroy())
  const closed = new Promise<void>((resolve) => live.once('close', () => resolve()))
  t.same(await c.stop('SIGTERM'), { code: 0, signal: null })
  await closed
  t.ok(
    c.logs.all.some((l) => l.msg === 'grace period over, closed remaining sessions'),
    'the worker closed it at the end of the grace period'
  )
})

t.test(
  '(g) shutdownGrace at the longest a timer holds: SIGTERM still waits, no timer overflow',
  async (t) => {
    // The primary waits the grace period plus a margin for its workers: that sum must not overflow a
    // timer (Node would fire it after 1 ms and kill the workers at once, with a TimeoutOverflowWarning).
    const alpha = await appServer(t, 'alpha')
    const c = await startCluster(
      t,
      {
        listeners: [
          { name: 'web', listen: '127.0.0.1:0', backends: [{ name: 'alpha', host: HOST, port: alpha.port }] },
        ],
        admin: { listen: '127.0.0.1:0' },
        shutdownGrace: '2147483647ms',
      },
      t.testdir({})
    )
    const live = await hold(c.port)
    t.teardown(() => live.destroy())
    const closed = new Promise<void>((resolve) => live.once('close', () => resolve()))
    c.child.kill('SIGTERM')
    await c.logs.waitFor(
      (l) => l.msg === 'waiting for sessions to finish',
      'a worker waiting for its session'
    )
    const echoed = new Promise<string>((resolve) => live.once('data', (d: Buffer) => resolve(d.toString())))
    live.write('still here')
    t.equal(await echoed, 'still here', 'the session carries on')
    live.end()
    await closed
    t.same(await c.exit(), { code: 0, signal: null })
    t.notOk(
      c.logs.all.some((l) => l.msg === 'workers did not exit in time, killing them'),
      'no worker killed for want of time'
    )
    t.notMatch(c.stderr.text.join('\n'), /TimeoutOverflowWarning/, 'no timer overflowed')
  }
)

t.test('(e) a SIGKILLed worker’s counters stay in the sums; its live sessions do not', async (t) => {
  const alpha = await appServer(t, 'alpha')
  const bravo = await appServer(t, 'bravo')
  const c = await startCluster(
    t,
    {
      listeners: [
        {
          name: 'web',
          listen: '127.0.0.1:0',
          backends: [alpha, bravo].map((s) => ({ name: s.name, host: HOST, port: s.port })),
        },
      ],
      admin: { listen: '127.0.0.1:0' },
      shutdownGrace: '5s',
    },
    t.testdir({})
  )
  // Sessions held until both workers hold some (bounded: at most 30 batches), some ended before.
  await exchanges(t, c.port, 4, 'ended')
  const held: Socket[] = []
  t.teardown(() => endAll(held))
  let page: any
  for (let batch = 0; batch < 30; batch++) {
    for (let i = 0; i < 3; i++) held.push(await hold(c.port))
    page = (await request(c.adminPort, 'GET', '/api/sessions?limit=1000')).body
    if (new Set(page.sessions.map((s: { worker: number }) => s.worker)).size === 2) break
  }
  const on = (w: number) => page.sessions.filter((s: { worker: number }) => s.worker === w).length
  t.ok(on(1) > 0 && on(2) > 0, `both workers hold sessions (${on(1)} and ${on(2)})`)
  const K = 4 + held.length
  const before = await metrics(c)
  const total = (text: string) => metric(text, 'baton_sessions_total', { listener: 'web' })
  const backendTotal = (text: string) =>
    ['alpha', 'bravo'].reduce(
      (n, b) => n + (metric(text, 'baton_backend_sessions_total', { listener: 'web', backend: b }) ?? 0),
      0
    )
  t.equal(total(before), K, `baton_sessions_total == ${K} before`)
  t.equal(backendTotal(before), K)
  t.equal(metric(before, 'baton_sessions_active', { listener: 'web' }), held.length)

  const victim = c.logs.all.find((l) => l.msg === 'listening' && l.worker === 1)!
  process.kill(victim.pid, 'SIGKILL')
  await c.logs.waitFor((l) => l.msg === 'worker exited unexpectedly, starting a replacement', 'death')
  await c.logs.waitFor((l) => l.msg === 'listening' && l.worker === 3, 'worker 3 listening')
  const after = await eventually(
    () => metrics(c),
    (m) => metric(m, 'baton_workers') === 2,
    'two workers in the metrics'
  )
  t.equal(total(after), K, 'baton_sessions_total did not fall: the dead worker’s count is kept')
  t.equal(backendTotal(after), K, 'backend counters kept too')
  t.equal(
    metric(after, 'baton_sessions_active', { listener: 'web' }),
    on(2),
    'the dead worker’s live sessions are not kept (a gauge)'
  )
  const listeners = (await request(c.adminPort, 'GET', '/api/listeners')).body
  t.equal(listeners[0].counters.accepted, K, 'the API and status page totals did not fall either')
  t.equal(listeners[0].active, on(2))

  // New sessions add to the kept total.
  await exchanges(t, c.port, 5, 'after the replacement')
  t.equal(total(await metrics(c)), K + 5)
  t.equal((await request(c.adminPort, 'GET', '/api/listeners')).body[0].counters.accepted, K + 5)
  endAll(held)
  t.same(await c.stop('SIGTERM'), { code: 0, signal: null })
})
