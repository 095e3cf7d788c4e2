import http from 'node:http'
import net, { type Socket } from 'node:net'
import t, { type Test } from 'tap'
import {
  checkOf,
  httpCheck,
  redisCheck,
  runCheck,
  sendExpectCheck,
  tcpCheck,
  type CheckFn,
  type CheckSpec,
} from '../../lib/health/checks.js'
import { blackholeServer, HOST, refusedPort, TestServer } from '../helpers/servers.js'
import { once, within } from '../helpers/wait.js'

const TIMEOUT = 2000
/** For the checks that must fail by timeout: short, so the file stays fast. */
const SHORT = 150

/** A server on 127.0.0.1:0 that calls `reply(socket, bytesSoFar)` on every read; closes on client FIN. */
function lineServer(reply: (socket: Socket, data: string) => void): Promise<TestServer> {
  return new TestServer('line', (socket) => {
    let data = ''
    socket.on('data', (chunk: Buffer) => reply(socket, (data += chunk.toString('latin1'))))
    socket.on('end', () => socket.end())
  }).listen()
}

/** Accepts, reads, never answers; ends only when the client does. */
function silentServer(): Promise<TestServer> {
  return lineServer(() => {})
}

async function httpServer(t: Test): Promise<{ port: number; requests: http.IncomingMessage[] }> {
  const requests: http.IncomingMessage[] = []
  const server = http.createServer((req, res) => {
    requests.push(req)
    const status =
      req.url === '/health' ? 200 : req.url === '/moved' ? 301 : req.url === '/broken' ? 500 : 404
    res.writeHead(status, { 'content-type': 'text/plain' }).end(String(status))
  })
  server.listen(0, HOST)
  await within(once(server, 'listening'), 'http server listening')
  t.teardown(() => new Promise<void>((r) => server.close(() => r())).then(() => server.closeAllConnections()))
  return { port: (server.address() as net.AddressInfo).port, requests }
}

/** A check against a refused port fails with ECONNREFUSED. */
async function refused(t: Test, check: CheckFn): Promise<void> {
  const port = await refusedPort()
  const r = await check({ host: HOST, port: port.port }, TIMEOUT)
  t.same(r, { ok: false, reason: 'ECONNREFUSED' }, 'refused port fails')
}

/** A check against a server that never answers fails by timeout, and closes its connection. */
async function hangs(t: Test, check: CheckFn): Promise<void> {
  const server = await silentServer()
  t.teardown(() => server.close())
  const disconnected = once(server, 'disconnect')
  const started = Date.now()
  const r = await check({ host: HOST, port: server.port }, SHORT)
  const took = Date.now() - started
  t.same(r, { ok: false, reason: `timeout after ${SHORT} ms` }, 'silent server fails by timeout')
  t.ok(took >= SHORT - 5 && took < SHORT + 1000, `bounded by the timeout (took ${took} ms)`)
  await within(disconnected, 'the check closed its connection')
  t.equal(server.connections, 0, 'no connection left on the server')
}

t.test('tcp', async (t) => {
  t.test('up when the connect succeeds', async (t) => {
    const server = await silentServer()
    t.teardown(() => server.close())
    const disconnected = once(server, 'disconnect')
    t.same(await tcpCheck({ host: HOST, port: server.port }, TIMEOUT), { ok: true })
    await within(disconnected, 'connection closed after the check')
  })
  t.test('refused', (t) => refused(t, tcpCheck))
  t.test('a connect that never completes fails by timeout', async (t) => {
    const server = await blackholeServer()
    t.teardown(() => server.close())
    const started = Date.now()
    const r = await tcpCheck({ host: HOST, port: server.port }, SHORT)
    const took = Date.now() - started
    t.same(r, { ok: false, reason: `timeout after ${SHORT} ms` })
    t.ok(took >= SHORT - 5 && took < SHORT + 1000, `bounded by the timeout (took ${took} ms)`)
  })
})

t.test('send-expect', async (t) => {
  t.test('reads a banner without sending (server speaks first)', async (t) => {
    const server = await new TestServer('banner', (s) => {
      s.write('220 mail.example ESMTP ready\r\n')
      s.on('end', () => s.end())
    }).listen()
    t.teardown(() => server.close())
    const check = sendExpectCheck({ expect: '220 ' })
    t.same(await check({ host: HOST, port: server.port }, TIMEOUT), { ok: true })
  })

  t.test('sends text, matches a string split across reads', async (t) => {
    const server = await lineServer((s, data) => {
      if (!data.endsWith('\n')) return
      s.write('HEL')
      setImmediate(() => s.write(`LO ${data.trim()}\n`))
    })
    t.teardown(() => server.close())
    const check = sendExpectCheck({ send: 'baton\n', expect: 'HELLO baton' })
    t.same(await check({ host: HOST, port: server.port }, TIMEOUT), { ok: true })
  })

  t.test('sends hex bytes, matches a regex (given as a spec string)', async (t) => {
    let got: Buffer | undefined
    const server = await new TestServer('hex', (s) => {
      s.once('data', (chunk: Buffer) => {
        got = chunk
        s.write('status: OK 42\r\n')
      })
      s.on('end', () => s.end())
    }).listen()
    t.teardown(() => server.close())
    const spec: CheckSpec = {
      type: 'send-expect',
      sendHex: '00ff0d0a',
      expect: '^status: OK \\d+',
      expectRegex: true,
    }
    t.same(await runCheck(spec, { host: HOST, port: server.port }, TIMEOUT), { ok: true })
    t.same(got, Buffer.from([0x00, 0xff, 0x0d, 0x0a]), 'the hex bytes were sent as bytes')
  })

  t.test('a global regex matches on every run (no lastIndex carried over)', async (t) => {
    const server = await lineServer((s) => s.write('pong\n'))
    t.teardown(() => server.close())
    const check = sendExpectCheck({ send: 'ping\n', expect: /pong/g })
    for (let i = 0; i < 3; i++) t.same(await check({ host: HOST, port: server.port }, TIMEOUT), { ok: true })
  })

  t.test('the wrong answer fails: at close, or by timeout while the server stays open', async (t) => {
    const closing = await new TestServer('closing', (s) => s.once('data', () => s.end('NOPE\r\n'))).listen()
    t.teardown(() => closing.close())
    const check = sendExpectCheck({ send: 'hi\n', expect: 'YES' })
    t.same(await check({ host: HOST, port: closing.port }, TIMEOUT), {
      ok: false,
      reason: 'closed without "YES": "NOPE\\x0d\\x0a"',
    })

    const open = await lineServer((s) => s.write('NOPE\n'))
    t.teardown(() => open.close())
    const disconnected = once(open, 'disconnect')
    t.same(await check({ host: HOST, port: open.port }, SHORT), {
      ok: false,
      reason: `timeout after ${SHORT} ms`,
    })
    await within(disconnected, 'connection closed')
  })

  t.test('stops reading after 16 KiB without a match', async (t) => {
    const server = await lineServer((s) => s.write(Buffer.alloc(20_000, 'x')))
    t.teardown(() => server.close())
    const r = await sendExpectCheck({ send: 'go\n', expect: 'y' })({ host: HOST, port: server.port }, TIMEOUT)
    t.same(r, { ok: false, reason: 'no expected response in 16384 bytes' })
  })

  t.test('refused', (t) => refused(t, sendExpectCheck({ send: 'x', expect: 'y' })))
  t.test('never answers', (t) => hangs(t, sendExpectCheck({ send: 'x', expect: 'y' })))

  t.test('invalid options throw when the check is built', async (t) => {
    t.throws(() => sendExpectCheck({ send: 'a', sendHex: '00', expect: 'x' }), TypeError)
    t.throws(() => sendExpectCheck({ sendHex: 'abc', expect: 'x' }), TypeError)
    t.throws(() => sendExpectCheck({ expect: '' }), TypeError)
    t.throws(() => checkOf({ type: 'send-expect', expect: '(', expectRegex: true }), SyntaxError)
  })
})

t.test('http', async (t) => {
  t.test('a 2xx or 3xx status is up; the request is a GET with Host and Connection: close', async (t) => {
    const { port, requests } = await httpServer(t)
    t.same(await httpCheck({ path: '/health' })({ host: HOST, port }, TIMEOUT), {
      ok: true,
      reason: 'status 200',
    })
    t.same(await httpCheck({ path: '/moved' })({ host: HOST, port }, TIMEOUT), {
      ok: true,
      reason: 'status 301',
    })
    const [req] = requests
    t.equal(req?.method, 'GET')
    t.equal(req?.httpVersion, '1.1')
    t.equal(req?.headers.host, `${HOST}:${port}`)
    t.equal(req?.headers.connection, 'close')
    await httpCheck({ path: '/health', host: 'api.internal' })({ host: HOST, port }, TIMEOUT)
    t.equal(requests[2]?.headers.host, 'api.internal', 'host option sets the Host header')
  })

  t.test('a status outside expectStatus is down', async (t) => {
    const { port } = await httpServer(t)
    t.same(await httpCheck({ path: '/broken' })({ host: HOST, port }, TIMEOUT), {
      ok: false,
      reason: 'status 500',
    })
    t.same(await httpCheck({ path: '/nope' })({ host: HOST, port }, TIMEOUT), {
      ok: false,
      reason: 'status 404',
    })
    const strict = httpCheck({ path: '/moved', expectStatus: [200, 299] })
    t.same(await strict({ host: HOST, port }, TIMEOUT), { ok: false, reason: 'status 301' })
    const spec: CheckSpec = { type: 'http', path: '/nope', expectStatus: [404, 404] }
    t.same(await runCheck(spec, { host: HOST, port }, TIMEOUT), { ok: true, reason: 'status 404' })
  })

  t.test('a status line split across reads, and one that is not HTTP', async (t) => {
    const split = await lineServer((s, data) => {
      if (!data.endsWith('\r\n\r\n')) return
      s.write('HTTP/1.1 2')
      setImmediate(() => s.end('04 No Content\r\n\r\n'))
    })
    t.teardown(() => split.close())
    t.same(await httpCheck({ path: '/' })({ host: HOST, port: split.port }, TIMEOUT), {
      ok: true,
      reason: 'status 204',
    })

    const garbage = await lineServer((s) => s.end('SSH-2.0-OpenSSH_9.6\r\n'))
    t.teardown(() => garbage.close())
    t.same(await httpCheck({ path: '/' })({ host: HOST, port: garbage.port }, TIMEOUT), {
      ok: false,
      reason: 'bad status line: "SSH-2.0-OpenSSH_9.6\\x0d"',
    })
  })

  t.test('refused', (t) => refused(t, httpCheck({ path: '/' })))
  t.test('never answers', (t) => hangs(t, httpCheck({ path: '/' })))

  t.test('invalid options throw when built; runCheck turns them into a failure', async (t) => {
    t.throws(() => httpCheck({ path: 'health' }), TypeError)
    t.throws(() => httpCheck({ path: '/a\r\nX-Injected: 1' }), TypeError)
    t.throws(() => httpCheck({ path: '/', host: 'a\r\nb' }), TypeError)
    t.throws(() => httpCheck({ path: '/', expectStatus: [400, 200] }), TypeError)
    const r = await runCheck({ type: 'http', path: 'x' }, { host: HOST, port: 1 }, TIMEOUT)
    t.equal(r.ok, false)
    t.match(r.reason, /path must start with \//)
  })
})

t.test('redis', async (t) => {
  /** Answers each complete PING with `reply`, written in two pieces to exercise reassembly. */
  const redis = (reply: string) =>
    lineServer((s, data) => {
      if (!data.endsWith('PING\r\n')) return
      s.write(reply.slice(0, 2))
      setImmediate(() => s.write(reply.slice(2)))
    })

  t.test('+PONG is up', async (t) => {
    const server = await redis('+PONG\r\n')
    t.teardown(() => server.close())
    t.same(await redisCheck({ host: HOST, port: server.port }, TIMEOUT), { ok: true })
    t.same(await runCheck({ type: 'redis' }, { host: HOST, port: server.port }, TIMEOUT), { ok: true })
  })

  t.test('an error reply is down', async (t) => {
    const err = await redis('-ERR unknown command\r\n')
    t.teardown(() => err.close())
    t.same(await redisCheck({ host: HOST, port: err.port }, TIMEOUT), {
      ok: false,
      reason: 'reply "-ERR unknown command"',
    })
    const loading = await redis('-LOADING Redis is loading the dataset in memory\r\n')
    t.teardown(() => loading.close())
    const r = await redisCheck({ host: HOST, port: loading.port }, TIMEOUT)
    t.equal(r.ok, false)
    t.match(r.reason, /^reply "-LOADING/)
  })

  t.test('a server that closes without a full reply is down', async (t) => {
    const server = await lineServer((s) => s.end('+PO'))
    t.teardown(() => server.close())
    t.same(await redisCheck({ host: HOST, port: server.port }, TIMEOUT), {
      ok: false,
      reason: 'no reply line: "+PO"',
    })
  })

  t.test('refused', (t) => refused(t, redisCheck))
  t.test('never answers', (t) => hangs(t, redisCheck))
})

t.test('an abort ends a check at once and closes its connection', async (t) => {
  const server = await silentServer()
  t.teardown(() => server.close())
  const controller = new AbortController()
  const connected = once(server, 'connection')
  const disconnected = once(server, 'disconnect')
  const result = redisCheck({ host: HOST, port: server.port }, 60_000, controller.signal)
  await within(connected, 'check connected')
  controller.abort()
  t.same(await within(result, 'aborted check settles'), { ok: false, reason: 'aborted' })
  await within(disconnected, 'connection closed')

  t.same(
    await tcpCheck({ host: HOST, port: server.port }, TIMEOUT, controller.signal),
    { ok: false, reason: 'aborted' },
    'already aborted: no connect'
  )
})
