/**
 * The shared backend check (lib/replay/crash-check.ts): only a connect that started after a close
 * answers for it; a session's own connect (a witness) answers without a probe; closes that come
 * together share probes; a refused backend is dead for every waiter; a cancelled waiter hears
 * nothing; no verdict is given synchronously.
 */
import { once } from 'node:events'
import net from 'node:net'
import t from 'tap'
import {
  cancelCheck,
  checkBackend,
  connectStarted,
  witness,
  type CheckWaiter,
} from '../../lib/replay/crash-check.js'
import { echoServer, refusedPort } from '../helpers/servers.js'
import { until, within } from '../helpers/wait.js'

function waiters(n: number): { list: CheckWaiter[]; verdicts: Promise<boolean[]>; heard: () => number } {
  const list: CheckWaiter[] = []
  const promises: Promise<boolean>[] = []
  let heard = 0
  for (let i = 0; i < n; i++) {
    let resolve!: (v: boolean) => void
    promises.push(new Promise<boolean>((r) => (resolve = r)))
    list.push({
      checked: (alive) => {
        heard++
        resolve(alive)
      },
    })
  }
  return { list, verdicts: Promise.all(promises), heard: () => heard }
}

t.test('twenty closes at once: alive for all, from at most two probe connects', async (t) => {
  const backend = await echoServer('b')
  t.teardown(() => backend.close())
  const w = waiters(20)
  for (const x of w.list) checkBackend(backend, 1000, x)
  t.equal(w.heard(), 0, 'never answered synchronously')
  const verdicts = await within(w.verdicts, 'verdicts')
  t.same(verdicts, Array(20).fill(true), 'every waiter hears alive')
  await until(() => backend.accepted >= 1, 'the probe accepted')
  // The first probe starts at the first close; the closes seen after it (even within the same
  // tick) need a check that started later: one more probe for all of them.
  t.ok(backend.accepted <= 2, `probe connects: ${backend.accepted}`)
})

t.test('a witnessing session connect answers a close without a probe; an older one does not', async (t) => {
  const backend = await echoServer('b')
  t.teardown(() => backend.close())
  // A session connect started just now: the backend has traffic, so the close waits for a witness.
  const before = performance.now()
  connectStarted(backend, before)
  const w = waiters(1)
  checkBackend(backend, 1000, w.list[0]!)
  witness(backend, before) // started before the close: it may have reached a listener that died since
  t.equal(w.heard(), 0, 'a connect that started before the close does not answer it')
  const after = performance.now() + 0.001
  connectStarted(backend, after)
  witness(backend, after)
  t.same(await within(w.verdicts, 'verdict'), [true], 'alive, from the later connect')
  t.equal(backend.accepted, 0, 'no probe connect was made')
  // A probe started by checkBackend would be in the backend's accept queue ahead of this one.
  const sentinel = net.connect(backend.port, backend.host)
  t.teardown(() => sentinel.destroy())
  sentinel.write('x')
  await within(once(sentinel, 'data'), 'the sentinel echoed (accepted)')
  t.equal(backend.accepted, 1, 'the sentinel only: no probe connect was made')
})

t.test('a close whose own connect is the latest probes at once: no other session is connecting', async (t) => {
  const backend = await echoServer('b')
  t.teardown(() => backend.close())
  // A lone client in a serial loop: the closing connection's own connect is the backend's latest,
  // so no witness is due and waiting GRACE_MS for one would only add latency to every close.
  const own = performance.now()
  connectStarted(backend, own)
  const w = waiters(1)
  checkBackend(backend, 1000, w.list[0]!, own)
  // A witness arriving now still answers (it started after the close)…
  const after = performance.now() + 0.001
  connectStarted(backend, after)
  witness(backend, after)
  t.same(await within(w.verdicts, 'verdict'), [true], 'alive')
  // …but the probe had already been started, synchronously, by checkBackend: the backend sees it.
  await until(() => backend.accepted === 1, 'the probe reached the backend')
  t.equal(backend.accepted, 1, 'one probe connect, started without the grace')
})

t.test('under churn a close whose own connect is the latest still waits for the witness due', async (t) => {
  const backend = await echoServer('b')
  t.teardown(() => backend.close())
  // Another session connected a moment ago, then the closing one: its own connect is the latest, but
  // the backend has connects coming, so the close waits GRACE_MS for one rather than probing (a
  // probe is one more connection for the backend and holds the close CONFIRM_MS).
  connectStarted(backend, performance.now())
  const own = performance.now() + 0.001
  connectStarted(backend, own)
  const w = waiters(1)
  checkBackend(backend, 1000, w.list[0]!, own)
  const after = performance.now() + 0.001
  connectStarted(backend, after)
  witness(backend, after)
  t.same(await within(w.verdicts, 'verdict'), [true], 'alive, from the witness')
  // A probe started by checkBackend would be in the backend's accept queue ahead of this one.
  const sentinel = net.connect(backend.port, backend.host)
  t.teardown(() => sentinel.destroy())
  sentinel.write('x')
  await within(once(sentinel, 'data'), 'the sentinel echoed (accepted)')
  t.equal(backend.accepted, 1, `the sentinel only: no probe connect was made (accepted: ${backend.accepted})`)
})

t.test('a backend with recent session connects but no witness in time still gets a probe', async (t) => {
  const refused = await refusedPort()
  connectStarted(refused, performance.now())
  const w = waiters(2)
  for (const x of w.list) checkBackend(refused, 1000, x)
  t.same(await within(w.verdicts, 'verdicts'), [false, false], 'dead, from the probe after the grace')
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

t.test('a close while a probe is in flight waits for a check that started after it', async (t) => {
  const backend = await echoServer('b')
  t.teardown(() => backend.close())
  const first = waiters(1)
  checkBackend(backend, 1000, first.list[0]!)
  // Let the clock move past the probe's start (bounded busy wait, well under a millisecond).
  const t0 = performance.now()
  while (performance.now() - t0 < 0.05);
  const second = waiters(1)
  checkBackend(backend, 1000, second.list[0]!)
  t.same(await within(Promise.all([first.verdicts, second.verdicts]), 'verdicts'), [[true], [true]])
  await until(() => backend.accepted === 2, 'the second probe accepted')
  t.equal(backend.accepted, 2, 'a fresh probe for the later close')
})

t.test('every session on the backend waiting: the probe goes out at once, without the grace', async (t) => {
  const backend = await echoServer('b')
  t.teardown(() => backend.close())
  // Under churn (two session connects a moment apart) a close would wait GRACE_MS for a witness,
  // but with `active` sessions all waiting on a check none of them can connect: clients in a closed
  // loop that closed together reconnect only once answered.
  const target = { host: backend.host, port: backend.port, active: 2 }
  connectStarted(target, performance.now())
  connectStarted(target, performance.now() + 0.001)
  const w = waiters(2)
  checkBackend(target, 1000, w.list[0]!)
  checkBackend(target, 1000, w.list[1]!)
  t.same(await within(w.verdicts, 'verdicts'), [true, true], 'alive, both')
  await until(() => backend.accepted === 1, 'the probe reached the backend')
  t.equal(backend.accepted, 1, 'one probe connect, made although connects were due')
})

t.test(
  'under churn an accepted probe counts at once; without churn it must stay up CONFIRM_MS',
  async (t) => {
    // A listener that accepts and resets a millisecond later: a dying process group's listener
    // completing a connect just before the kernel closes it. Held CONFIRM_MS, the probe sees the
    // reset: dead. (The probe's 'connect' is an event of the same loop turn as the accept, so it
    // always comes before the reset.)
    const resetting = net.createServer((s) => {
      s.on('error', () => {})
      setTimeout(() => s.resetAndDestroy(), 1)
    })
    await new Promise<void>((r) => resetting.listen(0, '127.0.0.1', r))
    t.teardown(() => resetting.close())
    const port = (resetting.address() as net.AddressInfo).port
    const quiet = { host: '127.0.0.1', port }
    const lone = waiters(1)
    checkBackend(quiet, 1000, lone.list[0]!)
    t.same(
      await within(lone.verdicts, 'verdict'),
      [false],
      'no churn: the reset within CONFIRM_MS reads dead'
    )
    // The same listener under churn (connects a moment apart, as a witness would be trusted): the
    // probe stands for the witness that did not come, and counts once accepted (the documented case
    // that behaves as a plain proxy).
    const busy = { host: '127.0.0.1', port, active: 1 }
    connectStarted(busy, performance.now())
    connectStarted(busy, performance.now() + 0.001)
    const churn = waiters(1)
    checkBackend(busy, 1000, churn.list[0]!)
    t.same(await within(churn.verdicts, 'verdict'), [true], 'under churn: alive once accepted')
  }
)
