/**
 * The byte-level resume (lib/replay/byte-resume.ts) without sockets, through the replayer's resume
 * paths (helpers/resume-driver.ts), over each framer that uses it: length-prefixed, resp and
 * memcached. A response is cut at every byte, then the replacement is identical (whole, or a byte
 * at a time), differs before or after what the client has, ends early, is malformed, or fails again
 * part-way before a third server answers. The client must get each response exactly once, or the
 * session must end with a mismatch before a byte of a differing replacement reaches it.
 */
import t from 'tap'
import { lengthPrefixed } from '../../lib/framing/length-prefixed.js'
import { resp } from '../../lib/framing/resp.js'
import type { FramerFactory } from '../../lib/framing/types.js'
import { memcached } from '../../lib/protocols/memcached/framer.js'
import { byteResume } from '../../lib/replay/byte-resume.js'
import { RESUME_DIFFERS } from '../../lib/replay/resume.js'
import { frame } from '../framing/helpers/frames.js'
import { pieces, ResumeDriver } from './helpers/resume-driver.js'

interface Subject {
  name: string
  framer: FramerFactory
  /** Two requests and their responses. */
  requests: [Buffer, Buffer]
  responses: [Buffer, Buffer]
  /** A whole, well-framed answer to the first request that ends early (shorter than any cut past `short.length`). */
  short: Buffer
  /** Server bytes the framer refuses. */
  malformed: Buffer
}

const LP = { lengthBytes: 2, maxFrameBytes: 256 } as const
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789'
const b = (s: string): Buffer => Buffer.from(s, 'latin1')

const SUBJECTS: Subject[] = [
  {
    name: 'length-prefixed',
    framer: lengthPrefixed(LP),
    requests: [frame(LP, 'get a'), frame(LP, 'get b')],
    responses: [frame(LP, ALPHABET), frame(LP, ALPHABET.toUpperCase().slice(0, 20))],
    short: frame(LP, ''),
    malformed: frame(LP, '', { length: 4000 }),
  },
  {
    name: 'resp',
    framer: resp(),
    requests: [b('*2\r\n$3\r\nGET\r\n$1\r\na\r\n'), b('*2\r\n$3\r\nGET\r\n$1\r\nb\r\n')],
    responses: [b(`$${ALPHABET.length}\r\n${ALPHABET}\r\n`), b('*2\r\n$3\r\none\r\n:42\r\n')],
    short: b('$-1\r\n'),
    malformed: b('$abc\r\n'),
  },
  {
    name: 'memcached',
    framer: memcached(),
    requests: [b('get a\r\n'), b('get b c\r\n')],
    responses: [
      b(`VALUE a 0 ${ALPHABET.length}\r\n${ALPHABET}\r\nEND\r\n`),
      b('VALUE b 1 3\r\nxyz\r\nVALUE c 2 0\r\n\r\nEND\r\n'),
    ],
    short: b('END\r\n'),
    malformed: b('VALUE a 0 zz\r\n'),
  },
]

/** A driver with the first request sent and `have` bytes of its response forwarded. */
function cutAt(s: Subject, have: Buffer): ResumeDriver {
  const d = new ResumeDriver(s.framer, byteResume)
  d.request(s.requests[0])
  if (have.length > 0) d.server(have)
  return d
}

/** `buf` with the byte at `at` changed. */
function flipped(buf: Buffer, at: number): Buffer {
  const out = Buffer.from(buf)
  out[at] ^= 0x01
  return out
}

for (const s of SUBJECTS) {
  const R = s.responses[0]

  t.test(
    `${s.name}: the fast path forwards each chunk itself and keeps nothing for an idle session`,
    async (t) => {
      const d = new ResumeDriver(s.framer, byteResume)
      t.notOk(d.resume.resuming)
      t.notOk(d.resume.cut(d.framer), 'no response open: nothing partial')
      d.request(s.requests[0])
      const chunks = pieces(R, 3)
      for (const c of chunks) d.server(c)
      t.equal(d.client.length, chunks.length)
      t.ok(
        d.client.every((c, k) => c === chunks[k]),
        'forwarded() returned the very chunk it was given, every time'
      )
      t.notOk(d.resume.cut(d.framer), 'the response completed: nothing partial')
    }
  )

  t.test(`${s.name}: cut at every byte, an identical replacement completes the response once`, async (t) => {
    const failures: string[] = []
    for (let k = 1; k < R.length; k++) {
      for (const size of [R.length, 1, 5]) {
        const d = cutAt(s, R.subarray(0, k))
        const resent = d.fail()
        if (resent === undefined || !resent.equals(s.requests[0])) failures.push(`k=${k}: re-sent ${resent}`)
        if (!d.resume.resuming) failures.push(`k=${k}: not resuming after the failover`)
        for (const c of pieces(R, size)) d.server(c)
        const problem =
          d.ended !== undefined
            ? `ended ${JSON.stringify(d.ended)}`
            : !d.received.equals(R)
              ? `the client got ${JSON.stringify(d.received.toString('latin1'))}`
              : d.verified !== 1
                ? `verified ${d.verified} times`
                : d.framer.pending() !== 0 || d.framer.responseOpen || d.resume.resuming
                  ? 'not at a boundary after the response'
                  : undefined
        if (problem !== undefined) failures.push(`cut at ${k}, replacement in pieces of ${size}: ${problem}`)
      }
    }
    t.same(failures, [], `${R.length - 1} cuts × 3 ways`)
  })

  t.test(
    `${s.name}: a replacement that differs in what the client has is refused before a byte of it goes on`,
    async (t) => {
      const failures: string[] = []
      for (let k = 1; k < R.length; k++) {
        for (let at = 0; at < k; at++) {
          const d = cutAt(s, R.subarray(0, k))
          d.fail()
          const other = flipped(R, at)
          for (const c of pieces(other, 4)) if (!d.server(c)) break
          // A changed length or header may also end in the framer refusing the bytes: either way
          // the session ends and the client has only what it had.
          if (d.ended === undefined) failures.push(`k=${k}, flip at ${at}: taken`)
          else if (d.ended.kind === 'mismatch' && d.ended.why !== RESUME_DIFFERS)
            failures.push(`k=${k}, flip at ${at}: ${d.ended.why}`)
          if (!d.received.equals(R.subarray(0, k)))
            failures.push(`k=${k}, flip at ${at}: the client got more`)
          if (d.verified !== 0) failures.push(`k=${k}, flip at ${at}: verified`)
        }
      }
      t.same(failures, [])
    }
  )

  t.test(
    `${s.name}: only the bytes the client has are compared; the rest is the replacement's`,
    async (t) => {
      // A value byte past the cut: both servers' responses are well framed, the client gets a whole
      // response made of the first server's head and the second's rest.
      const at = R.indexOf(b(ALPHABET)) + ALPHABET.length - 2
      const other = flipped(R, at)
      for (let k = 1; k <= at; k++) {
        const d = cutAt(s, R.subarray(0, k))
        d.fail()
        d.server(other)
        t.equal(d.ended, undefined)
        t.ok(d.received.equals(other), `k=${k}: the client has the replacement's tail`)
        t.equal(d.verified, 1)
      }
    }
  )

  t.test(`${s.name}: a replacement that ends before what the client has is a mismatch`, async (t) => {
    for (let k = s.short.length + 1; k < R.length; k++) {
      const d = cutAt(s, R.subarray(0, k))
      d.fail()
      t.notOk(d.server(s.short), `k=${k}: refused`)
      t.same(d.ended, { kind: 'mismatch', why: RESUME_DIFFERS })
      t.ok(d.received.equals(R.subarray(0, k)))
    }
  })

  t.test(`${s.name}: a malformed replacement ends in the framer's error`, async (t) => {
    const d = cutAt(s, R.subarray(0, R.length - 1))
    d.fail()
    t.notOk(d.server(s.malformed))
    t.equal(d.ended?.kind, 'framing')
    t.ok(d.received.equals(R.subarray(0, R.length - 1)))
  })

  t.test(
    `${s.name}: the replacement fails again part-way; a third server completes the response once`,
    async (t) => {
      const failures: string[] = []
      for (let k = 1; k < R.length; k++) {
        for (let j = 1; j < R.length; j++) {
          const d = cutAt(s, R.subarray(0, k))
          d.fail()
          d.server(R.subarray(0, j))
          const again = d.fail()
          if (again === undefined || !again.equals(s.requests[0]))
            failures.push(`k=${k} j=${j}: re-sent ${again}`)
          for (const c of pieces(R, 7)) d.server(c)
          const want = j >= k ? 2 : 1
          if (d.ended !== undefined) failures.push(`k=${k} j=${j}: ended ${JSON.stringify(d.ended)}`)
          else if (!d.received.equals(R)) failures.push(`k=${k} j=${j}: got ${d.received.toString('latin1')}`)
          else if (d.verified !== want) failures.push(`k=${k} j=${j}: verified ${d.verified}, not ${want}`)
        }
      }
      t.same(failures, [], `${(R.length - 1) ** 2} double failures`)
    }
  )

  t.test(
    `${s.name}: pipelined, cut anywhere in either response: answered requests are not re-sent`,
    async (t) => {
      const stream = Buffer.concat(s.responses)
      const first = s.responses[0].length
      const failures: string[] = []
      for (let c = 1; c < stream.length; c++) {
        const d = new ResumeDriver(s.framer, byteResume)
        d.request(s.requests[0])
        d.request(s.requests[1])
        for (const p of pieces(stream.subarray(0, c), 5)) d.server(p)
        const resent = d.fail()
        const replacement = c < first ? stream : s.responses[1]
        const want = c < first ? Buffer.concat(s.requests) : s.requests[1]
        if (resent === undefined || !resent.equals(want)) failures.push(`c=${c}: re-sent ${resent}`)
        for (const p of pieces(replacement, 6)) d.server(p)
        if (d.ended !== undefined) failures.push(`c=${c}: ended ${JSON.stringify(d.ended)}`)
        else if (!d.received.equals(stream)) failures.push(`c=${c}: got ${d.received.toString('latin1')}`)
        else if (d.verified !== (c === first ? 0 : 1)) failures.push(`c=${c}: verified ${d.verified}`)
        else if (d.framer.pending() !== 0) failures.push(`c=${c}: ${d.framer.pending()} pending`)
      }
      t.same(failures, [], `${stream.length - 1} cuts`)
    }
  )
}

t.test('not recording (past the replay bound): forwarded bytes are passed on and not kept', async (t) => {
  const s = SUBJECTS[0]!
  const d = new ResumeDriver(s.framer, byteResume)
  d.recording = false
  d.request(s.requests[0])
  d.server(s.responses[0].subarray(0, 10))
  t.ok(d.received.equals(s.responses[0].subarray(0, 10)))
  // The policy refuses a replay when not recording; were it asked, the resume has nothing to
  // verify against: the replacement's first bytes would be taken as the client's (none kept).
  d.recording = true
  d.fail()
  t.notOk(d.resume.resuming, 'nothing was kept to compare with')
})
