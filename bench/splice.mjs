#!/usr/bin/env node
/**
 * bench/splice.mjs — how much does splicing through Baton cost, compared with a direct connection
 * and with the least a Node proxy can do?
 *
 *   npm run build && node bench/splice.mjs [--duration 5s] [--runs 3] [--concurrency 50]
 *                                          [--resp-bytes 64] [--bulk-mib N] [--only bulk-up,rr]
 *                                          [--reference] [--guard 0.6] [--prof] [--dist DIR] [--quick]
 *
 * Three or four processes, so the measurement is not one event loop fighting itself:
 *   parent  (this file)        the load client, the timing and the report
 *   child   --role=backend     the backend servers: sink, source, req/resp, one-reply-then-close
 *   child   --role=baton       Baton (<dist>/index.js, its defaults), one listener per backend server
 *   child   --role=reference   with --reference or --guard: the minimal Node proxy
 *                              (bench/lib/node-proxy.mjs: data / pause / drain, half-close)
 * "direct" runs send the client straight to the backend child; the others go through a proxy child.
 * All happen in the same invocation, in turns whose order rotates every run (D B R, B R D, R D B, …),
 * and the table shows the median of --runs runs for each, and the ratios Baton/direct and
 * Baton/node proxy (of the medians).
 *
 * Scenarios (the children, the runs, the statistics and the table are bench/lib/harness.mjs's):
 *   bulk-up    one connection, client → backend sink for --duration (or --bulk-mib MiB); MiB/s.
 *              The sink acknowledges the byte count after the client's FIN, so the time includes
 *              the last byte's arrival and the byte count is checked.
 *   bulk-down  one connection, backend → client for --duration (or --bulk-mib MiB); MiB/s.
 *   rr         --concurrency connections, each a closed loop of a 64-byte request and a
 *              --resp-bytes response; req/s, p50/p99 latency (first 10% of the run not counted).
 *   conn       --concurrency closed loops of connect, 64-byte request, reply, close (the backend
 *              closes first, as HTTP/1.0 does, so no client port is left in TIME_WAIT); conn/s.
 *
 * --reference: also run the minimal Node proxy, as the baseline column: what Baton costs beyond it
 * is Baton's own, what it costs is the price of any user-space proxy in Node.
 * --guard R: a regression guard (implies --reference): exit 1 when, on any scenario run, Baton's
 * figure (MiB/s, req/s, conn/s) is below R × the node proxy's. The ratio is taken per run (Baton's
 * and the node proxy's turns of the same run, adjacent in time, so the machine's noise mostly
 * cancels) and the median over runs is judged. With --quick it measures Baton and the node proxy
 * only (no direct runs), in 5 runs of 1 s each after a short warm-up, instead of one short run, so
 * that a noisy run or two cannot trip it (about 80 s in all). CI runs `--quick --guard 0.6`.
 * --quick: about half a second per scenario, one run, no warm-up: a smoke test for CI that checks
 * every path still moves the right bytes. Its numbers are not measurements, and no ratio is printed
 * (the guard's excepted).
 * --prof: run the Baton child under `node --cpu-prof`; the .cpuprofile goes to bench/out/.
 * --dist DIR: measure another build of Baton (default: ./dist), e.g. before and after a change.
 * BATON_ACCESS_LOG=1 (or =FILE) in the environment: run Baton with the access log on (`log.access`,
 * one JSON line per session at info, as the `baton` command writes it: pino, synchronous writes),
 * the lines going to /dev/null (or FILE), to measure what the access log costs against a run
 * without it (the default: level silent, access log off). The `conn` scenario, one session per
 * exchange, is where it shows.
 *
 * Output: a table on stdout, and JSON (parameters, machine, every run, the guard) in
 * bench/out/splice-<ts>[-quick].json.
 * Exit status: 0 when every run moved the expected bytes without errors (and the guard, if any,
 * held), 1 otherwise, 2 on bad flags. Every child is stopped at the end, by pid, also on error,
 * SIGINT and SIGTERM; a watchdog bounds the whole run. Only 127.0.0.1 is used.
 */
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import {
  HOST,
  MiB,
  Samples,
  UsageError,
  benchmarkEntry,
  busyNote,
  closedLoop,
  cpuHandler,
  cpuSecs,
  distInfo,
  fmtNum,
  fmtUs,
  gitInfo,
  machineInfo,
  median,
  noop,
  now,
  pairedRatios,
  parseArgs,
  parseDuration,
  parseIntFlag,
  runOrder,
  serveRpc,
  sleep,
  spread,
  table,
  timestamp,
  untilIdle,
  watchdog,
  withTimeout,
  writeReport,
} from './lib/harness.mjs'
import { listenNodeProxy } from './lib/node-proxy.mjs'

const SELF = fileURLToPath(import.meta.url)
const BENCH_DIR = path.dirname(SELF)
const ROOT = path.dirname(BENCH_DIR)
const OUT_DIR = path.join(BENCH_DIR, 'out')
const TAG = 'bench/splice'
const LISTENERS = ['sink', 'source', 'rr', 'conn']
const SCENARIO_KEYS = ['bulk-up', 'bulk-down', 'rr', 'conn']
const LABEL = { direct: 'direct', baton: 'baton', reference: 'node proxy' }

// ---------------------------------------------------------------------------------------------
// Flags

const VALUE_FLAGS = ['duration', 'runs', 'concurrency', 'resp-bytes', 'bulk-mib', 'only', 'guard', 'dist']
const BOOLEAN_FLAGS = ['quick', 'prof', 'reference', 'help']
const USAGE = `usage: node bench/splice.mjs [--duration 5s] [--runs 3] [--concurrency 50] [--resp-bytes 64]
                          [--bulk-mib N] [--only ${SCENARIO_KEYS.join(',')}] [--reference]
                          [--guard 0.6] [--prof] [--dist DIR] [--quick]`

function resolveParams(flags) {
  const quick = flags.quick === true
  let guard = null
  if (flags.guard !== undefined) {
    guard = Number(flags.guard)
    if (!(guard > 0 && guard <= 10))
      throw new UsageError(`--guard expects a ratio such as 0.6, not ${flags.guard}`)
  }
  /**
   * Quick with a guard: Baton and the node proxy only, in 5 runs of 1 s each (B R, R B, …), so
   * that each run's ratio pairs two adjacent turns and the median of five outlasts a noisy one.
   */
  const guarded = quick && guard !== null
  const p = {
    quick,
    guard,
    durationMs:
      flags.duration !== undefined ? parseDuration(flags.duration) : guarded ? 1000 : quick ? 400 : 5000,
    runs: flags.runs !== undefined ? parseIntFlag(flags.runs, 'runs', 1, 50) : guarded ? 5 : quick ? 1 : 3,
    concurrency:
      flags.concurrency !== undefined ? parseIntFlag(flags.concurrency, 'concurrency', 1, 2000) : 50,
    reqBytes: 64,
    respBytes:
      flags['resp-bytes'] !== undefined ? parseIntFlag(flags['resp-bytes'], 'resp-bytes', 1, MiB) : 64,
    /** 0: bulk scenarios run for the duration; otherwise they move exactly this many MiB. */
    bulkMiB: flags['bulk-mib'] !== undefined ? parseIntFlag(flags['bulk-mib'], 'bulk-mib', 1, 65536) : 0,
    only: flags.only !== undefined ? String(flags.only).split(',') : SCENARIO_KEYS,
    prof: flags.prof === true,
    dist: path.resolve(flags.dist ?? path.join(ROOT, 'dist')),
    modes: guarded
      ? ['baton', 'reference']
      : flags.reference === true || guard !== null
        ? ['direct', 'baton', 'reference']
        : ['direct', 'baton'],
  }
  for (const s of p.only)
    if (!SCENARIO_KEYS.includes(s)) throw new UsageError(`--only: unknown scenario ${s}`)
  /** Part of each rr/conn run not counted, so connection set-up and JIT warm-up stay out. */
  p.warmupMs = quick && !guarded ? 0 : Math.min(1000, Math.round(p.durationMs * 0.1))
  /** A discarded pass of every scenario through each proxy before the measured runs. */
  p.warmupPassMs = guarded ? 300 : quick ? 0 : Math.min(1000, Math.round(p.durationMs / 4))
  p.pauseMs = guarded ? 100 : quick ? 0 : 250
  return p
}

// ---------------------------------------------------------------------------------------------
// Child roles. Each answers { id, type } messages from the parent and exits when the parent goes
// away (bench/lib/harness.mjs's serveRpc).

async function backendMain(args) {
  const reqBytes = Number(args['req-bytes'])
  const resp = Buffer.alloc(Number(args['resp-bytes']), 0x62)
  const chunk = Buffer.alloc(MiB, 0x63)
  const opts = { allowHalfOpen: true, noDelay: true }

  // sink: count everything, and after the client's FIN answer "<count>\n" and close.
  const sink = net.createServer(opts, (s) => {
    let n = 0
    s.on('error', noop)
    s.on('data', (c) => (n += c.length))
    s.on('end', () => s.end(`${n}\n`))
  })

  // source: read one JSON line {ms} or {bytes}, then stream that long or that much and close.
  const source = net.createServer(opts, (s) => {
    let head = ''
    s.on('error', noop)
    s.on('end', () => s.end())
    s.on('data', function onHead(c) {
      head += c.toString('latin1')
      const i = head.indexOf('\n')
      if (i < 0) return
      s.off('data', onHead)
      s.resume()
      const cmd = JSON.parse(head.slice(0, i))
      const deadline = cmd.ms ? now() + cmd.ms : Infinity
      let left = cmd.bytes || Infinity
      const pump = () => {
        while (left > 0 && now() < deadline) {
          const b = left >= chunk.length ? chunk : chunk.subarray(0, left)
          left -= b.length
          if (!s.write(b)) return void s.once('drain', pump)
        }
        s.end()
      }
      pump()
    })
  })

  // rr: one response per complete request, for as long as the client keeps the connection.
  const rr = net.createServer({ noDelay: true }, (s) => {
    let pending = 0
    s.on('error', noop)
    s.on('data', (c) => {
      pending += c.length
      const n = Math.floor(pending / reqBytes)
      if (n === 0) return
      pending -= n * reqBytes
      s.write(n === 1 ? resp : Buffer.concat(Array(n).fill(resp)))
    })
  })

  // conn: one response, then the server closes (it sends the first FIN).
  const conn = net.createServer({ noDelay: true }, (s) => {
    let got = 0
    s.on('error', noop)
    s.on('data', (c) => {
      if (got >= reqBytes) return
      got += c.length
      if (got >= reqBytes) s.end(resp)
    })
  })

  const servers = { sink, source, rr, conn }
  const ports = {}
  for (const [name, srv] of Object.entries(servers)) {
    await new Promise((resolve, reject) => {
      srv.once('error', reject)
      srv.listen({ host: HOST, port: 0, backlog: 4096 }, resolve)
    })
    ports[name] = srv.address().port
  }
  serveRpc({
    cpu: cpuHandler,
    exit: () => {
      setImmediate(() => process.exit(0))
      return {}
    },
  })
  process.send({ type: 'ready', ports })
}

/** Where BATON_ACCESS_LOG sends the access log: undefined when it is off. */
function accessLogTarget() {
  const v = process.env.BATON_ACCESS_LOG
  if (v === undefined || v === '' || v === '0') return undefined
  return v === '1' ? '/dev/null' : v
}

/** The `log` section of Baton's config in this run. */
function batonLogConfig() {
  return accessLogTarget() !== undefined ? { level: 'info', access: true } : { level: 'silent' }
}

/** With BATON_ACCESS_LOG: a logger as the command's (JSON, ISO time, text levels), to the target. */
async function accessLogger(dist) {
  const dest = accessLogTarget()
  if (dest === undefined) return {}
  const { pino } = await import('pino')
  let jsonOptions = {}
  try {
    jsonOptions = (await import(pathToFileURL(path.join(dist, 'log.js')).href)).JSON_LOG_OPTIONS ?? {}
  } catch {
    // an older build without it: pino's defaults
  }
  const logger = pino(
    { level: 'info', base: { pid: process.pid }, ...jsonOptions },
    pino.destination({ dest, sync: true })
  )
  return { logger }
}

async function batonMain(args) {
  const { createBalancer } = await import(pathToFileURL(path.join(args.dist, 'index.js')).href)
  const backends = JSON.parse(args.backends)
  const options = await accessLogger(args.dist)
  const b = createBalancer(
    {
      listeners: LISTENERS.map((name) => ({
        name,
        listen: `${HOST}:0`,
        backends: [`${HOST}:${backends[name]}`],
        balance: 'round-robin',
        // Extra listener options for experiments, e.g. BATON_LISTENER='{"replay":"none"}'.
        ...JSON.parse(process.env.BATON_LISTENER ?? '{}'),
      })),
      log: batonLogConfig(),
    },
    options
  )
  await b.listen()
  const ports = {}
  LISTENERS.forEach((name, i) => (ports[name] = b.address(i).port))
  serveRpc({
    cpu: cpuHandler,
    counters: () => ({ counters: b.counters() }),
    exit: async () => {
      await b.close(0)
      setImmediate(() => process.exit(0)) // a normal exit, so --cpu-prof writes its profile
      return {}
    },
  })
  process.send({ type: 'ready', ports })
}

/** The minimal Node proxy (bench/lib/node-proxy.mjs), one listener per backend server. */
async function referenceMain(args) {
  const backends = JSON.parse(args.backends)
  const ports = {}
  const all = []
  for (const name of LISTENERS) {
    const x = await listenNodeProxy({ host: HOST, backends: [{ host: HOST, port: backends[name] }] })
    ports[name] = x.server.address().port
    all.push(x.counters)
  }
  serveRpc({
    cpu: cpuHandler,
    counters: () => ({
      counters: {
        accepted: all.reduce((a, c) => a + c.accepted, 0),
        active: all.reduce((a, c) => a + c.active, 0),
      },
    }),
    exit: () => {
      setImmediate(() => process.exit(0))
      return {}
    },
  })
  process.send({ type: 'ready', ports })
}

// ---------------------------------------------------------------------------------------------
// Parent: load generators. Each resolves to { value metrics..., errors, firstError }.

const CHUNK = Buffer.alloc(MiB, 0x61)

function runBulkUp(port, p, ms) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: HOST, port, noDelay: true })
    let sent = 0
    let t0 = 0
    let ack = ''
    s.on('error', reject)
    s.on('connect', () => {
      t0 = now()
      const deadline = p.bulkMiB > 0 ? Infinity : t0 + ms
      const limit = p.bulkMiB > 0 ? p.bulkMiB * MiB : Infinity
      const pump = () => {
        while (sent < limit && now() < deadline) {
          sent += CHUNK.length
          if (!s.write(CHUNK)) return void s.once('drain', pump)
        }
        s.end()
      }
      pump()
    })
    s.on('data', (c) => (ack += c.toString('latin1')))
    s.on('end', () => {
      const secs = (now() - t0) / 1000
      const got = Number(ack.trim())
      const bad = got !== sent ? `sink received ${got} of ${sent} bytes` : undefined
      resolve({ mibps: sent / MiB / secs, bytes: sent, seconds: secs, errors: bad ? 1 : 0, firstError: bad })
    })
  })
}

function runBulkDown(port, p, ms) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: HOST, port, noDelay: true })
    let got = 0
    let t0 = 0
    s.on('error', reject)
    s.on('connect', () => {
      t0 = now()
      s.write(JSON.stringify(p.bulkMiB > 0 ? { bytes: p.bulkMiB * MiB } : { ms }) + '\n')
    })
    s.on('data', (c) => (got += c.length))
    s.on('end', () => {
      const secs = (now() - t0) / 1000
      const bad =
        p.bulkMiB > 0 && got !== p.bulkMiB * MiB
          ? `received ${got} of ${p.bulkMiB * MiB} bytes`
          : got === 0
            ? 'received nothing'
            : undefined
      resolve({ mibps: got / MiB / secs, bytes: got, seconds: secs, errors: bad ? 1 : 0, firstError: bad })
    })
  })
}

/** --concurrency closed loops of a --req-bytes request and a --resp-bytes response. */
function runRR(port, p, ms) {
  const req = Buffer.alloc(p.reqBytes, 0x71)
  return closedLoop(
    port,
    { concurrency: p.concurrency, ms, warmupMs: p.warmupMs },
    {
      init: (c) => (c.got = 0),
      request: () => req,
      onData: (c, chunk, fail) => {
        c.got += chunk.length
        if (c.got < p.respBytes) return false
        if (c.got > p.respBytes) fail(`response of ${c.got} bytes, expected ${p.respBytes}`)
        c.got = 0
        return true
      },
    }
  )
}

function runConn(port, p, ms) {
  return new Promise((resolve) => {
    const req = Buffer.alloc(p.reqBytes, 0x71)
    const lat = new Samples()
    const t0 = now()
    const tMeasure = t0 + p.warmupMs
    let tEnd = t0 + ms
    let count = 0
    let errors = 0
    let firstError
    let loops = p.concurrency
    let done = false

    const finish = () => {
      if (done) return
      done = true
      clearTimeout(guard)
      const [p50, p99] = lat.percentiles([0.5, 0.99])
      resolve({ cps: count / ((tEnd - tMeasure) / 1000), p50, p99, connections: count, errors, firstError })
    }
    const guard = setTimeout(() => {
      errors++
      firstError ??= 'run did not finish in time'
      tEnd = Math.min(tEnd, now())
      finish()
    }, ms + 15_000)

    const one = () => {
      const start = now()
      let got = 0
      let failed = false
      const s = net.connect({ host: HOST, port, noDelay: true })
      s.on('connect', () => s.write(req))
      s.on('data', (c) => (got += c.length))
      s.on('error', (err) => {
        failed = true
        errors++
        firstError ??= err.code ?? err.message
      })
      s.on('close', () => {
        const t = now()
        if (!failed && got === p.respBytes) {
          if (t >= tMeasure && t <= tEnd) {
            count++
            lat.push((t - start) * 1000)
          }
        } else if (!failed) {
          errors++
          firstError ??= `reply of ${got} bytes, expected ${p.respBytes}`
        }
        if (t < tEnd && errors < 1000) one()
        else if (--loops === 0) finish()
      })
    }
    for (let i = 0; i < p.concurrency; i++) one()
  })
}

// ---------------------------------------------------------------------------------------------
// Parent: scenarios, runs, report

function scenarios(p) {
  const lat = [
    ['p50', 'p50 latency', 'lower'],
    ['p99', 'p99 latency', 'lower'],
  ]
  const bulkWhat = p.bulkMiB > 0 ? `${p.bulkMiB} MiB` : 'for the duration'
  return [
    {
      key: 'bulk-up',
      listener: 'sink',
      run: runBulkUp,
      title: `bulk upload, 1 conn, client→backend ${bulkWhat}`,
      metrics: [['mibps', 'MiB/s', 'higher']],
    },
    {
      key: 'bulk-down',
      listener: 'source',
      run: runBulkDown,
      title: `bulk download, 1 conn, backend→client ${bulkWhat}`,
      metrics: [['mibps', 'MiB/s', 'higher']],
    },
    {
      key: 'rr',
      listener: 'rr',
      run: runRR,
      title: `req/resp, ${p.concurrency} conns, ${p.reqBytes} B → ${p.respBytes} B`,
      metrics: [['rps', 'req/s', 'higher'], ...lat],
    },
    {
      key: 'conn',
      listener: 'conn',
      run: runConn,
      title: `conn per req, ${p.concurrency} loops, ${p.reqBytes} B → ${p.respBytes} B`,
      metrics: [['cps', 'conn/s', 'higher'], ...lat],
    },
  ].filter((s) => p.only.includes(s.key))
}

/** CPU seconds used so far by the client, the backend and the proxy in `mode` (kernel time included). */
async function cpuOf(ctx, mode) {
  const proxy = ctx.proxies[mode]
  const [backend, px] = await Promise.all([
    ctx.cm.rpc(ctx.backend, 'cpu'),
    proxy ? ctx.cm.rpc(proxy, 'cpu') : undefined,
  ])
  const out = { client: cpuSecs(process.cpuUsage()), backend: cpuSecs(backend.cpu) }
  if (px) {
    out.proxy = cpuSecs(px.cpu)
    out.proxySys = px.cpu.system / 1e6
  }
  return out
}

/** Baton counters that must not move in a clean run. */
const ERROR_COUNTERS = [
  'noBackend',
  'connectErrors',
  'clientErrors',
  'serverErrors',
  'clientTimeouts',
  'serverTimeouts',
  'rejected',
]

async function runOnce(ctx, sc, mode, ms) {
  const proxy = ctx.proxies[mode]
  const port = (proxy ?? ctx.backend).info.ports[sc.listener]
  const before = proxy ? (await untilIdle(ctx.cm, proxy)).counters : undefined
  const cpu0 = await cpuOf(ctx, mode)
  const w0 = now()
  const r = await withTimeout(sc.run(port, ctx.p, ms), ms + 30_000, `${sc.key} ${mode}`)
  const wall = (now() - w0) / 1000
  const cpu1 = await cpuOf(ctx, mode)
  const after = proxy ? (await untilIdle(ctx.cm, proxy)).counters : undefined
  r.cpuPct = {}
  for (const k of Object.keys(cpu0)) r.cpuPct[k] = Math.round(((cpu1[k] - cpu0[k]) / wall) * 1000) / 10
  r.wallSeconds = wall
  if (proxy) {
    r.proxySessions = after.accepted - before.accepted
    if (r.proxySessions === 0) {
      r.errors++
      r.firstError ??= `no session went through the ${mode} proxy`
    }
    if (after.active !== 0) {
      r.errors++
      r.firstError ??= `${after.active} ${mode} sessions still open after the run`
    }
  }
  if (mode === 'baton') {
    const errs = {}
    for (const k of ERROR_COUNTERS) if (after[k] !== before[k]) errs[k] = after[k] - before[k]
    if (Object.keys(errs).length > 0) {
      r.batonErrors = errs
      r.errors++
      r.firstError ??= `Baton counters: ${JSON.stringify(errs)}`
    }
  }
  return r
}

const CPU_KEYS = ['client', 'backend', 'proxy', 'proxySys']

/** Every run of one scenario, the modes in rotating order; then medians, spreads and ratios. */
async function measureScenario(ctx, sc) {
  const { p } = ctx
  const runs = []
  for (let i = 0; i < p.runs; i++) {
    for (const mode of runOrder(p.modes, i)) {
      if (p.pauseMs) await sleep(p.pauseMs)
      const r = await runOnce(ctx, sc, mode, p.durationMs)
      runs.push({ run: i + 1, mode, ...r })
      if (r.errors > 0)
        console.error(`  ${sc.key} ${mode} run ${i + 1}: ${r.errors} error(s), first: ${r.firstError}`)
    }
  }
  const med = Object.fromEntries(p.modes.map((m) => [m, {}]))
  const ratio = {}
  const refRatio = {}
  for (const [key] of [...sc.metrics, ...CPU_KEYS.map((k) => [`cpu:${k}`])]) {
    const pick = (r) => (key.startsWith('cpu:') ? (r.cpuPct[key.slice(4)] ?? null) : r[key])
    for (const mode of p.modes) {
      const xs = runs.filter((r) => r.mode === mode).map(pick)
      med[mode][key] = median(xs)
      med[mode][`${key}Spread`] = spread(xs)
    }
    if (key.startsWith('cpu:')) continue
    if (med.direct?.[key] && med.baton[key] !== null) ratio[key] = med.baton[key] / med.direct[key]
    if (med.reference?.[key] && med.baton[key] !== null) refRatio[key] = med.baton[key] / med.reference[key]
  }
  const entry = {
    key: sc.key,
    title: sc.title,
    listener: sc.listener,
    metrics: sc.metrics,
    median: med,
    ratio,
    runs,
  }
  if (p.modes.includes('reference')) {
    entry.ratioToReference = refRatio
    // Per run too (the two turns of a run are adjacent in time), for the guard.
    const [key] = sc.metrics[0]
    entry.ratioToReferencePerRun = { metric: key, ...pairedRatios(runs, 'baton', 'reference', key) }
    // The same per proxy CPU-second: what each proxy did with the CPU it got. Much steadier than
    // the throughput ratio on a machine that others load too, but blind to a proxy that idles.
    entry.cpuEfficiencyToReferencePerRun = {
      metric: `${key} per proxy CPU-second`,
      ...pairedRatios(runs, 'baton', 'reference', (r) =>
        r.cpuPct.proxy > 0 ? r[key] / r.cpuPct.proxy : null
      ),
    }
  }
  return entry
}

/** The guard: Baton ≥ p.guard × the node proxy on each scenario's first figure, median of per-run ratios. */
function judgeGuard(p, results) {
  const scenarios = results.map((r) => {
    const { metric, perRun, median: ratio } = r.ratioToReferencePerRun
    const cpu = r.cpuEfficiencyToReferencePerRun.median
    return { key: r.key, metric, ratio, perRun, cpuEfficiency: cpu, ok: ratio !== null && ratio >= p.guard }
  })
  return { threshold: p.guard, runs: p.runs, scenarios, ok: scenarios.every((x) => x.ok) }
}

function guardReport(guard, results) {
  const label = (r, key) => r.metrics.find(([k]) => k === key)[1]
  const rows = [['', '', 'Baton/node proxy', 'each run', '', 'per proxy CPU-s']]
  for (const g of guard.scenarios) {
    const r = results.find((x) => x.key === g.key)
    rows.push([
      g.key,
      label(r, g.metric),
      g.ratio === null ? '—' : g.ratio.toFixed(3),
      `(${g.perRun.map((x) => x.toFixed(2)).join(', ')})`,
      g.ok ? 'ok' : `BELOW ${guard.threshold}`,
      g.cpuEfficiency === null ? '—' : g.cpuEfficiency.toFixed(2),
    ])
  }
  const lines = [
    `Guard: Baton ≥ ${guard.threshold} × node proxy on every scenario, judged on the median of the ` +
      `per-run ratios over ${guard.runs} run(s). "per proxy CPU-s": the same ratio of work done per ` +
      `CPU-second of each proxy (median), shown, not judged.`,
    table(rows, 2).replace(/^/gm, '  '),
  ]
  const below = guard.scenarios.filter((g) => !g.ok)
  lines.push(
    below.length === 0
      ? 'guard: held'
      : `guard: TRIPPED on ${below.map((g) => `${g.key} (${g.ratio === null ? 'no ratio' : g.ratio.toFixed(3)})`).join(', ')}`
  )
  return lines.join('\n')
}

function fmtValue(key, v) {
  return key === 'p50' || key === 'p99' ? fmtUs(v) : fmtNum(v)
}

function resultsTable(p, results) {
  const withRef = p.modes.includes('reference')
  const head = ['scenario', 'metric', ...p.modes.map((m) => LABEL[m])]
  if (!p.quick) head.push('baton/direct')
  if (!p.quick && withRef) head.push('baton/node proxy')
  const rows = [head]
  const arrow = (better) => (better === 'higher' ? ' ↑' : ' ↓')
  const ratio = (x, better) => (x === undefined ? '—' : `${x.toFixed(2)}${arrow(better)}`)
  for (const r of results) {
    r.metrics.forEach(([key, label, better], i) => {
      const row = [i === 0 ? r.title : '', label]
      for (const m of p.modes)
        row.push(`${fmtValue(key, r.median[m][key])} ${p.runs > 1 ? r.median[m][`${key}Spread`] : ''}`.trim())
      if (!p.quick) row.push(ratio(r.ratio[key], better))
      if (!p.quick && withRef) row.push(ratio(r.ratioToReference[key], better))
      rows.push(row)
    })
  }
  return table(rows)
}

function cpuLines(p, results) {
  const pct = (v) => (v === null || v === undefined ? '—' : `${Math.round(v)}%`)
  const lines = ['CPU, median % of one core: client / backend [/ proxy (of which kernel)]']
  for (const r of results) {
    const cols = p.modes.map((m) => {
      const x = r.median[m]
      return `${m} ${pct(x['cpu:client'])} / ${pct(x['cpu:backend'])}${m === 'direct' ? '' : ` / ${pct(x['cpu:proxy'])} (${pct(x['cpu:proxySys'])})`}`
    })
    lines.push(`  ${r.key.padEnd(9)}  ${cols.join('    ')}`)
  }
  return lines.join('\n')
}

async function main(cm) {
  let flags, p
  try {
    flags = parseArgs(process.argv.slice(2), VALUE_FLAGS, BOOLEAN_FLAGS)
    if (flags.help) {
      console.log(USAGE)
      return 0
    }
    p = resolveParams(flags)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    console.error(`${TAG}: ${err.message}\n${USAGE}`)
    return 2
  }
  const distIndex = path.join(p.dist, 'index.js')
  if (!fs.existsSync(distIndex)) {
    console.error(`${TAG}: ${path.relative(process.cwd(), distIndex)} not found; run \`npm run build\` first`)
    return 1
  }

  const scs = scenarios(p)
  const { modes } = p
  const perRun = p.durationMs + 700
  const expectedMs =
    scs.length *
      (p.runs * modes.length * (perRun + p.pauseMs) +
        (p.warmupPassMs ? (modes.length - 1) * (p.warmupPassMs + 700) : 0)) +
    10_000
  watchdog(Math.round(expectedMs * 1.5 + 60_000), cm.fatal)

  const started = new Date()
  const stamp = timestamp(started)
  fs.mkdirSync(OUT_DIR, { recursive: true })
  const batonExecArgv = p.prof
    ? ['--cpu-prof', `--cpu-prof-dir=${OUT_DIR}`, `--cpu-prof-name=splice-${stamp}-baton.cpuprofile`]
    : []

  const loadStart = os.loadavg()
  const machine = machineInfo()
  // Before the Baton child imports it: others may rebuild dist/ while the benchmark runs.
  const dist = distInfo(p.dist)
  const git = gitInfo(ROOT)
  const backend = await cm.spawn('backend', { 'req-bytes': p.reqBytes, 'resp-bytes': p.respBytes })
  const backendsArg = { backends: JSON.stringify(backend.info.ports) }
  const proxies = { baton: await cm.spawn('baton', { ...backendsArg, dist: p.dist }, batonExecArgv) }
  if (modes.includes('reference')) proxies.reference = await cm.spawn('reference', backendsArg)
  const ctx = { p, cm, backend, proxies }

  console.log(
    `Baton splice benchmark: node ${process.version}, ${machine.cpuModel} × ${machine.cpus}, ` +
      `${p.runs} run(s) × ${p.durationMs / 1000} s per mode, median; pids: client ${process.pid}, ` +
      `backend ${backend.pid}, ${Object.entries(proxies)
        .map(([m, c]) => `${m} ${c.pid}`)
        .join(', ')}`
  )
  if (p.quick)
    console.log(
      `QUICK MODE: a smoke test of every path; the numbers below are not measurements${p.guard !== null ? ' (the guard ratios excepted)' : ''}.`
    )
  const busy = busyNote(loadStart[0], machine.cpus)
  if (busy) console.log(busy)

  if (p.warmupPassMs > 0) {
    for (const sc of scs)
      for (const mode of Object.keys(proxies)) await runOnce(ctx, sc, mode, p.warmupPassMs)
  }

  const results = []
  for (const sc of scs) results.push(await measureScenario(ctx, sc))
  const finished = new Date()
  const guard = p.guard === null ? undefined : judgeGuard(p, results)

  // ---- report
  console.log()
  console.log(resultsTable(p, results))
  console.log()
  console.log(cpuLines(p, results))
  if (!p.quick)
    console.log(
      '±: half the min–max range of the runs, as % of the median.  ↑ higher is better, ↓ lower is better.'
    )
  if (guard) console.log(`\n${guardReport(guard, results)}`)

  const problems = results.flatMap((r) =>
    r.runs.filter((x) => x.errors > 0).map((x) => `${r.key} ${x.mode} run ${x.run}: ${x.firstError}`)
  )
  for (const r of results) {
    const [key] = r.metrics[0]
    for (const x of r.runs)
      if (!(x[key] > 0)) problems.push(`${r.key} ${x.mode} run ${x.run}: ${key} is ${x[key]}`)
  }
  if (guard && !guard.ok)
    for (const g of guard.scenarios.filter((x) => !x.ok))
      problems.push(
        `guard: ${g.key} Baton/node proxy ${g.ratio === null ? 'has no ratio' : g.ratio.toFixed(3)} < ${guard.threshold}`
      )

  const report = {
    benchmark: 'splice',
    schema: 1,
    date: started.toISOString(),
    finished: finished.toISOString(),
    quick: p.quick,
    timingValid: !p.quick,
    ...machine,
    loadavg: { start: loadStart, end: os.loadavg() },
    git,
    dist,
    commands: {
      client: [process.execPath, ...process.execArgv, ...process.argv.slice(1)].join(' '),
      backend: backend.command,
      ...Object.fromEntries(Object.entries(proxies).map(([m, c]) => [m, c.command])),
    },
    params: p,
    batonConfig: {
      listeners: LISTENERS.map((name) => ({
        name,
        listen: `${HOST}:0`,
        backends: [`${HOST}:<backend ${name} port>`],
        balance: 'round-robin',
        ...JSON.parse(process.env.BATON_LISTENER ?? '{}'),
      })),
      log: batonLogConfig(),
      ...(accessLogTarget() !== undefined ? { accessLogTo: accessLogTarget() } : {}),
    },
    results: results.map(({ metrics, ...r }) => ({
      ...r,
      metrics: metrics.map(([key, label, better]) => ({ key, label, better })),
    })),
    guard,
    problems,
    ok: problems.length === 0,
  }

  await cm.stopAll()
  if (p.prof) {
    report.cpuProfile = path.join(OUT_DIR, `splice-${stamp}-baton.cpuprofile`)
    console.log(`\nCPU profile (Baton): ${path.relative(process.cwd(), report.cpuProfile)}`)
  }
  return writeReport(path.join(OUT_DIR, `splice-${stamp}${p.quick ? '-quick' : ''}.json`), report)
}

// ---------------------------------------------------------------------------------------------
// Entry: the same file is the parent and every child.

await benchmarkEntry(SELF, TAG, main, { backend: backendMain, baton: batonMain, reference: referenceMain })
