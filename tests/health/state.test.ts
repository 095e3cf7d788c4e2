import t from 'tap'
import { HealthState } from '../../lib/health/state.js'

/** Feed `results` and return what each observation said. */
function feed(state: HealthState, results: readonly boolean[]): Array<'up' | 'down' | undefined> {
  return results.map((ok) => state.observe(ok))
}

t.test('an up target goes down after `fall` failures in a row, flipping once', async (t) => {
  const s = new HealthState(2, 3)
  t.equal(s.up, true, 'up by default')
  t.same(feed(s, [false, false]), [undefined, undefined])
  t.equal(s.up, true, 'still up after fall - 1 failures')
  t.equal(s.observe(false), 'down', 'the third failure flips')
  t.equal(s.up, false)
  t.same(
    feed(s, [false, false, false, false]),
    [undefined, undefined, undefined, undefined],
    'no repeat flips'
  )
})

t.test('a down target comes up after `rise` successes in a row', async (t) => {
  const s = new HealthState(2, 3, false)
  t.equal(s.up, false, 'initiallyUp = false')
  t.equal(s.observe(true), undefined)
  t.equal(s.observe(true), 'up')
  t.equal(s.up, true)
  t.same(feed(s, [true, true]), [undefined, undefined], 'successes while up change nothing')
})

t.test('a contrary result resets the run', async (t) => {
  const down = new HealthState(2, 3)
  t.same(feed(down, [false, false, true, false, false]), [
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
  ])
  t.equal(down.up, true, 'a success between failures restarts the count')
  t.equal(down.observe(false), 'down', 'three in a row after the reset')

  const up = new HealthState(3, 1, false)
  t.same(feed(up, [true, true, false, true, true]), [undefined, undefined, undefined, undefined, undefined])
  t.equal(up.observe(true), 'up')
  t.equal(up.observe(false), 'down', 'fall 1 flips on the first failure')
})

t.test('the run starts over after a flip', async (t) => {
  const s = new HealthState(2, 2)
  t.same(feed(s, [false, false, true, true, false, false]), [
    undefined,
    'down',
    undefined,
    'up',
    undefined,
    'down',
  ])
})

t.test('rise and fall must be positive integers', async (t) => {
  t.throws(() => new HealthState(0, 3), RangeError)
  t.throws(() => new HealthState(2, 1.5), RangeError)
  t.throws(() => new HealthState(2, Number.NaN), RangeError)
  t.doesNotThrow(() => new HealthState(1, 1))
})
