/**
 * Framed sessions on the native plane (`attach(..., { http1 })`; native/plane.c, "Framed sessions"),
 * on four real loopback sockets: a client pair and a server pair, the plane between their near
 * ends, the test writing and reading at the far ends. Followed, with no hand-off and the stats
 * answered after each exchange: plain keep-alive exchanges, a chunked response in pieces (a
 * chunk-size line split across writes), bodiless responses (HEAD, 204, 304), pipelining, a body by
 * Content-Length in pieces. Handed off (`unfollowed`), with nothing of the unfollowed bytes sent
 * on and `detach` giving them back as history and unsent: chunked, 100-continue, Upgrade, CONNECT,
 * HTTP/1.0, a bad field, a partial head, Connection: close requests; 101, close-delimited,
 * Connection: close, HTTP/1.0 and trailer-carrying responses; server bytes with no request (or a
 * part-read one) before them. History restarts at each clean point. Every server FIN, server reset
 * and client FIN hands off; a response past the 64 KiB history bound hands off (`history`) with
 * what reached the client and what did not adding up; `maxHeadBytes` bounds a head. After each
 * detach the descriptors are the test's: what the far end got is proven whole by a marker written
 * through them. Skipped when the addon is not built.
 */
import t, { type Test } from 'tap'
import { until } from '../helpers/wait.js'
import {
  Far,
  MARK,
  b,
  endsHandOff,
  exchange,
  framedSession,
  markThrough,
  noHandoff,
  pass,
  txt,
  type Framed,
} from './helpers/framed.js'
import { skip } from './helpers/native-proxy.js'

const GET = 'GET / HTTP/1.1\r\nHost: a\r\n\r\n'
const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello'

/** A framed session attached with `http1` (helpers/framed.ts). */
function framed(t: Test, maxHeadBytes = 65536): Promise<Framed> {
  return framedSession(t, { http1: { maxHeadBytes } })
}

t.test('plain keep-alive exchanges stay on the plane: exact bytes, stats answered', { skip }, async (t) => {
  const s = await framed(t)
  for (let i = 1; i <= 3; i++) {
    await pass(t, s.client, s.server, [GET], `request ${i}`)
    t.match(
      s.plane.stats(s.handle),
      { answered: false, unansweredBytes: 1 },
      `request ${i} in flight: one pending request`
    )
    await pass(t, s.server, s.client, [OK], `response ${i}`)
    t.match(
      s.plane.stats(s.handle),
      {
        answered: true,
        unansweredBytes: 0,
        handing: false,
        bytesFromClient: i * GET.length,
        bytesToServer: i * GET.length,
        bytesFromServer: i * OK.length,
        bytesToClient: i * OK.length,
      },
      `after exchange ${i}: answered, and the byte counts`
    )
  }
  noHandoff(t, s)
})

t.test('a chunked response written in pieces passes, and so does the next exchange', { skip }, async (t) => {
  const s = await framed(t)
  await exchange(
    t,
    s,
    GET,
    [
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n',
      '5\r\nhel',
      'lo\r\n1', // the chunk-size line "10" split across two writes
      '0\r\n0123456789abcdef\r',
      '\n0\r\n',
      '\r\n',
    ],
    'a chunked response'
  )
  await exchange(t, s, GET, OK, 'the next exchange')
  await exchange(
    t,
    s,
    GET,
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    'a chunked response in one write'
  )
  noHandoff(t, s)
})

t.test('bodiless responses: HEAD (Content-Length: 100), 204, 304', { skip }, async (t) => {
  const s = await framed(t)
  await exchange(
    t,
    s,
    'HEAD / HTTP/1.1\r\nHost: a\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n',
    'HEAD'
  )
  await exchange(t, s, GET, OK, 'after HEAD')
  await exchange(t, s, GET, 'HTTP/1.1 204 No Content\r\n\r\n', '204')
  await exchange(t, s, GET, OK, 'after 204')
  await exchange(
    t,
    s,
    'GET / HTTP/1.1\r\nHost: a\r\nIf-None-Match: "x"\r\n\r\n',
    'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: 100\r\n\r\n',
    '304'
  )
  await exchange(t, s, GET, OK, 'after 304')
  noHandoff(t, s)
})

t.test('pipelined: two requests in one write, two responses in one write', { skip }, async (t) => {
  const s = await framed(t)
  const second = 'GET /two HTTP/1.1\r\nHost: a\r\n\r\n'
  await pass(t, s.client, s.server, [GET + second], 'two requests')
  t.match(s.plane.stats(s.handle), { unansweredBytes: 2 }, 'two pending requests')
  const two = 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo'
  await pass(t, s.server, s.client, [OK + two], 'two responses')
  t.match(s.plane.stats(s.handle), { answered: true, unansweredBytes: 0 }, 'both answered')
  await exchange(t, s, GET, OK, 'the next exchange')
  noHandoff(t, s)
})

t.test('a body by Content-Length over several client writes passes', { skip }, async (t) => {
  const s = await framed(t)
  await exchange(
    t,
    s,
    ['POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n', 'hel', 'lo wo', 'rld'],
    'HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok',
    'a POST, head and body in four writes'
  )
  await exchange(
    t,
    s,
    ['POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab', 'cd'],
    'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n',
    'a POST with part of its body in the head write'
  )
  await exchange(t, s, GET, OK, 'the next exchange')
  noHandoff(t, s)
})

/** Request forms the plane does not follow, each alone in an otherwise followed request. */
const UNFOLLOWED_REQUESTS: Array<[string, string]> = [
  [
    'Transfer-Encoding: chunked',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  ],
  ['Expect: 100-continue', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n'],
  ['Upgrade: websocket', 'GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n'],
  ['CONNECT', 'CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n'],
  ['HTTP/1.0', 'GET / HTTP/1.0\r\nHost: a\r\n\r\n'],
  ['a space before the colon', 'GET / HTTP/1.1\r\nHost : a\r\n\r\n'],
  ['Connection: close', 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'],
]

t.test('unfollowed requests hand off before any of their bytes are sent', { skip }, async (t) => {
  for (const [name, request] of UNFOLLOWED_REQUESTS) {
    await t.test(name, async (t) => {
      const s = await framed(t)
      s.client.socket.write(b(request))
      const e = await s.handoff()
      t.match(e, { reason: 'unfollowed', errno: 0, code: '' }, 'handoff: unfollowed')
      t.match(e.stats, { handing: true, bytesFromClient: request.length, bytesToServer: 0 }, 'read, not sent')
      const d = s.detach()
      t.ok(d.clientFd >= 0 && d.serverFd >= 0, 'both descriptors')
      t.equal(txt(d.clientHistory), request, 'client history: the request')
      t.equal(txt(d.clientUnsent), request, 'client unsent: the request')
      t.same([d.serverHistory, d.serverUnsent], [undefined, undefined], 'nothing from the server')
      await markThrough(t, s.adopt(d.serverFd), s.server, '', 'nothing of the request')
      t.same(s.session.types(), ['handoff'], 'the handoff and nothing else')
    })
  }

  await t.test('a head split across writes hands off at its first part', async (t) => {
    const s = await framed(t)
    const first = 'GET / HTTP/1.1\r\nHost: a\r\n'
    const rest = 'Accept: */*\r\n\r\n'
    s.client.socket.write(b(first))
    const e = await s.handoff()
    t.match(e, { reason: 'unfollowed', errno: 0 }, 'handoff at the partial head')
    t.match(e.stats, { bytesFromClient: first.length, bytesToServer: 0 }, 'the first part read, not sent')
    const d = s.detach()
    t.equal(txt(d.clientHistory), first, 'client history: the first part')
    t.equal(txt(d.clientUnsent), first, 'client unsent: the first part')
    // The rest is read by whoever holds the client descriptor now.
    const client = s.adopt(d.clientFd)
    const read = new Far(client, 'the adopted client descriptor')
    s.client.socket.write(b(rest))
    await read.got(rest.length, 'the rest of the head')
    t.equal(read.text(), rest, 'the rest of the head, read through the detached descriptor')
    await markThrough(t, s.adopt(d.serverFd), s.server, '', 'nothing of the head')
  })
})

t.test(
  'history restarts at a clean point: only the unfollowed request is handed over',
  { skip },
  async (t) => {
    const s = await framed(t)
    await exchange(t, s, GET, OK, 'a followed exchange')
    const request = 'GET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'
    s.client.socket.write(b(request))
    const e = await s.handoff()
    t.equal(e.reason, 'unfollowed', 'handoff: unfollowed')
    const d = s.detach()
    t.equal(txt(d.clientHistory), request, 'client history: the second request only')
    t.equal(txt(d.clientUnsent), request, 'client unsent: the second request')
    t.equal(d.serverHistory, undefined, 'no server history: the first response ended at a clean point')
    t.equal(d.serverUnsent, undefined, 'nothing unsent from the server')
    await markThrough(t, s.adopt(d.serverFd), s.server, GET, 'the first request')
  }
)

/** Responses (to a plain GET) the plane does not follow, and how much of each it sends first. */
const UNFOLLOWED_RESPONSES: Array<{ name: string; response: string; sent?: string }> = [
  {
    name: '101 Switching Protocols',
    response: 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
  },
  { name: 'close-delimited (no length, not chunked)', response: 'HTTP/1.1 200 OK\r\n\r\nuntil the FIN' },
  {
    name: 'Connection: close',
    response: 'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello',
  },
  { name: 'HTTP/1.0', response: 'HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello' },
  {
    name: 'trailer fields',
    response: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n',
    sent: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n',
  },
]

t.test(
  'unfollowed responses hand off; the client gets nothing of what is not followed',
  { skip },
  async (t) => {
    for (const { name, response, sent = '' } of UNFOLLOWED_RESPONSES) {
      await t.test(name, async (t) => {
        const s = await framed(t)
        await pass(t, s.client, s.server, [GET], 'the request')
        s.server.socket.write(b(response))
        const e = await s.handoff()
        t.match(e, { reason: 'unfollowed', errno: 0 }, 'handoff: unfollowed')
        t.match(
          e.stats,
          { bytesFromServer: response.length, bytesToClient: sent.length },
          'the response read, only the followed part sent'
        )
        const d = s.detach()
        t.equal(txt(d.serverHistory), response, 'server history: the response')
        t.equal(txt(d.serverUnsent), response.slice(sent.length), 'server unsent: the part not sent')
        t.equal(txt(d.clientHistory), GET, 'client history: the request it answers (not at a clean point)')
        t.equal(d.clientUnsent, undefined, 'the request was sent whole')
        await markThrough(
          t,
          s.adopt(d.clientFd),
          s.client,
          sent,
          sent === '' ? 'nothing' : 'the followed part'
        )
        t.same(s.session.types(), ['handoff'], 'the handoff and nothing else')
      })
    }
  }
)

t.test('server bytes before (all of) a request hand off', { skip }, async (t) => {
  await t.test('with no request in flight', async (t) => {
    const s = await framed(t)
    await exchange(t, s, GET, OK, 'a followed exchange')
    const early = 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'
    s.server.socket.write(b(early))
    const e = await s.handoff()
    t.match(e, { reason: 'unfollowed', errno: 0 }, 'handoff: unfollowed')
    const d = s.detach()
    t.equal(txt(d.serverHistory), early, 'server history: the unasked bytes')
    t.equal(txt(d.serverUnsent), early, 'server unsent: all of them')
    t.equal(d.clientHistory, undefined, 'no client history: at a clean point')
    await markThrough(t, s.adopt(d.clientFd), s.client, OK, 'the first response only')
  })

  await t.test('with a request whose body is not wholly read', async (t) => {
    const s = await framed(t)
    const head = 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc'
    await pass(t, s.client, s.server, [head], 'the head and part of the body')
    const early = 'HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n'
    s.server.socket.write(b(early))
    const e = await s.handoff()
    t.match(e, { reason: 'unfollowed', errno: 0 }, 'handoff: an early response is not followed')
    const d = s.detach()
    t.equal(txt(d.clientHistory), head, 'client history: the part-read request')
    t.equal(d.clientUnsent, undefined, 'all of it sent')
    t.equal(txt(d.serverHistory), early, 'server history: the early response')
    t.equal(txt(d.serverUnsent), early, 'server unsent: all of it')
    await markThrough(t, s.adopt(d.clientFd), s.client, '', 'nothing')
  })
})

t.test('every EOF and server error hands off', { skip }, async (t) => {
  await endsHandOff(t, framed, GET, OK)

  await t.test('a server FIN closed by the caller: the descriptors close', async (t) => {
    const s = await framed(t)
    s.server.socket.end()
    t.equal((await s.handoff()).reason, 'server-eof', 'handoff: server-eof')
    const d = s.detach()
    t.ok(d.clientFd >= 0 && d.serverFd >= 0, 'both descriptors')
    // Closing them is the caller's: the far ends see their connections end.
    const client = s.adopt(d.clientFd)
    const server = s.adopt(d.serverFd)
    client.destroy()
    server.destroy()
    await until(() => s.client.ended && s.server.ended, 'both far ends see their connection end')
    t.pass('both far ends closed')
  })
})

t.test('a response past the history bound hands off (history) and adds up', { skip }, async (t) => {
  const s = await framed(t)
  await pass(t, s.client, s.server, [GET], 'the request')
  const size = 200_000
  const body = Buffer.alloc(size)
  for (let i = 0; i < size; i++) body[i] = 97 + (i % 26)
  const response = Buffer.concat([b(`HTTP/1.1 200 OK\r\nContent-Length: ${size}\r\n\r\n`), body])
  s.server.socket.write(response)
  const e = await s.handoff()
  t.match(e, { reason: 'history', errno: 0, code: '' }, 'handoff: history, not out of memory')
  const d = s.detach()
  const history = d.serverHistory ?? Buffer.alloc(0)
  const unsent = d.serverUnsent ?? Buffer.alloc(0)
  t.ok(history.length > 65536, `server history past 64 KiB (${history.length} bytes)`)
  t.ok(history.length < response.length, 'not the whole response: the plane stopped reading')
  t.ok(history.equals(response.subarray(0, history.length)), 'server history: the response from its start')
  t.ok(unsent.length > 0, `something unsent (${unsent.length} bytes)`)
  t.ok(unsent.equals(history.subarray(history.length - unsent.length)), "server unsent: the history's tail")
  t.equal(txt(d.clientHistory), GET, 'client history: the request')
  const sent = history.length - unsent.length
  // What reached the client and what was not sent add up to what was read.
  const client = s.adopt(d.clientFd)
  client.write(MARK)
  await s.client.got(sent + MARK.length, 'the part sent and the mark')
  t.equal(s.client.length, sent + MARK.length, `the client got ${sent} bytes of the response, then the mark`)
  t.equal(s.client.text(), response.subarray(0, sent).toString('latin1') + MARK, 'exactly the sent part')
  t.equal(s.client.length - MARK.length + unsent.length, history.length, 'client bytes + unsent = history')
})

t.test('maxHeadBytes bounds a request head', { skip }, async (t) => {
  const s = await framed(t, 100)
  await exchange(t, s, GET, OK, 'a short head')
  const start = 'GET / HTTP/1.1\r\nHost: a\r\nX-Pad: '
  const end = '\r\n\r\n'
  const long = start + 'x'.repeat(200 - start.length - end.length) + end
  t.equal(long.length, 200, 'a 200-byte head')
  s.client.socket.write(b(long))
  const e = await s.handoff()
  t.match(e, { reason: 'unfollowed', errno: 0 }, 'handoff: unfollowed')
  const d = s.detach()
  t.equal(txt(d.clientHistory), long, 'client history: the long head')
  t.equal(txt(d.clientUnsent), long, 'client unsent: the long head')
  await markThrough(t, s.adopt(d.serverFd), s.server, GET, 'the short request only')
})
