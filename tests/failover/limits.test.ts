/**
 * Where failover stops, and what the client sees then: a request past `replay.maxBytes`,
 * `replay: none`, `replay.maxAttempts`, a frame past `framing.maxFrameBytes`; and a server FIN at a
 * clean boundary (hidden by `length-prefixed`, passed on by `opaque`). Both protocols, both hand-off
 * kinds wherever the case applies to them.
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
  poolsFilled,
  PROTOCOLS,
  recordingClient,
  sameBytes,
} from '../helpers/failover-servers.js'
import { refusedPort, resetServer } from '../helpers/servers.js'
import { once, within } from '../helpers/wait.js'
import type { Balancer } from '../../lib/balancer.js'

/** The unrecoverable failures counted so far, by reason (`baton_unrecoverable_total{reason}`). */
function reasonsOf(balancer: Balancer): Record<string, number> {
  return Object.fromEntries(Object.entries(balancer.frontends[0]!.unrecoverableBy).filter(([, n]) => n > 0))
}

for (const protocol of PROTOCOLS) {
  for (const handoff of HANDOFFS) {
    const opts = listenerOptions(protocol, handoff)

    t.test(`${protocol}, ${handoff} hand-off`, async (t) => {
      t.test('a request over replay.maxBytes is not replayed: client closed, unrecoverable', async (t) => {
        const s = scope(t)
        const req = frame(Buffer.alloc(64 * 1024, 0x71))
        const bad = await s.server(resetServer({ afterRead: req.length }, 'bad'))
        const good = await s.server(frameServer('good'))
        const { balancer, port } = await s.balancer(
          oneListener([bad, good], { balance: 'first', replay: { maxBytes: 1024 }, ...opts })
        )
        if (handoff === 'pooled') await poolsFilled(balancer, [0, 1])
        const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
        const reset = once(bad, 'reset')

        const client = await s.connect(port)
        await client.write(req)
        await reset
        const [close] = await closed
        const end = await within(client.closed, 'client closed')
        t.ok(end.error !== undefined || end.ended, `the client was closed (${end.error ?? 'FIN'})`)
        t.equal(close.outcome, 'unrecoverable', `outcome (${close.error ?? ''})`)
        const c = balancer.counters()
        t.equal(c.unrecoverable, 1, 'unrecoverable')
        t.strictSame(reasonsOf(balancer), { 'replay-over-budget': 1 }, 'counted under its reason')
        t.equal(c.failovers, 0, 'no failover')
        t.equal(c.replayedBytes, 0, 'nothing replayed')
        t.equal(good.bytesRead, 0, 'good never saw the request')
      })

      t.test(
        'a request over replay.maxBytes that arrives before the server connection is up is not replayed',
        {},
        async (t) => {
          const s = scope(t)
          // 8 KiB: over the bound, small enough to be read in one chunk while Baton connects.
          const req = frame(Buffer.alloc(8 * 1024, 0x72))
          const bad = await s.server(resetServer({ afterRead: req.length }, 'bad'))
          const good = await s.server(frameServer('good'))
          const { balancer, port } = await s.balancer(
            oneListener([bad, good], { balance: 'first', replay: { maxBytes: 1024 }, ...opts })
          )
          if (handoff === 'pooled') await poolsFilled(balancer, [0, 1])
          const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')

          // Written with the handshake: with `pool.idle: 0` it is all read while Baton still connects.
          const client = recordingClient(t, port, req)
          await client.receivedAtLeast(1, 'a response (or the client closed)')
          if (!client.socket.closed) client.socket.end()
          const [close] = await closed
          await within(client.closed, 'client closed')
          t.equal(client.received, 0, 'no response reached the client')
          t.equal(close.outcome, 'unrecoverable', `outcome (${close.error ?? ''})`)
          const c = balancer.counters()
          t.equal(c.unrecoverable, 1, 'unrecoverable')
          t.strictSame(reasonsOf(balancer), { 'replay-over-budget': 1 }, 'counted under its reason')
          t.equal(c.failovers, 0, 'no failover')
          t.equal(good.bytesRead, 0, 'good never saw the request')
        }
      )

      t.test(
        `replay: none, a reset mid-request closes the client (${protocol === 'opaque' ? 'plain proxy: serverErrors' : 'unrecoverable'})`,
        async (t) => {
          const s = scope(t)
          const bad = await s.server(resetServer({ afterRead: 1 }, 'bad'))
          const good = await s.server(frameServer('good'))
          const { balancer, port } = await s.balancer(
            oneListener([bad, good], { balance: 'first', replay: 'none', ...opts })
          )
          if (handoff === 'pooled') await poolsFilled(balancer, [0, 1])
          const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')

          const client = await s.connect(port)
          client.socket.write(frame(body('no-replay')))
          const [close] = await closed
          const end = await within(client.closed, 'client closed')
          t.ok(end.error !== undefined || end.ended, `the client was closed (${end.error ?? 'FIN'})`)
          const c = balancer.counters()
          if (protocol === 'opaque') {
            t.equal(close.outcome, 'server-error')
            t.equal(c.serverErrors, 1, 'serverErrors')
            t.equal(c.unrecoverable, 0, 'no framer, so nothing is "unrecoverable"')
            t.equal(c.serverFailures, 1, 'serverFailures')
          } else {
            t.equal(close.outcome, 'unrecoverable')
            t.equal(c.unrecoverable, 1, 'unrecoverable')
            t.strictSame(reasonsOf(balancer), { 'replay-off': 1 }, 'counted under its reason')
            t.equal(c.serverErrors, 0)
          }
          t.equal(c.failovers, 0, 'no failover')
          t.equal(good.bytesRead, 0, 'good never saw the request')
        }
      )

      t.test(
        'replay.maxAttempts: 2 with every backend resetting: the client is closed, counted',
        async (t) => {
          const s = scope(t)
          const backends = [
            await s.server(resetServer({ afterRead: 1 }, 'r1')),
            await s.server(resetServer({ afterRead: 1 }, 'r2')),
            await s.server(resetServer({ afterRead: 1 }, 'r3')),
          ]
          const { balancer, port } = await s.balancer(
            oneListener(backends, { balance: 'first', replay: { maxAttempts: 2 }, ...opts })
          )
          if (handoff === 'pooled') await poolsFilled(balancer, [0, 1, 2])
          const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')

          const client = recordingClient(t, port, frame(body('doomed')))
          const [close] = await closed
          await within(client.closed, 'client closed, not left hanging')
          t.ok(client.error !== undefined || client.ended, `the client was closed (${client.error ?? 'FIN'})`)
          t.equal(client.received, 0, 'nothing reached the client')
          t.equal(close.outcome, 'unrecoverable', `outcome (${close.error ?? ''})`)
          t.same(close.backends, ['r1', 'r2'], 'sent twice, then given up')
          const c = balancer.counters()
          t.equal(c.unrecoverable, 1, 'unrecoverable')
          t.strictSame(reasonsOf(balancer), { 'max-attempts': 1 }, 'counted under its reason')
          t.equal(c.failovers, 1, 'one failover (the second attempt)')
          t.equal(c.serverFailures, 2, 'serverFailures')
          t.equal(backends[2]!.accepted - (handoff === 'pooled' ? 2 : 0), 0, 'r3 never got the request')
        }
      )

      if (protocol === 'length-prefixed') {
        t.test(
          'a client frame over framing.maxFrameBytes: session closed, framingErrors, process fine',
          async (t) => {
            const s = scope(t)
            const good = await s.server(frameServer('good'))
            const { balancer, port } = await s.balancer(
              oneListener([good], { ...opts, framing: { lengthBytes: 4, maxFrameBytes: 1024 } })
            )
            if (handoff === 'pooled') await poolsFilled(balancer, [0])
            const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')

            const header = Buffer.alloc(4)
            header.writeUInt32BE(4096, 0)
            const client = recordingClient(t, port, Buffer.concat([header, Buffer.alloc(100, 0x7a)]))
            const [close] = await closed
            await within(client.closed, 'client closed')
            t.equal(close.outcome, 'framing-error')
            t.match(close.error ?? '', /maxFrameBytes/, `error: ${close.error}`)
            t.equal(client.received, 0)
            t.equal(balancer.counters().framingErrors, 1, 'framingErrors')
            t.equal(good.bytesRead, 0, 'the oversized frame never reached the backend')

            // The balancer carries on: the next client is served.
            const next = await s.connect(port)
            const req = body('after-framing-error', 1000) // 1004 bytes framed: under the limit
            const expected = expectedResponse(req)
            const reading = next.read(expected.length)
            next.socket.write(frame(req))
            t.notOk(sameBytes(await reading, expected), 'the next client is answered')
            t.equal(balancer.counters().framingErrors, 1)
          }
        )

        t.test(
          'server FIN at a clean boundary is hidden; the next request gets a new connection',
          async (t) => {
            const s = scope(t)
            const finner = await s.server(frameServer('finner', { endAfter: 1 }))
            const { balancer, port } = await s.balancer(oneListener([finner], opts))
            if (handoff === 'pooled') await poolsFilled(balancer, [0])
            const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
            const opened = once(finner, 'request')

            const client = await s.connect(port, { allowHalfOpen: true })
            const [req1, req2] = [body('fin-1'), body('fin-2')]
            const [exp1, exp2] = [expectedResponse(req1), expectedResponse(req2)]
            const r1 = client.read(exp1.length)
            client.socket.write(frame(req1))
            t.notOk(sameBytes(await r1, exp1), 'first response')
            const [firstSocket] = (await opened) as [import('node:net').Socket]
            // Baton lets go of the finished connection: the server sees it close.
            if (!firstSocket.closed) await once(firstSocket, 'close')
            t.notOk(client.ended, 'the FIN did not reach the client')

            const r2 = client.read(exp2.length)
            client.socket.write(frame(req2))
            t.notOk(sameBytes(await r2, exp2), 'second response, on a new connection')
            t.notOk(client.ended, 'still no FIN at the client')
            client.socket.end()
            const [close] = await closed
            await within(client.closed, 'client closed')
            t.equal(client.error, undefined)
            t.equal(close.outcome, 'done')
            t.equal(finner.requests, 2)
            const c = balancer.counters()
            t.equal(c.failovers + c.serverFailures + c.unrecoverable, 0, 'a clean boundary is no failure')
            t.equal(c.replayedRequests, 0)
          }
        )
      } else {
        t.test('server FIN after the answer reaches the client as a half-close', async (t) => {
          const s = scope(t)
          const finner = await s.server(frameServer('finner', { endAfter: 1 }))
          const { balancer, port } = await s.balancer(oneListener([finner], opts))
          if (handoff === 'pooled') await poolsFilled(balancer, [0])
          const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')

          const client = await s.connect(port, { allowHalfOpen: true })
          const req = body('opaque-fin')
          const expected = expectedResponse(req)
          client.socket.write(frame(req))
          const got = await client.readAll()
          t.notOk(sameBytes(got, expected), 'the response, then the end')
          t.ok(client.ended, 'the client got the FIN (end event)')
          t.notOk(client.isClosed, 'half-closed: the client side is still open')
          client.socket.end()
          const [close] = await closed
          await within(client.closed, 'client closed')
          t.equal(client.error, undefined)
          t.equal(close.outcome, 'done')
          const c = balancer.counters()
          t.equal(c.failovers + c.unrecoverable, 0)
        })
      }
    })
  }
}

// Where a hand-off itself finds nowhere to go: the failure reaches the client, counted under the
// reason that says so (the label of baton_unrecoverable_total).
t.test('a hand-off with no other usable backend: unrecoverable, reason no-backend', async (t) => {
  const s = scope(t)
  const bad = await s.server(resetServer({ afterRead: 1 }, 'bad'))
  const other = await s.server(frameServer('other'))
  const { balancer, port } = await s.balancer(
    oneListener([bad, other], { balance: 'first', ...listenerOptions('length-prefixed', 'new') })
  )
  balancer.frontends[0]!.backends[1]!.admin = 'maint'
  const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
  const client = recordingClient(t, port, frame(body('nowhere')))
  const [close] = await closed
  await within(client.closed, 'client closed')
  t.equal(close.outcome, 'unrecoverable', `outcome (${close.error ?? ''})`)
  t.strictSame(reasonsOf(balancer), { 'no-backend': 1 }, 'counted under its reason')
  t.equal(other.accepted, 0, 'the backend in maintenance was not used')
})

t.test('a hand-off whose every connect fails: unrecoverable, reason connect-failed', async (t) => {
  const s = scope(t)
  const bad = await s.server(resetServer({ afterRead: 1 }, 'bad'))
  const refused = await refusedPort('refused')
  const { balancer, port } = await s.balancer(
    oneListener([bad, refused], {
      balance: 'first',
      retries: 0,
      ...listenerOptions('length-prefixed', 'new'),
    })
  )
  const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
  const client = recordingClient(t, port, frame(body('refused')))
  const [close] = await closed
  await within(client.closed, 'client closed')
  t.equal(close.outcome, 'unrecoverable', `outcome (${close.error ?? ''})`)
  t.strictSame(reasonsOf(balancer), { 'connect-failed': 1 }, 'counted under its reason')
  t.equal(balancer.counters().connectErrors, 1, 'the connect was refused')
})
