/**
 * Half-close: a FIN from one side ends only the other side's write half; the opposite direction
 * keeps flowing until its own FIN.
 */
import t from 'tap'
import { oneListener, scope } from '../helpers/balancer.js'
import { pattern } from '../helpers/clients.js'
import { halfCloseServer, replyOnEndServer, sha256, TestServer } from '../helpers/servers.js'
import { once, within } from '../helpers/wait.js'

t.test('client ends its write side and still receives the reply', async (t) => {
  const s = scope(t)
  // The server answers only after the client's FIN: with the hash of what it read.
  const server = await s.server(replyOnEndServer((got) => Buffer.from(`${got.length} ${sha256(got)}`)))
  const { balancer, port } = await s.balancer(oneListener([server]))
  const closes = once<[{ outcome: string }]>(balancer, 'sessionClose')

  const client = await s.connect(port, { allowHalfOpen: true })
  const request = pattern(300_000, 7)
  await client.write(request)
  client.socket.end()
  const reply = await client.readAll()
  t.equal(reply.toString(), `${request.length} ${sha256(request)}`, 'the reply came after the FIN, complete')
  t.ok(client.ended, 'then the server FIN reached the client')
  await client.closed
  t.equal(client.error, undefined)
  const [closed] = await closes
  t.equal(closed.outcome, 'done', 'the session ended normally')
})

t.test('client FIN sent before the server connection is up still half-closes', async (t) => {
  const s = scope(t)
  const server = await s.server(replyOnEndServer((got) => Buffer.from(`got ${got.toString()}`)))
  const { port } = await s.balancer(oneListener([server]))
  const client = s.client(port, { allowHalfOpen: true })
  client.socket.end('early') // queued before connect: data and FIN reach Baton together
  const reply = await client.readAll()
  t.equal(reply.toString(), 'got early')
})

t.test("server ends its write side and still receives the client's later bytes", async (t) => {
  const s = scope(t)
  const server = await s.server(halfCloseServer(Buffer.from('hello, then FIN')))
  const { balancer, port } = await s.balancer(oneListener([server]))
  const received = once<[Buffer]>(server, 'received')
  const closes = once<[{ outcome: string }]>(balancer, 'sessionClose')

  const client = await s.connect(port, { allowHalfOpen: true })
  const greeting = await client.readAll()
  t.equal(greeting.toString(), 'hello, then FIN', 'the client got the server bytes')
  t.ok(client.ended, 'and the server FIN, passed on')
  t.notOk(client.isClosed, 'the client connection is still open for writing')

  const later = pattern(200_000, 3)
  await client.write(later)
  client.socket.end()
  const [got] = await received
  t.equal(got.length, later.length, 'the server got every byte written after its FIN')
  t.ok(got.equals(later), 'in order')
  await within(client.closed, 'client close')
  const [closed] = await closes
  t.equal(closed.outcome, 'done')
})

/**
 * The server speaks, the client answers, and the server half-closes (it has said all it will) while
 * still reading: a plain half-close that must reach the client as a FIN, once, over the same
 * server connection. On the default path (`replay: safe`, opaque framer) the client's bytes since
 * the server's last word count as an unanswered request, so Baton asks the backend whether it is
 * alive before deciding: it is, so the FIN goes on. (Once, the FIN was taken for a crash and the
 * bytes re-sent on a new connection whose greeting corrupted the client's stream; this guards it.)
 */
for (const replay of ['none', 'safe'] as const) {
  t.test(
    `server FIN after the client's last bytes is passed on, not replayed (replay: ${replay})`,
    async (t) => {
      const s = scope(t)
      const greeting = pattern(20_000, 11)
      const server: TestServer = await s.server(
        new TestServer('greet-then-fin', (socket) => {
          const chunks: Buffer[] = []
          socket.write(greeting)
          socket.once('data', () => socket.end()) // the client's first answer: nothing more to say
          socket.on('data', (c: Buffer) => chunks.push(c))
          socket.on('end', () => {
            server.emit('received', Buffer.concat(chunks))
            socket.destroy()
          })
        }).listen()
      )
      const { balancer, port } = await s.balancer(oneListener([server], { replay }))
      // With replay on, Baton checks whether the backend is still alive before passing an opaque
      // FIN on (a liveness probe: a connect that sends nothing), so connections that received
      // nothing are left out here.
      const nonEmpty: Buffer[] = []
      const received = new Promise<[Buffer]>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no bytes received within 3000 ms')), 3000)
        server.on('received', (b: Buffer) => {
          if (b.length === 0) return
          nonEmpty.push(b)
          clearTimeout(timer)
          resolve([b])
        })
      })
      const closes = once<[{ outcome: string }]>(balancer, 'sessionClose', { timeoutMs: 3000 })

      const client = await s.connect(port, { allowHalfOpen: true })
      t.ok((await client.read(greeting.length)).equals(greeting), 'the client got the greeting')
      client.socket.write('first;')
      const rest = await client.readAll(3000)
      t.equal(rest.length, 0, `then only the FIN (got ${rest.length} more bytes)`)
      t.ok(client.ended && client.error === undefined, 'a clean FIN, no reset')
      client.socket.end('second')
      const [got] = await received
      t.equal(got.toString(), 'first;second', 'the server got both writes on its one connection')
      t.equal((await closes)[0].outcome, 'done')
      t.equal(nonEmpty.length, 1, 'nothing was sent again on another connection')
      t.equal(balancer.counters().failovers, 0, 'no failover')
    }
  )
}
