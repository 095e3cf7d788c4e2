import t from 'tap'
import { Backend } from '../lib/backend.js'

const config = { host: '127.0.0.1', port: 1, weight: 10, maxConnections: 0 }
const passive = { failures: 3, cooldown: 1000 }

t.test('passive marking: N failures in a row start a cool-down, a success ends it', async (t) => {
  const b = new Backend(config, passive)
  const now = 1_000_000
  t.equal(b.recordFailure('connect', now), false)
  t.equal(b.recordFailure('server', now), false)
  t.equal(b.recordFailure('connect', now), true, 'the third in a row flips it')
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
