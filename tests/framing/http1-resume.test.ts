/**
 * Unit tests of the http1 resumer's head reading (lib/framing/http1-resume.ts); the resume as a
 * whole is fuzzed in tests/fuzz/http1-resume.test.ts and run end to end in tests/failover.
 */
import t from 'tap'
import {
  ClientView,
  Http1Resumer,
  type ResumePoint,
  type ResumeStep,
} from '../../lib/framing/http1-resume.js'

const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1')

/** The resume point of a client that got `head` and the first `have` bytes of `body`. */
function pointAfter(head: string, body: string, have: number): ResumePoint {
  const view = new ClientView()
  view.observe(latin1(head + body.slice(0, have)), false)
  const point = view.resumePoint()
  if (typeof point === 'string') throw new Error(point)
  return point
}

/** Feed `pieces`; what the client gets from the resumer, then from the ordinary path. */
function resume(point: ResumePoint, pieces: Buffer[]): { sent: string; verified: number; done: boolean } {
  const r = new Http1Resumer(point, undefined, 64 * 1024)
  let sent = ''
  let verified = 0
  let done = false
  for (const piece of pieces) {
    if (done) {
      sent += piece.toString('latin1')
      continue
    }
    const step: ResumeStep | string = r.feed(piece)
    if (typeof step === 'string') throw new Error(step)
    sent += Buffer.concat(step.out).toString('latin1')
    if (step.verified) verified++
    if (step.done) {
      done = true
      sent += piece.subarray(step.used).toString('latin1')
    }
  }
  return { sent, verified, done }
}

const bytes = (data: Buffer): Buffer[] => Array.from(data, (_, k) => data.subarray(k, k + 1))

t.test('a replacement head cut at any point, or a byte a read, is found where it ends', async (t) => {
  const head = 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\nETag: "v"\r\n\r\n'
  const body = '0123456789'
  const point = pointAfter(head, body, 4)
  const replacement = latin1(
    `HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nETag: "v"\r\nDate: x\r\nContent-Length: 10\r\n\r\n${body}`
  )
  const whole = resume(point, [replacement])
  t.same(whole, { sent: '456789', verified: 1, done: true })
  for (let p = 1; p < replacement.length; p++) {
    const got = resume(point, [replacement.subarray(0, p), replacement.subarray(p)])
    if (JSON.stringify(got) !== JSON.stringify(whole)) t.fail(`cut at ${p}: ${JSON.stringify(got)}`)
  }
  t.same(resume(point, bytes(replacement)), whole, 'a byte a read')
})

// Found while fuzzing the resume: a head that spans reads was joined again, whole, at every read,
// so a replacement trickling a 64 KiB head a byte a read cost 64 K copies of up to 64 KiB
// (95 s of CPU); it is now joined once, when its end is in.
t.test('a 64 KiB replacement head a byte a read takes linear time', async (t) => {
  const fields = 'X-Filler: abcdefgh\r\n'.repeat(3200)
  const head = `HTTP/1.1 200 OK\r\nContent-Length: 10\r\n${fields}\r\n`
  const point = pointAfter(head, '0123456789', 3)
  const replacement = latin1(`${head}0123456789`)
  t.ok(replacement.length > 64_000 && replacement.length < 64 * 1024)
  const started = performance.now()
  const got = resume(point, bytes(replacement))
  const ms = performance.now() - started
  t.same(got, { sent: '3456789', verified: 1, done: true })
  t.ok(ms < 5000, `${Math.round(ms)} ms (quadratic: about 95 s)`)
})
