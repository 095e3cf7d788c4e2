/**
 * The native plane's threads (native/plane.c, "Threads"): a session starts on the main loop and
 * moves to the least loaded plane thread once it carries bulk (a read of 16 KiB or more), so
 * sessions spread over the threads; `threads: 0` keeps everything on the main loop through the
 * same code; a thread the configuration drops ends with its last session; calls from JavaScript
 * (stats, pause, replaceServer, close) while a thread is busy moving bulk; and a worker thread torn
 * down with sessions on several plane threads (every thread joined, every descriptor closed).
 * Skipped, with the reason, when the addon is not built.
 */
import { once as onceEvent } from 'node:events'
import fs from 'node:fs'
import type { Socket } from 'node:net'
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import t from 'tap'
import { ADDON_PATH, MAX_PLANE_THREADS, type PlaneStats } from '../../lib/native/plane.js'
import { Client, connectClient, pattern } from '../helpers/clients.js'
import { echoServer, TestServer } from '../helpers/servers.js'
import { until, within } from '../helpers/wait.js'
import { connected, nativeProxy, openFds, skip, thePlane, type ProxiedSession } from './helpers/native-proxy.js'

const MiB = 1024 * 1024
/** A round trip this big is bulk: its reads fill 16 KiB, and the session moves to a thread. */
const BULK = 64 * 1024
const DEFAULT_THREADS = Math.min(MAX_PLANE_THREADS, availableParallelism())

/** Names of this process's threads that are plane threads (`baton-plane-N`). */
function planeThreads(): string[] {
  const names: string[] = []
  for (const task of fs.readdirSync('/proc/self/task')) {
    try {
      const name = fs.readFileSync(`/proc/self/task/${task}/comm`, 'utf8').trim()
      if (name.startsWith('baton-plane-')) names.push(name)
    } catch {
      // the thread ended while we looked
    }
  }
  return names.sort()
}

/**
 * Writes `payload` on each connection as fast as the kernel takes it (and reads nothing): a
 * session through it keeps its plane thread busy moving bulk to the client.
 */
function firehose(payload: Buffer): Promise<TestServer> {
  return new TestServer('firehose', (socket: Socket) => {
    socket.on('error', () => {})
    let offset = 0
    const pump = (): void => {
      while (offset < payload.length && !socket.destroyed) {
        const slice = payload.subarray(offset, offset + 256 * 1024)
        offset += slice.length
        if (!socket.write(slice)) return void socket.once('drain', pump)
      }
    }
    pump()
  }).listen()
}

/** A client that keeps every byte it receives. */
function collecting(client: Client): { bytes: () => number; all: () => Buffer } {
  const chunks: Buffer[] = []
  let n = 0
  client.socket.on('data', (c: Buffer) => {
    chunks.push(c)
    n += c.length
  })
  client.socket.resume()
  return { bytes: () => n, all: () => Buffer.concat(chunks) }
}

t.test('sessions spread over the plane threads, each moving its own bytes', { skip }, async (t) => {
  const plane = thePlane()
  plane.configure({ threads: 2 })
  t.teardown(() => plane.configure({ threads: DEFAULT_THREADS }))
  const echo = await echoServer()
  t.teardown(() => echo.close())
  const proxy = await nativeProxy(() => echo.port)
  t.teardown(() => proxy.close())

  const clients: Client[] = []
  t.teardown(() => clients.forEach((c) => c.destroy()))
  for (let i = 0; i < 6; i++) {
    const c = await connectClient(proxy.port)
    clients.push(c)
    await proxy.session(i)
  }
  const small = await Promise.all(clients.map((c, i) => c.roundTrip(Buffer.from(`hello ${i}`))))
  t.ok(small.every((r, i) => r.toString() === `hello ${i}`), 'small round trips')
  t.same(
    proxy.sessions.map((s) => plane.stats(s.handle)!.thread),
    [0, 0, 0, 0, 0, 0],
    'small messages: every session on the main loop'
  )
  // Bulk: every session moves to a plane thread, each carrying its own bytes, all at once.
  const replies = await Promise.all(clients.map((c, i) => c.roundTrip(pattern(BULK, i + 1))))
  t.ok(
    replies.every((r, i) => r.equals(pattern(BULK, i + 1))),
    'every session echoed its own bytes'
  )
  const threads = proxy.sessions.map((s) => plane.stats(s.handle)!.thread)
  t.same(
    [threads.filter((n) => n === 1).length, threads.filter((n) => n === 2).length],
    [3, 3],
    `three sessions on each thread (${threads.join(' ')})`
  )
  const pool = plane.poolStats()
  t.equal(pool.threads, 2, 'two threads configured')
  t.equal(pool.threadsRunning, 2, 'both running')
  t.same(planeThreads(), ['baton-plane-1', 'baton-plane-2'], 'named plane threads in /proc')
  const again = await Promise.all(clients.map((c, i) => c.roundTrip(pattern(BULK, i + 7))))
  t.ok(again.every((r, i) => r.equals(pattern(BULK, i + 7))), 'and go on there')
  for (const c of clients) c.socket.end()
  await until(() => plane.poolStats().sessions === 0, 'sessions freed')
  t.ok(
    proxy.sessions.every((s) => s.events.some((e) => e.type === 'close' && e.reason === 'done')),
    'every session ended as done'
  )
})

t.test('threads 0: every session stays on the main loop; threads configured later take bulk ones', { skip }, async (t) => {
  const plane = thePlane()
  plane.configure({ threads: 0 })
  t.teardown(() => plane.configure({ threads: DEFAULT_THREADS }))
  const echo = await echoServer()
  t.teardown(() => echo.close())
  const proxy = await nativeProxy(() => echo.port, { replayBytes: 65536 })
  t.teardown(() => proxy.close())

  const a = await connectClient(proxy.port)
  t.teardown(() => a.destroy())
  const sa = await proxy.session(0)
  const big = pattern(8 * MiB, 3)
  const [echoed] = await Promise.all([a.read(big.length), a.write(big)])
  t.ok(echoed.equals(big), '8 MiB echoed byte-exact on the main loop')
  t.equal(plane.stats(sa.handle)!.thread, 0, 'still on the main thread')
  t.equal(plane.poolStats().threadsRunning, 0, 'no plane thread started')

  plane.configure({ threads: 2 })
  t.equal((await a.roundTrip(Buffer.from('still'))).toString(), 'still', 'the bulk session goes on')
  t.ok([1, 2].includes(plane.stats(sa.handle)!.thread), 'and moves to a plane thread at its next wake-up')
  const b = await connectClient(proxy.port)
  t.teardown(() => b.destroy())
  const sb = await proxy.session(1)
  t.equal((await b.roundTrip(Buffer.from('small'))).toString(), 'small')
  t.equal(plane.stats(sb.handle)!.thread, 0, 'a new session starts on the main loop')
  const more = pattern(BULK, 9)
  t.ok((await b.roundTrip(more)).equals(more), 'bulk')
  t.ok([1, 2].includes(plane.stats(sb.handle)!.thread), 'then moves')
})

t.test('a thread the configuration drops ends with its last session', { skip }, async (t) => {
  const plane = thePlane()
  plane.configure({ threads: 3 })
  t.teardown(() => plane.configure({ threads: DEFAULT_THREADS }))
  const echo = await echoServer()
  t.teardown(() => echo.close())
  const proxy = await nativeProxy(() => echo.port)
  t.teardown(() => proxy.close())
  const clients: Client[] = []
  t.teardown(() => clients.forEach((c) => c.destroy()))
  for (let i = 0; i < 3; i++) {
    clients.push(await connectClient(proxy.port))
    await proxy.session(i)
  }
  await Promise.all(clients.map((c, i) => c.roundTrip(pattern(BULK, i + 1))))
  const on = (thread: number): number =>
    proxy.sessions.findIndex((s) => plane.stats(s.handle)?.thread === thread)
  t.ok(on(1) >= 0 && on(2) >= 0 && on(3) >= 0, 'one session on each of three threads')
  t.equal(plane.poolStats().threadsRunning, 3)

  plane.configure({ threads: 1 })
  t.equal(plane.poolStats().threadsRunning, 3, 'threads 2 and 3 still have a session each')
  const third = clients[on(3)]!
  const second = clients[on(2)]!
  second.socket.end()
  await until(() => plane.poolStats().threadsRunning === 2, 'thread 2 ended with its session')
  // Joined; the kernel drops its /proc entry a moment after the join can return.
  await until(() => !planeThreads().includes('baton-plane-2'), 'baton-plane-2 gone from /proc')
  t.pass('baton-plane-2 is gone')
  t.equal((await third.roundTrip(Buffer.from('on three'))).toString(), 'on three', 'thread 3 still moves bytes')
  const next = await connectClient(proxy.port)
  clients.push(next)
  const s = await proxy.session(3)
  await next.roundTrip(pattern(BULK, 4))
  t.equal(plane.stats(s.handle)!.thread, 1, 'a new bulk session goes to thread 1')
  third.socket.end()
  await until(() => plane.poolStats().threadsRunning === 1, 'thread 3 ended with its session')
  await until(() => planeThreads().join() === 'baton-plane-1', `only baton-plane-1 left (${planeThreads().join()})`)
  t.same(planeThreads(), ['baton-plane-1'])
})

t.test('stats, pause, replaceServer and close while the thread moves bulk', { skip }, async (t) => {
  const plane = thePlane()
  plane.configure({ threads: 2 })
  t.teardown(() => plane.configure({ threads: DEFAULT_THREADS }))
  const payload = pattern(256 * MiB, 5)
  const hose = await firehose(payload)
  t.teardown(() => hose.close())
  const echo = await echoServer()
  t.teardown(() => echo.close())
  const proxy = await nativeProxy(() => hose.port, { replayBytes: 65536 })
  t.teardown(() => proxy.close())

  const client = await connectClient(proxy.port)
  t.teardown(() => client.destroy())
  const session = await proxy.session(0)
  const got = collecting(client)
  await until(() => got.bytes() >= 8 * MiB, 'bulk flowing', { timeoutMs: 30_000 })
  t.ok(plane.stats(session.handle)!.thread > 0, 'moved to a plane thread')

  // Stats read while the thread moves bytes: each a consistent snapshot, the counters monotonic.
  let prev: PlaneStats | undefined
  let consistent = true
  let moved = false
  for (let i = 0; i < 2000; i++) {
    const s = plane.stats(session.handle)!
    if (s.bytesToClient + s.pendingToClient !== s.bytesFromServer) consistent = false
    if (prev !== undefined && (s.bytesFromServer < prev.bytesFromServer || s.bytesToClient < prev.bytesToClient))
      consistent = false
    if (prev !== undefined && s.bytesFromServer > prev.bytesFromServer) moved = true
    prev = s
  }
  t.ok(consistent, 'every snapshot: to client + pending = from server, never going back')
  t.ok(moved || got.bytes() < payload.length, 'read while bytes moved')

  // Pause from this thread: the plane thread stops reading at once, then carries on.
  plane.pause(session.handle)
  let last = -1
  await until(
    () => {
      const n = plane.stats(session.handle)!.bytesFromServer
      const still = n === last
      last = n
      return still
    },
    'no server byte read while paused',
    { intervalMs: 50 }
  )
  const paused = plane.stats(session.handle)!
  t.ok(paused.paused, 'paused')
  plane.resume(session.handle)
  await until(() => plane.stats(session.handle)!.bytesFromServer > paused.bytesFromServer, 'resumed')

  // Move to another server mid-stream: nothing unanswered (the client sent nothing), nothing re-sent.
  const upstream = await connected(echo.port)
  const resent = plane.replaceServer(session.handle, upstream)
  t.equal(resent, 0, 'nothing to re-send')
  const at = plane.stats(session.handle)!
  t.equal(at.failovers, 1)
  // What the old server had sent still reaches the client, then the new server's echo.
  client.socket.write('ping!')
  await until(
    () => got.bytes() >= at.bytesFromServer + 5,
    'the rest of the stream and the echo',
    { timeoutMs: 30_000 }
  )
  const all = got.all()
  t.equal(all.length, at.bytesFromServer + 5, 'every byte the plane read, and the echo')
  t.ok(all.subarray(0, at.bytesFromServer).equals(payload.subarray(0, at.bytesFromServer)), 'the stream byte-exact')
  t.equal(all.subarray(at.bytesFromServer).toString(), 'ping!', 'then the new server')

  // Close while another session streams: final stats back, no event after, the client sees the end.
  const other = await connectClient(proxy.port)
  t.teardown(() => other.destroy())
  const second = await proxy.session(1)
  const got2 = collecting(other)
  await until(() => got2.bytes() >= 8 * MiB, 'second session streaming', { timeoutMs: 30_000 })
  t.ok(plane.stats(second.handle)!.thread > 0, 'on a plane thread')
  const final = plane.close(second.handle)
  t.ok(final?.closed, 'close() returns the final stats')
  t.ok(final!.bytesToClient >= 8 * MiB, `${(final!.bytesToClient / MiB).toFixed(0)} MiB moved before`)
  await within(other.closed, 'the client saw the end')
  t.equal(plane.stats(second.handle), undefined, 'the handle is released')
  t.notOk(
    second.events.some((e) => e.type === 'close'),
    'no event after close()'
  )
  t.ok(got2.all().equals(payload.subarray(0, got2.bytes())), 'what reached the client is byte-exact')
})

t.test('close() of a session its thread has just closed still returns its stats', { skip }, async (t) => {
  const plane = thePlane()
  const echo = await echoServer()
  t.teardown(() => echo.close())
  const proxy = await nativeProxy(() => echo.port)
  t.teardown(() => proxy.close())
  const client = await connectClient(proxy.port)
  const session: ProxiedSession = await proxy.session(0)
  await client.roundTrip(pattern(BULK, 2))
  t.ok(plane.stats(session.handle)!.thread > 0, 'on a plane thread')
  client.socket.resetAndDestroy()
  // Wait for the plane thread without giving this thread's loop a turn (Atomics.wait blocks it),
  // so its close event, queued for this loop, cannot be delivered before the calls below.
  const nap = new Int32Array(new SharedArrayBuffer(4))
  for (let i = 0; i < 5000 && plane.stats(session.handle)?.closed !== true; i++) Atomics.wait(nap, 0, 0, 1)
  t.equal(plane.stats(session.handle)?.closed, true, 'the plane thread closed it')
  t.notOk(session.events.some((e) => e.type === 'close'), 'its close event not delivered yet')
  t.throws(
    () => plane.replaceServer(session.handle, 0),
    { code: 'ERR_NATIVE_PLANE_CLOSED' },
    'replaceServer says it closed'
  )
  plane.pause(session.handle) // a no-op, not a throw
  plane.shutdownClient(session.handle)
  const final = plane.close(session.handle)
  t.ok(final?.closed, 'close() returns the final stats')
  t.equal(final?.bytesToClient, BULK)
  await until(() => plane.poolStats().sessions === 0, 'released')
  t.notOk(session.events.some((e) => e.type === 'close'), 'the queued close event is dropped')
})

t.test('a server event outlived by a replaceServer is not delivered', { skip }, async (t) => {
  const plane = thePlane()
  const closer = await new TestServer('closer', (socket: Socket) => {
    socket.on('error', () => {})
    socket.once('data', () => socket.write(pattern(BULK, 6)))
  }).listen()
  t.teardown(() => closer.close())
  const echo = await echoServer()
  t.teardown(() => echo.close())
  const proxy = await nativeProxy(() => closer.port, { replayBytes: 65536, holdServerEof: true })
  t.teardown(() => proxy.close())
  const client = await connectClient(proxy.port)
  t.teardown(() => client.destroy())
  const session = await proxy.session(0)
  const upstream = await connected(echo.port)
  const reply = client.read(BULK)
  client.socket.write('hi')
  t.ok((await reply).equals(pattern(BULK, 6)), 'a bulk answer')
  t.ok(plane.stats(session.handle)!.thread > 0, 'so the session is on a plane thread')
  // The server closes (destroy() closes its descriptor at once: the FIN goes now), the plane
  // thread reads the FIN and queues its event for this loop; move the session before this loop
  // gets a turn to deliver it (Atomics.wait blocks the thread).
  for (const s of closer.sockets) s.destroy()
  const nap = new Int32Array(new SharedArrayBuffer(4))
  for (let i = 0; i < 5000 && plane.stats(session.handle)?.serverEofHeld !== true; i++) Atomics.wait(nap, 0, 0, 1)
  t.equal(plane.stats(session.handle)?.serverEofHeld, true, 'the FIN is held, its event queued')
  t.equal(plane.replaceServer(session.handle, upstream), 0, 'moved between turns')
  t.equal((await client.roundTrip(Buffer.from('again'))).toString(), 'again', 'the new server answers')
  t.notOk(
    session.events.some((e) => e.type === 'server-eof'),
    'the old server\'s FIN never reached the listener'
  )
})

t.test('the threads setting is validated', { skip }, async (t) => {
  const plane = thePlane()
  for (const bad of [-1, MAX_PLANE_THREADS + 1, 1.5, Number.NaN])
    t.throws(() => plane.configure({ threads: bad }), { code: 'ERR_INVALID_ARG_VALUE' }, `threads ${bad}`)
  t.equal(plane.poolStats().threads, DEFAULT_THREADS, 'unchanged by refused values')
  t.equal(DEFAULT_THREADS, Math.min(MAX_PLANE_THREADS, availableParallelism()), 'the default: one per CPU')
})

t.test('a worker torn down with sessions on several plane threads joins them and closes every descriptor', { skip }, async (t) => {
  // Plain CommonJS with the raw binding: the worker needs no TypeScript loader.
  const code = `
    const { parentPort } = require('node:worker_threads')
    const net = require('node:net')
    const binding = require(${JSON.stringify(ADDON_PATH)})
    binding.setCallback(() => {})
    binding.configure(-1, 0, -1, 2)
    const stats = new Float64Array(binding.statsLength)
    const ids = []
    const echo = net.createServer((s) => s.pipe(s)).listen(0, '127.0.0.1', () => {
      const front = net.createServer({ pauseOnConnect: true }, (a) => {
        const b = net.connect(echo.address().port, '127.0.0.1', () => {
          ids.push(binding.attach(a._handle.fd, b._handle.fd, 65536, 0))
          a.destroy()
          b.destroy()
        })
      }).listen(0, '127.0.0.1', () => {
        let ready = 0
        for (let i = 0; i < 4; i++) {
          const client = net.connect(front.address().port, '127.0.0.1')
          const chunk = Buffer.alloc(256 * 1024, i)
          let first = true
          // Bulk both ways, forever: the client writes and the echo sends it back. Once every
          // session has moved to a plane thread, say which.
          client.on('data', () => {
            if (first && ++ready === 4) {
              const poll = setInterval(() => {
                const threads = ids.map((id) => (binding.stats(id, stats), stats[18]))
                if (threads.every((n) => n > 0)) {
                  clearInterval(poll)
                  parentPort.postMessage(threads)
                }
              }, 5)
            }
            first = false
          })
          const pump = () => { while (client.write(chunk)); }
          client.on('drain', pump)
          client.on('connect', pump)
          client.on('error', () => {})
        }
      })
    })
  `
  const fdsBefore = openFds()
  const threadsBefore = planeThreads().length
  const worker = new Worker(code, { eval: true, execArgv: [] })
  const [threads] = (await within(onceEvent(worker, 'message'), 'the worker moves bulk on 4 sessions')) as [number[]]
  t.same([...threads].sort(), [1, 1, 2, 2], 'two sessions on each of its two threads')
  t.equal(planeThreads().length, threadsBefore + 2, 'the worker runs two plane threads')
  const exit = within(onceEvent(worker, 'exit'), 'the worker exits')
  await worker.terminate()
  const [code_] = await exit
  t.equal(code_, 1, 'terminated (exit code 1), no abort on open handles')
  await until(() => planeThreads().length === threadsBefore, 'its plane threads joined')
  await until(() => openFds() <= fdsBefore, `descriptors back to ${fdsBefore} (now ${openFds()})`)
  t.ok(openFds() <= fdsBefore, 'every descriptor the worker and its plane opened is closed')
  t.ok(thePlane().poolStats(), 'the main thread plane is untouched')
})
