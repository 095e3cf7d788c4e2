#!/usr/bin/env node
/**
 * bench/failover.mjs — what does in-flight failover cost when nothing fails, and how long does a
 * hand-off take when something does?
 *
 *   npm run build && node bench/failover.mjs [--duration 5s] [--runs 3] [--concurrency 50]
 *                                            [--min-failovers 500] [--reset-on 2]
 *                                            [--only replay,handoff] [--dist DIR] [--quick]
 *
 * Three processes, so the measurement is not one event loop fighting itself:
 *   parent  (this file)        the load client, the timing and the report
 *   child   --role=backend     the backend servers: `rr` (answers every frame), `a` (resets), `b` (answers)
 *   child   --role=baton       Baton (<dist>/index.js) with one listener per mode below
 *
 * Frames are length-prefixed: a 4-byte big-endian body length, then the body; requests and
 * responses are 64 bytes whole (4 + 60). A request body starts with a 32-bit id, which the
 * response echoes, so every response is checked against its request — replayed ones included.
 *
 * 1. replay — the cost of being able to replay. --concurrency connections, each a closed loop of one
 *    request and its response, for --duration, through four listeners in front of the same `rr`
 *    server: length-prefixed with replay safe / none, opaque with replay safe / none. The modes take
 *    turns within every run (order rotated every run); the table shows the median of --runs
 *    runs, and safe/none per protocol (target ≥ 0.90: replay costs at most 10% of req/s).
 *    `Baton CPU/req` is the Baton process's CPU time (user + kernel) per request over the whole run:
 *    on a machine where the client, not Baton, limits req/s, that is where a cost shows first.
 *    (opaque with replay none takes Baton's plain splice path, with no framer at all.)
 *
 * 2. handoff — backend `a` resets (RST) every connection on its --reset-on'th request; `b` answers.
 *    Two listeners, length-prefixed with replay safe, round-robin over [a, b], passive failures
 *    1 000 000 (so `a` is never ejected): `pooled` with pool.idle 4, `new` with pool.idle 0. One
 *    client session at a time sends --reset-on requests one after the other (the first ones warm
 *    the path, so the measured one meets an established server connection) and closes. Sessions
 *    that round-robin puts on `a` fail over on their last request; those on `b` are the control.
 *    A run lasts --duration and at least until `a` has reset --min-failovers requests. Two measures:
 *      Baton     `handoffLatency()`'s samples: from the failure Baton sees to the replacement's
 *                first byte passing to the client, as Baton records it (read per run through a
 *                hook on each listener's handoffLatency(), and the API's own p50/p99 kept in the JSON).
 *      client    end-to-end time of the request that failed over (ids reported by `a`) vs the same
 *                request on sessions that stayed on `b`; "excess" is the difference of the two
 *                percentiles — the client-visible cost, including `a`'s own time to read and reset.
 *    The table splits the hand-offs by the connection Baton actually used (as handoffLatency() does):
 *    a pooled listener whose pool is empty hands off over a new connection, shown as its own row,
 *    and a warning says so when under 90% of its hand-offs were pooled. Percentiles are over every
 *    run's samples together (per-run values are in the JSON).
 *    Target: pooled p99 under 2 ms on loopback (judged from 100 pooled hand-offs up).
 *
 * --quick: about a second per scenario, one run, no warm-up, no minimum failover count: a smoke
 * test for CI that checks every path still moves the right bytes. Its numbers are not measurements,
 * and no ratio or target is judged.
 * --dist DIR: measure another build of Baton (default: ./dist).
 *
 * Output: a table on stdout, and JSON (parameters, machine, Baton config, every run, Baton's state
 * after the runs) in bench/out/failover-<ts>[-quick].json.
 * Exit status: 0 when every run moved the expected bytes without unexpected Baton counters,
 * 1 otherwise, 2 on bad flags. Targets missed are reported, not failures. Every child is stopped at
 * the end, by pid, also on error, SIGINT and SIGTERM; a watchdog bounds the whole run. Only
 * 127.0.0.1 is used.
 */
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import {
  HOST,
  MiB,
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
  percentiles,
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

const SELF = fileURLToPath(import.meta.url)
const BENCH_DIR = path.dirname(SELF)
const ROOT = path.dirname(BENCH_DIR)
const OUT_DIR = path.join(BENCH_DIR, 'out')
const TAG = 'bench/failover'

const FRAME = 64
const BODY = FRAME - 4
/** Request / response templates: length 60, then the body (id at 4..8, filler after). */
const REQ_TEMPLATE = Buffer.alloc(FRAME, 0x71)
REQ_TEMPLATE.writeUInt32BE(BODY, 0)
const RESP_TEMPLATE = Buffer.alloc(FRAME, 0x72)
RESP_TEMPLATE.writeUInt32BE(BODY, 0)

const REPLAY_MODES = [
  { key: 'lp-safe', protocol: 'length-prefixed', replay: 'safe' },
  { key: 'lp-none', protocol: 'length-prefixed', replay: 'none' },
  { key: 'op-safe', protocol: 'opaque', replay: 'safe' },
  { key: 'op-none', protocol: 'opaque', replay: 'none' },
]
/** Fewer pooled hand-offs than this and the p99 target is not judged. */
const MIN_JUDGED = 100
const HANDOFF_KINDS = [
  { key: 'pooled', listener: 'ho-pooled', idle: 4 },
  { key: 'new', listener: 'ho-new', idle: 0 },
]

// ---------------------------------------------------------------------------------------------
// Flags

const VALUE_FLAGS = ['duration', 'runs', 'concurrency', 'min-failovers', 'reset-on', 'only', 'dist']
const BOOLEAN_FLAGS = ['quick', 'help']
const USAGE = `usage: node bench/failover.mjs [--duration 5s] [--runs 3] [--concurrency 50] [--min-failovers 500]
                            [--reset-on 2] [--only replay,handoff] [--dist DIR] [--quick]`

function resolveParams(flags) {
  const quick = flags.quick === true
  const duration = flags.duration !== undefined ? parseDuration(flags.duration) : undefined
  const p = {
    quick,
    /** Per mode and run of the replay scenario (quick: 4 modes × 250 ms ≈ 1 s). */
    replayMs: duration ?? (quick ? 250 : 5000),
    /** Per kind and run of the hand-off scenario (quick: 2 kinds × 500 ms ≈ 1 s). */
    handoffMs: duration ?? (quick ? 500 : 5000),
    runs: flags.runs !== undefined ? parseIntFlag(flags.runs, 'runs', 1, 50) : quick ? 1 : 3,
    concurrency:
      flags.concurrency !== undefined ? parseIntFlag(flags.concurrency, 'concurrency', 1, 2000) : 50,
    minFailovers:
      flags['min-failovers'] !== undefined
        ? parseIntFlag(flags['min-failovers'], 'min-failovers', 0, 1_000_000)
        : quick
          ? 0
          : 500,
    resetOn: flags['reset-on'] !== undefined ? parseIntFlag(flags['reset-on'], 'reset-on', 1, 100) : 2,
    only: flags.only !== undefined ? String(flags.only).split(',') : ['replay', 'handoff'],
    dist: path.resolve(flags.dist ?? path.join(ROOT, 'dist')),
    reqBytes: FRAME,
    respBytes: FRAME,
  }
  for (const s of p.only)
    if (!['replay', 'handoff'].includes(s)) throw new UsageError(`--only: unknown scenario ${s}`)
  /** Start of each replay run not counted (connection set-up, JIT). */
  p.warmupMs = quick ? 0 : Math.min(1000, Math.round(p.replayMs * 0.1))
  /** A discarded pass of every mode and kind before the measured runs. */
  p.warmupPassMs = quick ? 0 : Math.min(1000, Math.round(Math.max(p.replayMs, p.handoffMs) / 4))
  p.pauseMs = quick ? 0 : 250
  return p
}

// ---------------------------------------------------------------------------------------------
// Frames

/**
 * A data handler that calls onFrame(buf, offset, size) for every complete length-prefixed frame;
 * a frame split across chunks is joined (rare with 64-byte frames).
 */
function frameReader(onFrame) {
  let pend
  return (chunk) => {
    const buf = pend === undefined ? chunk : Buffer.concat([pend, chunk])
    pend = undefined
    let i = 0
    while (buf.length - i >= 4) {
      const size = 4 + buf.readUInt32BE(i)
      if (buf.length - i < size) break
      if (onFrame(buf, i, size) === false) return
      i += size
    }
    if (i < buf.length) pend = buf.subarray(i)
  }
}

function response(req, off) {
  const r = Buffer.allocUnsafe(FRAME)
  RESP_TEMPLATE.copy(r)
  req.copy(r, 4, off + 4, off + 8)
  return r
}

// ---------------------------------------------------------------------------------------------
// Child: backends

async function backendMain(args) {
  const resetOn = Number(args['reset-on'])
  /** Ids of the requests `a` answered with a reset, since the parent last asked. */
  let resetIds = []
  let resetsTotal = 0

  // rr and b: one response per request frame, the request's id echoed.
  const answer = (s) => {
    s.on('error', noop)
    s.on(
      'data',
      frameReader((buf, off) => {
        s.write(response(buf, off))
      })
    )
  }
  // a: answers the first resetOn-1 requests of a connection, resets it on the next one.
  const resetter = (s) => {
    let n = 0
    s.on('error', noop)
    s.on(
      'data',
      frameReader((buf, off) => {
        if (++n < resetOn) {
          s.write(response(buf, off))
          return true
        }
        resetIds.push(buf.readUInt32BE(off + 4))
        resetsTotal++
        s.resetAndDestroy()
        return false
      })
    )
  }
  const servers = {
    rr: net.createServer({ noDelay: true }, answer),
    a: net.createServer({ noDelay: true }, resetter),
    b: net.createServer({ noDelay: true }, answer),
  }
  const ports = {}
  for (const [name, srv] of Object.entries(servers)) {
    await new Promise((resolve, reject) => {
      srv.once('error', reject)
      srv.listen({ host: HOST, port: 0, backlog: 4096 }, resolve)
    })
    ports[name] = srv.address().port
  }
  const connections = (srv) => new Promise((r) => srv.getConnections((err, n) => r(err ? -1 : n)))
  serveRpc({
    cpu: cpuHandler,
    /** The ids reset since the last call (and forget them). */
    resets: () => {
      const ids = resetIds
      resetIds = []
      return { ids, total: resetsTotal }
    },
    resetCount: () => ({ count: resetIds.length }),
    connections: async () => {
      const out = {}
      for (const [name, srv] of Object.entries(servers)) out[name] = await connections(srv)
      return { connections: out }
    },
    exit: () => {
      setImmediate(() => process.exit(0))
      return {}
    },
  })
  process.send({ type: 'ready', ports })
}

// ---------------------------------------------------------------------------------------------
// Child: Baton

function batonConfig(ports) {
  const common = { listen: `${HOST}:0` }
  return {
    listeners: [
      ...REPLAY_MODES.map((m) => ({
        ...common,
        name: m.key,
        backends: [`${HOST}:${ports.rr}`],
        protocol: m.protocol,
        replay: m.replay,
      })),
      ...HANDOFF_KINDS.map((k) => ({
        ...common,
        name: k.listener,
        backends: [`${HOST}:${ports.a}`, `${HOST}:${ports.b}`],
        balance: 'round-robin',
        protocol: 'length-prefixed',
        replay: 'safe',
        pool: { idle: k.idle },
        passive: { failures: 1_000_000 },
      })),
    ],
    log: { level: 'silent' },
  }
}

async function batonMain(args) {
  const { createBalancer } = await import(pathToFileURL(path.join(args.dist, 'index.js')).href)
  const config = JSON.parse(args.config)
  const b = createBalancer(config)
  await b.listen()
  const ports = {}
  config.listeners.forEach((l, i) => (ports[l.name] = b.address(i).port))

  // Per-run hand-off samples: the same values handoffLatency() aggregates (its rings keep only the
  // last 1024 per listener, unordered, so runs cannot be told apart from the API alone).
  let samples = []
  let hooked = 0
  for (const l of b.frontends ?? []) {
    if (typeof l.handoffLatency !== 'function') continue
    const orig = l.handoffLatency
    l.handoffLatency = function (session, pooled, ms) {
      samples.push([l.name, pooled ? 1 : 0, ms])
      return orig.call(this, session, pooled, ms)
    }
    hooked++
  }

  const heap = () => {
    globalThis.gc?.()
    globalThis.gc?.()
    return process.memoryUsage().heapUsed
  }
  const heapAtStart = heap()

  serveRpc({
    cpu: cpuHandler,
    counters: () => ({
      counters: b.counters(),
      listeners: Object.fromEntries(
        b.listenerSnapshots().map((l) => [l.name, { ...l.counters, active: l.active }])
      ),
    }),
    handoff: () => {
      const s = samples
      samples = []
      return { samples: s, hooked, api: b.handoffLatency() }
    },
    /** Anything left behind once every client has gone: sessions, replay bytes, backend slots, pools, handles, heap. */
    state: () => ({
      state: {
        sessions: b.sessions().length,
        active: b.counters().active,
        replayBytesHeld: b.budget?.total,
        backends: b.listenerSnapshots().flatMap((l) =>
          l.backends.map((x) => ({
            listener: l.name,
            backend: x.name,
            active: x.active,
            pool: x.pool,
            health: x.health,
          }))
        ),
        handles: process._getActiveHandles?.().length,
        heapMiBAtStart: Math.round((heapAtStart / MiB) * 10) / 10,
        heapMiBNow: Math.round((heap() / MiB) * 10) / 10,
        rssMiB: Math.round((process.memoryUsage().rss / MiB) * 10) / 10,
      },
    }),
    exit: async () => {
      await b.close(0)
      setImmediate(() => process.exit(0))
      return {}
    },
  })
  process.send({ type: 'ready', ports })
}

// ---------------------------------------------------------------------------------------------
// Parent: load generators

/** Closed loops of one 64-byte request frame and its 64-byte response (id echoed), on --concurrency connections. */
function runRR(port, p, ms) {
  return closedLoop(
    port,
    { concurrency: p.concurrency, ms, warmupMs: p.warmupMs },
    {
      init: (c, i) => {
        c.req = Buffer.from(REQ_TEMPLATE)
        c.resp = Buffer.alloc(FRAME)
        c.id = (i << 24) >>> 0
        c.got = 0
      },
      request: (c) => {
        c.id = (c.id + 1) >>> 0
        c.req.writeUInt32BE(c.id, 4)
        return c.req
      },
      onData: (c, chunk, fail) => {
        if (c.got + chunk.length > FRAME) {
          fail(`response of ${c.got + chunk.length} bytes, expected ${FRAME}`)
          c.got = 0
          return false
        }
        chunk.copy(c.resp, c.got)
        c.got += chunk.length
        if (c.got < FRAME) return false
        c.got = 0
        if (c.resp.readUInt32BE(4) !== c.id) fail(`response id ${c.resp.readUInt32BE(4)}, expected ${c.id}`)
        return true
      },
    }
  )
}

let nextId = 1
/**
 * One session at a time: connect, send --reset-on requests one after the other, close, wait for the
 * close. Lasts `ms`, and then at least until `a` has reset `minFailovers` requests (bounded).
 * Resolves to { sessions, ids, index, us } (one entry per answered request) and errors.
 */
function runHandoff(ctx, port, ms, minFailovers) {
  const p = ctx.p
  return new Promise((resolve) => {
    const ids = []
    const index = []
    const us = []
    const t0 = now()
    const tEnd = t0 + ms
    const hardEnd = t0 + ms * 4 + 30_000
    let sessions = 0
    let errors = 0
    let firstError
    let sinceCheck = Infinity
    const fail = (msg) => {
      errors++
      firstError ??= msg
    }

    const one = () => {
      const s = net.connect({ host: HOST, port, noDelay: true })
      const resp = Buffer.alloc(FRAME)
      let k = 0
      let got = 0
      let tReq = 0
      let id = 0
      let failed = false
      const send = () => {
        id = nextId++ >>> 0
        const req = Buffer.from(REQ_TEMPLATE)
        req.writeUInt32BE(id, 4)
        tReq = now()
        s.write(req)
      }
      s.on('connect', send)
      s.on('data', (chunk) => {
        if (got + chunk.length > FRAME) {
          fail(`response of ${got + chunk.length} bytes, expected ${FRAME}`)
          failed = true
          return void s.destroy()
        }
        chunk.copy(resp, got)
        got += chunk.length
        if (got < FRAME) return
        const t = now()
        got = 0
        if (resp.readUInt32BE(4) !== id) fail(`response id ${resp.readUInt32BE(4)}, expected ${id}`)
        ids.push(id)
        index.push(k)
        us.push((t - tReq) * 1000)
        if (++k < p.resetOn) send()
        else s.end()
      })
      s.on('error', (err) => {
        failed = true
        fail(err.code ?? err.message)
      })
      s.on('close', () => {
        sessions++
        if (k < p.resetOn && !failed) fail(`session closed after ${k} of ${p.resetOn} responses`)
        next().catch((err) => {
          fail(String(err))
          finish()
        })
      })
    }

    let done = false
    const finish = () => {
      if (done) return
      done = true
      resolve({ sessions, ids, index, us, seconds: (now() - t0) / 1000, errors, firstError })
    }
    const next = async () => {
      const t = now()
      if (t >= hardEnd || errors >= 100) {
        if (t >= hardEnd) fail(`fewer than ${minFailovers} failovers in ${Math.round((t - t0) / 1000)} s`)
        return finish()
      }
      if (t >= tEnd) {
        if (minFailovers === 0) return finish()
        if (++sinceCheck >= 50) {
          sinceCheck = 0
          const { count } = await ctx.rpc(ctx.backend, 'resetCount')
          if (count >= minFailovers) return finish()
        }
      }
      one()
    }
    one()
  })
}

// ---------------------------------------------------------------------------------------------
// Parent: runs

const cpuOf = async (ctx) => {
  const [baton, backend] = await Promise.all([ctx.rpc(ctx.baton, 'cpu'), ctx.rpc(ctx.backend, 'cpu')])
  return { baton: baton.cpu, backend: backend.cpu, client: process.cpuUsage() }
}

/** Counters that must not move in a clean run (both scenarios). */
const ERROR_COUNTERS = [
  'rejected',
  'noBackend',
  'connectErrors',
  'clientErrors',
  'serverErrors',
  'clientTimeouts',
  'serverTimeouts',
  'unrecoverable',
  'framingErrors',
  'resumeMismatches',
]
/** Counters that must not move when no backend fails (the replay scenario). */
const FAILOVER_COUNTERS = ['serverFailures', 'failovers', 'replayedRequests', 'handoffsPooled', 'handoffsNew']

/** Wait until Baton has no live session, so runs do not overlap; the counters then. */
const batonIdle = (ctx) => untilIdle(ctx.cm, ctx.baton)

function counterDelta(before, after, keys) {
  const d = {}
  for (const k of keys) if (after[k] !== before[k]) d[k] = after[k] - before[k]
  return d
}

async function runReplayOnce(ctx, mode, ms) {
  const port = ctx.baton.info.ports[mode.key]
  const before = await batonIdle(ctx)
  const cpu0 = await cpuOf(ctx)
  const w0 = now()
  const r = await withTimeout(runRR(port, ctx.p, ms), ms + 30_000, `replay ${mode.key}`)
  const wall = (now() - w0) / 1000
  const cpu1 = await cpuOf(ctx)
  const after = await batonIdle(ctx)
  const lb = before.listeners[mode.key]
  const la = after.listeners[mode.key]
  r.wallSeconds = wall
  r.cpuPct = {}
  for (const k of ['baton', 'backend', 'client'])
    r.cpuPct[k] = Math.round(((cpuSecs(cpu1[k]) - cpuSecs(cpu0[k])) / wall) * 1000) / 10
  r.batonCpuUsPerReq = r.total > 0 ? ((cpuSecs(cpu1.baton) - cpuSecs(cpu0.baton)) * 1e6) / r.total : null
  r.sessions = la.accepted - lb.accepted
  if (r.sessions !== ctx.p.concurrency) {
    r.errors++
    r.firstError ??= `${r.sessions} sessions went through listener ${mode.key}, expected ${ctx.p.concurrency}`
  }
  if (la.active !== 0) {
    r.errors++
    r.firstError ??= `${la.active} sessions still open on ${mode.key} after the run`
  }
  const errs = counterDelta(lb, la, [...ERROR_COUNTERS, ...FAILOVER_COUNTERS])
  if (Object.keys(errs).length > 0) {
    r.batonCounters = errs
    r.errors++
    r.firstError ??= `Baton counters moved: ${JSON.stringify(errs)}`
  }
  return r
}

/** Samples in ms → { p50, p99 } in µs, plus what their resolution looks like. */
function batonStats(ms) {
  const [p50, p99, max] = percentiles(ms, [0.5, 0.99, 1]).map((v) => (v === null ? null : v * 1000))
  const integers = ms.filter((v) => Number.isInteger(v)).length
  const hist = {}
  if (ms.length > 0 && integers === ms.length) for (const v of ms) hist[v] = (hist[v] ?? 0) + 1
  return {
    count: ms.length,
    p50,
    p99,
    max,
    integerShare: ms.length ? integers / ms.length : null,
    msHistogram: hist,
  }
}

async function runHandoffOnce(ctx, kind, ms, minFailovers) {
  const port = ctx.baton.info.ports[kind.listener]
  const before = await batonIdle(ctx)
  await ctx.rpc(ctx.backend, 'resets') // forget resets from before this run
  await ctx.rpc(ctx.baton, 'handoff') // and hand-off samples
  const run = await withTimeout(
    runHandoff(ctx, port, ms, minFailovers),
    ms * 4 + 60_000,
    `handoff ${kind.key}`
  )
  const after = await batonIdle(ctx)
  const { ids: resetIds } = await ctx.rpc(ctx.backend, 'resets')
  const ho = await ctx.rpc(ctx.baton, 'handoff')
  const lb = before.listeners[kind.listener]
  const la = after.listeners[kind.listener]

  // Client side, in time order: the requests that failed over (ids `a` reset) and, as the control,
  // the same request of the sessions that stayed on `b`.
  const reset = new Set(resetIds)
  const failedUs = []
  const normalUs = []
  for (let i = 0; i < run.ids.length; i++) {
    if (reset.has(run.ids[i])) failedUs.push(run.us[i])
    else if (run.index[i] === ctx.p.resetOn - 1) normalUs.push(run.us[i])
  }
  // Baton side, in time order. One session at a time, so the k-th sample is the k-th failed-over
  // request: pair them, so the client's latency can be split by the kind of hand-off Baton made.
  const mine = ho.samples.filter((x) => x[0] === kind.listener)
  const paired = ho.hooked > 0 && mine.length === failedUs.length
  const handoffs = failedUs.map((us, i) => ({
    clientUs: Math.round(us * 10) / 10,
    batonMs: paired ? mine[i][2] : null,
    pooled: paired ? mine[i][1] === 1 : null,
  }))
  const stat = (xs) => {
    const [p50, p99] = percentiles(xs, [0.5, 0.99])
    return { count: xs.length, p50, p99 }
  }
  const r = {
    sessions: run.sessions,
    seconds: run.seconds,
    resets: resetIds.length,
    failovers: la.failovers - lb.failovers,
    handoffsPooled: la.handoffsPooled - lb.handoffsPooled,
    handoffsNew: la.handoffsNew - lb.handoffsNew,
    replayedRequests: la.replayedRequests - lb.replayedRequests,
    serverFailures: la.serverFailures - lb.serverFailures,
    client: { failedOver: stat(failedUs), normal: stat(normalUs) },
    baton: batonStats(mine.map((x) => x[2])),
    paired,
    handoffLatencyApi: ho.api,
    hooked: ho.hooked,
    handoffs,
    normalUs: normalUs.map((v) => Math.round(v * 10) / 10),
    errors: run.errors,
    firstError: run.firstError,
  }
  const problem = (msg) => {
    r.errors++
    r.firstError ??= msg
  }
  if (failedUs.length !== resetIds.length)
    problem(`${resetIds.length - failedUs.length} reset requests never got their replayed response`)
  if (r.failovers !== r.resets) problem(`Baton counted ${r.failovers} failovers, backend a reset ${r.resets}`)
  if (r.serverFailures !== r.resets)
    problem(`Baton counted ${r.serverFailures} server failures, a reset ${r.resets}`)
  if (ho.hooked > 0 && mine.length !== r.failovers)
    problem(`${mine.length} hand-off latency samples for ${r.failovers} failovers`)
  if (la.active !== 0) problem(`${la.active} sessions still open on ${kind.listener} after the run`)
  if (r.resets === 0) problem('no failover happened')
  const errs = counterDelta(lb, la, ERROR_COUNTERS)
  if (Object.keys(errs).length > 0) {
    r.batonCounters = errs
    problem(`Baton counters moved: ${JSON.stringify(errs)}`)
  }
  return r
}

/**
 * Hand-off rows, over every run's samples together: by the kind of connection Baton actually used
 * (a pooled listener whose pool is empty hands off over a new connection, and Baton's
 * handoffLatency() files that under `new`).
 */
function handoffRows(runs) {
  const rows = []
  const pct = (xs) => percentiles(xs, [0.5, 0.99])
  for (const k of HANDOFF_KINDS) {
    const mine = runs.filter((r) => r.kind === k.key)
    const all = mine.flatMap((r) => r.handoffs)
    const normal = mine.flatMap((r) => r.normalUs)
    const [n50, n99] = pct(normal)
    const paired = mine.every((r) => r.paired)
    const groups =
      k.idle > 0 && paired
        ? [
            ['pooled', all.filter((h) => h.pooled)],
            ['new, pool empty', all.filter((h) => !h.pooled)],
          ]
        : [[k.idle > 0 ? 'pooled listener' : 'new', all]]
    for (const [label, hs] of groups) {
      if (hs.length === 0 && label === 'new, pool empty') continue
      const [b50, b99] = pct(hs.filter((h) => h.batonMs !== null).map((h) => h.batonMs * 1000))
      const [f50, f99] = pct(hs.map((h) => h.clientUs))
      rows.push({
        kind: k.key,
        listener: k.listener,
        label: `${label}${k.idle > 0 ? ` (idle ${k.idle})` : ''}`,
        count: hs.length,
        batonP50: b50,
        batonP99: b99,
        normalCount: normal.length,
        normalP50: n50,
        normalP99: n99,
        failedP50: f50,
        failedP99: f99,
        excessP50: f50 !== null && n50 !== null ? f50 - n50 : null,
        excessP99: f99 !== null && n99 !== null ? f99 - n99 : null,
      })
    }
  }
  return rows
}

// ---------------------------------------------------------------------------------------------
// Parent: main

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
  const doReplay = p.only.includes('replay')
  const doHandoff = p.only.includes('handoff')

  const expectedMs =
    (doReplay ? REPLAY_MODES.length * (p.runs * (p.replayMs + 1000 + p.pauseMs) + p.warmupPassMs) : 0) +
    (doHandoff
      ? HANDOFF_KINDS.length * (p.runs * (p.handoffMs * 2 + 2000 + p.pauseMs) + p.warmupPassMs)
      : 0) +
    15_000
  watchdog(Math.round(expectedMs * 2 + 60_000), cm.fatal)

  const started = new Date()
  const stamp = timestamp(started)
  fs.mkdirSync(OUT_DIR, { recursive: true })
  const loadStart = os.loadavg()
  const machine = machineInfo()
  const dist = distInfo(p.dist)

  const backend = await cm.spawn('backend', { 'reset-on': p.resetOn })
  const config = batonConfig(backend.info.ports)
  const baton = await cm.spawn('baton', { dist: p.dist, config: JSON.stringify(config) }, ['--expose-gc'])
  const ctx = { p, cm, backend, baton, rpc: cm.rpc }

  console.log(
    `Baton failover benchmark: node ${process.version}, ${machine.cpuModel} × ${machine.cpus}, ` +
      `${p.runs} run(s), median; pids: client ${process.pid}, backend ${backend.pid}, baton ${baton.pid}`
  )
  if (p.quick) console.log('QUICK MODE: a smoke test of every path; the numbers below are not measurements.')
  const busy = busyNote(loadStart[0], machine.cpus)
  if (busy) console.log(busy)

  // Warm-up pass, discarded.
  if (p.warmupPassMs > 0) {
    if (doReplay) for (const m of REPLAY_MODES) await runReplayOnce(ctx, m, p.warmupPassMs)
    if (doHandoff) for (const k of HANDOFF_KINDS) await runHandoffOnce(ctx, k, p.warmupPassMs, 0)
  }

  const problems = []
  /** Reported, but not failures: targets missed, a pool that ran dry. */
  const warnings = []

  // ---- 1. replay cost
  let replay
  if (doReplay) {
    const runs = []
    for (let i = 0; i < p.runs; i++) {
      for (const m of runOrder(REPLAY_MODES, i)) {
        if (p.pauseMs) await sleep(p.pauseMs)
        const r = await runReplayOnce(ctx, m, p.replayMs)
        runs.push({ run: i + 1, mode: m.key, ...r })
        if (r.errors > 0) {
          problems.push(`replay ${m.key} run ${i + 1}: ${r.errors} error(s), first: ${r.firstError}`)
          console.error(`  replay ${m.key} run ${i + 1}: ${r.errors} error(s), first: ${r.firstError}`)
        }
        if (!(r.rps > 0)) problems.push(`replay ${m.key} run ${i + 1}: req/s is ${r.rps}`)
      }
    }
    const med = {}
    for (const m of REPLAY_MODES) {
      const mine = runs.filter((r) => r.mode === m.key)
      const pick = (f) => mine.map(f)
      med[m.key] = {
        rps: median(pick((r) => r.rps)),
        rpsSpread: spread(pick((r) => r.rps)),
        p50: median(pick((r) => r.p50)),
        p99: median(pick((r) => r.p99)),
        batonCpuUsPerReq: median(pick((r) => r.batonCpuUsPerReq)),
        batonCpuPct: median(pick((r) => r.cpuPct.baton)),
        clientCpuPct: median(pick((r) => r.cpuPct.client)),
      }
    }
    // Ratios per run pair too (same run, adjacent in time), then their median: less drift than medians' ratio.
    const ratio = {}
    for (const proto of ['lp', 'op']) {
      const rps = pairedRatios(runs, `${proto}-safe`, `${proto}-none`, 'rps')
      const cpu = pairedRatios(runs, `${proto}-safe`, `${proto}-none`, 'batonCpuUsPerReq')
      ratio[proto] = {
        rpsOfMedians: med[`${proto}-none`].rps ? med[`${proto}-safe`].rps / med[`${proto}-none`].rps : null,
        rpsMedianOfRuns: rps.median,
        rpsPerRun: rps.perRun,
        batonCpuPerReqMedianOfRuns: cpu.median,
      }
    }
    replay = { median: med, ratio, runs }
  }

  // ---- 2. hand-off latency
  let handoff
  if (doHandoff) {
    const runs = []
    for (let i = 0; i < p.runs; i++) {
      for (const k of runOrder(HANDOFF_KINDS, i)) {
        if (p.pauseMs) await sleep(p.pauseMs)
        const r = await runHandoffOnce(ctx, k, p.handoffMs, p.minFailovers)
        runs.push({ run: i + 1, kind: k.key, ...r })
        if (r.errors > 0) {
          problems.push(`handoff ${k.key} run ${i + 1}: ${r.errors} error(s), first: ${r.firstError}`)
          console.error(`  handoff ${k.key} run ${i + 1}: ${r.errors} error(s), first: ${r.firstError}`)
        }
      }
    }
    const perKind = {}
    for (const k of HANDOFF_KINDS) {
      const mine = runs.filter((r) => r.kind === k.key)
      const sum = (f) => mine.reduce((acc, r) => acc + f(r), 0)
      perKind[k.key] = {
        failovers: sum((r) => r.failovers),
        handoffsPooled: sum((r) => r.handoffsPooled),
        handoffsNew: sum((r) => r.handoffsNew),
        batonP99PerRun: mine.map((r) => r.baton.p99),
        batonIntegerShare: median(mine.map((r) => r.baton.integerShare)),
        clientFailedP99PerRun: mine.map((r) => r.client.failedOver.p99),
      }
      if (
        k.idle > 0 &&
        perKind[k.key].failovers > 0 &&
        perKind[k.key].handoffsPooled / perKind[k.key].failovers < 0.9
      )
        warnings.push(
          `handoff ${k.key}: only ${perKind[k.key].handoffsPooled} of ${perKind[k.key].failovers} hand-offs found a pooled ` +
            `connection (pool.idle ${k.idle}): the warm pool does not keep up`
        )
    }
    handoff = { rows: handoffRows(runs), perKind, runs }
  }

  // ---- Baton after everything: nothing should be left but the pools.
  await sleep(200)
  const [finalCounters, finalState, backendConns, lastHandoff] = await Promise.all([
    batonIdle(ctx),
    cm.rpc(baton, 'state'),
    cm.rpc(backend, 'connections'),
    cm.rpc(baton, 'handoff'),
  ])
  const st = finalState.state
  const leftovers = []
  if (st.sessions !== 0) leftovers.push(`${st.sessions} sessions still in the table`)
  if (st.replayBytesHeld !== undefined && st.replayBytesHeld !== 0)
    leftovers.push(`replay budget holds ${st.replayBytesHeld} bytes with no session`)
  for (const x of st.backends)
    if (x.active !== 0) leftovers.push(`${x.listener} ${x.backend}: active ${x.active} with no session`)
  const expectPool = HANDOFF_KINDS.reduce((a, k) => a + k.idle, 0)
  const c = backendConns.connections
  if (c.rr !== 0) leftovers.push(`backend rr still has ${c.rr} connections`)
  if (doHandoff && c.a + c.b > expectPool * 2)
    leftovers.push(`backends a+b hold ${c.a + c.b} connections, pools account for ${expectPool * 2}`)
  problems.push(...leftovers.map((x) => `after the runs: ${x}`))

  const finished = new Date()
  await cm.stopAll()

  // ---- report
  const out = []
  if (replay) {
    const rows = [['replay cost', 'replay', 'req/s', 'p50', 'p99', 'Baton CPU/req', 'Baton CPU']]
    if (!p.quick) rows[0].push('safe/none')
    for (const m of REPLAY_MODES) {
      const x = replay.median[m.key]
      const row = [
        m.replay === 'safe' ? m.protocol : '',
        m.replay,
        `${fmtNum(x.rps)} ${x.rpsSpread}`.trim(),
        fmtUs(x.p50),
        fmtUs(x.p99),
        x.batonCpuUsPerReq === null ? '—' : `${x.batonCpuUsPerReq.toFixed(1)} µs`,
        x.batonCpuPct === null ? '—' : `${Math.round(x.batonCpuPct)}%`,
      ]
      if (!p.quick) {
        const rr = replay.ratio[m.key.slice(0, 2)]
        row.push(
          m.replay === 'safe' && rr.rpsMedianOfRuns !== null
            ? `${rr.rpsMedianOfRuns.toFixed(3)} ${rr.rpsMedianOfRuns >= 0.9 ? 'ok' : 'OVER 10%'}`
            : ''
        )
      }
      rows.push(row)
    }
    out.push(
      `Replay cost: ${p.concurrency} conns, ${FRAME} B → ${FRAME} B length-prefixed frames, ` +
        `${p.runs} × ${p.replayMs / 1000} s per mode, median`
    )
    out.push(table(rows))
  }
  if (handoff) {
    const rows = [
      [
        'hand-off',
        'n',
        'Baton p50',
        'Baton p99',
        'client normal p50/p99',
        'failed-over p50/p99',
        'excess p50/p99',
      ],
    ]
    for (const x of handoff.rows) {
      const judge = !p.quick && x.label.startsWith('pooled') && x.batonP99 !== null
      const mark = !judge
        ? ''
        : x.count < MIN_JUDGED
          ? ` (n<${MIN_JUDGED})`
          : x.batonP99 < 2000
            ? ' ok'
            : ' OVER'
      rows.push([
        x.label,
        `${x.count}`,
        fmtUs(x.batonP50),
        `${fmtUs(x.batonP99)}${mark}`,
        `${fmtUs(x.normalP50)} / ${fmtUs(x.normalP99)}`,
        `${fmtUs(x.failedP50)} / ${fmtUs(x.failedP99)}`,
        `${fmtUs(x.excessP50)} / ${fmtUs(x.excessP99)}`,
      ])
    }
    if (out.length) out.push('')
    out.push(
      `Hand-off: a resets request ${p.resetOn} of each connection, b answers; 1 session at a time; ` +
        `${p.runs} × ≥${p.handoffMs / 1000} s per kind, all runs' samples together`
    )
    out.push(table(rows, 1))
    const share = median(HANDOFF_KINDS.map((k) => handoff.perKind[k.key].batonIntegerShare))
    if (share !== null && share >= 0.99)
      out.push(
        `note: ${Math.round(share * 100)}% of Baton's hand-off samples are whole ms (Date.now() resolution): ` +
          `its p50/p99 are 0/1 ms steps, not measurements; use the client columns.`
      )
  }
  const f = finalCounters.counters
  out.push(
    `Baton after the runs: ${st.sessions} sessions, replay bytes held ${st.replayBytesHeld ?? '?'}, ` +
      `unrecoverable ${f.unrecoverable}, framing errors ${f.framingErrors}, heap ${st.heapMiBAtStart} → ${st.heapMiBNow} MiB, ` +
      `handles ${st.handles}; backend connections ${JSON.stringify(c)}`
  )
  for (const w of warnings) out.push(`warning: ${w}`)
  console.log()
  console.log(out.join('\n'))

  const report = {
    benchmark: 'failover',
    schema: 1,
    date: started.toISOString(),
    finished: finished.toISOString(),
    quick: p.quick,
    timingValid: !p.quick,
    ...machine,
    loadavg: { start: loadStart, end: os.loadavg() },
    git: gitInfo(ROOT),
    dist,
    commands: {
      client: [process.execPath, ...process.execArgv, ...process.argv.slice(1)].join(' '),
      backend: backend.command,
      baton: baton.command,
    },
    params: p,
    batonConfig: config,
    targets: {
      replayRpsRatioMin: 0.9,
      pooledHandoffP99MaxMs: 2,
      judged: !p.quick,
      replayMet: replay
        ? Object.fromEntries(Object.entries(replay.ratio).map(([k, v]) => [k, v.rpsMedianOfRuns >= 0.9]))
        : undefined,
      pooledHandoffMet: handoff
        ? (() => {
            const row = handoff.rows.find((x) => x.label.startsWith('pooled'))
            return row?.batonP99 == null || row.count < MIN_JUDGED ? null : row.batonP99 < 2000
          })()
        : undefined,
    },
    replay,
    handoff,
    after: {
      counters: finalCounters.counters,
      state: st,
      backendConnections: c,
      handoffLatencyApi: lastHandoff.api,
    },
    problems,
    warnings,
    ok: problems.length === 0,
  }
  return writeReport(path.join(OUT_DIR, `failover-${stamp}${p.quick ? '-quick' : ''}.json`), report)
}

// ---------------------------------------------------------------------------------------------
// Entry: the same file is the parent and every child.

await benchmarkEntry(SELF, TAG, main, { backend: backendMain, baton: batonMain })
