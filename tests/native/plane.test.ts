/**
 * The native plane's data path on real loopback sockets: the hand-off (dup, then destroy, sends no
 * FIN), bulk both ways byte-exact, backpressure both ways, half-close both ways (and a held server
 * FIN), resets on either side, bytes Node read before the hand-off, idle sessions holding no pipe.
 * Skipped, with the reason, when the addon is not built.
 */
import net from 'node:net'
import t from 'tap'
import { emptyStats, type PlaneHandle } from '../../lib/native/plane.js'
import { Client, connectClient, pattern } from '../helpers/clients.js'
import {
  echoServer,
  halfCloseServer,
  replyOnEndServer,
  resetServer,
  sha256,
  sinkServer,
  streamServer,
  TestServer,
  type Digest,
} from '../helpers/servers.js'
import { BULK_MS, once, until, within } from '../helpers/wait.js'
import { nativeProxy, skip, thePlane } from './helpers/native-proxy.js'

const MiB = 1024 * 1024

t.test(
  'the hand-off: closing the original descriptor sends no FIN, the duplicate carries on',
  { skip },
  async (t) => {
    // A backend that reports a FIN or a close from its side of the connection.
    const seen: string[] = []
    const echo = await new TestServer('echo-watch', (socket) => {
      socket.on('end', () => seen.push('end'))
      socket.on('close', () => seen.push('close'))
      socket.pipe(socket)
    }).listen()
    t.teardown(() => echo.close())
    const proxy = await nativeProxy(() => echo.port)
    t.teardown(() => proxy.close())

    const client = await connectClient(proxy.port, { allowHalfOpen: true })
    t.teardown(() => client.destroy())
    const session = await proxy.session(0)
    t.ok(session.handle > 0, 'attached')

    // attach() destroyed the proxy's own two sockets; wait until Node has closed their descriptors.
    await within(
      Promise.all(session.originals.map((s) => (s.closed ? undefined : once(s, 'close')))),
      'the original sockets closed'
    )
    t.ok(
      session.originals.every((s) => s.destroyed && s.closed),
      'both originals closed'
    )
    // A FIN sent by that close would forbid any later write on the same side: a round trip through
    // both connections proves neither got one. The backend also reports what it saw.
    const reply = await client.roundTrip(Buffer.from('still here'))
    t.equal(reply.toString(), 'still here', 'a round trip after the originals were closed')
    t.same(seen, [], 'the backend saw neither a FIN nor a close')
    t.notOk(client.ended, 'the client saw no FIN')
    t.equal(echo.connections, 1, 'one backend connection, still open')

    // And the plane is what ends it: the client's FIN goes through, the echo server ends back.
    client.socket.end()
    const closed = await session.next('close')
    t.equal(closed.reason, 'done')
    t.same(seen.slice(0, 1), ['end'], 'the backend got the FIN the plane passed on')
  }
)

t.test('bulk both ways at once, byte-exact (sha256)', { skip }, async (t) => {
  const up = pattern(24 * MiB, 7)
  const down = pattern(24 * MiB, 11)
  const server = await streamServer(down, { endAfterPeer: true })
  t.teardown(() => server.close())
  const proxy = await nativeProxy(() => server.port)
  t.teardown(() => proxy.close())
  const client = await connectClient(proxy.port, { allowHalfOpen: true })
  t.teardown(() => client.destroy())
  const session = await proxy.session(0)

  const serverDigest = once<[Digest]>(server, 'digest', { timeoutMs: BULK_MS })
  const clientDigest = client.digest(BULK_MS)
  await client.write(up, BULK_MS)
  client.socket.end()
  const [atServer] = await serverDigest
  const atClient = await clientDigest
  t.same(atServer, { bytes: up.length, sha256: sha256(up) }, 'client → server exact')
  t.same(atClient, { bytes: down.length, sha256: sha256(down) }, 'server → client exact')

  const closed = await session.next('close', undefined, BULK_MS)
  t.equal(closed.reason, 'done')
  const s = closed.stats
  t.same(
    [s.bytesFromClient, s.bytesToServer, s.bytesFromServer, s.bytesToClient],
    [up.length, up.length, down.length, down.length],
    'byte counts in the final event'
  )
  t.equal(s.pipes, 0, 'no pipe held at the end')
  t.same(session.types().sort(), ['client-eof', 'close', 'server-eof'])
})

t.test('backpressure: a slow client stops the plane reading the server', { skip }, async (t) => {
  const down = pattern(16 * MiB, 3)
  const server = await streamServer(down)
  t.teardown(() => server.close())
  const proxy = await nativeProxy(() => server.port)
  t.teardown(() => proxy.close())
  const client = new Client(proxy.port) // never reads until told: a slow reader
  t.teardown(() => client.destroy())
  await client.connected()
  const session = await proxy.session(0)
  const plane = thePlane()

  // The client's receive buffer fills, the plane's pipe holds what it could not write, it stops
  // reading, the server's send buffer fills and Node's write() returns false.
  await until(() => {
    const s = plane.stats(session.handle)
    return s !== undefined && s.pendingToClient > 0 && server.waiting
  }, 'plane holding bytes for the client while the server is blocked')
  const held = plane.stats(session.handle)!
  t.ok(
    held.bytesFromServer < down.length / 2,
    `the plane stopped reading (${held.bytesFromServer} of ${down.length})`
  )
  t.ok(
    held.bytesFromServer - held.bytesToClient <= 64 * 1024,
    'at most one pipe of bytes in flight inside the plane'
  )

  const got = await client.digest(BULK_MS)
  t.same(got, { bytes: down.length, sha256: sha256(down) }, 'everything arrives once the client reads')
})

t.test('backpressure: a slow server stops the plane reading the client', { skip }, async (t) => {
  const up = pattern(16 * MiB, 5)
  const sink = await sinkServer()
  t.teardown(() => sink.close())
  sink.pause()
  const proxy = await nativeProxy(() => sink.port)
  t.teardown(() => proxy.close())
  const client = await connectClient(proxy.port, { allowHalfOpen: true })
  t.teardown(() => client.destroy())
  const session = await proxy.session(0)
  const plane = thePlane()

  const writing = client.write(up, BULK_MS)
  await until(() => {
    const s = plane.stats(session.handle)
    return s !== undefined && s.pendingToServer > 0 && client.socket.writableLength > 0
  }, 'the plane holding bytes for the server and the client queueing in Node')
  const held = plane.stats(session.handle)!
  t.ok(held.bytesFromClient < up.length / 2, `the plane stopped reading the client (${held.bytesFromClient})`)

  const digest = once<[Digest]>(sink, 'digest', { timeoutMs: BULK_MS })
  sink.resume()
  await writing
  client.socket.end()
  const [d] = await digest
  t.same(d, { bytes: up.length, sha256: sha256(up) })
})

t.test('copy mode: small reads the server cannot take yet wait in memory, in order', { skip }, async (t) => {
  // 8 KiB at a time, each read by the plane before the next is written: every read is under
  // COPY_READ, so the direction stays in copy mode and what the paused server cannot take waits
  // in the direction's buffer (no replay: nothing else holds the bytes).
  const sink = await sinkServer()
  t.teardown(() => sink.close())
  sink.pause()
  const proxy = await nativeProxy(() => sink.port, { replayBytes: 0 })
  t.teardown(() => proxy.close())
  const client = await connectClient(proxy.port, { allowHalfOpen: true })
  t.teardown(() => client.destroy())
  client.socket.setNoDelay(true)
  const session = await proxy.session(0)
  const plane = thePlane()
  const parts: Buffer[] = []
  let held = false
  for (let i = 0; i < 8192 && !held; i++) {
    const part = pattern(8 * 1024, i + 1)
    parts.push(part)
    client.socket.write(part)
    const want = (i + 1) * part.length
    await until(
      () => {
        const s = plane.stats(session.handle)
        return s !== undefined && (s.bytesFromClient >= want || s.pendingToServer > 0)
      },
      `part ${i} read`,
      { intervalMs: 1 }
    )
    held = plane.stats(session.handle)!.pendingToServer > 0
  }
  const s = plane.stats(session.handle)!
  t.ok(held, `the plane holds ${s.pendingToServer} bytes the server could not take yet`)
  t.equal(s.pipes, 0, 'in memory, not in a pipe')
  const up = Buffer.concat(parts)
  const digest = once<[Digest]>(sink, 'digest', { timeoutMs: BULK_MS })
  sink.resume()
  client.socket.end()
  const [d] = await digest
  t.same(d, { bytes: up.length, sha256: sha256(up) }, 'every byte, in order')
})

t.test('half-close: the client ends first, the answer still comes back', { skip }, async (t) => {
  const server = await replyOnEndServer((got) => Buffer.from(`got ${got.length}: ${got.toString()}`))
  t.teardown(() => server.close())
  const proxy = await nativeProxy(() => server.port)
  t.teardown(() => proxy.close())
  const client = await connectClient(proxy.port, { allowHalfOpen: true })
  t.teardown(() => client.destroy())
  const session = await proxy.session(0)

  client.socket.end('question')
  const answer = await client.readAll()
  t.equal(answer.toString(), 'got 8: question', 'the server answered after seeing the FIN')
  t.ok(client.ended, 'and its FIN reached the client')
  const closed = await session.next('close')
  t.equal(closed.reason, 'done')
  t.same(session.types(), ['client-eof', 'server-eof', 'close'])
  t.ok(closed.stats.finSentToServer && closed.stats.finSentToClient, 'a FIN went each way')
})

t.test('half-close: the server ends first, the client keeps sending', { skip }, async (t) => {
  const server = await halfCloseServer(Buffer.from('bye early'))
  t.teardown(() => server.close())
  const proxy = await nativeProxy(() => server.port)
  t.teardown(() => proxy.close())
  const client = await connectClient(proxy.port, { allowHalfOpen: true })
  t.teardown(() => client.destroy())
  const session = await proxy.session(0)

  const early = await client.readAll()
  t.equal(early.toString(), 'bye early')
  t.ok(client.ended, 'the server FIN reached the client')
  const eof = await session.next('server-eof')
  t.equal(eof.held, false)

  const received = once<[Buffer]>(server, 'received')
  client.socket.end('after your FIN')
  const [got] = await received
  t.equal(got.toString(), 'after your FIN', 'bytes sent after the server FIN still arrive')
  const closed = await session.next('close')
  t.equal(closed.reason, 'done')
})

t.test('holdServerEof: the FIN waits for shutdownClient', { skip }, async (t) => {
  const server = await halfCloseServer(Buffer.from('last words'))
  t.teardown(() => server.close())
  const proxy = await nativeProxy(() => server.port, { holdServerEof: true })
  t.teardown(() => proxy.close())
  const client = await connectClient(proxy.port, { allowHalfOpen: true })
  t.teardown(() => client.destroy())
  const session = await proxy.session(0)
  const plane = thePlane()

  const eof = await session.next('server-eof')
  t.equal(eof.held, true, 'the event says the FIN is held')
  t.ok(eof.stats.serverEofHeld && !eof.stats.finSentToClient, 'and the FIN has not gone on')
  t.equal((await client.read(10)).toString(), 'last words', 'the bytes before it did')
  t.notOk(client.ended)

  const ended = once(client.socket, 'end')
  plane.shutdownClient(session.handle)
  await ended
  t.pass('shutdownClient passed the FIN on')
  client.socket.end()
  t.equal((await session.next('close')).reason, 'done')
})

t.test('a server reset is an error event naming the server, the session waits', { skip }, async (t) => {
  const bad = await resetServer({ afterRead: 5 })
  t.teardown(() => bad.close())
  const proxy = await nativeProxy(() => bad.port)
  t.teardown(() => proxy.close())
  const client = await connectClient(proxy.port)
  t.teardown(() => client.destroy())
  const session = await proxy.session(0)

  client.socket.write('hello')
  const err = await session.next('error')
  t.equal(err.side, 'server')
  t.ok(['ECONNRESET', 'EPIPE'].includes(err.code), `a reset errno (${err.code})`)
  t.ok(err.errno > 0)
  t.match(err.stats, {
    serverDown: true,
    answered: false,
    unansweredBytes: 5,
    responseStarted: false,
    replayable: false,
  })
  t.notOk(client.isClosed, 'the client connection is still there, waiting for a decision')

  const final = thePlane().close(session.handle)
  t.ok(final?.closed, 'close() returns the final stats')
  await within(client.closed, 'client closed after close()')
  t.notOk(
    session.events.some((e) => e.type === 'close'),
    'no event after close()'
  )
  t.throws(
    () => thePlane().replaceServer(session.handle, 0),
    { code: 'ERR_NATIVE_PLANE_SESSION' },
    'the handle is dead'
  )
})

t.test('a server whose bytes and reset arrive together: the bytes, then the error event', { skip }, async (t) => {
  // Both are there when the plane next polls the descriptor: libuv reports POLLERR (UV_EBADF) and
  // stops the handle. The plane reads the bytes in one short read and must still hear about the
  // reset (it starts the handle again), or the session waits for an event that never comes.
  let held: net.Socket | undefined
  const burst = new TestServer('burst', (socket) => {
    held = socket
  })
  await burst.listen()
  t.teardown(() => burst.close())
  const proxy = await nativeProxy(() => burst.port)
  t.teardown(() => proxy.close())
  const client = await connectClient(proxy.port)
  t.teardown(() => client.destroy())
  const session = await proxy.session(0)
  await until(() => held !== undefined, 'the server accepted')
  // Let the plane take the session and find nothing to read yet.
  await new Promise((resolve) => setImmediate(resolve))
  await new Promise((resolve) => setImmediate(resolve))
  held!.write('bye')
  held!.resetAndDestroy()
  t.equal((await client.read(3)).toString(), 'bye', 'the bytes before the reset')
  const err = await session.next('error')
  t.equal(err.side, 'server', 'then the reset, as an error event naming the server')
})

t.test('a client reset is an error event naming the client, then close', { skip }, async (t) => {
  const echo = await echoServer()
  t.teardown(() => echo.close())
  const proxy = await nativeProxy(() => echo.port)
  t.teardown(() => proxy.close())
  const client = await connectClient(proxy.port)
  const session = await proxy.session(0)
  await client.roundTrip(Buffer.from('ping'))

  client.socket.resetAndDestroy()
  const closed = await session.next('close')
  t.equal(closed.reason, 'client-error')
  const err = session.events.find((e) => e.type === 'error')
  t.match(err, { side: 'client', code: 'ECONNRESET' })
  await until(() => echo.connections === 0, 'backend connection closed')
  t.equal(thePlane().stats(session.handle), undefined, 'the handle is gone once closed')
})

t.test('bytes Node read before the hand-off go first (head)', { skip }, async (t) => {
  const echo = await echoServer()
  t.teardown(() => echo.close())
  const proxy = await nativeProxy(() => echo.port, { head: Buffer.from('PEEKED:'), replayBytes: 4096 })
  t.teardown(() => proxy.close())
  const client = await connectClient(proxy.port)
  t.teardown(() => client.destroy())
  const session = await proxy.session(0)
  const reply = await client.roundTrip(Buffer.from('rest'))
  // roundTrip reads as many bytes as it wrote: the head comes first.
  t.equal(reply.toString(), 'PEEK')
  t.equal((await client.read(7)).toString(), 'ED:rest')
  t.equal(thePlane().stats(session.handle)?.bytesFromClient, 11)
})

t.test('an idle session holds no pipe; lastActivity and idleMs move', { skip }, async (t) => {
  const echo = await echoServer()
  t.teardown(() => echo.close())
  const proxy = await nativeProxy(() => echo.port, { replayBytes: 65536 })
  t.teardown(() => proxy.close())
  const client = await connectClient(proxy.port)
  t.teardown(() => client.destroy())
  const session = await proxy.session(0)
  const plane = thePlane()

  for (let i = 0; i < 5; i++) await client.roundTrip(pattern(1000, i + 1))
  await until(() => plane.stats(session.handle)?.bytesToClient === 5000, 'all answers forwarded')
  const s = plane.stats(session.handle)!
  t.match(s, { pipes: 0, replayBytes: 0, answered: true, turns: 5, replayable: true })
  t.ok(s.lastActivity > 0, 'lastActivity set')
  await until(() => plane.stats(session.handle)!.idleMs > 0, 'idleMs grows while nothing moves')
})

t.test('statsInto fills one object with what stats returns, and leaves it once the session is gone', { skip }, async (t) => {
  const echo = await echoServer()
  t.teardown(() => echo.close())
  const proxy = await nativeProxy(() => echo.port, { replayBytes: 65536 })
  t.teardown(() => proxy.close())
  const client = await connectClient(proxy.port)
  const session = await proxy.session(0)
  const plane = thePlane()
  await client.roundTrip(pattern(1000, 1))
  await until(() => plane.stats(session.handle)?.bytesToClient === 1000, 'the answer forwarded')

  const out = emptyStats()
  t.same(Object.keys(out), Object.keys(plane.stats(session.handle)!), 'the same fields, in the same order')
  t.equal(plane.statsInto(session.handle, out), true)
  const fresh = plane.stats(session.handle)!
  t.same({ ...out, lastActivity: 0, idleMs: 0 }, { ...fresh, lastActivity: 0, idleMs: 0 }, 'the same values')
  t.match(out, { bytesFromClient: 1000, bytesToClient: 1000, turns: 1, answered: true })

  client.destroy()
  await session.next('close')
  await until(() => plane.stats(session.handle) === undefined, 'the session freed')
  const before = { ...out }
  t.equal(plane.statsInto(session.handle, out), false, 'gone')
  t.same(out, before, 'left as it was')
})

t.test('pause stops reading both sides, resume carries on', { skip }, async (t) => {
  const echo = await echoServer()
  t.teardown(() => echo.close())
  const proxy = await nativeProxy(() => echo.port)
  t.teardown(() => proxy.close())
  const client = await connectClient(proxy.port)
  t.teardown(() => client.destroy())
  const session = await proxy.session(0)
  const plane = thePlane()

  plane.pause(session.handle)
  await new Promise<void>((resolve) => client.socket.write('while paused', () => resolve()))
  // Loop turns, not a sleep: on loopback the bytes are in the plane's socket once write() returns,
  // and a poll that still watched it would fire within a turn or two.
  for (let i = 0; i < 20; i++) await new Promise<void>((resolve) => setImmediate(resolve))
  t.match(plane.stats(session.handle), { paused: true, bytesFromClient: 0 }, 'nothing read while paused')

  const reply = client.read(12)
  plane.resume(session.handle)
  t.equal((await reply).toString(), 'while paused', 'resumed: the bytes went through')
  t.equal(plane.stats(session.handle)?.paused, false)
})

t.test('close() from inside an event listener', { skip }, async (t) => {
  const echo = await echoServer()
  t.teardown(() => echo.close())
  const proxy = await nativeProxy(() => echo.port)
  t.teardown(() => proxy.close())
  const client = await connectClient(proxy.port, { allowHalfOpen: true })
  t.teardown(() => client.destroy())
  const session = await proxy.session(0)
  const plane = thePlane()

  let final: ReturnType<typeof plane.close>
  session.once('client-eof', () => {
    final = plane.close(session.handle) // synchronously, inside the addon's callback
  })
  await client.roundTrip(Buffer.from('one'))
  client.socket.end()
  await within(client.closed, 'the client connection closed by close()')
  t.match(final, { closed: true, clientEof: true, bytesFromClient: 3 })
  await until(() => echo.connections === 0, 'the backend connection closed too')
  t.same(session.types(), ['client-eof'], 'no event after close()')
  await until(() => plane.stats(session.handle) === undefined, 'the session freed')
})

t.test('bytes Node buffered on the client socket go first too', { skip }, async (t) => {
  const echo = await echoServer()
  t.teardown(() => echo.close())
  const plane = thePlane()
  // A front that lets Node read the first bytes (an accept stage's peek) and leaves them buffered.
  const attached: PlaneHandle[] = []
  const front = net.createServer((a) => {
    a.once('readable', () => {
      t.ok(a.readableLength > 0, 'bytes sit in the socket, read and not consumed')
      const b = net.connect({ host: '127.0.0.1', port: echo.port }, () => {
        attached.push(plane.attach(a, b, () => {}))
      })
    })
  })
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const h of attached) plane.close(h)
    front.close()
  })
  const client = await connectClient((front.address() as net.AddressInfo).port)
  t.teardown(() => client.destroy())
  const reply = client.read(11)
  client.socket.write('first bytes')
  t.equal((await reply).toString(), 'first bytes', 'the buffered bytes reached the server, once')
  t.equal(plane.stats(attached[0]!)?.bytesFromClient, 11)
})
