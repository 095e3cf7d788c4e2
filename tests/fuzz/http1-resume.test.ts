/**
 * Fuzzing the http1 resume (lib/framing/http1-resume.ts). A response (Content-Length or chunked,
 * chunked any way) is cut anywhere after its head; `ClientView` follows what the client got; one
 * to three replacements of the same representation (chunked differently, headers reordered and
 * renamed in case, a 100 Continue first, or a 206 to the Range that `rangeRequest` adds) are fed to
 * `Http1Resumer` in random pieces, failing over again part-way. What the client ends up with must be
 * one well-framed response (the http1 framer is the judge) carrying exactly the original body; a
 * replacement whose head or first bytes differ must be refused before anything is sent. And any
 * bytes at all, to either, must not throw.
 */
import fc from 'fast-check'
import t from 'tap'
import { http1 } from '../../lib/framing/http1.js'
import { ClientView, Http1Resumer, rangeRequest, type ResumePoint } from '../../lib/framing/http1-resume.js'
import { KEEP_BYTES } from '../../lib/replay/lazy-hash.js'
import { between, mulberry32, recording } from '../framing/helpers/frames.js'
import { check, own, property, retained } from './helpers/fuzz.js'

const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1')
const MAX_HEAD = 64 * 1024
const GET = latin1('GET /file HTTP/1.1\r\nHost: a\r\n\r\n')

/** What identifies the response, and its body. */
interface Representation {
  status: 200 | 203 | 404
  etag: string | undefined
  acceptRanges: boolean
  type: string | undefined
  body: Buffer
  chunked: boolean
}

/** How one server sends it: chunk sizes, extensions, trailers, header order and case, extras. */
interface Rendering {
  seed: number
  chunkMax: number
  interim: boolean
  trailers: boolean
  extras: boolean
}

const representation: fc.Arbitrary<Representation> = fc.record({
  status: fc.constantFrom<200 | 203 | 404>(200, 200, 200, 203, 404),
  etag: fc.option(fc.constantFrom('"v1"', '"abc-123"', 'W/"weak"', '""'), { nil: undefined }),
  acceptRanges: fc.boolean(),
  type: fc.option(fc.constantFrom('text/plain', 'application/octet-stream'), { nil: undefined }),
  body: fc
    .oneof(fc.uint8Array({ maxLength: 16 }), fc.uint8Array({ minLength: 16, maxLength: 600 }))
    .map((a) => Buffer.from(a)),
  chunked: fc.boolean(),
})

const rendering: fc.Arbitrary<Rendering> = fc.record({
  seed: fc.integer(),
  chunkMax: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 700 })),
  interim: fc.boolean(),
  trailers: fc.boolean(),
  extras: fc.boolean(),
})

/** The response `rep` as one server renders it. `range` (from, length): a 206 with the rest. */
function render(rep: Representation, how: Rendering, range?: { from: number; etag: string }): Buffer {
  const rand = mulberry32(how.seed)
  const name = (n: string): string => (rand() < 0.3 ? n.toLowerCase() : n)
  const fields: [string, string][] = []
  if (rep.etag !== undefined) fields.push([name('ETag'), rep.etag])
  if (rep.acceptRanges) fields.push([name('Accept-Ranges'), 'bytes'])
  if (rep.type !== undefined) fields.push([name('Content-Type'), rep.type])
  if (how.extras) fields.push(['Date', `day ${how.seed}`], ['Server', 's'])
  let body = rep.body
  let status: number = rep.status
  if (range !== undefined) {
    status = 206
    body = rep.body.subarray(range.from)
    fields.push([name('Content-Range'), `bytes ${range.from}-${rep.body.length - 1}/${rep.body.length}`])
    fields.push([name('Content-Length'), String(body.length)])
  } else if (rep.chunked) {
    fields.push([name('Transfer-Encoding'), 'chunked'])
  } else {
    fields.push([name('Content-Length'), String(body.length)])
  }
  // Header order is the server's business: the identity compare sorts.
  for (let k = fields.length - 1; k > 0; k--) {
    const j = between(rand, 0, k)
    ;[fields[k], fields[j]] = [fields[j]!, fields[k]!]
  }
  const interim = how.interim ? 'HTTP/1.1 100 Continue\r\n\r\n' : ''
  const head = latin1(
    `${interim}HTTP/1.1 ${status} R\r\n${fields.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`
  )
  if (range !== undefined || !rep.chunked) return Buffer.concat([head, body])
  const parts: Buffer[] = [head]
  for (let at = 0; at < body.length;) {
    const n = Math.min(between(rand, 1, how.chunkMax), body.length - at)
    const ext = rand() < 0.2 ? ';x=1' : ''
    parts.push(latin1(`${n.toString(16)}${ext}\r\n`), body.subarray(at, (at += n)), latin1('\r\n'))
  }
  parts.push(latin1(`0\r\n${how.trailers ? 'T: 1\r\n' : ''}\r\n`))
  return Buffer.concat(parts)
}

/** Random pieces of `data`, from a seed. */
function pieces(data: Buffer, seed: number, max: number): Buffer[] {
  const rand = mulberry32(seed)
  const out: Buffer[] = []
  for (let at = 0; at < data.length;) {
    const n = between(rand, 1, max)
    out.push(own(data.subarray(at, (at += n))))
  }
  return out
}

/**
 * The reference: where a client that has `bytes` of a response (head included) stands: the body
 * bytes it has (decoded), and for a chunked body its place in the chunk framing.
 */
function standing(bytes: Buffer, chunked: boolean): { body: number; at: string } {
  const headEnd = bytes.indexOf('\r\n\r\n') + 4
  if (!chunked) return { body: bytes.length - headEnd, at: 'boundary' }
  let i = headEnd
  let body = 0
  for (;;) {
    if (i === bytes.length) return { body, at: 'boundary' }
    const lf = bytes.indexOf(10, i)
    if (lf < 0) return { body, at: 'size line' }
    const size = parseInt(bytes.toString('latin1', i, lf), 16)
    i = lf + 1
    if (size === 0) return { body, at: 'trailer' }
    const have = Math.min(size, bytes.length - i)
    body += have
    i += have
    if (have < size) return { body, at: `data ${size - have}` }
    if (i === bytes.length) return { body, at: 'crlf \r\n' }
    if (i + 1 === bytes.length) return { body, at: 'crlf \n' }
    i += 2
  }
}

const describe = (p: ResumePoint): string =>
  p.position.at === 'data'
    ? `data ${p.position.remaining}`
    : p.position.at === 'crlf'
      ? `crlf ${p.position.missing.toString('latin1')}`
      : 'boundary'

/** The body of one whole response in `bytes`, checked by the http1 framer; throws if it is not one. */
function bodyOf(bytes: Buffer): Buffer {
  const { framer, answered } = recording(http1())
  framer.request(GET)
  const err = framer.response(bytes)
  check(err === undefined, () => `the client got a malformed response: ${err?.message}`)
  check(
    answered.length === 1 && !framer.responseOpen,
    () => 'the client did not get exactly one whole response'
  )
  let i = bytes.indexOf('\r\n\r\n') + 4
  const head = bytes.toString('latin1', 0, i).toLowerCase()
  if (!head.includes('transfer-encoding: chunked')) return bytes.subarray(i)
  const out: Buffer[] = []
  for (;;) {
    const lf = bytes.indexOf(10, i)
    const size = parseInt(bytes.toString('latin1', i, lf), 16)
    i = lf + 1
    if (size === 0) return Buffer.concat(out)
    out.push(bytes.subarray(i, i + size))
    i += size + 2
  }
}

type Tamper = 'none' | 'body' | 'etag' | 'status'

property(
  t,
  'a cut response resumed from 1 to 3 replacements, failing over part-way: the client gets the original body, well framed',
  fc.record({
    rep: representation,
    original: rendering,
    cut: fc.nat(),
    viewSeed: fc.integer(),
    replacements: fc.array(
      fc.record({
        how: rendering,
        seed: fc.integer(),
        piece: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 900 })),
        failAt: fc.option(fc.nat(), { nil: undefined }),
        useRange: fc.boolean(),
      }),
      { minLength: 1, maxLength: 3 }
    ),
  }),
  ({ rep, original, cut, viewSeed, replacements }) => {
    const first = render(rep, { ...original, interim: false })
    const headLen = first.indexOf('\r\n\r\n') + 4
    if (first.length === headLen) return // nothing to cut in
    const p = headLen + (cut % (first.length - headLen))
    // What the client has, and its view: the head comes whole in the first piece.
    const client: Buffer[] = []
    const view = new ClientView()
    const observe = (b: Buffer): void => {
      client.push(b)
      view.observe(b, rep.chunked)
    }
    const rest = pieces(first.subarray(0, p), viewSeed, 64)
    const joinedHead = Buffer.concat(rest).subarray(0, headLen)
    let at = 0
    while (at < headLen) at += rest.shift()!.length
    observe(own(first.subarray(0, at)))
    for (const r of rest) observe(r)

    for (const [k, r] of replacements.entries()) {
      const last = k === replacements.length - 1
      const have = Buffer.concat(client)
      const where = standing(have, rep.chunked)
      const point = view.resumePoint()
      if (typeof point === 'string') {
        check(
          where.at === 'size line' || where.at === 'trailer',
          () => `refused to resume at ${where.at}: ${point}`
        )
        return
      }
      check(point.head.equals(joinedHead), () => 'the view lost the head')
      check(
        point.bodyBytes === where.body,
        () => `view has ${point.bodyBytes} body bytes, the client ${where.body}`
      )
      check(describe(point) === where.at, () => `view at ${describe(point)}, the client at ${where.at}`)
      // The Range path, as the session takes it: only where the representation allows it.
      const whole = view.rangeable()
      const range = whole === undefined ? undefined : rangeRequest(GET, point.bodyBytes, whole.etag)
      const partial = whole !== undefined && range !== undefined && r.useRange
      check(whole === undefined || range !== undefined, () => 'rangeRequest refused a plain GET')
      const replacement = render(
        rep,
        r.how,
        partial ? { from: point.bodyBytes, etag: whole.etag } : undefined
      )
      const resumer = new Http1Resumer(point, range && whole, MAX_HEAD)
      const feed = pieces(replacement, r.seed, r.piece)
      const failAt = last || r.failAt === undefined ? Infinity : r.failAt % (feed.length + 1)
      let done = false
      for (const [j, piece] of feed.entries()) {
        if (j === failAt) break
        if (done) {
          observe(piece)
          continue
        }
        const step = resumer.feed(piece)
        check(typeof step !== 'string', () => `a faithful replacement refused: ${step as string}`)
        if (typeof step === 'string') return
        check(step.done || step.used === piece.length, () => `used ${step.used} of ${piece.length}, not done`)
        for (const b of step.out) observe(b)
        if (step.done) {
          done = true
          if (step.used < piece.length) observe(piece.subarray(step.used))
        }
      }
      if (last) check(done, () => 'the last replacement was fed whole and the resumer is not done')
    }
    const got = bodyOf(Buffer.concat(client))
    check(
      got.equals(rep.body),
      () => `the client got a body of ${got.length} bytes, not the original ${rep.body.length}`
    )
  },
  300
)

property(
  t,
  'a replacement that differs (its first body bytes, its ETag, its status) is refused before a byte of it is sent',
  fc.record({
    rep: representation.filter((r) => r.body.length > 0),
    original: rendering,
    how: rendering,
    cut: fc.nat(),
    tamper: fc.constantFrom<Tamper>('body', 'etag', 'status'),
    flip: fc.nat(),
    seed: fc.integer(),
  }),
  ({ rep, original, how, cut, tamper, flip, seed }) => {
    const first = render(rep, original)
    const headLen = first.indexOf('\r\n\r\n') + 4
    const p = headLen + (cut % (first.length - headLen))
    const view = new ClientView()
    view.observe(first.subarray(0, p), rep.chunked)
    const point = view.resumePoint()
    if (typeof point === 'string') return
    if (tamper === 'body' && point.bodyBytes === 0) return
    const other: Representation =
      tamper === 'body'
        ? { ...rep, body: Buffer.from(rep.body) }
        : tamper === 'etag'
          ? { ...rep, etag: rep.etag === '"v1"' ? '"v2"' : '"v1"' }
          : { ...rep, status: rep.status === 404 ? 200 : 404 }
    if (tamper === 'body') other.body[flip % point.bodyBytes] ^= 0x01
    const resumer = new Http1Resumer(point, undefined, MAX_HEAD)
    for (const piece of pieces(render(other, how), seed, 50)) {
      const step = resumer.feed(piece)
      if (typeof step === 'string') return
      check(
        !step.verified && step.out.length === 0,
        () => `a ${tamper}-tampered replacement was verified or sent`
      )
      if (step.done) check(false, () => `a ${tamper}-tampered replacement was taken`)
    }
    check(false, () => `a ${tamper}-tampered replacement was neither refused nor taken`)
  },
  300
)

/** Arbitrary bytes, with HTTP fragments among them. */
const noise = fc
  .array(
    fc.oneof(
      fc
        .constantFrom(
          'HTTP/1.1 200 OK\r\n',
          'HTTP/1.1 100 Continue\r\n\r\n',
          'HTTP/1.1 206 P\r\n',
          'Content-Length: 5\r\n',
          'Content-Range: bytes 0-4/5\r\n',
          'Transfer-Encoding: chunked\r\n',
          'ETag: "v1"\r\n',
          'Accept-Ranges: bytes\r\n',
          '\r\n',
          '\r\n\r\n',
          '0\r\n\r\n',
          'ffffffffffffffff\r\n',
          ';',
          '\n'
        )
        .map(latin1),
      fc.uint8Array({ maxLength: 30 }).map((a) => Buffer.from(a))
    ),
    { maxLength: 40 }
  )
  .map((parts) => Buffer.concat(parts))

property(
  t,
  'any bytes to ClientView, Http1Resumer and rangeRequest: no throw, steps within their chunk, memory bounded',
  fc.record({
    seen: noise,
    chunked: fc.boolean(),
    replacement: noise,
    request: noise,
    seed: fc.integer(),
    piece: fc.integer({ min: 1, max: 64 }),
  }),
  ({ seen, chunked, replacement, request, seed, piece }) => {
    const view = new ClientView()
    for (const b of pieces(seen, seed, piece)) view.observe(b, chunked)
    const whole = view.rangeable()
    if (whole !== undefined)
      check(Number.isSafeInteger(whole.length) && whole.length > view.bodyBytes, () => 'rangeable')
    const range = rangeRequest(request, view.bodyBytes, whole?.etag ?? '"x"')
    if (range !== undefined) {
      check(range.at === request.indexOf('\r\n\r\n') + 2, () => `rangeRequest inserts at ${range.at}`)
    }
    const point = view.resumePoint()
    if (typeof point === 'string') return
    const resumer = new Http1Resumer(point, whole, 1024)
    const inputs = new Set<ArrayBufferLike>()
    for (const b of pieces(replacement, seed + 1, piece)) {
      inputs.add(b.buffer)
      const step = resumer.feed(b)
      if (typeof step === 'string') return
      check(step.used >= 0 && step.used <= b.length, () => `used ${step.used} of ${b.length}`)
      check(
        step.out.every((o) => Buffer.isBuffer(o)),
        () => 'out holds something other than Buffers'
      )
      // A head gathered across reads is bounded by maxHead (and the read that passed it).
      const kept = retained(resumer, inputs).bytes
      check(kept <= 3 * 1024 + 2 * 64 + point.head.length + 4096, () => `the resumer retains ${kept} bytes`)
      if (step.done) return
    }
  },
  500
)

property(
  t,
  'ClientView keeps at most KEEP_BYTES of body views alive (and a slot for each), however long the body',
  fc.record({
    size: fc.integer({ min: 0, max: 300_000 }),
    piece: fc.oneof(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 70_000 })),
    chunked: fc.boolean(),
  }),
  ({ size, piece, chunked }) => {
    const head = latin1(
      `HTTP/1.1 200 OK\r\n${chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${size}`}\r\n\r\n`
    )
    const body = chunked
      ? Buffer.concat([latin1(`${size.toString(16)}\r\n`), Buffer.alloc(size, 0x61)])
      : Buffer.alloc(size, 0x61)
    const view = new ClientView()
    view.observe(own(head), chunked)
    const inputs = new Set<ArrayBufferLike>()
    // The bytes referenced are bounded; with tiny reads so is the count of references (8 bytes a slot here).
    const bound = KEEP_BYTES + piece + 8 * (Math.ceil(KEEP_BYTES / piece) + 1) + 4096
    let step = 0
    // A byte a read past KEEP_BYTES is the case that matters; millions of reads add nothing to it.
    const end = Math.min(body.length, piece * 100_000)
    for (let at = 0; at < end; at += piece) {
      const b = own(body.subarray(at, at + piece))
      inputs.add(b.buffer)
      view.observe(b, chunked)
      // Walking 64 K references every step would be quadratic: every 500th step, and the last.
      if (++step % 500 !== 0 && at + piece < end) continue
      const kept = retained(view, inputs).bytes
      check(kept <= bound, () => `the view retains ${kept} bytes after ${at + b.length} body bytes`)
    }
  },
  20
)
