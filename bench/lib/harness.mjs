/**
 * bench/lib/harness.mjs — pieces shared by the multi-process benchmarks (splice.mjs, failover.mjs,
 * compare.mjs, profile.mjs):
 *
 * - flags: `--name value` / `--name=value`, durations like 5s / 500ms / 1m
 * - children: the benchmark file forks itself with `--role=<name>`; each child answers
 *   { id, type } RPC messages and exits when the IPC channel closes, so none can outlive the parent.
 *   The parent stops every child by pid: politely at the end, SIGKILL on error, SIGINT, SIGTERM.
 * - runs: the order of the modes in each run (rotated, so drift hits every mode alike), medians and
 *   spreads per mode, ratios of two modes per run (same run, adjacent in time) and their median.
 * - load: a closed loop of requests and responses on N connections, with latency percentiles.
 * - statistics (median, nearest-rank percentiles, spread), a plain text table, machine and build info.
 * - other programs (peers such as nginx or HAProxy, load tools, Baton's CLI): free ports, waiting
 *   for a port (by connecting, or from /proc/net without connecting), a processManager that starts
 *   them with a log file each and stops them — and their descendants — by pid, RSS from /proc.
 *
 * Only 127.0.0.1 is ever used.
 */
import { fork, execFileSync, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'

export const HOST = '127.0.0.1'
export const MiB = 1024 * 1024
export const now = () => performance.now()
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
export const noop = () => {}

// ---------------------------------------------------------------------------------------------
// Flags

export class UsageError extends Error {}

export function parseArgs(argv, valueFlags, booleanFlags) {
  const flags = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--')) throw new UsageError(`unexpected argument ${a}`)
    const eq = a.indexOf('=')
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2)
    if (!valueFlags.includes(name) && !booleanFlags.includes(name))
      throw new UsageError(`unknown flag --${name}`)
    if (eq > 0) flags[name] = a.slice(eq + 1)
    else if (booleanFlags.includes(name)) flags[name] = true
    else if (i + 1 < argv.length) flags[name] = argv[++i]
    else throw new UsageError(`${a} needs a value`)
  }
  return flags
}

/** "5s", "500ms", "1m" or a plain number of seconds → milliseconds. */
export function parseDuration(v, name = 'duration') {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(String(v).trim())
  if (m === null) throw new UsageError(`--${name}: bad duration ${v} (expected e.g. 5s, 500ms, 1m)`)
  const n = Number(m[1])
  const ms = m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000
  if (ms < 50) throw new UsageError(`--${name}: at least 50ms`)
  return Math.round(ms)
}

export function parseIntFlag(v, name, min, max) {
  const n = Number(v)
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UsageError(`--${name} expects an integer from ${min} to ${max}`)
  return n
}

/** Child side: `--role=x --k=v ...` → { role: 'x', k: 'v' }, or undefined in the parent. */
export function roleArgs(argv = process.argv.slice(2)) {
  if (!argv.some((a) => a.startsWith('--role='))) return undefined
  const args = {}
  for (const a of argv) {
    const m = /^--([^=]+)=(.*)$/s.exec(a)
    if (m) args[m[1]] = m[2]
  }
  return args
}

// ---------------------------------------------------------------------------------------------
// Child side

/** Answer { id, type } messages with { id, ok, ... }; exit when the parent goes away. */
export function serveRpc(handlers) {
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

export const cpuHandler = () => ({ cpu: process.cpuUsage(), rss: process.memoryUsage().rss })
export const cpuSecs = (u) => (u.user + u.system) / 1e6

// ---------------------------------------------------------------------------------------------
// Parent side: children

/**
 * Children of one benchmark file. `tag` prefixes messages ("bench/failover: ...").
 * `spawn(role, args, execArgv)` resolves once the child sent { type: 'ready', ...info }.
 */
export function childManager(self, tag) {
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
    console.error(`${tag}: ${msg}`)
    stopping = true
    killAll()
    process.exit(1)
  }

  function spawn(role, args = {}, execArgv = []) {
    const argv = [`--role=${role}`, ...Object.entries(args).map(([k, v]) => `--${k}=${v}`)]
    const child = fork(self, argv, { execArgv, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
    child.role = role
    child.command = [process.execPath, ...execArgv, self, ...argv].join(' ')
    children.add(child)
    child.on('exit', (code, signal) => {
      if (!stopping)
        fatal(`${role} child (pid ${child.pid}) exited unexpectedly: ${signal ?? `code ${code}`}`)
    })
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${role} child did not start within 15 s`)), 15_000)
      child.on('message', function onReady(m) {
        if (m?.type !== 'ready') return
        clearTimeout(t)
        child.off('message', onReady)
        child.info = m
        resolve(child)
      })
      child.once('error', reject)
    })
  }

  let seq = 0
  function rpc(child, type, extra = {}, timeoutMs = 10_000) {
    const id = ++seq
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
      child.send({ ...extra, id, type })
    })
  }

  /** Ask each child to exit, wait up to 5 s, then SIGKILL what is left — always by pid. */
  async function stopAll() {
    stopping = true
    await Promise.all(
      [...children].map(async (c) => {
        if (c.exitCode !== null || c.signalCode !== null) return
        const exited = new Promise((r) => c.once('exit', r))
        try {
          await rpc(c, 'exit', {}, 5000)
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

  /** Kill the children on exit, SIGINT, SIGTERM, SIGHUP, and on any uncaught error. */
  function installHandlers() {
    process.on('exit', killAll)
    for (const [sig, code] of [
      ['SIGINT', 130],
      ['SIGTERM', 143],
      ['SIGHUP', 129],
    ]) {
      process.on(sig, () => {
        console.error(`${tag}: ${sig}, stopping children`)
        stopping = true
        killAll()
        process.exit(code)
      })
    }
    process.on('uncaughtException', (err) => fatal(err?.stack ?? String(err)))
    process.on('unhandledRejection', (err) => fatal(err?.stack ?? String(err)))
  }

  return { spawn, rpc, stopAll, killAll, fatal, installHandlers, children }
}

/**
 * The entry of a benchmark file that is both the parent and its children: in a child (`--role=x`)
 * run `roles[x](args)`; in the parent, `main(cm)` with a childManager whose handlers are installed,
 * then exit with its code, every child killed.
 */
export async function benchmarkEntry(self, tag, main, roles) {
  const args = roleArgs()
  if (args !== undefined) {
    const role = roles[args.role]
    if (role === undefined) throw new Error(`unknown role ${args.role}`)
    return role(args)
  }
  const cm = childManager(self, tag)
  cm.installHandlers()
  const code = await main(cm)
  cm.killAll()
  process.exit(code)
}

/**
 * Write a benchmark's JSON report to `file` and say where; print the problems, if any. Returns the
 * exit status: 0 without problems, 1 with.
 */
export function writeReport(file, report, problems = report.problems) {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, JSON.stringify(report, null, 2) + '\n')
  console.log(`\nJSON: ${path.relative(process.cwd(), file)}`)
  if (problems.length === 0) return 0
  console.error(`\n${problems.length} problem(s):\n  ${problems.join('\n  ')}`)
  return 1
}

export function withTimeout(promise, ms, what) {
  let t
  return Promise.race([
    promise,
    new Promise(
      (_, reject) => (t = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms))
    ),
  ]).finally(() => clearTimeout(t))
}

/** A timer that ends the whole benchmark through `fatal` when it runs longer than `ms`. */
export function watchdog(ms, fatal) {
  setTimeout(() => fatal(`watchdog: the benchmark took longer than ${Math.round(ms / 1000)} s`), ms).unref()
}

/**
 * Wait until a proxy child has no live session (its `counters` RPC answers { counters: { active } }),
 * so runs do not overlap; resolves to that answer (also after `ms`, active or not).
 */
export async function untilIdle(cm, child, ms = 5000) {
  const until = now() + ms
  for (;;) {
    const answer = await cm.rpc(child, 'counters')
    if (answer.counters.active === 0 || now() > until) return answer
    await sleep(20)
  }
}

// ---------------------------------------------------------------------------------------------
// Runs: several modes measured in turn, in the same invocation

/**
 * The order of `modes` in run `i` (from 0): rotated by one every run (A B C, B C A, C A B, …; two
 * modes alternate A B, B A), so that the machine's drift over time hits every mode alike.
 */
export function runOrder(modes, i) {
  const k = i % modes.length
  return [...modes.slice(k), ...modes.slice(0, k)]
}

/**
 * `runs` ([{ run, mode, …figures }]): the ratio of `key` between modes `a` and `b` in each run (same
 * run, adjacent in time, so the machine's drift mostly cancels) and the median of those ratios.
 */
export function pairedRatios(runs, a, b, key = (r) => r.value) {
  const get = typeof key === 'function' ? key : (r) => r[key]
  const perRun = []
  for (const x of runs) {
    if (x.mode !== a) continue
    const y = runs.find((r) => r.run === x.run && r.mode === b)
    const va = get(x)
    const vb = y === undefined ? null : get(y)
    if (Number.isFinite(va) && Number.isFinite(vb) && vb !== 0) perRun.push(va / vb)
  }
  return { perRun, median: median(perRun) }
}

/** A line for a machine busier than half its cores, or undefined. */
export function busyNote(load = os.loadavg()[0], cpus = os.cpus().length) {
  return load > cpus / 2
    ? `note: the machine is busy (load average ${load.toFixed(1)} on ${cpus} cpus); expect noise.`
    : undefined
}

// ---------------------------------------------------------------------------------------------
// Load

/**
 * A closed loop on `concurrency` connections to HOST:port: each sends a request, waits for the whole
 * response, sends the next, from the moment all have connected until `ms` later; then each ends its
 * connection (the proxy sees a normal end) and the run resolves once all have closed.
 *
 *   init(c, i)            optional: per-connection fields on c
 *   request(c)            the bytes of c's next request
 *   onData(c, chunk, fail) true once c's response is whole; fail(message) counts an error
 *
 * The first `warmupMs` are not counted. Resolves { rps, p50, p99 (µs), requests (counted), total
 * (every response), errors, firstError }; a run that has not finished `ms` + 15 s later is cut
 * short and counted as an error.
 */
export function closedLoop(port, { concurrency, ms, warmupMs = 0 }, { init, request, onData }) {
  return new Promise((resolve) => {
    const lat = new Samples()
    const conns = []
    let connected = 0
    let count = 0
    let total = 0
    let errors = 0
    let firstError
    let open = concurrency
    let stopped = 0
    let tMeasure = Infinity
    let tEnd = Infinity
    const fail = (msg) => {
      errors++
      firstError ??= msg
    }

    const send = (c) => {
      const req = request(c)
      c.t0 = now()
      c.s.write(req)
    }
    const stop = (c) => {
      if (c.stopped) return
      c.stopped = true
      c.s.end()
      if (++stopped === concurrency) finish()
    }
    const start = () => {
      const t = now()
      tMeasure = t + warmupMs
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
      const closed = () =>
        open === 0
          ? resolve({ rps: count / secs, p50, p99, requests: count, total, errors, firstError })
          : setTimeout(closed, 10)
      setTimeout(() => {
        for (const c of conns) c.s.destroy()
      }, 3000).unref()
      closed()
    }
    const guard = setTimeout(() => {
      fail('run did not finish in time')
      for (const c of conns) stop(c)
      tEnd = Math.min(tEnd, now())
      finish()
    }, ms + 15_000)

    for (let i = 0; i < concurrency; i++) {
      const c = {
        s: net.connect({ host: HOST, port, noDelay: true }),
        t0: 0,
        connected: false,
        stopped: false,
      }
      init?.(c, i)
      conns.push(c)
      c.s.on('connect', () => {
        c.connected = true
        if (++connected === concurrency) start()
      })
      c.s.on('data', (chunk) => {
        if (!onData(c, chunk, fail)) return
        const t = now()
        total++
        if (t >= tMeasure && t <= tEnd) {
          count++
          lat.push((t - c.t0) * 1000)
        }
        if (t < tEnd) send(c)
        else stop(c)
      })
      c.s.on('error', (err) => fail(err.code ?? err.message))
      c.s.on('close', () => {
        open--
        if (c.stopped) return
        fail('connection closed early')
        stop(c)
        if (!c.connected) {
          c.connected = true // don't wait for it forever
          if (++connected === concurrency) start()
        }
      })
    }
  })
}

// ---------------------------------------------------------------------------------------------
// Statistics and output

/** A growable array of numbers with nearest-rank percentiles. */
export class Samples {
  constructor() {
    this.a = new Float64Array(1 << 12)
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
  values() {
    return Array.from(this.a.subarray(0, this.n))
  }
  /** Nearest-rank percentiles, p in 0..1. */
  percentiles(ps) {
    return percentiles(this.a.slice(0, this.n), ps)
  }
}

/** Nearest-rank percentiles of `xs` (p in 0..1); null for an empty set. */
export function percentiles(xs, ps) {
  const s = Float64Array.from(xs).sort()
  const n = s.length
  return ps.map((p) => (n === 0 ? null : s[Math.min(n - 1, Math.max(0, Math.ceil(p * n) - 1))]))
}

export function median(xs) {
  const s = xs.filter((x) => x !== null && x !== undefined && Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return null
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** Half the min–max range as % of the median ("±7%"), or '' for fewer than two values. */
export function spread(xs) {
  const s = xs.filter((x) => x !== null && x !== undefined && Number.isFinite(x))
  const m = median(s)
  if (s.length < 2 || !m) return ''
  return `±${Math.round(((Math.max(...s) - Math.min(...s)) / 2 / m) * 100)}%`
}

/** Microseconds as "83 µs" or "1.24 ms". */
export function fmtUs(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—'
  return Math.abs(v) >= 1000 ? `${(v / 1000).toFixed(2)} ms` : `${v.toFixed(0)} µs`
}

export function fmtNum(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—'
  if (Math.abs(v) >= 100) return Math.round(v).toLocaleString('en-US')
  return v.toFixed(1)
}

/** Rows of cells → text; the first `left` columns are left-aligned, the rest right-aligned. */
export function table(rows, left = 2) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i] ?? '').length)))
  return rows
    .map((r) =>
      r
        .map((c, i) => (i < left ? String(c ?? '').padEnd(widths[i]) : String(c ?? '').padStart(widths[i])))
        .join('  ')
        .trimEnd()
    )
    .join('\n')
}

export function readSysctl(name) {
  try {
    return fs
      .readFileSync(`/proc/sys/${name.replaceAll('.', '/')}`, 'utf8')
      .trim()
      .replace(/\s+/g, ' ')
  } catch {
    return undefined
  }
}

export function machineInfo() {
  return {
    node: process.version,
    v8: process.versions.v8,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    cpus: os.cpus().length,
    totalMemMiB: Math.round(os.totalmem() / MiB),
    sysctl: Object.fromEntries(
      ['net.ipv4.tcp_tw_reuse', 'net.ipv4.ip_local_port_range', 'net.core.somaxconn'].map((n) => [
        n,
        readSysctl(n),
      ])
    ),
  }
}

/** What Baton build was measured: dist/ changes under concurrent work, so record its time and hash. */
export function distInfo(dir) {
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
  return { dir, sha256: hash.digest('hex').slice(0, 16), newestFile: new Date(newest).toISOString() }
}

export function gitInfo(root) {
  const git = (args) =>
    execFileSync('git', args, {
      cwd: root,
      encoding: 'utf8',
      timeout: 5000,
      stdio: ['ignore', 'pipe', 'ignore'],
    })
  try {
    const commit = git(['rev-parse', 'HEAD']).trim()
    const dirty = git(['status', '--porcelain', '--', 'lib']).split('\n').filter(Boolean)
    return { commit, dirtyLibFiles: dirty.length }
  } catch {
    return undefined
  }
}

export function timestamp(d = new Date()) {
  return d.toISOString().replace(/[:.]/g, '-')
}

// ---------------------------------------------------------------------------------------------
// Ports and processes outside Node (peers such as nginx or HAProxy, load tools, Baton's CLI)

/** A free TCP port on 127.0.0.1: bound to port 0 and released (fine on a machine of our own). */
export async function freePort() {
  const srv = net.createServer()
  await new Promise((resolve, reject) => {
    srv.once('error', reject)
    srv.listen(0, HOST, resolve)
  })
  const { port } = srv.address()
  await new Promise((r) => srv.close(r))
  return port
}

/** Can something be connected to on HOST:port right now? */
export function probePort(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, HOST)
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
}

/**
 * Resolve once HOST:port accepts; reject after `ms`, or at once when `child` (a tracked process,
 * optional) exits first — with the end of its log in the message.
 */
export async function waitPort(port, ms = 10_000, child) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (child !== undefined && (child.exitCode !== null || child.signalCode !== null))
      throw new Error(
        `${child.name} exited (${child.signalCode ?? child.exitCode}) before port ${port} opened${logTail(child)}`
      )
    if (await probePort(port)) return
    await sleep(25)
  }
  throw new Error(`port ${port} did not open within ${ms} ms${child ? logTail(child) : ''}`)
}

/**
 * Is a socket listening on local TCP `port` (IPv4 or IPv6)? Read from /proc/net, without connecting.
 * The kernel lists listening sockets first, so reading stops at the first other one: a table with
 * tens of thousands of TIME_WAIT entries costs nothing.
 */
export function isListening(port) {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`
  const buf = Buffer.allocUnsafe(64 * 1024)
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let fd
    try {
      fd = fs.openSync(f, 'r')
    } catch {
      continue
    }
    try {
      let rest = ''
      let header = true
      scan: for (;;) {
        const n = fs.readSync(fd, buf, 0, buf.length, null)
        if (n === 0) break
        const lines = (rest + buf.toString('latin1', 0, n)).split('\n')
        rest = lines.pop()
        for (const line of lines) {
          if (header) {
            header = false
            continue
          }
          // "sl local_address rem_address st …": state 0A is LISTEN.
          const cols = line.trim().split(/\s+/)
          if (cols[3] !== '0A') break scan
          if (cols[1].endsWith(hex)) return true
        }
      }
    } finally {
      fs.closeSync(fd)
    }
  }
  return false
}

/**
 * Like waitPort, but without connecting: for servers where a probe connection is not free (iperf3
 * takes it for a test; through a balancer it reaches a backend).
 */
export async function waitListening(port, ms = 10_000, child) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (child !== undefined && (child.exitCode !== null || child.signalCode !== null))
      throw new Error(
        `${child.name} exited (${child.signalCode ?? child.exitCode}) before port ${port} opened${logTail(child)}`
      )
    if (isListening(port)) return
    await sleep(25)
  }
  throw new Error(`port ${port} did not open within ${ms} ms${child ? logTail(child) : ''}`)
}

/** Pids of every descendant of `pid` (children, their children…), from /proc. */
export function descendants(pid) {
  const parentOf = new Map()
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8')
      // "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      parentOf.set(Number(name), ppid)
    } catch {
      /* gone meanwhile */
    }
  }
  const out = []
  const todo = [pid]
  while (todo.length) {
    const p = todo.pop()
    for (const [c, pp] of parentOf) if (pp === p) (out.push(c), todo.push(c))
  }
  return out
}

/** VmRSS of a pid in KiB (from /proc/PID/status), or 0 when it is gone. */
export function vmRssKiB(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : 0
  } catch {
    return 0
  }
}

function logTail(child, chars = 600) {
  if (!child?.logFile) return ''
  try {
    const t = fs.readFileSync(child.logFile, 'utf8').trim()
    return t ? `; its log (${child.logFile}) ends:\n${t.slice(-chars)}` : ''
  } catch {
    return ''
  }
}

/**
 * Processes of other programs, each started with its output in a log file of `logDir`, tracked, and
 * stopped by pid — its descendants by pid too (a master and its workers) — at the end, also on
 * error, SIGINT and SIGTERM (`installHandlers`; childManager's handlers trigger the same 'exit' hook).
 */
export function processManager(tag, logDir) {
  const procs = new Set()
  /** Every command line started or run, in order, for the report. */
  const commands = []
  let seq = 0

  const alive = (c) => c.exitCode === null && c.signalCode === null
  const signal = (pid, sig) => {
    try {
      process.kill(pid, sig)
    } catch {
      /* already gone */
    }
  }

  /** Start a long-running process; `name` labels its log file and messages. */
  function start(name, cmd, argv, { env, cwd } = {}) {
    const logFile = path.join(
      logDir,
      `${String(++seq).padStart(3, '0')}-${name.replace(/[^\w.-]+/g, '_')}.log`
    )
    const fd = fs.openSync(logFile, 'a')
    const child = spawn(cmd, argv, {
      stdio: ['ignore', fd, fd],
      env: env ? { ...process.env, ...env } : process.env,
      cwd,
    })
    fs.closeSync(fd)
    child.name = name
    child.logFile = logFile
    child.command = [cmd, ...argv].map(shellQuote).join(' ')
    commands.push(child.command)
    procs.add(child)
    child.exited = new Promise((r) => child.once('exit', r))
    child.once('error', (err) => {
      fs.appendFileSync(logFile, `\n${tag}: cannot start ${cmd}: ${err.message}\n`)
    })
    child.exited.then(() => procs.delete(child))
    return child
  }

  /**
   * Stop one process by pid: SIGTERM (or `sig`) to it and to the descendants it has now, SIGKILL to
   * whatever is left after `graceMs`.
   */
  async function stop(child, { sig = 'SIGTERM', graceMs = 3000 } = {}) {
    if (child === undefined || !alive(child)) return
    const tree = descendants(child.pid)
    signal(child.pid, sig)
    for (const p of tree) signal(p, sig)
    const t = setTimeout(() => {
      signal(child.pid, 'SIGKILL')
      for (const p of tree) signal(p, 'SIGKILL')
    }, graceMs)
    await child.exited
    clearTimeout(t)
    for (const p of tree) signal(p, 'SIGKILL')
  }

  /**
   * Run a command to completion (a load tool): resolves { code, signal, stdout, stderr, ms, timedOut }
   * and never rejects; SIGKILLed by pid, with its descendants, after `timeoutMs`.
   */
  function run(cmd, argv, { timeoutMs = 60_000, env, cwd } = {}) {
    const t0 = now()
    const child = spawn(cmd, argv, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: env ? { ...process.env, ...env } : process.env,
      cwd,
    })
    child.name = path.basename(cmd)
    child.command = [cmd, ...argv].map(shellQuote).join(' ')
    commands.push(child.command)
    procs.add(child)
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d))
    let timedOut = false
    const t = setTimeout(() => {
      timedOut = true
      const tree = descendants(child.pid)
      signal(child.pid, 'SIGKILL')
      for (const p of tree) signal(p, 'SIGKILL')
    }, timeoutMs)
    return new Promise((resolve) => {
      const done = (code, sig, err) => {
        clearTimeout(t)
        procs.delete(child)
        resolve({
          code,
          signal: sig,
          stdout,
          stderr: err ? `${stderr}${err.message}` : stderr,
          ms: now() - t0,
          timedOut,
          command: child.command,
        })
      }
      child.once('error', (err) => done(null, null, err))
      child.once('close', (code, sig) => done(code, sig))
    })
  }

  /** Synchronous last resort: SIGKILL every tracked process and its descendants, by pid. */
  function killAll() {
    for (const c of procs) {
      if (!alive(c)) continue
      const tree = descendants(c.pid)
      signal(c.pid, 'SIGKILL')
      for (const p of tree) signal(p, 'SIGKILL')
    }
  }

  async function stopAll() {
    await Promise.all([...procs].map((c) => stop(c)))
  }

  /** On exit always; with `signals`, also turn SIGINT/SIGTERM/SIGHUP into an exit. */
  function installHandlers({ signals = true } = {}) {
    process.on('exit', killAll)
    if (!signals) return
    for (const [sig, code] of [
      ['SIGINT', 130],
      ['SIGTERM', 143],
      ['SIGHUP', 129],
    ])
      process.on(sig, () => {
        console.error(`${tag}: ${sig}, stopping every process started`)
        process.exit(code)
      })
  }

  return { start, stop, run, killAll, stopAll, installHandlers, procs, commands }
}

/** Quote one argument for a shell-pasteable command line. */
export function shellQuote(a) {
  const s = String(a)
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`
}
