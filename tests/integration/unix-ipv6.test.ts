/**
 * Unix-domain sockets and IPv6, with real sockets: listeners and backends on unix paths (in a short
 * temporary directory) and on [::1] (skipped with the reason where ::1 cannot be bound). Sessions,
 * names, the table, a stale socket file at start, the file mode, failover between a unix and a TCP
 * backend both ways, health checks over unix and IPv6, the warm pool, and source-hash with IPv6
 * clients and with unix clients (which have no address).
 */
import { existsSync, statSync } from 'node:fs'
import http from 'node:http'
import { join } from 'node:path'
import t from 'tap'
import type { SessionSnapshot } from '../../lib/table.js'
import { httpCheck, tcpCheck } from '../../lib/health/checks.js'
import { ListenError } from '../../lib/errors.js'
import { scope } from '../helpers/balancer.js'
import { FrameServer, frameServer, listenerOptions, PROTOCOLS } from '../helpers/failover-servers.js'
import { FrameClient, ipv6Unavailable, socketDir, staleSocket } from '../helpers/net.js'
import { HOST } from '../helpers/servers.js'
import { once, until, within } from '../helpers/wait.js'

/** A frame server that answers `name:body`, listening where it is told. */
function named(name: string, where: { path: string } | { host: string }): Promise<FrameServer> {
  return new FrameServer(name, { answer: (b) => Buffer.from(`${name}:${b.toString()}`) }).listenAt(where)
}

const silent = { log: { level: 'silent' as const } }

t.test('a unix listener in front of a unix backend', async (t) => {
  const dir = socketDir(t)
  const s = scope(t)
  const app = await s.server(named('app', { path: join(dir, 'app.sock') }))
  const listen = join(dir, 'baton.sock')
  const { balancer } = await s.balancer({
    ...silent,
    listeners: [{ listen: `unix:${listen}`, backends: [`unix:${app.path!}`], protocol: 'length-prefixed' }],
  })
  const l = balancer.frontends[0]!
  t.equal(l.name, `unix:${listen}`, 'the listener is named after its address')
  t.equal(l.backends[0]!.name, `unix:${app.path!}`, 'and the backend after its own')
  t.strictSame(balancer.address(0), { host: '', port: 0, path: listen })
  t.equal(balancer.listenerSnapshots()[0]!.backends[0]!.address, `unix:${app.path!}`)

  const c = await new FrameClient(t, { path: listen }).connected()
  t.equal(await c.request('hello'), 'app:hello')
  const live: SessionSnapshot = balancer.sessions()[0]!
  t.equal(live.client, 'unix', 'a unix client has no address: it is called unix')
  t.equal(live.server, 'unix', 'nor has the server connection: the table says unix')
  t.equal(live.backend, `unix:${app.path!}`)
  t.equal(await c.request('again'), 'app:again')
  c.socket.destroy()
  await until(() => balancer.sessions().length === 0, 'session closed')
  t.ok(existsSync(listen))
  await balancer.close(0)
  t.notOk(existsSync(listen), 'the socket file is removed when the listener closes')
})

t.test('a socket file left by a crash is removed at start; a live one is not', async (t) => {
  const dir = socketDir(t)
  const s = scope(t)
  const app = await s.server(named('app', { host: HOST }))
  const path = join(dir, 'baton.sock')
  await staleSocket(path)
  const { balancer } = await s.balancer({
    ...silent,
    listeners: [{ listen: { path, mode: '600' }, backends: [{ host: HOST, port: app.port }] }],
  })
  t.equal(statSync(path).mode & 0o777, 0o600, 'the socket file has the mode asked for')
  const c = await new FrameClient(t, { path }).connected()
  t.equal(await c.request('x'), 'app:x', 'the listener took over the stale path')

  // A second listener on the same path finds it alive: it leaves it alone and fails to bind.
  const second = scope(t)
  const err = await second
    .balancer({
      ...silent,
      listeners: [{ listen: `unix:${path}`, backends: [{ host: HOST, port: app.port }] }],
    })
    .then(
      () => undefined,
      (e: unknown) => e
    )
  t.type(err, ListenError)
  t.match((err as Error).message, /address already in use/)
  t.equal(await c.request('y'), 'app:y', 'the first listener still serves')
  const c2 = await new FrameClient(t, { path }).connected()
  t.equal(await c2.request('z'), 'app:z', 'and still accepts')
  void balancer
})

for (const protocol of PROTOCOLS) {
  for (const [from, to] of [
    ['unix', 'tcp'],
    ['tcp', 'unix'],
  ] as const) {
    t.test(`${protocol}: failover from a ${from} backend to a ${to} backend, mid-request`, async (t) => {
      const dir = socketDir(t)
      const s = scope(t)
      const where = (kind: 'unix' | 'tcp') =>
        kind === 'unix' ? { path: join(dir, 'a.sock') } : { host: HOST }
      const first = await s.server(named('first', where(from)))
      const second = await s.server(named('second', where(to)))
      const backend = (e: FrameServer) => (e.path !== undefined ? `unix:${e.path}` : `${e.host}:${e.port}`)
      const { port, balancer } = await s.balancer({
        ...silent,
        listeners: [
          {
            listen: { host: HOST, port: 0 },
            backends: [backend(first), backend(second)],
            balance: 'first',
            ...listenerOptions(protocol, 'new'),
          },
        ],
      })
      const c = await new FrameClient(t, { host: HOST, port }).connected()
      t.equal(await c.request('one'), 'first:one')
      first.freeze()
      const read = once(first, 'request')
      const answer = c.request('two')
      await read
      // A unix socket has no reset: a dead server's connections just close (and its file goes).
      await (from === 'unix' ? first.close() : first.kill())
      t.equal(await answer, 'second:two', 'replayed on the other backend')
      t.equal(await c.request('three'), 'second:three')
      t.equal(c.error, undefined, 'the client saw nothing')
      t.equal(balancer.counters().failovers, 1)
    })
  }
}

t.test('health checks and the warm pool over a unix socket', async (t) => {
  const dir = socketDir(t)
  const s = scope(t)
  const app = await s.server(named('app', { path: join(dir, 'app.sock') }))
  t.strictSame(await tcpCheck({ host: '', port: 0, path: app.path }, 1000), { ok: true })
  const web = http.createServer((req, res) => {
    res.statusCode = req.url === '/health' && req.headers.host === 'localhost' ? 200 : 500
    res.end()
  })
  const webPath = join(dir, 'web.sock')
  web.listen(webPath)
  await within(once(web, 'listening'), 'http server listening')
  t.teardown(() => web.close())
  const check = httpCheck({ path: '/health' })
  t.match(await check({ host: '', port: 0, path: webPath }, 1000), { ok: true }, 'http check over unix')
  t.match(await check({ host: '', port: 0, path: join(dir, 'none.sock') }, 1000), {
    ok: false,
    reason: 'ENOENT',
  })

  const { balancer } = await s.balancer({
    ...silent,
    listeners: [
      {
        listen: { host: HOST, port: 0 },
        backends: [{ name: 'app', path: app.path }],
        // A timeout well past the interval and fall 3: on a loaded CI machine a 50 ms check timeout
        // flapped the backend down, which stops its pool, and the pool never reached 2.
        healthCheck: { type: 'tcp', interval: 50, timeout: 2000, rise: 1, fall: 3 },
        pool: { idle: 2 },
      },
    ],
  })
  await until(() => balancer.listenerSnapshots()[0]!.backends[0]!.pool === 2, 'pool of 2 over unix')
  const down = once(balancer, 'backendFailure')
  await app.close()
  await down
  t.equal(balancer.listenerSnapshots()[0]!.backends[0]!.health, 'down', 'checked down once it is gone')
})

t.test('IPv6', async (t) => {
  const why = await ipv6Unavailable()
  if (why !== undefined) {
    t.pass('IPv6 on ::1', { skip: why })
    return
  }

  t.test('listener and backends on [::1]; failover from IPv6 to IPv4', async (t) => {
    const s = scope(t)
    const v6 = await s.server(named('v6', { host: '::1' }))
    const v4 = await s.server(named('v4', { host: HOST }))
    const { balancer } = await s.balancer({
      ...silent,
      listeners: [
        {
          listen: '[::1]:0',
          backends: [`[::1]:${v6.port}`, `${HOST}:${v4.port}`],
          balance: 'first',
          protocol: 'length-prefixed',
        },
      ],
    })
    const l = balancer.frontends[0]!
    t.equal(l.name, '[::1]:0', 'the name puts an IPv6 host in brackets')
    t.equal(l.backends[0]!.name, `[::1]:${v6.port}`)
    const a = balancer.address(0)
    t.equal(a.host, '::1')
    const c = await new FrameClient(t, { host: '::1', port: a.port }).connected()
    t.equal(await c.request('one'), 'v6:one')
    t.match(balancer.sessions()[0]!.client, /^::1:\d+$/, 'the client address as Node gives it')
    v6.freeze()
    const read = once(v6, 'request')
    const answer = c.request('two')
    await read
    await v6.kill()
    t.equal(await answer, 'v4:two', 'replayed over IPv4')
  })

  t.test('health checks over IPv6', async (t) => {
    const s = scope(t)
    const v6 = await s.server(named('v6', { host: '::1' }))
    t.strictSame(await tcpCheck({ host: '::1', port: v6.port }, 1000), { ok: true })
    const web = http.createServer((req, res) => {
      res.statusCode = req.headers.host === `[::1]:${port()}` ? 204 : 500
      res.end()
    })
    const port = () => (web.address() as { port: number }).port
    web.listen({ host: '::1', port: 0 })
    await within(once(web, 'listening'), 'http server on ::1')
    t.teardown(() => web.close())
    t.match(
      await httpCheck({ path: '/' })({ host: '::1', port: port() }, 1000),
      { ok: true },
      'Host: [::1]:port'
    )
  })

  t.test('source-hash: IPv6 clients stay on their backend; unix clients are spread', async (t) => {
    const dir = socketDir(t)
    const s = scope(t)
    const a = await s.server(named('a', { host: HOST }))
    const b = await s.server(named('b', { host: HOST }))
    const c3 = await s.server(named('c', { host: HOST }))
    const backends = [a, b, c3].map((e) => `${e.host}:${e.port}`)
    const unixPath = join(dir, 'baton.sock')
    const { balancer } = await s.balancer({
      ...silent,
      listeners: [
        { name: 'v6', listen: '[::1]:0', backends, balance: 'source-hash', protocol: 'length-prefixed' },
        {
          name: 'unix',
          listen: `unix:${unixPath}`,
          backends,
          balance: 'source-hash',
          protocol: 'length-prefixed',
        },
      ],
    })
    const servedBy = async (where: { path: string } | { host: string; port: number }): Promise<string> => {
      const c = await new FrameClient(t, where).connected()
      const answer = await c.request('q')
      c.socket.destroy()
      return answer.slice(0, answer.indexOf(':'))
    }
    const v6 = new Set<string>()
    for (let i = 0; i < 6; i++) v6.add(await servedBy({ host: '::1', port: balancer.address('v6').port }))
    t.equal(v6.size, 1, `every session from ::1 on one backend (${[...v6].join(' ')})`)
    const unix = new Set<string>()
    for (let i = 0; i < 6; i++) unix.add(await servedBy({ path: unixPath }))
    t.strictSame([...unix].sort(), ['a', 'b', 'c'], 'unix clients have no address: round-robin')
  })
})
