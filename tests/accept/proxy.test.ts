/**
 * PROXY protocol end to end on loopback: `acceptProxy` (trusted sources only, strict, the carried
 * address used everywhere) and `sendProxy` (on every server connection: the first, a failover's
 * replacement, new or pooled).
 */
import type { Socket } from 'node:net'
import t from 'tap'
import { parseProxy } from '../../lib/accept/proxy/codec.js'
import type { ProxyHeader } from '../../lib/accept/proxy/types.js'
import { createSelector } from '../../lib/balancing/index.js'
import type { Balancer } from '../../lib/balancer.js'
import { oneListener, scope } from '../helpers/balancer.js'
import { frame, FrameParser, poolsFilled } from '../helpers/failover-servers.js'
import { echoServer, TestServer } from '../helpers/servers.js'
import { until, within } from '../helpers/wait.js'

/**
 * A backend that expects a PROXY header first on every connection (as nginx with `proxy_protocol`
 * does), records it, then answers each length-prefixed frame with `ok:` + body; with `resetOn`,
 * it resets the connection instead of answering that body.
 */
class ProxyFrameServer extends TestServer {
  readonly headers: ProxyHeader[] = []
  /** Connections that did not start with a valid header. */
  bad = 0
  resetOn: string | undefined
  constructor(name: string) {
    super(name, (socket: Socket) => this.serve(socket))
  }

  private serve(socket: Socket): void {
    let head: Buffer | undefined = Buffer.alloc(0)
    const frames = new FrameParser()
    socket.on('data', (chunk: Buffer) => {
      let rest = chunk
      if (head !== undefined) {
        head = Buffer.concat([head, chunk])
        const r = parseProxy(head)
        if (!r.ok && r.incomplete) return
        if (!r.ok) {
          this.bad++
          socket.destroy()
          return
        }
        this.headers.push(r.header)
        this.emit('header', r.header)
        rest = head.subarray(r.length)
        head = undefined
      }
      for (const body of frames.push(rest)) {
        if (body.toString() === this.resetOn) {
          socket.resetAndDestroy()
          return
        }
        socket.write(frame(Buffer.concat([Buffer.from('ok:'), body])))
      }
    })
    socket.on('end', () => socket.end())
  }
}

function proxyFrameServer(name: string): Promise<ProxyFrameServer> {
  return new ProxyFrameServer(name).listen()
}

/** Read one length-prefixed frame's body from `socket`. */
function readFrame(socket: Socket): Promise<string> {
  return within(
    new Promise<string>((resolve, reject) => {
      const parser = new FrameParser()
      const onData = (c: Buffer): void => {
        const [body] = parser.push(c)
        if (body === undefined) return
        socket.off('data', onData)
        socket.off('close', onClose)
        resolve(body.toString())
      }
      const onClose = (): void => reject(new Error('closed before a frame'))
      socket.on('data', onData)
      socket.once('close', onClose)
    }),
    'a response frame'
  )
}

const V1 = (src: string, sport: number): string => `PROXY TCP4 ${src} 127.0.0.1 ${sport} 80\r\n`

function refused(b: Balancer, reason: string): number {
  return b.frontends[0]!.refusals.counts.get(reason) ?? 0
}

t.test('a trusted header: its address is the client in the table, and the backend gets it in v2', async (t) => {
  const s = scope(t)
  const backend = await s.server(proxyFrameServer('pp'))
  const { balancer, port } = await s.balancer(
    oneListener([backend], {
      protocol: 'length-prefixed',
      acceptProxy: { from: ['127.0.0.0/8'] },
      sendProxy: 'v2',
    })
  )
  const c = await s.connect(port)
  // The header split across two writes, the request in the second.
  c.socket.write('PROXY TCP4 192.0.2.7 ')
  c.socket.write(Buffer.concat([Buffer.from('198.51.100.1 40000 8443\r\n'), frame('hello')]))
  t.equal(await readFrame(c.socket), 'ok:hello')
  t.equal(balancer.table.snapshot()[0]?.client, '192.0.2.7:40000', 'the table shows the real client')
  t.match(backend.headers[0], {
    version: 2,
    family: 'tcp4',
    sourceAddress: '192.0.2.7',
    sourcePort: 40000,
    destinationAddress: '198.51.100.1',
    destinationPort: 8443,
  })
  t.equal(backend.bad, 0)
})

t.test('v2 TLVs received are passed on in v2', async (t) => {
  const s = scope(t)
  const backend = await s.server(proxyFrameServer('pp'))
  const { port } = await s.balancer(
    oneListener([backend], { protocol: 'length-prefixed', acceptProxy: ['127.0.0.1'], sendProxy: 'v2' })
  )
  const { encodeV2 } = await import('../../lib/accept/proxy/codec.js')
  const header = encodeV2({
    sourceAddress: '2001:db8::7',
    sourcePort: 1234,
    destinationAddress: '2001:db8::1',
    destinationPort: 443,
    tlvs: [{ type: 0x02, value: Buffer.from('example.com') }],
  })
  const c = await s.connect(port)
  c.socket.write(Buffer.concat([header, frame('x')]))
  t.equal(await readFrame(c.socket), 'ok:x')
  t.equal(backend.headers[0]?.sourceAddress, '2001:db8::7')
  t.same(backend.headers[0]?.tlvs?.map((x) => [x.type, x.value.toString()]), [[2, 'example.com']], 'authority TLV kept')
})

t.test('from a trusted source: missing, malformed, slow or cut headers are refused, each counted', async (t) => {
  const s = scope(t)
  const backend = await s.server(echoServer())
  const { balancer, port } = await s.balancer(
    oneListener([backend], { acceptProxy: { from: ['127.0.0.1/32'], timeout: 300 } })
  )
  const cases: [string, (c: Socket) => void][] = [
    ['proxy-missing', (c) => c.write('GET / HTTP/1.1\r\n\r\n')],
    ['proxy-invalid', (c) => c.write('PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n')],
    ['proxy-too-long', (c) => c.write(`PROXY UNKNOWN ${'x'.repeat(120)}`)],
    ['proxy-timeout', () => {}],
    ['proxy-incomplete', (c) => c.end('PROXY TCP4 1.2')],
  ]
  for (const [reason, send] of cases) {
    const c = await s.connect(port)
    send(c.socket)
    await within(c.closed, `${reason}: client closed`)
    t.equal(refused(balancer, reason), 1, reason)
  }
  t.equal(backend.accepted, 0, 'no backend was ever picked')
  t.equal(balancer.frontends[0]!.active, 0)
})

t.test('from an untrusted source a header is refused; other clients pass', async (t) => {
  const s = scope(t)
  const backend = await s.server(proxyFrameServer('pp'))
  const { balancer, port } = await s.balancer(
    // 127.0.0.1 is not in the trusted list: every client here is untrusted.
    oneListener([backend], { protocol: 'length-prefixed', acceptProxy: ['10.0.0.0/8'], sendProxy: 'v1' })
  )
  const forged = await s.connect(port)
  forged.socket.write(`${V1('192.0.2.66', 1)}`)
  await within(forged.closed, 'forged header: closed')
  t.equal(refused(balancer, 'proxy-untrusted'), 1, 'counted')
  const plain = await s.connect(port)
  plain.socket.write(frame('plain'))
  t.equal(await readFrame(plain.socket), 'ok:plain', 'a client without a header is served')
  t.equal(backend.headers[0]?.sourceAddress, '127.0.0.1', 'and named to the backend by its socket address')
  t.equal(backend.headers[0]?.sourcePort, plain.socket.localPort)
})

t.test('source-hash and the access rules use the address from the header', async (t) => {
  const s = scope(t)
  const backends = [await s.server(echoServer('a')), await s.server(echoServer('b')), await s.server(echoServer('c'))]
  const { balancer, port } = await s.balancer(
    oneListener(backends, {
      balance: 'source-hash',
      acceptProxy: ['127.0.0.1'],
      deny: ['192.0.2.128/25'],
    })
  )
  // Addresses that source-hash sends to different backends, found with the same selector.
  const selector = createSelector('source-hash', balancer.frontends[0]!.backends)
  const byBackend = new Map<string, string>()
  for (let i = 1; i < 120 && byBackend.size < 2; i++) {
    const address = `192.0.2.${i}`
    const b = selector.pick({ source: address, avoid: undefined })!
    if (!byBackend.has(b.name)) byBackend.set(b.name, address)
  }
  t.equal(byBackend.size, 2, 'two addresses for two backends')
  for (const [name, address] of byBackend) {
    const c = await s.connect(port)
    c.socket.write(`${V1(address, 1000)}ping`)
    t.equal((await c.read(4)).toString(), 'ping')
    const entry = balancer.table.snapshot().find((e) => e.client === `${address}:1000`)
    t.equal(entry?.backend, name, `${address} went where source-hash sends it`)
    c.destroy()
  }
  const denied = await s.connect(port)
  denied.socket.write(`${V1('192.0.2.200', 1000)}ping`)
  await within(denied.closed, 'denied by its real address')
  t.equal(refused(balancer, 'deny-list'), 1)
})

for (const handoff of ['new', 'pooled'] as const) {
  t.test(`failover with sendProxy: the replacement connection (${handoff}) starts with the header`, async (t) => {
    const s = scope(t)
    const a = await s.server(proxyFrameServer('a'))
    const b = await s.server(proxyFrameServer('b'))
    a.resetOn = 'two'
    const { balancer, port } = await s.balancer(
      oneListener([a, b], {
        protocol: 'length-prefixed',
        balance: 'first',
        acceptProxy: ['127.0.0.1'],
        sendProxy: 'v1',
        pool: { idle: handoff === 'pooled' ? 2 : 0 },
      })
    )
    if (handoff === 'pooled') await poolsFilled(balancer, [0, 1])
    const c = await s.connect(port)
    c.socket.write(Buffer.concat([Buffer.from(V1('192.0.2.9', 5555)), frame('one')]))
    t.equal(await readFrame(c.socket), 'ok:one', 'served by a')
    c.socket.write(frame('two'))
    t.equal(await readFrame(c.socket), 'ok:two', 'a reset on "two": answered by b, the client saw nothing')
    const l = balancer.frontends[0]!
    t.equal(l.counters.failovers, 1, 'one failover')
    t.equal(handoff === 'pooled' ? l.counters.handoffsPooled : l.counters.handoffsNew, 1, `over a ${handoff} connection`)
    await until(() => b.headers.length >= 1, 'b saw a header')
    // A pooled connection that was never taken got no header (it carried nothing).
    t.equal(b.headers.length, 1, 'one header at b: the connection that was taken')
    t.equal(b.bad, 0, 'every connection at b that carried bytes started with a header')
    for (const h of [a.headers[0], b.headers[0]])
      t.match(h, { version: 1, sourceAddress: '192.0.2.9', sourcePort: 5555 }, 'naming the real client')
    c.socket.write(frame('three'))
    t.equal(await readFrame(c.socket), 'ok:three', 'the session goes on at b')
  })
}

t.test('pool.reuse never gives a connection that carried a PROXY header to another client', async (t) => {
  const s = scope(t)
  const backend = await s.server(proxyFrameServer('pp'))
  const { balancer, port } = await s.balancer(
    oneListener([backend], {
      protocol: 'length-prefixed',
      sendProxy: 'v2',
      pool: { idle: 1, reuse: true },
    })
  )
  await poolsFilled(balancer, [0], 1)
  const ports: number[] = []
  for (let i = 0; i < 3; i++) {
    const c = await s.connect(port, { allowHalfOpen: true })
    c.socket.write(frame(`c${i}`))
    t.equal(await readFrame(c.socket), `ok:c${i}`)
    ports.push(c.socket.localPort!)
    c.socket.end()
    await within(c.closed, 'client done')
  }
  t.same(
    backend.headers.map((h) => h.sourcePort),
    ports,
    'each client got a connection (and a header) of its own'
  )
})

t.test('without acceptProxy a header is only data: nothing is parsed (no pipeline)', async (t) => {
  const s = scope(t)
  const backend = await s.server(echoServer())
  const { balancer, port } = await s.balancer(oneListener([backend]))
  t.equal((balancer.frontends[0] as unknown as { pipeline: unknown }).pipeline, undefined, 'no pipeline at all')
  const c = await s.connect(port)
  c.socket.write(V1('192.0.2.1', 1))
  t.equal((await c.read(V1('192.0.2.1', 1).length)).toString(), V1('192.0.2.1', 1))
})
