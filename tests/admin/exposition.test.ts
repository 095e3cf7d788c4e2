/**
 * /metrics read by a real Prometheus text-format parser (tests/helpers/exposition.ts), in one
 * process and from a `--workers 2` primary: every line parses, every family has HELP and TYPE and
 * appears once, counters end in `_total`, units come last, histogram buckets are cumulative and end
 * at `+Inf` = `_count`; and the families the README lists are there: Baton's own, the process and
 * Node runtime metrics (summed over the primary and its workers), `baton_build_info`, and the
 * health checks of each backend.
 */
import { spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { startAdmin } from '../../lib/admin/server.js'
import { backendsOf, scope } from '../helpers/balancer.js'
import { children, CLI, ensureBuilt, parseLog, ROOT } from '../helpers/cli.js'
import {
  histogramBuckets,
  lint,
  loadParser,
  valueOf,
  type Family,
  type Parser,
} from '../helpers/exposition.js'
import { withPlane } from '../helpers/plane.js'
import { echoServer, HOST, refusedPort } from '../helpers/servers.js'
import { WAIT_MS } from '../helpers/wait.js'

t.setTimeout(240_000)
const LONG_MS = 60_000

/** Families that must be in every scrape, one process or several. */
const ALWAYS = [
  'baton_build_info',
  'baton_sessions_total',
  'baton_sessions_active',
  'baton_client_received_bytes_total',
  'baton_client_sent_bytes_total',
  'baton_backend_sent_bytes_total',
  'baton_backend_received_bytes_total',
  'baton_backend_up',
  'baton_backend_state_change_timestamp_seconds',
  'baton_backend_checks_total',
  'baton_backend_check_success',
  'baton_backend_check_duration_seconds',
  'baton_handoff_latency_seconds',
  'process_cpu_seconds_total',
  'process_resident_memory_bytes',
  'process_open_fds',
  'process_start_time_seconds',
  'nodejs_eventloop_lag_seconds',
  'nodejs_heap_size_used_bytes',
  'nodejs_version_info',
]

function get(port: number, path: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: HOST, port, path, agent: false, timeout: WAIT_MS }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('error', reject)
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') })
      )
    })
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: timed out`)))
    req.on('error', reject)
  })
}

/** One echo round trip on a new connection, then close it. */
function exchange(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: HOST, port })
    const timer = setTimeout(() => socket.destroy(new Error('no echo in time')), WAIT_MS)
    socket.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    socket.once('connect', () => socket.write('ping\n'))
    socket.once('data', () => {
      clearTimeout(timer)
      socket.end()
      socket.once('close', () => resolve())
    })
  })
}

/** Scrape until `ok` holds of the parse (at most LONG_MS, a short pause between scrapes). */
async function scrapeUntil(
  parse: Parser,
  port: number,
  ok: (families: Family[]) => boolean,
  what: string
): Promise<{ text: string; families: Family[] }> {
  const deadline = Date.now() + LONG_MS
  for (let turn = 0; turn < 1000; turn++) {
    const r = await get(port, '/metrics')
    if (r.status !== 200) throw new Error(`/metrics answered ${r.status}: ${r.text}`)
    const families = parse(r.text)
    if (ok(families)) return { text: r.text, families }
    if (Date.now() > deadline) break
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`${what}: not within ${LONG_MS} ms`)
}

function checkFamilies(t: Test, text: string, families: Family[]): void {
  t.same(lint(text, families), [], 'no naming, typing or histogram problems')
  const names = new Set(families.map((f) => f.name))
  for (const name of ALWAYS) t.ok(names.has(name), `${name} is there`)
  const version = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version as string
  const info = families.find((f) => f.name === 'baton_build_info')
  t.equal(info?.metrics.length, 1, 'one build_info series')
  t.match(info?.metrics[0], {
    value: '1',
    labels: { version, node: process.version, data_plane: /^(js|native)$/ },
  })
  const buckets = histogramBuckets(text, 'baton_handoff_latency_seconds', { connection: 'pooled' })
  t.equal(
    Math.min(...[...buckets.keys()].filter((le) => le !== '+Inf').map(Number)),
    0.00001,
    'hand-off buckets from 10 us'
  )
}

const parser = loadParser()

t.test('one process: /metrics parses and follows the conventions', async (t) => {
  if ('missing' in parser) {
    if (process.env.CI !== undefined) t.fail(parser.missing)
    else t.pass('exposition format', { skip: parser.missing })
    return
  }
  const s = scope(t)
  const alpha = await s.server(echoServer('alpha'))
  const bravo = await s.server(echoServer('bravo'))
  const dead = await refusedPort('dead') // fails every check
  const { balancer, port } = await s.balancer({
    log: { level: 'silent' },
    listeners: [
      {
        name: 'web',
        listen: { host: HOST, port: 0 },
        backends: backendsOf([alpha, bravo, dead]),
        healthCheck: { type: 'tcp', interval: 50, rise: 1, fall: 1 },
      },
    ],
  })
  const admin = await startAdmin(balancer, { host: HOST, port: 0, log: pino({ level: 'silent' }) })
  t.teardown(() => admin.close())
  for (let i = 0; i < 4; i++) await exchange(port)

  const { text, families } = await scrapeUntil(
    parser.parse,
    admin.address().port,
    (f) =>
      valueOf(f, 'baton_backend_check_success', { backend: 'alpha' }) === 1 &&
      valueOf(f, 'baton_backend_check_success', { backend: 'bravo' }) === 1 &&
      valueOf(f, 'baton_backend_check_success', { backend: 'dead' }) === 0,
    'every backend checked'
  )
  checkFamilies(t, text, families)
  t.equal(valueOf(families, 'baton_sessions_total', { listener: 'web' }), 4)
  // A session first sent to the dead backend (before its check failed) moves on; the bytes read
  // meanwhile count for the dead one, so the three together make the client total.
  const sent = ['alpha', 'bravo', 'dead'].map(
    (b) => valueOf(families, 'baton_backend_sent_bytes_total', { backend: b }) ?? NaN
  )
  t.equal(
    sent.reduce((a, b) => a + b, 0),
    4 * 'ping\n'.length,
    `bytes per backend ${JSON.stringify(sent)} add up to the client bytes`
  )
  t.equal(valueOf(families, 'baton_client_received_bytes_total', { listener: 'web' }), 4 * 'ping\n'.length)
  t.ok(valueOf(families, 'baton_backend_checks_total', { backend: 'alpha', result: 'passed' })! >= 1)
  t.ok(valueOf(families, 'baton_backend_check_duration_seconds', { backend: 'alpha' })! > 0)
  t.ok(valueOf(families, 'baton_backend_checks_total', { backend: 'dead', result: 'failed' })! >= 1)
  t.equal(valueOf(families, 'baton_backend_checks_total', { backend: 'dead', result: 'passed' }), 0)
  t.equal(valueOf(families, 'baton_backend_up', { backend: 'dead' }), 0)
  t.equal(valueOf(families, 'process_start_time_seconds'), Math.round(Date.now() / 1000 - process.uptime()))
})

t.test('--workers 2: the summed /metrics parses and follows the conventions', async (t) => {
  if ('missing' in parser) {
    if (process.env.CI !== undefined) t.fail(parser.missing)
    else t.pass('exposition format', { skip: parser.missing })
    return
  }
  ensureBuilt((text) => t.comment(text))
  const s = scope(t)
  const alpha = await s.server(echoServer('alpha'))
  const file = join(t.testdir({}), 'baton.json')
  writeFileSync(
    file,
    JSON.stringify(
      withPlane({
        listeners: [
          {
            name: 'web',
            listen: '127.0.0.1:0',
            backends: [{ name: 'alpha', host: HOST, port: alpha.port }],
            healthCheck: { type: 'tcp', interval: '50ms', rise: 1, fall: 1 },
          },
        ],
        admin: { listen: '127.0.0.1:0' },
        shutdownGrace: '2s',
      })
    )
  )
  const child = spawn(process.execPath, [CLI, '--config', file, '--workers', '2'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.add(child)
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  let port = 0
  let adminPort = 0
  const lines: string[] = []
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no start within ${LONG_MS} ms:\n${lines.join('\n')}`)),
      LONG_MS
    )
    let listening = 0
    createInterface({ input: child.stdout! }).on('line', (line) => {
      lines.push(line)
      const log = parseLog<{ msg: string; address?: string }>(line)
      const at = Number(/:(\d+)$/.exec(String(log?.address))?.[1])
      if (log?.msg === 'listening') {
        port = at
        listening++
      }
      if (log?.msg === 'admin server listening') adminPort = at
      if (listening === 2 && adminPort !== 0) {
        clearTimeout(timer)
        resolve()
      }
    })
    void exited.then((code) => reject(new Error(`baton exited (${code}):\n${lines.join('\n')}`)))
  })

  const N = 6
  for (let i = 0; i < N; i++) await exchange(port)
  const { text, families } = await scrapeUntil(
    parser.parse,
    adminPort,
    (f) =>
      valueOf(f, 'baton_sessions_total', { listener: 'web' }) === N &&
      valueOf(f, 'baton_backend_check_success', { backend: 'alpha' }) === 1,
    `${N} sessions summed and alpha checked`
  )
  checkFamilies(t, text, families)
  t.equal(valueOf(families, 'baton_workers'), 2)
  t.equal(valueOf(families, 'baton_backend_sent_bytes_total', { backend: 'alpha' }), N * 'ping\n'.length)
  t.equal(
    families.find((f) => f.name === 'baton_backend_checks_total')?.metrics.length,
    2,
    'checks: the primary’s, once'
  )
  // Memory and CPU are the sums over three processes: more than the primary alone has.
  const status = (() => {
    try {
      return readFileSync(`/proc/${child.pid}/status`, 'utf8')
    } catch {
      return undefined
    }
  })()
  const primaryRss = Number(/^VmRSS:\s+(\d+) kB/m.exec(status ?? '')?.[1] ?? NaN) * 1024
  const rss = valueOf(families, 'process_resident_memory_bytes')!
  if (Number.isFinite(primaryRss))
    t.ok(rss > primaryRss * 1.5, `summed RSS ${rss} is more than the primary's ${primaryRss} alone`)
  else t.ok(rss > 0, 'summed RSS')

  child.kill('SIGTERM')
  t.equal(await exited, 0, 'exits 0 on SIGTERM')
})
