#!/usr/bin/env node
/**
 * bench/native-bulk.mjs — bulk throughput of the native splice plane against a minimal Node proxy.
 *
 *   npm run build && npm run build:native && node bench/native-bulk.mjs
 *       [--runs 5] [--duration 5s] [--only up,down,bidir] [--pipe-size BYTES] [--replay-bytes N]
 *       [--no-trim-env] [--quick]
 *
 * Columns:
 *   native  the addon (dist/native/plane.js): Node accepts and connects, then attach() and the bytes
 *           move kernel to kernel (splice through pipes); --replay-bytes N also tees the client's bytes
 *           into a replay pipe (0 by default: plain forwarding)
 *   js      the floor of any Node proxy: `data` → write(), `pause` on a full write, `resume` on `drain`
 * Each runs alone in a child process (`--role=proxy`), one listener in front of one `iperf3 -s -1`
 * started afresh for every measurement. The load is iperf3, one stream, --duration (first second
 * left out with -O 1):
 *   up     client → server (iperf3 -c)
 *   down   server → client (iperf3 -c -R)
 *   bidir  both directions at once (iperf3 --bidir: one connection each way); the sum is reported
 * The two proxies alternate (native js, js native, ...) for --runs runs; the table gives medians, the
 * spread (half the min–max range), the median of the per-run ratios native/js, and the proxy
 * process's CPU time per GiB moved.
 *
 * Both children start with MALLOC_TRIM_THRESHOLD_=268435456 (see DESIGN.md, "Where the speed goes":
 * without it the Node proxy's figure depends on how glibc trims its heap); --no-trim-env leaves the
 * environment alone.
 *
 * Output: the table on stdout, every run as JSON in bench/out/native-bulk-<ts>.json. Exit 0 when
 * every run produced a figure, 1 when one failed, 2 on bad flags or a missing addon, iperf3 or build.
 * Every child is stopped by pid at the end, also on error and signals. Only 127.0.0.1 is used.
 */
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  HOST,
  childManager,
  cpuSecs,
  freePort,
  machineInfo,
  median,
  parseArgs,
  parseDuration,
  parseIntFlag,
  processManager,
  roleArgs,
  serveRpc,
  spread,
  table,
  timestamp,
  UsageError,
  waitListening,
} from './lib/harness.mjs'

const SELF = fileURLToPath(import.meta.url)
const ROOT = path.dirname(path.dirname(SELF))
const OUT_DIR = path.join(ROOT, 'bench', 'out')
const PLANE_JS = path.join(ROOT, 'dist', 'native', 'plane.js')
const SCENARIOS = ['up', 'down', 'bidir']
const MODES = ['native', 'js']
const GiB = 1024 ** 3

// ---------------------------------------------------------------------------------------------
// Child: one proxy, native or js

async function proxyChild(args) {
  const mode = args.mode
  let plane
  if (mode === 'native') {
    const { loadNativePlane } = await import(PLANE_JS)
    const load = loadNativePlane()
    if (load.plane === undefined) throw new Error(`native plane unavailable: ${load.reason}`)
    plane = load.plane
    if (Number(args.pipeSize) > 0) plane.configure({ pipeSize: Number(args.pipeSize) })
  }
  const replayBytes = Number(args.replayBytes) || 0
  let backend = 0
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true, noDelay: true }, (client) => {
    client.on('error', () => client.destroy())
    const upstream = net.connect({ host: HOST, port: backend, allowHalfOpen: true, noDelay: true })
    upstream.on('error', () => {
      upstream.destroy()
      client.destroy()
    })
    upstream.once('connect', () => {
      if (plane !== undefined) {
        const handle = plane.attach(
          client,
          upstream,
          (e) => {
            if (e.type === 'error' && e.side === 'server') plane.close(handle) // no failover here
          },
          { replayBytes }
        )
        return
      }
      pipeJs(client, upstream)
      pipeJs(upstream, client)
      client.resume()
    })
  })
  await new Promise((resolve) => server.listen({ host: HOST, port: 0 }, resolve))
  serveRpc({
    backend: (m) => {
      backend = m.port
      return {}
    },
    cpu: () => ({ cpu: process.cpuUsage() }),
    exit: () => {
      setImmediate(() => process.exit(0))
      return {}
    },
  })
  process.send({ type: 'ready', port: server.address().port, pid: process.pid })
}

/** The minimal Node pipe, as in DESIGN.md: no allocation of our own, pause on a full write. */
function pipeJs(from, to) {
  from.on('data', (chunk) => {
    if (!to.write(chunk)) from.pause()
  })
  to.on('drain', () => from.resume())
  from.on('end', () => to.end())
  from.on('close', () => to.destroy())
}

// ---------------------------------------------------------------------------------------------
// Parent

const VALUE_FLAGS = ['runs', 'duration', 'only', 'pipe-size', 'replay-bytes']
const BOOLEAN_FLAGS = ['quick', 'no-trim-env', 'help']

async function main() {
  const flags = parseArgs(process.argv.slice(2), VALUE_FLAGS, BOOLEAN_FLAGS)
  if (flags.help) {
    console.log(fs.readFileSync(SELF, 'utf8').split('*/')[0])
    return 0
  }
  const quick = flags.quick === true
  const p = {
    runs: flags.runs !== undefined ? parseIntFlag(flags.runs, 'runs', 1, 100) : quick ? 1 : 5,
    durationS: Math.max(1, Math.round(parseDuration(flags.duration ?? (quick ? '1s' : '5s')) / 1000)),
    scenarios: (flags.only ?? SCENARIOS.join(',')).split(','),
    pipeSize:
      flags['pipe-size'] !== undefined ? parseIntFlag(flags['pipe-size'], 'pipe-size', 4096, 1 << 30) : 0,
    replayBytes:
      flags['replay-bytes'] !== undefined
        ? parseIntFlag(flags['replay-bytes'], 'replay-bytes', 0, 1 << 30)
        : 0,
    trimEnv: flags['no-trim-env'] !== true,
    quick,
  }
  for (const s of p.scenarios)
    if (!SCENARIOS.includes(s)) throw new UsageError(`--only: unknown scenario ${s}`)
  const iperf3 = ['/usr/bin/iperf3', '/usr/local/bin/iperf3'].find((f) => fs.existsSync(f))
  if (iperf3 === undefined) {
    console.error('bench/native-bulk: iperf3 is not installed (apt-get install iperf3)')
    return 2
  }
  if (!fs.existsSync(PLANE_JS)) {
    console.error('bench/native-bulk: dist/native/plane.js is missing: npm run build first')
    return 2
  }
  const { loadNativePlane } = await import(PLANE_JS)
  const probe = loadNativePlane()
  if (probe.plane === undefined) {
    console.error(`bench/native-bulk: ${probe.reason}`)
    return 2
  }

  fs.mkdirSync(OUT_DIR, { recursive: true })
  const pm = processManager('bench/native-bulk', OUT_DIR)
  pm.installHandlers()
  const cm = childManager(SELF, 'bench/native-bulk')
  const watchdog = setTimeout(
    () => {
      console.error('bench/native-bulk: watchdog expired')
      pm.killAll()
      process.exit(1)
    },
    (p.runs * p.scenarios.length * MODES.length * (p.durationS + 15) + 60) * 1000
  ).unref()

  if (p.trimEnv) process.env.MALLOC_TRIM_THRESHOLD_ = '268435456'
  const proxies = {}
  for (const mode of MODES)
    proxies[mode] = await cm.spawn('proxy', { mode, pipeSize: p.pipeSize, replayBytes: p.replayBytes })

  const runs = []
  let failed = 0
  try {
    for (const scenario of p.scenarios) {
      for (let run = 0; run < p.runs; run++) {
        const order = run % 2 === 0 ? MODES : [...MODES].reverse()
        for (const mode of order) {
          const r = await measure(pm, cm, iperf3, proxies[mode], scenario, p).catch((err) => ({
            error: err.message,
          }))
          r.scenario = scenario
          r.mode = mode
          r.run = run
          runs.push(r)
          if (r.error) failed++
          process.stderr.write(
            `  ${scenario} run ${run + 1}/${p.runs} ${mode.padEnd(6)} ${r.error ? `error: ${r.error}` : `${r.gbps.toFixed(2)} Gbit/s, ${r.cpuPerGiB.toFixed(3)} CPU s/GiB`}\n`
          )
        }
      }
    }
  } finally {
    await cm.stopAll()
    await pm.stopAll()
    clearTimeout(watchdog)
  }

  const rows = [
    ['scenario', 'native Gbit/s', 'spread', 'js Gbit/s', 'spread', 'native/js', 'CPU s/GiB native', 'js'],
  ]
  const summary = {}
  for (const scenario of p.scenarios) {
    const of = (mode) => runs.filter((r) => r.scenario === scenario && r.mode === mode && !r.error)
    const g = (mode) => of(mode).map((r) => r.gbps)
    const c = (mode) => of(mode).map((r) => r.cpuPerGiB)
    const ratios = []
    for (let run = 0; run < p.runs; run++) {
      const n = runs.find((r) => r.scenario === scenario && r.mode === 'native' && r.run === run && !r.error)
      const j = runs.find((r) => r.scenario === scenario && r.mode === 'js' && r.run === run && !r.error)
      if (n && j) ratios.push(n.gbps / j.gbps)
    }
    summary[scenario] = {
      native: { median: median(g('native')), spread: spread(g('native')), all: g('native') },
      js: { median: median(g('js')), spread: spread(g('js')), all: g('js') },
      ratio: median(ratios),
      cpuPerGiB: { native: median(c('native')), js: median(c('js')) },
    }
    const s = summary[scenario]
    const f2 = (v) => (v === null ? '—' : v.toFixed(2))
    rows.push([
      scenario,
      f2(s.native.median),
      s.native.spread,
      f2(s.js.median),
      s.js.spread,
      s.ratio === null ? '—' : `${s.ratio.toFixed(2)}×`,
      f2(s.cpuPerGiB.native),
      f2(s.cpuPerGiB.js),
    ])
  }
  console.log(
    `\nbulk through one proxy, iperf3 1 stream, ${p.durationS} s, ${p.runs} run(s) each, alternating` +
      `${p.pipeSize ? `, pipe size ${p.pipeSize}` : ''}${p.replayBytes ? `, replay ${p.replayBytes} B` : ''}` +
      `${p.trimEnv ? ', MALLOC_TRIM_THRESHOLD_=268435456' : ''}${quick ? ' (quick: not a measurement)' : ''}\n`
  )
  console.log(table(rows, 1))
  const file = path.join(OUT_DIR, `native-bulk-${timestamp()}.json`)
  fs.writeFileSync(file, JSON.stringify({ params: p, machine: machineInfo(), summary, runs }, null, 2))
  console.log(`\n${file}`)
  return failed === 0 ? 0 : 1
}

async function measure(pm, cm, iperf3, proxy, scenario, p) {
  const port = await freePort()
  const server = pm.start(`iperf3-${port}`, iperf3, ['-s', '-1', '-B', HOST, '-p', String(port)])
  try {
    await waitListening(port, 10_000, server)
    await cm.rpc(proxy, 'backend', { port })
    const args = ['-c', HOST, '-p', String(proxy.info.port), '-t', String(p.durationS), '-J']
    if (!p.quick) args.push('-O', '1')
    if (scenario === 'down') args.push('-R')
    if (scenario === 'bidir') args.push('--bidir')
    const before = await cm.rpc(proxy, 'cpu')
    const r = await pm.run(iperf3, args, { timeoutMs: (p.durationS + 30) * 1000 })
    const after = await cm.rpc(proxy, 'cpu')
    const j = JSON.parse(r.stdout || '{}')
    if (j.error) throw new Error(`iperf3: ${j.error}`)
    const recv = j.end?.sum_received
    const back = j.end?.sum_received_bidir_reverse
    if (recv === undefined)
      throw new Error(`iperf3 gave no result (exit ${r.code}) ${r.stderr.slice(0, 200)}`)
    const bits = recv.bits_per_second + (scenario === 'bidir' && back ? back.bits_per_second : 0)
    const bytes = recv.bytes + (scenario === 'bidir' && back ? back.bytes : 0)
    const cpu = cpuSecs(after.cpu) - cpuSecs(before.cpu)
    // CPU over the whole run (omitted first second included) per GiB counted by iperf3 after it:
    // the omitted second's bytes are not in `bytes`, so scale by the measured share of the run.
    const share = p.quick ? 1 : p.durationS / (p.durationS + 1)
    return { gbps: bits / 1e9, bytes, cpuS: cpu, cpuPerGiB: (cpu * share) / (bytes / GiB) }
  } finally {
    await pm.stop(server, { graceMs: 1000 })
  }
}

const role = roleArgs()
if (role?.role === 'proxy') {
  proxyChild(role).catch((err) => {
    console.error(err)
    process.exit(1)
  })
} else {
  main().then(
    (code) => process.exit(code),
    (err) => {
      console.error(err instanceof UsageError ? `bench/native-bulk: ${err.message}` : err)
      process.exit(err instanceof UsageError ? 2 : 1)
    }
  )
}
