/**
 * A listener whose clients the native plane accepts (`nativeAccept`, on by default on the native
 * plane; docs/native-plane.md, "Accepts"): its sessions know the client's address, `nativeAccept:
 * false` keeps Node's accept, and a reload that adds an accept stage hands each new client to Node
 * as an ordinary socket, so the stage applies. Skipped when the addon is not built.
 */
import t from 'tap'
import { backendsOf, scope, type Teardown } from '../helpers/balancer.js'
import { echoServer, HOST } from '../helpers/servers.js'
import { until, within } from '../helpers/wait.js'
import { skip } from './helpers/native-proxy.js'

function listenerConfig(
  port: number,
  extra: Record<string, unknown> = {},
  backends: ReturnType<typeof backendsOf>
) {
  return {
    log: { level: 'silent' as const },
    listeners: [
      { name: 'front', listen: { host: HOST, port }, dataPlane: 'native' as const, backends, ...extra },
    ],
  }
}

/** An echo backend behind a native listener named `front` on a port of its own (`extra` added). */
async function front(t: Teardown, extra: Record<string, unknown> = {}) {
  const s = scope(t)
  const echo = await s.server(echoServer())
  const backends = backendsOf([echo])
  const { balancer, port } = await s.balancer(listenerConfig(0, extra, backends))
  return { s, backends, balancer, port }
}

t.test(
  'the plane accepts: the session has the client address, and a round trip works',
  { skip },
  async (t) => {
    const { s, balancer, port } = await front(t)
    t.equal(balancer.frontends[0]!.acceptPlane, 'native', 'the plane accepts')
    const c = s.client(port)
    const reply = await c.roundTrip(Buffer.from('accepted by the plane'))
    t.equal(reply.toString(), 'accepted by the plane', 'a round trip')
    const [snap] = balancer.sessions()
    t.equal(snap?.client, `${HOST}:${c.socket.localPort}`, `the table shows the client (${snap?.client})`)
    t.equal(balancer.counters().accepted, 1, 'counted as accepted')
  }
)

t.test("nativeAccept: false keeps Node's accept on the native plane", { skip }, async (t) => {
  const { s, balancer, port } = await front(t, { nativeAccept: false })
  t.equal(balancer.frontends[0]!.acceptPlane, 'node', 'Node accepts')
  t.equal(balancer.frontends[0]!.plane, 'native', 'the sessions still run on the plane')
  const c = s.client(port)
  const reply = await c.roundTrip(Buffer.from('accepted by Node'))
  t.equal(reply.toString(), 'accepted by Node', 'a round trip')
})

t.test(
  'a reload that adds an accept stage: new clients go to Node as sockets and the stage applies',
  { skip },
  async (t) => {
    const { s, backends, balancer, port } = await front(t)
    t.equal(balancer.frontends[0]!.acceptPlane, 'native', 'the plane accepts')
    const before = s.client(port)
    t.equal(
      (await before.roundTrip(Buffer.from('before'))).toString(),
      'before',
      'a session before the reload'
    )

    await balancer.reload(listenerConfig(port, { maxConnectionsPerSource: 2 }, backends))
    t.equal(balancer.frontends[0]!.acceptPlane, 'native', 'the listening socket stays with the plane')
    const second = s.client(port)
    t.equal(
      (await second.roundTrip(Buffer.from('second'))).toString(),
      'second',
      'the second client from 127.0.0.1 is served'
    )
    // The stage counts the sessions that passed it; the one from before the reload did not.
    const third = s.client(port)
    t.equal(
      (await third.roundTrip(Buffer.from('third'))).toString(),
      'third',
      "the third is the stage's second: served"
    )
    const fourth = s.client(port)
    const end = await within(fourth.closed, 'the fourth client is refused by the stage')
    t.ok(end.error !== undefined || end.ended, `refused (${end.error ?? 'FIN'})`)
    await until(() => balancer.counters().rejectedPerSource === 1, 'counted as refused per source')
    t.equal(balancer.counters().rejectedPerSource, 1, 'one refused per source')
    t.equal(
      (await before.roundTrip(Buffer.from('still'))).toString(),
      'still',
      'the session from before the reload carries on'
    )
  }
)
