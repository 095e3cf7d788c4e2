/**
 * Passive marking: a backend whose connects fail `passive.failures` times in a row is skipped for
 * `passive.cooldown`; during the cool-down it costs no connect attempts; afterwards it is tried again.
 */
import t from 'tap'
import type { BackendFailureEvent, Balancer } from '../../lib/balancer.js'
import { oneListener, scope, type Scope } from '../helpers/balancer.js'
import { pattern } from '../helpers/clients.js'
import { echoServer, refusedPort } from '../helpers/servers.js'
import { collect, once, until, within } from '../helpers/wait.js'

/** One client: connect, echo round trip, close; fails the test on a wrong echo or an error. */
async function serve(s: Scope, port: number, i: number): Promise<boolean> {
  const client = s.client(port)
  const data = pattern(512, i + 1)
  const reply = await client.roundTrip(data)
  client.socket.end()
  await within(client.closed, `client ${i} close`)
  return reply.equals(data) && client.error === undefined
}

function backend(balancer: Balancer, name: string) {
  const b = balancer.listenerSnapshots()[0]!.backends.find((x) => x.name === name)
  if (b === undefined) throw new Error(`no backend ${name}`)
  return b
}

t.test('after `failures` consecutive refusals the backend is skipped for the cool-down', async (t) => {
  const s = scope(t)
  const dead = await s.server(refusedPort('dead'))
  const live = await s.server(echoServer('live'))
  // `first` sends every new session to dead while it is usable: each client costs one failure.
  const { balancer, port } = await s.balancer(
    oneListener([dead, live], { balance: 'first', passive: { failures: 3, cooldown: 60_000 } })
  )
  const failures = collect<BackendFailureEvent>(balancer, 'backendFailure', 3)

  for (let i = 0; i < 3; i++) t.ok(await serve(s, port, i), `client ${i} served despite the refusal`)
  const events = await failures
  t.same(
    events.map((e) => e.down),
    [false, false, true],
    'backendFailure says down only on the failure that starts the cool-down'
  )
  let snap = backend(balancer, 'dead')
  t.equal(snap.health, 'down', 'dead is marked down')
  t.equal(snap.consecutiveFailures, 3)
  t.equal(snap.counters.ejections, 1)
  t.equal(balancer.counters().connectErrors, 3)

  balancer.on('backendFailure', () => t.fail('no connect to dead during the cool-down'))
  for (let i = 3; i < 13; i++) {
    if (!(await serve(s, port, i))) t.fail(`client ${i} not served`)
  }
  snap = backend(balancer, 'dead')
  t.equal(balancer.counters().connectErrors, 3, 'no further connect errors during the cool-down')
  t.equal(snap.counters.connectErrors, 3, 'none counted against dead')
  t.equal(balancer.counters().retries, 3, 'and no more retries')
  t.equal(backend(balancer, 'live').counters.sessions, 13, 'live took every session')
  t.equal(snap.health, 'down', 'dead is still down')
})

t.test('failures must be consecutive: a success in between resets the count', async (t) => {
  const s = scope(t)
  // `flaky` is an echo server that we stop and start on the same port.
  const flaky = await echoServer('flaky')
  const flakyPort = flaky.port
  const live = await s.server(echoServer('live'))
  const { balancer, port } = await s.balancer(
    oneListener([{ endpoint: flaky, name: 'flaky' }, live], {
      balance: 'first',
      passive: { failures: 2, cooldown: 60_000 },
    })
  )
  await flaky.close()
  t.ok(await serve(s, port, 0), 'served by live after flaky refused')
  t.equal(backend(balancer, 'flaky').consecutiveFailures, 1)

  const again = await s.server(echoServer('flaky', flakyPort))
  t.ok(await serve(s, port, 1), 'served by flaky again')
  t.equal(again.accepted, 1)
  t.equal(backend(balancer, 'flaky').consecutiveFailures, 0, 'the success reset the count')
  await again.close()

  t.ok(await serve(s, port, 2), 'served by live after one more refusal')
  const snap = backend(balancer, 'flaky')
  t.equal(snap.consecutiveFailures, 1)
  t.equal(snap.health, 'up', 'two failures in total, but not in a row: still up')
})

t.test('after the cool-down the backend is tried again, and one more failure ejects it', async (t) => {
  const s = scope(t)
  const dead = await s.server(refusedPort('dead'))
  const live = await s.server(echoServer('live'))
  const cooldown = 150
  const { balancer, port } = await s.balancer(
    oneListener([dead, live], { balance: 'first', passive: { failures: 2, cooldown } })
  )
  let downAt = 0
  balancer.once('backendFailure', () => balancer.once('backendFailure', () => (downAt = Date.now())))
  for (let i = 0; i < 2; i++) await serve(s, port, i)
  t.equal(backend(balancer, 'dead').health, 'down')
  await until(() => backend(balancer, 'dead').health === 'up', 'cool-down to end', {
    timeoutMs: 5000,
    intervalMs: 10,
  })
  // downAt is read just after Baton's own Date.now() for the ejection; both are whole milliseconds,
  // so the event's reading can be one tick later than the one the cool-down counts from.
  t.ok(Date.now() - downAt >= cooldown - 1, 'the cool-down lasted at least `cooldown`')

  const failure = once<[BackendFailureEvent]>(balancer, 'backendFailure')
  t.ok(await serve(s, port, 2), 'the next client is still served')
  const [event] = await failure
  t.equal(event.backend, 'dead', 'dead was tried again')
  t.equal(event.down, true, 'and one failure put it straight back in cool-down')
  const snap = backend(balancer, 'dead')
  t.equal(snap.health, 'down')
  t.equal(snap.counters.ejections, 2)
  t.equal(snap.counters.connectErrors, 3)
})

t.test('a backend that comes back after its cool-down emits backendUp', async (t) => {
  const s = scope(t)
  const gone = await echoServer('back')
  const backPort = gone.port
  await gone.close()
  const live = await s.server(echoServer('live'))
  const { balancer, port } = await s.balancer(
    oneListener([{ endpoint: gone, name: 'back' }, live], {
      balance: 'first',
      passive: { failures: 1, cooldown: 100 },
    })
  )
  t.ok(await serve(s, port, 0))
  t.equal(backend(balancer, 'back').health, 'down')
  const back = await s.server(echoServer('back', backPort))
  await until(() => backend(balancer, 'back').health === 'up', 'cool-down to end', {
    timeoutMs: 5000,
    intervalMs: 10,
  })
  const up = once<[{ listener: string; backend: string }]>(balancer, 'backendUp')
  t.ok(await serve(s, port, 1))
  const [event] = await up
  t.equal(event.backend, 'back')
  t.equal(back.accepted, 1, 'the session went to the returned backend')
  t.equal(backend(balancer, 'back').consecutiveFailures, 0)
})
