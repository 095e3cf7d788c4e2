/**
 * What only the native plane's sessions do (lib/native/link.ts), beyond the suites that run on
 * both planes (npm run test:native-plane): a backend that failed a session is avoided only until
 * the session makes progress, so one that came back is a candidate again; the session's two
 * sockets are not kept once the plane has their descriptors.
 */
import t from 'tap'
import type { Session } from '../../lib/session.js'
import { ON_PLANE } from '../../lib/native/link.js'
import { oneListener, scope } from '../helpers/balancer.js'
import {
  body,
  expectedResponse,
  frame,
  frameServer,
  letGoBetweenTurns,
  sameBytes,
} from '../helpers/failover-servers.js'
import { until } from '../helpers/wait.js'
import { skip } from './helpers/native-proxy.js'

t.test('a backend that died between turns and came back serves the session again', { skip }, async (t) => {
  const s = scope(t)
  const a = await s.server(frameServer('a'))
  const b = await s.server(frameServer('b'))
  const { balancer, port } = await s.balancer(
    oneListener([a, b], { balance: 'first', dataPlane: 'native', passive: { failures: 100 } })
  )
  const client = await s.connect(port, { allowHalfOpen: true })
  const turn = async (tag: string): Promise<void> => {
    const req = body(tag)
    const exp = expectedResponse(req)
    const reply = client.read(exp.length)
    client.socket.write(frame(req))
    t.notOk(sameBytes(await reply, exp), `${tag}: answered`)
  }
  const history = (): string[] => balancer.sessions()[0]?.backends ?? []

  await turn('turn-1')
  const entry = [...balancer.table.values()][0] as Session
  t.equal(entry.client, ON_PLANE, 'the client socket is not kept once the plane has it')
  t.equal(entry.server, ON_PLANE, 'nor the server socket')
  t.match(balancer.sessions()[0]?.server, /^127\.0\.0\.1:\d+$/, 'the table still shows the server side')

  await a.kill()
  await until(() => letGoBetweenTurns(balancer.sessions()[0]) && history().length === 2, 'moved to b')
  await turn('turn-2')
  await a.listen(a.port) // a is back
  await b.kill()
  await until(() => history().length === 3, 'moved again')
  t.same(history(), ['a', 'b', 'a'], 'back on a: it failed before the session made progress, not since')
  await turn('turn-3')
  t.notOk(client.ended || client.isClosed, 'the client never saw a thing')
  const c = balancer.counters()
  t.equal(c.unrecoverable + c.noBackend + c.clientErrors + c.serverErrors, 0)
})
