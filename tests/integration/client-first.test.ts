/**
 * Client-first stateful protocols through an opaque listener (issue 13, item 3), with real peers:
 * Node's TLS server and client, Node's http2 server and client, and a PostgreSQL server replaying a
 * startup exchange recorded from PostgreSQL 15 (tests/interop/postgres.test.ts runs the real one).
 *
 * Once the server has answered the handshake the session is pinned: a server that then fails with a
 * request unanswered is passed on as a plain proxy would, and nothing is re-sent to another backend
 * (it never saw the handshake). Before that first answer byte, the handshake itself is re-sent.
 */
import http2 from 'node:http2'
import net, { type Socket } from 'node:net'
import tls from 'node:tls'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { createBalancer, type Balancer } from '../../lib/index.js'
import { once, WAIT_MS } from '../helpers/wait.js'
import { loadNativePlane } from '../../lib/native/plane.js'

/** A TCP server that counts connections and keeps every byte it read. */
function recorder(onData: (s: Socket, chunk: Buffer) => void): Promise<{ server: net.Server; port: number; accepted: () => number; bytes: () => number }> {
  let accepted = 0
  let bytes = 0
  const server = net.createServer((s) => {
    accepted++
    s.on('error', () => {})
    s.on('data', (c: Buffer) => {
      bytes += c.length
      onData(s, c)
    })
  })
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, port: (server.address() as net.AddressInfo).port, accepted: () => accepted, bytes: () => bytes })
    )
  )
}

async function balancerFor(t: Test, ports: number[], extra: Record<string, unknown> = {}): Promise<Balancer> {
  const balancer = createBalancer({
    listeners: [
      {
        listen: '127.0.0.1:0',
        backends: ports.map((p) => `127.0.0.1:${p}`),
        balance: 'first',
        dataPlane: 'js',
        passive: { failures: 100 },
        ...extra,
      },
    ],
    log: { level: 'silent' },
  })
  await balancer.listen()
  t.teardown(() => balancer.close(0))
  return balancer
}


/** A throwaway self-signed key and certificate (openssl is not needed: node:crypto has no x509 maker, so one is made once here). */
function selfSigned(): { key: string; cert: string } | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'baton-cf-'))
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=a.example', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem')], { stdio: 'ignore' })
    return { key: readFileSync(join(dir, 'k.pem'), 'utf8'), cert: readFileSync(join(dir, 'c.pem'), 'utf8') }
  } catch {
    return undefined
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * The planes and listener setups the TLS case runs on. On the native plane the handshake is seen
 * only in the bytes held before the backend connect, which the TLS routing stage guarantees.
 */
const TLS_SETUPS: [string, Record<string, unknown>][] = [
  ['js plane', {}],
  ['js plane, tls routing', { tls: {} }],
  ...(loadNativePlane().plane !== undefined ? [['native plane, tls routing', { dataPlane: 'native', tls: {} }] as [string, Record<string, unknown>]] : []),
]

for (const [setup, extra] of TLS_SETUPS) t.test(`TLS (${setup}): the ClientHello is re-sent before the ServerHello; after it the session is pinned`, async (t) => {
  const creds = selfSigned()
  if (creds === undefined) return void t.pass('TLS through Baton', { skip: 'openssl is needed once to make a certificate' })
  // The first backend reads the hello and resets: the hello goes to the second, unseen by the client.
  const resetter = await recorder((s) => s.resetAndDestroy())
  t.teardown(() => resetter.server.close())
  let tlsAccepted = 0
  const server = tls.createServer(creds, (s) => {
    s.on('error', () => {})
    s.on('data', (c: Buffer) => {
      if (c.toString() === 'ping') s.write('pong')
      else s.destroy() // dies with the request unanswered
    })
  })
  server.on('connection', () => tlsAccepted++)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => server.close())
  const balancer = await balancerFor(t, [resetter.port, (server.address() as net.AddressInfo).port], extra)

  const client = tls.connect({ host: '127.0.0.1', port: balancer.address().port, servername: 'a.example', rejectUnauthorized: false })
  const errors: Error[] = []
  client.on('error', (e) => errors.push(e))
  await once(client, 'secureConnect')
  t.equal(balancer.counters().failovers, 1, 'the hello was re-sent to the second backend')
  client.write('ping')
  const [pong] = await once<[Buffer]>(client, 'data')
  t.equal(pong.toString(), 'pong', 'the handshake completed with the server that got the re-sent hello')
  client.write('die')
  await once(client, 'close')
  t.equal(resetter.accepted(), 1, 'nothing re-sent after the handshake: the first backend saw one connection only')
  t.equal(tlsAccepted, 1)
  t.equal(balancer.counters().failovers, 1, 'no second failover')
  t.same(errors.filter((e) => !/ECONNRESET|socket hang up/.test(e.message)).map((e) => e.message), [], 'no TLS error from foreign bytes')
})

t.test('HTTP/2 with prior knowledge: pinned; a server that dies mid-request is passed on', async (t) => {
  let aSessions = 0
  let bConnections = 0
  const a = http2.createServer()
  const raw: Socket[] = []
  a.on('connection', (s: Socket) => raw.push(s))
  a.on('session', () => aSessions++)
  a.on('stream', (stream, headers) => {
    if (headers[':path'] === '/ok') return stream.respond({ ':status': 200 }), stream.end('ok')
    for (const s of raw) s.destroy() // dies with the request unanswered
  })
  const b = net.createServer((s) => {
    bConnections++
    s.destroy()
  })
  await Promise.all([a, b].map((s) => new Promise<void>((r) => s.listen(0, '127.0.0.1', r))))
  t.teardown(() => (a.close(), b.close()))
  const balancer = await balancerFor(t, [(a.address() as net.AddressInfo).port, (b.address() as net.AddressInfo).port])

  const session = http2.connect(`http://127.0.0.1:${balancer.address().port}`)
  session.on('error', () => {})
  t.teardown(() => session.destroy())
  const ok = session.request({ ':path': '/ok' })
  ok.setEncoding('utf8')
  let body = ''
  ok.on('data', (d: string) => (body += d))
  await once(ok, 'end')
  t.equal(body, 'ok', 'h2 through Baton')
  const hang = session.request({ ':path': '/die' })
  hang.on('error', () => {})
  hang.resume()
  await once(session, 'close')
  t.equal(bConnections, 0, 'nothing re-sent: the other backend never saw a connection')
  t.equal(aSessions, 1)
  t.equal(balancer.counters().failovers, 0)
})

/** PostgreSQL 15's answer to a trust-auth StartupMessage: AuthenticationOk, ParameterStatus × 14, BackendKeyData, ReadyForQuery (recorded). */
const PG_STARTUP_REPLY = Buffer.from(
  '520000000800000000530000001a6170706c69636174696f6e5f6e616d65007073716c005300000019636c69656e745f656e636f64696e670055544638005300000017446174655374796c650049534f2c204d445900530000002664656661756c745f7472616e73616374696f6e5f726561645f6f6e6c79006f6666005300000017696e5f686f745f7374616e646279006f6666005300000019696e74656765725f6461746574696d6573006f6e00530000001b496e74657276616c5374796c6500706f73746772657300530000001469735f737570657275736572006f6e0053000000197365727665725f656e636f64696e6700555446380053000000327365727665725f76657273696f6e0031352e3138202844656269616e2031352e31382d302b646562313275312900530000002073657373696f6e5f617574686f72697a6174696f6e006261746f6e0053000000237374616e646172645f636f6e666f726d696e675f737472696e6773006f6e00530000001554696d655a6f6e65004574632f555443004b0000000c00004cb1f5adfdac5a0000000549',
  'hex'
)

function startup(): Buffer {
  const params = Buffer.from('user\0baton\0database\0postgres\0application_name\0psql\0\0', 'latin1')
  const b = Buffer.alloc(8 + params.length)
  b.writeUInt32BE(b.length, 0)
  b.writeUInt32BE(0x00030000, 4)
  params.copy(b, 8)
  return b
}

function query(sql: string): Buffer {
  const text = Buffer.from(sql + '\0')
  const b = Buffer.alloc(5 + text.length)
  b[0] = 0x51 // 'Q'
  b.writeUInt32BE(4 + text.length, 1)
  text.copy(b, 5)
  return b
}

t.test('PostgreSQL (recorded startup): pinned once the server answered the startup', async (t) => {
  // Backend A answers the startup as PostgreSQL 15 did, then dies on the first query unanswered.
  const a = await recorder((s, c) => {
    if (c.readUInt32BE(4) === 0x00030000) s.write(PG_STARTUP_REPLY)
    else s.destroy()
  })
  const b = await recorder(() => {})
  t.teardown(() => (a.server.close(), b.server.close()))
  const balancer = await balancerFor(t, [a.port, b.port])
  const client = net.connect(balancer.address().port, '127.0.0.1')
  client.on('error', () => {})
  client.write(startup())
  let got = 0
  client.on('data', (c: Buffer) => {
    got += c.length
    if (got === PG_STARTUP_REPLY.length) client.write(query('SELECT 1'))
  })
  const [ended] = await Promise.race([
    once<[]>(client, 'end').then(() => ['end']),
    once<[]>(client, 'close').then(() => ['close']),
  ])
  t.ok(ended, 'the client saw its server go')
  t.equal(got, PG_STARTUP_REPLY.length, 'the client got the startup answer and nothing more')
  t.equal(b.accepted(), 0, 'the query was not re-sent to a server that never saw the startup')
  t.equal(balancer.counters().failovers, 0)
  client.destroy()
})

t.test('PostgreSQL (recorded startup): the startup itself is re-sent before any answer', async (t) => {
  const a = await recorder((s) => s.resetAndDestroy())
  const b = await recorder((s, c) => {
    if (c.readUInt32BE(4) === 0x00030000) s.write(PG_STARTUP_REPLY)
  })
  t.teardown(() => (a.server.close(), b.server.close()))
  const balancer = await balancerFor(t, [a.port, b.port])
  const client = net.connect(balancer.address().port, '127.0.0.1')
  client.on('error', () => {})
  t.teardown(() => client.destroy())
  client.write(startup())
  let got = 0
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no startup answer')), WAIT_MS)
    client.on('data', (c: Buffer) => {
      got += c.length
      if (got >= PG_STARTUP_REPLY.length) clearTimeout(timer), resolve()
    })
  })
  t.equal(got, PG_STARTUP_REPLY.length)
  t.equal(a.accepted(), 1)
  t.equal(b.bytes(), startup().length, 'the second backend got the startup, whole')
  t.equal(balancer.counters().failovers, 1)
})
