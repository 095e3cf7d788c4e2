/** The replay decision as a pure function: every reason, its order, and the yes case. */
import t from 'tap'
import { NOT_REPLAYABLE, whyNotReplay, type FailureFacts } from '../../lib/replay/policy.js'

const ok: FailureFacts = {
  mode: 'safe',
  recording: true,
  pendingSafe: true,
  partial: false,
  delimited: true,
  attempts: 0,
  maxAttempts: 3,
}

t.test('replayable when nothing stands in the way', async (t) => {
  t.equal(whyNotReplay(ok), undefined)
  t.equal(whyNotReplay({ ...ok, mode: 'all', pendingSafe: false }), undefined, "'all' re-sends unsafe requests")
  t.equal(whyNotReplay({ ...ok, partial: true }), undefined, 'a delimited response cut part-way resumes')
  t.equal(whyNotReplay({ ...ok, attempts: 1 }), undefined, 'a second attempt of three')
})

t.test('each reason', async (t) => {
  t.equal(whyNotReplay({ ...ok, mode: 'none' }), NOT_REPLAYABLE.off)
  t.equal(whyNotReplay({ ...ok, recording: false }), NOT_REPLAYABLE.overBound)
  t.equal(whyNotReplay({ ...ok, pendingSafe: false }), NOT_REPLAYABLE.unsafe)
  t.equal(whyNotReplay({ ...ok, partial: true, delimited: false }), NOT_REPLAYABLE.partialOpaque)
  t.equal(whyNotReplay({ ...ok, attempts: 2 }), NOT_REPLAYABLE.attempts)
})

t.test('the first reason wins, in a fixed order', async (t) => {
  const all: FailureFacts = { ...ok, recording: false, pendingSafe: false, partial: true, delimited: false, attempts: 9 }
  t.equal(whyNotReplay({ ...all, mode: 'none' }), NOT_REPLAYABLE.off)
  t.equal(whyNotReplay(all), NOT_REPLAYABLE.overBound)
  t.equal(whyNotReplay({ ...all, recording: true }), NOT_REPLAYABLE.unsafe)
  t.equal(whyNotReplay({ ...all, recording: true, pendingSafe: true }), NOT_REPLAYABLE.partialOpaque)
})
