/**
 * Access rules and limits as accept stages (lib/accept/limits.ts), their config and flags, and the
 * refusal log's once-a-second bound.
 */
import t from 'tap'
import { TokenBucket } from '../../lib/accept/limits.js'
import { Refusals } from '../../lib/accept/refusals.js'
import { parseCommand } from '../../lib/cli/args.js'
import { validateConfig } from '../../lib/config/validate.js'
import { ConfigError } from '../../lib/errors.js'
import type { Logger } from 'pino'
import { oneListener, scope } from '../helpers/balancer.js'
import { echoServer } from '../helpers/servers.js'
import { until, within } from '../helpers/wait.js'

t.test('token bucket: a burst, then the rate', async (t) => {
  const b = new TokenBucket(10, 3, 0)
  t.same([b.take(0), b.take(0), b.take(0), b.take(0)], [true, true, true, false], 'burst of 3')
  t.notOk(b.take(99), 'less than one token after 99 ms at 10/s')
  t.ok(b.take(100), 'one token after 100 ms')
  t.notOk(b.take(100))
  t.ok(b.full(10_000), 'full again after a while (forgettable)')
  t.same([b.take(10_000), b.take(10_000), b.take(10_000), b.take(10_000)], [true, true, true, false], 'never above the burst')
})

t.test('refusals: counted every time, logged at most once a second per reason', async (t) => {
  const lines: Record<string, unknown>[] = []
  const log = { warn: (obj: Record<string, unknown>) => void lines.push(obj) } as unknown as Logger
  const r = new Refusals(log)
  for (let i = 0; i < 50; i++) r.add('deny-list', '192.0.2.1:1')
  r.add('accept-rate', '192.0.2.1:2')
  t.equal(r.counts.get('deny-list'), 50)
  t.equal(r.total, 51)
  t.same(
    lines.map((l) => l.reason),
    ['deny-list', 'accept-rate'],
    'one line per reason within the second'
  )
})

function refused(balancer: { frontends: { refusals: Refusals }[] }, reason: string): number {
  return balancer.frontends[0]!.refusals.counts.get(reason) ?? 0
}

t.test('deny and allow lists', async (t) => {
  const s = scope(t)
  const backend = await s.server(echoServer())
  const denied = await s.balancer(oneListener([backend], { deny: ['127.0.0.0/8'] }))
  const c1 = s.client(denied.port)
  await within(c1.closed, 'denied')
  t.equal(refused(denied.balancer, 'deny-list'), 1)
  const notAllowed = await s.balancer(oneListener([backend], { allow: ['10.0.0.0/8', '::1'] }))
  const c2 = s.client(notAllowed.port)
  await within(c2.closed, 'not allowed')
  t.equal(refused(notAllowed.balancer, 'not-allowed'), 1)
  const allowed = await s.balancer(oneListener([backend], { allow: ['127.0.0.1'], deny: ['10.0.0.0/8'] }))
  const c3 = await s.connect(allowed.port)
  c3.socket.write('hi')
  t.equal((await c3.read(2)).toString(), 'hi', 'an allowed client is served')
  t.equal(backend.accepted, 1, 'refused clients never reached a backend')
})

t.test('accept rate and per-source rate: the burst passes, the next is refused at once', async (t) => {
  const s = scope(t)
  const backend = await s.server(echoServer())
  // 1 a second: three connects in a row cannot earn a token back on any machine this runs on.
  for (const [limit, reason] of [
    [{ accept: 1, acceptBurst: 2 }, 'accept-rate'],
    [{ perSource: 1, perSourceBurst: 2 }, 'per-source-rate'],
  ] as const) {
    const { balancer, port } = await s.balancer(oneListener([backend], { rateLimit: limit }))
    const a = await s.connect(port)
    const b = await s.connect(port)
    const c = s.client(port)
    await within(c.closed, `${reason}: third refused`)
    t.equal(refused(balancer, reason), 1, reason)
    t.notOk(a.isClosed || b.isClosed, 'the burst was served')
    await until(() => balancer.table.size === 2, 'two sessions')
  }
})

t.test('maxConnectionsPerSource is a stage: counted per reason as well', async (t) => {
  const s = scope(t)
  const backend = await s.server(echoServer())
  const { balancer, port } = await s.balancer(oneListener([backend], { maxConnectionsPerSource: 1 }))
  const first = await s.connect(port)
  await until(() => balancer.table.size === 1, 'one session')
  const second = s.client(port)
  await within(second.closed, 'second refused')
  const l = balancer.frontends[0]!
  t.equal(l.counters.rejectedPerSource, 1, 'the old counter')
  t.equal(refused(balancer, 'per-source-limit'), 1, 'and the per-reason one')
  first.destroy()
  await until(() => l.active === 0, 'slot free')
  const third = await s.connect(port)
  third.socket.write('x')
  t.equal((await third.read(1)).toString(), 'x', 'served once the first left')
})

const one = (extra: Record<string, unknown>): unknown => ({
  listeners: [{ listen: '127.0.0.1:7000', backends: ['127.0.0.1:7101'], ...extra }],
})

function errors(input: unknown): string[] {
  try {
    validateConfig(input)
    return []
  } catch (err) {
    if (err instanceof ConfigError) return [...err.issues]
    throw err
  }
}

t.test('--check: CIDRs are parsed, with the field path in the message', async (t) => {
  t.match(errors(one({ allow: ['10.0.0.0/33'] })).join('\n'), /listeners\[0\]\.allow\[0\]: expected a prefix length from 0 to 32/)
  t.match(errors(one({ deny: ['not-an-ip'] })).join('\n'), /listeners\[0\]\.deny\[0\]: expected an IP address or CIDR/)
  t.match(errors(one({ acceptProxy: { from: [] } })).join('\n'), /acceptProxy\.from: expected at least one/)
  t.match(errors(one({ acceptProxy: ['fe80::/10', '10.0.0.0/08'] })).join('\n'), /acceptProxy\.from\[1\]/)
  t.match(errors(one({ sendProxy: 'v3' })).join('\n'), /sendProxy: expected one of "v1", "v2"/)
  t.match(errors(one({ rateLimit: { acept: 3 } })).join('\n'), /rateLimit\.acept: unknown option \(did you mean "accept"\?\)/)
  t.match(errors(one({ sendProxy: 'v1', dataPlane: 'native' })).join('\n'), /dataPlane: .*(sendProxy|not available|native plane)/)
  const ok = validateConfig(one({ acceptProxy: ['127.0.0.1', '::1'], sendProxy: 'v2', allow: ['0.0.0.0/0'] }))
  t.match(ok.listeners[0]!.acceptProxy, { from: ['127.0.0.1', '::1'], required: true, timeout: 3000 })
})

t.test('flags', async (t) => {
  const cmd = parseCommand([
    '--listen', '127.0.0.1:7000',
    '--backend', '127.0.0.1:7101,send-proxy=none',
    '--backend', '127.0.0.1:7102',
    '--accept-proxy', '10.0.0.0/8,192.0.2.1',
    '--accept-proxy', '::1',
    '--send-proxy', 'v2',
    '--allow', '10.0.0.0/8', '--deny', '10.9.0.0/16',
    '--max-connections-per-source', '20',
    '--rate-limit', '1000', '--rate-limit-per-source', '10',
  ])
  t.equal(cmd.kind, 'run')
  if (cmd.kind !== 'run') return
  const c = validateConfig(cmd.config)
  const l = c.listeners[0]!
  t.same(l.acceptProxy?.from, ['10.0.0.0/8', '192.0.2.1', '::1'])
  t.equal(l.sendProxy, 'v2')
  t.equal(l.backends[0]!.sendProxy, 'none')
  t.same([l.allow, l.deny], [['10.0.0.0/8'], ['10.9.0.0/16']])
  t.equal(l.maxConnectionsPerSource, 20)
  t.match(l.rateLimit, { accept: 1000, perSource: 10 })
  t.throws(() => parseCommand(['--config', 'x.yaml', '--deny', '10.0.0.0/8'], () => ({})), /--deny: cannot be combined with --config/)
})
