/**
 * TLS passthrough routing on a real listener (issue 13, item 2), with Node's TLS client: the
 * ClientHello's server name and ALPN pick the backend group, its bytes reach the backend untouched,
 * a failover stays in the group, and clients that send no hello, plain text or garbage are refused
 * and counted per reason. The backends here are plain TCP servers that record what they get (the
 * routing never terminates TLS); tests/interop/tls-sni.test.ts runs real openssl and curl.
 */
import net, { type Socket } from 'node:net'
import tls from 'node:tls'
import t, { type Test } from 'tap'
import { createBalancer, type Balancer } from '../../lib/index.js'
import { parseClientHello } from '../../lib/tls/client-hello.js'
import { once, WAIT_MS } from '../helpers/wait.js'

interface Recorder {
  readonly port: number
  readonly got: Buffer[]
  accepted: number
  /** Resolves with the first bytes of the next connection's hello. */
  next(): Promise<Buffer>
}

async function recorder(t: Test): Promise<Recorder> {
  const waiters: ((b: Buffer) => void)[] = []
  const sockets = new Set<Socket>()
  const r = {
    port: 0,
    got: [] as Buffer[],
    accepted: 0,
    next: () => new Promise<Buffer>((resolve) => waiters.push(resolve)),
  }
  const server = net.createServer((s) => {
    r.accepted++
    sockets.add(s)
    s.on('error', () => {})
    s.on('close', () => sockets.delete(s))
    let all = Buffer.alloc(0)
    s.on('data', (c: Buffer) => {
      all = Buffer.concat([all, c])
      if (parseClientHello(all).kind === 'more') return
      r.got.push(all)
      waiters.shift()?.(all)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  r.port = (server.address() as net.AddressInfo).port
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    server.close()
  })
  return r
}

/** A port nothing listens on. */
async function deadPort(): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as net.AddressInfo).port
  await new Promise((r) => s.close(r))
  return port
}

async function start(t: Test, listener: Record<string, unknown> & { backends: unknown[] }): Promise<Balancer> {
  const balancer = createBalancer({
    listeners: [{ listen: '127.0.0.1:0', dataPlane: 'js', ...listener }],
    log: { level: 'silent' },
  })
  await balancer.listen()
  t.teardown(() => balancer.close(0))
  return balancer
}

/** A Node TLS client that says `servername` and `alpn`; destroyed at teardown. */
function hello(t: Test, port: number, servername?: string, alpn?: string[]): tls.TLSSocket {
  const c = tls.connect({ host: '127.0.0.1', port, servername, ALPNProtocols: alpn, rejectUnauthorized: false })
  c.on('error', () => {})
  t.teardown(() => c.destroy())
  return c
}

const b = (group: string | undefined, port: number): Record<string, unknown> =>
  group === undefined ? { host: '127.0.0.1', port } : { host: '127.0.0.1', port, group }

t.test('server name and ALPN pick the group; the hello reaches it byte for byte', async (t) => {
  const [def, api, wild, h2] = [await recorder(t), await recorder(t), await recorder(t), await recorder(t)]
  const balancer = await start(t, {
    backends: [b(undefined, def.port), b('api', api.port), b('wild', wild.port), b('h2', h2.port)],
    tls: {
      routes: [
        { serverName: 'api.example.com', group: 'api' },
        { serverName: '*.example.com', group: 'wild' },
        { alpn: 'h2', group: 'h2' },
      ],
    },
  })
  const port = balancer.address().port
  const cases: [string | undefined, string[] | undefined, Recorder, string][] = [
    ['api.example.com', undefined, api, 'exact'],
    ['API.example.com', ['h2'], api, 'exact, any case, before the ALPN route'],
    ['x.y.example.com', undefined, wild, 'wildcard'],
    ['other.test', ['http/1.1', 'h2'], h2, 'ALPN'],
    ['other.test', undefined, def, 'no route: the default group'],
    [undefined, undefined, def, 'no server name: the default group'],
  ]
  for (const [name, alpn, want, what] of cases) {
    const got = want.next()
    hello(t, port, name, alpn)
    let timer: NodeJS.Timeout | undefined
    const bytes = await Promise.race([got, new Promise<Buffer>((_, rej) => (timer = setTimeout(() => rej(new Error(`${what}: nothing`)), WAIT_MS)))])
    clearTimeout(timer)
    const parsed = parseClientHello(bytes)
    t.equal(parsed.kind === 'hello' && parsed.serverName, name?.toLowerCase(), `${what}: the hello arrived there whole`)
  }
  t.same([def, api, wild, h2].map((r) => r.accepted), [2, 2, 1, 1], 'each group got exactly its clients')
})

t.test('a failover picks the next backend of the same group', async (t) => {
  const [def, api] = [await recorder(t), await recorder(t)]
  const balancer = await start(t, {
    backends: [b(undefined, def.port), b('api', await deadPort()), b('api', api.port)],
    balance: 'first',
    tls: { routes: [{ serverName: 'api.example.com', group: 'api' }] },
  })
  const got = api.next()
  hello(t, balancer.address().port, 'api.example.com')
  await got
  t.equal(def.accepted, 0, 'never the default group')
  t.equal(balancer.counters().connectErrors, 1, 'the dead one was tried first')
})

t.test('refusals: no hello in time, plain text, garbage, too large, counted per reason', async (t) => {
  const def = await recorder(t)
  const balancer = await start(t, {
    backends: [b(undefined, def.port)],
    tls: { helloTimeout: 200, maxHelloBytes: 1024 },
  })
  const port = balancer.address().port
  const l = balancer.frontends[0]!
  const closed = (s: net.Socket): Promise<unknown> => once(s, 'close')

  const silent = net.connect(port, '127.0.0.1')
  silent.on('error', () => {})
  const started = Date.now()
  await closed(silent)
  t.ok(Date.now() - started >= 150, 'a silent client is closed at the hello timeout, not before')

  const plain = net.connect(port, '127.0.0.1', () => plain.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n'))
  plain.on('error', () => {})
  await closed(plain)

  const bad = net.connect(port, '127.0.0.1', () => bad.write(Buffer.from([0x16, 3, 1, 0, 4, 2, 0, 0, 0])))
  bad.on('error', () => {})
  await closed(bad)

  const big = tls.connect({ host: '127.0.0.1', port, servername: 'a.example', ALPNProtocols: Array.from({ length: 100 }, (_, i) => `protocol-${i}`) })
  big.on('error', () => {})
  await closed(big)

  const c = l.refusals.counts
  t.same(
    ['tls-hello-timeout', 'tls-not-tls', 'tls-malformed', 'tls-too-large'].map((r) => c.get(r) ?? 0),
    [1, 1, 1, 1],
    'one of each reason'
  )
  t.equal(def.accepted, 0, 'none of them reached a backend')
  t.equal(l.active, 0, 'no session left behind')
})

t.test('nonTls: default sends plain text to the default group', async (t) => {
  const [def, api] = [await recorder(t), await recorder(t)]
  const balancer = await start(t, {
    backends: [b(undefined, def.port), b('api', api.port)],
    tls: { nonTls: 'default', routes: [{ serverName: 'api.example.com', group: 'api' }] },
  })
  const got = def.next()
  const plain = net.connect(balancer.address().port, '127.0.0.1', () => plain.write('PING\r\n'))
  plain.on('error', () => {})
  t.teardown(() => plain.destroy())
  t.equal((await got).toString(), 'PING\r\n', 'passed on as it came')
  t.equal(def.accepted, 1)
  t.equal(api.accepted, 0)
})

t.test('a reload changes the routes and groups for new clients', async (t) => {
  const [def, api, web] = [await recorder(t), await recorder(t), await recorder(t)]
  const listener = (routes: { serverName: string; group: string }[], backends: unknown[]) => ({
    listeners: [{ name: 'tls', listen: '127.0.0.1:0', dataPlane: 'js' as const, backends, tls: { routes } }],
    log: { level: 'silent' as const },
  })
  const balancer = createBalancer(listener([{ serverName: 'api.example.com', group: 'api' }], [b(undefined, def.port), b('api', api.port)]))
  await balancer.listen()
  t.teardown(() => balancer.close(0))
  const port = balancer.address('tls').port
  let got = api.next()
  hello(t, port, 'api.example.com')
  await got
  const next = listener([{ serverName: 'api.example.com', group: 'web' }], [b(undefined, def.port), b('web', web.port)])
  next.listeners[0]!.listen = `127.0.0.1:${port}`
  await balancer.reload(next)
  got = web.next()
  hello(t, port, 'api.example.com')
  await got
  t.same([def.accepted, api.accepted, web.accepted], [0, 1, 1], 'the new route, to the new group')
})
