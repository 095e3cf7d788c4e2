/**
 * opaque: a server that speaks first (a greeting) pins its session. A replacement server would greet
 * again, and those bytes would not continue the client's stream, so a failure is passed on as a
 * plain proxy would — never replayed.
 */
import net from 'node:net'
import t from 'tap'
import { createBalancer } from '../../lib/index.js'
import { withPlane } from '../helpers/plane.js'

t.test('a greeting server that resets mid-request: client closed, nothing replayed, counted', async (t) => {
  let accepted = 0
  const greeter = net.createServer((s) => {
    accepted++
    s.on('error', () => {})
    s.write('HELLO\n')
    s.once('data', () => s.resetAndDestroy())
  })
  await new Promise<void>((r) => greeter.listen(0, '127.0.0.1', r))
  t.teardown(() => greeter.close())
  const port = (greeter.address() as net.AddressInfo).port
  const balancer = createBalancer(
    withPlane({
      // The same server twice, under two names (two backends of one listener may not share a name).
      listeners: [
        {
          listen: '127.0.0.1:0',
          backends: [
            { name: 'one', host: '127.0.0.1', port },
            { name: 'two', host: '127.0.0.1', port },
          ],
        },
      ],
      log: { level: 'silent' },
    })
  )
  await balancer.listen()
  t.teardown(() => balancer.close(0))

  const client = net.connect(balancer.address().port, '127.0.0.1')
  client.on('error', () => {})
  const chunks: Buffer[] = []
  client.on('data', (c: Buffer) => {
    chunks.push(c)
    if (Buffer.concat(chunks).toString() === 'HELLO\n') client.write('request\n')
  })
  const timer = setTimeout(() => client.destroy(), 5000)
  await new Promise((r) => client.once('close', r))
  clearTimeout(timer)
  t.equal(Buffer.concat(chunks).toString(), 'HELLO\n', 'the client got one greeting, never a second')
  const c = balancer.counters()
  t.equal(c.failovers, 0, 'no failover')
  t.equal(c.unrecoverable, 1, 'counted unrecoverable')
  t.equal(balancer.frontends[0]!.unrecoverableBy.pinned, 1, 'under reason pinned')
  t.equal(accepted, 1, 'no second connection was made')
})
