/**
 * Conformance of the http1 framer (tests/framing/helpers/conformance.ts): seeded random pipelines
 * of requests (GET, HEAD, Content-Length and chunked bodies with extensions and trailers, Expect:
 * 100-continue, Idempotency-Key, HTTP/1.0) and their responses (Content-Length, chunked, 204, 304,
 * bodiless HEAD answers, 100 and 103 interim responses, a close-delimited last one), valid or with
 * a fault, modelled by the generator; `closeDelimited` is compared across every cut too.
 */
import t from 'tap'
import { http1 } from '../../../lib/framing/http1.js'
import { protocolOf } from '../../../lib/protocols/index.js'
import { conformance, type ConformanceCase } from '../helpers/conformance.js'
import { between, mulberry32 } from '../helpers/frames.js'
import { chunked, request, response, type Headers } from '../helpers/http1.js'

const MAX_HEAD = 256
const SEEDS = [1, 2, 3, 4]

type Fault =
  | 'none'
  | 'fewer responses'
  | 'partial request'
  | 'extra response'
  | 'malformed request'
  | 'oversize request'
  | 'malformed response'
  | 'oversize response'
  | 'close-delimited'

const FAULTS: Fault[] = [
  'none',
  'fewer responses',
  'partial request',
  'extra response',
  'malformed request',
  'oversize request',
  'malformed response',
  'oversize response',
  'close-delimited',
]

/** One request and its responses: interim ones (each a unit), then the final one. */
interface Exchange {
  request: Buffer
  /** Bytes of the request's head. */
  head: number
  responses: Buffer[]
  safe: boolean
}

const headOf = (message: Buffer): number => message.indexOf('\r\n\r\n') + 4

function generator(rand: () => number) {
  const pick = <T>(items: readonly T[]): T => items[between(rand, 0, items.length - 1)]!
  const text = (lo: number, hi: number): string =>
    Array.from({ length: between(rand, lo, hi) }, () => pick('abcxyz0129 \r\n;:'.split(''))).join('')
  const chunkedBody = (): string =>
    chunked(
      Array.from({ length: between(rand, 0, 3) }, () => text(1, 12)),
      {
        exts: [rand() < 0.3 ? 'a=1' : undefined, rand() < 0.3 ? ' x ; y="q;q"' : undefined],
        lastExt: rand() < 0.2 ? 'end' : undefined,
        trailers: rand() < 0.4 ? [['T', text(0, 5).replace(/[\r\n]/g, '')]] : [],
      }
    )
  const host: Headers = [['Host', 'h']]

  const exchange = (): Exchange => {
    const kind = pick(['GET', 'GET10', 'HEAD', 'POST', 'PUT chunked', 'POST key', 'POST expect'])
    let req: Buffer
    let safe = true
    let head = false
    switch (kind) {
      case 'GET':
        req = request(
          'GET',
          `/${text(0, 4).replace(/\W/g, '')}`,
          rand() < 0.3 ? [...host, ['Connection', 'close']] : host
        )
        break
      case 'GET10':
        req = request('GET', '/old', [], '', 'HTTP/1.0')
        break
      case 'HEAD':
        req = request('HEAD', '/', host)
        head = true
        break
      case 'POST': {
        const body = text(0, 20)
        req = request('POST', '/p', [...host, ['Content-Length', String(body.length)]], body)
        safe = false
        break
      }
      case 'PUT chunked':
        req = request('PUT', '/c', [['Transfer-Encoding', 'chunked']], chunkedBody())
        break
      case 'POST key': {
        const body = text(1, 8)
        req = request(
          'POST',
          '/k',
          [
            ['Idempotency-Key', 'k1'],
            ['Content-Length', String(body.length)],
          ],
          body
        )
        break
      }
      default: {
        const body = text(1, 12)
        const headers: Headers = [
          ['Expect', '100-continue'],
          ['Content-Length', String(body.length)],
        ]
        req = request('POST', '/e', headers, body)
        safe = false
      }
    }
    const responses: Buffer[] = []
    if (kind === 'POST expect' && rand() < 0.7) responses.push(response(100, [], '', 'Continue'))
    if (rand() < 0.15) responses.push(response(103, [['Link', '</a>; rel=preload']]))
    if (head) {
      responses.push(response(200, [['Content-Length', String(between(rand, 0, 500))]]))
    } else {
      const body = text(0, 16)
      switch (pick(['sized', 'sized', 'chunked', '204', '304'])) {
        case 'sized':
          responses.push(
            response(pick([200, 201, 404, 500]), [['Content-Length', String(body.length)]], body)
          )
          break
        case 'chunked':
          responses.push(response(200, [['Transfer-Encoding', 'chunked']], chunkedBody()))
          break
        case '204':
          responses.push(response(204, []))
          break
        default:
          responses.push(response(304, [['Content-Length', '99']]))
      }
    }
    return { request: req, head: headOf(req), responses, safe }
  }

  const malformedRequest = (): Buffer =>
    pick([
      request(
        'POST',
        '/',
        [
          ['Content-Length', '1'],
          ['Transfer-Encoding', 'chunked'],
        ],
        'x'
      ),
      request(
        'POST',
        '/',
        [
          ['Content-Length', '1'],
          ['Content-Length', '2'],
        ],
        'xy'
      ),
      request('POST', '/', [['Content-Length', '-1']]),
      request('POST', '/', [['Transfer-Encoding', 'chunked, gzip']]),
      request('POST', '/', [['Transfer-Encoding', 'chunked']], '3\r\nabcd\r\n'),
      request('POST', '/', [['Transfer-Encoding', 'chunked']], 'x3\r\nabc\r\n0\r\n\r\n'),
      Buffer.from('GET / HTTP/1.1\r\nHost: a\n\r\n'),
      Buffer.from('GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n'),
      Buffer.from('GET / HTTP/1.1\r\nHost : a\r\n\r\n'),
      Buffer.from('GET /  HTTP/1.1\r\n\r\n'),
    ])
  const malformedResponse = (): Buffer =>
    pick([
      response(
        200,
        [
          ['Content-Length', '1'],
          ['Transfer-Encoding', 'chunked'],
        ],
        '0\r\n\r\n'
      ),
      response(200, [['Content-Length', 'x']]),
      response(200, [['Transfer-Encoding', 'chunked']], '2\r\nabc\r\n'),
      Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n'),
      Buffer.from('HTTP/1.1 2000 OK\r\n\r\n'),
      Buffer.from('HTTP/1.1 200 OK\r\nA\t: b\r\n\r\n'),
    ])
  const oversize = (side: 'request' | 'response'): Buffer => {
    const headers: Headers = [['X-Big', 'b'.repeat(between(rand, MAX_HEAD, MAX_HEAD + 40))]]
    return side === 'request' ? request('GET', '/', headers) : response(200, headers)
  }
  const closeDelimited = (): Buffer =>
    rand() < 0.5
      ? response(200, [], text(0, 20), 'OK', 'HTTP/1.0')
      : response(200, [['Transfer-Encoding', 'gzip']], text(0, 20))
  return { exchange, malformedRequest, malformedResponse, oversize, closeDelimited }
}

function makeCase(seed: number, fault: Fault): ConformanceCase {
  const rand = mulberry32(seed * 7919 + FAULTS.indexOf(fault) * 104729)
  const gen = generator(rand)
  const count = between(rand, 3, 6)
  const exchanges = Array.from({ length: count }, gen.exchange)
  const bad = between(rand, 0, count - 1)
  if (fault === 'close-delimited') {
    // A HEAD would make the close-delimited answer bodiless: end with a GET instead.
    const get = request('GET', '/last', [['Host', 'h']])
    exchanges[count - 1] = { request: get, head: headOf(get), responses: [gen.closeDelimited()], safe: true }
  }
  let groups = exchanges.map((e) => e.responses)
  const ends: number[] = []
  let at = 0
  for (const e of exchanges) ends.push((at += e.request.length))
  let model: { answered: number[]; pending: number; code: string | undefined; safe: boolean }
  let closed = false
  const safeFrom = (k: number): boolean => exchanges.slice(k).every((e) => e.safe)
  switch (fault) {
    case 'none':
      model = { answered: ends, pending: 0, code: undefined, safe: true }
      break
    case 'fewer responses': {
      const n = between(rand, 0, count - 1)
      groups = groups.slice(0, n)
      model = { answered: ends.slice(0, n), pending: count - n, code: undefined, safe: safeFrom(n) }
      break
    }
    case 'partial request': {
      const last = exchanges[count - 1]!
      last.request = last.request.subarray(0, between(rand, 1, last.request.length - 1))
      // Whether the cut request is safe depends on how much of its head is in: not modelled.
      const n = between(rand, 0, count - 1)
      groups = groups.slice(0, n)
      model = { answered: ends.slice(0, n), pending: count - n, code: undefined, safe: false }
      break
    }
    case 'extra response':
      groups.push([gen.exchange().responses.at(-1)!])
      model = { answered: ends, pending: 0, code: 'ERR_BATON_FRAME_MALFORMED', safe: true }
      break
    case 'malformed request':
    case 'oversize request': {
      const req = fault === 'malformed request' ? gen.malformedRequest() : gen.oversize('request')
      exchanges[bad] = { request: req, head: headOf(req), responses: [], safe: false }
      const code = fault === 'malformed request' ? 'ERR_BATON_FRAME_MALFORMED' : 'ERR_BATON_FRAME_TOO_LARGE'
      model = { answered: [], pending: bad + 1, code, safe: false } // safe: not modelled
      break
    }
    case 'malformed response':
    case 'oversize response': {
      groups[bad] = [fault === 'malformed response' ? gen.malformedResponse() : gen.oversize('response')]
      const code = fault === 'malformed response' ? 'ERR_BATON_FRAME_MALFORMED' : 'ERR_BATON_FRAME_TOO_LARGE'
      model = { answered: ends.slice(0, bad), pending: count - bad, code, safe: safeFrom(bad) }
      break
    }
    case 'close-delimited':
      closed = true
      model = { answered: ends.slice(0, count - 1), pending: 1, code: undefined, safe: safeFrom(count - 1) }
      break
  }
  const headEnds: number[] = []
  at = 0
  for (const e of exchanges) {
    headEnds.push(at + e.head)
    at += e.request.length
  }
  const responseBounds = [0]
  // The responses to a request may begin once its head is in; those with no request, at the end.
  const need: number[] = []
  groups.forEach((g, k) => {
    for (const unit of g) {
      responseBounds.push(responseBounds.at(-1)! + unit.length)
      need.push(k < headEnds.length ? headEnds[k]! : Infinity)
    }
  })
  const responses = Buffer.concat(groups.flat())
  if (closed) responseBounds.pop()
  const requestFault = fault === 'malformed request' || fault === 'oversize request'
  // After a client-side fault, or with a request cut anywhere, safety is not modelled.
  const unmodelled = fault === 'partial request' || requestFault
  return {
    name: `seed ${seed}, ${fault}`,
    group: fault,
    requests: Buffer.concat(exchanges.map((e) => e.request)),
    responses,
    bounds: responseBounds,
    need,
    model: { ...model, safe: unmodelled ? undefined : model.safe },
    requestFault,
  }
}

conformance(t, {
  factory: http1({ maxHeadBytes: MAX_HEAD }),
  resume: protocolOf('http1').resume,
  resumeReframes: true,
  cases: FAULTS.flatMap((fault) => SEEDS.map((seed) => makeCase(seed, fault))),
  observe: (framer) => ({ closeDelimited: framer.closeDelimited === true }),
})

t.test('closeDelimited is set by a close-delimited last response only', async (t) => {
  for (const fault of FAULTS) {
    for (const seed of SEEDS) {
      const c = makeCase(seed, fault)
      const framer = http1({ maxHeadBytes: MAX_HEAD })({ answered() {} })
      if (framer.request(c.requests) === undefined) framer.response(c.responses)
      t.equal(framer.closeDelimited === true, fault === 'close-delimited', `${c.name}: closeDelimited`)
    }
  }
})
