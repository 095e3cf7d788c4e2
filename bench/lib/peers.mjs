/**
 * bench/lib/peers.mjs — the programs Baton is compared with and measured by: how to find them, their
 * versions, their configurations, how to start them, and how to read the load tools' output.
 *
 *   backends      nginx (HTTP, 1 KiB file), redis-server, iperf3 -s
 *   balancers     Baton (dist/cli.js), HAProxy `mode tcp` (also with splice(2)), nginx `stream`, and
 *                 the minimal Node proxy (bench/lib/node-proxy.mjs), the floor for any Node proxy
 *   load tools    wrk, redis-benchmark, iperf3 -c
 *
 * Every process listens on and connects to 127.0.0.1 only; each is started through a
 * processManager (bench/lib/harness.mjs), which stops it by pid.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { HOST, freePort, waitListening, waitPort } from './harness.mjs'
import { NODE_PROXY_FILE } from './node-proxy.mjs'

export const NGINX_STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so'
/** File descriptors each balancer gets when the limit can be raised (10,000 idle sessions need 20,000 and some). */
export const NOFILE = 100_000

// ---------------------------------------------------------------------------------------------
// Finding programs

/** Absolute path of a program on PATH or in the sbin directories, or undefined. */
export function which(name) {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/local/sbin', '/usr/sbin', '/sbin']
  for (const d of dirs) {
    if (!d) continue
    const f = path.join(d, name)
    try {
      fs.accessSync(f, fs.constants.X_OK)
      return f
    } catch {
      /* next */
    }
  }
  return undefined
}

/** The first line of `cmd args` (stdout or stderr: nginx and wrk print their version on stderr). */
function firstLine(cmd, args) {
  if (cmd === undefined) return undefined
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 })
  return `${r.stdout ?? ''}${r.stderr ?? ''}`
    .split('\n')
    .find((l) => l.trim())
    ?.trim()
}

export function findBins() {
  return {
    haproxy: which('haproxy'),
    nginx: which('nginx'),
    wrk: which('wrk'),
    iperf3: which('iperf3'),
    redisServer: which('redis-server'),
    redisBenchmark: which('redis-benchmark'),
    prlimit: which('prlimit'),
    nginxStream: fs.existsSync(NGINX_STREAM_MODULE) ? NGINX_STREAM_MODULE : undefined,
  }
}

export function versions(bins) {
  return {
    node: process.version,
    haproxy: firstLine(bins.haproxy, ['-v']),
    nginx: firstLine(bins.nginx, ['-v']),
    redis: firstLine(bins.redisServer, ['--version']),
    iperf3: firstLine(bins.iperf3, ['--version']),
    wrk: firstLine(bins.wrk, ['-v']),
  }
}

/**
 * The descriptors a balancer may hold, and the argv prefix that gives them to it: `prlimit` execs the
 * program (same pid) after raising the limit, which needs CAP_SYS_RESOURCE (or a hard limit that
 * high already). Without it every process keeps the hard limit it inherits (Node, HAProxy and
 * nginx raise their soft limit up to it themselves) and the prefix is empty.
 * Returns { prefix, nofile }.
 */
export function fdLimits(bins) {
  if (bins.prlimit !== undefined) {
    const r = spawnSync(bins.prlimit, [`--nofile=${NOFILE}:${NOFILE}`, '--', 'true'], { timeout: 5000 })
    if (r.status === 0)
      return { prefix: [bins.prlimit, `--nofile=${NOFILE}:${NOFILE}`, '--'], nofile: NOFILE }
  }
  const r = spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8', timeout: 5000 })
  const hard = r.stdout?.trim()
  return { prefix: [], nofile: hard === 'unlimited' ? NOFILE : Number(hard) || 1024 }
}

/** Sessions a balancer with `nofile` descriptors is configured to take: two descriptors each, and some spare. */
export const maxConnFor = (nofile) => Math.floor((nofile - 200) / 2)

// ---------------------------------------------------------------------------------------------
// Backends

/** One nginx serving /k1.bin (1 KiB) over HTTP/1.1 keep-alive, a single process. */
export async function startNginxHttp(pm, bins, dir, port) {
  port ??= await freePort()
  const root = path.join(dir, 'www')
  fs.mkdirSync(root, { recursive: true })
  fs.writeFileSync(path.join(root, 'k1.bin'), Buffer.alloc(1024, 97))
  const conf = path.join(dir, `nginx-http-${port}.conf`)
  fs.writeFileSync(
    conf,
    `master_process off;
daemon off;
error_log stderr warn;
pid ${dir}/nginx-http-${port}.pid;
events { worker_connections 16384; }
http {
  access_log off;
  server {
    listen ${HOST}:${port} backlog=4096;
    root ${root};
    keepalive_requests 1000000;
  }
}
`
  )
  const child = pm.start(`nginx-http-${port}`, bins.nginx, ['-e', 'stderr', '-p', dir, '-c', conf])
  await waitPort(port, 10_000, child)
  return { port, child, conf }
}

/** One redis-server, nothing saved; `extra`: more arguments (say `--dir D --dbfilename F` to load a dataset). */
export async function startRedis(pm, bins, port, extra = []) {
  port ??= await freePort()
  const child = pm.start(`redis-${port}`, bins.redisServer, [
    '--port',
    String(port),
    '--bind',
    HOST,
    '--save',
    '',
    '--appendonly',
    'no',
    '--maxclients',
    '10000',
    ...extra,
  ])
  await waitPort(port, 10_000, child)
  return { port, child }
}

export async function startIperf3(pm, bins, port) {
  port ??= await freePort()
  // --forceflush: its log is read to tell when it is idle (bench/compare.mjs)
  const child = pm.start(`iperf3-${port}`, bins.iperf3, [
    '-s',
    '-B',
    HOST,
    '-p',
    String(port),
    '--forceflush',
  ])
  await waitListening(port, 10_000, child)
  return { port, child }
}

// ---------------------------------------------------------------------------------------------
// Balancers

/**
 * HAProxy `mode tcp`, round-robin; with `checks`, TCP health checks every 500 ms; with `splice`,
 * `option splice-request` and `option splice-response`: bytes move kernel to kernel through a pipe
 * with splice(2), never copied to user space. Threads: HAProxy's default (one per CPU), or `threads`
 * (`nbthread`).
 */
export function haproxyConfig({ port, backends, checks, nofile, splice = false, threads }) {
  const check = checks ? ' check inter 500ms' : ''
  // Each splicing connection also holds a pipe (two descriptors), and HAProxy refuses to start when
  // maxconn and maxpipes (by default maxconn / 4) do not fit its descriptor limit: with splice, a
  // fixed pool of 1024 pipes (far more than the benchmarks' 50 busy connections) and a maxconn
  // that leaves room for them.
  const maxconn = splice ? Math.floor((nofile - 200 - 2 * 1024) / 2) : maxConnFor(nofile)
  const spliceGlobal = (splice ? '  maxpipes 1024\n' : '') + (threads ? `  nbthread ${threads}\n` : '')
  const spliceOptions = splice ? '  option splice-request\n  option splice-response\n' : ''
  return `global
  maxconn ${maxconn}
${spliceGlobal}
defaults
  mode tcp
  maxconn ${maxconn}
  timeout connect 5s
  timeout client 10m
  timeout server 10m
  retries 3
  option redispatch
${spliceOptions}
frontend fe
  bind ${HOST}:${port}
  default_backend be

backend be
  balance roundrobin
${backends.map((b, i) => `  server s${i} ${HOST}:${b}${check}`).join('\n')}
`
}

/** nginx `stream`, one process, round-robin, passive marking by default, next upstream on failure. */
export function nginxStreamConfig({ port, backends, dir, nofile }) {
  return `load_module ${NGINX_STREAM_MODULE};
master_process off;
daemon off;
worker_rlimit_nofile ${nofile};
error_log stderr warn;
pid ${dir}/nginx-stream-${port}.pid;
events { worker_connections ${nofile - 100}; }
stream {
  upstream be {
${backends.map((b) => `    server ${HOST}:${b};`).join('\n')}
  }
  server {
    listen ${HOST}:${port};
    proxy_pass be;
    proxy_next_upstream on;
  }
}
`
}

/** Baton's CLI flags: its defaults, plus what the scenario asks for. */
export function batonArgs({ port, backends, checks, protocol, dataPlane, workers, admin }) {
  const a = ['--listen', `${HOST}:${port}`]
  for (const b of backends) a.push('--backend', `${HOST}:${b}`)
  if (protocol) a.push('--protocol', protocol)
  if (dataPlane) a.push('--data-plane', dataPlane)
  if (workers) a.push('--workers', String(workers))
  if (checks) a.push('--health-check', 'tcp', '--check-interval', '500ms')
  if (admin) a.push('--admin', `${HOST}:${admin}`)
  a.push('--log-level', 'warn')
  return a
}

/** pm.start through the nofile prefix (when there is one): same pid, higher limit. */
function startWithNofile(pm, ctx, name, cmd, argv, opts) {
  const [pre, ...preArgs] = ctx.nofilePrefix
  return pre === undefined
    ? pm.start(name, cmd, argv, opts)
    : pm.start(name, pre, [...preArgs, cmd, ...argv], opts)
}

/**
 * Start one balancer (`kind`: baton | haproxy | nginx | node) in front of `backends` (ports);
 * resolves { port, child, admin } once it accepts. `splice`: HAProxy with splice(2) (haproxyConfig).
 * `dataPlane`: Baton's `--data-plane` (auto | js | native; its default when not given).
 */
export async function startBalancer(
  pm,
  ctx,
  kind,
  { backends, checks = false, protocol, dataPlane, workers, admin = false, splice = false, threads }
) {
  const port = await freePort()
  let child
  let adminPort
  if (kind === 'baton') {
    adminPort = admin ? await freePort() : undefined
    const args = batonArgs({ port, backends, checks, protocol, dataPlane, workers, admin: adminPort })
    child = startWithNofile(pm, ctx, `baton-${port}`, process.execPath, [ctx.cli, ...args], { cwd: ctx.root })
  } else if (kind === 'haproxy') {
    const conf = path.join(ctx.dir, `haproxy-${port}.cfg`)
    const text = haproxyConfig({ port, backends, checks, nofile: ctx.nofile, splice, threads })
    fs.writeFileSync(conf, text)
    ctx.configs[
      `haproxy${splice ? ' splice' : ''}${threads ? ` nbthread ${threads}` : ''}${checks ? ', with checks' : ''}`
    ] ??= text
    child = startWithNofile(pm, ctx, `haproxy-${port}`, ctx.bins.haproxy, ['-db', '-f', conf])
  } else if (kind === 'nginx') {
    const conf = path.join(ctx.dir, `nginx-stream-${port}.conf`)
    const text = nginxStreamConfig({ port, backends, dir: ctx.dir, nofile: ctx.nofile })
    fs.writeFileSync(conf, text)
    ctx.configs['nginx stream'] ??= text
    child = startWithNofile(pm, ctx, `nginx-stream-${port}`, ctx.bins.nginx, [
      '-e',
      'stderr',
      '-p',
      ctx.dir,
      '-c',
      conf,
    ])
  } else if (kind === 'node') {
    const argv = [
      NODE_PROXY_FILE,
      '--listen',
      `${HOST}:${port}`,
      ...backends.flatMap((b) => ['--backend', `${HOST}:${b}`]),
    ]
    child = startWithNofile(pm, ctx, `node-proxy-${port}`, process.execPath, argv)
  } else throw new Error(`unknown balancer kind ${kind}`)
  // Not a probe connection: through a balancer it would reach a backend (iperf3 takes one for a test).
  await waitListening(port, 15_000, child)
  if (adminPort !== undefined) await waitListening(adminPort, 10_000, child)
  return { port, child, admin: adminPort }
}

// ---------------------------------------------------------------------------------------------
// Load tools and their output

/** "1.23ms" / "870.00us" / "1.02s" → milliseconds. */
function toMs(v, unit) {
  const n = Number(v)
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : n
}

/**
 * wrk's text output → { rps, requests, p50ms, p99ms, errors: { connect, read, write, timeout },
 * socketErrors, non2xx }.
 */
export function parseWrk(out) {
  const num = (re) => {
    const m = re.exec(out)
    return m ? Number(m[1]) : undefined
  }
  const lat = (p) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(out)
    return m ? toMs(m[1], m[2]) : undefined
  }
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
  const errors = se
    ? { connect: +se[1], read: +se[2], write: +se[3], timeout: +se[4] }
    : { connect: 0, read: 0, write: 0, timeout: 0 }
  return {
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    requests: num(/(\d+) requests in/),
    p50ms: lat(50),
    p99ms: lat(99),
    errors,
    socketErrors: errors.connect + errors.read + errors.write + errors.timeout,
    non2xx: num(/Non-2xx or 3xx responses: (\d+)/) ?? 0,
  }
}

/** `timeoutS`: wrk's per-request timeout (its default is 2 s; a slower response counts as a timeout error). */
export function wrkArgs(port, { threads = 2, conns = 50, durationS, close = false, timeoutS }) {
  const a = [`-t${threads}`, `-c${conns}`, `-d${durationS}s`, '--latency']
  if (timeoutS !== undefined) a.push('--timeout', `${timeoutS}s`)
  if (close) a.push('-H', 'Connection: close')
  a.push(`http://${HOST}:${port}/k1.bin`)
  return a
}

/**
 * redis-benchmark --csv output → { tests: { SET: { rps, p50ms, p99ms }, GET: … }, errorLines }.
 * Error lines are anything that mentions an error or a closed connection, on either stream.
 */
export function parseRedisBenchmark(stdout, stderr) {
  const tests = {}
  for (const line of stdout.split(/[\r\n]+/)) {
    const cells = line.split(',').map((c) => c.replace(/^"|"$/g, ''))
    if (cells.length >= 7 && /^[A-Z]/.test(cells[0]) && cells[0] !== 'test' && Number.isFinite(+cells[1]))
      tests[cells[0].split(' ')[0]] = { rps: +cells[1], p50ms: +cells[4], p99ms: +cells[6] }
  }
  const errorLines = `${stdout}\n${stderr}`
    .split(/[\r\n]+/)
    .filter((l) => /error|closed|refused|reset/i.test(l))
    .map((l) => l.trim())
  return { tests, errorLines }
}

export function redisBenchmarkArgs(port, { tests = 'set,get', n, conns = 50, pipeline = 16 }) {
  return [
    '-h',
    HOST,
    '-p',
    String(port),
    '-t',
    tests,
    '-n',
    String(n),
    '-c',
    String(conns),
    '-P',
    String(pipeline),
    '--csv',
  ]
}

/** iperf3 -J output → { gbps } (receiver side), or { error }. */
export function parseIperf3(stdout) {
  try {
    const j = JSON.parse(stdout)
    if (j.error) return { error: j.error }
    const bps = j.end?.sum_received?.bits_per_second
    return Number.isFinite(bps) ? { gbps: bps / 1e9 } : { error: 'no end.sum_received in iperf3 output' }
  } catch (err) {
    return { error: `iperf3 output is not JSON: ${err.message}: ${stdout.slice(0, 200)}` }
  }
}

// ---------------------------------------------------------------------------------------------
// Baton's admin server

/** GET /metrics from Baton's admin server → { failovers, handoffsPooled, handoffsNew, unrecoverable }. */
export async function batonMetrics(adminPort) {
  const res = await fetch(`http://${HOST}:${adminPort}/metrics`, { signal: AbortSignal.timeout(5000) })
  const text = await res.text()
  const sum = (name, label) => {
    let s = 0
    for (const line of text.split('\n')) {
      if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue
      if (label !== undefined && !line.includes(label)) continue
      s += Number(line.slice(line.lastIndexOf(' ') + 1))
    }
    return s
  }
  return {
    failovers: sum('baton_failovers_total'),
    handoffsPooled: sum('baton_handoffs_total', 'connection="pooled"'),
    handoffsNew: sum('baton_handoffs_total', 'connection="new"'),
    unrecoverable: sum('baton_unrecoverable_total'),
  }
}
