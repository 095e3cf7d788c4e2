/**
 * Nothing outlives a session: after many sessions of every kind (served, refused then redispatched,
 * reset by the server, reset by the client, abandoned while connecting) and `close()`, the table is
 * empty, the backends hold no connection, and the process holds no socket or timer it did not hold
 * before.
 */
import t from 'tap'
import { closeHard, oneListener, startBalancer } from '../helpers/balancer.js'
import { Client, pattern } from '../helpers/clients.js'
import { blackholeServer, echoServer, refusedPort, resetServer, type Endpoint } from '../helpers/servers.js'
import { collect, until, within } from '../helpers/wait.js'

const KINDS = ['TCPSocketWrap', 'TCPServerWrap', 'Timeout'] as const

function resources(): Record<(typeof KINDS)[number], number> {
  const out = { TCPSocketWrap: 0, TCPServerWrap: 0, Timeout: 0 }
  for (const r of process.getActiveResourcesInfo()) {
    if (r in out) out[r as keyof typeof out]++
  }
  return out
}

t.test('no sockets, timers or table entries are left after many sessions and close()', async (t) => {
  const before = resources()
  const echo = await echoServer('echo')
  const dead = await refusedPort('dead')
  const reset = await resetServer({ afterRead: 100 }, 'reset')
  const hole = await blackholeServer('hole')
  const backends: Endpoint[] = [echo, reset, hole]
  const served = await startBalancer(
    oneListener([dead, echo], { name: 'served', passive: { failures: 1000 } })
  )
  const resetting = await startBalancer(oneListener([reset], { replay: 'none' }))
  const stuck = await startBalancer(oneListener([hole], { connectTimeout: 60_000 }))
  const balancers = [served.balancer, resetting.balancer, stuck.balancer]

  try {
    // 30 sessions at once through [refused, echo]: half end cleanly, half reset by the client.
    const clients = await Promise.all(Array.from({ length: 30 }, () => new Client(served.port).connected()))
    await Promise.all(
      clients.map(async (c, i) => {
        const data = pattern(2000, i + 1)
        if (!(await c.roundTrip(data)).equals(data)) t.fail(`client ${i} echo differs`)
        if (i % 2 === 0) c.socket.end()
        else c.socket.resetAndDestroy()
        await within(c.closed, `client ${i} closed`)
      })
    )
    // 10 sessions whose server resets mid-request.
    await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const c = new Client(resetting.port)
        c.socket.write(pattern(500, i + 50))
        await within(c.closed, `reset client ${i} closed`)
      })
    )
    // 5 sessions abandoned (reset: a FIN alone is a half-close, which may still want a reply)
    // while their connect hangs; the connect timer must go with them.
    const opened = collect(stuck.balancer, 'sessionOpen', 5)
    const waiting = Array.from({ length: 5 }, () => new Client(stuck.port))
    await opened
    const closed = collect(stuck.balancer, 'sessionClose', 5)
    for (const c of waiting) c.socket.resetAndDestroy()
    await closed

    for (const b of balancers) await within(b.close(), 'balancer close')
    for (const b of balancers) t.same(b.sessions(), [], 'no session left in the table')
    t.equal(served.balancer.counters().active, 0)
    await until(
      () => echo.connections === 0 && reset.connections === 0,
      'backends to see every connection closed'
    )
    t.equal(echo.connections, 0, 'the echo backend holds no connection')
    t.equal(reset.connections, 0, 'the reset backend holds no connection')
    t.equal(echo.accepted, 30)
    const snaps = balancers.flatMap((b) => b.listenerSnapshots().flatMap((l) => l.backends))
    t.same(
      snaps.filter((b) => b.active !== 0).map((b) => `${b.name}: ${b.active}`),
      [],
      'every backend slot was given back'
    )
  } finally {
    for (const b of balancers) await closeHard(b)
    for (const s of [...backends, dead]) await s.close()
  }

  // Closed handles leave the list on the next turn of the loop; bounded, so a leak fails the test.
  let after = resources()
  await until(
    () => {
      after = resources()
      return KINDS.every((k) => after[k] <= before[k])
    },
    'handles to be released',
    { timeoutMs: 2000 }
  ).catch(() => {})
  t.equal(
    after.TCPSocketWrap,
    before.TCPSocketWrap,
    `no socket left (${after.TCPSocketWrap} vs ${before.TCPSocketWrap})`
  )
  t.equal(after.TCPServerWrap, before.TCPServerWrap, 'no listening socket left')
  t.ok(after.Timeout <= before.Timeout, `no timer left (${after.Timeout} vs ${before.Timeout} before)`)
})
