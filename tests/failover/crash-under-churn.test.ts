/**
 * opaque hides a backend that dies between turns even while other clients churn through it.
 *
 * The crash check (lib/replay/crash-check.ts) tells a crash from a graceful close by a connect to the
 * backend. Under churn there are many such connects (probes for the closes of ended sessions, and
 * the sessions' own connects); one that started before the crash says "alive" about a backend that
 * is gone, and a keep-alive client would get the FIN a plain proxy passes on. Only a connect that
 * started after the close may answer for it: this test kills a backend while 4 loops of
 * connect-request-reply-close run through it, and a keep-alive client's next request must be
 * answered by the other backend with no FIN.
 */
import net, { type Socket } from 'node:net'
import t from 'tap'
import { oneListener, scope } from '../helpers/balancer.js'
import {
  body,
  expectedResponse,
  frame,
  FrameParser,
  letGoBetweenTurns,
  okAnswer,
  sameBytes,
} from '../helpers/failover-servers.js'
import { HOST, TestServer } from '../helpers/servers.js'
import { once, until, within } from '../helpers/wait.js'
import type { SessionSnapshot } from '../../lib/table.js'

const CHURN = Buffer.from('churn')

/** Answers each frame; after a `churn` request it closes the connection first (HTTP/1.0 style). */
async function churnServer(name: string): Promise<TestServer & { keptAlive: number }> {
  const counts = { keptAlive: 0 }
  const server = new TestServer(name, (socket: Socket) => {
    const parser = new FrameParser()
    socket.on('data', (chunk: Buffer) => {
      for (const req of parser.push(chunk)) {
        socket.write(frame(okAnswer(req)))
        if (!req.equals(CHURN)) counts.keptAlive++
        if (req.equals(CHURN)) return void socket.end()
      }
    })
    socket.on('end', () => socket.end())
  })
  await server.listen()
  return Object.defineProperty(server, 'keptAlive', { get: () => counts.keptAlive }) as TestServer & { keptAlive: number }
}

/** One connect-request-reply-close through Baton; resolves with an error message or undefined. */
function churnOnce(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const expected = frame(okAnswer(CHURN))
    let got = 0
    const c = net.connect({ host: HOST, port }, () => c.write(frame(CHURN)))
    const timer = setTimeout(() => {
      c.destroy()
      resolve('timed out')
    }, 5000)
    c.on('data', (d: Buffer) => (got += d.length))
    c.on('error', (err) => {
      clearTimeout(timer)
      resolve(err.message)
    })
    c.on('close', () => {
      clearTimeout(timer)
      resolve(got === expected.length ? undefined : `got ${got} of ${expected.length} bytes`)
    })
  })
}

for (const how of ['FIN', 'reset'] as const) {
  t.test(`a keep-alive client survives a crash (${how}) of a backend that other clients churn through`, async (t) => {
    const s = scope(t)
    const a = await s.server(churnServer('a'))
    const b = await s.server(churnServer('b'))
    const { balancer, port } = await s.balancer(oneListener([a, b], { balance: 'first', protocol: 'opaque' }))

    const opened = once<[SessionSnapshot]>(balancer, 'sessionOpen')
    const client = await s.connect(port, { allowHalfOpen: true })
    const [open] = await opened
    const [req1, req2] = [body('turn-1'), body('turn-2')]
    const [exp1, exp2] = [expectedResponse(req1), expectedResponse(req2)]
    const r1 = client.read(exp1.length)
    client.socket.write(frame(req1))
    t.notOk(sameBytes(await r1, exp1), 'first response, from a')

    // Four loops of churn through `a`, bounded in count and time.
    let stop = false
    let done = 0
    const errors: string[] = []
    const deadline = Date.now() + 20_000
    const loops = Array.from({ length: 4 }, async () => {
      for (let i = 0; i < 5000 && !stop && Date.now() < deadline; i++) {
        const err = await churnOnce(port)
        if (err !== undefined) errors.push(err)
        done++
      }
    })
    await until(() => done >= 200, 'churn under way', { timeoutMs: 10_000 })

    // a dies between the keep-alive client's turns, while the churn goes on.
    if (how === 'reset') {
      for (const sock of a.sockets) sock.resetAndDestroy()
    }
    await a.close()
    const atKill = done
    await until(() => {
      const live = balancer.sessions().find((x) => x.id === open.id)
      return letGoBetweenTurns(live) || client.ended || client.isClosed
    }, 'Baton noticed the dead connection')
    t.notOk(client.ended, 'no FIN reached the keep-alive client')
    t.equal(client.error, undefined, 'no error at the keep-alive client')
    const r2 = client.read(exp2.length, 3000)
    client.socket.write(frame(req2))
    t.notOk(sameBytes(await r2, exp2), 'second response, from b')

    // Sessions whose server had closed on purpose just before it died look the same as a crash
    // between turns: their clients, waiting for that FIN, get it after ORPHAN_FIN_MS (no timeouts).
    await until(() => done >= atKill + 50, 'churn carried on to b', { timeoutMs: 10_000 })
    stop = true
    await within(Promise.all(loops), 'churn loops ended', 10_000)
    t.equal(b.keptAlive, 1, 'b answered the keep-alive request')
    t.same(errors, [], `no churn client saw an error (${done} connections)`)
  })
}
