/**
 * Every wait is bounded (issue 10 §2, DESIGN.md): idleness is not the only way to hold a
 * connection. A client that trickles a request head, sends nothing at all, or half-closes and
 * lingers is closed at its bound by the listener's sweep, counted, and never counted against a
 * backend; normal clients are served throughout; the process's memory stays bounded.
 */
import net, { type Socket } from 'node:net'
import t from 'tap'
import { oneListener, scope } from '../helpers/balancer.js'
import { HOST, TestServer } from '../helpers/servers.js'
import { until, within } from '../helpers/wait.js'

const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'

/** Answers each whole request head (no bodies) with OK; ends when the client ends. */
function httpServer(): TestServer {
  return new TestServer('http', (socket: Socket) => {
    let buf = ''
    socket.on('end', () => socket.end())
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => {
      buf += d
      for (let end = buf.indexOf('\r\n\r\n'); end >= 0; end = buf.indexOf('\r\n\r\n')) {
        buf = buf.slice(end + 4)
        socket.write(OK)
      }
    })
  })
}

/** One keep-alive request/response through Baton; resolves with the response text. */
function get(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: HOST, port })
    let got = ''
    s.setEncoding('latin1')
    s.on('connect', () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))
    s.on('data', (d: string) => {
      got += d
      if (got.length >= OK.length) {
        s.destroy()
        resolve(got)
      }
    })
    s.on('error', reject)
  })
}

t.test(
  '2,000 clients trickling request heads are closed at requestTimeout; normal clients served',
  async (t) => {
    const s = scope(t)
    const backend = await s.server(httpServer().listen())
    const { balancer, port } = await s.balancer(
      oneListener([backend], { protocol: 'http1', requestTimeout: 400, clientTimeout: 60_000 })
    )
    const N = 2000
    const heapBefore = process.memoryUsage().heapUsed
    const trickle = 'GET / HTTP/1.1\r\nHost: x\r\nX-Slow: '
    let closed = 0
    let got408 = 0
    let latest = 0
    const sockets: Socket[] = []
    const timers: NodeJS.Timeout[] = []
    const allClosed = new Promise<void>((resolve) => {
      for (let i = 0; i < N; i++) {
        const c = net.connect({ host: HOST, port })
        sockets.push(c)
        let pos = 0
        let text = ''
        c.setEncoding('latin1')
        c.on('data', (d: string) => (text += d))
        c.on('error', () => {})
        c.on('connect', () => {
          // One byte every 50 ms, forever: the head never completes.
          const timer = setInterval(() => {
            if (c.destroyed) return clearInterval(timer)
            c.write(trickle[pos % trickle.length]!)
            pos++
          }, 50)
          timers.push(timer)
        })
        const opened = Date.now()
        c.on('close', () => {
          latest = Math.max(latest, Date.now() - opened)
          if (text.startsWith('HTTP/1.1 408 ')) got408++
          if (++closed === N) resolve()
        })
      }
    })
    t.teardown(() => {
      for (const tm of timers) clearInterval(tm)
      for (const c of sockets) c.destroy()
    })
    // Normal clients are served while all of them trickle.
    await until(() => balancer.table.size >= N || closed > 0, 'the trickling clients connected')
    const heapDuring = process.memoryUsage().heapUsed
    const served: string[] = []
    for (let i = 0; i < 20; i++) served.push(await get(port))
    t.ok(
      served.every((r) => r === OK),
      'normal clients served during the trickle'
    )
    await within(allClosed, 'every trickling client closed', 30_000)
    t.equal(closed, N, 'every trickling client was closed')
    t.ok(got408 >= N * 0.95, `they were told why: 408 Request Timeout (${got408} of ${N})`)
    const c = balancer.frontends[0]!.counters
    t.ok(c.requestTimeouts >= N, `counted as request timeouts (${c.requestTimeouts})`)
    t.equal(c.serverFailures, 0, 'nothing counted against the backend')
    t.equal(balancer.frontends[0]!.backends[0]!.consecutiveFailures, 0, 'backend not blamed')
    await until(() => balancer.table.size === 0, 'every session gone')
    t.equal(await get(port), OK, 'a client after the trickle is served')
    t.ok(latest < 20_000, `closed at the bound, not at clientTimeout (60 s): the last after ${latest} ms`)
    // The test process holds the clients, Baton and the backend: under 32 KiB per slow client in all.
    t.ok(
      heapDuring - heapBefore < N * 32 * 1024,
      `heap bounded while they trickle: grew ${Math.round((heapDuring - heapBefore) / 1024)} KiB for ${N} slow clients`
    )
  }
)

t.test('a client that never sends its first byte is closed at firstByteTimeout', async (t) => {
  const s = scope(t)
  const backend = await s.server(httpServer().listen())
  const { balancer, port } = await s.balancer(
    oneListener([backend], { protocol: 'http1', firstByteTimeout: 200 })
  )
  const silent = s.client(port)
  await silent.connected()
  const started = Date.now()
  await within(silent.closed, 'silent client closed')
  t.ok(Date.now() - started >= 150, `closed after ${Date.now() - started} ms`)
  t.equal(balancer.frontends[0]!.counters.firstByteTimeouts, 1, 'counted')
  t.equal(await get(port), OK, 'a client that speaks is served')
})

t.test('opaque has no first-byte bound by default: a server-first protocol waits', async (t) => {
  const s = scope(t)
  const greeter = await s.server(
    new TestServer('greeter', (socket) => socket.write('220 hello\r\n')).listen()
  )
  const { balancer, port } = await s.balancer(oneListener([greeter]))
  t.equal(balancer.frontends[0]!.bounds.firstByte, 0, 'firstByte bound off for opaque')
  const c = await s.connect(port)
  t.equal(
    (await c.read(11)).toString(),
    '220 hello\r\n',
    'the greeting came through to a client that sent nothing'
  )
})

t.test('a half-closed session idle past halfClosedTimeout is closed', async (t) => {
  const s = scope(t)
  // A backend that keeps the connection open and never answers nor closes.
  const mute = await s.server(new TestServer('mute', () => {}).listen())
  const { balancer, port } = await s.balancer(
    oneListener([mute], { halfClosedTimeout: 200, clientTimeout: 60_000, serverTimeout: 60_000 })
  )
  const c = await s.connect(port, { allowHalfOpen: true })
  c.socket.write('bye')
  c.socket.end()
  const started = Date.now()
  await within(c.closed, 'half-closed session closed')
  t.ok(Date.now() - started >= 150, `closed after ${Date.now() - started} ms`)
  const counters = balancer.frontends[0]!.counters
  t.equal(counters.halfClosedTimeouts, 1, 'counted as a half-closed timeout')
  t.equal(counters.serverTimeouts, 1, 'the server owed the close: a server timeout')
})

t.test('resp: a command trickled past requestTimeout closes the client', async (t) => {
  const s = scope(t)
  // A server that waits for the whole command (it never comes).
  const redisish = await s.server(new TestServer('redis', () => {}).listen())
  const { balancer, port } = await s.balancer(
    oneListener([redisish], { protocol: 'resp', requestTimeout: 200 })
  )
  const c = await s.connect(port)
  c.socket.write('*1\r\n$4\r\nPI')
  await within(c.closed, 'client closed')
  t.equal(balancer.frontends[0]!.counters.requestTimeouts, 1, 'counted')
})

t.test('maxConnectionsPerSource refuses the next session from the same address', async (t) => {
  const s = scope(t)
  const backend = await s.server(httpServer().listen())
  const { balancer, port } = await s.balancer(
    oneListener([backend], { protocol: 'http1', maxConnectionsPerSource: 3 })
  )
  const held = [await s.connect(port), await s.connect(port), await s.connect(port)]
  await until(() => balancer.table.size === 3, 'three sessions')
  const fourth = await s.connect(port)
  await within(fourth.closed, 'fourth client refused')
  t.equal(balancer.frontends[0]!.counters.rejectedPerSource, 1, 'counted per reason')
  held[0]!.destroy()
  await until(() => balancer.table.size === 2, 'one left')
  t.equal(await get(port), OK, 'a slot freed: served again')
})
