/**
 * The plane's own accepts (`listen`, `unlisten`, `resumeAccept`, `closeAccepted`, `takeAccepted`;
 * docs/native-plane.md, "Accepts"): a client accepted by the plane carries a session both ways with
 * no Node socket on either side, its address comes from accept4, a refused one is closed, one
 * taken becomes an ordinary Node socket, and an accept that fails for want of descriptors pauses
 * the listening socket (clients wait in the kernel's queue) until `resumeAccept`. The client-first
 * handshake is told by the plane from the bytes it reads itself. Skipped when the addon is not
 * built.
 */
import { spawn } from 'node:child_process'
import net from 'node:net'
import t, { type Test } from 'tap'
import { bindHandle, type NativeHandle } from '../../lib/fleet/inherit.js'
import type { PlaneAccepted, PlaneConnection, PlaneEvent } from '../../lib/native/plane.js'
import { ensureBuilt, ROOT } from '../helpers/cli.js'
import { connectClient, type Client } from '../helpers/clients.js'
import { echoServer, hangServer, HOST } from '../helpers/servers.js'
import { until, within } from '../helpers/wait.js'
import { openFds, skip, thePlane } from './helpers/native-proxy.js'

interface Accepted {
  client: PlaneAccepted
  address: string
  port: number
}

/** A socket the plane accepts on: what it accepted and the failures it reported, in order. */
function planeListener(): {
  port: number
  fd: number
  accepted: Accepted[]
  failures: string[]
  close(): void
} {
  const plane = thePlane()
  const handle: NativeHandle = bindHandle({ host: HOST, port: 0 })
  const out: Record<string, unknown> = {}
  handle.getsockname?.(out)
  const accepted: Accepted[] = []
  const failures: string[] = []
  plane.listen(handle.fd, 511, (client, _errno, code, address, port) => {
    if (client === undefined) failures.push(code)
    else accepted.push({ client, address, port })
  })
  let closed = false
  return {
    port: out.port as number,
    fd: handle.fd,
    accepted,
    failures,
    close() {
      if (closed) return
      closed = true
      plane.unlisten(handle.fd)
      handle.close()
    },
  }
}

/**
 * A socket the plane accepts on and one client it accepted (both closed when the test ends):
 * `a` is what the plane reported for it.
 */
async function acceptOne(
  t: Test,
  what: string
): Promise<{ front: ReturnType<typeof planeListener>; client: Client; a: Accepted }> {
  const front = planeListener()
  t.teardown(() => front.close())
  const client = await connectClient(front.port)
  t.teardown(() => client.destroy())
  await until(() => front.accepted.length === 1, what)
  return { front, client, a: front.accepted[0]! }
}

/** A plane connect to `port`, resolved once connected. */
async function planeConnect(port: number): Promise<PlaneConnection> {
  return within(
    new Promise<PlaneConnection>((resolve, reject) => {
      thePlane().connect(4, HOST, port, (c, errno, code) =>
        errno === 0 ? resolve(c) : reject(new Error(`connect ${code}`))
      )
    }),
    'the plane connected'
  )
}

t.test(
  'a client the plane accepted carries a session both ways, no Node socket on either side',
  { skip },
  async (t) => {
    const plane = thePlane()
    const echo = await echoServer('echo')
    t.teardown(() => echo.close())
    const { client, a } = await acceptOne(t, 'the plane accepted')
    t.equal(a.address, '127.0.0.1', 'the address from accept4')
    t.equal(a.port, client.socket.localPort, "the client's own port")

    const connection = await planeConnect(echo.port)
    const events: PlaneEvent[] = []
    const handle = plane.attachConnected(a.client, connection, (e) => events.push(e))
    t.teardown(() => plane.close(handle))
    const reply = await client.roundTrip(Buffer.from('accepted and connected by the plane'))
    t.equal(reply.toString(), 'accepted and connected by the plane', 'a round trip')
    t.throws(
      () => plane.takeAccepted(a.client),
      { code: 'ERR_INVALID_ARG_VALUE' },
      'the attach took the client: it is no longer there to take'
    )
    client.socket.end()
    await until(() => events.some((e) => e.type === 'close'), 'the session closes after the FINs')
  }
)

t.test('an accepted client is closed by closeAccepted, or taken as a Node socket', { skip }, async (t) => {
  const plane = thePlane()
  const front = planeListener()
  t.teardown(() => front.close())
  const base = openFds()

  const refused = await connectClient(front.port)
  t.teardown(() => refused.destroy())
  await until(() => front.accepted.length === 1, 'the plane accepted')
  plane.closeAccepted(front.accepted[0]!.client)
  const end = await within(refused.closed, 'the refused client sees its connection end')
  t.ok(end.ended || end.error !== undefined, `closed (${end.error ?? 'FIN'})`)
  await until(() => openFds() === base, 'the accepted descriptor is closed')
  plane.closeAccepted(front.accepted[0]!.client) // a second close is a no-op
  t.equal(openFds(), base, 'a second closeAccepted closes nothing else')

  const taken = await connectClient(front.port)
  t.teardown(() => taken.destroy())
  await until(() => front.accepted.length === 2, 'the plane accepted again')
  const fd = plane.takeAccepted(front.accepted[1]!.client)
  const socket = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true })
  t.teardown(() => socket.destroy())
  socket.on('data', (d) => socket.write(d)) // an echo on the Node socket
  t.equal(socket.remotePort, taken.socket.localPort, 'the Node socket knows its peer')
  const reply = await taken.roundTrip(Buffer.from('a Node socket after all'))
  t.equal(reply.toString(), 'a Node socket after all', 'a round trip through the Node socket')
  t.throws(
    () => plane.takeAccepted(front.accepted[1]!.client),
    { code: 'ERR_INVALID_ARG_VALUE' },
    'taken once'
  )
})

t.test(
  'an accepted client that resets before its attach is reported once; a FIN alone is not',
  { skip },
  async (t) => {
    const plane = thePlane()
    const front = planeListener()
    t.teardown(() => front.close())
    const gone: string[] = []
    const halfClosed = await connectClient(front.port, { allowHalfOpen: true })
    t.teardown(() => halfClosed.destroy())
    const resetting = await connectClient(front.port)
    await until(() => front.accepted.length === 2, 'both accepted')
    for (const a of front.accepted)
      plane.watchAccepted(a.client, (c, _errno, code) =>
        gone.push(`${c === a.client ? a.port : '?'} ${code}`)
      )
    halfClosed.socket.end()
    resetting.socket.resetAndDestroy()
    await until(() => gone.length === 1, 'the reset reported')
    t.same(gone, [`${front.accepted[1]!.port} ECONNRESET`], 'the reset client, ECONNRESET')
    // The half-closed client is still there to attach: a session carries its answer back.
    const echo = await echoServer('echo')
    t.teardown(() => echo.close())
    const events: PlaneEvent[] = []
    const handle = plane.attachConnected(front.accepted[0]!.client, await planeConnect(echo.port), (e) =>
      events.push(e)
    )
    t.teardown(() => plane.close(handle))
    await until(
      () => events.some((e) => e.type === 'client-eof' && e.stats.finSentToServer),
      'the FIN went on to the server'
    )
    t.equal(gone.length, 1, 'the FIN was not reported as gone')
    for (const a of front.accepted.slice(1)) plane.closeAccepted(a.client)
  }
)

t.test(
  "unlisten: nothing more is accepted, and the listening socket stays the caller's",
  { skip },
  async (t) => {
    const plane = thePlane()
    const { front, a } = await acceptOne(t, 'accepted while listening')
    plane.closeAccepted(a.client)
    plane.unlisten(front.fd)
    // Still bound and listening in the kernel (the caller closes it): a connect completes in the
    // queue, and nobody accepts it.
    const queued = await connectClient(front.port)
    t.teardown(() => queued.destroy())
    await queued.connected()
    // Another socket's accept goes through the same epoll wake-ups: once it is in, an accept on the
    // unlistened socket would have been too.
    const other = planeListener()
    t.teardown(() => other.close())
    const probe = await connectClient(other.port)
    t.teardown(() => probe.destroy())
    await until(() => other.accepted.length === 1, 'the other socket accepted')
    plane.closeAccepted(other.accepted[0]!.client)
    t.equal(front.accepted.length, 1, 'no accept after unlisten')
    front.close()
    await within(queued.closed, 'the queued client is reset when the caller closes the socket')
    const refused = net.connect({ host: HOST, port: front.port })
    const code = await new Promise<string>((r) =>
      refused.once('error', (e: NodeJS.ErrnoException) => r(e.code ?? ''))
    )
    t.equal(code, 'ECONNREFUSED', 'closed by the caller: refused')
  }
)

t.test(
  "an attach that throws on the server side leaves the accepted client the caller's",
  { skip },
  async (t) => {
    const plane = thePlane()
    const { client, a } = await acceptOne(t, 'the plane accepted')
    // A server socket with no descriptor: the attach refuses it before taking anything.
    t.throws(() => plane.attach(a.client, new net.Socket(), () => undefined), {
      code: 'ERR_NATIVE_PLANE_SOCKET',
    })
    const fd = plane.takeAccepted(a.client)
    const socket = new net.Socket({ fd, readable: true, writable: true })
    t.teardown(() => socket.destroy())
    socket.on('data', (d) => socket.write(d))
    const reply = await client.roundTrip(Buffer.from("still the caller's"))
    t.equal(reply.toString(), "still the caller's", 'the client is still there to take, and works')
  }
)

t.test('the plane tells a client-first handshake from the bytes it reads itself', { skip }, async (t) => {
  const plane = thePlane()
  const hang = await hangServer()
  t.teardown(() => hang.close())
  // A TLS record header carrying a ClientHello (16 03 01, length 0x00c8, type 01), then filler.
  const hello = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, 0xc8, 0x01]), Buffer.alloc(40, 7)])
  const cases: [string, Buffer, boolean, boolean][] = [
    ['a TLS ClientHello, copied reads', hello, true, true],
    ['a TLS ClientHello, spliced reads', hello, false, true],
    [
      'the HTTP/2 preface in two pieces, copied reads',
      Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
      true,
      true,
    ],
    // PostgreSQL: an SSLRequest (length 8, code 80877103), and a 3.0 StartupMessage.
    ['a PostgreSQL SSLRequest, copied reads', Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]), true, true],
    [
      'a PostgreSQL StartupMessage, spliced reads',
      Buffer.concat([Buffer.from([0, 0, 0, 18, 0, 3, 0, 0]), Buffer.from('user\0bob\0\0', 'latin1')]),
      false,
      true,
    ],
    ['a plain request, copied reads', Buffer.from('GET / HTTP/1.1\r\n\r\n'), true, false],
    ['a plain request, spliced reads', Buffer.from('GET / HTTP/1.1\r\n\r\n'), false, false],
  ]
  for (const [what, bytes, copyReads, expected] of cases) {
    plane.configure({ copyReads })
    const front = planeListener()
    const client = await connectClient(front.port)
    await until(() => front.accepted.length === 1, 'accepted')
    const connection = await planeConnect(hang.port)
    const handle = plane.attachConnected(front.accepted[0]!.client, connection, () => undefined, {
      replayBytes: 65536,
    })
    // After the attach: only the plane sees these bytes.
    if (what.includes('two pieces')) {
      client.socket.write(bytes.subarray(0, 5))
      await until(() => plane.stats(handle)?.bytesFromClient === 5, 'the first piece read')
      client.socket.write(bytes.subarray(5))
    } else {
      client.socket.write(bytes)
    }
    await until(() => plane.stats(handle)?.bytesFromClient === bytes.length, `${what}: read by the plane`)
    t.equal(plane.stats(handle)?.clientFirst, expected, `${what}: clientFirst ${expected}`)
    plane.close(handle)
    client.destroy()
    front.close()
  }
  plane.configure({ copyReads: true })
})

t.test(
  'out of descriptors, the plane stops accepting until resumeAccept; queued clients are then served',
  { skip },
  async (t) => {
    ensureBuilt((text) => t.comment(text))
    // A child process under a low descriptor limit fills its table, lets clients connect, and
    // reports what the plane said.
    const child = spawn(
      'bash',
      ['-c', 'ulimit -n 128 && exec "$0" "$@"', process.execPath, '--input-type=module', '-e', CHILD],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'inherit'],
      }
    )
    t.teardown(() => child.kill('SIGKILL'))
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    const lines = (): string[] => out.split('\n').filter((l) => l.length > 0)
    await until(() => lines().some((l) => l.startsWith('port ')), 'the child listens', { timeoutMs: 20_000 })
    const port = Number(
      lines()
        .find((l) => l.startsWith('port '))!
        .slice(5)
    )
    const clients = await Promise.all([0, 1, 2].map(() => connectClient(port)))
    t.teardown(() => clients.forEach((c) => c.destroy()))
    await until(() => lines().some((l) => l.startsWith('failed ')), 'the plane reported the failed accept')
    t.ok(lines().includes('failed EMFILE'), 'the failure is EMFILE')
    // The child frees its descriptors and resumes: the three clients waited in the queue.
    await until(
      () => lines().filter((l) => l.startsWith('accepted ')).length === 3,
      'all three accepted after resume'
    )
    for (const c of clients) {
      const reply = await c.roundTrip(Buffer.from('served after all'))
      t.equal(reply.toString(), 'served after all', 'a queued client is served')
    }
    t.equal(
      lines().filter((l) => l.startsWith('failed ')).length,
      1,
      'one failure reported: the socket stayed paused'
    )
  }
)

/** The child of the test above (the built dist/, as the CLI tests use). */
const CHILD = `
import net from 'node:net'
import { openSync, closeSync } from 'node:fs'
import { loadNativePlane } from './dist/native/plane.js'
import { bindHandle } from './dist/fleet/inherit.js'
const plane = loadNativePlane().plane
const handle = bindHandle({ host: '127.0.0.1', port: 0 })
const out = {}
handle.getsockname(out)
const fillers = []
plane.listen(handle.fd, 16, (client, errno, code) => {
  if (client === undefined) {
    console.log('failed ' + code)
    for (const f of fillers.splice(0)) closeSync(f)
    plane.resumeAccept(handle.fd)
    return
  }
  console.log('accepted ' + client)
  const s = new net.Socket({ fd: plane.takeAccepted(client), readable: true, writable: true })
  s.on('data', (d) => s.write(d))
  s.on('error', () => {})
})
try {
  for (let i = 0; i < 1000; i++) fillers.push(openSync('/dev/null', 'r'))
} catch {}
console.log('port ' + out.port)
`
