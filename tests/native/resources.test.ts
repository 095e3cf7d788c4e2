/**
 * What the native plane holds, and that it gives it back: no descriptor left after 1000 sessions,
 * a pipe pool that keeps at most maxIdlePipes, and a worker thread torn down with a live session
 * (the async cleanup hook closes every uv handle before the worker's loop goes away).
 */
import { once as onceEvent } from 'node:events'
import { Worker } from 'node:worker_threads'
import t from 'tap'
import { Client, connectClient, pattern } from '../helpers/clients.js'
import { echoServer, hangServer } from '../helpers/servers.js'
import { until, within } from '../helpers/wait.js'
import { ADDON_PATH } from '../../lib/native/plane.js'
import { nativeProxy, openFds, skip, thePlane } from './helpers/native-proxy.js'

// Both ways of reading: small messages copied (the default), and every read spliced (copyReads
// false), where each session takes pipes from the pool and gives them back.
for (const copyReads of [true, false])
  t.test(`no descriptor leak after 1000 sessions (copyReads ${copyReads})`, { skip }, async (t) => {
    const plane = thePlane()
    plane.configure({ copyReads })
    t.teardown(() => plane.configure({ copyReads: true }))
    const echo = await echoServer()
    t.teardown(() => echo.close())
    const proxy = await nativeProxy(() => echo.port, { replayBytes: 16384 })
    t.teardown(() => proxy.close())
    t.teardown(() => plane.configure({ maxIdlePipes: 1024 }))

    const one = async (i: number): Promise<void> => {
      const client = await connectClient(proxy.port)
      const req = pattern(100 + (i % 900), i + 1)
      const reply = await client.roundTrip(req)
      if (!reply.equals(req)) throw new Error(`session ${i}: wrong reply`)
      client.socket.end()
      await within(client.closed, `session ${i} closed`)
    }
    await one(0) // warm-up: whatever Node opens lazily on the first connection
    await until(() => plane.poolStats().sessions === 0 && echo.connections === 0, 'warm-up session gone')
    plane.configure({ maxIdlePipes: 0 })
    const before = openFds()
    plane.configure({ maxIdlePipes: 1024 })

    const total = 1000
    const concurrency = 50
    let next = 1
    const worker = async (): Promise<void> => {
      while (next <= total) await one(next++)
    }
    await within(Promise.all(Array.from({ length: concurrency }, worker)), '1000 sessions', 60_000)

    await until(() => plane.poolStats().sessions === 0, 'every native session freed')
    await until(() => echo.connections === 0, 'every backend connection closed')
    const pool = plane.poolStats()
    t.equal(pool.inUse, 0, 'no pipe held by anyone')
    if (copyReads) t.ok(pool.idle <= 1024, `idle pipes within the bound (${pool.idle})`)
    else t.ok(pool.idle > 0 && pool.idle <= 1024, `idle pipes kept for reuse (${pool.idle})`)
    plane.configure({ maxIdlePipes: 0 })
    t.equal(plane.poolStats().idle, 0, 'a lower bound closes the idle pipes at once')
    await until(() => openFds() === before, `open descriptors back to ${before} (now ${openFds()})`)
    t.equal(openFds(), before, 'open descriptors back where they were')
    const done = proxy.sessions.filter((s) => s.events.some((e) => e.type === 'close' && e.reason === 'done'))
    t.equal(done.length, total + 1, 'every session ended as done')
  })

t.test('the pipe pool keeps at most maxIdlePipes', { skip }, async (t) => {
  const plane = thePlane()
  // A server that never answers: each session's request stays in its replay pipe, so every
  // session holds one pipe at the same time (every read spliced: a small request read by copy
  // is recorded in memory instead).
  plane.configure({ copyReads: false })
  t.teardown(() => plane.configure({ copyReads: true }))
  const hang = await hangServer()
  t.teardown(() => hang.close())
  const proxy = await nativeProxy(() => hang.port, { replayBytes: 65536 })
  t.teardown(() => proxy.close())
  t.teardown(() => plane.configure({ maxIdlePipes: 1024 }))
  plane.configure({ maxIdlePipes: 0 })
  const base = openFds()
  plane.configure({ maxIdlePipes: 8 })

  const n = 40
  const clients: Client[] = []
  t.teardown(() => clients.forEach((c) => c.destroy()))
  for (let i = 0; i < n; i++) {
    const c = await connectClient(proxy.port)
    clients.push(c)
    c.socket.write(pattern(1000, i + 1))
  }
  await until(() => proxy.sessions.length === n, 'all sessions attached')
  await until(
    () => proxy.sessions.every((s) => plane.stats(s.handle)?.replayBytes === 1000),
    'every session holding its unanswered request'
  )
  const busy = plane.poolStats()
  t.ok(busy.inUse >= n, `${busy.inUse} pipes in use at once`)
  t.ok(
    proxy.sessions.every((s) => plane.stats(s.handle)?.pipes === 1),
    'one pipe each: the replay pipe'
  )

  for (const s of proxy.sessions) plane.close(s.handle)
  const after = plane.poolStats()
  t.equal(after.inUse, 0, 'all back')
  t.equal(after.idle, 8, 'the pool kept exactly maxIdlePipes')
  t.ok(after.destroyed >= n - 8, 'the rest were closed')
  for (const c of clients) c.destroy()
  await until(() => plane.poolStats().sessions === 0, 'sessions freed')
  for (const s of hang.sockets) s.destroy() // a paused server never reads the FIN itself
  await until(() => hang.connections === 0, 'backend connections closed')
  await until(
    () => openFds() === base + 2 * 8,
    `descriptors: the base and 8 idle pipes (${openFds()} vs ${base})`
  )
  t.pass('descriptors bounded by the pool')
})

t.test('a worker thread torn down with a live session exits cleanly', { skip }, async (t) => {
  // Plain CommonJS with the raw binding: the worker needs no TypeScript loader.
  const code = `
    const { parentPort } = require('node:worker_threads')
    const net = require('node:net')
    const binding = require(${JSON.stringify(ADDON_PATH)})
    binding.setCallback(() => {})
    const echo = net.createServer((s) => s.pipe(s)).listen(0, '127.0.0.1', () => {
      const front = net.createServer({ pauseOnConnect: true }, (a) => {
        const b = net.connect(echo.address().port, '127.0.0.1', () => {
          binding.attach(a._handle.fd, b._handle.fd, 4096, 0)
          a.destroy()
          b.destroy()
          client.write('ping')
        })
      }).listen(0, '127.0.0.1', () => {
        client = net.connect(front.address().port, '127.0.0.1')
        client.once('data', (d) => parentPort.postMessage(String(d)))
      })
    })
    let client
  `
  const worker = new Worker(code, { eval: true, execArgv: [] })
  const [msg] = await within(onceEvent(worker, 'message'), 'the worker proxied a round trip')
  t.equal(msg, 'ping', 'bytes moved through the plane inside the worker')
  const exit = within(onceEvent(worker, 'exit'), 'the worker exits')
  await worker.terminate()
  const [code_] = await exit
  t.equal(code_, 1, 'terminated (exit code 1), no abort on open handles')
  t.ok(thePlane().poolStats(), 'the main thread plane is untouched')
})
