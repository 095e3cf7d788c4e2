#!/usr/bin/env node
/**
 * bench/compare.mjs — Baton against HAProxy (`mode tcp`) and nginx `stream`, and a direct connection,
 * on the same machine, in the same run, with the load tools people use for each protocol.
 *
 *   npm run build && node bench/compare.mjs [--runs 3] [--duration 3s] [--sessions 10000]
 *                                           [--only bulk,http,redis,conn,idle,failover-http,failover-redis,handoff]
 *                                           [--dist DIR] [--quick]
 *
 * Balancers (columns): direct (the client straight to one backend), the minimal Node proxy
 * (bench/lib/node-proxy.mjs: data / pause / drain, half-close, round-robin, nothing else; the floor
 * for any proxy in Node, in the bulk, HTTP, Redis, connection-rate and idle scenarios), Baton
 * (dist/cli.js, one process, default protocol `opaque`), Baton `--protocol http1` (HTTP scenarios)
 * and `--protocol resp` (Redis scenarios), Baton `--workers 2` (when dist/cli.js --help lists it),
 * HAProxy (`mode tcp`, `balance roundrobin`, its default threads; and `nbthread 1` in the HTTP and
 * connection-rate scenarios, the CPU share one Baton process has), HAProxy with `option
 * splice-request` and `option splice-response` (kernel-to-kernel splice(2); bulk, HTTP, Redis and
 * connection rate), nginx `stream` (one process). All round-robin over the same backends, with the
 * same health checks where there are three backends: Baton `--health-check tcp --check-interval
 * 500ms`, HAProxy `check inter 500ms`, nginx's passive marking; the Node proxy checks nothing.
 *
 * Scenarios:
 *   bulk            iperf3 -c, one stream, for --duration: Gbit/s (one iperf3 -s behind each balancer)
 *   http            wrk -t2 -c50 --latency, keep-alive, 1 KiB from 3 nginx: req/s, p50, p99
 *   redis           redis-benchmark -t set,get -P 16 -c 50 over 3 redis-server: req/s per command
 *                   (-n sized from a short GET run through the same balancer so each test lasts --duration)
 *   conn            wrk -t2 -c50 with `Connection: close` against 3 nginx: new connections/s
 *   idle            --sessions idle sessions held open through the balancer to a Node backend that
 *                   holds them: (VmRSS after − VmRSS before) / sessions, summed over the balancer's
 *                   processes (a Baton primary and its workers)
 *   failover-http   wrk -t2 -c30 against 3 nginx; one nginx SIGKILLed half-way: wrk's socket errors
 *                   (connect/read/write/timeout) plus non-2xx responses
 *   failover-redis  redis-benchmark -t set,get -P 16 -c 50; one redis-server SIGKILLed a quarter of the
 *                   way: exit status, error lines, whether it hung (requests never answered)
 *   handoff         Baton's hand-off latency, pooled vs new connection: `node bench/failover.mjs
 *                   --only handoff` (a backend that resets a request of every connection), p50/p99
 * Before every measured http and conn run, every balancer gets the same 1 s wrk warm-up; iperf3 leaves
 * out its first second (-O 1); the redis sizing run warms up too.
 *
 * Every balancer is measured alone (load client and backends aside, nothing else of ours runs); the
 * order of the balancers is reversed every other run. Figures are medians over --runs runs; ratios
 * are the median over runs of the per-run ratio to HAProxy, to nginx, to the Node proxy and to direct
 * (same run).
 *
 * --render FILE: measure nothing; write FILE's .md and .svg again from the JSON (after a change of
 * the report's layout or the chart's): the chart-only mode.
 * --plane auto|js|native: Baton's `--data-plane` for its columns (default: Baton's default). Unless it
 * is js, a "Baton js plane" column (opaque, `--data-plane js`) runs beside them in the bulk, HTTP,
 * connection-rate and idle scenarios, and every figure gets its ratio to it (same run).
 * --dist DIR: measure another build of Baton (default ./dist; its cli.js, and index.js for handoff).
 * --quick: one run of about a second per scenario, 500 idle sessions, no warm-up: a smoke test for
 * CI. Exit 0 when every scenario ran and produced numbers, 1 when one failed to run, 2 on bad flags;
 * its numbers are not measurements and no target is judged. A peer or tool that is not installed is
 * skipped with a note (bench/setup.sh installs them all).
 *
 * Output: tables on stdout; bench/results/compare.json (machine, versions, every command and run),
 * compare.md (tables ready for README / RESULTS.md) and compare.svg (chart, HAProxy = 1.0, the Node
 * proxy among the bars so that every reader sees the floor; lower-is-better figures inverted so a
 * taller bar is better everywhere; failover client errors in counts on a panel of their own); quick
 * mode writes compare-quick.* instead so that it never replaces a real run's results, and its chart
 * is watermarked. `--render` redraws both from the JSON without measuring anything.
 *
 * Every process started is stopped by pid (with its descendants) at the end, also on error, SIGINT
 * and SIGTERM; a watchdog bounds the whole run. Only 127.0.0.1 is used.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { renderGroupedBars } from './lib/chart.mjs'
import {
  HOST,
  UsageError,
  childManager,
  descendants,
  distInfo,
  gitInfo,
  machineInfo,
  median,
  noop,
  now,
  parseArgs,
  parseDuration,
  parseIntFlag,
  processManager,
  roleArgs,
  serveRpc,
  sleep,
  spread,
  table,
  vmRssKiB,
  withTimeout,
} from './lib/harness.mjs'
import {
  batonMetrics,
  fdLimits,
  findBins,
  maxConnFor,
  parseIperf3,
  parseRedisBenchmark,
  parseWrk,
  redisBenchmarkArgs,
  startBalancer,
  startIperf3,
  startNginxHttp,
  startRedis,
  versions,
  wrkArgs,
} from './lib/peers.mjs'

const SELF = fileURLToPath(import.meta.url)
const BENCH_DIR = path.dirname(SELF)
const ROOT = path.dirname(BENCH_DIR)
const RESULTS_DIR = path.join(BENCH_DIR, 'results')
const TAG = 'bench/compare'

// ---------------------------------------------------------------------------------------------
// Balancers and scenarios

/** Columns. `only`: the scenarios a variant is measured in. */
const BALANCERS = [
  { key: 'direct', label: 'direct', kind: 'direct' },
  {
    key: 'node',
    label: 'minimal Node proxy',
    kind: 'node',
    only: ['bulk', 'http', 'redis', 'conn', 'idle'],
  },
  { key: 'baton', label: 'Baton', kind: 'baton' },
  {
    key: 'baton-http1',
    label: 'Baton http1',
    kind: 'baton',
    protocol: 'http1',
    only: ['http', 'failover-http'],
  },
  {
    key: 'baton-resp',
    label: 'Baton resp',
    kind: 'baton',
    protocol: 'resp',
    only: ['redis', 'failover-redis'],
  },
  { key: 'baton-w2', label: 'Baton --workers 2', kind: 'baton', workers: 2 },
  {
    // Issue 11's two-core target for keep-alive HTTP is http1 with both cores, as HAProxy has.
    key: 'baton-http1-w2',
    label: 'Baton http1 --workers 2',
    kind: 'baton',
    protocol: 'http1',
    workers: 2,
    only: ['http'],
  },
  {
    // The JavaScript plane beside the plane --plane picks (skipped with --plane js): the same run
    // says what the native plane changes.
    key: 'baton-js',
    label: 'Baton js plane',
    kind: 'baton',
    dataPlane: 'js',
    only: ['bulk', 'http', 'conn', 'idle'],
  },
  { key: 'haproxy', label: 'HAProxy', kind: 'haproxy' },
  {
    key: 'haproxy-splice',
    label: 'HAProxy splice',
    kind: 'haproxy',
    splice: true,
    only: ['bulk', 'http', 'redis', 'conn'],
  },
  {
    // One thread, as one Baton process has for its data path: the same CPU share on a shared machine.
    key: 'haproxy-1t',
    label: 'HAProxy nbthread 1',
    kind: 'haproxy',
    threads: 1,
    only: ['http', 'conn'],
  },
  { key: 'nginx', label: 'nginx stream', kind: 'nginx' },
]
/** Ratios are given to these columns (same run). */
const REFERENCES = ['haproxy', 'haproxy-splice', 'haproxy-1t', 'nginx', 'node', 'direct', 'baton-js']

/** Metric: key, label, unit, digits shown, which way is better. */
const M = (key, label, unit, digits, better = 'higher') => ({ key, label, unit, digits, better })

const SCENARIOS = [
  {
    key: 'bulk',
    title: 'bulk throughput: iperf3, 1 stream',
    needs: ['iperf3'],
    direct: true,
    metrics: [M('gbps', 'Gbit/s', 'Gbit/s', 2)],
    setup: setupIperf3,
    measure: measureBulk,
  },
  {
    key: 'http',
    title: 'HTTP: wrk -t2 -c50 keep-alive, 1 KiB from 3 nginx',
    needs: ['wrk', 'nginx'],
    direct: true,
    checks: true,
    metrics: [
      M('rps', 'req/s', 'req/s', 0),
      M('p50ms', 'p50', 'ms', 2, 'lower'),
      M('p99ms', 'p99', 'ms', 2, 'lower'),
    ],
    setup: setupNginx,
    measure: measureHttp,
  },
  {
    key: 'redis',
    title: 'Redis: redis-benchmark -t set,get -P 16 -c 50, 3 redis-server',
    needs: ['redisServer', 'redisBenchmark'],
    direct: true,
    checks: true,
    metrics: [M('setRps', 'SET req/s', 'req/s', 0), M('getRps', 'GET req/s', 'req/s', 0)],
    setup: setupRedis,
    measure: measureRedis,
  },
  {
    key: 'conn',
    title: 'connection rate: wrk -t2 -c50, Connection: close, 3 nginx',
    needs: ['wrk', 'nginx'],
    direct: true,
    checks: true,
    metrics: [M('cps', 'conn/s', 'conn/s', 0)],
    setup: setupNginx,
    measure: measureConn,
  },
  {
    key: 'idle',
    title: 'idle memory per session',
    needs: [],
    direct: false,
    metrics: [M('kibPerSession', 'KiB/session', 'KiB', 2, 'lower')],
    setup: setupIdle,
    measure: measureIdle,
  },
  {
    key: 'failover-http',
    title: 'failover under HTTP load: wrk -t2 -c30, 1 of 3 nginx SIGKILLed half-way',
    needs: ['wrk', 'nginx'],
    direct: false,
    checks: true,
    admin: true,
    metrics: [M('errors', 'client errors', '', 0, 'lower')],
    setup: setupNginx,
    measure: measureFailoverHttp,
  },
  {
    key: 'failover-redis',
    title: 'failover under Redis load: redis-benchmark -P 16 -c 50, 1 of 3 redis-server SIGKILLed',
    needs: ['redisServer', 'redisBenchmark'],
    direct: false,
    checks: true,
    admin: true,
    metrics: [M('errors', 'client errors', '', 0, 'lower')],
    setup: setupRedis,
    measure: measureFailoverRedis,
  },
]
const SCENARIO_KEYS = [...SCENARIOS.map((s) => s.key), 'handoff']

// ---------------------------------------------------------------------------------------------
// Flags

const VALUE_FLAGS = ['runs', 'duration', 'sessions', 'only', 'dist', 'render', 'plane']
const PLANES = ['auto', 'js', 'native']
const BOOLEAN_FLAGS = ['quick', 'help']
const USAGE = `usage: node bench/compare.mjs [--runs 3] [--duration 3s] [--sessions 10000] [--only ${SCENARIO_KEYS.join(',')}] [--plane auto|js|native] [--dist DIR] [--quick]
       node bench/compare.mjs --render bench/results/compare.json   (rewrite its .md and .svg)`

function resolveParams(flags) {
  const quick = flags.quick === true
  const durationMs = flags.duration !== undefined ? parseDuration(flags.duration) : quick ? 1000 : 3000
  const p = {
    quick,
    runs: flags.runs !== undefined ? parseIntFlag(flags.runs, 'runs', 1, 50) : quick ? 1 : 3,
    /** wrk and iperf3 take whole seconds. */
    durationS: Math.max(1, Math.round(durationMs / 1000)),
    sessions:
      flags.sessions !== undefined
        ? parseIntFlag(flags.sessions, 'sessions', 10, 100_000)
        : quick
          ? 500
          : 10_000,
    only: flags.only !== undefined ? String(flags.only).split(',') : SCENARIO_KEYS,
    dist: path.resolve(flags.dist ?? path.join(ROOT, 'dist')),
    /** Baton's --data-plane for its columns (undefined: Baton's default). */
    plane: flags.plane,
  }
  if (p.plane !== undefined && !PLANES.includes(p.plane))
    throw new UsageError(`--plane: expected one of ${PLANES.join(', ')}`)
  for (const s of p.only)
    if (!SCENARIO_KEYS.includes(s)) throw new UsageError(`--only: unknown scenario ${s}`)
  /** The failover runs: long enough to see the load before and after the kill. */
  p.failoverS = quick ? 2 : Math.max(4, p.durationS)
  p.warmupS = quick ? 0 : 1
  return p
}

// ---------------------------------------------------------------------------------------------
// Children for the idle scenario: a backend that holds every connection, a client that opens them

async function idleBackendMain() {
  let open = 0
  let accepted = 0
  const srv = net.createServer((s) => {
    open++
    accepted++
    s.on('error', noop)
    s.on('close', () => open--)
    s.resume()
  })
  await new Promise((resolve, reject) => {
    srv.once('error', reject)
    srv.listen({ host: HOST, port: 0, backlog: 4096 }, resolve)
  })
  serveRpc({
    count: () => ({ open, accepted }),
    exit: () => {
      setImmediate(() => process.exit(0))
      return {}
    },
  })
  process.send({ type: 'ready', port: srv.address().port })
}

async function idleClientMain() {
  let socks = []
  serveRpc({
    /** Open `n` connections to `port`, `parallel` handshakes at a time; resolves once each connected or failed. */
    open: ({ port, n, parallel }) =>
      new Promise((resolve) => {
        let started = 0
        let settled = 0
        let inflight = 0
        let errors = 0
        let firstError
        const t0 = now()
        const launch = () => {
          while (inflight < parallel && started < n) {
            started++
            inflight++
            const s = net.connect(port, HOST)
            let done = false
            const settle = (err) => {
              if (done) return
              done = true
              inflight--
              settled++
              if (err) {
                errors++
                firstError ??= err.message
              } else socks.push(s)
              if (settled === n) resolve({ connected: socks.length, errors, firstError, ms: now() - t0 })
              else launch()
            }
            s.once('connect', () => settle())
            s.on('error', (err) => settle(err))
          }
        }
        launch()
      }),
    /** How many of the client's sockets the far side has closed. */
    status: () => ({ open: socks.filter((s) => !s.destroyed && s.readyState === 'open').length }),
    close: () => {
      for (const s of socks) s.destroy()
      socks = []
      return {}
    },
    exit: () => {
      setImmediate(() => process.exit(0))
      return {}
    },
  })
  process.send({ type: 'ready' })
}

// ---------------------------------------------------------------------------------------------
// Scenario set-up (backends) and measurements. `ctx` holds the process managers, binaries, params.

async function setupIperf3(ctx) {
  const s = { iperf: await startIperf3(ctx.pm, ctx.bins) }
  s.ports = [s.iperf.port]
  s.recover = async () => {
    await ctx.pm.stop(s.iperf.child)
    s.iperf = await startIperf3(ctx.pm, ctx.bins, s.iperf.port)
  }
  s.teardown = () => ctx.pm.stop(s.iperf.child)
  return s
}

/**
 * iperf3 -s serves one test at a time, and takes any connection for one: a balancer's start-up probe
 * of its backends (Baton tries each once) makes it run a test that fails, after which it listens
 * again. Wait until its log ends with "Server listening" and has been quiet for 300 ms (at most 5 s).
 */
async function iperfIdle(logFile) {
  const end = Date.now() + 5000
  let last
  let since = Date.now()
  while (Date.now() < end) {
    const text = fs.readFileSync(logFile, 'utf8').trimEnd()
    if (text !== last) {
      last = text
      since = Date.now()
    } else if (Date.now() - since >= 300 && /Server listening on \d+[^\n]*\n-+$/.test(text)) return
    await sleep(50)
  }
}

async function measureBulk(ctx, s, lb) {
  await iperfIdle(s.iperf.child.logFile)
  const a = ['-c', HOST, '-p', String(lb.port), '-t', String(ctx.p.durationS), '-J']
  if (!ctx.p.quick) a.push('-O', '1')
  const r = await ctx.pm.run(ctx.bins.iperf3, a, { timeoutMs: (ctx.p.durationS + 30) * 1000 })
  const x = parseIperf3(r.stdout)
  if (x.error) throw new Error(`iperf3: ${x.error}${r.timedOut ? ' (timed out)' : ''}`)
  return { gbps: x.gbps }
}

async function setupNginx(ctx) {
  const s = { nginx: [] }
  for (let i = 0; i < 3; i++) s.nginx.push(await startNginxHttp(ctx.pm, ctx.bins, ctx.dir))
  s.ports = s.nginx.map((x) => x.port)
  ctx.configs['nginx HTTP backend'] ??= fs.readFileSync(s.nginx[0].conf, 'utf8')
  s.teardown = () => Promise.all(s.nginx.map((x) => ctx.pm.stop(x.child)))
  return s
}

async function setupRedis(ctx) {
  const s = { redis: [] }
  for (let i = 0; i < 3; i++) s.redis.push(await startRedis(ctx.pm, ctx.bins))
  s.ports = s.redis.map((x) => x.port)
  s.teardown = () => Promise.all(s.redis.map((x) => ctx.pm.stop(x.child)))
  return s
}

/** wrk, after the same warm-up for every balancer; throws when wrk did not report a rate. */
async function wrk(ctx, port, { conns = 50, durationS, close = false, warmup = true }) {
  if (warmup && ctx.p.warmupS > 0)
    await ctx.pm.run(ctx.bins.wrk, wrkArgs(port, { conns, durationS: ctx.p.warmupS, close }), {
      timeoutMs: 30_000,
    })
  const r = await ctx.pm.run(ctx.bins.wrk, wrkArgs(port, { conns, durationS, close }), {
    timeoutMs: (durationS + 30) * 1000,
  })
  const w = parseWrk(r.stdout)
  if (r.code !== 0 || !Number.isFinite(w.rps))
    throw new Error(`wrk exited ${r.signal ?? r.code}: ${(r.stderr || r.stdout).trim().slice(0, 300)}`)
  return w
}

async function measureHttp(ctx, s, lb) {
  const w = await wrk(ctx, lb.port, { durationS: ctx.p.durationS })
  return { rps: w.rps, p50ms: w.p50ms, p99ms: w.p99ms, errors: w.socketErrors + w.non2xx }
}

async function measureConn(ctx, s, lb) {
  const w = await wrk(ctx, lb.port, { durationS: ctx.p.durationS, close: true })
  return { cps: w.rps, p99ms: w.p99ms, errors: w.socketErrors + w.non2xx }
}

async function redisBench(ctx, port, tests, n, timeoutMs) {
  const r = await ctx.pm.run(ctx.bins.redisBenchmark, redisBenchmarkArgs(port, { tests, n }), { timeoutMs })
  return { ...r, ...parseRedisBenchmark(r.stdout, r.stderr) }
}

async function measureRedis(ctx, s, lb, b) {
  let n = 50_000
  if (!ctx.p.quick) {
    // Size -n so each test lasts about --duration through this balancer (also its warm-up).
    const cal = await redisBench(ctx, lb.port, 'get', 100_000, 60_000)
    const est = cal.tests.GET?.rps
    if (!Number.isFinite(est))
      throw new Error(`redis-benchmark (sizing run) failed: ${cal.errorLines.join('; ') || cal.stderr}`)
    n = Math.min(10_000_000, Math.max(50_000, Math.round(est * ctx.p.durationS)))
  }
  const r = await redisBench(ctx, lb.port, 'set,get', n, (ctx.p.durationS * 6 + 60) * 1000)
  if (r.code !== 0 || !r.tests.SET || !r.tests.GET)
    throw new Error(
      `redis-benchmark exited ${r.signal ?? r.code}${r.timedOut ? ' (timed out)' : ''}: ${r.errorLines.join('; ') || r.stderr.slice(0, 300)}`
    )
  ctx.redisRate[b.key] = r.tests.GET.rps
  return {
    setRps: r.tests.SET.rps,
    getRps: r.tests.GET.rps,
    setP99ms: r.tests.SET.p99ms,
    getP99ms: r.tests.GET.p99ms,
    n,
  }
}

async function setupIdle(ctx) {
  const backend = await ctx.cm.spawn('idle-backend')
  const client = await ctx.cm.spawn('idle-client')
  return { backend, client, ports: [backend.info.port], teardown: noop }
}

/** RSS of a balancer in KiB: its process and every descendant (a Baton primary and its workers). */
function balancerRss(lb) {
  const pids = [lb.child.pid, ...descendants(lb.child.pid)]
  return { kib: pids.reduce((a, p) => a + vmRssKiB(p), 0), pids }
}

async function measureIdle(ctx, s, lb) {
  const { cm, p } = ctx
  const n = ctx.sessions
  const count = async () => (await cm.rpc(s.backend, 'count')).open
  await sleep(500)
  const before = balancerRss(lb)
  const opened = await cm.rpc(s.client, 'open', { port: lb.port, n, parallel: 200 }, 120_000)
  try {
    if (opened.connected < n)
      throw new Error(
        `only ${opened.connected} of ${n} connections opened (${opened.errors} errors, first: ${opened.firstError})`
      )
    const deadline = Date.now() + 60_000
    let open = await count()
    while (open < n && Date.now() < deadline) {
      await sleep(100)
      open = await count()
    }
    if (open < n) throw new Error(`only ${open} of ${n} sessions reached the backend within 60 s`)
    await sleep(p.quick ? 300 : 1000)
    const at1s = balancerRss(lb)
    // Idle means idle: a balancer in Node grows V8's young generation during the connection burst
    // (up to 2 × 16 MiB) and gives it back when V8's memory reducer runs after a few quiet seconds.
    // Wait until RSS stops falling (at most 20 s) and report that, with the figure at 1 s beside it.
    let after = at1s
    for (let i = 0; !p.quick && i < 20; i++) {
      await sleep(1000)
      const next = balancerRss(lb)
      const settled = next.kib >= after.kib * 0.995
      after = next
      if (settled && i >= 2) break
    }
    const stillOpen = (await cm.rpc(s.client, 'status')).open
    if (stillOpen < n)
      throw new Error(`the balancer closed ${n - stillOpen} of the ${n} idle client connections`)
    return {
      kibPerSession: (after.kib - before.kib) / n,
      kibPerSessionAt1s: (at1s.kib - before.kib) / n,
      rssBeforeKiB: before.kib,
      rssAfterKiB: after.kib,
      pids: after.pids.length,
      sessions: n,
      openMs: Math.round(opened.ms),
    }
  } finally {
    await cm.rpc(s.client, 'close')
    const deadline = Date.now() + 10_000
    while ((await count()) > 0 && Date.now() < deadline) await sleep(50)
  }
}

/** SIGKILL backend `i` of `list` after `ms`; returns a function that cancels and tells whether it fired. */
function killLater(list, i, ms) {
  const victim = list[i]
  let fired = false
  const t = setTimeout(() => {
    fired = true
    try {
      process.kill(victim.child.pid, 'SIGKILL')
    } catch {
      /* gone */
    }
  }, ms)
  return () => {
    clearTimeout(t)
    return fired
  }
}

/** Once a killed backend has exited, start it again on its port for the next balancer. */
async function restartIfKilled(victim, start, put) {
  const c = victim.child
  if (c.exitCode === null && c.signalCode === null) {
    // Killed just now (the timer fired as the load ended): wait for it; not killed at all: keep it.
    const gone = await Promise.race([c.exited.then(() => true), sleep(2000).then(() => false)])
    if (!gone) return
  }
  put(await start())
}

async function batonCounters(lb) {
  if (lb.admin === undefined) return undefined
  try {
    return await batonMetrics(lb.admin)
  } catch (err) {
    return { error: String(err.message ?? err) }
  }
}

async function measureFailoverHttp(ctx, s, lb, b, run) {
  const i = run % 3
  const victim = s.nginx[i]
  const durationS = ctx.p.failoverS
  try {
    const cancel = killLater(s.nginx, i, (durationS * 1000) / 2)
    const r = await ctx.pm.run(ctx.bins.wrk, wrkArgs(lb.port, { conns: 30, durationS }), {
      timeoutMs: (durationS + 30) * 1000,
    })
    const killed = cancel()
    const w = parseWrk(r.stdout)
    if (!Number.isFinite(w.requests))
      throw new Error(`wrk exited ${r.signal ?? r.code}: ${(r.stderr || r.stdout).slice(0, 300)}`)
    if (!killed) throw new Error('the backend was not killed during the run')
    return {
      errors: w.socketErrors + w.non2xx,
      socketErrors: w.errors,
      non2xx: w.non2xx,
      requests: w.requests,
      rps: w.rps,
      baton: await batonCounters(lb),
    }
  } finally {
    await restartIfKilled(
      victim,
      () => startNginxHttp(ctx.pm, ctx.bins, ctx.dir, victim.port),
      (x) => (s.nginx[i] = x)
    )
  }
}

async function measureFailoverRedis(ctx, s, lb, b, run) {
  const i = run % 3
  const victim = s.redis[i]
  const durationS = ctx.p.failoverS
  // -n so that SET and GET each take about half the run at this balancer's measured rate; the kill
  // lands a quarter of the way in, during SET.
  const rate = ctx.redisRate[b.key] ?? ctx.redisRate.baton ?? 150_000
  // At least 200,000 each, so that even the fastest balancer is still busy when the kill comes.
  const n = Math.max(200_000, Math.round((rate * durationS) / 2))
  try {
    const cancel = killLater(s.redis, i, (durationS * 1000) / 4)
    // A client left waiting for replies that never come (a balancer that lost them) hangs: it is
    // stopped after 3× the expected time and counted as an error.
    const r = await redisBench(ctx, lb.port, 'set,get', n, (durationS * 3 + 5) * 1000)
    const killed = cancel()
    const finished = r.code === 0 && !r.timedOut
    const completed = Boolean(r.tests.SET && r.tests.GET)
    if (!killed) throw new Error('the backend was not killed during the run (redis-benchmark finished first)')
    return {
      errors: Math.max(r.errorLines.length, finished && completed ? 0 : 1),
      exit: r.timedOut ? 'hung' : (r.signal ?? r.code),
      errorLines: r.errorLines.slice(0, 5),
      completed,
      setRps: r.tests.SET?.rps,
      getRps: r.tests.GET?.rps,
      n,
      baton: await batonCounters(lb),
    }
  } finally {
    await restartIfKilled(
      victim,
      () => startRedis(ctx.pm, ctx.bins, victim.port),
      (x) => (s.redis[i] = x)
    )
  }
}

/** Hand-off latency, pooled vs new: bench/failover.mjs's own scenario, its JSON read back. */
async function measureHandoff(ctx) {
  const a = [path.join(BENCH_DIR, 'failover.mjs'), '--only', 'handoff', '--dist', ctx.p.dist]
  if (ctx.p.quick) a.push('--quick')
  else a.push('--duration', `${ctx.p.durationS}s`, '--runs', String(ctx.p.runs))
  const r = await ctx.pm.run(process.execPath, a, {
    timeoutMs: (ctx.p.durationS * ctx.p.runs * 2 + 120) * 1000,
  })
  const m = /^JSON: (.+)$/m.exec(r.stdout)
  if (r.code !== 0 || m === null)
    throw new Error(
      `bench/failover.mjs exited ${r.signal ?? r.code}: ${(r.stderr || r.stdout).trim().slice(-400)}`
    )
  const report = JSON.parse(fs.readFileSync(path.resolve(ROOT, m[1]), 'utf8'))
  return {
    command: r.command,
    json: m[1],
    rows: report.handoff.rows.map((x) => ({
      label: x.label,
      count: x.count,
      batonP50us: x.batonP50,
      batonP99us: x.batonP99,
      excessP50us: x.excessP50,
      excessP99us: x.excessP99,
    })),
  }
}

// ---------------------------------------------------------------------------------------------
// Statistics over runs

/** Medians, spreads and per-run ratios of one scenario's results. */
function summarize(sc, byBalancer) {
  const out = {}
  const val = (key, m, r) => byBalancer[key]?.runs[r]?.metrics?.[m] ?? null
  for (const [key, x] of Object.entries(byBalancer)) {
    const s = { median: {}, spread: {}, vs: Object.fromEntries(REFERENCES.map((ref) => [ref, {}])) }
    for (const m of sc.metrics) {
      const xs = x.runs.map((r) => r.metrics?.[m.key] ?? null)
      s.median[m.key] = median(xs)
      s.spread[m.key] = spread(xs)
      if (sc.key.startsWith('failover')) continue
      for (const ref of REFERENCES) {
        if (byBalancer[ref] === undefined) continue
        const ratios = x.runs.map((_, r) => {
          const a = val(key, m.key, r)
          const b = val(ref, m.key, r)
          return a !== null && b ? a / b : null
        })
        s.vs[ref][m.key] = median(ratios)
      }
    }
    out[key] = s
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Reports

const fmt = (v, digits) =>
  v === null || v === undefined || !Number.isFinite(v)
    ? '—'
    : v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
/** A count, or the median of an even number of counts (10.5). */
const fmtCount = (v) => fmt(v, Number.isInteger(v) ? 0 : 1)
const fmtRatio = (v) => (v === null || v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(2))

/** The scenario's table for stdout: one row per balancer and metric. */
function scenarioTable(sc, res) {
  const extra = ['haproxy-splice', 'haproxy-1t', 'baton-js'].filter((k) => res.summary[k] !== undefined)
  const rows = [
    [
      'balancer',
      'metric',
      'median',
      'spread',
      '/HAProxy',
      '/nginx',
      '/node',
      '/direct',
      ...extra.map((k) => ({ 'haproxy-splice': '/splice', 'haproxy-1t': '/HAProxy 1t' })[k] ?? '/js plane'),
    ],
  ]
  for (const b of BALANCERS) {
    const x = res.summary[b.key]
    if (x === undefined) continue
    for (const m of sc.metrics)
      rows.push([
        b.label,
        m.label,
        fmt(x.median[m.key], m.digits),
        x.spread[m.key],
        fmtRatio(x.vs.haproxy[m.key]),
        fmtRatio(x.vs.nginx[m.key]),
        fmtRatio(x.vs.node?.[m.key]),
        fmtRatio(x.vs.direct[m.key]),
        ...extra.map((k) => fmtRatio(x.vs[k]?.[m.key])),
      ])
  }
  return table(rows)
}

/** Headline columns: scenario, metric, short heading. */
const HEADLINE = [
  ['bulk', 'gbps', 'bulk Gbit/s'],
  ['http', 'rps', 'HTTP req/s'],
  ['http', 'p99ms', 'HTTP p99 ms'],
  ['redis', 'setRps', 'Redis SET req/s'],
  ['redis', 'getRps', 'Redis GET req/s'],
  ['conn', 'cps', 'new conn/s'],
  ['idle', 'kibPerSession', 'idle KiB/session'],
]

function markdown(report) {
  const { results, params: p } = report
  const L = []
  const metricOf = (sk, mk) => SCENARIOS.find((s) => s.key === sk).metrics.find((m) => m.key === mk)
  L.push(`## Baton vs HAProxy and nginx stream — \`node bench/compare.mjs ${report.argv.join(' ')}\``)
  L.push('')
  L.push(
    `${report.date.slice(0, 10)}, ${report.machine.nproc}-core ${report.machine.cpuModel}, load average ` +
      `${report.machine.loadavg.start.map((x) => x.toFixed(2)).join(' ')}` +
      `${report.machine.tcpTimeWait?.start !== undefined ? ` and ${report.machine.tcpTimeWait.start} TCP sockets in TIME_WAIT` : ''} at the start; ` +
      `${report.versions.node}, ${report.versions.haproxy?.split(' - ')[0] ?? 'no HAProxy'}, ` +
      `${report.versions.nginx ?? 'no nginx'}, ${report.versions.redis?.split(' sha=')[0] ?? 'no redis'}, ` +
      `${report.versions.iperf3 ?? 'no iperf3'}, ${report.versions.wrk?.split(' [')[0] ?? 'no wrk'}. ` +
      `Medians of ${p.runs} run(s) of ${p.durationS} s; in brackets the median of the per-run ratios to ` +
      `HAProxy (same run). All on 127.0.0.1; the load client, the backends and the balancer share the machine.`
  )
  if (p.quick) L.push('', '**Quick mode: a smoke test, not a measurement.**')
  L.push('')
  const cols = HEADLINE.filter(([sk]) => results[sk])
  const hasFo = results['failover-http'] || results['failover-redis']
  L.push(
    `| | ${cols.map(([sk, mk, h]) => `${h}${metricOf(sk, mk).better === 'lower' ? ' ↓' : ''}`).join(' | ')}${hasFo ? ' | failover errors HTTP / Redis ↓' : ''} |`
  )
  L.push(`|---|${cols.map(() => '---:').join('|')}${hasFo ? '|---:' : ''}|`)
  for (const b of BALANCERS) {
    const cells = cols.map(([sk, mk]) => {
      const x = results[sk]?.summary[b.key]
      if (x === undefined) return '—'
      const v = fmt(x.median[mk], metricOf(sk, mk).digits)
      return b.key === 'haproxy' || x.vs.haproxy[mk] == null ? v : `${v} (${fmtRatio(x.vs.haproxy[mk])})`
    })
    const fo = ['failover-http', 'failover-redis'].map((sk) => {
      const x = results[sk]?.summary[b.key]
      return x === undefined ? '—' : fmtCount(x.median.errors)
    })
    if (cells.every((c) => c === '—') && fo.every((c) => c === '—')) continue
    L.push(`| ${b.label} | ${cells.join(' | ')}${hasFo ? ` | ${fo.join(' / ')}` : ''} |`)
  }
  L.push('')
  L.push(
    '↓: lower is better. Baton http1 / resp: `--protocol http1` / `--protocol resp` instead of the default `opaque`. ' +
      'minimal Node proxy: `bench/lib/node-proxy.mjs`, data / pause / drain and half-close, round-robin, no checks: ' +
      'the floor for any proxy written in Node. HAProxy splice: `option splice-request` and `option splice-response`.'
  )

  // Every figure against HAProxy, nginx and direct
  L.push(
    '',
    '### Every figure, with its ratio to HAProxy, nginx stream, the minimal Node proxy and a direct connection',
    ''
  )
  L.push('| scenario | balancer | metric | median | spread | / HAProxy | / nginx | / Node proxy | / direct |')
  L.push('|---|---|---|---:|---:|---:|---:|---:|---:|')
  for (const sc of SCENARIOS) {
    const r = results[sc.key]
    if (r === undefined || sc.key.startsWith('failover')) continue
    let first = true
    for (const b of BALANCERS) {
      const x = r.summary[b.key]
      if (x === undefined) continue
      for (const m of sc.metrics) {
        L.push(
          `| ${first ? sc.title : ''} | ${b.label} | ${m.label}${m.better === 'lower' ? ' ↓' : ''} | ${fmt(x.median[m.key], m.digits)} | ${x.spread[m.key]} | ${fmtRatio(x.vs.haproxy[m.key])} | ${fmtRatio(x.vs.nginx[m.key])} | ${fmtRatio(x.vs.node?.[m.key])} | ${fmtRatio(x.vs.direct[m.key])} |`
        )
        first = false
      }
    }
  }

  // Failover
  if (hasFo) {
    L.push('', '### Failover: one of three backends SIGKILLed under load', '')
    L.push(
      'Client-visible errors, median of runs (each run kills a different backend). HTTP: wrk socket errors ' +
        '(connect / read / write / timeout) plus non-2xx responses. Redis: error lines from redis-benchmark, ' +
        'or 1 when it exited non-zero or hung (requests never answered). Baton: failovers seen in its `/metrics`.',
      ''
    )
    L.push(
      '| balancer | HTTP errors | HTTP socket errors c/r/w/t, non-2xx (each run) | Redis errors | Redis exit (each run) | Baton failovers HTTP / Redis |'
    )
    L.push('|---|---:|---|---:|---|---|')
    for (const b of BALANCERS) {
      const h = results['failover-http']?.runs[b.key]
      const rd = results['failover-redis']?.runs[b.key]
      if (!h && !rd) continue
      const hx = results['failover-http']?.summary[b.key]
      const rx = results['failover-redis']?.summary[b.key]
      const each = (runs, f) =>
        runs
          ? runs.runs.map((r) => (r.metrics ? f(r.metrics) : `failed: ${r.error?.slice(0, 60)}`)).join('; ')
          : '—'
      const fo = (runs) =>
        runs && b.kind === 'baton' ? runs.runs.map((r) => r.metrics?.baton?.failovers ?? '?').join(',') : ''
      L.push(
        `| ${b.label} | ${hx ? fmtCount(hx.median.errors) : '—'} | ${each(h, (m) => `${m.socketErrors.connect}/${m.socketErrors.read}/${m.socketErrors.write}/${m.socketErrors.timeout}, ${m.non2xx}`)} | ${rx ? fmtCount(rx.median.errors) : '—'} | ${each(rd, (m) => `${m.exit}${m.errorLines.length ? ` "${m.errorLines[0].slice(0, 50)}"` : ''}`)} | ${b.kind === 'baton' ? `${fo(h) || '—'} / ${fo(rd) || '—'}` : ''} |`
      )
    }
  }
  if (report.handoff?.rows) {
    L.push('', '### Baton hand-off latency, pooled vs new connection', '')
    L.push(
      `From \`${report.handoff.command.replace(process.execPath, 'node').replaceAll(ROOT + '/', '')}\`: a backend resets one request of every connection; Baton re-sends it to the other.`,
      ''
    )
    L.push('| connection | n | Baton p50 | Baton p99 | client excess p50 | client excess p99 |')
    L.push('|---|---:|---:|---:|---:|---:|')
    const us = (v) =>
      v === null || v === undefined ? '—' : v >= 1000 ? `${(v / 1000).toFixed(2)} ms` : `${Math.round(v)} µs`
    for (const r of report.handoff.rows)
      L.push(
        `| ${r.label} | ${r.count} | ${us(r.batonP50us)} | ${us(r.batonP99us)} | ${us(r.excessP50us)} | ${us(r.excessP99us)} |`
      )
  }
  if (report.targets?.length) {
    const variants = TARGET_VARIANTS.filter((k) => report.targets.some((t) => t.by[k]))
    const label = (k) => BALANCERS.find((b) => b.key === k).label
    L.push('', '### Targets', '')
    L.push(`| target | ${variants.map((k) => `${label(k)} | met`).join(' | ')} |`)
    L.push(`|---|${variants.map(() => '---|---').join('|')}|`)
    for (const t of report.targets)
      L.push(
        `| ${t.target} | ${variants
          .map((k) =>
            t.by[k] ? `${t.by[k].measured} | ${t.by[k].met ? 'yes' : '**no**'}` : '— | not measured'
          )
          .join(' | ')} |`
      )
  }
  if (report.notes.length) L.push('', ...report.notes.map((n) => `- ${n}`))
  L.push(
    '',
    'Configurations: HAProxy and nginx stream configs and every command line are in `bench/results/compare.json`.'
  )
  return L.join('\n') + '\n'
}

/**
 * The chart: every headline figure relative to HAProxy's, higher always better (a lower-is-better
 * figure, latency or memory, is inverted: HAProxy's divided by the balancer's), and under it the
 * failover panel, client connections broken when a backend is killed, in plain counts. A quick
 * run is watermarked.
 */
function chart(report) {
  const groups = []
  for (const [sk, mk, h] of HEADLINE) {
    const r = report.results[sk]
    if (r === undefined || r.summary.haproxy === undefined) continue
    const m = SCENARIOS.find((s) => s.key === sk).metrics.find((x) => x.key === mk)
    const lower = m.better === 'lower'
    const v = (k) => {
      const ratio = r.summary[k]?.vs.haproxy[mk] ?? null
      if (!lower || ratio === null) return ratio
      return ratio > 0 ? 1 / ratio : null
    }
    groups.push({
      label: h,
      note: lower ? '(inverted: HAProxy ÷ figure)' : '(higher is better)',
      values: {
        node: v('node'),
        baton: v('baton'),
        'baton-framer': v(sk === 'http' ? 'baton-http1' : sk === 'redis' ? 'baton-resp' : 'none'),
        'baton-w2': v('baton-w2'),
        haproxy: r.summary.haproxy ? 1 : null,
        'haproxy-splice': v('haproxy-splice'),
        nginx: v('nginx'),
      },
    })
  }
  const series = [
    { key: 'node', label: 'minimal Node proxy (floor)', color: '#f59e0b' },
    { key: 'baton', label: 'Baton (opaque)', color: '#2563eb' },
    { key: 'baton-framer', label: 'Baton http1 / resp', color: '#93c5fd' },
    { key: 'baton-w2', label: 'Baton --workers 2', color: '#1e3a8a' },
    { key: 'haproxy', label: 'HAProxy', color: '#9ca3af' },
    { key: 'haproxy-splice', label: 'HAProxy splice', color: '#4b5563' },
    { key: 'nginx', label: 'nginx stream', color: '#16a34a' },
  ].filter((s) => groups.some((g) => Number.isFinite(g.values[s.key])))
  const failover = []
  for (const [sk, h, note] of [
    ['failover-http', 'HTTP: wrk -c30', 'socket errors + non-2xx'],
    ['failover-redis', 'Redis: redis-benchmark -c50', 'runs aborted'],
  ]) {
    const r = report.results[sk]
    if (r === undefined) continue
    const v = (k) => r.summary[k]?.median.errors ?? null
    failover.push({
      label: h,
      note,
      values: {
        baton: v('baton'),
        'baton-framer': v(sk === 'failover-http' ? 'baton-http1' : 'baton-resp'),
        'baton-w2': v('baton-w2'),
        haproxy: v('haproxy'),
        nginx: v('nginx'),
      },
    })
  }
  const quick = report.params.quick === true
  return renderGroupedBars({
    title:
      'Baton vs HAProxy, nginx stream and the minimal Node proxy, relative to HAProxy (higher is better)',
    subtitle:
      `${report.date.slice(0, 10)} · ${report.machine.nproc}-core ${report.machine.cpuModel} · median of ${report.params.runs} run(s)` +
      `${quick ? ' · QUICK MODE, not a measurement' : ''} · 127.0.0.1, shared machine`,
    series,
    groups,
    referenceLabel: 'HAProxy = 1.0',
    counts:
      failover.length === 0
        ? undefined
        : {
            title:
              'Failover: client errors when 1 of 3 backends is SIGKILLed under load (lower is better; median of runs)',
            note: 'HAProxy (redispatch, retries 3, checks) and nginx stream retry only while connecting; Baton re-sends the requests in flight.',
            groups: failover,
          },
    watermark: quick ? 'QUICK RUN · NOT A MEASUREMENT' : undefined,
  })
}

/** Baton variants the targets are judged for: the default first. */
const TARGET_VARIANTS = ['baton', 'baton-w2']

/**
 * The project's targets, each judged for Baton (one process, default `opaque`) and for Baton
 * `--workers 2` when it ran: rows of { target, by: { [variant]: { measured, met } } }.
 */
function judgeTargets(results) {
  const r2 = (x) => x.toFixed(2)
  const rows = [
    {
      target: 'HTTP req/s ≥ HAProxy',
      judge: (vs) => {
        const x = vs('http', 'rps')
        return x === null ? null : { measured: `${r2(x)} × HAProxy`, met: x >= 1 }
      },
    },
    {
      target: 'HTTP p99 ≤ HAProxy',
      judge: (vs) => {
        const x = vs('http', 'p99ms')
        return x === null ? null : { measured: `${r2(x)} × HAProxy`, met: x <= 1 }
      },
    },
    {
      target: 'Redis -P 16 req/s ≥ HAProxy',
      judge: (vs) => {
        const set = vs('redis', 'setRps')
        const get = vs('redis', 'getRps')
        return set === null || get === null
          ? null
          : { measured: `SET ${r2(set)}, GET ${r2(get)} × HAProxy`, met: set >= 1 && get >= 1 }
      },
    },
    {
      target: 'bulk ≥ 0.8 × HAProxy',
      judge: (vs) => {
        const x = vs('bulk', 'gbps')
        return x === null ? null : { measured: `${r2(x)} × HAProxy`, met: x >= 0.8 }
      },
    },
    {
      target: 'idle memory ≤ 4 KiB/session',
      judge: (vs, med) => {
        const x = med('idle', 'kibPerSession')
        return x === null ? null : { measured: `${r2(x)} KiB/session`, met: x <= 4 }
      },
    },
    // The native plane's targets (issue 12), judged where their reference column ran (--plane native).
    {
      target: 'bulk ≥ 1.0 × HAProxy splice',
      judge: (vs, med, vsRef) => {
        const x = vsRef('bulk', 'gbps', 'haproxy-splice')
        return x === null ? null : { measured: `${r2(x)} × HAProxy splice`, met: x >= 1 }
      },
    },
    {
      target: 'idle memory ≤ HAProxy',
      judge: (vs, med) => {
        const x = med('idle', 'kibPerSession')
        const h = med('idle', 'kibPerSession', 'haproxy')
        return x === null || h === null
          ? null
          : { measured: `${r2(x)} KiB/session, HAProxy ${r2(h)}`, met: x <= h }
      },
    },
    {
      target: 'new connections/s ≥ the js plane',
      judge: (vs, med, vsRef) => {
        const x = vsRef('conn', 'cps', 'baton-js')
        return x === null ? null : { measured: `${r2(x)} × the js plane`, met: x >= 1 }
      },
    },
    {
      target: 'zero failover errors (HTTP / Redis) while HAProxy / nginx show errors',
      judge: (vs, med) => {
        const fo = ['failover-http', 'failover-redis'].filter((sk) => results[sk])
        const mine = fo.map((sk) => med(sk, 'errors'))
        if (fo.length === 0 || mine.some((x) => x === null)) return null
        const others = fo.flatMap((sk) => ['haproxy', 'nginx'].map((k) => med(sk, 'errors', k)))
        return {
          measured: `${mine.join(' / ')}; HAProxy, nginx: ${others.map((x) => x ?? '—').join(', ')}`,
          met: mine.every((x) => x === 0) && others.some((x) => x > 0),
        }
      },
    },
  ]
  return rows.map(({ target, judge }) => ({
    target,
    by: Object.fromEntries(
      TARGET_VARIANTS.map((key) => {
        const vs = (sk, mk) => results[sk]?.summary[key]?.vs.haproxy[mk] ?? null
        const med = (sk, mk, b = key) => results[sk]?.summary[b]?.median[mk] ?? null
        const vsRef = (sk, mk, ref) => results[sk]?.summary[key]?.vs[ref]?.[mk] ?? null
        return [key, judge(vs, med, vsRef)]
      })
    ),
  }))
}

// ---------------------------------------------------------------------------------------------
// Main

function cpuModel() {
  try {
    return (
      /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1].trim() ??
      os.cpus()[0]?.model
    )
  } catch {
    return os.cpus()[0]?.model
  }
}

/**
 * TCP sockets in TIME_WAIT on the machine (/proc/net/sockstat): every connection-per-request run
 * leaves thousands, and a full table (net.ipv4.tcp_max_tw_buckets) slows connects for everyone.
 */
function tcpTimeWait() {
  try {
    return Number(/^TCP:.* tw (\d+)/m.exec(fs.readFileSync('/proc/net/sockstat', 'utf8'))?.[1])
  } catch {
    return undefined
  }
}

function nproc() {
  const r = spawnSync('nproc', { encoding: 'utf8' })
  return Number(r.stdout?.trim()) || os.availableParallelism()
}

/** Write the .md and .svg next to a compare JSON report again, from it alone. */
function render(file) {
  const report = JSON.parse(fs.readFileSync(file, 'utf8'))
  const base = file.replace(/\.json$/, '')
  fs.writeFileSync(`${base}.md`, markdown(report))
  fs.writeFileSync(`${base}.svg`, chart(report))
  console.log(`${TAG}: wrote ${base}.md and ${base}.svg from ${file}`)
  return 0
}

async function main() {
  let flags
  let p
  try {
    flags = parseArgs(process.argv.slice(2), VALUE_FLAGS, BOOLEAN_FLAGS)
    if (flags.help) {
      console.log(USAGE)
      return 0
    }
    if (flags.render !== undefined) return render(flags.render)
    p = resolveParams(flags)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    console.error(`${TAG}: ${err.message}\n${USAGE}`)
    return 2
  }
  const CLI = path.join(p.dist, 'cli.js')
  if (!fs.existsSync(CLI)) {
    console.error(`${TAG}: ${path.relative(process.cwd(), CLI)} not found: run npm run build first`)
    return 1
  }
  const t0 = now()
  const started = new Date()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-compare-'))
  const pm = processManager(TAG, dir)
  const cm = childManager(SELF, TAG)
  cm.installHandlers()
  pm.installHandlers({ signals: false })
  // Watchdog: whatever hangs, the run ends and every process goes with it.
  const watchdogMs = p.quick ? 5 * 60_000 : 60 * 60_000
  setTimeout(() => cm.fatal(`watchdog: still running after ${watchdogMs / 60_000} min`), watchdogMs).unref()

  const bins = findBins()
  const limits = fdLimits(bins)
  const notes = []
  const ctx = {
    p,
    pm,
    cm,
    bins,
    dir,
    root: ROOT,
    cli: CLI,
    nofilePrefix: limits.prefix,
    nofile: limits.nofile,
    configs: {},
    redisRate: {},
    sessions: p.sessions,
  }
  const help =
    spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8', timeout: 10_000 }).stdout ?? ''
  const hasWorkers = help.includes('--workers')
  if (!hasWorkers) notes.push('dist/cli.js --help has no --workers: the Baton --workers 2 column is skipped.')
  // Each idle session holds two descriptors in the balancer; keep a margin under its limit.
  const fit = maxConnFor(ctx.nofile) - 100
  if (fit < ctx.sessions && p.only.includes('idle')) {
    notes.push(
      `idle: a balancer may hold ${ctx.nofile} file descriptors here (hard limit; raising it needs CAP_SYS_RESOURCE), ` +
        `so ${fit} idle sessions instead of ${ctx.sessions}.`
    )
    ctx.sessions = fit
  }
  const missing = (name) => {
    if (name === 'haproxy') return bins.haproxy === undefined ? 'haproxy' : undefined
    if (name === 'nginx')
      return bins.nginx === undefined || bins.nginxStream === undefined
        ? 'nginx with the stream module'
        : undefined
    return undefined
  }
  const hasPlane = help.includes('--data-plane')
  if (p.plane !== undefined && !hasPlane) {
    console.error(`${TAG}: --plane: ${path.relative(process.cwd(), CLI)} has no --data-plane`)
    return 2
  }
  const balancers = BALANCERS.filter((b) => {
    if (b.workers && !hasWorkers) return false
    if (b.dataPlane !== undefined && (!hasPlane || p.plane === 'js')) return false
    const m = missing(b.kind)
    if (m) notes.push(`${m} not installed: the ${b.label} column is skipped (bench/setup.sh installs it).`)
    return !m
  })

  const machine = {
    nproc: nproc(),
    cpuModel: cpuModel(),
    loadavg: { start: os.loadavg() },
    tcpTimeWait: { start: tcpTimeWait() },
    ...machineInfo(),
  }
  console.log(
    `${TAG}: ${machine.nproc}-core ${machine.cpuModel}, load ${machine.loadavg.start.map((x) => x.toFixed(2)).join(' ')}, ` +
      `${p.runs} run(s) × ${p.durationS} s, ${ctx.sessions} idle sessions${p.quick ? ' — QUICK MODE: a smoke test, not a measurement' : ''}`
  )
  for (const n of notes) console.log(`note: ${n}`)

  const results = {}
  const failures = []
  let handoff
  for (const sc of SCENARIOS) {
    if (!p.only.includes(sc.key)) continue
    const absent = sc.needs.filter((n) => (n === 'nginx' ? bins.nginx : bins[n]) === undefined)
    if (absent.length) {
      const note = `${sc.key}: skipped, not installed: ${absent.join(', ')} (bench/setup.sh installs it)`
      notes.push(note)
      console.log(`\nnote: ${note}`)
      continue
    }
    const cols = balancers.filter(
      (b) => (b.only ? b.only.includes(sc.key) : true) && (sc.direct || b.kind !== 'direct')
    )
    console.log(`\n${sc.title}`)
    const tScenario = now()
    const byBalancer = Object.fromEntries(cols.map((b) => [b.key, { runs: [] }]))
    let setup
    try {
      setup = await sc.setup(ctx)
    } catch (err) {
      failures.push(`${sc.key}: set-up failed: ${err.message}`)
      console.log(`  set-up failed: ${err.message}`)
      continue
    }
    for (let run = 0; run < p.runs; run++) {
      const order = run % 2 ? [...cols].reverse() : cols
      for (const b of order) {
        let lb
        const entry = { run }
        try {
          lb =
            b.kind === 'direct'
              ? { port: setup.ports[0] }
              : await startBalancer(pm, ctx, b.kind, {
                  backends: setup.ports,
                  checks: sc.checks === true,
                  protocol: b.protocol,
                  // --plane is for the opaque columns: a framer that parses bytes runs on js anyway.
                  dataPlane:
                    b.kind === 'baton' ? (b.dataPlane ?? (b.protocol ? undefined : p.plane)) : undefined,
                  workers: b.workers,
                  splice: b.splice === true,
                  threads: b.threads,
                  admin: sc.admin === true && b.kind === 'baton',
                })
          entry.command = lb.child?.command
          const limitMs = (p.failoverS * 4 + p.durationS * 8 + 120) * 1000
          entry.metrics = await withTimeout(
            sc.measure(ctx, setup, lb, b, run),
            limitMs,
            `${sc.key} ${b.label}`
          )
          const shown = sc.metrics
            .map((m) => `${m.label} ${fmt(entry.metrics[m.key], m.digits)}`)
            .concat(sc.key === 'failover-http' ? [`(${entry.metrics.requests} requests)`] : [])
            .concat(
              sc.key === 'failover-redis'
                ? [
                    `(exit ${entry.metrics.exit}${entry.metrics.errorLines[0] ? `: ${entry.metrics.errorLines[0]}` : ''})`,
                  ]
                : []
            )
            .concat(
              entry.metrics.baton?.failovers !== undefined
                ? [`Baton failovers ${entry.metrics.baton.failovers}`]
                : []
            )
          console.log(`  run ${run + 1}/${p.runs}  ${b.label.padEnd(20)} ${shown.join('  ')}`)
        } catch (err) {
          entry.error = String(err?.message ?? err)
          failures.push(`${sc.key} / ${b.label} / run ${run + 1}: ${entry.error}`)
          console.log(`  run ${run + 1}/${p.runs}  ${b.label.padEnd(20)} FAILED: ${entry.error}`)
          await setup.recover?.().catch(noop)
        } finally {
          if (lb?.child) await pm.stop(lb.child)
        }
        byBalancer[b.key].runs[run] = entry
      }
    }
    await setup.teardown()
    const seconds = Math.round((now() - tScenario) / 100) / 10
    results[sc.key] = {
      title: sc.title,
      seconds,
      metrics: sc.metrics,
      runs: byBalancer,
      summary: summarize(sc, byBalancer),
    }
    if (!sc.key.startsWith('failover')) console.log(scenarioTable(sc, results[sc.key]).replace(/^/gm, '  '))
    console.log(`  (${seconds} s)`)
  }
  await cm.stopAll()

  if (p.only.includes('handoff')) {
    console.log('\nBaton hand-off latency: bench/failover.mjs --only handoff')
    try {
      handoff = await measureHandoff(ctx)
      for (const r of handoff.rows)
        console.log(
          `  ${r.label.padEnd(28)} n ${String(r.count).padStart(6)}  Baton p50 ${Math.round(r.batonP50us ?? NaN)} µs  p99 ${Math.round(r.batonP99us ?? NaN)} µs`
        )
    } catch (err) {
      failures.push(`handoff: ${err.message}`)
      console.log(`  FAILED: ${err.message}`)
    }
  }
  await pm.stopAll()
  machine.loadavg.end = os.loadavg()
  machine.tcpTimeWait.end = tcpTimeWait()

  const report = {
    benchmark: 'compare',
    schema: 1,
    date: started.toISOString(),
    finished: new Date().toISOString(),
    wallSeconds: Math.round((now() - t0) / 100) / 10,
    argv: process.argv.slice(2),
    quick: p.quick,
    params: { ...p, sessions: ctx.sessions },
    machine,
    versions: versions(bins),
    git: gitInfo(ROOT),
    dist: distInfo(p.dist),
    batonWorkersSupported: hasWorkers,
    /** Baton's --data-plane for its columns; "default" when --plane was not given. */
    batonPlane: p.plane ?? 'default',
    notes,
    configs: ctx.configs,
    commands: [...new Set(pm.commands)],
    results,
    handoff,
    targets: p.quick ? [] : judgeTargets(results),
    failures,
    ok: failures.length === 0,
  }
  fs.mkdirSync(RESULTS_DIR, { recursive: true })
  const base = path.join(RESULTS_DIR, p.quick ? 'compare-quick' : 'compare')
  fs.writeFileSync(`${base}.json`, JSON.stringify(report, null, 2) + '\n')
  const md = markdown(report)
  fs.writeFileSync(`${base}.md`, md)
  fs.writeFileSync(`${base}.svg`, chart(report))
  console.log(`\n${md}`)
  for (const f of failures) console.log(`FAILED: ${f}`)
  console.log(
    `${TAG}: ${report.wallSeconds} s; wrote ${path.relative(process.cwd(), base)}.{json,md,svg}` +
      (failures.length ? `; ${failures.length} failure(s)` : '')
  )
  if (failures.length === 0) fs.rmSync(dir, { recursive: true, force: true })
  else console.log(`${TAG}: logs of every process are in ${dir}`)
  return failures.length === 0 ? 0 : 1
}

const role = roleArgs()
if (role?.role === 'idle-backend') await idleBackendMain()
else if (role?.role === 'idle-client') await idleClientMain()
else process.exit(await main())
