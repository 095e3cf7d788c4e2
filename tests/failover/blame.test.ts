/**
 * Blame the right side (issue 10 §1, DESIGN.md "Blame the right side"), and http1's request gate.
 *
 * - A server that gives up on a slow client (nginx's `client_header_timeout` /
 *   `client_body_timeout`: it closes a connection whose request never completed) is not a failing
 *   server: no passive-health count, no failover, no replay; the client gets the close a plain
 *   proxy would give it. A request head is held back until whole, so a server that closes while
 *   only a partial head has arrived saw nothing, and the head goes to a new connection once whole.
 * - A server that dies while the request is incomplete is still the server's failure: the
 *   request is re-sent and completed on another backend.
 * - A request head reaches the backend only whole and valid: an oversized head gets its 431 with
 *   no byte forwarded, a CL+TE head split over two writes its 400, and bytes after an Upgrade
 *   request wait for the 101.
 */
import net, { type Socket } from 'node:net'
import t from 'tap'
import type { SessionCloseEvent } from '../../lib/balancer.js'
import { oneListener, scope } from '../helpers/balancer.js'
import { TestServer } from '../helpers/servers.js'
import { once, within } from '../helpers/wait.js'

const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'

/**
 * An HTTP server that answers every whole request (head with optional Content-Length body) with
 * `OK`, and closes a connection whose request is not whole `patienceMs` after its last byte (an
 * nginx header/body timeout). `received` gets every byte it reads, per connection.
 */
function impatientServer(name: string, patienceMs: number) {
  const received: Buffer[] = []
  const server = new TestServer(name, (socket: Socket) => {
    let buf = Buffer.alloc(0)
    let timer: NodeJS.Timeout | undefined
    const arm = (): void => {
      clearTimeout(timer)
      if (buf.length > 0) timer = setTimeout(() => socket.end(), patienceMs)
    }
    socket.on('data', (d: Buffer) => {
      received.push(d)
      buf = Buffer.concat([buf, d])
      for (;;) {
        const end = buf.indexOf('\r\n\r\n')
        if (end < 0) break
        const head = buf.subarray(0, end).toString('latin1')
        const m = /content-length:\s*(\d+)/i.exec(head)
        const total = end + 4 + (m ? Number(m[1]) : 0)
        if (buf.length < total) break
        buf = buf.subarray(total)
        socket.write(OK)
      }
      arm()
    })
    socket.on('close', () => clearTimeout(timer))
    // A connection that never gets a byte is closed too, as nginx does with an idle new connection.
    timer = setTimeout(() => socket.end(), patienceMs * 4)
  })
  return { server, received }
}

function http1(extra: Record<string, unknown> = {}) {
  return { protocol: 'http1' as const, balance: 'first' as const, ...extra }
}

t.test('server gives up on a trickled body: the client is closed, no backend blamed, no failover', async (t) => {
  const s = scope(t)
  const a = impatientServer('a', 150)
  const b = impatientServer('b', 150)
  await s.server(a.server.listen())
  await s.server(b.server.listen())
  const { balancer, port } = await s.balancer(oneListener([a.server, b.server], http1()))
  const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
  const client = await s.connect(port)
  client.socket.write('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789')
  const end = await within(client.closed, 'client closed')
  t.ok(end, 'the client sees the close a plain proxy would pass on')
  const [ev] = await closed
  t.equal(ev.outcome, 'client-incomplete', 'the session ends as the client’s doing')
  t.equal(ev.endedBy, 'client', 'attributed to the client side')
  const c = balancer.frontends[0]!.counters
  t.equal(c.failovers, 0, 'no failover')
  t.equal(c.serverFailures, 0, 'no server failure counted')
  const backends = balancer.frontends[0]!.backends
  t.same(
    backends.map((x) => x.consecutiveFailures),
    [0, 0],
    'nothing counted against either backend'
  )
  t.equal(b.server.accepted, 0, 'the partial request was not replayed to the other backend')
})

t.test('server closes while only a partial head has arrived: it saw nothing; the head goes on once whole', async (t) => {
  const s = scope(t)
  const a = impatientServer('a', 100)
  await s.server(a.server.listen())
  const { balancer, port } = await s.balancer(oneListener([a.server], http1()))
  const client = await s.connect(port)
  client.socket.write('GET / HTTP/1.1\r\nHo')
  // The first server connection times out on an empty connection (it got none of the head).
  await within(
    new Promise<void>((resolve) => a.server.on('disconnect', () => resolve())),
    'the server closed its idle connection'
  )
  t.equal(Buffer.concat(a.received).length, 0, 'not a byte of the partial head reached the server')
  const reply = client.read(OK.length)
  client.socket.write('st: x\r\n\r\n')
  t.equal((await reply).toString(), OK, 'the whole head went to a new connection and was answered')
  t.equal(Buffer.concat(a.received).toString(), 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', 'the server got the head whole')
  const c = balancer.frontends[0]!.counters
  t.equal(c.failovers, 0, 'no failover')
  t.equal(c.serverFailures, 0, 'no server failure')
  t.equal(balancer.frontends[0]!.backends[0]!.consecutiveFailures, 0, 'the backend is not blamed')
})

t.test('server dies while the request is incomplete: still the server’s failure, re-sent elsewhere', async (t) => {
  const s = scope(t)
  const b = impatientServer('b', 5000)
  let dying: Socket | undefined
  const a = new TestServer('a', (socket) => {
    socket.once('data', () => {
      dying = socket
      socket.emit('got')
    })
  })
  await s.server(a.listen())
  await s.server(b.server.listen())
  const { balancer, port } = await s.balancer(oneListener([a, b.server], http1()))
  const client = await s.connect(port)
  const got = once(a, 'connection').then(([sock]) => once(sock as Socket, 'got'))
  client.socket.write('PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab')
  await got
  const reply = client.read(OK.length)
  await a.close() // the backend dies: its listener is gone, the connection closes
  t.ok(dying === undefined || dying.destroyed, 'the first backend is gone')
  client.socket.write('cd')
  t.equal((await reply).toString(), OK, 'the request completed on the other backend')
  t.equal(balancer.frontends[0]!.counters.failovers, 1, 'one failover')
})

t.test('an oversized head gets its 431 with no byte forwarded', async (t) => {
  const s = scope(t)
  const a = impatientServer('a', 5000)
  await s.server(a.server.listen())
  const { port } = await s.balancer(oneListener([a.server], http1()))
  const client = await s.connect(port)
  const head = `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(70 * 1024)}\r\n\r\n`
  client.socket.write(head)
  const all = await client.readAll()
  t.match(all.toString('latin1'), /^HTTP\/1\.1 431 /, '431')
  t.equal(Buffer.concat(a.received).length, 0, 'nothing of the head reached the backend')
})

t.test('a CL+TE head split over two writes is refused whole, nothing forwarded', async (t) => {
  const s = scope(t)
  const a = impatientServer('a', 5000)
  await s.server(a.server.listen())
  const { port } = await s.balancer(oneListener([a.server], http1()))
  const client = await s.connect(port)
  client.socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n')
  // Let the first part be read on its own before the rest comes.
  await new Promise<void>((resolve) => client.socket.write('', () => resolve()))
  client.socket.write('Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n')
  const all = await client.readAll()
  t.match(all.toString('latin1'), /^HTTP\/1\.1 400 /, '400')
  t.equal(Buffer.concat(a.received).length, 0, 'nothing of the head reached the backend')
})

t.test('bytes after an Upgrade request wait for the 101', async (t) => {
  const s = scope(t)
  const seen: Buffer[] = []
  let upgraded = false
  let sawEarly = false
  const a = new TestServer('ws', (socket) => {
    let buf = Buffer.alloc(0)
    socket.on('data', (d: Buffer) => {
      seen.push(d)
      if (upgraded) return
      buf = Buffer.concat([buf, d])
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0) return
      if (buf.length > end + 4) sawEarly = true
      socket.emit('head')
    })
    socket.once('head', () => {
      upgraded = true
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n')
    })
  })
  await s.server(a.listen())
  const { port } = await s.balancer(oneListener([a], http1()))
  const client = await s.connect(port)
  const reply = client.read(69)
  client.socket.write('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\nTUNNEL-BYTES')
  const head = (await reply).toString('latin1')
  t.match(head, /^HTTP\/1\.1 101 /, 'the 101 came through')
  await within(
    new Promise<void>((resolve) => {
      const check = (): void => {
        if (Buffer.concat(seen).toString('latin1').endsWith('TUNNEL-BYTES')) resolve()
        else a.once('data-seen', check)
      }
      for (const sock of a.sockets) sock.on('data', () => a.emit('data-seen'))
      check()
    }),
    'tunnel bytes after the 101'
  )
  t.notOk(sawEarly, 'the bytes after the upgrade request did not arrive with the request')
  t.match(Buffer.concat(seen).toString('latin1'), /\r\n\r\nTUNNEL-BYTES$/, 'and were forwarded after the 101')
})

void net
