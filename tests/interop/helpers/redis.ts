/**
 * Real redis-server backends for interop tests: `redis-server --port P --bind 127.0.0.1 --save ''
 * --appendonly no`, each a process group of its own (SIGKILL of the group is a crashed backend),
 * and `redis-cli` one-shot commands against them.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createBalancer, type Balancer } from '../../../lib/index.js'
import type { Test } from 'tap'
import { closeHard, type Teardown } from '../../helpers/balancer.js'
import { until, within } from '../../helpers/wait.js'
import { finished, hasCommand, killPeer, spawnPeer, stopAll, stopPeer, type Peer } from './process.js'
import { freePort, untilListening } from './socat.js'

export interface RedisServer extends Peer {
  readonly host: string
  readonly port: number
  /** Its working directory (nothing is written there with `--save ''`); removed by `removeRedisDir`. */
  readonly dir: string
}

/** True when redis-server and redis-cli (and, if asked, redis-benchmark) are on PATH. */
export function hasRedis(options: { benchmark?: boolean } = {}): boolean {
  return (
    hasCommand('redis-server', ['--version']) &&
    hasCommand('redis-cli', ['--version']) &&
    (options.benchmark !== true || hasCommand('redis-benchmark', ['--version']))
  )
}

/** Start one redis-server on a free port, resolved once it accepts connections. */
export async function startRedis(
  options: { host?: string; name?: string; timeoutMs?: number } = {}
): Promise<RedisServer> {
  const host = options.host ?? '127.0.0.1'
  const timeoutMs = options.timeoutMs ?? 5000
  let lastError: Error | undefined
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort(host)
    const dir = mkdtempSync(path.join(tmpdir(), 'baton-redis-'))
    const peer = spawnPeer(options.name ?? `redis:${port}`, 'redis-server', [
      '--port',
      String(port),
      '--bind',
      host,
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
      '--daemonize',
      'no',
      '--loglevel',
      'warning',
    ])
    const server: RedisServer = Object.assign(peer, { host, port, dir })
    try {
      await untilListening(
        peer.exited,
        'redis-server',
        () => `${peer.stdout().trim()} ${peer.stderr().trim()}`,
        host,
        port,
        timeoutMs
      )
      return server
    } catch (err) {
      lastError = err as Error
    }
    killPeer(server)
    await peer.exited
    removeRedisDir(server)
  }
  throw lastError ?? new Error('redis-server did not start')
}

export function removeRedisDir(server: RedisServer): void {
  rmSync(server.dir, { recursive: true, force: true })
}

/**
 * `redis-cli -h HOST -p PORT ARGS…` run to completion (bounded); resolves with its stdout, trimmed.
 * Rejects on a non-zero exit.
 */
export async function redisCli(
  port: number,
  args: readonly string[],
  options: { host?: string; timeoutMs?: number } = {}
): Promise<string> {
  const host = options.host ?? '127.0.0.1'
  const peer = spawnPeer(`redis-cli -p ${port} ${args.join(' ')}`, 'redis-cli', [
    '-h',
    host,
    '-p',
    String(port),
    ...args,
  ])
  const exit = await finished(peer, options.timeoutMs ?? 5000)
  if (exit.code !== 0) {
    throw new Error(`${peer.name}: exit ${exit.code}/${exit.signal}: ${peer.stdout()} ${peer.stderr()}`)
  }
  return peer.stdout().trim()
}

export interface RedisRig {
  servers: RedisServer[]
  balancer: Balancer
  port: number
  serverOf(backend: string | undefined): RedisServer | undefined
}

/**
 * Three redis-server on free ports behind one Baton listener (`protocol: resp`, round-robin, a warm
 * pool of `poolIdle`, 2 by default), resolved once every pool is full, so that the first sessions
 * start on pooled connections however loaded the machine is. The balancer, the servers and their
 * directories go with the test's teardown.
 */
export async function redisRig(t: Teardown, options: { poolIdle?: number } = {}): Promise<RedisRig> {
  const poolIdle = options.poolIdle ?? 2
  const servers: RedisServer[] = []
  let balancer: Balancer | undefined
  t.teardown(async () => {
    if (balancer !== undefined) await closeHard(balancer)
    await stopAll(servers)
    for (const s of servers) removeRedisDir(s)
  })
  for (let i = 0; i < 3; i++) servers.push(await startRedis({ name: `redis${i}` }))
  balancer = createBalancer({
    log: { level: 'silent' },
    listeners: [
      {
        listen: { host: '127.0.0.1', port: 0 },
        backends: servers.map((s, i) => ({ name: `redis${i}`, host: s.host, port: s.port })),
        protocol: 'resp',
        balance: 'round-robin',
        pool: { idle: poolIdle },
        connectTimeout: '2s',
      },
    ],
  })
  await balancer.listen()
  const b = balancer
  await until(
    () => b.listenerSnapshots()[0]!.backends.every((x) => x.pool >= poolIdle),
    'the warm pools full',
    { intervalMs: 10 }
  )
  return {
    servers,
    balancer: b,
    port: b.address(0).port,
    serverOf: (backend) => servers.find((s) => s.name === backend),
  }
}

export function countersLine(balancer: Balancer): string {
  const c = balancer.counters()
  return (
    `failovers ${c.failovers}, replayedRequests ${c.replayedRequests}, serverFailures ${c.serverFailures}, ` +
    `handoffs pooled/new ${c.handoffsPooled}/${c.handoffsNew}, connectErrors ${c.connectErrors}, ` +
    `unrecoverable ${c.unrecoverable}, framingErrors ${c.framingErrors}`
  )
}

/** The backend with the most open sessions right now. */
export function busiest(r: RedisRig): RedisServer | undefined {
  const n = new Map<string, number>()
  for (const s of r.balancer.sessions()) {
    if (s.state === 'open' && s.backend !== undefined) n.set(s.backend, (n.get(s.backend) ?? 0) + 1)
  }
  const top = [...n.entries()].sort((a, b) => b[1] - a[1])[0]
  return r.serverOf(top?.[0])
}

/**
 * `redis-benchmark -t set,get -n 200000 -c 30 -q [-P pipeline]` through a fresh `redisRig`; a quarter
 * into the SET run the redis-server with the most sessions is SIGKILLed (with a pipeline, frozen
 * first so that requests are surely waiting on it). redis-benchmark must exit 0 and never print
 * "Server closed the connection".
 */
export async function benchmarkWithKill(t: Test, pipeline: number, timeoutMs: number): Promise<void> {
  const r = await redisRig(t)
  const args = ['-h', '127.0.0.1', '-p', String(r.port), '-t', 'set,get', '-n', '200000', '-c', '30', '-q']
  if (pipeline > 1) args.push('-P', String(pipeline))
  const bench = spawnPeer('redis-benchmark', 'redis-benchmark', args)
  t.teardown(() => stopPeer(bench).catch(() => {}))
  // A SET request is 45 bytes: 2 MB from clients is about a quarter of the SET run.
  await until(
    () => r.balancer.counters().bytesFromClient >= 2_000_000,
    'redis-benchmark a quarter into SET',
    {
      intervalMs: 10,
      timeoutMs: 20_000,
    }
  )
  const victim = busiest(r)
  t.ok(victim !== undefined, 'a backend is serving redis-benchmark')
  if (victim === undefined) return
  const onVictim = r.balancer.sessions().filter((s) => s.backend === victim.name)
  let how = 'SIGKILLed'
  if (pipeline > 1) {
    // With -P 16 nearly all the time is spent in redis-benchmark and Baton, so a plain kill
    // tends to find every session between batches (a clean boundary, hidden without any
    // replay). Freeze the victim first: its sessions' next batches then wait unanswered on
    // it when it dies, and must be replayed elsewhere.
    process.kill(-victim.pid, 'SIGSTOP')
    const sentBefore = new Map(onVictim.map((s) => [s.id, s.bytesFromClient]))
    await until(
      () =>
        r.balancer
          .sessions()
          .filter((s) => s.backend === victim.name && s.bytesFromClient > (sentBefore.get(s.id) ?? 0))
          .length >= Math.ceil(onVictim.length / 2),
      'requests waiting on the frozen redis-server',
      { intervalMs: 10 }
    )
    how = 'SIGSTOPped, then with requests waiting on it SIGKILLed'
  }
  killPeer(victim)
  await within(victim.exited, 'the killed redis-server exiting')
  t.comment(
    `${how} ${victim.name} (pid ${victim.pid}) with ${onVictim.length} sessions on it, ` +
      `${r.balancer.counters().bytesFromClient} client bytes in`
  )
  const exit = await finished(bench, timeoutMs)
  const out = bench.stdout()
  const lines = out
    .split(/[\r\n]+/)
    .filter((l) => /requests per second/.test(l))
    .map((l) => `redis-benchmark| ${l.trim()}`)
  t.comment(lines.join('\n'))
  t.equal(exit.code, 0, `redis-benchmark exited 0 (${bench.stderr().trim()})`)
  t.notMatch(out + bench.stderr(), /Server closed the connection/, 'no "Server closed the connection"')
  t.notMatch(out + bench.stderr(), /error/i, 'no error in its output')
  t.match(out, /SET: [\d.]+ requests per second/, 'the SET run finished')
  t.match(out, /GET: [\d.]+ requests per second/, 'the GET run finished')
  t.comment(countersLine(r.balancer))
  t.equal(r.balancer.counters().unrecoverable, 0, 'nothing unrecoverable')
  t.ok(onVictim.length > 0, `the victim had sessions when it died (${onVictim.length})`)
  if (pipeline > 1) t.ok(r.balancer.counters().failovers >= 1, 'requests in flight were replayed elsewhere')
}
