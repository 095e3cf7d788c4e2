import net from 'node:net'
import t from 'tap'
import { WarmPool } from '../lib/pool/warm-pool.js'

/** Poll `cond` every 10 ms, at most `ms`; resolves true when it held. */
async function until(cond: () => boolean, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (cond()) return true
    await new Promise((r) => setTimeout(r, 10))
  }
  return cond()
}

async function server(onConnection: (s: net.Socket) => void = () => {}): Promise<net.Server> {
  const srv = net.createServer((s) => {
    s.on('error', () => {})
    onConnection(s)
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  return srv
}

t.test('fills to idle, refills at once after takes, hands out checked connections', async (t) => {
  const srv = await server()
  t.teardown(() => srv.close())
  const pool = new WarmPool({ host: '127.0.0.1', port: (srv.address() as net.AddressInfo).port }, { idle: 4, maxAge: 60_000 })
  t.teardown(() => pool.stop())
  pool.start()
  t.ok(await until(() => pool.size === 4), 'filled to 4')
  for (let round = 0; round < 3; round++) {
    const a = pool.take()
    const b = pool.take()
    t.ok(a !== undefined && b !== undefined && a.readyState === 'open', 'two open connections handed out')
    t.equal(a!.listenerCount('data'), 0, 'no pool listener left on a taken socket')
    a!.destroy()
    b!.destroy()
    t.ok(await until(() => pool.size === 4), `refilled after round ${round}`)
  }
  t.equal(pool.taken, 6)
})

t.test('a pooled connection that receives data or is closed is dropped and replaced', async (t) => {
  const sockets: net.Socket[] = []
  const srv = await server((s) => sockets.push(s))
  t.teardown(() => srv.close())
  const pool = new WarmPool({ host: '127.0.0.1', port: (srv.address() as net.AddressInfo).port }, { idle: 2, maxAge: 60_000 })
  t.teardown(() => pool.stop())
  pool.start()
  t.ok(await until(() => pool.size === 2 && sockets.length === 2))
  sockets[0]!.write('unexpected greeting')
  sockets[1]!.end()
  t.ok(await until(() => pool.dropped >= 2), 'both dropped')
  t.ok(await until(() => pool.size === 2 && sockets.length >= 4), 'replaced by new connections')
})

t.test('connections older than maxAge are not handed out', async (t) => {
  const srv = await server()
  t.teardown(() => srv.close())
  const pool = new WarmPool({ host: '127.0.0.1', port: (srv.address() as net.AddressInfo).port }, { idle: 1, maxAge: 50 })
  t.teardown(() => pool.stop())
  pool.start()
  t.ok(await until(() => pool.size === 1))
  t.equal(pool.take(Date.now() + 1000), undefined, 'a stale connection is refused')
  t.ok(pool.dropped >= 1)
})

t.test('a refusing backend: nothing pooled, retries back off, stop() ends everything', async (t) => {
  const srv = await server()
  const port = (srv.address() as net.AddressInfo).port
  await new Promise<void>((r) => srv.close(() => r()))
  const pool = new WarmPool({ host: '127.0.0.1', port }, { idle: 2, maxAge: 60_000 })
  pool.start()
  t.ok(await until(() => pool.dropped >= 4, 3000), 'keeps trying, with back-off')
  t.equal(pool.size, 0)
  t.equal(pool.take(), undefined)
  pool.stop()
  const dropped = pool.dropped
  await new Promise((r) => setTimeout(r, 300))
  t.equal(pool.dropped, dropped, 'no attempts after stop()')
})
