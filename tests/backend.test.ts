import t from 'tap'
import { Backend } from '../lib/backend.js'

const config = { host: '127.0.0.1', port: 1, weight: 10, maxConnections: 0 }
const passive = { failures: 3, cooldown: 1000 }

t.test('passive marking: N failures in a row start a cool-down, a success ends it', async (t) => {
  const b = new Backend(config, passive)
  const now = 1_000_000
  t.equal(b.recordFailure('connect', now), 0)
  t.equal(b.recordFailure('server', now), 0)
  t.equal(b.recordFailure('connect', now), 1000, 'the third in a row flips it, for `cooldown`')
  t.ok(b.isDown(now + 999))
  t.notOk(b.isDown(now + 1000), 'the cool-down lasts `cooldown`')
  t.equal(b.counters.connectErrors, 2)
  t.equal(b.counters.serverFailures, 1)
  t.equal(b.recordSuccess(), true, 'a success after a cool-down says it came back')
  t.equal(b.consecutiveFailures, 0)
})

t.test('admin state and active-check health gate usable()', async (t) => {
  const b = new Backend(config, passive)
  t.ok(b.usable())
  b.admin = 'drain'
  t.notOk(b.usable(), 'drain takes no new sessions')
  b.admin = 'ready'
  b.checkedUp = false
  t.notOk(b.usable(), 'down by health check')
  t.equal(b.snapshot().health, 'down')
})

t.test('slow start ramps the effective weight after coming up', async (t) => {
  const b = new Backend(config, passive)
  t.equal(b.weight, 10, 'no ramp without slowStart')
  b.cameUp()
  t.equal(b.weight, 10)
  b.slowStart = 10_000
  b.cameUp(Date.now() - 5000)
  t.ok(b.weight > 4.5 && b.weight < 5.5, `half-way: about half the weight (${b.weight})`)
  b.cameUp(Date.now())
  t.ok(b.weight >= 0.5 && b.weight < 1, `just up: 5% floor (${b.weight})`)
  b.cameUp(Date.now() - 10_000)
  t.equal(b.weight, 10, 'full weight once the ramp is over')
  b.weight = 4
  t.equal(b.baseWeight, 4, 'setting the weight sets the configured one')
})

t.test('repeat ejections: the cool-down grows with each, up to maxCooldown, and is forgiven with time', async (t) => {
  const b = new Backend(config, { failures: 1, cooldown: 1000, maxCooldown: 3500 })
  let now = 1_000_000
  const cooldowns: number[] = []
  for (let i = 0; i < 5; i++) {
    const c = b.recordFailure('connect', now)
    cooldowns.push(c)
    t.ok(b.isDown(now + c - 1) && !b.isDown(now + c), `ejection ${i + 1} lasts ${c} ms`)
    now += c // fails again the moment it is back
  }
  t.same(cooldowns, [1000, 2000, 3000, 3500, 3500], 'cooldown × ejections, capped')
  // Healthy for 3 cool-downs: 3 of the 5 ejections forgiven, the next one counts as the third.
  now += 3000
  t.equal(b.recordFailure('connect', now), 3000)
  t.equal(b.counters.ejections, 6)
})

t.test('mayEject false counts the failure but keeps the backend in', async (t) => {
  const b = new Backend(config, { failures: 1, cooldown: 1000 })
  t.equal(b.recordFailure('connect', 1000, false), 0)
  t.notOk(b.isDown(1000))
  t.equal(b.counters.connectErrors, 1)
  t.equal(b.counters.ejections, 0)
})

t.test('admin and weight changes are told to onChange, once per real change', async (t) => {
  const b = new Backend(config, passive)
  const seen: string[] = []
  b.onChange = (_b, what) => seen.push(`${what}:${what === 'admin' ? b.admin : b.baseWeight}`)
  b.admin = 'drain'
  b.admin = 'drain'
  b.weight = 20
  b.weight = 20
  b.admin = 'ready'
  t.same(seen, ['admin:drain', 'weight:20', 'admin:ready'])
})
