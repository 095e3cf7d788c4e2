/**
 * http1's resume (lib/protocols/http1/resume.ts) without sockets, through the replayer's resume
 * paths (tests/replay/helpers/resume-driver.ts): a Content-Length, a chunked and a rangeable
 * response cut at every byte (in the head too, which is held back until whole), then a replacement
 * that is identical (whole, a byte at a time), differs, answers the `Range` with a 206, or fails
 * again part-way before a third server answers. The client must end with one well-framed response
 * carrying the original body (the http1 framer is the judge), or be closed before a byte of a
 * differing replacement reaches it. The classes underneath are fuzzed in
 * tests/fuzz/http1-resume.test.ts.
 */
import t from 'tap'
import { http1 } from '../../lib/framing/http1.js'
import { http1Resume } from '../../lib/protocols/http1/resume.js'
import { RESUME_DIFFERS } from '../../lib/replay/resume.js'
import { recording } from '../framing/helpers/frames.js'
import { chunked, request, sized } from '../framing/helpers/http1.js'
import { pieces, ResumeDriver } from '../replay/helpers/resume-driver.js'

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789'
const GET = request('GET', '/f', [['Host', 'a']])
const GET2 = request('GET', '/g', [['Host', 'a']])
const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1')
const headLength = (r: Buffer): number => r.indexOf('\r\n\r\n') + 4

const PLAIN = sized(200, ALPHABET, [['ETag', '"v1"']])
const CHUNKS = ['abcdefghij', 'klmnopqrstuvwxyz', '0123456789']
const CHUNKED = latin1(
  `HTTP/1.1 200 R\r\nTransfer-Encoding: chunked\r\nETag: "v1"\r\n\r\n${chunked(CHUNKS, { trailers: [['T', '1']] })}`
)
const RANGEABLE = sized(200, ALPHABET, [
  ['ETag', '"v1"'],
  ['Accept-Ranges', 'bytes'],
])

/** The bodies of exactly `n` whole responses to GETs in `bytes`, or why they are not that. */
function bodiesOf(bytes: Buffer, n: number): Buffer[] | string {
  const { framer, answered } = recording(http1())
  for (let k = 0; k < n; k++) framer.request(GET)
  const err = framer.response(bytes)
  if (err !== undefined) return `malformed: ${err.message}`
  if (answered.length !== n || framer.responseOpen) return `${answered.length} whole responses, not ${n}`
  const bodies: Buffer[] = []
  let i = 0
  for (let k = 0; k < n; k++) {
    const end = bytes.indexOf('\r\n\r\n', i) + 4
    const head = bytes.toString('latin1', i, end).toLowerCase()
    i = end
    const length = /content-length: (\d+)/.exec(head)
    if (length !== null) {
      bodies.push(bytes.subarray(i, (i += Number(length[1]))))
      continue
    }
    const out: Buffer[] = []
    for (;;) {
      const lf = bytes.indexOf(10, i)
      const size = parseInt(bytes.toString('latin1', i, lf), 16)
      i = lf + 1
      if (size === 0) break
      out.push(bytes.subarray(i, i + size))
      i += size + 2
    }
    i = bytes.indexOf('\r\n\r\n', i - 2) + 4 // the trailer section
    bodies.push(Buffer.concat(out))
  }
  return bodies
}

/**
 * Client offsets of `CHUNKED` where a client stands inside a chunk-size line (past its first byte)
 * or in the trailer section: no resume is possible there (the view cannot tell what comes next).
 */
function unresumable(r: Buffer): Set<number> {
  const out = new Set<number>()
  let i = headLength(r)
  for (;;) {
    const lf = r.indexOf(10, i)
    const size = parseInt(r.toString('latin1', i, lf), 16)
    for (let k = i + 1; k <= lf; k++) out.add(k)
    if (size === 0) {
      for (let k = lf + 1; k < r.length; k++) out.add(k)
      return out
    }
    i = lf + 1 + size + 2
  }
}

function cutAt(have: Buffer, first = GET): ResumeDriver {
  const d = new ResumeDriver(http1(), http1Resume)
  d.request(first)
  if (have.length > 0) d.server(have)
  return d
}

const BODY = latin1(ALPHABET)

t.test(
  'the fast path forwards each chunk itself; a head split across reads is held until whole',
  async (t) => {
    const d = new ResumeDriver(http1(), http1Resume)
    d.request(GET)
    const head = headLength(PLAIN)
    const chunks = [PLAIN.subarray(0, head + 2), ...pieces(PLAIN.subarray(head + 2), 5)]
    for (const c of chunks) d.server(c)
    t.ok(
      d.client.length === chunks.length && d.client.every((c, k) => c === chunks[k]),
      'forwarded() returned the very chunk it was given, every time'
    )
    const e = new ResumeDriver(http1(), http1Resume)
    e.request(GET)
    e.server(PLAIN.subarray(0, 10))
    e.server(PLAIN.subarray(10, head - 1))
    t.equal(e.client.length, 0, 'nothing of an incomplete head reaches the client')
    t.notOk(e.resume.cut(e.framer), 'a failure now finds nothing partial: the held head is dropped')
    const f = new ResumeDriver(http1(), http1Resume)
    f.request(GET)
    f.server(PLAIN.subarray(0, 10))
    f.server(PLAIN.subarray(10, head + 3))
    t.equal(f.client.length, 1, 'the head goes on once whole, joined with what came with it')
    t.ok(f.received.equals(PLAIN.subarray(0, head + 3)))
  }
)

for (const [name, R] of [
  ['Content-Length', PLAIN],
  ['chunked', CHUNKED],
] as const) {
  const head = headLength(R)
  const refused = name === 'chunked' ? unresumable(R) : new Set<number>()

  t.test(`${name}: cut at every byte, an identical replacement completes the response once`, async (t) => {
    const failures: string[] = []
    let resumed = 0
    for (let k = 1; k < R.length; k++) {
      for (const size of [R.length, 1, 7]) {
        const d = cutAt(R.subarray(0, k))
        const resent = d.fail()
        if (refused.has(k)) {
          if (d.ended?.kind !== 'unrecoverable')
            failures.push(`k=${k}: resumed inside a size line or trailer`)
          continue
        }
        if (resent === undefined || !resent.equals(GET)) failures.push(`k=${k}: re-sent ${resent}`)
        if (d.resume.resuming !== k >= head) failures.push(`k=${k}: resuming ${d.resume.resuming}`)
        for (const c of pieces(R, size)) d.server(c)
        const bodies = bodiesOf(d.received, 1)
        const problem =
          d.ended !== undefined
            ? `ended ${JSON.stringify(d.ended)}`
            : typeof bodies === 'string'
              ? bodies
              : !bodies[0]!.equals(BODY)
                ? `body ${bodies[0]!.toString('latin1')}`
                : name === 'Content-Length' && !d.received.equals(R)
                  ? 'not the original bytes'
                  : d.verified !== (k >= head ? 1 : 0)
                    ? `verified ${d.verified}`
                    : d.resume.resuming || d.framer.pending() !== 0
                      ? 'not at a boundary after the response'
                      : undefined
        if (problem !== undefined) failures.push(`cut at ${k}, replacement in pieces of ${size}: ${problem}`)
        else if (k >= head) resumed++
      }
    }
    t.same(failures, [], `${R.length - 1} cuts × 3 ways`)
    t.ok(resumed > 2 * (R.length - head - refused.size), `${resumed} resumes`)
  })

  t.test(`${name}: a replacement that differs is refused before a byte of it goes on`, async (t) => {
    const failures: string[] = []
    const bodyStart = name === 'chunked' ? R.indexOf('\r\n', head) + 2 : head
    for (let k = bodyStart + 1; k < R.length; k++) {
      if (refused.has(k)) continue
      for (const other of [
        Buffer.concat([R.subarray(0, bodyStart), latin1('A'), R.subarray(bodyStart + 1)]), // first body byte
        latin1(R.toString('latin1').replace('200 R', '203 R')), // status
        latin1(R.toString('latin1').replace('"v1"', '"v2"')), // ETag
      ]) {
        const d = cutAt(R.subarray(0, k))
        d.fail()
        for (const c of pieces(other, 5)) if (!d.server(c)) break
        if (d.ended?.kind !== 'mismatch') failures.push(`k=${k}: ${JSON.stringify(d.ended)}`)
        else if (d.ended.why !== RESUME_DIFFERS) failures.push(`k=${k}: ${d.ended.why}`)
        if (!d.received.equals(R.subarray(0, k))) failures.push(`k=${k}: the client got more`)
      }
    }
    t.same(failures, [])
  })

  t.test(
    `${name}: the replacement fails again part-way; a third server completes the response`,
    async (t) => {
      const failures: string[] = []
      let completed = 0
      for (let k = head; k < R.length; k++) {
        if (refused.has(k)) continue
        for (let j = 1; j < R.length; j++) {
          const d = cutAt(R.subarray(0, k))
          d.fail()
          d.server(R.subarray(0, j))
          const again = d.fail()
          if (d.ended !== undefined) {
            // The second server left the client inside a size line or the trailer (chunked only).
            if (d.ended.kind !== 'unrecoverable' || name !== 'chunked')
              failures.push(`k=${k} j=${j}: ${JSON.stringify(d.ended)}`)
            continue
          }
          if (again === undefined || !again.equals(GET)) failures.push(`k=${k} j=${j}: re-sent ${again}`)
          for (const c of pieces(R, 9)) d.server(c)
          const bodies = bodiesOf(d.received, 1)
          if (d.ended !== undefined) failures.push(`k=${k} j=${j}: ended ${JSON.stringify(d.ended)}`)
          else if (typeof bodies === 'string') failures.push(`k=${k} j=${j}: ${bodies}`)
          else if (!bodies[0]!.equals(BODY))
            failures.push(`k=${k} j=${j}: body ${bodies[0]!.toString('latin1')}`)
          else completed++
        }
      }
      t.same(failures, [])
      t.ok(completed > (R.length - head - refused.size) * (R.length / 2), `${completed} completed`)
    }
  )
}

t.test('rangeable: the re-sent GET asks for the rest; a 206 with it completes the original', async (t) => {
  const head = headLength(RANGEABLE)
  for (let k = head + 1; k < RANGEABLE.length; k++) {
    const from = k - head
    const d = cutAt(RANGEABLE.subarray(0, k))
    const resent = d.fail()
    const lines = `Range: bytes=${from}-\r\nIf-Range: "v1"\r\n`
    t.equal(
      resent?.toString('latin1'),
      GET.toString('latin1').replace(/\r\n\r\n$/, `\r\n${lines}\r\n`),
      `k=${k}: the Range goes before the end of the head`
    )
    const rest = ALPHABET.slice(from)
    const partial = sized(206, rest, [
      ['ETag', '"v1"'],
      ['Content-Range', `bytes ${from}-${ALPHABET.length - 1}/${ALPHABET.length}`],
    ])
    for (const c of pieces(partial, 4)) d.server(c)
    t.equal(d.ended, undefined)
    t.ok(d.received.equals(RANGEABLE), `k=${k}: the client has the original response, byte for byte`)
    t.equal(d.verified, 1)
  }
  // A 206 for another range, or another representation: refused.
  const d = cutAt(RANGEABLE.subarray(0, head + 4))
  d.fail()
  d.server(
    sized(206, ALPHABET.slice(3), [
      ['ETag', '"v1"'],
      ['Content-Range', `bytes 3-35/36`],
    ])
  )
  t.same(d.ended, {
    kind: 'mismatch',
    why: "the replacement's partial response is not the rest of the same representation",
  })
  // A server that ignores the Range sends all of it: verified and trimmed as usual.
  const e = cutAt(RANGEABLE.subarray(0, head + 4))
  e.fail()
  e.server(RANGEABLE)
  t.ok(e.received.equals(RANGEABLE))
  t.equal(e.verified, 1)
})

t.test('pipelined, cut anywhere in either response: answered requests are not re-sent', async (t) => {
  const R1 = PLAIN
  const R2 = sized(200, ALPHABET.toUpperCase().slice(0, 20))
  const stream = Buffer.concat([R1, R2])
  const failures: string[] = []
  for (let c = 1; c < stream.length; c++) {
    const d = new ResumeDriver(http1(), http1Resume)
    d.request(GET)
    d.request(GET2)
    for (const p of pieces(stream.subarray(0, c), 5)) d.server(p)
    const resent = d.fail()
    const firstDone = c >= R1.length
    const want = firstDone ? GET2 : Buffer.concat([GET, GET2])
    if (resent === undefined || !resent.equals(want)) failures.push(`c=${c}: re-sent ${resent}`)
    for (const p of pieces(firstDone ? R2 : stream, 6)) d.server(p)
    if (d.ended !== undefined) failures.push(`c=${c}: ended ${JSON.stringify(d.ended)}`)
    else if (!d.received.equals(stream)) failures.push(`c=${c}: got ${d.received.toString('latin1')}`)
    else if (d.framer.pending() !== 0) failures.push(`c=${c}: ${d.framer.pending()} pending`)
  }
  t.same(failures, [], `${stream.length - 1} cuts`)
})
