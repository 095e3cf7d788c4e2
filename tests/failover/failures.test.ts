/**
 * In-flight failover, one failure at a time, for both protocols (`opaque`, `length-prefixed` with
 * 4-byte big-endian lengths) and both hand-off kinds (a warm pooled connection, a new connect):
 *
 *   reset before any response   the request goes to another backend, the client sees nothing
 *   close right after accept     (end or destroy) the client still gets its response
 *   hang                         `responseTimeout` moves the request; the late bytes never arrive
 *   refuse                       a refused connect (first pick or hand-off target) is redispatched
 *
 * `balance: first` makes the failing backend the first pick, deterministically.
 */
import t from 'tap'
import type { SessionCloseEvent } from '../../lib/balancer.js'
import type { SessionSnapshot } from '../../lib/table.js'
import { oneListener, scope } from '../helpers/balancer.js'
import {
  body,
  closeOnAcceptServer,
  expectedResponse,
  frame,
  frameServer,
  HANDOFFS,
  LATE_BYTES,
  lateServer,
  letGoBetweenTurns,
  listenerOptions,
  poolsFilled,
  PROTOCOLS,
  recordingClient,
  sameBytes,
} from '../helpers/failover-servers.js'
import { refusedPort, resetServer } from '../helpers/servers.js'
import { once, until, within } from '../helpers/wait.js'

for (const protocol of PROTOCOLS) {
  for (const handoff of HANDOFFS) {
    const opts = listenerOptions(protocol, handoff)
    const handoffCounter = handoff === 'pooled' ? 'handoffsPooled' : 'handoffsNew'
    const otherCounter = handoff === 'pooled' ? 'handoffsNew' : 'handoffsPooled'

    t.test(`${protocol}, ${handoff} hand-off`, async (t) => {
      t.test('reset before any response: answered by another backend, same session', async (t) => {
        const s = scope(t)
        const bad = await s.server(resetServer({ afterRead: 1 }, 'bad'))
        const good = await s.server(frameServer('good'))
        const { balancer, port } = await s.balancer(oneListener([bad, good], { balance: 'first', ...opts }))
        if (handoff === 'pooled') await poolsFilled(balancer, [0, 1])
        const opened = once<[SessionSnapshot]>(balancer, 'sessionOpen')
        const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')

        const client = await s.connect(port)
        const [open] = await opened
        const req = body('reset-before-response')
        const expected = expectedResponse(req)
        const reading = client.read(expected.length)
        client.socket.write(frame(req))
        const reply = await reading
        t.notOk(sameBytes(reply, expected), 'the right response')

        // During: the entry is the same one, now on `good`, with both backends in its history.
        const live = balancer.sessions().find((x) => x.id === open.id)
        t.ok(live !== undefined, 'the session is still in the table under its id')
        t.equal(live?.backend, 'good')
        t.same(live?.backends, ['bad', 'good'])
        t.equal(balancer.sessions().length, 1, 'one entry, not a second one')

        // A second request on the same client goes straight to `good`.
        const req2 = body('second')
        const expected2 = expectedResponse(req2)
        const reading2 = client.read(expected2.length)
        client.socket.write(frame(req2))
        t.notOk(sameBytes(await reading2, expected2), 'the second response')

        client.socket.end()
        const [close] = await closed
        await within(client.closed, 'client closed')
        t.equal(client.error, undefined, 'the client saw no error')
        t.equal(close.id, open.id, 'sessionClose: the same session id')
        t.same(close.backends, ['bad', 'good'], 'sessionClose: a history of 2 backends')
        t.equal(close.outcome, 'done')

        const c = balancer.counters()
        t.equal(c.failovers, 1, 'failovers')
        t.equal(c[handoffCounter], 1, handoffCounter)
        t.equal(c[otherCounter], 0, otherCounter)
        t.equal(c.serverFailures, 1, 'serverFailures')
        t.equal(c.replayedRequests, 1, 'replayedRequests')
        t.equal(c.replayedBytes, frame(req).length, 'replayedBytes')
        t.equal(c.unrecoverable + c.clientErrors + c.serverErrors, 0, 'nothing unrecoverable')
        t.equal(balancer.handoffLatency()[handoff].count, 1, `a ${handoff} hand-off latency sample`)
        t.equal(good.requests, 2, 'good answered both requests')
      })

      // Close right after accept: a server connection that closes without a word is as good as a
      // refused connect, whatever the protocol; what was sent to it goes elsewhere.
      for (const how of ['end', 'destroy'] as const) {
        const closerName = `close right after accept (${how})`
        t.test(`${closerName}, request sent at once: the client gets its response`, async (t) => {
          const s = scope(t)
          const closer = await s.server(closeOnAcceptServer(how, 'closer'))
          const good = await s.server(frameServer('good'))
          const { balancer, port } = await s.balancer(
            oneListener([closer, good], { balance: 'first', passive: { failures: 100 }, ...opts })
          )
          if (handoff === 'pooled') await poolsFilled(balancer, [1])
          const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')

          const req = body(`close-on-accept-${how}`)
          const expected = expectedResponse(req)
          // Written with the handshake: the request is there before Baton's server connection is up.
          const client = recordingClient(t, port, frame(req))
          const got = await client.receivedAtLeast(expected.length, 'the response (or the client closed)')
          t.notOk(sameBytes(got, expected), 'the right response')
          t.equal(client.error, undefined, 'no client error')
          t.notOk(client.ended, 'no FIN reached the client')
          if (!client.socket.closed) client.socket.end()
          const [close] = await closed
          await within(client.closed, 'client closed')
          t.notOk(sameBytes(client.data, expected), 'nothing more arrived')
          t.equal(close.outcome, 'done')
          t.equal(close.backends.at(-1), 'good', 'ended on good')
          const c = balancer.counters()
          t.ok(
            c.failovers + c.connectErrors >= 1,
            `failed over (${c.failovers}) or redispatched (${c.connectErrors})`
          )
          t.equal(c.unrecoverable + c.clientErrors + c.serverErrors, 0, 'nothing unrecoverable')
          t.equal(good.requests, 1, 'good answered once')
        })

        t.test(`${closerName}, request sent after the close: the client gets its response`, async (t) => {
          const s = scope(t)
          const closer = await s.server(closeOnAcceptServer(how, 'closer'))
          const good = await s.server(frameServer('good'))
          const { balancer, port } = await s.balancer(
            oneListener([closer, good], { balance: 'first', passive: { failures: 100 }, ...opts })
          )
          if (handoff === 'pooled') await poolsFilled(balancer, [1])
          const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')

          const client = await s.connect(port, { allowHalfOpen: true })
          await until(() => {
            const live = balancer.sessions()[0]
            return (closer.accepted > 0 && letGoBetweenTurns(live)) || client.ended || client.isClosed
          }, 'Baton saw the close')
          t.notOk(client.ended, 'the close was not passed on to the client')
          const req = body(`after-close-${how}`)
          const expected = expectedResponse(req)
          const reading = client.read(expected.length, 3000)
          client.socket.write(frame(req))
          t.notOk(sameBytes(await reading, expected), 'the right response')
          client.socket.end()
          const [close] = await closed
          await within(client.closed, 'client closed')
          t.equal(client.error, undefined, 'no client error')
          t.equal(close.outcome, 'done')
          t.equal(close.backends.at(-1), 'good')
          const c = balancer.counters()
          t.equal(c.unrecoverable + c.clientErrors + c.serverErrors, 0, 'nothing unrecoverable')
        })
      }

      t.test('hang: responseTimeout moves the request, the late bytes never reach the client', async (t) => {
        const s = scope(t)
        const late = await s.server(lateServer(500, 'late'))
        const good = await s.server(frameServer('good'))
        const { balancer, port } = await s.balancer(
          oneListener([late, good], { balance: 'first', responseTimeout: '200ms', ...opts })
        )
        if (handoff === 'pooled') await poolsFilled(balancer, [0, 1])
        const lateEvent = once<[{ written: boolean }]>(late, 'late')
        const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')

        const req = body('hang')
        const expected = expectedResponse(req)
        const client = recordingClient(t, port, frame(req))
        const started = Date.now()
        const got = await client.receivedAtLeast(expected.length, 'the response')
        const ms = Date.now() - started
        t.notOk(sameBytes(got, expected), 'the right response')
        t.ok(ms >= 150, `not before the response timeout (${ms} ms)`)

        // The hanging server tries to answer 500 ms after the request; its connection is gone.
        const [{ written }] = await lateEvent
        t.comment(
          `late server ${written ? 'wrote its late bytes into a closed connection' : 'found its socket closed'}`
        )
        // One more round trip through the same session after that moment.
        const req2 = body('after-late')
        const expected2 = expectedResponse(req2)
        client.write(frame(req2))
        await client.receivedAtLeast(expected.length + expected2.length, 'the second response')
        client.socket.end()
        const [close] = await closed
        await within(client.closed, 'client closed')
        const all = client.data
        t.notOk(
          sameBytes(all, Buffer.concat([expected, expected2])),
          'exactly the two responses, nothing else'
        )
        t.equal(all.indexOf(LATE_BYTES), -1, 'the late bytes never reached the client')
        t.equal(client.error, undefined)
        t.equal(close.outcome, 'done')
        t.same(close.backends, ['late', 'good'])

        const c = balancer.counters()
        t.equal(c.responseTimeouts, 1, 'responseTimeouts')
        t.equal(c.failovers, 1, 'failovers')
        t.equal(c[handoffCounter], 1, handoffCounter)
        t.equal(c.unrecoverable + c.clientErrors + c.serverErrors + c.serverTimeouts, 0)
      })

      for (const how of ['reset', 'FIN'] as const) {
        t.test(
          `backend dies between turns (${how}): the next request is answered elsewhere`,
          {},
          async (t) => {
            const s = scope(t)
            const a = await s.server(frameServer('a'))
            const b = await s.server(frameServer('b'))
            const { balancer, port } = await s.balancer(oneListener([a, b], { balance: 'first', ...opts }))
            if (handoff === 'pooled') await poolsFilled(balancer, [0, 1])
            const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')

            const client = await s.connect(port, { allowHalfOpen: true })
            const [req1, req2] = [body('turn-1'), body('turn-2')]
            const [exp1, exp2] = [expectedResponse(req1), expectedResponse(req2)]
            const r1 = client.read(exp1.length)
            client.socket.write(frame(req1))
            t.notOk(sameBytes(await r1, exp1), 'first response, from a')
            // a dies while the session is between turns: answered, next request not sent yet.
            if (how === 'reset') await a.kill()
            else await a.close() // destroy(): a FIN on each idle connection, and the port refuses
            await until(() => {
              const live = balancer.sessions()[0]
              return letGoBetweenTurns(live) || client.ended || client.isClosed
            }, 'Baton noticed the dead connection')
            t.notOk(client.ended, 'no FIN reached the client')
            t.equal(client.error, undefined, 'no error at the client')

            const r2 = client.read(exp2.length, 3000)
            client.socket.write(frame(req2))
            t.notOk(sameBytes(await r2, exp2), 'second response, from b')
            client.socket.end()
            const [close] = await closed
            await within(client.closed, 'client closed')
            t.equal(client.error, undefined)
            t.equal(close.outcome, 'done')
            t.equal(close.backends.at(-1), 'b')
            t.equal(b.requests, 1, 'b answered the second request')
            const c = balancer.counters()
            t.equal(c.unrecoverable + c.clientErrors + c.serverErrors, 0)
          }
        )
      }

      t.test('refuse: the first pick refuses, redispatched with no client error', async (t) => {
        const s = scope(t)
        const dead = await s.server(refusedPort('dead'))
        const good = await s.server(frameServer('good'))
        const { balancer, port } = await s.balancer(oneListener([dead, good], { balance: 'first', ...opts }))
        if (handoff === 'pooled') await poolsFilled(balancer, [1])
        const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')

        const req = body('refused-first')
        const expected = expectedResponse(req)
        const client = recordingClient(t, port, frame(req))
        t.notOk(sameBytes(await client.receivedAtLeast(expected.length, 'the response'), expected))
        client.socket.end()
        const [close] = await closed
        await within(client.closed, 'client closed')
        t.equal(client.error, undefined, 'no client error')
        t.equal(close.outcome, 'done')
        t.same(close.backends, ['dead', 'good'])
        const c = balancer.counters()
        t.ok(c.connectErrors >= 1, `connectErrors (${c.connectErrors})`)
        t.ok(c.retries >= 1, `retries (${c.retries})`)
        t.equal(c.failovers, 0, 'a connect error is a redispatch, not a failover')
        t.equal(c.noBackend + c.unrecoverable + c.clientErrors + c.serverErrors, 0)
      })

      t.test('refuse: the hand-off target refuses, the next one answers', async (t) => {
        const s = scope(t)
        const bad = await s.server(resetServer({ afterRead: 1 }, 'bad'))
        const dead = await s.server(refusedPort('dead'))
        const good = await s.server(frameServer('good'))
        const { balancer, port } = await s.balancer(
          oneListener([bad, dead, good], { balance: 'first', ...opts })
        )
        if (handoff === 'pooled') await poolsFilled(balancer, [0, 2])
        const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')

        const client = await s.connect(port)
        const req = body('refused-handoff')
        const expected = expectedResponse(req)
        const reading = client.read(expected.length)
        client.socket.write(frame(req))
        t.notOk(sameBytes(await reading, expected), 'the right response')
        client.socket.end()
        const [close] = await closed
        await within(client.closed, 'client closed')
        t.equal(client.error, undefined, 'no client error')
        t.equal(close.outcome, 'done')
        t.same(close.backends, ['bad', 'dead', 'good'])
        const c = balancer.counters()
        t.equal(c.failovers, 1, 'failovers')
        t.equal(c[handoffCounter], 1, handoffCounter)
        t.ok(c.connectErrors >= 1, `connectErrors (${c.connectErrors})`)
        t.equal(c.noBackend + c.unrecoverable + c.clientErrors + c.serverErrors, 0)
      })
    })
  }
}
