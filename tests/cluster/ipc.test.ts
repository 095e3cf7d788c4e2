/**
 * The primary ↔ worker request/response (lib/cluster/ipc.ts) without processes: a fake worker
 * whose `send` hands the question to the worker side's `answerAsk` on the next turn, and its reply
 * back to the primary's `Asker.settle`, as node:cluster's IPC channel would.
 */
import type { Worker } from 'node:cluster'
import t from 'tap'
import { answerAsk, Asker } from '../../lib/cluster/ipc.js'
import type { Ask, ToWorker } from '../../lib/cluster/protocol.js'

type AskMsg = Extract<ToWorker, { type: 'baton:ask' }>

interface Fake {
  worker: Worker
  /** Questions received, in order. */
  asked: AskMsg[]
  connected: boolean
}

/**
 * A worker that answers with `answer` (never, when it returns undefined); `sendError`: the channel
 * refuses the question.
 */
function fakeWorker(
  asker: Asker,
  id: number,
  answer: (ask: Ask) => Promise<unknown> | undefined,
  sendError?: Error
): Fake {
  const fake: Fake = { asked: [], connected: true, worker: undefined as unknown as Worker }
  fake.worker = {
    id,
    isConnected: () => fake.connected,
    send: (msg: AskMsg, cb: (err: Error | null) => void) => {
      setImmediate(() => {
        if (sendError !== undefined) return cb(sendError)
        cb(null)
        fake.asked.push(msg)
        const a = answer(msg)
        if (a !== undefined)
          answerAsk(
            msg,
            () => a,
            (reply) => setImmediate(() => asker.settle(reply))
          )
      })
      return true
    },
  } as unknown as Worker
  return fake
}

t.test('a reply settles its question by id: the value, or the error it carried', async (t) => {
  const asker = new Asker()
  const w = fakeWorker(asker, 1, (ask) =>
    ask.op === 'snapshot' ? Promise.resolve({ sessions: 3 }) : Promise.reject(new Error('not started'))
  )
  t.same(await asker.ask(w.worker, { op: 'snapshot' }, 1000), { sessions: 3 })
  await t.rejects(asker.ask(w.worker, { op: 'metrics' }, 1000), { message: 'not started' })
  t.same(
    w.asked.map((m) => [m.type, m.id, m.op]),
    [
      ['baton:ask', 1, 'snapshot'],
      ['baton:ask', 2, 'metrics'],
    ],
    'each question has its own id'
  )
})

t.test('no answer: rejected at the timeout; a reply after it is dropped', async (t) => {
  const asker = new Asker()
  const w = fakeWorker(asker, 1, () => undefined)
  await t.rejects(asker.ask(w.worker, { op: 'snapshot' }, 20), { message: 'no answer within 20 ms' })
  t.equal(w.asked.length, 1)
  // The late reply finds nothing waiting: no throw, nothing settled twice.
  asker.settle({ type: 'baton:reply', id: w.asked[0]!.id, ok: true, value: 1 })
  t.pass('late reply dropped')
})

t.test('the worker exits: its open questions fail at once, those of others wait on', async (t) => {
  const asker = new Asker()
  const gone = fakeWorker(asker, 3, () => undefined)
  const other = fakeWorker(asker, 4, () => undefined)
  const q1 = asker.ask(gone.worker, { op: 'snapshot' }, 10_000)
  const q2 = asker.ask(other.worker, { op: 'snapshot' }, 10_000)
  asker.workerGone(3)
  await t.rejects(q1, { message: 'worker 3 exited' })
  // The other one is still waiting: answer it by hand.
  await new Promise((r) => setImmediate(r))
  t.equal(other.asked.length, 1)
  asker.settle({ type: 'baton:reply', id: other.asked[0]!.id, ok: true, value: 'still here' })
  t.equal(await q2, 'still here')
})

t.test('a worker that is not connected, or a send that fails, rejects without waiting', async (t) => {
  const asker = new Asker()
  const down = fakeWorker(asker, 5, () => Promise.resolve(1))
  down.connected = false
  await t.rejects(asker.ask(down.worker, { op: 'snapshot' }, 10_000), {
    message: 'worker 5 is not connected',
  })
  const broken = fakeWorker(asker, 6, () => Promise.resolve(1), new Error('channel closed'))
  await t.rejects(asker.ask(broken.worker, { op: 'snapshot' }, 10_000), { message: 'channel closed' })
})

t.test('askAll: answers and failures apart, in the order asked; onAnswer for each answer', async (t) => {
  const asker = new Asker()
  const ws = [
    fakeWorker(asker, 1, () => Promise.resolve('one')),
    fakeWorker(asker, 2, () => Promise.reject(new Error('broken'))),
    fakeWorker(asker, 3, () => undefined),
    fakeWorker(asker, 4, () => Promise.resolve('four')),
  ]
  const heard: number[] = []
  const out = await asker.askAll<string, Fake>(ws, { op: 'snapshot' }, 50, (w) => heard.push(w.worker.id))
  t.same(out.answers, [
    { id: 1, value: 'one' },
    { id: 4, value: 'four' },
  ])
  t.same(out.failures, [
    { id: 2, error: 'broken' },
    { id: 3, error: 'no answer within 50 ms' },
  ])
  t.same(heard.sort(), [1, 4])
})
