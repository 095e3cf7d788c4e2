#!/usr/bin/env node
// Framer cost: request rate and p99 latency through Baton with `http1` and `resp` against `opaque`
// with `replay: none` (the plain splice), same run, same backends, alternating, median of runs.
//
//   node bench/framers.mjs [--runs 3] [--duration 3] [--quick]
//
// Needs nginx, wrk, redis-server and redis-benchmark (bench/setup.sh or .ci/run install them).
// Baton runs as its own process (dist/cli.js); every process is stopped by pid at the end.
import { spawn, execFileSync } from 'node:child_process'
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

const args = process.argv.slice(2)
const flag = (name, def) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : def
}
const quick = args.includes('--quick')
const RUNS = quick ? 1 : Number(flag('runs', 3))
const DURATION = quick ? 1 : Number(flag('duration', 3))
const children = new Set()
const dir = mkdtempSync(path.join(os.tmpdir(), 'baton-framers-'))

function start(cmd, argv, opts = {}) {
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], ...opts })
  children.add(child)
  child.on('exit', () => children.delete(child))
  return child
}
function stopAll() {
  for (const c of children) {
    try {
      c.kill('SIGKILL')
    } catch {}
  }
}
process.on('exit', stopAll)
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130))

async function freePort() {
  const srv = net.createServer().listen(0, '127.0.0.1')
  await new Promise((r) => srv.once('listening', r))
  const { port } = srv.address()
  await new Promise((r) => srv.close(r))
  return port
}
async function waitPort(port, ms = 5000) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    const ok = await new Promise((r) => {
      const s = net.connect(port, '127.0.0.1')
      s.once('connect', () => (s.destroy(), r(true)))
      s.once('error', () => r(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 20))
  }
  throw new Error(`port ${port} did not open`)
}

async function nginx() {
  const port = await freePort()
  const root = path.join(dir, 'www')
  mkdirSync(root, { recursive: true })
  writeFileSync(path.join(root, 'k1.bin'), Buffer.alloc(1024, 97))
  const conf = path.join(dir, `nginx-${port}.conf`)
  writeFileSync(
    conf,
    `worker_processes 1; error_log stderr; pid ${dir}/nginx-${port}.pid; events {}\n` +
      `http { access_log off; server { listen 127.0.0.1:${port}; root ${root}; keepalive_requests 1000000; } }\n`
  )
  start('nginx', ['-c', conf, '-p', dir, '-g', 'daemon off; master_process off;'])
  await waitPort(port)
  return port
}
async function redis() {
  const port = await freePort()
  start('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'])
  await waitPort(port)
  return port
}
async function baton(protocol, replay, backends) {
  const port = await freePort()
  const argv = ['dist/cli.js', '--listen', `127.0.0.1:${port}`, '--protocol', protocol, '--replay', replay, '--log-level', 'warn']
  for (const b of backends) argv.push('--backend', `127.0.0.1:${b}`)
  const child = start(process.execPath, argv)
  await waitPort(port)
  return { port, child }
}
function stop(child) {
  child.kill('SIGKILL')
  children.delete(child)
}

function wrk(port) {
  const out = execFileSync('wrk', ['-t2', '-c50', `-d${DURATION}s`, '--latency', `http://127.0.0.1:${port}/k1.bin`], {
    encoding: 'utf8',
  })
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)[1])
  const p99 = /99%\s+([\d.]+)(us|ms|s)/.exec(out)
  const ms = Number(p99[1]) * (p99[2] === 'us' ? 0.001 : p99[2] === 's' ? 1000 : 1)
  const errors = /Socket errors|Non-2xx/.test(out)
  return { rps, p99ms: ms, errors }
}
function redisBench(port) {
  const n = quick ? 20000 : 200000
  const out = execFileSync('redis-benchmark', ['-h', '127.0.0.1', '-p', String(port), '-t', 'get', '-n', String(n), '-c', '50', '-P', '16', '-q', '--precision', '3'], {
    encoding: 'utf8',
  })
  const m = /GET: ([\d.]+) requests per second(?:, p50=([\d.]+) msec)?/.exec(out.replace(/\r/g, '\n'))
  return { rps: Number(m[1]), p99ms: NaN, errors: false }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

async function scenario(name, backends, protocol, load) {
  const rows = { [protocol]: [], 'opaque, replay none': [] }
  for (let r = 0; r < RUNS; r++) {
    for (const [label, proto, replay] of [
      [protocol, protocol, 'safe'],
      ['opaque, replay none', 'opaque', 'none'],
    ]) {
      const b = await baton(proto, replay, backends)
      rows[label].push(load(b.port))
      stop(b.child)
    }
  }
  const summary = {}
  for (const [label, runs] of Object.entries(rows)) {
    summary[label] = { rps: median(runs.map((x) => x.rps)), p99ms: median(runs.map((x) => x.p99ms)), errors: runs.some((x) => x.errors) }
  }
  const f = summary[protocol]
  const o = summary['opaque, replay none']
  console.log(`${name}`)
  for (const [label, s] of Object.entries(summary)) {
    console.log(`  ${label.padEnd(22)} ${s.rps.toFixed(0).padStart(9)} req/s   p99 ${Number.isNaN(s.p99ms) ? '   n/a' : s.p99ms.toFixed(2) + ' ms'}${s.errors ? '   ERRORS' : ''}`)
  }
  console.log(`  ${protocol}/opaque-none rate ratio ${(f.rps / o.rps).toFixed(3)}${quick ? ' (quick: not a measurement)' : ''}`)
  return { name, summary, ratio: f.rps / o.rps }
}

const results = []
console.log(`Framer cost: node ${process.version}, ${os.cpus()[0]?.model} × ${os.cpus().length}, ${RUNS} run(s) × ${DURATION} s, median`)
const ng = [await nginx(), await nginx(), await nginx()]
results.push(await scenario('HTTP: wrk -t2 -c50, 1 KiB from 3 nginx', ng, 'http1', wrk))
const rd = [await redis(), await redis(), await redis()]
results.push(await scenario('Redis: redis-benchmark GET -c50 -P16 over 3 redis-server', rd, 'resp', redisBench))
mkdirSync('bench/out', { recursive: true })
const file = `bench/out/framers-${new Date().toISOString().replace(/[:.]/g, '-')}${quick ? '-quick' : ''}.json`
writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), node: process.version, cpu: os.cpus()[0]?.model, runs: RUNS, duration: DURATION, results }, null, 2))
console.log(`JSON: ${file}`)
stopAll()
process.exit(0)
