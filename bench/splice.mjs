#!/usr/bin/env node
/**
 * bench/splice.mjs — how much does splicing through Baton cost, compared with a direct connection?
 *
 *   npm run build && node bench/splice.mjs [--duration 5s] [--runs 3] [--concurrency 50]
 *                                          [--resp-bytes 64] [--bulk-mib N] [--only bulk-up,rr]
 *                                          [--prof] [--reference] [--quick]
 *
 * Three processes, so the measurement is not one event loop fighting itself:
 *   parent  (this file)        the load client, the timing and the report
 *   child   --role=backend     the backend servers: sink, source, req/resp, one-reply-then-close
 *   child   --role=baton       Baton (dist/index.js), one listener in front of each backend server
 *   child   --role=reference   only with --reference: the minimal Node proxy
 * "direct" runs send the client straight to the backend child; "baton" runs go through the Baton
 * child. Both happen in the same invocation, alternating (D B, B D, D B, ...), and the table shows
 * the median of --runs runs for each and the ratio Baton/direct.
 *
 * Scenarios:
 *   bulk-up    one connection, client → backend sink for --duration (or --bulk-mib MiB); MiB/s.
 *              The sink acknowledges the byte count after the client's FIN, so the time includes
 *              the last byte's arrival and the byte count is checked.
 *   bulk-down  one connection, backend → client for --duration (or --bulk-mib MiB); MiB/s.
 *   rr         --concurrency connections, each a closed loop of a 64-byte request and a
 *              --resp-bytes response; req/s, p50/p99 latency (first 10% of the run not counted).
 *   conn       --concurrency closed loops of connect, 64-byte request, reply, close (the backend
 *              closes first, as HTTP/1.0 does, so no client port is left in TIME_WAIT); conn/s.
 *
 * --quick: about a second per scenario, one run, no warm-up: a smoke test for CI that checks every
 * path still moves the right bytes. Its numbers are not measurements, and no ratio is printed.
 * --prof: run the Baton child under `node --cpu-prof`; the .cpuprofile goes to bench/out/.
 * --reference: also run a minimal hand-written Node proxy (data/pause/drain, in a third child) as a
 * third column, to tell Baton's own cost from the cost of any user-space proxy in Node.
 *
 * Output: a table on stdout, and JSON (parameters, machine, every run) in bench/out/splice-<ts>.json.
 * Exit status: 0 when every run moved the expected bytes without errors, 1 otherwise, 2 on bad flags.
 * Every child is stopped at the end, by pid, also on error, SIGINT and SIGTERM; a watchdog bounds
 * the whole run. Only 127.0.0.1 is used.
 */
import { fork, execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'

const HOST = '127.0.0.1'
const MiB = 1024 * 1024
const SELF = fileURLToPath(import.meta.url)
const BENCH_DIR = path.dirname(SELF)
const ROOT = path.dirname(BENCH_DIR)
const OUT_DIR = path.join(BENCH_DIR, 'out')
const DIST_INDEX = path.join(ROOT, 'dist', 'index.js')
const LISTENERS = ['sink', 'source', 'rr', 'conn']
const now = () => performance.now()
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const noop = () => {}

// ---------------------------------------------------------------------------------------------
// Flags

function parseArgs(argv) {
  const flags = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--')) throw new UsageError(`unexpected argument ${a}`)
    const eq = a.indexOf('=')
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2)
    if (!VALUE_FLAGS.includes(name) && !BOOLEAN_FLAGS.includes(name))
      throw new UsageError(`unknown flag --${name}`)
    if (eq > 0) flags[name] = a.slice(eq + 1)
    else if (BOOLEAN_FLAGS.includes(name)) flags[name] = true
    else if (i + 1 < argv.length) flags[name] = argv[++i]
    else throw new UsageError(`${a} needs a value`)
  }
  return flags
}

class UsageError extends Error {}

const VALUE_FLAGS = ['duration', 'runs', 'concurrency', 'resp-bytes', 'bulk-mib', 'only']
const BOOLEAN_FLAGS = ['quick', 'prof', 'reference', 'help']

/** "5s", "500ms", "1m" or a plain number of seconds → milliseconds. */
function parseDuration(v) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(String(v).trim())
  if (m === null) throw new UsageError(`bad duration ${v} (expected e.g. 5s, 500ms, 1m)`)
  const n = Number(m[1])
  const ms = m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000
  if (ms < 100 || ms > 600_000) throw new UsageError(`duration ${v} out of range (100ms to 10m)`)
  return ms
}

function parseInt0(v, name, min, max) {
  const n = Number(v)
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UsageError(`--${name} expects an integer from ${min} to ${max}`)
  return n
}

const USAGE = `usage: node bench/splice.mjs [--duration 5s] [--runs 3] [--concurrency 50] [--resp-bytes 64]
                          [--bulk-mib N] [--only bulk-up,bulk-down,rr,conn] [--prof] [--reference] [--quick]`

function resolveParams(flags) {
  const quick = flags.quick === true
  const p = {
    quick,
    durationMs: flags.duration !== undefined ? parseDuration(flags.duration) : quick ? 400 : 5000,
    runs: flags.runs !== undefined ? parseInt0(flags.runs, 'runs', 1, 50) : quick ? 1 : 3,
    concurrency: flags.concurrency !== undefined ? parseInt0(flags.concurrency, 'concurrency', 1, 2000) : 50,
    reqBytes: 64,
    respBytes: flags['resp-bytes'] !== undefined ? parseInt0(flags['resp-bytes'], 'resp-bytes', 1, MiB) : 64,
    /** 0: bulk scenarios run for the duration; otherwise they move exactly this many MiB. */
    bulkMiB: flags['bulk-mib'] !== undefined ? parseInt0(flags['bulk-mib'], 'bulk-mib', 1, 65536) : 0,
    only: flags.only !== undefined ? String(flags.only).split(',') : ['bulk-up', 'bulk-down', 'rr', 'conn'],
    prof: flags.prof === true,
    modes: flags.reference === true ? ['direct', 'baton', 'reference'] : ['direct', 'baton'],
  }
  for (const s of p.only)
    if (!['bulk-up', 'bulk-down', 'rr', 'conn'].includes(s))
      throw new UsageError(`--only: unknown scenario ${s}`)
  /** Part of each rr/conn run not counted, so connection set-up and JIT warm-up stay out. */
  p.warmupMs = quick ? 0 : Math.min(1000, Math.round(p.durationMs * 0.1))
  /** A discarded pass of every scenario through Baton before the measured runs. */
  p.warmupPassMs = quick ? 0 : Math.min(1000, Math.round(p.durationMs / 4))
  p.pauseMs = quick ? 0 : 250
  return p
}

// ---------------------------------------------------------------------------------------------
// Child roles. Both answer { id, type } messages from the parent with { id, ok, ... } and exit
// when the parent goes away (the IPC channel closes), so no child can outlive a killed parent.

function serveRpc(handlers) {
  process.on('message', async (m) => {
    if (m === null || typeof m !== 'object' || m.id === undefined) return
    try {
      const h = handlers[m.type]
      if (h === undefined) throw new Error(`unknown request ${m.type}`)
      process.send({ id: m.id, ok: true, ...(await h(m)) })
    } catch (err) {
      process.send({ id: m.id, ok: false, error: String(err?.stack ?? err) })
    }
  })
  process.on('disconnect', () => process.exit(0))
}

const cpuHandler = () => ({ cpu: process.cpuUsage(), rss: process.memoryUsage().rss })

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

async function batonMain(args) {
  const { createBalancer } = await import(DIST_INDEX)
  const backends = JSON.parse(args.backends)
  const b = createBalancer({
    listeners: LISTENERS.map((name) => ({
      name,
      listen: `${HOST}:0`,
      backends: [`${HOST}:${backends[name]}`],
      balance: 'round-robin',
      // Extra listener options for experiments, e.g. BATON_LISTENER='{"replay":"none"}'.
      ...JSON.parse(process.env.BATON_LISTENER ?? '{}'),
    })),
    log: { level: 'silent' },
  })
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

/** The reference: the least a Node proxy can do (splice with backpressure and half-close). */
async function referenceMain(args) {
  const backends = JSON.parse(args.backends)
  const counters = { accepted: 0, active: 0 }
  const ports = {}
  for (const name of LISTENERS) {
    const srv = net.createServer({ allowHalfOpen: true, noDelay: true }, (c) => {
      counters.accepted++
      counters.active++
      const s = net.connect({ host: HOST, port: backends[name], allowHalfOpen: true, noDelay: true })
      let closed = 0
      const onClose = () => ++closed === 2 && counters.active--
      c.on('close', onClose)
      s.on('close', onClose)
      c.on('error', () => s.destroy())
      s.on('error', () => c.destroy())
      c.on('data', (d) => s.write(d) || c.pause())
      s.on('data', (d) => c.write(d) || s.pause())
      s.on('drain', () => c.resume())
      c.on('drain', () => s.resume())
      c.on('end', () => s.end())
      s.on('end', () => c.end())
    })
    await new Promise((resolve) => srv.listen({ host: HOST, port: 0, backlog: 511 }, resolve))
    ports[name] = srv.address().port
  }
  serveRpc({
    cpu: cpuHandler,
    counters: () => ({ counters }),
    exit: () => {
      setImmediate(() => process.exit(0))
      return {}
    },
  })
  process.send({ type: 'ready', ports })
}

// ---------------------------------------------------------------------------------------------
// Parent: child management

const children = new Set()
let stopping = false

function killAll() {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) {
      try {
        process.kill(c.pid, 'SIGKILL')
      } catch {
        /* already gone */
      }
    }
  }
}

function fatal(msg) {
  console.error(`bench/splice: ${msg}`)
  killAll()
  process.exit(1)
}

function spawnChild(role, args, execArgv) {
  const argv = [`--role=${role}`, ...Object.entries(args).map(([k, v]) => `--${k}=${v}`)]
  const child = fork(SELF, argv, { execArgv, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
  child.role = role
  child.command = [process.execPath, ...execArgv, SELF, ...argv].join(' ')
  children.add(child)
  child.on('exit', (code, signal) => {
    if (!stopping) fatal(`${role} child (pid ${child.pid}) exited unexpectedly: ${signal ?? `code ${code}`}`)
  })
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${role} child did not start within 15 s`)), 15_000)
    child.on('message', function onReady(m) {
      if (m?.type !== 'ready') return
      clearTimeout(t)
      child.off('message', onReady)
      child.ports = m.ports
      resolve(child)
    })
    child.once('error', reject)
  })
}

let rpcSeq = 0
function rpc(child, type, timeoutMs = 10_000) {
  const id = ++rpcSeq
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      child.off('message', on)
      reject(new Error(`${child.role} child: no answer to ${type}`))
    }, timeoutMs)
    const on = (m) => {
      if (m?.id !== id) return
      clearTimeout(t)
      child.off('message', on)
      if (m.ok) resolve(m)
      else reject(new Error(`${child.role} child: ${m.error}`))
    }
    child.on('message', on)
    child.send({ id, type })
  })
}

/** Ask each child to exit, wait up to 5 s, then SIGKILL whatever is left — always by pid. */
async function stopChildren() {
  stopping = true
  await Promise.all(
    [...children].map(async (c) => {
      if (c.exitCode !== null || c.signalCode !== null) return
      const exited = new Promise((r) => c.once('exit', r))
      try {
        await rpc(c, 'exit', 5000)
      } catch {
        /* killed below */
      }
      const t = setTimeout(() => {
        try {
          process.kill(c.pid, 'SIGKILL')
        } catch {
          /* gone */
        }
      }, 5000)
      await exited
      clearTimeout(t)
    })
  )
}

// ---------------------------------------------------------------------------------------------
// Parent: load generators. Each resolves to { value metrics..., errors, firstError }.

class Samples {
  constructor() {
    this.a = new Float64Array(1 << 16)
    this.n = 0
  }
  push(v) {
    if (this.n === this.a.length) {
      const b = new Float64Array(this.a.length * 2)
      b.set(this.a)
      this.a = b
    }
    this.a[this.n++] = v
  }
  /** Nearest-rank percentiles of the samples (µs). */
  percentiles(ps) {
    const s = this.a.slice(0, this.n).sort()
    return ps.map((p) =>
      this.n === 0 ? null : s[Math.min(this.n - 1, Math.max(0, Math.ceil(p * this.n) - 1))]
    )
  }
}

const CHUNK = Buffer.alloc(MiB, 0x61)

function withTimeout(promise, ms, what) {
  let t
  return Promise.race([
    promise,
    new Promise(
      (_, reject) => (t = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms))
    ),
  ]).finally(() => clearTimeout(t))
}

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

function runRR(port, p, ms) {
  return new Promise((resolve) => {
    const req = Buffer.alloc(p.reqBytes, 0x71)
    const lat = new Samples()
    const conns = []
    let connected = 0
    let count = 0
    let errors = 0
    let firstError
    let open = p.concurrency
    let stopped = 0
    let tMeasure = Infinity
    let tEnd = Infinity

    const send = (c) => {
      c.t0 = now()
      c.s.write(req)
    }
    const stop = (c) => {
      if (c.stopped) return
      c.stopped = true
      c.s.end()
      if (++stopped === p.concurrency) finish()
    }
    const start = () => {
      const t = now()
      tMeasure = t + p.warmupMs
      tEnd = t + ms
      for (const c of conns) if (!c.stopped) send(c)
    }
    let done = false
    const finish = () => {
      if (done) return
      done = true
      clearTimeout(guard)
      const secs = (tEnd - tMeasure) / 1000
      const [p50, p99] = lat.percentiles([0.5, 0.99])
      // Let the sockets close (Baton sees a normal end) before the next run starts.
      const closed = () =>
        open === 0
          ? resolve({ rps: count / secs, p50, p99, requests: count, errors, firstError })
          : setTimeout(closed, 10)
      const giveUp = setTimeout(() => {
        for (const c of conns) c.s.destroy()
      }, 3000)
      giveUp.unref()
      closed()
    }
    const guard = setTimeout(() => {
      errors++
      firstError ??= 'run did not finish in time'
      for (const c of conns) stop(c)
      tEnd = Math.min(tEnd, now())
      finish()
    }, ms + 15_000)

    for (let i = 0; i < p.concurrency; i++) {
      const c = {
        s: net.connect({ host: HOST, port, noDelay: true }),
        got: 0,
        t0: 0,
        connected: false,
        stopped: false,
      }
      conns.push(c)
      c.s.on('connect', () => {
        c.connected = true
        if (++connected === p.concurrency) start()
      })
      c.s.on('data', (chunk) => {
        c.got += chunk.length
        if (c.got < p.respBytes) return
        if (c.got > p.respBytes) {
          errors++
          firstError ??= `response of ${c.got} bytes, expected ${p.respBytes}`
        }
        c.got = 0
        const t = now()
        if (t >= tMeasure && t <= tEnd) {
          count++
          lat.push((t - c.t0) * 1000)
        }
        if (t < tEnd) send(c)
        else stop(c)
      })
      c.s.on('error', (err) => {
        errors++
        firstError ??= err.code ?? err.message
      })
      c.s.on('close', () => {
        open--
        if (c.stopped) return
        errors++
        firstError ??= 'connection closed early'
        stop(c)
        if (!c.connected) {
          c.connected = true // don't wait for it forever
          if (++connected === p.concurrency) start()
        }
      })
    }
  })
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

const cpuSecs = (u) => (u.user + u.system) / 1e6

/** CPU seconds used so far by the client, the backend and the proxy in `mode` (kernel time included). */
async function cpuOf(ctx, mode) {
  const proxy = ctx.proxies[mode]
  const [backend, px] = await Promise.all([rpc(ctx.backend, 'cpu'), proxy ? rpc(proxy, 'cpu') : undefined])
  const out = { client: cpuSecs(process.cpuUsage()), backend: cpuSecs(backend.cpu) }
  if (px) {
    out.proxy = cpuSecs(px.cpu)
    out.proxySys = px.cpu.system / 1e6
  }
  return out
}

const ERROR_COUNTERS = [
  'noBackend',
  'connectErrors',
  'clientErrors',
  'serverErrors',
  'clientTimeouts',
  'serverTimeouts',
  'rejected',
]

/** Wait until a proxy has no live session left, so runs do not overlap. */
async function proxyIdle(proxy, ms = 5000) {
  const until = now() + ms
  for (;;) {
    const c = (await rpc(proxy, 'counters')).counters
    if (c.active === 0) return c
    if (now() > until) return c
    await sleep(20)
  }
}

async function runOnce(ctx, sc, mode, ms) {
  const proxy = ctx.proxies[mode]
  const port = (proxy ?? ctx.backend).ports[sc.listener]
  const before = proxy ? await proxyIdle(proxy) : undefined
  const cpu0 = await cpuOf(ctx, mode)
  const w0 = now()
  const r = await withTimeout(sc.run(port, ctx.p, ms), ms + 30_000, `${sc.key} ${mode}`)
  const wall = (now() - w0) / 1000
  const cpu1 = await cpuOf(ctx, mode)
  const after = proxy ? await proxyIdle(proxy) : undefined
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

function median(xs) {
  const s = xs.filter((x) => x !== null && Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return null
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

function fmtValue(key, v) {
  if (v === null || v === undefined) return '—'
  if (key === 'p50' || key === 'p99') return v >= 1000 ? `${(v / 1000).toFixed(2)} ms` : `${v.toFixed(0)} µs`
  if (v >= 100) return Math.round(v).toLocaleString('en-US')
  return v.toFixed(1)
}

function spread(xs) {
  const s = xs.filter((x) => x !== null && Number.isFinite(x))
  const m = median(s)
  if (s.length < 2 || !m) return ''
  return `±${Math.round(((Math.max(...s) - Math.min(...s)) / 2 / m) * 100)}%`
}

function table(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)))
  return rows
    .map((r) =>
      r
        .map((c, i) => (i < 2 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i])))
        .join('  ')
        .trimEnd()
    )
    .join('\n')
}

function readSysctl(name) {
  try {
    return fs
      .readFileSync(`/proc/sys/${name.replaceAll('.', '/')}`, 'utf8')
      .trim()
      .replace(/\s+/g, ' ')
  } catch {
    return undefined
  }
}

/** What Baton build was measured: dist/ changes under concurrent work, so record its time and hash. */
function distInfo() {
  const dir = path.dirname(DIST_INDEX)
  const hash = createHash('sha256')
  let newest = 0
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((x, y) => (x.name < y.name ? -1 : 1))) {
      const f = path.join(d, e.name)
      if (e.isDirectory()) walk(f)
      else if (e.name.endsWith('.js')) {
        hash.update(f.slice(dir.length)).update(fs.readFileSync(f))
        newest = Math.max(newest, fs.statSync(f).mtimeMs)
      }
    }
  }
  walk(dir)
  return { sha256: hash.digest('hex').slice(0, 16), newestFile: new Date(newest).toISOString() }
}

function gitInfo() {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 5000,
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'lib'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 5000,
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .split('\n')
      .filter(Boolean)
    return { commit, dirtyLibFiles: dirty.length }
  } catch {
    return undefined
  }
}

async function main() {
  let flags, p
  try {
    flags = parseArgs(process.argv.slice(2))
    if (flags.help) {
      console.log(USAGE)
      return 0
    }
    p = resolveParams(flags)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    console.error(`bench/splice: ${err.message}\n${USAGE}`)
    return 2
  }
  if (!fs.existsSync(DIST_INDEX)) {
    console.error(
      `bench/splice: ${path.relative(process.cwd(), DIST_INDEX)} not found; run \`npm run build\` first`
    )
    return 1
  }

  const scs = scenarios(p)
  const modes = p.modes
  const perRun = p.durationMs + 700
  const expectedMs =
    scs.length *
      (p.runs * modes.length * (perRun + p.pauseMs) +
        (p.warmupPassMs ? (modes.length - 1) * (p.warmupPassMs + 700) : 0)) +
    10_000
  const limitMs = Math.round(expectedMs * 1.5 + 60_000)
  setTimeout(
    () => fatal(`watchdog: the benchmark took longer than ${Math.round(limitMs / 1000)} s`),
    limitMs
  ).unref()

  const stamp = new Date().toISOString().replace(/[:.]/g, '-')
  fs.mkdirSync(OUT_DIR, { recursive: true })
  const batonExecArgv = p.prof
    ? ['--cpu-prof', `--cpu-prof-dir=${OUT_DIR}`, `--cpu-prof-name=splice-${stamp}-baton.cpuprofile`]
    : []

  const started = new Date()
  const loadStart = os.loadavg()
  // Before the Baton child imports it: others may rebuild dist/ while the benchmark runs.
  const dist = distInfo()
  const git = gitInfo()
  const backend = await spawnChild('backend', { 'req-bytes': p.reqBytes, 'resp-bytes': p.respBytes }, [])
  const backendsArg = { backends: JSON.stringify(backend.ports) }
  const proxies = { baton: await spawnChild('baton', backendsArg, batonExecArgv) }
  if (modes.includes('reference')) proxies.reference = await spawnChild('reference', backendsArg, [])
  const ctx = { p, backend, proxies }
  const cpuModel = os.cpus()[0]?.model ?? 'unknown'

  console.log(
    `Baton splice benchmark: node ${process.version}, ${cpuModel} × ${os.cpus().length}, ` +
      `${p.runs} run(s) × ${p.durationMs / 1000} s per mode, median; pids: client ${process.pid}, ` +
      `backend ${backend.pid}, ${Object.entries(proxies)
        .map(([m, c]) => `${m} ${c.pid}`)
        .join(', ')}`
  )
  if (p.quick) console.log('QUICK MODE: a smoke test of every path; the numbers below are not measurements.')
  if (loadStart[0] > os.cpus().length / 2)
    console.log(
      `note: the machine is busy (load average ${loadStart[0].toFixed(1)} on ${os.cpus().length} cpus); expect noise.`
    )

  if (p.warmupPassMs > 0) {
    for (const sc of scs)
      for (const mode of Object.keys(proxies)) await runOnce(ctx, sc, mode, p.warmupPassMs)
  }

  const cpuKeys = ['client', 'backend', 'proxy', 'proxySys']
  const results = []
  for (const sc of scs) {
    const runs = []
    for (let i = 0; i < p.runs; i++) {
      // Rotate the order every run (D B, B D, ... or D B R, B R D, R D B, ...) so drift hits all modes.
      const order =
        modes.length === 2
          ? i % 2 === 0
            ? modes
            : [...modes].reverse()
          : [...modes.slice(i % modes.length), ...modes.slice(0, i % modes.length)]
      for (const mode of order) {
        if (p.pauseMs) await sleep(p.pauseMs)
        const r = await runOnce(ctx, sc, mode, p.durationMs)
        runs.push({ run: i + 1, mode, ...r })
        if (r.errors > 0)
          console.error(`  ${sc.key} ${mode} run ${i + 1}: ${r.errors} error(s), first: ${r.firstError}`)
      }
    }
    const med = Object.fromEntries(modes.map((m) => [m, {}]))
    const ratio = {}
    const refRatio = {}
    for (const [key] of [...sc.metrics, ...cpuKeys.map((k) => [`cpu:${k}`])]) {
      for (const mode of modes) {
        const xs = runs
          .filter((r) => r.mode === mode)
          .map((r) => (key.startsWith('cpu:') ? (r.cpuPct[key.slice(4)] ?? null) : r[key]))
        med[mode][key] = median(xs)
        med[mode][`${key}Spread`] = spread(xs)
      }
      if (key.startsWith('cpu:')) continue
      if (med.direct[key] && med.baton[key] !== null) ratio[key] = med.baton[key] / med.direct[key]
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
    if (modes.includes('reference')) entry.ratioToReference = refRatio
    results.push(entry)
  }
  const finished = new Date()

  // ---- report
  const withRef = modes.includes('reference')
  const head = ['scenario', 'metric', ...modes.map((m) => (m === 'reference' ? 'node proxy' : m))]
  if (!p.quick) head.push('baton/direct')
  if (!p.quick && withRef) head.push('baton/node proxy')
  const rows = [head]
  const arrow = (better) => (better === 'higher' ? ' ↑' : ' ↓')
  for (const r of results) {
    r.metrics.forEach(([key, label, better], i) => {
      const row = [i === 0 ? r.title : '', label]
      for (const m of modes)
        row.push(`${fmtValue(key, r.median[m][key])} ${p.runs > 1 ? r.median[m][`${key}Spread`] : ''}`.trim())
      if (!p.quick) row.push(r.ratio[key] === undefined ? '—' : `${r.ratio[key].toFixed(2)}${arrow(better)}`)
      if (!p.quick && withRef)
        row.push(
          r.ratioToReference[key] === undefined
            ? '—'
            : `${r.ratioToReference[key].toFixed(2)}${arrow(better)}`
        )
      rows.push(row)
    })
  }
  console.log()
  console.log(table(rows))
  console.log()
  const pct = (v) => (v === null || v === undefined ? '—' : `${Math.round(v)}%`)
  console.log('CPU, median % of one core: client / backend [/ proxy (of which kernel)]')
  for (const r of results) {
    const cols = modes.map((m) => {
      const x = r.median[m]
      return `${m} ${pct(x['cpu:client'])} / ${pct(x['cpu:backend'])}${m === 'direct' ? '' : ` / ${pct(x['cpu:proxy'])} (${pct(x['cpu:proxySys'])})`}`
    })
    console.log(`  ${r.key.padEnd(9)}  ${cols.join('    ')}`)
  }
  if (!p.quick)
    console.log(
      '±: half the min–max range of the runs, as % of the median.  ↑ higher is better, ↓ lower is better.'
    )

  const problems = results.flatMap((r) =>
    r.runs.filter((x) => x.errors > 0).map((x) => `${r.key} ${x.mode} run ${x.run}: ${x.firstError}`)
  )
  for (const r of results) {
    for (const [key] of r.metrics.slice(0, 1)) {
      for (const x of r.runs)
        if (!(x[key] > 0)) problems.push(`${r.key} ${x.mode} run ${x.run}: ${key} is ${x[key]}`)
    }
  }

  const report = {
    benchmark: 'splice',
    schema: 1,
    date: started.toISOString(),
    finished: finished.toISOString(),
    quick: p.quick,
    timingValid: !p.quick,
    node: process.version,
    v8: process.versions.v8,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpuModel,
    cpus: os.cpus().length,
    totalMemMiB: Math.round(os.totalmem() / MiB),
    loadavg: { start: loadStart, end: os.loadavg() },
    sysctl: Object.fromEntries(
      ['net.ipv4.tcp_tw_reuse', 'net.ipv4.ip_local_port_range', 'net.core.somaxconn'].map((n) => [
        n,
        readSysctl(n),
      ])
    ),
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
      })),
      log: { level: 'silent' },
    },
    results: results.map(({ metrics, ...r }) => ({
      ...r,
      metrics: metrics.map(([key, label, better]) => ({ key, label, better })),
    })),
    problems,
    ok: problems.length === 0,
  }

  await stopChildren()
  if (p.prof) report.cpuProfile = path.join(OUT_DIR, `splice-${stamp}-baton.cpuprofile`)
  const file = path.join(OUT_DIR, `splice-${stamp}${p.quick ? '-quick' : ''}.json`)
  fs.writeFileSync(file, JSON.stringify(report, null, 2) + '\n')
  console.log(
    `\nJSON: ${path.relative(process.cwd(), file)}${p.prof ? `\nCPU profile (Baton): ${path.relative(process.cwd(), report.cpuProfile)}` : ''}`
  )
  if (problems.length > 0) {
    console.error(`\n${problems.length} problem(s):\n  ${problems.join('\n  ')}`)
    return 1
  }
  return 0
}

// ---------------------------------------------------------------------------------------------
// Entry: the same file is the parent and every child.

const roleArg = process.argv.find((a) => a.startsWith('--role='))
if (roleArg !== undefined) {
  const args = {}
  for (const a of process.argv.slice(2)) {
    const m = /^--([^=]+)=(.*)$/s.exec(a)
    if (m) args[m[1]] = m[2]
  }
  if (args.role === 'backend') await backendMain(args)
  else if (args.role === 'baton') await batonMain(args)
  else if (args.role === 'reference') await referenceMain(args)
  else throw new Error(`unknown role ${args.role}`)
} else {
  process.on('exit', killAll)
  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ]) {
    process.on(sig, () => {
      console.error(`bench/splice: ${sig}, stopping children`)
      stopping = true
      killAll()
      process.exit(code)
    })
  }
  process.on('uncaughtException', (err) => fatal(err?.stack ?? String(err)))
  process.on('unhandledRejection', (err) => fatal(err?.stack ?? String(err)))
  const code = await main()
  killAll()
  process.exit(code)
}
