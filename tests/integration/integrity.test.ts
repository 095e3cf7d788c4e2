/**
 * Bulk data through Baton arrives intact: 64 MiB of random bytes each way at the same time,
 * checked with sha256 on both ends.
 */
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { oneListener, scope } from '../helpers/balancer.js'
import { pattern } from '../helpers/clients.js'
import { echoServer, sha256, streamServer, type Digest } from '../helpers/servers.js'
import { BULK_MS, once, until, within } from '../helpers/wait.js'

const MiB = 1024 * 1024

// Both data paths: the plain splice (`replay: 'none'`) and the default, where the opaque framer
// watches the turn-taking. On the default path the server holds its FIN until the client's: a server
// that finishes first while the client is still sending trips the bug that half-close.test.ts pins
// down ("server FIN after the client's last bytes"), which would make this test fail at random.
for (const replay of ['none', 'safe'] as const) {
  t.test(`64 MiB each way at once, intact (replay: ${replay})`, async (t) => {
    const s = scope(t)
    const down = randomBytes(64 * MiB) // server -> client
    const up = randomBytes(64 * MiB) // client -> server
    const server = await s.server(streamServer(down, { endAfterPeer: replay !== 'none' }))
    const { balancer, port } = await s.balancer(oneListener([server], { replay }))

    // allowHalfOpen: the server may finish first, and its FIN must not end the client's upload.
    const client = await s.connect(port, { allowHalfOpen: true })
    const serverDigest = once<[Digest]>(server, 'digest', { timeoutMs: BULK_MS })
    const clientDigest = client.digest(BULK_MS)
    await client.write(up, BULK_MS)
    client.socket.end()

    const [[atServer], atClient] = await Promise.all([serverDigest, clientDigest])
    t.same(atServer, { bytes: up.length, sha256: sha256(up) }, 'the server got every client byte, in order')
    t.same(
      atClient,
      { bytes: down.length, sha256: sha256(down) },
      'the client got every server byte, in order'
    )
    await within(client.closed, 'client close')
    t.equal(client.error, undefined, 'the client saw no error')
    // With replay on, a server FIN while client bytes are unanswered makes Baton check that the
    // backend is alive (a connect that sends nothing) before passing the FIN on: at most one more.
    if (replay === 'none') t.equal(server.accepted, 1, 'over one server connection')
    else
      t.ok(
        server.accepted <= 2,
        `one server connection, plus at most the liveness check (${server.accepted})`
      )

    await until(() => balancer.counters().active === 0, 'the session to end')
    const c = balancer.counters()
    t.equal(c.bytesFromClient, up.length, 'bytesFromClient counts the upload')
    t.equal(c.bytesToClient, down.length, 'bytesToClient counts the download')
    t.equal(c.serverErrors + c.clientErrors, 0)
  })
}

t.test('many small echo round trips on one session keep their order', async (t) => {
  const s = scope(t)
  const echo = await s.server(echoServer())
  const { port } = await s.balancer(oneListener([echo]))
  const client = await s.connect(port)
  for (let i = 0; i < 200; i++) {
    const data = pattern(1 + ((i * 97) % 3000), i + 1)
    const reply = await client.roundTrip(data)
    if (!reply.equals(data)) {
      t.fail(`round trip ${i} came back different`)
      return
    }
  }
  t.pass('200 round trips of 1 to 3000 bytes came back as sent')
})
