/**
 * The request queue (lib/framing/queue.ts): oldest in fields, the rest in a ring allocated at the
 * first pipelined request; `clear()` gives the ring back, so a framer that stops pairing (pass-through,
 * a pinned tunnel) holds no memory for the pipeline it once had. Found by
 * `FUZZ_RUNS=2000 FUZZ_SEED=-1879424316 npx tap tests/fuzz/memcached.test.ts`: a memcached framer
 * that went to pass-through after 17+ pipelined requests kept its grown ring (6,904 bytes retained
 * against a bound of 5,888 for what it still had pending).
 */
import t from 'tap'
import { RequestQueue } from '../../lib/framing/queue.js'
import { retained } from '../fuzz/helpers/fuzz.js'

t.test('order and flags through growth, and unsafe counted', (t) => {
  const q = new RequestQueue(1, 2)
  for (let i = 1; i <= 40; i++) q.push(i * 10, i % 3 === 0 ? 0 : 1)
  t.equal(q.count, 40)
  t.equal(q.unsafe, 13, 'every third one lacks the safe flag')
  const ends: number[] = []
  for (let i = 0; i < 25; i++) ends.push(q.shift())
  t.same(ends, Array.from({ length: 25 }, (_, i) => (i + 1) * 10), 'oldest first')
  q.extendLast(999)
  const rest: number[] = []
  while (q.count > 0) rest.push(q.shift())
  t.equal(rest.at(-1), 999, 'extendLast moved the newest end')
  t.equal(rest.length, 15)
  t.equal(q.unsafe, 0)
  t.end()
})

t.test('a queue that never pipelined holds no ring; clear() gives a grown ring back', (t) => {
  const idle = new RequestQueue(1, 16)
  idle.push(10, 1)
  idle.shift()
  const small = retained(idle).bytes
  const q = new RequestQueue(1, 16)
  for (let i = 1; i <= 100; i++) q.push(i, 1)
  const grown = retained(q).bytes
  t.ok(grown > small + 100 * 8, `a 100-deep pipeline grew the ring: ${grown} bytes against ${small}`)
  q.clear()
  t.equal(q.count, 0)
  t.equal(retained(q).bytes, small, 'after clear() it holds what an idle queue holds')
  // Usable again after clear().
  q.push(5, 0)
  q.push(6, 1)
  t.equal(q.unsafe, 1)
  t.equal(q.shift(), 5)
  t.equal(q.shift(), 6)
  t.end()
})
