/**
 * opaque: a server that reads to the client's FIN and then closes, leaving the client's last bytes
 * without an answer (an upload acknowledged by the close, a stream each way where the server's
 * finishes first), has ended the conversation: its FIN goes on, nothing is re-sent elsewhere (that
 * would answer twice). The same close while the client still talks is a failover
 * (chaos-regressions.test.ts, 4). Runs on either plane (BATON_TEST_PLANE).
 */
import type { Socket } from 'node:net'
import t from 'tap'
import { oneListener, scope } from '../helpers/balancer.js'
import { TestServer } from '../helpers/servers.js'
import { within } from '../helpers/wait.js'

/** Answers the first chunk with `ack`, reads the rest silently, closes once the client has. */
function ackThenReadToEnd(name: string): Promise<TestServer> {
  return new TestServer(name, (socket: Socket) => {
    socket.once('data', () => socket.write('ack'))
    socket.on('end', () => socket.end())
  }).listen()
}

t.test('the server closes after the client’s FIN, its last bytes unanswered: the FIN goes on', async (t) => {
  const s = scope(t)
  const a = await s.server(ackThenReadToEnd('a'))
  const b = await s.server(ackThenReadToEnd('b'))
  const { balancer, port } = await s.balancer(oneListener([a, b], { balance: 'first' }))
  const client = await s.connect(port, { allowHalfOpen: true })
  const ack = client.read(3)
  client.socket.write('first')
  t.equal((await ack).toString(), 'ack')
  const rest: Buffer[] = []
  client.socket.on('data', (d: Buffer) => rest.push(d))
  client.socket.write('the rest, never answered')
  client.socket.end()
  await within(new Promise((r) => client.socket.once('end', r)), 'the FIN at the client')
  t.equal(Buffer.concat(rest).length, 0, 'nothing more reached the client')
  t.equal(b.accepted, 0, 'nothing was re-sent to another backend')
  const c = balancer.counters()
  t.equal(c.failovers, 0, 'no failover')
  t.equal(c.unrecoverable + c.serverErrors + c.clientErrors, 0)
})
