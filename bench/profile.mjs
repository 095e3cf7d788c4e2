#!/usr/bin/env node
/**
 * bench/profile.mjs — profile Baton under HTTP load with clinic (the project's profiler): `clinic
 * flame` (where CPU time goes) and `clinic doctor` (event loop delay, GC, handles), headless.
 *
 *   npm run build && node bench/profile.mjs [--duration 10s] [--only flame,doctor] [--protocol opaque]
 *                                           [--out bench/profile]
 *
 * For each tool: three nginx backends (1 KiB file, keep-alive), Baton from dist/cli.js in front of
 * them under clinic, and `wrk -t2 -c50 -d<duration>` started by clinic's --on-port once Baton
 * listens; when wrk ends clinic stops Baton (SIGINT) and writes its HTML report. NO_INSIGHT=1 and
 * --open=false: nothing is uploaded, no browser is opened.
 *
 * Output (under --out, default bench/profile/, not meant to be committed): <pid>.clinic-flame.html,
 * <pid>.clinic-doctor.html and their data folders; flame-top.txt, the hottest frames by self time and
 * Baton's own functions by inclusive time, read from the flame samples; doctor-verdict.txt, doctor's
 * issue category and issues as its report shows them (both also printed).
 *
 * Every process started is stopped by pid (with its descendants) at the end, also on error, SIGINT
 * and SIGTERM; each clinic run is bounded in time. Only 127.0.0.1 is used.
 */
import fs from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  HOST,
  UsageError,
  freePort,
  parseArgs,
  parseDuration,
  processManager,
  shellQuote,
} from './lib/harness.mjs'
import { batonArgs, findBins, parseWrk, startNginxHttp, wrkArgs } from './lib/peers.mjs'

const SELF = fileURLToPath(import.meta.url)
const BENCH_DIR = path.dirname(SELF)
const ROOT = path.dirname(BENCH_DIR)
const CLI = path.join(ROOT, 'dist', 'cli.js')
const CLINIC = path.join(ROOT, 'node_modules', '.bin', 'clinic')
const TAG = 'bench/profile'
const TOOLS = ['flame', 'doctor']

const VALUE_FLAGS = ['duration', 'only', 'protocol', 'out']
const BOOLEAN_FLAGS = ['help']
const USAGE =
  'usage: node bench/profile.mjs [--duration 10s] [--only flame,doctor] [--protocol opaque] [--out bench/profile]'

/**
 * The hottest frames of a clinic-flame samples file (a JSON array of stacks, root first; an empty
 * stack is an idle tick): the top `n` by self time, and Baton's own functions (frames in ROOT/dist/) by
 * inclusive time. Returns text.
 */
function topFrames(samplesFile, n = 15) {
  const stacks = JSON.parse(fs.readFileSync(samplesFile, 'utf8'))
  const self = new Map()
  const incl = new Map()
  let busy = 0
  const label = (f) => f.name.trim().replace(`file://${ROOT}/`, '').replace(`${ROOT}/`, '')
  for (const st of stacks) {
    if (st.length === 0) continue
    busy++
    const leaf = label(st[st.length - 1])
    self.set(leaf, (self.get(leaf) ?? 0) + 1)
    const seen = new Set()
    for (const f of st) {
      if (!f.name.includes(`${ROOT}/dist/`)) continue
      const l = label(f)
      if (seen.has(l)) continue
      seen.add(l)
      incl.set(l, (incl.get(l) ?? 0) + 1)
    }
  }
  const pct = (c) => `${((c / busy) * 100).toFixed(1).padStart(5)}%`
  const top = (m) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, c]) => `  ${pct(c)}  ${name.length > 150 ? name.slice(0, 147) + '...' : name}`)
  return [
    `${stacks.length} samples, ${busy} not idle; shares of the non-idle samples.`,
    `Self time (the frame on top of the stack):`,
    ...top(self),
    `Baton's own functions (dist/), inclusive:`,
    ...top(incl),
  ].join('\n')
}

/**
 * clinic doctor's own verdict on a data folder (what its HTML report shows at the top): the issue
 * category and the issue found per measure, through the analysis clinic runs for the report.
 */
async function doctorVerdict(dataDir) {
  const require = createRequire(path.join(ROOT, 'node_modules', '@clinic', 'doctor', 'index.js'))
  const pumpify = require('pumpify')
  const Analysis = require('./analysis/index.js')
  const paths = require('@clinic/clinic-common').getLoggingPaths('doctor')({ path: dataDir })
  const read = (file, Decoder, ...args) =>
    pumpify.obj(fs.createReadStream(file), new (require(`./format/${Decoder}.js`))(...args))
  const systemInfo = read(paths['/systeminfo'], 'system-info-decoder')
  const traceEvent = read(paths['/traceevent'], 'trace-event-decoder', systemInfo)
  const processStat = read(paths['/processstat'], 'process-stat-decoder')
  const analysis = new Analysis(systemInfo, traceEvent, processStat)
  traceEvent.resume()
  processStat.resume()
  return new Promise((resolve, reject) => {
    analysis.once('data', (r) => resolve({ category: r.issueCategory, issues: r.issues }))
    analysis.once('error', reject)
  })
}

async function main() {
  let flags
  try {
    flags = parseArgs(process.argv.slice(2), VALUE_FLAGS, BOOLEAN_FLAGS)
    if (flags.help) {
      console.log(USAGE)
      return 0
    }
    if (flags.only !== undefined)
      for (const t of String(flags.only).split(','))
        if (!TOOLS.includes(t)) throw new UsageError(`--only: unknown tool ${t}`)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    console.error(`${TAG}: ${err.message}\n${USAGE}`)
    return 2
  }
  const durationS = Math.max(1, Math.round(parseDuration(flags.duration ?? '10s') / 1000))
  const tools = flags.only !== undefined ? String(flags.only).split(',') : TOOLS
  const outDir = path.resolve(flags.out ?? path.join(BENCH_DIR, 'profile'))
  const bins = findBins()
  for (const [name, f] of [
    ['dist/cli.js (run npm run build)', CLI],
    ['node_modules/.bin/clinic (the profiler is not a devDependency: run npm run setup:extras)', CLINIC],
    ['nginx', bins.nginx],
    ['wrk', bins.wrk],
  ])
    if (f === undefined || !fs.existsSync(f)) {
      console.error(`${TAG}: ${name} not found`)
      return 1
    }
  fs.mkdirSync(outDir, { recursive: true })
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-profile-'))
  const pm = processManager(TAG, dir)
  pm.installHandlers()

  const backends = []
  for (let i = 0; i < 3; i++) backends.push(await startNginxHttp(pm, bins, dir))
  let failed = 0
  for (const tool of tools) {
    const port = await freePort()
    const args = batonArgs({ port, backends: backends.map((b) => b.port), protocol: flags.protocol })
    // clinic runs this through a shell once Baton listens, and stops Baton when it returns.
    const load = [bins.wrk, ...wrkArgs(port, { durationS })].map(shellQuote).join(' ')
    console.log(`${TAG}: clinic ${tool}: Baton on ${HOST}:${port} under ${load}`)
    const r = await pm.run(
      CLINIC,
      [tool, '--open=false', '--dest', outDir, '--on-port', load, '--', process.execPath, CLI, ...args],
      { env: { NO_INSIGHT: '1' }, timeoutMs: (durationS + 240) * 1000, cwd: ROOT }
    )
    const out = `${r.stdout}\n${r.stderr}`
    const html = /Generated HTML file is (file:\/\/\S+)/.exec(out)?.[1]
    const w = parseWrk(r.stdout)
    if (r.code !== 0 || html === undefined) {
      failed++
      console.log(
        `  FAILED (exit ${r.signal ?? r.code}${r.timedOut ? ', timed out' : ''}):\n${out.trim().slice(-1500)}`
      )
      continue
    }
    console.log(`  wrk under clinic: ${Math.round(w.rps ?? 0)} req/s (instrumented: not a measurement)`)
    console.log(`  report: ${html}`)
    if (tool === 'flame') {
      const file = fileURLToPath(html).replace(/\.html$/, '')
      const samples = path.join(file, `${path.basename(file)}-samples`)
      try {
        const text = topFrames(samples)
        fs.writeFileSync(path.join(outDir, 'flame-top.txt'), `${r.command}\n${text}\n`)
        console.log(text.replace(/^/gm, '  '))
      } catch (err) {
        console.log(`  (could not read the flame samples in ${samples}: ${err.message})`)
      }
    } else if (tool === 'doctor') {
      const data = fileURLToPath(html).replace(/\.html$/, '')
      try {
        const v = await doctorVerdict(data)
        const text = `issue category: ${v.category}; issues: ${JSON.stringify(v.issues)}`
        fs.writeFileSync(path.join(outDir, 'doctor-verdict.txt'), `${r.command}\n${text}\n`)
        console.log(`  doctor: ${text}`)
      } catch (err) {
        console.log(`  (could not analyse the doctor data in ${data}: ${err.message})`)
      }
    }
  }
  await pm.stopAll()
  fs.rmSync(dir, { recursive: true, force: true })
  console.log(`${TAG}: output in ${path.relative(process.cwd(), outDir) || '.'}/`)
  return failed === 0 ? 0 : 1
}

process.exit(await main())
