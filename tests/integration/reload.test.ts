/**
 * Reload (SIGHUP, POST /api/reload) applies a new config without dropping a live session: a removed
 * backend drains, new sessions go to the new one; an invalid config changes nothing; listeners are
 * added and removed.
 */
import net from 'node:net'
import t from 'tap'
import { ConfigError, createBalancer, type ConfigInput } from '../../lib/index.js'
import { withPlane } from '../helpers/plane.js'

async function echo(): Promise<net.Server> {
  const srv = net.createServer((s) => {
    s.on('error', () => {})
    s.pipe(s)
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  return srv
}
const addr = (s: net.Server): string => `127.0.0.1:${(s.address() as net.AddressInfo).port}`

function roundTrip(c: net.Socket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no echo within 3 s')), 3000)
    c.once('data', (d: Buffer) => {
      clearTimeout(timer)
      resolve(d.toString())
    })
    c.write(text)
  })
}

async function connect(port: number): Promise<net.Socket> {
  const c = net.connect(port, '127.0.0.1')
  await new Promise<void>((r, j) => c.once('connect', r).once('error', j))
  return c
}

t.test('backends replaced, listener added, live session kept, invalid config refused', async (t) => {
  const a = await echo()
  const b = await echo()
  t.teardown(() => {
    a.close()
    b.close()
  })
  const config = (backends: string[], extra: ConfigInput['listeners'] = []): ConfigInput => ({
    listeners: [{ name: 'web', listen: '127.0.0.1:0', backends }, ...extra],
    log: { level: 'silent' as const },
  })
  const balancer = createBalancer(withPlane(config([addr(a)])))
  await balancer.listen()
  t.teardown(() => balancer.close(0))
  const port = balancer.address('web').port
  // A reload keeps the bound listener: give the running port in the new config.
  const same = (backends: string[], extra: ConfigInput['listeners'] = []): ConfigInput => {
    const c = config(backends, extra)
    c.listeners[0] = { ...c.listeners[0]!, listen: `127.0.0.1:${port}` }
    return c
  }
  await balancer.reload(withPlane(same([addr(a)])))

  const live = await connect(port)
  t.teardown(() => live.destroy())
  t.equal(await roundTrip(live, 'one'), 'one', 'a live session on a')

  const result = await balancer.reload(
    withPlane(same([addr(b)], [{ name: 'extra', listen: '127.0.0.1:0', backends: [addr(b)] }]))
  )
  t.same(result.backendsAdded, [`web/${addr(b)}`])
  t.same(result.backendsRemoved, [`web/${addr(a)}`])
  t.same(result.listenersAdded, ['extra'])
  t.equal(await roundTrip(live, 'two'), 'two', 'the live session on the removed backend carries on')

  const fresh = await connect(port)
  t.teardown(() => fresh.destroy())
  await roundTrip(fresh, 'x')
  const web = balancer.listenerSnapshots().find((l) => l.name === 'web')!
  t.equal(web.backends.length, 1)
  t.equal(web.backends[0]!.name, addr(b))
  t.equal(web.backends[0]!.counters.sessions, 1, 'the new session went to b')
  const extra = await connect(balancer.address('extra').port)
  t.equal(await roundTrip(extra, 'e'), 'e', 'the added listener serves')
  extra.destroy()

  await t.rejects(
    balancer.reload(withPlane({ listeners: [{ listen: 1 }] })),
    ConfigError,
    'an invalid config is refused'
  )
  t.equal(await roundTrip(live, 'three'), 'three', 'and nothing changed')
  const removed = await balancer.reload(withPlane(same([addr(b)])))
  t.same(removed.listenersRemoved, ['extra'], 'a listener removed')
})
