import t from 'tap'
import { ConfigError } from '../../lib/errors.js'
import { lengthPrefixed, type LengthPrefixedOptions } from '../../lib/framing/length-prefixed.js'
import { frame, recording } from './helpers/frames.js'

const MAX = 1 << 20

t.test(
  'every length width and byte order: pipelined requests answered at their exact end offsets',
  async (t) => {
    for (const lengthBytes of [1, 2, 4, 8] as const) {
      for (const littleEndian of [false, true]) {
        const options: LengthPrefixedOptions = { lengthBytes, littleEndian, maxFrameBytes: MAX }
        const name = `${lengthBytes} bytes ${littleEndian ? 'LE' : 'BE'}`
        // Bodies long enough that a wrong byte order reads a length far beyond the data.
        const reqs = [frame(options, 'a'.repeat(3)), frame(options, 'b'.repeat(200)), frame(options, '')]
        const { framer, answered } = recording(lengthPrefixed(options))
        t.equal(framer.request(Buffer.concat(reqs)), undefined, name)
        t.equal(framer.pending(), 3, `${name}: three requests in flight`)
        const ends = [reqs[0]!.length, reqs[0]!.length + reqs[1]!.length]
        ends.push(ends[1]! + reqs[2]!.length)
        for (const [k, body] of ['x', 'y'.repeat(255), 'zz'].entries()) {
          t.equal(framer.response(frame(options, body)), undefined, name)
          t.same(answered, ends.slice(0, k + 1), `${name}: response ${k + 1} answers request ${k + 1}`)
          t.equal(framer.pending(), 2 - k, name)
        }
        t.ok(framer.atBoundary(), `${name}: at a boundary once all are answered`)
      }
    }
  }
)

t.test('the length field is read in the byte order asked for', async (t) => {
  // 0x0102 = 258 big-endian, 513 little-endian.
  for (const [littleEndian, size] of [
    [false, 2 + 258],
    [true, 2 + 513],
  ] as const) {
    const { framer, answered } = recording(
      lengthPrefixed({ lengthBytes: 2, littleEndian, maxFrameBytes: MAX })
    )
    framer.request(Buffer.concat([Buffer.from([0x01, 0x02]), Buffer.alloc(size - 2)]))
    t.equal(framer.pending(), 1, 'one complete request')
    framer.response(Buffer.from([0, 0])) // an empty response
    t.same(answered, [size], `${littleEndian ? 'LE' : 'BE'}: request ends at ${size}`)
  }
})

t.test('lengthIncludesHeader: the length counts the whole frame', async (t) => {
  for (const lengthOffset of [0, 3]) {
    const options: LengthPrefixedOptions = {
      lengthBytes: 4,
      lengthIncludesHeader: true,
      lengthOffset,
      maxFrameBytes: MAX,
    }
    const header = lengthOffset + 4
    const reqs = [frame(options, 'hello'), frame(options, '')]
    t.equal(reqs[0]!.readUInt32BE(lengthOffset), header + 5, 'the encoder wrote header + body')
    const { framer, answered } = recording(lengthPrefixed(options))
    t.equal(framer.request(Buffer.concat(reqs)), undefined)
    t.equal(framer.pending(), 2)
    framer.response(Buffer.concat([frame(options, 'ok'), frame(options, '')]))
    t.same(answered, [header + 5, 2 * header + 5], `offset ${lengthOffset}`)
    t.ok(framer.atBoundary())
  }
})

t.test('lengthIncludesHeader: a length shorter than the header is malformed', async (t) => {
  const options: LengthPrefixedOptions = {
    lengthBytes: 2,
    lengthIncludesHeader: true,
    lengthOffset: 1,
    maxFrameBytes: MAX,
  }
  const { framer } = recording(lengthPrefixed(options))
  t.equal(framer.request(frame(options, '', { length: 3 })), undefined, 'length == header: an empty frame')
  const error = framer.request(frame(options, '', { length: 2 }))
  t.equal(error?.code, 'ERR_BATON_FRAME_MALFORMED')
  t.match(error?.message, /request frame at offset 3/)
  t.equal(framer.request(Buffer.from([1])), error, 'the framer stays failed')
  t.equal(framer.response(Buffer.from([1])), error, 'on both sides')
})

t.test('lengthOffset: the leading field is header, never read as the length', async (t) => {
  for (const lengthOffset of [1, 5, 16]) {
    const options: LengthPrefixedOptions = { lengthBytes: 1, lengthOffset, maxFrameBytes: MAX }
    const lead = Buffer.alloc(lengthOffset, 0xff) // would be a 255-byte length if misread
    const req = frame(options, 'abc', { lead })
    t.equal(req.length, lengthOffset + 1 + 3)
    const { framer, answered } = recording(lengthPrefixed(options))
    // Split inside the leading field and right after it.
    framer.request(req.subarray(0, 1))
    t.equal(framer.pending(), 1, 'one leading byte is a partial request')
    framer.request(req.subarray(1, lengthOffset + 1))
    framer.request(req.subarray(lengthOffset + 1))
    framer.response(frame(options, '', { lead }))
    t.same(answered, [req.length], `offset ${lengthOffset}`)
    t.ok(framer.atBoundary())
  }
})

t.test('a partial request counts in pending(); atBoundary() only when nothing is open', async (t) => {
  const options: LengthPrefixedOptions = { lengthBytes: 2, maxFrameBytes: MAX }
  const req = frame(options, 'abcdef')
  const { framer, answered } = recording(lengthPrefixed(options))
  t.equal(framer.pending(), 0)
  t.ok(framer.atBoundary())
  framer.request(req.subarray(0, 1)) // half a header
  t.equal(framer.pending(), 1)
  t.notOk(framer.atBoundary())
  framer.request(req.subarray(1, 4)) // header and part of the body
  t.equal(framer.pending(), 1)
  framer.request(req.subarray(4))
  t.equal(framer.pending(), 1, 'complete, still unanswered')
  t.notOk(framer.atBoundary())
  const res = frame(options, 'reply')
  framer.response(res.subarray(0, 3))
  t.ok(framer.responseOpen)
  t.equal(framer.pending(), 1)
  t.notOk(framer.atBoundary(), 'a partial response is not a boundary')
  framer.response(res.subarray(3))
  t.same(answered, [req.length])
  t.equal(framer.pending(), 0)
  t.ok(framer.atBoundary())
})

t.test('pipelining: responses split and joined anywhere, answers in order', async (t) => {
  const options: LengthPrefixedOptions = { lengthBytes: 4, maxFrameBytes: MAX }
  const { framer, answered } = recording(lengthPrefixed(options))
  const reqs = Array.from({ length: 40 }, (_, k) => frame(options, 'q'.repeat(k)))
  // Deeper than the end-offset ring's first size, so it has to grow with entries in place.
  framer.request(Buffer.concat(reqs.slice(0, 30)))
  t.equal(framer.pending(), 30)
  const ends: number[] = []
  let at = 0
  for (const r of reqs) ends.push((at += r.length))
  const res = Buffer.concat(reqs.map((_, k) => frame(options, 'r'.repeat(k % 7))))
  framer.response(res.subarray(0, 100))
  framer.request(Buffer.concat(reqs.slice(30)))
  framer.response(res.subarray(100))
  t.same(answered, ends)
  t.ok(framer.atBoundary())
})

t.test('responseOpen and openStart', async (t) => {
  const options: LengthPrefixedOptions = { lengthBytes: 1, maxFrameBytes: MAX }
  const { framer } = recording(lengthPrefixed(options))
  framer.request(Buffer.concat([frame(options, 'a'), frame(options, 'b'), frame(options, 'c')]))
  const r1 = frame(options, 'xyz') // 4 bytes
  const r2 = frame(options, 'uvw')
  t.equal(framer.response(Buffer.concat([r1, r2.subarray(0, 2)])), undefined)
  t.equal(framer.responseOpen, true)
  t.equal(framer.openStart, 4, 'response 2 began at index 4 of this chunk')
  framer.response(r2.subarray(2, 3))
  t.equal(framer.responseOpen, true)
  t.equal(framer.openStart, -1, 'it began in an earlier chunk')
  framer.response(r2.subarray(3))
  t.equal(framer.responseOpen, false)
  t.equal(framer.openStart, -1)
  framer.response(frame(options, ''))
  t.equal(framer.responseOpen, false, 'an empty-bodied response is complete with its header')
})

t.test('a response with no request pending is malformed', async (t) => {
  const options: LengthPrefixedOptions = { lengthBytes: 2, maxFrameBytes: MAX }
  {
    const { framer } = recording(lengthPrefixed(options))
    const error = framer.response(Buffer.from([0]))
    t.equal(error?.code, 'ERR_BATON_FRAME_MALFORMED', 'before any request')
    t.match(error?.message, /response without a request/)
  }
  {
    const { framer, answered } = recording(lengthPrefixed(options))
    framer.request(frame(options, 'one'))
    const error = framer.response(Buffer.concat([frame(options, 'ok'), frame(options, 'extra')]))
    t.same(answered, [5], 'the first response still counts')
    t.equal(error?.code, 'ERR_BATON_FRAME_MALFORMED', 'one response too many')
    t.match(error?.message, /response frame at offset 4: response without a request/)
  }
})

t.test('a response may begin, and end, before its request is whole', async (t) => {
  const options: LengthPrefixedOptions = { lengthBytes: 2, maxFrameBytes: MAX }
  const { framer, answered } = recording(lengthPrefixed(options))
  const req = frame(options, 'a long upload')
  framer.request(req.subarray(0, 5))
  t.equal(framer.response(frame(options, 'rejected')), undefined, 'an early reply is allowed')
  t.same(answered, [], 'not answered yet: the request end is not known')
  t.equal(framer.pending(), 1, 'its bytes are still unreleased')
  const error = framer.response(frame(options, 'again'))
  t.equal(error?.code, 'ERR_BATON_FRAME_MALFORMED', 'but only one reply per request')
  const { framer: f2, answered: a2 } = recording(lengthPrefixed(options))
  f2.request(req.subarray(0, 5))
  f2.response(frame(options, 'rejected'))
  f2.request(req.subarray(5))
  t.same(a2, [req.length], 'answered the moment the request is whole')
  t.ok(f2.atBoundary())
})

t.test('an oversize frame is an error as soon as its header is read', async (t) => {
  for (const lengthIncludesHeader of [false, true]) {
    const options: LengthPrefixedOptions = { lengthBytes: 4, lengthIncludesHeader, maxFrameBytes: 100 }
    const name = lengthIncludesHeader ? 'length includes header' : 'length of body'
    const { framer } = recording(lengthPrefixed(options))
    t.equal(
      framer.request(frame(options, 'x'.repeat(96))),
      undefined,
      `${name}: exactly maxFrameBytes is fine`
    )
    const header = frame(options, '', { length: lengthIncludesHeader ? 101 : 97 })
    const error = framer.request(header) // the body is never sent
    t.equal(error?.code, 'ERR_BATON_FRAME_TOO_LARGE', name)
    t.match(
      error?.message,
      lengthIncludesHeader
        ? /request frame at offset 100: frame of 101 bytes is over maxFrameBytes 100/
        : /request frame at offset 100: frame of 4 \+ 97 bytes is over maxFrameBytes 100/
    )
  }
  const options: LengthPrefixedOptions = { lengthBytes: 2, maxFrameBytes: 10 }
  const { framer } = recording(lengthPrefixed(options))
  framer.request(frame(options, 'q'))
  const error = framer.response(Buffer.from([0x01, 0x00]))
  t.equal(error?.code, 'ERR_BATON_FRAME_TOO_LARGE', 'on the response side too')
  t.match(error?.message, /^response frame at offset 0/)
})

t.test('8-byte lengths: both halves read; 2^53 and up is too large', async (t) => {
  for (const littleEndian of [false, true]) {
    const options: LengthPrefixedOptions = { lengthBytes: 8, littleEndian, maxFrameBytes: 2 ** 32 }
    const order = littleEndian ? 'LE' : 'BE'
    const cases: [bigint, RegExp][] = [
      [2n ** 32n + 5n, /frame of 8 \+ 4294967301 bytes is over maxFrameBytes 4294967296/],
      [2n ** 53n - 1n, /frame of 8 \+ 9007199254740991 bytes is over/],
      [2n ** 53n, /length field is 2\^53 or more/],
      [2n ** 64n - 1n, /length field is 2\^53 or more/],
    ]
    for (const [length, message] of cases) {
      const { framer } = recording(lengthPrefixed(options))
      const header = frame(options, '', { length })
      // Split inside the length field: the halves must be joined across chunks.
      t.equal(framer.request(header.subarray(0, 3)), undefined)
      const error = framer.request(header.subarray(3))
      t.equal(error?.code, 'ERR_BATON_FRAME_TOO_LARGE', `${order} ${length}`)
      t.match(error?.message, message, `${order} ${length}`)
    }
    // A big length that fits: counted, never buffered.
    const { framer } = recording(lengthPrefixed({ ...options, maxFrameBytes: 2 ** 40 }))
    const header = frame(options, '', { length: 2n ** 32n + 1n })
    t.equal(framer.request(header), undefined)
    t.equal(framer.request(Buffer.alloc(4096)), undefined)
    t.equal(framer.pending(), 1, `${order}: a 4 GiB request is still partial`)
  }
  const options: LengthPrefixedOptions = { lengthBytes: 8, maxFrameBytes: Number.MAX_SAFE_INTEGER }
  const { framer } = recording(lengthPrefixed(options))
  const error = framer.request(frame(options, '', { length: 2n ** 53n - 1n }))
  t.equal(error?.code, 'ERR_BATON_FRAME_TOO_LARGE', 'header + 2^53-1 is over even the largest maxFrameBytes')
})

t.test('restartResponse: the parser starts over at the start of a frame', async (t) => {
  const options: LengthPrefixedOptions = { lengthBytes: 4, lengthOffset: 1, maxFrameBytes: MAX }
  const req1 = frame(options, 'get 1')
  const req2 = frame(options, 'get 2')
  const res1 = frame(options, 'value one')
  const res2 = frame(options, 'value two')
  for (const cutAt of [1, 3, 5, 7, res2.length - 1]) {
    const { framer, answered } = recording(lengthPrefixed(options))
    framer.request(Buffer.concat([req1, req2]))
    framer.response(res1)
    framer.response(res2.subarray(0, cutAt)) // the server dies part-way through response 2
    t.ok(framer.responseOpen)
    framer.restartResponse()
    t.equal(framer.responseOpen, false)
    t.equal(framer.openStart, -1)
    t.equal(framer.pending(), 1, 'request 2 is still unanswered')
    // The replacement sends response 2 whole; were the old header bytes kept, it would misparse.
    t.equal(framer.response(res2), undefined, `cut at ${cutAt}`)
    t.same(answered, [req1.length, req1.length + req2.length], `cut at ${cutAt}`)
    t.ok(framer.atBoundary())
  }
})

t.test('delimited and pendingSafe', async (t) => {
  const { framer } = recording(lengthPrefixed({ lengthBytes: 2, maxFrameBytes: MAX }))
  t.equal(framer.delimited, true)
  framer.request(Buffer.from([0, 1, 0x42]))
  t.equal(framer.pendingSafe(), true, 'no idempotency knowledge: every request is treated as safe')
})

t.test('options are validated once, when the factory is made', async (t) => {
  const bad: [unknown, RegExp][] = [
    [{ lengthBytes: 3, maxFrameBytes: MAX }, /lengthBytes: expected 1, 2, 4 or 8, got 3/],
    [
      { lengthBytes: 2, lengthOffset: 17, maxFrameBytes: MAX },
      /lengthOffset: expected an integer from 0 to 16/,
    ],
    [{ lengthBytes: 2, lengthOffset: 1.5, maxFrameBytes: MAX }, /lengthOffset/],
    [{ lengthBytes: 4, lengthOffset: 2, maxFrameBytes: 5 }, /maxFrameBytes: expected an integer of at least/],
    [{ lengthBytes: 4, maxFrameBytes: 2 ** 53 }, /maxFrameBytes/],
    [{ lengthBytes: 4, littleEndian: 'yes', maxFrameBytes: MAX }, /littleEndian: expected a boolean/],
  ]
  for (const [options, message] of bad) {
    t.throws(() => lengthPrefixed(options as LengthPrefixedOptions), ConfigError, JSON.stringify(options))
    t.throws(() => lengthPrefixed(options as LengthPrefixedOptions), { code: 'ERR_BATON_CONFIG', message })
  }
  t.doesNotThrow(() => lengthPrefixed({ lengthBytes: 4, lengthOffset: 16, maxFrameBytes: 20 }))
})
