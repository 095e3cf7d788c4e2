/**
 * fast-check generators of VALID request and response streams for each protocol, with the bounds
 * of every message recorded (model.ts), built with the framer tests' own encoders; plans that cut
 * and interleave them; and mutations that turn them into near-misses for the crash fuzzing.
 */
import fc from 'fast-check'
import type { LengthPrefixedOptions } from '../../../lib/framing/length-prefixed.js'
import { SAFE_COMMANDS } from '../../../lib/framing/resp.js'
import { frame } from '../../framing/helpers/frames.js'
import { chunked, request, response, type Headers } from '../../framing/helpers/http1.js'
import { cmd, reply } from '../../framing/helpers/resp.js'
import { StreamBuilder, type Plan, type PlanStep, type Stream } from './model.js'

const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1')

// ---------------------------------------------------------------------------------------------
// Plans

/** Piece sizes: often one byte, often small, sometimes large. */
const pieceSize = fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 300 }))

/** Pieces of client and server bytes in a random order, with a server failover now and then. */
export const plan = (failovers = false): fc.Arbitrary<Plan> =>
  fc.record({
    steps: fc.array(
      fc.oneof(
        { weight: 10, arbitrary: fc.record({ side: fc.constant<'client'>('client'), n: pieceSize }) },
        { weight: 10, arbitrary: fc.record({ side: fc.constant<'server'>('server'), n: pieceSize }) },
        { weight: failovers ? 1 : 0, arbitrary: fc.constant<PlanStep>({ side: 'failover' }) }
      ),
      { maxLength: 60 }
    ),
    seed: fc.integer(),
    piece: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 64 })),
    failovers: fc.constant(failovers),
  })

// ---------------------------------------------------------------------------------------------
// opaque: any bytes, in turns

export const opaqueStream: fc.Arbitrary<Stream> = fc
  .tuple(fc.uint8Array({ maxLength: 400 }), fc.uint8Array({ maxLength: 400 }))
  .map(([c, s]) => ({ requests: Buffer.from(c), responses: Buffer.from(s), reqs: [], units: [] }))

// ---------------------------------------------------------------------------------------------
// length-prefixed

export const lpOptions: fc.Arbitrary<LengthPrefixedOptions> = fc
  .record({
    lengthBytes: fc.constantFrom<1 | 2 | 4 | 8>(1, 2, 4, 8),
    littleEndian: fc.boolean(),
    lengthIncludesHeader: fc.boolean(),
    lengthOffset: fc.integer({ min: 0, max: 16 }),
  })
  .chain((o) => {
    const header = o.lengthOffset + o.lengthBytes
    return fc.integer({ min: header, max: header + 400 }).map((maxFrameBytes) => ({ ...o, maxFrameBytes }))
  })

/** Largest body a frame may carry under `o` (and that its length field can express). */
export function lpBodyMax(o: LengthPrefixedOptions): number {
  const header = (o.lengthOffset ?? 0) + o.lengthBytes
  const field = 2 ** (8 * Math.min(o.lengthBytes, 6)) - 1 - (o.lengthIncludesHeader ? header : 0)
  return Math.min(o.maxFrameBytes - header, field)
}

export const lpStream = (o: LengthPrefixedOptions): fc.Arbitrary<Stream> => {
  const max = Math.min(lpBodyMax(o), 120)
  const body = fc.uint8Array({ maxLength: max })
  const lead = fc.uint8Array({ minLength: o.lengthOffset ?? 0, maxLength: o.lengthOffset ?? 0 })
  const one = fc.tuple(lead, body).map(([l, b]) => frame(o, Buffer.from(b), { lead: Buffer.from(l) }))
  return fc.array(fc.tuple(one, one, fc.boolean()), { maxLength: 12 }).chain((pairs) =>
    fc.constantFrom<'begin' | 'end'>('begin', 'end').map((after) => {
      const b = new StreamBuilder()
      for (const [req] of pairs) b.request(req)
      // A response may begin as soon as its request has begun (an early rejection) or once it is whole.
      pairs.forEach(([, res], k) => b.response(res, true, k, after))
      return b.build()
    })
  )
}

// ---------------------------------------------------------------------------------------------
// http1

const SEMANTIC = new Set([
  'content-length',
  'transfer-encoding',
  'connection',
  'upgrade',
  'expect',
  'idempotency-key',
])
const tokenChars = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".split('')
const token = (max: number): fc.Arbitrary<string> =>
  fc.array(fc.constantFrom(...tokenChars), { minLength: 1, maxLength: max }).map((a) => a.join(''))
/** Field-value bytes: VCHAR, obs-text, and SP/HTAB inside (trimmed at the ends by the framer anyway). */
const valueChar = fc.oneof(
  fc.integer({ min: 0x21, max: 0x7e }),
  fc.integer({ min: 0x80, max: 0xff }),
  fc.constantFrom(0x20, 0x09)
)
const fieldValue = fc
  .array(valueChar, { maxLength: 24 })
  .map((a) => String.fromCharCode(...a).replace(/^[ \t]+|[ \t]+$/g, ''))
const field: fc.Arbitrary<readonly [string, string]> = fc
  .tuple(token(16), fieldValue)
  .filter(([n]) => !SEMANTIC.has(n.toLowerCase()))
const fields = fc.array(field, { maxLength: 4 })
const target = fc
  .array(fc.oneof(fc.integer({ min: 0x21, max: 0x7e }), fc.integer({ min: 0x80, max: 0xff })), {
    minLength: 1,
    maxLength: 30,
  })
  .map((a) => String.fromCharCode(...a))
const text = (max: number): fc.Arbitrary<string> =>
  fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: max }).map((a) => String.fromCharCode(...a))
/** A chunk extension: `name[=value]`, several separated by `;`. */
const chunkExt = fc.option(
  fc
    .array(fc.tuple(token(6), fc.option(token(6), { nil: undefined })), { minLength: 1, maxLength: 2 })
    .map((exts) => exts.map(([n, v]) => (v === undefined ? n : `${n}=${v}`)).join(';')),
  { nil: undefined }
)

type BodyKind =
  | { kind: 'none' }
  | { kind: 'length'; body: string; repeat: boolean }
  | {
      kind: 'chunked'
      parts: string[]
      exts: (string | undefined)[]
      lastExt: string | undefined
      trailers: Headers
      codings: string
    }

const body = (chunkedOk: boolean): fc.Arbitrary<BodyKind> =>
  fc.oneof(
    fc.constant<BodyKind>({ kind: 'none' }),
    fc.record({ kind: fc.constant<'length'>('length'), body: text(60), repeat: fc.boolean() }),
    ...(chunkedOk
      ? [
          fc.record({
            kind: fc.constant<'chunked'>('chunked'),
            parts: fc.array(
              text(40).filter((s) => s.length > 0),
              { maxLength: 4 }
            ),
            exts: fc.array(chunkExt, { maxLength: 4 }),
            lastExt: chunkExt,
            trailers: fields,
            codings: fc.constantFrom('chunked', 'Chunked', 'gzip, chunked', 'gzip,chunked', ' , chunked'),
          }),
        ]
      : [])
  )

/** Headers and the encoded body for `b`. */
function bodyParts(b: BodyKind): { headers: Headers; body: string } {
  switch (b.kind) {
    case 'none':
      return { headers: [], body: '' }
    case 'length': {
      const n = String(b.body.length)
      return { headers: [['Content-Length', b.repeat ? `${n}, ${n}` : n]], body: b.body }
    }
    case 'chunked':
      return {
        headers: [['Transfer-Encoding', b.codings]],
        body: chunked(b.parts, { exts: b.exts, lastExt: b.lastExt, trailers: b.trailers }),
      }
  }
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])

interface Http1Exchange {
  strays: number
  method: string
  target: string
  version: 'HTTP/1.1' | 'HTTP/1.0'
  headers: Headers
  idempotencyKey: boolean
  expect: boolean
  connection: string | undefined
  body: BodyKind
  interims: { status: number; headers: Headers }[]
  status: number
  reason: string
  resVersion: 'HTTP/1.1' | 'HTTP/1.0'
  resHeaders: Headers
  resBody: BodyKind
  /** A HEAD or 304 answer's Content-Length (the size a GET would have had). */
  headLength: number | undefined
}

const exchange: fc.Arbitrary<Http1Exchange> = fc
  .record({
    strays: fc.oneof(
      { weight: 4, arbitrary: fc.constant(0) },
      { weight: 1, arbitrary: fc.integer({ min: 1, max: 2 }) }
    ),
    method: fc.oneof(
      fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE'),
      token(10).filter((m) => m !== 'CONNECT')
    ),
    target,
    version: fc.constantFrom<'HTTP/1.1' | 'HTTP/1.0'>('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0'),
    headers: fields,
    idempotencyKey: fc.boolean(),
    expect: fc.boolean(),
    connection: fc.option(fc.constantFrom('close', 'keep-alive', 'Keep-Alive, foo', 'x'), { nil: undefined }),
    interims: fc.array(fc.record({ status: fc.constantFrom(100, 102, 103, 199), headers: fields }), {
      maxLength: 2,
    }),
    status: fc.constantFrom(200, 201, 204, 206, 304, 400, 404, 413, 417, 500),
    reason: fc.oneof(
      fc.constant('R'),
      fc.constant(''),
      text(12).map((s) => s.replace(/[\x00-\x08\x0a-\x1f\x7f]/g, 'x'))
    ),
    resVersion: fc.constantFrom<'HTTP/1.1' | 'HTTP/1.0'>('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0'),
    resHeaders: fields,
    headLength: fc.option(fc.nat({ max: 99999 }), { nil: undefined }),
  })
  .chain((x) =>
    fc
      .tuple(body(x.version === 'HTTP/1.1'), body(x.resVersion === 'HTTP/1.1'))
      .map(([reqBody, resBody]) => ({ ...x, body: reqBody, resBody }))
  )

/** Where a message's request line and head end. */
const lineOf = (m: Buffer): number => m.indexOf('\r\n') + 2
const headOf = (m: Buffer): number => m.indexOf('\r\n\r\n') + 4

/** The request of `x` alone (no strays). */
export function http1Request(x: Http1Exchange): Buffer {
  const { headers: bodyHeaders, body: encoded } = bodyParts(x.body)
  const headers: (readonly [string, string])[] = [...x.headers]
  if (x.idempotencyKey) headers.push(['Idempotency-Key', 'k1'])
  if (x.expect) headers.push(['Expect', '100-continue'])
  if (x.connection !== undefined) headers.push(['Connection', x.connection])
  headers.push(...bodyHeaders)
  return request(x.method, x.target, headers, encoded, x.version)
}

/** The final response of `x`: bodiless where the request or the status says so. */
export function http1Response(x: Http1Exchange): Buffer {
  const bodiless = x.method === 'HEAD' || x.status === 204 || x.status === 304
  const headers: (readonly [string, string])[] = [...x.resHeaders]
  if (bodiless) {
    if (x.headLength !== undefined && x.status !== 204) headers.push(['Content-Length', String(x.headLength)])
    return response(x.status, headers, '', x.reason, x.resVersion)
  }
  const { headers: bodyHeaders, body: encoded } = bodyParts(
    x.resBody.kind === 'none' ? { kind: 'length', body: '', repeat: false } : x.resBody
  )
  headers.push(...bodyHeaders)
  return response(x.status, headers, encoded, x.reason, x.resVersion)
}

export const http1Stream: fc.Arbitrary<Stream> = fc.array(exchange, { maxLength: 6 }).map((xs) => {
  const b = new StreamBuilder()
  const indices: number[] = []
  for (const x of xs) {
    for (let k = 0; k < x.strays; k++) b.request(latin1('\r\n'), { kind: 'stray' })
    const req = http1Request(x)
    const key = req.indexOf('Idempotency-Key: k1\r\n')
    indices.push(
      b.request(req, {
        head: headOf(req),
        line: lineOf(req),
        safe: SAFE_METHODS.has(x.method) || x.idempotencyKey,
        safeAt: SAFE_METHODS.has(x.method) ? lineOf(req) : key + 'Idempotency-Key: k1\r\n'.length,
      })
    )
  }
  xs.forEach((x, k) => {
    for (const i of x.interims) b.response(response(i.status, i.headers), false, indices[k]!, 'head')
    b.response(http1Response(x), true, indices[k]!, 'head')
  })
  return b.build()
})

// ---------------------------------------------------------------------------------------------
// resp

/** Commands that keep replies paired with requests (not SUBSCRIBE, MONITOR, CLIENT REPLY…). */
const RESP_NAMES = [
  'GET',
  'SET',
  'INCR',
  'MGET',
  'PING',
  'HSET',
  'LPUSH',
  'EXISTS',
  'DEL',
  'EXEC',
  'AUTH',
  'HELLO',
  'SELECT',
  'READONLY',
  'READWRITE',
  'MULTI',
  'BLPOP',
  'EVAL',
  'NOSUCHCMD',
]
const respName = fc
  .tuple(fc.constantFrom(...RESP_NAMES), fc.array(fc.boolean(), { maxLength: 16 }))
  .map(([n, lower]) => [...n].map((c, k) => (lower[k] ? c.toLowerCase() : c)).join(''))
const word = fc
  .array(fc.constantFrom(...'abcxyz019-_.:'.split('')), { minLength: 1, maxLength: 8 })
  .map((a) => a.join(''))

interface RespRequest {
  data: Buffer
  kind: 'real' | 'noop'
  safe: boolean
}

const respRequest: fc.Arbitrary<RespRequest> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .tuple(respName, fc.array(fc.uint8Array({ maxLength: 20 }), { maxLength: 4 }))
      .map(([name, args]) => ({
        data: cmd(name, ...args.map((a) => Buffer.from(a))),
        kind: 'real' as const,
        safe: SAFE_COMMANDS.has(name.toUpperCase()),
      })),
  },
  {
    weight: 3,
    arbitrary: fc
      .tuple(
        respName,
        fc.array(word, { maxLength: 3 }),
        fc.constantFrom(' ', '  ', '\t'),
        fc.constantFrom('\r\n', '\n'),
        fc.constantFrom('', ' ')
      )
      .map(([name, args, sep, eol, lead]) => ({
        data: latin1(`${lead}${[name, ...args].join(sep)}${eol}`),
        kind: 'real' as const,
        safe: SAFE_COMMANDS.has(name.toUpperCase()),
      })),
  },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom('\r\n', '\n', '  \r\n', '\t\n', '*0\r\n', '*-1\r\n')
      .map((s) => ({ data: latin1(s), kind: 'noop' as const, safe: true })),
  }
)

const line = fc
  .array(
    fc.integer({ min: 0, max: 255 }).filter((c) => c !== 13 && c !== 10),
    { maxLength: 12 }
  )
  .map((a) => Buffer.from(a).toString('latin1'))
const bytes = (max: number): fc.Arbitrary<Buffer> =>
  fc.uint8Array({ maxLength: max }).map((a) => Buffer.from(a))

const leaf: fc.Arbitrary<Buffer> = fc.oneof(
  line.map((s) => latin1(`+${s}\r\n`)),
  line.map((s) => latin1(`-ERR ${s}\r\n`)),
  fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map((n) => reply.int(n)),
  fc.option(bytes(30), { nil: null }).map((b) => reply.bulk(b)),
  fc.constant(reply.null()),
  fc.constantFrom('3.14', 'inf', '-inf', 'nan', '1e10', '-0').map((d) => reply.double(d)),
  fc.boolean().map((v) => reply.bool(v)),
  line.map((s) => reply.blobError(s)),
  line.map((s) => reply.verbatim(s)),
  fc.bigInt({ min: -(2n ** 200n), max: 2n ** 200n }).map((n) => reply.big(String(n))),
  fc.constant(reply.array(null)),
  fc.array(line, { maxLength: 3 }).map((pieces) => reply.streamedString(pieces))
)

/**
 * Reply values nested up to `depth` more levels: `top` is what may stand at the top level (any
 * type but a push, maybe after attributes), `any` what may stand inside an aggregate (pushes too).
 */
function values(depth: number): { top: fc.Arbitrary<Buffer>; any: fc.Arbitrary<Buffer> } {
  if (depth === 0) return { top: leaf, any: leaf }
  const inner = values(depth - 1)
  const items = fc.array(inner.any, { maxLength: 3 })
  const pairs = (min: number): fc.Arbitrary<[Buffer, Buffer][]> =>
    fc.array(fc.tuple(inner.any, inner.any), { minLength: min, maxLength: 2 })
  const kinds = (push: boolean, under: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> =>
    fc.oneof(
      { weight: 4, arbitrary: leaf },
      { weight: 1, arbitrary: items.map((xs) => reply.array(xs)) },
      { weight: 1, arbitrary: items.map((xs) => reply.set(xs)) },
      { weight: push ? 1 : 0, arbitrary: items.map((xs) => reply.push(xs)) },
      { weight: 1, arbitrary: pairs(0).map((ps) => reply.map(ps)) },
      // An attribute belongs to the value after it: at the top level, never a push.
      { weight: 1, arbitrary: fc.tuple(pairs(1), under).map(([ps, v]) => reply.attribute(ps, v)) },
      {
        weight: 1,
        arbitrary: fc
          .tuple(fc.constantFrom(...(push ? ['*', '~', '%', '>'] : ['*', '~', '%'])), items)
          .map(([t, xs]) => reply.streamed(t, xs)),
      }
    )
  return { top: kinds(false, inner.top), any: kinds(true, inner.any) }
}

/** A top-level reply. */
export const respReply: fc.Arbitrary<Buffer> = values(3).top

/** An out-of-band push, as a RESP3 server sends for invalidations and pub/sub. */
export const respPush: fc.Arbitrary<Buffer> = fc
  .array(values(1).any, { maxLength: 3 })
  .map((xs) => reply.push([reply.bulk('invalidate'), ...xs]))

export const respStream: fc.Arbitrary<Stream> = fc
  .array(
    fc.record({
      req: respRequest,
      reply: respReply,
      pushes: fc.array(respPush, { maxLength: 1 }),
    }),
    { maxLength: 10 }
  )
  .map((xs) => {
    const b = new StreamBuilder()
    const real: number[] = []
    for (const x of xs) {
      const k = b.request(x.req.data, { kind: x.req.kind, safe: x.req.safe })
      if (x.req.kind === 'real') real.push(k)
    }
    let r = 0
    for (const x of xs) {
      for (const p of x.pushes) b.response(p, false, -1, 'end')
      if (x.req.kind === 'real') b.response(x.reply, true, real[r++]!, 'end')
    }
    return b.build()
  })

// ---------------------------------------------------------------------------------------------
// Mutations: a valid stream made slightly wrong, where parser bugs live.

export type Mutation = {
  at: number
  op: 'flip' | 'set' | 'insert' | 'delete' | 'token' | 'repeat'
  byte: number
  token: number
  times: number
}

export const mutations = fc.array(
  fc.record({
    at: fc.nat(),
    op: fc.constantFrom<Mutation['op']>('flip', 'set', 'insert', 'delete', 'token', 'repeat'),
    byte: fc.integer({ min: 0, max: 255 }),
    token: fc.nat(),
    times: fc.integer({ min: 1, max: 64 }),
  }),
  { maxLength: 6 }
)

/** `data` with `ms` applied; `tokens` are protocol fragments to splice in. */
export function mutate(data: Buffer, ms: readonly Mutation[], tokens: readonly string[]): Buffer {
  let out = data
  for (const m of ms) {
    const at = out.length === 0 ? 0 : m.at % (out.length + 1)
    const before = out.subarray(0, at)
    const after = out.subarray(at)
    switch (m.op) {
      case 'flip':
        if (at < out.length) (out = Buffer.from(out))[at] ^= 1 << (m.byte & 7)
        break
      case 'set':
        if (at < out.length) (out = Buffer.from(out))[at] = m.byte
        break
      case 'insert':
        out = Buffer.concat([before, Buffer.from([m.byte]), after])
        break
      case 'delete':
        out = Buffer.concat([before, after.subarray(1)])
        break
      case 'token':
        out = Buffer.concat([before, latin1(tokens[m.token % tokens.length]!), after])
        break
      case 'repeat': {
        const piece = after.subarray(0, 1 + (m.byte % 16))
        out = Buffer.concat([before, ...Array.from({ length: m.times }, () => piece), after])
        break
      }
    }
  }
  return out
}

export const TOKENS = {
  http1: [
    '\r\n',
    '\r',
    '\n',
    '\r\n\r\n',
    ' ',
    ':',
    '\t',
    '\x00',
    '\xff',
    ';',
    ',',
    'Content-Length: 5\r\n',
    'Content-Length: 99999999999999999\r\n',
    'Content-Length: 1, 2\r\n',
    'Transfer-Encoding: chunked\r\n',
    'Transfer-Encoding: gzip\r\n',
    'Transfer-Encoding: chunked, chunked\r\n',
    '0\r\n\r\n',
    'ffffffffffffffffff\r\n',
    '10000000000000\r\n',
    'HTTP/1.1 ',
    'HTTP/1.0 200 OK\r\n\r\n',
    'HTTP/1.1 101 Switching\r\n\r\n',
    'HTTP/1.1 100 Continue\r\n\r\n',
    'HTTP/1.1 200 OK\r\n\r\n',
    'Upgrade: websocket\r\nConnection: upgrade\r\n',
    'CONNECT a:1 HTTP/1.1\r\n\r\n',
    'GET / HTTP/1.1\r\n\r\n',
    'HEAD / HTTP/1.1\r\n\r\n',
    'Connection: close\r\n',
    'Expect: 100-continue\r\n',
    ' folded\r\n',
  ],
  resp: [
    '\r\n',
    '\r',
    '\n',
    '*',
    '$',
    '-1',
    '?',
    ';0\r\n',
    '.\r\n',
    '|1\r\n',
    '>2\r\n',
    '%1\r\n',
    '~1\r\n',
    '*?\r\n',
    '$?\r\n',
    '$-1\r\n',
    '*-1\r\n',
    '*0\r\n',
    '_\r\n',
    ':99999999999999999999\r\n',
    '*2147483648\r\n',
    '$999999999999\r\n',
    '"',
    "'",
    '\\x4',
    '*1\r\n$9\r\nSUBSCRIBE\r\n',
    'MONITOR\r\n',
    'CLIENT REPLY OFF\r\n',
    '*2\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n',
    'MULTI\r\n',
    'AUTH a b\r\n',
    '*1\r\n$4\r\nAUTH\r\n',
    'HELLO 3\r\n',
    'SELECT 1\r\n',
    'XREAD BLOCK 0 STREAMS a 0\r\n',
    'ZADD k INCR 1 m\r\n',
    '*3\r\n$4\r\nZADD\r\n',
    'RESET\r\n',
  ],
  lp: [
    '\x00',
    '\xff',
    '\xff\xff\xff\xff',
    '\xff\xff\xff\xff\xff\xff\xff\xff',
    '\x00\x00\x00\x00',
    '\x7f',
    '\x80',
  ],
} as const
