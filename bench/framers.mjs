#!/usr/bin/env node
// Framer cost: request rate and p99 latency through Baton with `http1` and `resp` against `opaque`
// with `replay: none` (the plain splice), same run, same backends, alternating, median of runs.
//
//   node bench/framers.mjs [--runs 3] [--duration 3] [--quick]
//
// Needs nginx, wrk, redis-server and redis-benchmark (bench/setup.sh or .ci/run install them).
// Baton runs as its own process (dist/cli.js); every process is stopped by pid at the end.
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { freePort, HOST, median, parseArgs, processManager, timestamp, waitPort } from './lib/harness.mjs'
import {
  findBins,
  parseRedisBenchmark,
  parseWrk,
  redisBenchmarkArgs,
  startNginxHttp,
  startRedis,
  wrkArgs,
} from './lib/peers.mjs'

const flags = parseArgs(process.argv.slice(2), ['runs', 'duration'], ['quick'])
const quick = flags.quick === true
const RUNS = quick ? 1 : Number(flags.runs ?? 3)
const DURATION = quick ? 1 : Number(flags.duration ?? 3)
const dir = mkdtempSync(path.join(os.tmpdir(), 'baton-framers-'))
const bins = findBins()
// Every process started has its log in `dir` and is stopped by pid at the end, also on error and signals.
const pm = processManager('framers', dir)
pm.installHandlers()

async function baton(protocol, replay, backends) {
  const port = await freePort()
  const argv = ['dist/cli.js', '--listen', `${HOST}:${port}`, '--protocol', protocol, '--replay', replay, '--log-level', 'warn']
  for (const b of backends) argv.push('--backend', `${HOST}:${b}`)
  const child = pm.start(`baton-${protocol}-${replay}`, process.execPath, argv)
  await waitPort(port, 10_000, child)
  return { port, child }
}

async function wrk(port) {
  const r = await pm.run(bins.wrk, wrkArgs(port, { durationS: DURATION }), { timeoutMs: DURATION * 1000 + 30_000 })
  const w = parseWrk(r.stdout)
  return { rps: w.rps, p99ms: w.p99ms, errors: w.socketErrors > 0 || w.non2xx > 0 }
}
async function redisBench(port) {
  const n = quick ? 20000 : 200000
  const r = await pm.run(bins.redisBenchmark, redisBenchmarkArgs(port, { tests: 'get', n }), { timeoutMs: 120_000 })
  // No p99 for Redis here: the table has the rate only.
  return { rps: parseRedisBenchmark(r.stdout, r.stderr).tests.GET.rps, p99ms: NaN, errors: false }
}

async function scenario(name, backends, protocol, load) {
  const rows = { [protocol]: [], 'opaque, replay none': [] }
  for (let r = 0; r < RUNS; r++) {
    for (const [label, proto, replay] of [
      [protocol, protocol, 'safe'],
      ['opaque, replay none', 'opaque', 'none'],
    ]) {
      const b = await baton(proto, replay, backends)
      rows[label].push(await load(b.port))
      await pm.stop(b.child, { sig: 'SIGKILL' })
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
    // median() leaves out what is not a number: no p99 at all is null.
    console.log(`  ${label.padEnd(22)} ${s.rps.toFixed(0).padStart(9)} req/s   p99 ${s.p99ms === null ? '   n/a' : s.p99ms.toFixed(2) + ' ms'}${s.errors ? '   ERRORS' : ''}`)
  }
  console.log(`  ${protocol}/opaque-none rate ratio ${(f.rps / o.rps).toFixed(3)}${quick ? ' (quick: not a measurement)' : ''}`)
  return { name, summary, ratio: f.rps / o.rps }
}

const results = []
console.log(`Framer cost: node ${process.version}, ${os.cpus()[0]?.model} × ${os.cpus().length}, ${RUNS} run(s) × ${DURATION} s, median`)
const nginx = async () => (await startNginxHttp(pm, bins, dir)).port
const redis = async () => (await startRedis(pm, bins)).port
const ng = [await nginx(), await nginx(), await nginx()]
results.push(await scenario('HTTP: wrk -t2 -c50, 1 KiB from 3 nginx', ng, 'http1', wrk))
const rd = [await redis(), await redis(), await redis()]
results.push(await scenario('Redis: redis-benchmark GET -c50 -P16 over 3 redis-server', rd, 'resp', redisBench))
mkdirSync('bench/out', { recursive: true })
const file = `bench/out/framers-${timestamp()}${quick ? '-quick' : ''}.json`
writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), node: process.version, cpu: os.cpus()[0]?.model, runs: RUNS, duration: DURATION, results }, null, 2))
console.log(`JSON: ${file}`)
await pm.stopAll()
process.exit(0)
