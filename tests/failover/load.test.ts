/**
 * 200 concurrent sessions over 3 backends, each doing 20 request/response rounds with its own
 * payloads; one backend is killed (every connection reset, listener closed) while requests are in
 * flight. Zero client errors, every response checked byte for byte. Both protocols (`opaque` is
 * turn-taking: one request, wait for its whole response, the next), both hand-off kinds, and two
 * moments for the kill:
 *
 *   in flight   the victim stops answering first, and is killed once every one of its sessions
 *               has a request waiting: every session on it has something to replay
 *   anytime     killed as it runs: some of its sessions are between turns (answered, next request
 *               not sent yet), which `length-prefixed` hides (clean boundary) and `opaque` does not
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
  RecordingClient,
} from '../helpers/failover-servers.js'
import { collect, until, within } from '../helpers/wait.js'

const SESSIONS = 200
const ROUNDS = 20
/** Kill when this many rounds (of SESSIONS × ROUNDS) are done: mid-load. */
const KILL_AT = Math.floor((SESSIONS * ROUNDS) / 3)

for (const protocol of PROTOCOLS) {
  for (const handoff of HANDOFFS) {
    for (const when of ['in flight', 'anytime'] as const) {
      const name = `${protocol}, ${handoff} hand-off, killed ${when}: ${SESSIONS} sessions, one of 3 backends killed`
      t.test(name, async (t) => {
        const s = scope(t)
        const backends = [
          await s.server(frameServer('b0')),
          await s.server(frameServer('b1')),
          await s.server(frameServer('b2')),
        ]
        const victim = backends[1]!
        const { balancer, port } = await s.balancer(
          oneListener(backends, { balance: 'round-robin', ...listenerOptions(protocol, handoff) })
        )
        if (handoff === 'pooled') await poolsFilled(balancer, [0, 1, 2])
        const allClosed = collect<SessionCloseEvent>(balancer, 'sessionClose', SESSIONS, 30_000)

        let done = 0
        let killed: Promise<void> | undefined
        let atKill = { used: 0, waiting: 0 }
        const kill = async (): Promise<void> => {
          if (when === 'in flight') {
            victim.freeze()
            await until(() => {
              const f = victim.inFlight()
              return f.used > 0 && f.waiting === f.used
            }, 'every session on the victim waiting for an answer')
          }
          atKill = victim.inFlight()
          await victim.kill()
        }
        // Kill mid-load, once every session has had at least one answer (a server connection that
        // never carried a byte is the close-right-after-accept case of failures.test.ts).
        let served = 0
        const onRound = (round: number): void => {
          done++
          if (round === 0) served++
          if (killed === undefined && done >= KILL_AT && served === SESSIONS) killed = kill()
        }

        // Every client connected and its session open before the rounds start.
        const clients = Array.from({ length: SESSIONS }, () => new RecordingClient(port))
        t.teardown(() => clients.forEach((c) => c.destroy()))
        await until(
          () => balancer.sessions().filter((x) => x.state === 'open').length === SESSIONS,
          `${SESSIONS} sessions open`
        )
        const failures: string[] = []
        const checked = await Promise.all(
          clients.map((client, id) =>
            runSession(client, id, onRound).catch((err: Error) => {
              failures.push(`session ${id}: ${err.message}`)
              return 0
            })
          )
        )
        t.ok(killed !== undefined, 'the victim was killed mid-load')
        await killed
        const closes = await allClosed

        for (const f of failures.slice(0, 20)) t.comment(f)
        t.same(failures, [], 'zero client errors')
        t.equal(
          checked.reduce((a, b) => a + b, 0),
          SESSIONS * ROUNDS,
          'every response was checked',
          {}
        )
        t.ok(
          atKill.used > 0,
          `the victim served ${atKill.used} sessions, ${atKill.waiting} waiting, when killed`
        )
        const outcomes = new Map<string, number>()
        for (const e of closes) outcomes.set(e.outcome, (outcomes.get(e.outcome) ?? 0) + 1)
        t.same(Object.fromEntries(outcomes), { done: SESSIONS }, 'every session ended "done"')
        const moved = closes.filter((e) => e.backends.length > 1).length
        const c = balancer.counters()
        t.comment(
          `failovers ${c.failovers} (pooled ${c.handoffsPooled}, new ${c.handoffsNew}), ` +
            `sessions that changed backend ${moved}, serverFailures ${c.serverFailures}, ` +
            `connectErrors ${c.connectErrors}, verifiedResumes ${c.verifiedResumes}`
        )
        t.ok(c.serverFailures > 0, 'the kill was seen as server failures')
        t.ok(c.failovers > 0, 'requests in flight were failed over')
        if (when === 'in flight') {
          t.ok(c.failovers >= atKill.waiting, 'a failover for each session that was waiting on the victim')
        }
        if (handoff === 'pooled') t.ok(c.handoffsPooled > 0, 'pooled hand-offs')
        else t.equal(c.handoffsPooled, 0, 'no pooled hand-offs without a pool')
        t.equal(c.handoffsPooled + c.handoffsNew, c.failovers)
        t.equal(
          c.unrecoverable + c.clientErrors + c.serverErrors + c.framingErrors,
          0,
          'nothing unrecoverable',
          {}
        )
      })
    }
  }
}

/** One client: ROUNDS request/response turns with its own payloads. Resolves with the rounds checked. */
async function runSession(
  client: RecordingClient,
  id: number,
  onRound: (round: number) => void
): Promise<number> {
  try {
    let offset = 0
    for (let r = 0; r < ROUNDS; r++) {
      const req = body(`session ${id} round ${r} `, 40 + ((id * 31 + r * 17) % 600))
      const expected = expectedResponse(req)
      client.write(frame(req))
      const all = await client.receivedAtLeast(offset + expected.length, `session ${id} round ${r}`)
      if (client.error !== undefined) throw new Error(`round ${r}: client error ${client.error}`)
      if (client.ended || client.socket.closed) throw new Error(`round ${r}: closed (FIN ${client.ended})`)
      const got = all.subarray(offset, offset + expected.length)
      if (!got.equals(expected)) throw new Error(`round ${r}: wrong response`)
      offset += expected.length
      onRound(r)
    }
    client.socket.end()
    await within(client.closed, `session ${id} close`)
    if (client.error !== undefined) throw new Error(`at close: client error ${client.error}`)
    if (client.received !== offset) throw new Error(`${client.received - offset} bytes more than expected`)
    return ROUNDS
  } finally {
    client.destroy()
  }
}
