/**
 * The shared backend check (lib/replay/crash-check.ts): closes of one backend that come together
 * share one probe connect; a check older than JOIN_MS is not joined; a refused backend is dead for
 * every waiter; a cancelled waiter hears nothing.
 */
import t from 'tap'
import { cancelCheck, checkBackend, JOIN_MS, type CheckWaiter } from '../../lib/replay/crash-check.js'
import { echoServer, refusedPort } from '../helpers/servers.js'
import { until, within } from '../helpers/wait.js'

function waiters(n: number): { list: CheckWaiter[]; verdicts: Promise<boolean[]> } {
  const list: CheckWaiter[] = []
  const promises: Promise<boolean>[] = []
  for (let i = 0; i < n; i++) {
    let resolve!: (v: boolean) => void
    promises.push(new Promise<boolean>((r) => (resolve = r)))
    list.push({ checked: (alive) => resolve(alive) })
  }
  return { list, verdicts: Promise.all(promises) }
}

t.test('twenty closes at once share one probe connect', async (t) => {
  const backend = await echoServer('b')
  t.teardown(() => backend.close())
  const w = waiters(20)
  for (const x of w.list) checkBackend(backend, 1000, x)
  const verdicts = await within(w.verdicts, 'verdicts')
  t.same(verdicts, Array(20).fill(true), 'every waiter hears alive')
  await until(() => backend.accepted >= 1, 'the probe accepted')
  // A second probe, had there been one, would have been accepted before a later one: a ping, once
  // the first check is older than JOIN_MS (bounded busy wait), starts its own.
  const t0 = performance.now()
  while (performance.now() - t0 < JOIN_MS + 2);
  const ping = waiters(1)
  checkBackend(backend, 1000, ping.list[0]!)
  await within(ping.verdicts, 'ping')
  await until(() => backend.accepted >= 2, 'the ping accepted')
  t.equal(backend.accepted, 2, 'one probe connect for twenty sessions (and one for the later ping)')
})

t.test('a check older than JOIN_MS is not joined', async (t) => {
  const backend = await echoServer('b')
  t.teardown(() => backend.close())
  const a = waiters(1)
  checkBackend(backend, 1000, a.list[0]!)
  // Hold the event loop past JOIN_MS so the first check is still in flight (bounded busy wait).
  const t0 = performance.now()
  while (performance.now() - t0 < JOIN_MS + 2);
  const b = waiters(1)
  checkBackend(backend, 1000, b.list[0]!)
  t.same(await within(Promise.all([a.verdicts, b.verdicts]), 'verdicts'), [[true], [true]])
  // The probe's connect completes before the server's accept callback runs: wait for it.
  await until(() => backend.accepted === 2, 'the second probe accepted')
  t.equal(backend.accepted, 2, 'a fresh check for the later close')
})

t.test('a refused backend is dead for every waiter; a cancelled waiter hears nothing', async (t) => {
  const refused = await refusedPort()
  const w = waiters(3)
  let cancelledHeard = false
  const cancelled: CheckWaiter = { checked: () => (cancelledHeard = true) }
  for (const x of w.list) checkBackend(refused, 1000, x)
  checkBackend(refused, 1000, cancelled)
  cancelCheck(refused, cancelled)
  t.same(await within(w.verdicts, 'verdicts'), [false, false, false], 'dead')
  t.notOk(cancelledHeard, 'the cancelled waiter was not called')
})

t.test('a close soon after a settled check takes its verdict, asynchronously', async (t) => {
  const backend = await echoServer('b')
  t.teardown(() => backend.close())
  const started = performance.now()
  const first = waiters(1)
  checkBackend(backend, 1000, first.list[0]!)
  await within(first.verdicts, 'first verdict')
  let sync = true
  const second = waiters(1)
  checkBackend(backend, 1000, second.list[0]!)
  const asked = performance.now()
  const verdict = second.verdicts.then((v) => ({ v, sync }))
  sync = false
  const got = await within(verdict, 'second verdict')
  t.same(got.v, [true], 'alive')
  t.equal(got.sync, false, 'never answered synchronously')
  await until(() => backend.accepted >= 1, 'the probe accepted')
  // On a loaded machine the first check may take longer than JOIN_MS: then a second probe is right.
  const expected = asked - started <= JOIN_MS ? 1 : 2
  if (expected === 2) await until(() => backend.accepted >= 2, 'the second probe accepted')
  t.equal(backend.accepted, expected, `probe connects: ${expected} (first check took ${(asked - started).toFixed(2)} ms)`)
})
