/**
 * `length-prefixed` only, both hand-off kinds: a response cut part-way is resumed from another
 * backend after checking the part the client already has (verified resume), and pipelined requests
 * are answered exactly once and in order across a failover.
 */
import t from 'tap'
import type { SessionCloseEvent } from '../../lib/balancer.js'
import { oneListener, scope } from '../helpers/balancer.js'
import {
  body,
  expectedResponse,
  frame,
  frameServer,
  HANDOFFS,
  listenerOptions,
  okAnswer,
  poolsFilled,
  recordingClient,
  sameBytes,
} from '../helpers/failover-servers.js'
import { once, within } from '../helpers/wait.js'

/** A 12 KiB answer, so a cut can fall well inside it. */
const bigAnswer = (req: Buffer): Buffer => Buffer.concat([okAnswer(req), Buffer.alloc(12 * 1024, 0x61)])
/** Same length as `bigAnswer`, different bytes from the very first body byte. */
const otherAnswer = (req: Buffer): Buffer => {
  const b = bigAnswer(req)
  b.write('no:', 0)
  return b
}

for (const handoff of HANDOFFS) {
  const opts = listenerOptions('length-prefixed', handoff)
  const handoffCounter = handoff === 'pooled' ? 'handoffsPooled' : 'handoffsNew'

  t.test(`length-prefixed, ${handoff} hand-off`, async (t) => {
    // Cut inside the 4-byte length field, right after it, and deep in the body.
    for (const cut of [2, 4, 5000]) {
      t.test(
        `reset mid-response after ${cut} bytes, identical replacement: full response once`,
        async (t) => {
          const s = scope(t)
          const a = await s.server(frameServer('a', { answer: bigAnswer, partial: { bytes: cut } }))
          const b = await s.server(frameServer('b', { answer: bigAnswer }))
          const { balancer, port } = await s.balancer(oneListener([a, b], { balance: 'first', ...opts }))
          if (handoff === 'pooled') await poolsFilled(balancer, [0, 1])
          const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')

          const req = body('resume-identical')
          const expected = expectedResponse(req, bigAnswer)
          const partial = once(a, 'partial')
          const client = recordingClient(t, port, frame(req))
          await partial
          // Reset only once the client holds the first `cut` bytes: the cut is really mid-response.
          const head = await client.receivedAtLeast(cut, `the first ${cut} bytes`)
          t.equal(head.length, cut, `the client has exactly ${cut} bytes before the reset`)
          a.resetAll()

          await client.receivedAtLeast(expected.length, 'the full response')
          client.socket.end()
          const [close] = await closed
          await within(client.closed, 'client closed')
          t.notOk(sameBytes(client.data, expected), 'the full response exactly once, byte for byte')
          t.equal(client.error, undefined, 'no client error')
          t.equal(close.outcome, 'done')
          t.same(close.backends, ['a', 'b'])
          const c = balancer.counters()
          t.equal(c.verifiedResumes, 1, 'verifiedResumes')
          t.equal(c.resumeMismatches, 0, 'resumeMismatches')
          t.equal(c.failovers, 1, 'failovers')
          t.equal(c[handoffCounter], 1, handoffCounter)
          t.equal(c.unrecoverable + c.clientErrors + c.serverErrors, 0)
        }
      )
    }

    for (const cut of [2, 5000]) {
      t.test(
        `reset mid-response after ${cut} bytes, different replacement: client closed, no wrong byte`,
        async (t) => {
          const s = scope(t)
          const a = await s.server(frameServer('a', { answer: bigAnswer, partial: { bytes: cut } }))
          const b = await s.server(frameServer('b', { answer: cut <= 4 ? lengthDiffers : otherAnswer }))
          const { balancer, port } = await s.balancer(oneListener([a, b], { balance: 'first', ...opts }))
          if (handoff === 'pooled') await poolsFilled(balancer, [0, 1])
          const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')

          const req = body('resume-different')
          const original = expectedResponse(req, bigAnswer)
          const partial = once(a, 'partial')
          const client = recordingClient(t, port, frame(req))
          await partial
          await client.receivedAtLeast(cut, `the first ${cut} bytes`)
          const answeredByB = once(b, 'answered')
          a.resetAll()

          const [close] = await closed
          await within(client.closed, 'client closed')
          await answeredByB // b did send its (different) response
          const got = client.data
          t.ok(got.length < original.length, `the client did not get a full response (${got.length} bytes)`)
          t.notOk(sameBytes(got, original.subarray(0, got.length)), 'what it got is a prefix of the original')
          t.equal(got.length, cut, 'nothing of the replacement was passed on')
          t.ok(client.error !== undefined || client.ended, `the client was closed (${client.error ?? 'FIN'})`)
          t.equal(close.outcome, 'unrecoverable')
          const c = balancer.counters()
          t.equal(c.unrecoverable, 1, 'unrecoverable')
          t.equal(balancer.frontends[0]!.unrecoverableBy['resume-mismatch'], 1, 'under reason resume-mismatch')
          t.equal(c.resumeMismatches, 1, 'resumeMismatches')
          t.equal(c.verifiedResumes, 0, 'verifiedResumes')
        }
      )
    }

    t.test(
      'pipelined: cut inside the 2nd response (same chunk as the 1st): resumed once, in order',
      async (t) => {
        const s = scope(t)
        const a = await s.server(
          frameServer('a', { answer: bigAnswer, partial: { request: 1, bytes: 3000 } })
        )
        const b = await s.server(frameServer('b', { answer: bigAnswer }))
        const { balancer, port } = await s.balancer(oneListener([a, b], { balance: 'first', ...opts }))
        if (handoff === 'pooled') await poolsFilled(balancer, [0, 1])
        const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')

        const reqs = [body('p-0'), body('p-1'), body('p-2')]
        const expected = reqs.map((r) => expectedResponse(r, bigAnswer))
        const partial = once(a, 'partial')
        const client = recordingClient(t, port, Buffer.concat(reqs.map((r) => frame(r))))
        await partial
        await client.receivedAtLeast(expected[0]!.length + 3000, 'response 1 and 3000 bytes of response 2')
        a.resetAll()
        const all = Buffer.concat(expected)
        await client.receivedAtLeast(all.length, 'all 3 responses')
        client.socket.end()
        const [close] = await closed
        await within(client.closed, 'client closed')
        t.notOk(sameBytes(client.data, all), 'all 3 responses, once each, in order')
        t.equal(close.outcome, 'done')
        const c = balancer.counters()
        t.equal(c.verifiedResumes, 1, 'verifiedResumes')
        t.equal(c.replayedRequests, 2, 'requests 2 and 3 were replayed')
        t.equal(b.requests, 2, 'b got requests 2 and 3 only')
        t.equal(c.unrecoverable + c.resumeMismatches + c.clientErrors + c.serverErrors, 0)
      }
    )

    t.test('the replacement fails too before the cut point: a third backend completes it', async (t) => {
      const s = scope(t)
      const a = await s.server(frameServer('a', { answer: bigAnswer, partial: { bytes: 5000 } }))
      const b = await s.server(frameServer('b', { answer: bigAnswer, partial: { bytes: 2000 } }))
      const c3 = await s.server(frameServer('c', { answer: bigAnswer }))
      const { balancer, port } = await s.balancer(oneListener([a, b, c3], { balance: 'first', ...opts }))
      if (handoff === 'pooled') await poolsFilled(balancer, [0, 1, 2])
      const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')

      const req = body('double-before-cut')
      const expected = expectedResponse(req, bigAnswer)
      const partialA = once(a, 'partial')
      const partialB = once(b, 'partial')
      const client = recordingClient(t, port, frame(req))
      await partialA
      await client.receivedAtLeast(5000, 'the first 5000 bytes')
      a.resetAll()
      await partialB
      b.resetAll()
      await client.receivedAtLeast(expected.length, 'the full response')
      client.socket.end()
      const [close] = await closed
      await within(client.closed, 'client closed')
      t.notOk(sameBytes(client.data, expected), 'the full response exactly once')
      t.equal(close.outcome, 'done')
      t.same(close.backends, ['a', 'b', 'c'])
      const c = balancer.counters()
      t.equal(c.failovers, 2, 'failovers')
      t.equal(c.verifiedResumes, 1, 'verifiedResumes')
      t.equal(c.unrecoverable + c.resumeMismatches + c.clientErrors + c.serverErrors, 0)
    })

    t.test(
      'the replacement passes the check, sends more, and fails too: a third backend completes it',
      {},
      async (t) => {
        const s = scope(t)
        const a = await s.server(frameServer('a', { answer: bigAnswer, partial: { bytes: 3000 } }))
        const b = await s.server(frameServer('b', { answer: bigAnswer, partial: { bytes: 6000 } }))
        const c3 = await s.server(frameServer('c', { answer: bigAnswer }))
        const { balancer, port } = await s.balancer(oneListener([a, b, c3], { balance: 'first', ...opts }))
        if (handoff === 'pooled') await poolsFilled(balancer, [0, 1, 2])
        const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')

        const req = body('double-after-cut')
        const expected = expectedResponse(req, bigAnswer)
        const partialA = once(a, 'partial')
        const partialB = once(b, 'partial')
        const client = recordingClient(t, port, frame(req))
        await partialA
        await client.receivedAtLeast(3000, 'the first 3000 bytes (from a)')
        a.resetAll()
        await partialB
        await client.receivedAtLeast(6000, '3000 more bytes (from b, after the check)')
        b.resetAll()
        // Resolves with the full response, or earlier if Baton closes the client.
        await client.receivedAtLeast(expected.length, 'the full response (or the client closed)')
        client.socket.end()
        const [close] = await closed
        await within(client.closed, 'client closed')
        t.notOk(sameBytes(client.data, expected), 'the full response exactly once')
        t.equal(client.error, undefined, 'no client error')
        t.equal(close.outcome, 'done', `outcome (${close.error ?? 'no error'})`)
        t.same(close.backends, ['a', 'b', 'c'])
        const c = balancer.counters()
        t.equal(c.failovers, 2, 'failovers')
        t.equal(c.verifiedResumes, 2, 'verifiedResumes: b after a, c after b')
        t.equal(c.resumeMismatches, 0, 'resumeMismatches')
        t.equal(c.unrecoverable + c.clientErrors + c.serverErrors, 0, 'nothing unrecoverable')
      }
    )

    t.test(
      'pipelined: 20 requests at once, a answers 5 then is reset: 20 answers once, in order',
      async (t) => {
        const s = scope(t)
        const a = await s.server(frameServer('a', { answerLimit: 5 }))
        const b = await s.server(frameServer('b'))
        const { balancer, port } = await s.balancer(oneListener([a, b], { balance: 'first', ...opts }))
        if (handoff === 'pooled') await poolsFilled(balancer, [0, 1])
        const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')

        const reqs = Array.from({ length: 20 }, (_, i) => body(`pipelined-${i}`, 32 + i * 37))
        const expected = reqs.map((r) => expectedResponse(r))
        const firstFive = Buffer.concat(expected.slice(0, 5))
        const silent = once(a, 'silent')
        const client = recordingClient(t, port, Buffer.concat(reqs.map((r) => frame(r))))
        await silent
        await client.receivedAtLeast(firstFive.length, 'the first 5 answers')
        t.equal(client.received, firstFive.length, 'exactly 5 answers before the reset')
        a.resetAll()

        const all = Buffer.concat(expected)
        await client.receivedAtLeast(all.length, 'all 20 answers')
        client.socket.end()
        const [close] = await closed
        await within(client.closed, 'client closed')
        t.notOk(sameBytes(client.data, all), 'all 20 answers, exactly once, in order')
        t.equal(client.error, undefined)
        t.equal(close.outcome, 'done')
        const c = balancer.counters()
        t.equal(c.failovers, 1, 'failovers')
        t.equal(c.replayedRequests, 15, 'the 15 unanswered requests were replayed')
        t.equal(c[handoffCounter], 1, handoffCounter)
        t.equal(b.requests, 15, 'b got only the unanswered 15')
        t.equal(c.unrecoverable + c.clientErrors + c.serverErrors, 0)
      }
    )

    t.test('pipelined: a answers 5 and resets in the same tick: 20 answers once, in order', async (t) => {
      const s = scope(t)
      const a = await s.server(frameServer('a', { resetAfter: 5 }))
      const b = await s.server(frameServer('b'))
      const { balancer, port } = await s.balancer(oneListener([a, b], { balance: 'first', ...opts }))
      if (handoff === 'pooled') await poolsFilled(balancer, [0, 1])
      const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')

      const reqs = Array.from({ length: 20 }, (_, i) => body(`pipelined-rst-${i}`, 32 + i * 37))
      const all = Buffer.concat(reqs.map((r) => expectedResponse(r)))
      const client = recordingClient(t, port, Buffer.concat(reqs.map((r) => frame(r))))
      await client.receivedAtLeast(all.length, 'all 20 answers')
      client.socket.end()
      const [close] = await closed
      await within(client.closed, 'client closed')
      t.notOk(sameBytes(client.data, all), 'all 20 answers, exactly once, in order')
      t.equal(client.error, undefined)
      t.equal(close.outcome, 'done')
      const c = balancer.counters()
      t.equal(c.failovers, 1, 'failovers')
      t.equal(
        c.replayedRequests + 5,
        20,
        `a's 5 answers were kept or replayed (${c.replayedRequests} replayed)`
      )
      t.equal(c.unrecoverable + c.clientErrors + c.serverErrors, 0)
    })
  })
}

/** For a cut inside the length field: a replacement whose length field differs. */
function lengthDiffers(req: Buffer): Buffer {
  return Buffer.concat([bigAnswer(req), Buffer.alloc(70_000, 0x62)])
}
