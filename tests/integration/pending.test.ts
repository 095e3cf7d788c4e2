/**
 * Client bytes that arrive while the server connection is still being set up are held and sent on
 * in order once it is up; past `maxPendingBytes` Baton stops reading the client until then.
 *
 * To make "while connecting" long and certain, the first backend is a blackhole (its connect hangs
 * until `connectTimeout`) and the second an echo server: the session spends the whole connect
 * timeout in the `connecting` state with the client writing at full speed.
 */
import { randomBytes } from 'node:crypto'
import t from 'tap'
import type { Balancer } from '../../lib/balancer.js'
import type { SessionSnapshot } from '../../lib/table.js'
import { oneListener, scope } from '../helpers/balancer.js'
import { blackholeServer, echoServer, refusedPort, sha256 } from '../helpers/servers.js'
import { BULK_MS, within } from '../helpers/wait.js'

const KiB = 1024
const MiB = 1024 * KiB

/** Records of 8 bytes, `index` big-endian twice: easy to check for order and loss. */
function records(n: number): Buffer[] {
  return Array.from({ length: n }, (_, i) => {
    const b = Buffer.alloc(8)
    b.writeUInt32BE(i, 0)
    b.writeUInt32BE(i, 4)
    return b
  })
}

/**
 * The session as it was when its first connect failed (still connecting): taken in the event's
 * listener, before the retry starts (a retry to a loopback backend can be up by the next tick).
 */
function atFirstFailure(balancer: Balancer): Promise<SessionSnapshot> {
  return within(
    new Promise<SessionSnapshot>((resolve, reject) => {
      balancer.once('backendFailure', () => {
        const [snap] = balancer.sessions()
        if (snap === undefined) reject(new Error('no session at the first connect failure'))
        else resolve(snap)
      })
    }),
    'the first connect failure'
  )
}

t.test('bytes sent before the server connection is up arrive in order', async (t) => {
  const s = scope(t)
  const hole = await s.server(blackholeServer())
  const echo = await s.server(echoServer())
  const { balancer, port } = await s.balancer(
    oneListener([hole, echo], { balance: 'first', connectTimeout: 200, retries: 1 })
  )
  const snapshot = atFirstFailure(balancer)

  // 2000 small writes, the first ones queued before the client's own connect completes.
  const client = s.client(port)
  const recs = records(2000)
  for (const r of recs) client.socket.write(r)
  const expected = Buffer.concat(recs)
  const echoed = client.read(expected.length)

  const held = await snapshot
  t.equal(held.state, 'connecting', 'at the first connect timeout the session was still connecting')
  if (balancer.frontends[0]!.acceptPlane === 'native')
    t.equal(
      held.bytesFromClient,
      0,
      'accepted by the plane: nothing read before the attach, the bytes wait in the kernel'
    )
  else t.equal(held.bytesFromClient, expected.length, 'and Baton had already read every client byte')
  const got = await echoed
  t.equal(got.length, expected.length, 'every byte came back')
  t.ok(got.equals(expected), 'in the order written')
})

t.test('a first connect that is refused: early bytes still arrive in order', async (t) => {
  const s = scope(t)
  const dead = await s.server(refusedPort('dead'))
  const echo = await s.server(echoServer())
  const { port } = await s.balancer(
    oneListener([dead, echo], { balance: 'first', passive: { failures: 100 } })
  )
  for (let round = 0; round < 5; round++) {
    const client = s.client(port)
    const recs = records(500)
    for (const r of recs) client.socket.write(r)
    const expected = Buffer.concat(recs)
    const got = await client.read(expected.length)
    if (!got.equals(expected)) t.fail(`round ${round}: echo differs`)
    client.destroy()
  }
  t.pass('5 rounds of 500 writes made before the first connect failed came back in order')
})

// Run on both data paths: the plain splice (`replay: 'none'`, no framer) and the default one, where
// client bytes also go to the replay buffer. `maxPendingBytes` is documented for both.
for (const replay of ['none', 'safe'] as const) {
  t.test(
    `maxPendingBytes (replay: ${replay}): past the cap Baton stops reading the client until connected`,
    async (t) => {
      const s = scope(t)
      const hole = await s.server(blackholeServer())
      const echo = await s.server(echoServer())
      const cap = 16 * KiB
      const { balancer, port } = await s.balancer(
        oneListener([hole, echo], {
          balance: 'first',
          connectTimeout: 300,
          retries: 1,
          maxPendingBytes: cap,
          replay,
        })
      )
      const snapshot = atFirstFailure(balancer)
      const payload = randomBytes(8 * MiB)
      const client = s.client(port)
      const echoed = client.digest(BULK_MS)
      const writing = client.write(payload, BULK_MS)

      const held = await snapshot
      t.equal(held.state, 'connecting')
      // One more read of up to 64 KiB may land after the cap, plus the readable stream's own buffer.
      // A client the plane accepted is not read at all until the attach (Node's bound holds too).
      const bound = cap + 256 * KiB
      if (balancer.frontends[0]!.acceptPlane === 'native')
        t.equal(held.bytesFromClient, 0, 'accepted by the plane: nothing read while connecting')
      else t.ok(held.bytesFromClient >= cap, `Baton read ${held.bytesFromClient} bytes, at least the cap`)
      t.ok(
        held.bytesFromClient <= bound,
        `while connecting Baton read only ${held.bytesFromClient} of ${payload.length} bytes (bound ${bound})`
      )
      await writing
      client.socket.end()
      const got = await echoed
      t.same(
        got,
        { bytes: payload.length, sha256: sha256(payload) },
        'all 8 MiB came back intact once connected'
      )
      await within(client.closed, 'client close')
    }
  )
}
