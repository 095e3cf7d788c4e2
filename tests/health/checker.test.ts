import { EventEmitter } from 'node:events'
import type { Socket } from 'node:net'
import t, { type Test } from 'tap'
import { HealthChecker, type CheckerHooks, type CheckerOptions } from '../../lib/health/checker.js'
import type { CheckSpec } from '../../lib/health/checks.js'
import { HOST, TestServer } from '../helpers/servers.js'
import { once, within } from '../helpers/wait.js'

const REDIS: CheckSpec = { type: 'redis' }
/** Short period, no jitter: flips come within a few tens of ms, in a fixed number of checks. */
const FAST: Partial<CheckerOptions> = { interval: 20, timeout: 500, rise: 2, fall: 3, jitter: 0 }

/**
 * A Redis-like backend whose answers follow `script` (true: `+PONG`, false: `-ERR down`), then
 * `healthy`. Counts replies, so a test can check exactly how many results a flip took.
 */
class ScriptedRedis {
  healthy = true
  replies: boolean[] = []
  constructor(
    readonly server: TestServer,
    public script: boolean[] = []
  ) {}

  static async start(t: Test, script: boolean[] = []): Promise<ScriptedRedis> {
    let self: ScriptedRedis | undefined
    const server = await new TestServer('redis', (s: Socket) => {
      s.on('data', () => {
        const ok = self!.script.shift() ?? self!.healthy
        self!.replies.push(ok)
        s.write(ok ? '+PONG\r\n' : '-ERR down\r\n')
      })
      s.on('end', () => s.end())
    }).listen()
    self = new ScriptedRedis(server, script)
    t.teardown(() => server.close())
    return self
  }

  get target(): { host: string; port: number } {
    return { host: HOST, port: this.server.port }
  }
}

/** Flips as events, so a test awaits the next one (bounded) instead of sleeping. */
class Flips extends EventEmitter {
  readonly seen: Array<[boolean, string | undefined]> = []
  readonly listener = (up: boolean, reason: string | undefined): void => {
    this.seen.push([up, reason])
    this.emit('flip', up, reason)
  }
  next(): Promise<[boolean, string | undefined]> {
    return within(once<[boolean, string | undefined]>(this, 'flip'), 'next flip')
  }
}

/** Timer hooks that run real timers but keep count of the ones pending, and of every delay asked. */
class CountedTimers implements Required<Pick<CheckerHooks, 'setTimeout' | 'clearTimeout'>> {
  readonly live = new Set<NodeJS.Timeout>()
  readonly delays: number[] = []
  setTimeout = (fn: () => void, ms: number): NodeJS.Timeout => {
    this.delays.push(ms)
    const timer: NodeJS.Timeout = setTimeout(() => {
      this.live.delete(timer)
      fn()
    }, ms)
    this.live.add(timer)
    return timer
  }
  clearTimeout = (timer: NodeJS.Timeout): void => {
    this.live.delete(timer)
    clearTimeout(timer)
  }
}

function checker(
  t: Test,
  target: { host: string; port: number },
  spec: CheckSpec,
  options: Partial<CheckerOptions>,
  flips: Flips,
  hooks?: CheckerHooks
): HealthChecker {
  const c = new HealthChecker(target, spec, options, flips.listener, hooks)
  t.teardown(() => c.stop())
  return c
}

t.test(
  'goes down after `fall` failures and back up after `rise` successes, flipping once each',
  async (t) => {
    const redis = await ScriptedRedis.start(t)
    const flips = new Flips()
    const c = checker(t, redis.target, REDIS, FAST, flips)
    c.start()
    t.equal(c.up, true, 'up before any check')

    // Let a few healthy checks pass, then break the backend.
    await within(once(redis.server, 'connection'), 'first check')
    redis.healthy = false
    const before = redis.replies.length
    t.same(await flips.next(), [false, 'reply "-ERR down"'], 'flips down with the reason')
    t.equal(c.up, false)
    t.same(redis.replies.slice(before), [false, false, false], 'after exactly `fall` failures')

    redis.healthy = true
    const atDown = redis.replies.length
    t.same(await flips.next(), [true, undefined], 'flips up')
    t.same(redis.replies.slice(atDown), [true, true], 'after exactly `rise` successes')
    t.equal(flips.seen.length, 2, 'one call per flip, none for results that change nothing')
  }
)

t.test('a contrary result resets the count', async (t) => {
  const redis = await ScriptedRedis.start(t, [false, false, true, false, false, true, false, false, false])
  redis.healthy = false
  const flips = new Flips()
  checker(t, redis.target, REDIS, FAST, flips).start()
  t.same(await flips.next(), [false, 'reply "-ERR down"'])
  t.equal(redis.replies.length, 9, 'the first three failures in a row came at the 9th check')
})

t.test('starts down when told, and comes up after `rise` successes', async (t) => {
  const redis = await ScriptedRedis.start(t, [true, false, true, true])
  const flips = new Flips()
  const c = checker(t, redis.target, REDIS, { ...FAST, rise: 2, initiallyUp: false }, flips)
  t.equal(c.up, false)
  c.start()
  t.same(await flips.next(), [true, undefined])
  t.equal(redis.replies.length, 4)
  t.equal(c.checks, 4, 'checks counted')
  t.same(c.last, { ok: true })
})

t.test('a refused backend goes down with the connect error as reason', async (t) => {
  const redis = await ScriptedRedis.start(t)
  const target = redis.target
  await redis.server.close()
  const flips = new Flips()
  checker(t, target, { type: 'tcp' }, { ...FAST, fall: 2 }, flips).start()
  t.same(await flips.next(), [false, 'ECONNREFUSED'])
})

t.test('checks never overlap: the next is scheduled only once the previous settled', async (t) => {
  // A server that never answers: each check runs into its 60 ms timeout, three times the interval.
  const silent = await new TestServer('silent', (s) => s.resume().on('end', () => s.end())).listen()
  t.teardown(() => silent.close())
  const timers = new CountedTimers()
  const flips = new Flips()
  let open = 0
  let maxOpen = 0
  silent.on('connection', () => (maxOpen = Math.max(maxOpen, ++open)))
  silent.on('disconnect', () => open--)
  checker(
    t,
    { host: HOST, port: silent.port },
    REDIS,
    { ...FAST, timeout: 60, fall: 2 },
    flips,
    timers
  ).start()
  t.same(await flips.next(), [false, 'timeout after 60 ms'])
  t.equal(maxOpen, 1, 'one check connection at a time')
  t.ok(
    timers.delays.slice(1).every((ms) => ms === 20),
    'each next check waits a full interval after the last one'
  )
})

t.test(
  'stop() clears the timer and aborts the check in flight: no timers, no sockets, no flips',
  async (t) => {
    const silent = await new TestServer('silent', (s) => s.resume().on('end', () => s.end())).listen()
    t.teardown(() => silent.close())
    const timers = new CountedTimers()
    const flips = new Flips()
    const c = checker(
      t,
      { host: HOST, port: silent.port },
      REDIS,
      { ...FAST, timeout: 60_000, fall: 1 },
      flips,
      timers
    )
    const connected = once(silent, 'connection')
    const disconnected = once(silent, 'disconnect')
    c.start()
    await within(connected, 'a check in flight')
    t.equal(timers.live.size, 0, 'no timer while a check runs (the next is set when it settles)')
    c.stop()
    await within(disconnected, 'the aborted check closed its connection')
    t.equal(timers.live.size, 0, 'no timers after stop()')
    t.equal(silent.connections, 0)
    t.same(flips.seen, [], 'an aborted check is not a failure')
    t.equal(c.checks, 0)

    // Stopped between checks: the pending timer is cleared.
    const redis = await ScriptedRedis.start(t)
    const c2 = checker(t, redis.target, REDIS, FAST, flips, timers)
    c2.start()
    t.equal(timers.live.size, 1, 'first check scheduled')
    c2.stop()
    t.equal(timers.live.size, 0, 'cleared by stop()')
    c2.stop()
    t.equal(timers.live.size, 0, 'stop() twice is harmless')
  }
)

t.test('a stop() and start() while a check is in flight leave a single loop', async (t) => {
  const redis = await ScriptedRedis.start(t)
  const timers = new CountedTimers()
  const flips = new Flips()
  const c = checker(t, redis.target, REDIS, FAST, flips, timers)
  c.start()
  c.start()
  t.equal(timers.live.size, 1, 'start() twice schedules once')
  await within(once(redis.server, 'connection'), 'first check')
  c.stop()
  c.start()
  redis.healthy = false
  t.same(await flips.next(), [false, 'reply "-ERR down"'])
  t.ok(timers.live.size <= 1, 'never more than one pending timer')
})

t.test(
  'jitter spreads each period by ± jitter × interval; the first check by up to one interval',
  async (t) => {
    const redis = await ScriptedRedis.start(t, [false, false])
    const timers = new CountedTimers()
    const flips = new Flips()
    const randoms = [0.5, 0, 1]
    const hooks: CheckerHooks = { ...timers, random: () => randoms.shift() ?? 0.5 }
    const c = checker(t, redis.target, REDIS, { interval: 100, jitter: 0.2, rise: 1, fall: 2 }, flips, hooks)
    c.start()
    await flips.next()
    c.stop()
    t.same(timers.delays, [50, 80, 120], 'start at 0.5 × interval, then interval × (1 ∓ 0.2)')
  }
)

t.test('defaults are HAProxy’s; options are validated at construction', async (t) => {
  const flips = new Flips()
  const c = new HealthChecker({ host: HOST, port: 1 }, { type: 'tcp' }, {}, flips.listener)
  t.same(c.options, { interval: 2000, timeout: 2000, rise: 2, fall: 3, jitter: 0.1, initiallyUp: true })
  t.ok(Object.isFrozen(c.options))
  t.equal(
    new HealthChecker({ host: HOST, port: 1 }, { type: 'tcp' }, { interval: 500 }, flips.listener).options
      .timeout,
    500,
    'timeout follows interval'
  )
  const bad = (o: Partial<CheckerOptions>) => () =>
    new HealthChecker({ host: HOST, port: 1 }, { type: 'tcp' }, o, flips.listener)
  t.throws(bad({ interval: 0 }), RangeError)
  t.throws(bad({ timeout: -1 }), RangeError)
  t.throws(bad({ rise: 0 }), RangeError)
  t.throws(bad({ jitter: 1 }), RangeError)
  t.throws(
    () => new HealthChecker({ host: HOST, port: 1 }, { type: 'http', path: 'x' }, {}, flips.listener),
    TypeError
  )
})
