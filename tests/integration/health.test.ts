/**
 * Active health checks drive backend selection: a backend whose check fails `fall` times gets no
 * new sessions and its warm pool is emptied; once it passes `rise` times it takes sessions again.
 */
import net from 'node:net'
import t from 'tap'
import { createBalancer, type BackendFailureEvent } from '../../lib/index.js'
import { within } from '../helpers/wait.js'
import { withPlane } from '../helpers/plane.js'

/** Echo for data; answers an HTTP health GET with `status()`. */
async function backend(status: () => number): Promise<net.Server> {
  const srv = net.createServer((s) => {
    s.on('error', () => {})
    s.once('data', (d: Buffer) => {
      if (d.toString('latin1').startsWith('GET /health ')) {
        s.end(`HTTP/1.1 ${status()} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`)
      } else {
        s.write(d)
        s.pipe(s)
      }
    })
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  return srv
}

function echoOnce(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1')
    const timer = setTimeout(() => c.destroy(new Error('timeout')), 3000)
    c.on('error', reject)
    c.once('data', (d: Buffer) => {
      clearTimeout(timer)
      c.destroy()
      resolve(d.toString())
    })
    c.write('ping')
  })
}

t.test('http check: a failing backend is skipped, and comes back', async (t) => {
  let aStatus = 200
  const a = await backend(() => aStatus)
  const b = await backend(() => 200)
  t.teardown(() => {
    a.close()
    b.close()
  })
  const balancer = createBalancer(
    withPlane({
      listeners: [
        {
          listen: '127.0.0.1:0',
          balance: 'first',
          backends: [a, b].map((s, i) => ({
            name: i === 0 ? 'a' : 'b',
            host: '127.0.0.1',
            port: (s.address() as net.AddressInfo).port,
          })),
          healthCheck: { type: 'http', path: '/health', interval: 30, rise: 2, fall: 2 },
        },
      ],
      log: { level: 'silent' },
    })
  )
  await balancer.listen()
  t.teardown(() => balancer.close(0))
  const port = balancer.address().port
  t.equal(await echoOnce(port), 'ping', 'served while healthy')
  t.equal(balancer.listenerSnapshots()[0]!.backends[0]!.counters.sessions, 1, 'by a (first)')

  const down = new Promise<BackendFailureEvent>((resolve) =>
    balancer.on('backendFailure', (e: BackendFailureEvent) => e.backend === 'a' && e.down && resolve(e))
  )
  aStatus = 500
  await down
  t.equal(balancer.listenerSnapshots()[0]!.backends[0]!.health, 'down', 'a reported down')
  await echoOnce(port)
  t.equal(balancer.listenerSnapshots()[0]!.backends[1]!.counters.sessions, 1, 'the next session went to b')

  const up = new Promise<void>((resolve) =>
    balancer.on('backendUp', (e: { backend: string }) => e.backend === 'a' && resolve())
  )
  aStatus = 200
  await up
  await echoOnce(port)
  t.equal(balancer.listenerSnapshots()[0]!.backends[0]!.counters.sessions, 2, 'a takes sessions again')
})

t.test('a backend down at a reload is still seen coming back up', async (t) => {
  let aStatus = 500
  const a = await backend(() => aStatus)
  const b = await backend(() => 200)
  t.teardown(() => {
    a.close()
    b.close()
  })
  const listener = {
    name: 'web',
    listen: '127.0.0.1:0',
    balance: 'first' as const,
    backends: [a, b].map((s, i) => ({
      name: i === 0 ? 'a' : 'b',
      host: '127.0.0.1',
      port: (s.address() as net.AddressInfo).port,
    })),
    healthCheck: { type: 'http' as const, path: '/health', interval: 30, rise: 2, fall: 2 },
  }
  const balancer = createBalancer(withPlane({ listeners: [listener], log: { level: 'silent' } }))
  await balancer.listen()
  t.teardown(() => balancer.close(0))
  const down = new Promise<void>((resolve) =>
    balancer.on('backendFailure', (e: BackendFailureEvent) => e.backend === 'a' && e.down && resolve())
  )
  await down
  const port = balancer.address().port
  await balancer.reload(
    withPlane({
      listeners: [{ ...listener, maxConnections: 100 }],
      log: { level: 'silent' },
    })
  )
  t.equal(balancer.listenerSnapshots()[0]!.backends[0]!.health, 'down', 'still down after the reload')
  const up = new Promise<void>((resolve) =>
    balancer.on('backendUp', (e: { backend: string }) => e.backend === 'a' && resolve())
  )
  aStatus = 200
  await within(up, 'a seen up again', 5000)
  await echoOnce(port)
  t.equal(balancer.listenerSnapshots()[0]!.backends[0]!.counters.sessions, 1, 'a takes sessions again')
})
