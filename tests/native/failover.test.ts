/**
 * Replay on the native plane (opaque turn-taking: a request is the client bytes since the server
 * last spoke). The replay pipe holds the unanswered request and is dropped when the server speaks;
 * replaceServer sends it to another server and keeps it for one more failover. Past replayBytes
 * the session is not replayable until the server speaks again.
 */
import type { Socket } from 'node:net'
import t from 'tap'
import { connectClient, pattern } from '../helpers/clients.js'
import { echoServer, hangServer, resetServer, sha256, TestServer } from '../helpers/servers.js'
import { until } from '../helpers/wait.js'
import { nativeProxy, skip, thePlane } from './helpers/native-proxy.js'

/** Echoes the first `answered` bytes, then resets on the next ones: a server that dies mid-session. */
function answerThenReset(answered: number, name = 'answer-then-reset'): Promise<TestServer> {
  return new TestServer(name, (socket: Socket) => {
    let seen = 0
    socket.on('data', (chunk: Buffer) => {
      const echo = Math.max(0, Math.min(chunk.length, answered - seen))
      seen += chunk.length
      if (echo > 0) socket.write(chunk.subarray(0, echo))
      if (seen > answered) socket.resetAndDestroy()
    })
  }).listen()
}

/** Echoes the first `answered` bytes and then goes quiet: reads on, never answers again. */
function answerThenSilent(answered: number): Promise<TestServer> {
  return new TestServer('answer-then-silent', (socket: Socket) => {
    let seen = 0
    socket.on('data', (chunk: Buffer) => {
      const echo = Math.max(0, Math.min(chunk.length, answered - seen))
      seen += chunk.length
      if (echo > 0) socket.write(chunk.subarray(0, echo))
    })
  }).listen()
}

/** Reads the request, then closes with a FIN and no answer: on the wire a crash looks like this. */
function finBeforeAnswer(): Promise<TestServer> {
  return new TestServer('fin-before-answer', (socket: Socket) => {
    socket.once('data', () => socket.end())
  }).listen()
}

t.test(
  'the server resets before answering: the request is replayed to another server',
  { skip },
  async (t) => {
    const req = pattern(10_000, 21)
    const bad = await resetServer({ afterRead: req.length }, 'bad')
    const good = await echoServer('good')
    t.teardown(() => Promise.all([bad.close(), good.close()]))
    const proxy = await nativeProxy(() => bad.port, { replayBytes: 65536 })
    t.teardown(() => proxy.close())
    const client = await connectClient(proxy.port)
    t.teardown(() => client.destroy())
    const session = await proxy.session(0)

    const reply = client.read(req.length)
    client.socket.write(req)
    const err = await session.next('error')
    t.equal(err.side, 'server')
    t.match(err.stats, {
      serverDown: true,
      answered: false,
      responseStarted: false,
      replayable: true,
      replayBytes: req.length,
      unansweredBytes: req.length,
    })

    const resent = await proxy.failover(session, good.port)
    t.equal(resent, req.length, 'replaceServer re-sent the whole request')
    t.equal(sha256(await reply), sha256(req), 'the client got the answer from the second server')
    t.notOk(client.isClosed, 'on the same client connection')
    await until(() => thePlane().stats(session.handle)?.answered === true, 'answered')
    t.match(thePlane().stats(session.handle), {
      failovers: 1,
      replayedBytes: req.length,
      replayBytes: 0,
      pipes: 0,
    })

    // The session carries on with the new server.
    t.equal((await client.roundTrip(Buffer.from('and then'))).toString(), 'and then')
  }
)

t.test('a replay bigger than a data pipe (256 KiB through a 1 MiB replay pipe)', { skip }, async (t) => {
  const req = pattern(256 * 1024, 22)
  const bad = await resetServer({ afterRead: req.length }, 'bad')
  const good = await echoServer('good')
  t.teardown(() => Promise.all([bad.close(), good.close()]))
  const proxy = await nativeProxy(() => bad.port, { replayBytes: 1024 * 1024 })
  t.teardown(() => proxy.close())
  const client = await connectClient(proxy.port)
  t.teardown(() => client.destroy())
  const session = await proxy.session(0)

  const reply = client.read(req.length)
  await client.write(req)
  const err = await session.next('error')
  t.match(err.stats, { replayable: true, replayBytes: req.length })
  t.equal(await proxy.failover(session, good.port), req.length)
  t.equal(sha256(await reply), sha256(req), 'byte-exact after the replay')
})

t.test('two failovers in a row: the replay survives the first replacement', { skip }, async (t) => {
  const req = pattern(3000, 23)
  const first = await resetServer({ afterRead: req.length }, 'first')
  const second = await resetServer({ afterRead: req.length }, 'second')
  const good = await echoServer('good')
  t.teardown(() => Promise.all([first.close(), second.close(), good.close()]))
  const proxy = await nativeProxy(() => first.port, { replayBytes: 8192 })
  t.teardown(() => proxy.close())
  const client = await connectClient(proxy.port)
  t.teardown(() => client.destroy())
  const session = await proxy.session(0)

  const reply = client.read(req.length)
  client.socket.write(req)
  await session.next('error')
  t.equal(await proxy.failover(session, second.port), req.length, 'first replay')
  const again = await session.next('error', (e) => e.stats.failovers === 1)
  t.equal(again.side, 'server', 'the second server died too')
  t.match(again.stats, { replayable: true, replayBytes: req.length, answered: false })
  t.equal(await proxy.failover(session, good.port), req.length, 'second replay, same bytes')
  t.equal(sha256(await reply), sha256(req))
  t.match(thePlane().stats(session.handle), { failovers: 2, replayedBytes: 2 * req.length })
})

t.test('only the unanswered request is replayed, after answered turns', { skip }, async (t) => {
  const size = 500
  const bad = await answerThenReset(3 * size, 'three-then-reset')
  const good = await echoServer('good')
  t.teardown(() => Promise.all([bad.close(), good.close()]))
  const proxy = await nativeProxy(() => bad.port, { replayBytes: 65536 })
  t.teardown(() => proxy.close())
  const client = await connectClient(proxy.port)
  t.teardown(() => client.destroy())
  const session = await proxy.session(0)
  const plane = thePlane()

  for (let i = 0; i < 3; i++) {
    const r = pattern(size, 100 + i)
    t.equal(sha256(await client.roundTrip(r)), sha256(r), `turn ${i + 1} answered by the first server`)
  }
  await until(() => plane.stats(session.handle)?.turns === 3, 'three turns counted')
  t.match(plane.stats(session.handle), { replayBytes: 0, answered: true, pipes: 0 })

  const fourth = pattern(size, 104)
  const reply = client.read(size)
  client.socket.write(fourth)
  const err = await session.next('error')
  t.match(err.stats, { replayBytes: size, unansweredBytes: size, turns: 3, replayable: true })
  t.equal(await proxy.failover(session, good.port), size, 'just the fourth request')
  t.equal(sha256(await reply), sha256(fourth))
})

t.test(
  'a FIN before the answer, held: the caller fails over instead of passing it on',
  { skip },
  async (t) => {
    const req = Buffer.from('GET /thing\r\n')
    const bad = await finBeforeAnswer()
    const good = await echoServer('good')
    t.teardown(() => Promise.all([bad.close(), good.close()]))
    const proxy = await nativeProxy(() => bad.port, { replayBytes: 4096, holdServerEof: true })
    t.teardown(() => proxy.close())
    const client = await connectClient(proxy.port)
    t.teardown(() => client.destroy())
    const session = await proxy.session(0)

    const reply = client.read(req.length)
    client.socket.write(req)
    const eof = await session.next('server-eof')
    t.equal(eof.held, true)
    t.match(eof.stats, { answered: false, replayable: true, replayBytes: req.length, finSentToClient: false })
    t.equal(await proxy.failover(session, good.port), req.length)
    t.equal((await reply).toString(), req.toString(), 'answered by the second server')
    t.notOk(client.ended, 'the client never saw the first server FIN')
  }
)

t.test('replay overflow: not replayable until the server speaks again', { skip }, async (t) => {
  const hang = await hangServer() // reads nothing, answers nothing
  t.teardown(() => hang.close())
  const proxy = await nativeProxy(() => hang.port, { replayBytes: 4096 })
  t.teardown(() => proxy.close())
  const client = await connectClient(proxy.port)
  t.teardown(() => client.destroy())
  const session = await proxy.session(0)
  const plane = thePlane()

  const big = pattern(20_000, 31)
  client.socket.write(big)
  await until(() => plane.stats(session.handle)?.bytesFromClient === big.length, 'the plane read the request')
  t.match(plane.stats(session.handle), {
    replayable: false,
    replayBytes: 0,
    unansweredBytes: big.length,
    replayOverflows: 1,
    answered: false,
  })
  t.throws(
    () => plane.replaceServer(session.handle, 0),
    { code: 'ERR_NATIVE_PLANE_NOT_REPLAYABLE' },
    'replaceServer refuses a session whose request was not all recorded'
  )
  t.ok(plane.stats(session.handle), 'and the session is still there')
})

t.test('replay overflow ends when the server answers', { skip }, async (t) => {
  const big = pattern(20_000, 32)
  const server = await answerThenSilent(big.length)
  t.teardown(() => server.close())
  const proxy = await nativeProxy(() => server.port, { replayBytes: 4096 })
  t.teardown(() => proxy.close())
  const client = await connectClient(proxy.port)
  t.teardown(() => client.destroy())
  const session = await proxy.session(0)
  const plane = thePlane()

  t.equal(sha256(await client.roundTrip(big)), sha256(big), 'an oversized request still goes through')
  await until(() => plane.stats(session.handle)?.answered === true, 'answered')
  const s = plane.stats(session.handle)!
  t.ok(s.replayOverflows >= 1, 'it overflowed the replay pipe')
  t.equal(s.replayable, true, 'replayable again once the server spoke')

  // The next request (this server will not answer it) is recorded again.
  const small = Buffer.from('small one')
  client.socket.write(small)
  await until(() => plane.stats(session.handle)?.replayBytes === small.length, 'the small request recorded')
  t.match(plane.stats(session.handle), { replayable: true, unansweredBytes: small.length })
})

// copyReads false: every read spliced, the segments tee'd into the replay pipe and repacked when it
// runs out of slots. true (the default): each segment copied and recorded in memory.
for (const copyReads of [false, true])
  t.test(
    `a request in many small segments stays replayable (${copyReads ? 'recorded in memory' : 'the replay pipe is repacked'})`,
    { skip },
    async (t) => {
      // 100 segments of 10 bytes: far more pipe buffers than a 64 KiB pipe has slots (16), far fewer
      // bytes than replayBytes. Each write waits for the plane to have read the one before.
      const bad = await hangServer()
      const good = await echoServer('good')
      t.teardown(() => Promise.all([bad.close(), good.close()]))
      const plane = thePlane()
      plane.configure({ copyReads })
      t.teardown(() => plane.configure({ copyReads: true }))
      const proxy = await nativeProxy(() => bad.port, { replayBytes: 65536 })
      t.teardown(() => proxy.close())
      const client = await connectClient(proxy.port)
      t.teardown(() => client.destroy())
      client.socket.setNoDelay(true)
      const session = await proxy.session(0)
      const compactionsBefore = plane.poolStats().replayCompactions

      const parts: Buffer[] = []
      for (let i = 0; i < 100; i++) {
        const part = Buffer.from(`seg-${String(i).padStart(6, '0')}`)
        parts.push(part)
        client.socket.write(part)
        await until(() => plane.stats(session.handle)?.bytesFromClient === (i + 1) * 10, `segment ${i} read`)
      }
      const req = Buffer.concat(parts)
      t.match(plane.stats(session.handle), { replayable: true, replayBytes: req.length, replayOverflows: 0 })
      if (copyReads) t.equal(plane.stats(session.handle)?.pipes, 0, 'recorded in memory: no pipe held')
      else t.ok(plane.poolStats().replayCompactions > compactionsBefore, 'repacked at least once')

      // The hanging server is given up on (as a response timeout would), and the record is exact.
      const reply = client.read(req.length)
      t.equal(await proxy.failover(session, good.port), req.length)
      t.equal((await reply).toString(), req.toString(), 'the replayed bytes are the request, in order')
    }
  )

t.test('between turns, replaceServer moves a live session and re-sends nothing', { skip }, async (t) => {
  const first = await echoServer('first')
  const second = await echoServer('second')
  t.teardown(() => Promise.all([first.close(), second.close()]))
  const proxy = await nativeProxy(() => first.port, { replayBytes: 4096 })
  t.teardown(() => proxy.close())
  const client = await connectClient(proxy.port)
  t.teardown(() => client.destroy())
  const session = await proxy.session(0)
  const plane = thePlane()

  t.equal((await client.roundTrip(Buffer.from('on the first'))).toString(), 'on the first')
  await until(() => plane.stats(session.handle)?.answered === true, 'answered')
  t.equal(await proxy.failover(session, second.port), 0, 'nothing to re-send (a drain or a migration)')
  await until(() => first.connections === 0, 'the first server connection closed')
  t.equal((await client.roundTrip(Buffer.from('on the second'))).toString(), 'on the second')
  t.equal(second.accepted, 1, 'served by the second server')
  t.match(plane.stats(session.handle), { failovers: 1, replayedBytes: 0, serverDown: false })
})
