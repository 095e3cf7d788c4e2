/**
 * The plane's own server connects (`connect`, `attachConnected`, `cancelConnect`; docs/native-plane.md,
 * "Connects"): a connect that succeeds carries a session both ways with no Node socket for the
 * server, a refused one reports ECONNREFUSED and leaves no descriptor, a cancelled one reports
 * nothing and closes, and a connection can be attached once only. Skipped when the addon is not
 * built.
 */
import net from 'node:net'
import t from 'tap'
import type { PlaneConnection, PlaneEvent } from '../../lib/native/plane.js'
import { connectClient } from '../helpers/clients.js'
import { echoServer, HOST, TestServer } from '../helpers/servers.js'
import { until, within } from '../helpers/wait.js'
import { openFds, skip, thePlane } from './helpers/native-proxy.js'

interface Outcome {
  connection: PlaneConnection
  errno: number
  code: string
}

/** Start a plane connect to `port`; resolves with its outcome. */
function planeConnect(port: number, now = false): { connection: PlaneConnection; done: Promise<Outcome> } {
  let resolve!: (o: Outcome) => void
  const done = new Promise<Outcome>((r) => (resolve = r))
  const connection = thePlane().connect(
    4,
    HOST,
    port,
    (c, errno, code) => resolve({ connection: c, errno, code }),
    { now }
  )
  return { connection, done }
}

/** A port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>((r) => srv.listen(0, HOST, r))
  const { port } = srv.address() as net.AddressInfo
  await new Promise<void>((r) => srv.close(() => r()))
  return port
}

// connectNow: a loopback connect is done inside connect() and reported on the next tick; false
// takes the epoll's EPOLLOUT instead (the path of a connect that takes a round trip).
for (const connectNow of [true, false])
  t.test(
    `a plane connect that succeeds carries a session both ways, no Node socket for the server (connectNow ${connectNow})`,
    { skip },
    async (t) => {
      const plane = thePlane()
      plane.configure({ connectNow })
      t.teardown(() => plane.configure({ connectNow: true }))
      const echo = await echoServer('echo')
      t.teardown(() => echo.close())
      // The session's client: accepted by a server of the test, paused, handed to the plane.
      let accepted!: net.Socket
      const front = net.createServer({ pauseOnConnect: true }, (s) => (accepted = s))
      await new Promise<void>((r) => front.listen(0, HOST, r))
      t.teardown(() => front.close())
      const client = await connectClient((front.address() as net.AddressInfo).port)
      t.teardown(() => client.destroy())
      await until(() => accepted !== undefined, 'the front accepted')

      const { connection, done } = planeConnect(echo.port, connectNow)
      const outcome = await within(done, 'the connect reported')
      t.equal(outcome.errno, 0, 'connected')
      t.equal(outcome.connection, connection, 'the outcome names the connection')
      t.match(plane.localName(connection), /^127\.0\.0\.1:\d+$/, `local name ${plane.localName(connection)}`)
      const events: PlaneEvent[] = []
      const handle = plane.attachConnected(accepted, connection, (e) => events.push(e))
      t.teardown(() => plane.close(handle))
      t.ok(handle > 0, 'attached')
      const reply = await client.roundTrip(Buffer.from('through a plane connect'))
      t.equal(reply.toString(), 'through a plane connect', 'a round trip')
      t.equal(echo.connections, 1, 'one backend connection')
      t.throws(
        () => plane.attachConnected(accepted, connection, () => undefined),
        { code: 'ERR_INVALID_ARG_VALUE' },
        'a connection attaches once'
      )
      client.socket.end()
      await until(() => events.some((e) => e.type === 'close'), 'the session closes after the FINs')
    }
  )

t.test('a refused plane connect reports ECONNREFUSED and leaves no descriptor', { skip }, async (t) => {
  const port = await closedPort()
  const before = openFds()
  const { done } = planeConnect(port)
  const outcome = await within(done, 'the connect reported')
  t.equal(outcome.code, 'ECONNREFUSED', 'refused')
  t.ok(outcome.errno > 0, `errno ${outcome.errno}`)
  t.equal(openFds(), before, 'no descriptor left')
})

t.test('a cancelled plane connect reports nothing and is closed', { skip }, async (t) => {
  const plane = thePlane()
  const server = await new TestServer('count', (s) => {
    s.resume()
    s.on('end', () => s.destroy())
  }).listen()
  t.teardown(() => server.close())
  const before = openFds()
  let reported = false
  const connection = plane.connect(4, HOST, server.port, () => (reported = true))
  plane.cancelConnect(connection)
  t.equal(openFds(), before, 'closed at once')
  // The kernel may have completed the handshake before the close: the server then sees it close.
  await until(() => server.connections === 0, 'no connection left open at the server')

  // Cancelled after it connected (never attached): closed too, and the server sees it end.
  const acceptedBefore = server.accepted
  const { connection: c2, done } = planeConnect(server.port)
  t.equal((await within(done, 'the second connect reported')).errno, 0, 'connected')
  await until(() => server.accepted > acceptedBefore, 'the server accepted it')
  plane.cancelConnect(c2)
  await until(() => server.connections === 0, 'the server saw the connection close')
  t.equal(openFds(), before, 'no descriptor left')
  plane.cancelConnect(c2) // a second cancel is a no-op
  t.equal(openFds(), before, 'a second cancel closes nothing')
  t.notOk(reported, 'no outcome for the cancelled connect')
})

t.test('connect refuses what is not an IP address of the family', { skip }, async (t) => {
  const plane = thePlane()
  t.throws(() => plane.connect(4, 'localhost', 80, () => undefined), { code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => plane.connect(6, HOST, 80, () => undefined), { code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => plane.connect(4, HOST, 70000, () => undefined), { code: 'ERR_INVALID_ARG_VALUE' })
})

t.test('a plane connect to an IPv6 address', { skip }, async (t) => {
  const server = net.createServer((s) => s.destroy())
  const listening = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false))
    server.listen(0, '::1', () => resolve(true))
  })
  if (!listening) {
    t.pass('IPv6', { skip: '::1 is not available here' })
    return
  }
  t.teardown(() => server.close())
  const port = (server.address() as net.AddressInfo).port
  let resolve!: (o: Outcome) => void
  const done = new Promise<Outcome>((r) => (resolve = r))
  const connection = thePlane().connect(6, '::1', port, (c, errno, code) =>
    resolve({ connection: c, errno, code })
  )
  const outcome = await within(done, 'the connect reported')
  t.equal(outcome.errno, 0, 'connected to ::1')
  t.match(thePlane().localName(connection), /^::1:\d+$/, `local name ${thePlane().localName(connection)}`)
  thePlane().cancelConnect(connection)
})
