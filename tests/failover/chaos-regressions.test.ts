/**
 * Bugs the chaos soak found (bench/chaos.mjs, issue 10 §4), each reproduced here:
 * 1. a session never forgot a backend that failed it: after failing over away from both of two
 *    backends (each healthy again), a third failure had nowhere to go;
 * 2. draining the only usable backend migrated its sessions away, and their next request found none;
 * 3. a server's reset that could not be hidden reached the client as a clean FIN;
 * 4. opaque: a server that closed with a request unanswered was checked, found alive (as a dying
 *    process's listener can be), and its FIN passed on: the request is now re-sent.
 */
import type { Socket } from 'node:net'
import t from 'tap'
import { oneListener, scope } from '../helpers/balancer.js'
import { body, expectedResponse, frame, FrameParser } from '../helpers/failover-servers.js'
import { TestServer } from '../helpers/servers.js'
import { once, within } from '../helpers/wait.js'

/** A length-prefixed server that answers `ok:<body>` and resets on a request containing `die-<name>`. */
function dyingFrameServer(name: string): TestServer {
  return new TestServer(name, (socket: Socket) => {
    const parser = new FrameParser()
    socket.on('data', (chunk: Buffer) => {
      for (const req of parser.push(chunk)) {
        if (req.includes(`die-${name}`)) return void socket.resetAndDestroy()
        socket.write(expectedResponse(req))
      }
    })
    socket.on('end', () => socket.end())
  })
}

t.test(
  '1. a backend that failed a session is a candidate again once the session made progress',
  async (t) => {
    const s = scope(t)
    const a = await s.server(dyingFrameServer('A').listen())
    const b = await s.server(dyingFrameServer('B').listen())
    const { balancer, port } = await s.balancer(
      oneListener([a, b], { protocol: 'length-prefixed', balance: 'first' })
    )
    const client = await s.connect(port)
    for (const tag of ['r1', 'r2 die-A', 'r3', 'r4 die-B', 'r5']) {
      const req = body(tag)
      const expected = expectedResponse(req)
      const reading = client.read(expected.length)
      client.socket.write(frame(req))
      t.same(await reading, expected, `${tag}: answered`)
    }
    t.equal(balancer.frontends[0]!.counters.failovers, 2, 'two failovers, both hidden')
    t.equal(balancer.frontends[0]!.counters.unrecoverable, 0, 'none unrecoverable')
    t.notOk(client.isClosed, 'the client kept its connection')
  }
)

t.test('2. draining the only usable backend keeps its sessions there', async (t) => {
  const s = scope(t)
  const a = await s.server(dyingFrameServer('A').listen())
  const b = await s.server(dyingFrameServer('B').listen())
  const { balancer, port } = await s.balancer(
    oneListener([a, b], { protocol: 'length-prefixed', balance: 'first' })
  )
  const [ba, bb] = balancer.frontends[0]!.backends
  bb!.admin = 'maint' // the other backend is out
  const client = await s.connect(port)
  const r1 = body('r1')
  const reading = client.read(expectedResponse(r1).length)
  client.socket.write(frame(r1))
  await reading
  ba!.admin = 'drain' // onDrain: migrate (the default for length-prefixed)
  const r2 = body('r2')
  const reading2 = client.read(expectedResponse(r2).length)
  client.socket.write(frame(r2))
  t.same(await reading2, expectedResponse(r2), 'the next request is still answered, by the drained backend')
  t.equal(balancer.frontends[0]!.counters.migrations, 0, 'no migration to nowhere')
  t.notOk(client.isClosed, 'the client kept its connection')
})

t.test('3. a server reset that cannot be hidden reaches the client as a reset', async (t) => {
  const s = scope(t)
  // Answers part of a response, then resets (a moment later: a reset in the same tick as the write
  // goes out as a FIN on Node 20).
  const cutter = await s.server(
    new TestServer('cutter', (socket) => {
      socket.once('data', () => {
        socket.write('partial answer', () => setTimeout(() => socket.resetAndDestroy(), 20))
      })
    }).listen()
  )
  const { port } = await s.balancer(oneListener([cutter]))
  const client = await s.connect(port)
  const err = once<[NodeJS.ErrnoException]>(client.socket, 'error')
  client.socket.write('hello')
  const [e] = await within(err, 'client error')
  t.equal(e.code, 'ECONNRESET', 'the client saw a reset, not a clean end')
})

t.test(
  '4. opaque: a server that closes with the request unanswered: the request goes elsewhere',
  async (t) => {
    const s = scope(t)
    // Reads the request and closes without a word, its listener alive (a keep-alive race, or a
    // dying process whose listener still completes connects).
    const closer = await s.server(
      new TestServer('closer', (socket) => socket.once('data', () => socket.end())).listen()
    )
    const echo = await s.server(
      new TestServer('echo', (socket) => {
        socket.on('data', (d: Buffer) => socket.write(d))
        socket.on('end', () => socket.end())
      }).listen()
    )
    const { balancer, port } = await s.balancer(oneListener([closer, echo], { balance: 'first' }))
    const client = await s.connect(port)
    const reading = client.read(5)
    client.socket.write('hello')
    t.equal((await reading).toString(), 'hello', 'answered by the other backend')
    t.equal(balancer.frontends[0]!.counters.failovers, 1, 'one failover')
    t.notOk(client.isClosed, 'the client kept its connection')
  }
)
