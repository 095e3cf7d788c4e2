import t from 'tap'
import { ConfigError } from '../../lib/errors.js'
import { http1 } from '../../lib/framing/http1.js'
import type { Framer, FramerExtras, FramingError } from '../../lib/framing/types.js'
import { recording } from './helpers/frames.js'
import {
  CLIENT_CASES,
  SERVER_CASES,
  chunked,
  ends,
  headed,
  join,
  request,
  response,
  sized,
  type Headers,
} from './helpers/http1.js'

const h = (text: string): Buffer => Buffer.from(text, 'latin1')

const GET = request('GET', '/', [['Host', 'a']])

t.test('pipelined requests of every body kind, answered at their exact end offsets', async (t) => {
  const reqs = [
    GET,
    request('POST', '/form', [['Content-Length', '5']], 'hello'),
    request('PUT', '/up', [['Transfer-Encoding', 'chunked']], chunked(['abc', 'defgh'])),
    request('DELETE', '/x', [['Content-Length', '0']]),
  ]
  const { framer, answered } = recording(http1())
  t.equal(framer.request(join(reqs)), undefined)
  t.equal(framer.pending(), 4)
  t.notOk(framer.atBoundary())
  const at = ends(reqs)
  const responses = [
    sized(200, 'one'),
    response(201, [['Transfer-Encoding', 'chunked']], chunked(['x'])),
    sized(204, ''),
    sized(200, ''),
  ]
  for (const [k, res] of responses.entries()) {
    t.equal(framer.response(res), undefined)
    t.same(answered, at.slice(0, k + 1), `response ${k + 1} answers request ${k + 1}`)
    t.equal(framer.pending(), 3 - k)
    t.notOk(framer.responseOpen)
  }
  t.ok(framer.atBoundary())
  t.ok(framer.delimited)
})

t.test('a Content-Length body split across chunks, the head cut mid-line', async (t) => {
  const req = request('POST', '/p', [['Content-Length', '10']], '0123456789')
  const { framer, answered } = recording(http1())
  for (const piece of [req.subarray(0, 7), req.subarray(7, 30), req.subarray(30, req.length - 1)]) {
    t.equal(framer.request(piece), undefined)
    t.equal(framer.pending(), 1, 'partial')
  }
  framer.response(sized(200, 'ok'))
  t.same(answered, [], 'an early answer is held until the request ends')
  t.equal(framer.pending(), 1)
  framer.request(req.subarray(req.length - 1))
  t.same(answered, [req.length])
  t.equal(framer.pending(), 0)
})

t.test('chunked request with extensions and trailers', async (t) => {
  const body = chunked(['abc', 'x'.repeat(17)], {
    exts: ['name=value', ' a ; b="quoted; string"'],
    lastExt: 'last',
    trailers: [
      ['Checksum', 'abc'],
      ['X-Trailer', ''],
    ],
  })
  const req = request('POST', '/c', [['Transfer-Encoding', 'chunked']], body)
  const next = GET
  const { framer, answered } = recording(http1())
  t.equal(framer.request(join([req, next])), undefined)
  t.equal(framer.pending(), 2, 'the trailers end the first request, the GET follows')
  framer.response(sized(200, ''))
  framer.response(sized(200, ''))
  t.same(answered, ends([req, next]))
})

t.test('chunked responses with extensions and trailers; Content-Length responses', async (t) => {
  const reqs = [GET, GET, GET]
  const { framer, answered } = recording(http1())
  framer.request(join(reqs))
  const res = response(
    200,
    [['Transfer-Encoding', 'gzip, chunked']],
    chunked(['12345', 'ab'], { exts: ['e=1', undefined], trailers: [['Expires', '0']] })
  )
  t.equal(framer.response(res.subarray(0, res.length - 2)), undefined)
  t.ok(framer.responseOpen, 'open until the final CRLF of the trailer section')
  t.equal(framer.openStart, 0)
  t.equal(framer.response(res.subarray(res.length - 2)), undefined)
  t.notOk(framer.responseOpen)
  t.equal(framer.openStart, -1)
  const two = join([sized(200, 'abc'), sized(404, 'no such thing')])
  framer.response(two.subarray(0, 50))
  t.same(answered, ends(reqs).slice(0, 2))
  t.ok(framer.responseOpen)
  t.equal(framer.openStart, sized(200, 'abc').length, 'the third response began in this chunk')
  framer.response(two.subarray(50))
  t.same(answered, ends(reqs))
})

t.test('HEAD, 204 and 304 responses have no body whatever their headers say', async (t) => {
  const reqs = [request('HEAD', '/'), GET, GET, GET]
  const { framer, answered } = recording(http1())
  framer.request(join(reqs))
  framer.response(response(200, [['Content-Length', '1000']]))
  t.same(answered, ends(reqs).slice(0, 1), 'HEAD: the head is the whole response')
  framer.response(response(204, [['Content-Length', '5']]))
  t.same(answered, ends(reqs).slice(0, 2), '204')
  framer.response(response(304, [['Transfer-Encoding', 'chunked']]))
  t.same(answered, ends(reqs).slice(0, 3), '304')
  framer.response(sized(200, 'body'))
  t.same(answered, ends(reqs))
  t.ok(framer.atBoundary())
})

t.test('Expect: 100-continue: the 100 answers nothing, the final response does', async (t) => {
  const head = request('POST', '/up', [
    ['Expect', '100-continue'],
    ['Content-Length', '4'],
  ])
  const { framer, answered } = recording(http1())
  framer.request(head)
  t.equal(framer.pending(), 1)
  t.equal(framer.response(response(100, [], '', 'Continue')), undefined)
  t.same(answered, [])
  t.notOk(framer.responseOpen, 'each interim response is a unit of its own')
  t.equal(framer.pending(), 1)
  t.notOk(framer.atBoundary())
  framer.request(h('body'))
  framer.response(sized(200, 'done'))
  t.same(answered, [head.length + 4])
  t.ok(framer.atBoundary())
})

t.test('Expect: 100-continue refused early: answered once the body is fully sent', async (t) => {
  const head = request('PUT', '/big', [
    ['Expect', '100-continue'],
    ['Content-Length', '6'],
  ])
  const { framer, answered } = recording(http1())
  framer.request(head)
  framer.response(sized(417, 'no'))
  t.same(answered, [], 'the request end is not known yet')
  t.equal(framer.pending(), 1)
  t.notOk(framer.responseOpen)
  framer.request(h('abc'))
  t.same(answered, [])
  framer.request(join([h('def'), GET]))
  t.same(answered, [head.length + 6], 'held answer released at the body end')
  t.equal(framer.pending(), 1, 'the GET')
  framer.response(sized(200, ''))
  t.same(answered, [head.length + 6, head.length + 6 + GET.length])
})

t.test('103 Early Hints before the final response', async (t) => {
  const { framer, answered } = recording(http1())
  framer.request(GET)
  const hints = response(103, [['Link', '</s.css>; rel=preload']], '', 'Early Hints')
  framer.response(hints.subarray(0, 10))
  t.ok(framer.responseOpen)
  framer.response(join([hints.subarray(10), hints, sized(200, 'x').subarray(0, 5)]))
  t.same(answered, [])
  t.ok(framer.responseOpen)
  t.equal(framer.openStart, hints.length - 10 + hints.length, 'the final response began in this chunk')
  framer.response(sized(200, 'x').subarray(5))
  t.same(answered, [GET.length])
})

t.test('101 Switching Protocols pins the session and stops all parsing', async (t) => {
  const upgrade = request('GET', '/ws', [
    ['Upgrade', 'websocket'],
    ['Connection', 'keep-alive, Upgrade'],
  ])
  const { framer, answered } = recording(http1())
  framer.request(upgrade)
  t.equal(framer.pending(), 1)
  const early = h('\x81\x05early')
  t.equal(framer.request(early), undefined, 'bytes after an upgrade request are not parsed')
  t.equal(framer.pending(), 2, 'they wait, unreleased, for the response')
  const res = join([response(101, [['Upgrade', 'websocket']], '', 'Switching Protocols'), h('\x81\x02hi')])
  t.equal(framer.response(res), undefined)
  t.ok(framer.pinned)
  t.notOk(framer.delimited, 'the server FIN ends a tunnel as with a plain proxy')
  t.equal(framer.pending(), 0)
  t.notOk(framer.atBoundary())
  t.notOk(framer.responseOpen)
  t.equal(framer.openStart, -1)
  const seen = upgrade.length + early.length
  t.same(answered, [seen], 'every client byte released')
  const tunnel = h('not http at all\n')
  t.equal(framer.request(tunnel), undefined)
  t.equal(framer.response(h('\0\0\0')), undefined)
  t.equal(framer.request(h('more')), undefined)
  t.same(answered, [seen, seen + tunnel.length], 'tunnel bytes released one chunk behind')
  t.equal(framer.pending(), 0)
})

t.test('an upgrade the server declines: HTTP goes on', async (t) => {
  const upgrade = request('GET', '/', [
    ['Upgrade', 'h2c'],
    ['Connection', 'Upgrade, HTTP2-Settings'],
  ])
  const { framer, answered } = recording(http1())
  framer.request(upgrade)
  framer.response(sized(200, 'plain'))
  t.notOk(framer.pinned)
  t.same(answered, [upgrade.length])
  t.equal(framer.request(GET), undefined, 'parsed again')
  framer.response(sized(200, ''))
  t.same(answered, [upgrade.length, upgrade.length + GET.length])

  const other = recording(http1())
  other.framer.request(join([upgrade, h('PRI * HTTP/2.0\r\n')]))
  const error = other.framer.response(sized(200, 'plain'))
  t.equal(error?.code, 'ERR_BATON_FRAME_MALFORMED', 'data sent after a declined upgrade cannot be framed')
  t.equal(error?.reply, undefined, 'detected on the server side')
})

t.test('an Upgrade header without Connection: upgrade is no upgrade request', async (t) => {
  const { framer, answered } = recording(http1())
  const req = request('GET', '/', [['Upgrade', 'websocket']])
  framer.request(join([req, GET]))
  t.equal(framer.pending(), 2, 'the GET after it is parsed')
  framer.response(join([sized(200, ''), sized(200, '')]))
  t.same(answered, ends([req, GET]))
})

t.test('CONNECT answered 2xx pins the session; refused, HTTP goes on', async (t) => {
  const connect = request('CONNECT', 'example.com:443', [['Host', 'example.com:443']])
  const { framer, answered } = recording(http1())
  framer.request(join([connect, h('\x16\x03\x01 client hello')]))
  t.equal(framer.pending(), 2)
  t.notOk(framer.pendingSafe(), 'CONNECT is not safe to re-send')
  framer.response(join([response(200, [], '', 'Connection Established'), h('\x16\x03\x03')]))
  t.ok(framer.pinned)
  t.equal(framer.pending(), 0)
  t.same(answered, [connect.length + 16])

  const refused = recording(http1())
  refused.framer.request(connect)
  refused.framer.response(sized(407, 'auth'))
  t.notOk(refused.framer.pinned)
  t.same(refused.answered, [connect.length])
  refused.framer.request(GET)
  refused.framer.response(sized(200, ''))
  t.same(refused.answered, [connect.length, connect.length + GET.length])
  t.ok(refused.framer.atBoundary())
})

t.test('close-delimited responses: closeDelimited while open, delimited false', async (t) => {
  for (const [name, res] of [
    ['HTTP/1.0 without Content-Length', response(200, [], 'some body', 'OK', 'HTTP/1.0')],
    ['HTTP/1.1 without a length', response(200, [['Connection', 'close']], 'some body')],
    ['a final coding other than chunked', response(200, [['Transfer-Encoding', 'chunked, gzip']], 'xx')],
  ] as const) {
    const recorded = recording(http1())
    const framer = recorded.framer as Framer & FramerExtras
    const answered = recorded.answered
    framer.request(join([GET, GET]))
    framer.response(sized(200, 'first'))
    t.ok(framer.delimited, `${name}: delimited before`)
    t.equal(framer.closeDelimited, false)
    t.equal(framer.response(res), undefined)
    t.equal(framer.closeDelimited, true, name)
    t.notOk(framer.delimited, name)
    t.ok(framer.responseOpen, `${name}: open until the server closes`)
    t.equal(framer.openStart, 0)
    t.equal(framer.pending(), 1)
    framer.response(h('HTTP/1.1 200 OK\r\n\r\nanything goes'))
    t.same(answered, [GET.length], `${name}: the rest is body`)
    framer.restartResponse()
    t.equal(framer.closeDelimited, false, `${name}: cleared by restartResponse()`)
  }
})

t.test('safe flags: idempotent methods and Idempotency-Key; POST and PATCH unsafe', async (t) => {
  const safe = (reqs: Buffer[]): boolean => {
    const { framer } = recording(http1())
    framer.request(join(reqs))
    return framer.pendingSafe()
  }
  for (const method of ['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']) {
    t.ok(safe([request(method, '/')]), method)
  }
  for (const method of ['POST', 'PATCH', 'get', 'CONNECT']) t.notOk(safe([request(method, '/')]), method)
  t.ok(safe([request('POST', '/', [['Idempotency-Key', '"8e03978e"']])]), 'POST with Idempotency-Key')
  t.ok(safe([request('POST', '/', [['idempotency-key', 'k']])]), 'the name in any case')
  t.notOk(safe([GET, request('POST', '/'), GET]), 'one unsafe request among safe ones')
  t.ok(safe([GET, request('PUT', '/', [['Content-Length', '3']], 'ab')]), 'a partial PUT')
  t.notOk(safe([GET, request('POST', '/', [['Content-Length', '3']], 'ab')]), 'a partial POST')
  t.ok(safe([h('POS')]), 'a request line not yet whole cannot have been acted on')
  t.notOk(safe([h('POST / HTTP/1.1\r\nHost: a\r\n')]), 'POST whose head is partial')
  t.ok(safe([h('POST / HTTP/1.1\r\nIdempotency-Key: 1\r\n')]), 'its key already seen')

  const { framer } = recording(http1())
  framer.request(join([request('POST', '/'), GET]))
  t.notOk(framer.pendingSafe())
  framer.response(sized(200, ''))
  t.ok(framer.pendingSafe(), 'once the POST is answered')
})

t.test('restartResponse() mid-body: the replacement sends the response whole', async (t) => {
  const reqs = [GET, request('GET', '/2')]
  const { framer, answered } = recording(http1())
  framer.request(join(reqs))
  const first = sized(200, 'first')
  const second = response(200, [['Transfer-Encoding', 'chunked']], chunked(['abcdef', 'ghi']))
  framer.response(join([first, second.subarray(0, second.length - 9)]))
  t.same(answered, [GET.length])
  t.ok(framer.responseOpen)
  t.equal(framer.openStart, first.length)
  framer.restartResponse()
  t.notOk(framer.responseOpen)
  t.equal(framer.openStart, -1)
  t.equal(framer.pending(), 1)
  framer.response(second.subarray(0, 20))
  t.ok(framer.responseOpen)
  t.equal(framer.openStart, 0, 'parsing starts again at a status line')
  framer.response(second.subarray(20))
  t.same(answered, ends(reqs))
  t.ok(framer.atBoundary())

  const heads = recording(http1())
  heads.framer.request(GET)
  heads.framer.response(h('HTTP/1.1 200 OK\r\nContent-Le'))
  heads.framer.restartResponse()
  heads.framer.response(sized(200, 'a'))
  t.same(heads.answered, [GET.length], 'restarted inside the head')
})

t.test('stray empty lines before a request line belong to no request', async (t) => {
  const { framer, answered } = recording(http1())
  framer.request(join([h('\r\n\r\n'), GET, h('\r\n')]))
  t.equal(framer.pending(), 1)
  framer.response(sized(200, ''))
  t.same(answered, [4 + GET.length])
  t.equal(framer.pending(), 0)
  t.equal(framer.request(h('\n'))?.code, 'ERR_BATON_FRAME_MALFORMED', 'but a bare LF is no empty line')
})

t.test('HTTP/1.0 and Connection: close change nothing in the framing', async (t) => {
  const reqs = [
    request('GET', '/', [], '', 'HTTP/1.0'),
    request('POST', '/', [['Content-Length', '2']], 'hi', 'HTTP/1.0'),
    request('GET', '/', [['Connection', 'close']]),
  ]
  const { framer, answered } = recording(http1())
  framer.request(join(reqs))
  t.equal(framer.pending(), 3)
  framer.response(join([sized(200, 'a'), sized(200, 'b'), sized(200, 'c')]))
  t.same(answered, ends(reqs))
})

t.test('a response with no request is a server-side error', async (t) => {
  const { framer } = recording(http1())
  const error = framer.response(sized(200, ''))
  t.equal(error?.code, 'ERR_BATON_FRAME_MALFORMED')
  t.equal(error?.reply, undefined)
  t.match(error?.message, /response at offset 0/)
})

/** Feed `data` as client bytes; the first error. */
function clientError(data: Buffer, options?: { maxHeadBytes?: number }): FramingError | undefined {
  const { framer } = recording(http1(options))
  const error = framer.request(data)
  if (error !== undefined) {
    if (framer.request(GET) !== error || framer.response(sized(200, '')) !== error) {
      throw new Error('a failed framer must keep returning its error')
    }
  }
  return error
}

for (const [name, data] of CLIENT_CASES) {
  t.test(`client: ${name} -> 400`, async (t) => {
    const error = clientError(data)
    t.equal(error?.code, 'ERR_BATON_FRAME_MALFORMED')
    t.ok(error?.reply?.toString('latin1').startsWith('HTTP/1.1 400 Bad Request\r\n'), 'a 400 reply')
    t.match(error?.message, /^request at offset 0: /)
  })
}

t.test('the 400 reply is a complete response with Connection: close', async (t) => {
  const reply = clientError(headed([['Content-Length', 'x']]))!.reply!.toString('latin1')
  const [head, body] = reply.split('\r\n\r\n') as [string, string]
  t.match(head, /\r\nConnection: close$/)
  t.equal(Number(/Content-Length: (\d+)/.exec(head)![1]), Buffer.byteLength(body))
})

t.test('accepted lookalikes: identical repeats, lists of one value, leading zeros, OWS', async (t) => {
  for (const [name, data] of [
    [
      'identical Content-Length repeats',
      headed(
        [
          ['Content-Length', '3'],
          ['Content-Length', '3'],
        ],
        'abc'
      ),
    ],
    ['a list of identical values', headed([['Content-Length', '3 , 3,3']], 'abc')],
    ['leading zeros', headed([['Content-Length', '003']], 'abc')],
    ['gzip, chunked', headed([['Transfer-Encoding', 'gzip, chunked']], '3\r\nabc\r\n0\r\n\r\n')],
    ['CHUNKED in capitals', headed([['Transfer-Encoding', 'CHUNKED']], '0\r\n\r\n')],
    ['OWS around values', h('POST / HTTP/1.1\r\nContent-Length:\t 3 \t\r\n\r\nabc')],
    ['an empty value', h('GET / HTTP/1.1\r\nX-Empty:\r\n\r\n')],
    ['obs-text in a value', h('GET / HTTP/1.1\r\nX: caf\xe9\r\n\r\n')],
    [
      '16 hex digits of chunk size',
      headed([['Transfer-Encoding', 'chunked']], '0000000000000003\r\nabc\r\n0\r\n\r\n'),
    ],
  ] as const) {
    const { framer, answered } = recording(http1())
    t.equal(framer.request(data), undefined, name)
    t.equal(framer.response(sized(200, '')), undefined, name)
    t.same(answered, [data.length], `${name}: answered at its end`)
  }
})

t.test('a head over maxHeadBytes: ERR_BATON_FRAME_TOO_LARGE with a 431', async (t) => {
  const big = request('GET', '/', [['X-Big', 'x'.repeat(200)]])
  t.equal(clientError(big, { maxHeadBytes: big.length }), undefined, 'exactly maxHeadBytes is allowed')
  const error = clientError(big, { maxHeadBytes: big.length - 1 })
  t.equal(error?.code, 'ERR_BATON_FRAME_TOO_LARGE')
  t.ok(error?.reply?.toString('latin1').startsWith('HTTP/1.1 431 '))
  // Found as soon as the head passes the bound, not at its end.
  const { framer } = recording(http1({ maxHeadBytes: 100 }))
  t.equal(framer.request(h('GET / HTTP/1.1\r\nX: ')), undefined)
  t.equal(framer.request(Buffer.alloc(100, 0x61))?.code, 'ERR_BATON_FRAME_TOO_LARGE', 'no LF needed')
  const trailers = headed(
    [['Transfer-Encoding', 'chunked']],
    chunked([], { trailers: [['T', 'y'.repeat(120)]] })
  )
  t.equal(clientError(trailers, { maxHeadBytes: 100 })?.code, 'ERR_BATON_FRAME_TOO_LARGE', 'trailers too')
  const ext = headed([['Transfer-Encoding', 'chunked']], `1;${'e'.repeat(120)}\r\n`)
  t.equal(clientError(ext, { maxHeadBytes: 100 })?.code, 'ERR_BATON_FRAME_TOO_LARGE', 'chunk extensions too')
})

t.test('server side: the same strictness, without a reply', async (t) => {
  for (const [name, data, code = 'ERR_BATON_FRAME_MALFORMED'] of SERVER_CASES) {
    const { framer } = recording(http1({ maxHeadBytes: 256 }))
    framer.request(GET)
    const error = framer.response(data)
    t.equal(error?.code, code, name)
    t.equal(error?.reply, undefined, `${name}: no reply`)
    t.match(error?.message, /^response at offset 0: /, name)
    t.equal(framer.request(GET), error, `${name}: the framer stays failed`)
    t.notOk(framer.responseOpen)
  }
  const { framer, answered } = recording(http1())
  framer.request(GET)
  t.equal(framer.response(h('HTTP/1.1 204\r\n\r\n')), undefined, 'a status line without a reason phrase')
  t.same(answered, [GET.length])
})

t.test('options are checked at the edge', async (t) => {
  t.throws(() => http1({ maxHeadBytes: 10 }), ConfigError)
  t.throws(() => http1({ maxHeadBytes: 1.5 }), ConfigError)
  t.throws(() => http1({ maxHeadBytes: '100' as unknown as number }), ConfigError)
  t.doesNotThrow(() => http1({}))
})

t.test('closeAfter: an exchange that announces the close, and one that does not', async (t) => {
  const cases: [string, string, string, boolean][] = [
    [
      'keep-alive both ways',
      'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n',
      false,
    ],
    [
      'client asks to close',
      'GET / HTTP/1.1\r\nConnection: close\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n',
      true,
    ],
    [
      'server says close',
      'GET / HTTP/1.1\r\n\r\n',
      'HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n',
      true,
    ],
    [
      'close in a token list',
      'GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n',
      'HTTP/1.1 204 No Content\r\n\r\n',
      true,
    ],
    ['HTTP/1.0 response', 'GET / HTTP/1.1\r\n\r\n', 'HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n', true],
    [
      'HTTP/1.0 with keep-alive',
      'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n',
      'HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n',
      false,
    ],
  ]
  for (const [name, request, response, closes] of cases) {
    const { framer } = recording(http1())
    t.equal(framer.request(Buffer.from(request)), undefined)
    t.equal(framer.response(Buffer.from(response)), undefined)
    t.equal((framer as { closeAfter?: boolean }).closeAfter, closes, name)
  }
  // A later keep-alive exchange clears it.
  const { framer } = recording(http1())
  framer.request(Buffer.from('GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n'))
  framer.response(Buffer.from('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n'))
  t.equal((framer as { closeAfter?: boolean }).closeAfter, true)
  framer.response(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'))
  t.equal((framer as { closeAfter?: boolean }).closeAfter, false)
})
