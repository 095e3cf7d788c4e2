/**
 * The warm pools that pooled hand-offs depend on: a drained pool is refilled promptly, and a pool
 * nobody takes from is renewed before its connections pass `pool.maxAge`, so that a hand-off long
 * after start still finds an established connection.
 */
import t from 'tap'
import { oneListener, scope } from '../helpers/balancer.js'
import {
  body,
  expectedResponse,
  frame,
  frameServer,
  poolsFilled,
  sameBytes,
} from '../helpers/failover-servers.js'
import { resetServer } from '../helpers/servers.js'
import { until } from '../helpers/wait.js'

t.test('a drained pool is refilled at once, not after maxAge / 2', async (t) => {
  const s = scope(t)
  const good = await s.server(frameServer('good'))
  const { balancer, port } = await s.balancer(
    oneListener([good], { protocol: 'length-prefixed', pool: { idle: 2 } }) // maxAge 60 s
  )
  await poolsFilled(balancer, [0])
  // Three sessions: the first two take the pool, the pool refills one, the third takes it.
  for (let i = 0; i < 3; i++) {
    const c = await s.connect(port)
    const req = body(`drain-${i}`)
    const exp = expectedResponse(req)
    const r = c.read(exp.length)
    c.socket.write(frame(req))
    t.notOk(sameBytes(await r, exp))
  }
  await until(() => balancer.listenerSnapshots()[0]!.backends[0]!.pool === 2, 'the pool refilled', {
    timeoutMs: 3000,
  })
  t.pass('refilled')
})

t.test('a pool left alone is renewed before maxAge, and a late hand-off is pooled', {}, async (t) => {
  const s = scope(t)
  const bad = await s.server(resetServer({ afterRead: 1 }, 'bad'))
  const good = await s.server(frameServer('good'))
  const { balancer, port } = await s.balancer(
    oneListener([bad, good], {
      balance: 'first',
      protocol: 'length-prefixed',
      pool: { idle: 2, maxAge: 200 },
    })
  )
  await poolsFilled(balancer, [0, 1])
  // Renewed: good accepts new pool connections to replace the first two as they age.
  await until(() => good.accepted >= 6, 'the pool renewed its connections (3 generations)', {
    timeoutMs: 3000,
  })
  const c = await s.connect(port)
  const req = body('late-handoff')
  const exp = expectedResponse(req)
  const r = c.read(exp.length)
  c.socket.write(frame(req))
  t.notOk(sameBytes(await r, exp), 'answered by good')
  const counters = balancer.counters()
  t.equal(counters.failovers, 1)
  t.equal(counters.handoffsPooled, 1, 'the hand-off took a pooled connection')
})
