/**
 * The replay buffer alone, without sockets (lib/replay/buffer.ts): what it holds after pushes and
 * releases at any offset, that it writes back exactly the held bytes as views of the pushed chunks
 * (an insert where asked, nothing past `upTo`), the shared budget, and the compaction of a long
 * session's array. A seeded random run checks it against a plain model.
 */
import type { Socket } from 'node:net'
import t from 'tap'
import { ReplayBudget, ReplayBuffer } from '../../lib/replay/buffer.js'
import { between, mulberry32 } from '../framing/helpers/frames.js'

/** Collects what `writeTo` writes; answers `flowing` to every write. */
function sink(flowing = true): { socket: Socket; parts: Buffer[]; data: () => Buffer } {
  const parts: Buffer[] = []
  const socket = {
    write: (b: Buffer): boolean => {
      parts.push(b)
      return flowing
    },
  } as unknown as Socket
  return { socket, parts, data: () => Buffer.concat(parts) }
}

const b = (s: string): Buffer => Buffer.from(s)

t.test('push and release at any offset; the budget follows', async (t) => {
  const budget = new ReplayBudget(100)
  const r = new ReplayBuffer(budget)
  t.equal(r.chunkCount, 0)
  r.push(b('abc'))
  r.push(b('defg'))
  r.push(b('hi'))
  t.same([r.start, r.end, r.bytes, budget.total, r.chunkCount], [0, 9, 9, 9, 3])
  r.release(2)
  t.same([r.start, r.bytes, budget.total, r.chunkCount], [2, 7, 7, 3], 'inside the first chunk')
  r.release(7)
  t.same([r.start, r.bytes, budget.total, r.chunkCount], [7, 2, 2, 1], 'across chunks')
  r.release(5)
  t.equal(r.start, 7, 'an older offset releases nothing')
  r.release(50)
  t.same([r.start, r.end, r.bytes, budget.total, r.chunkCount], [9, 9, 0, 0, 0], 'past the end: clamped')
  r.push(b('jk'))
  t.same([r.start, r.end, budget.total], [9, 11, 2], 'offsets go on')
  r.reset(20)
  t.same([r.start, r.end, r.bytes, budget.total, r.chunkCount], [20, 20, 0, 0, 0], 'reset')
  t.notOk(budget.exceeded)
  const other = new ReplayBuffer(budget)
  other.push(Buffer.alloc(101))
  t.ok(budget.exceeded, 'one budget for every buffer of the process')
})

t.test('writeTo writes the held bytes, as views of the chunks pushed', async (t) => {
  const r = new ReplayBuffer(new ReplayBudget(1 << 20))
  // Each chunk with memory of its own (not a slice of Node's shared pool), so sharing is telling.
  const own = (s: string): Buffer => Buffer.from(new Uint8Array(b(s)).buffer)
  const chunks = [own('GET /a\r\n'), own('GET /b\r\n'), own('GET /c\r\n')]
  for (const c of chunks) r.push(c)
  r.release(12)
  const s = sink()
  t.ok(r.writeTo(s.socket))
  t.equal(s.data().toString(), '/b\r\nGET /c\r\n')
  t.ok(
    s.parts.every((p) => chunks.some((c) => c.buffer === p.buffer)),
    'no copy: every part shares memory with a pushed chunk'
  )
  t.equal(r.peek(6).toString(), '/b\r\nGE', 'peek copies the first bytes')
  t.equal(r.peek(100).toString(), '/b\r\nGET /c\r\n')
  const slow = sink(false)
  t.notOk(r.writeTo(slow.socket), 'false when the socket asks to wait for drain')
})

t.test('writeTo with an insert (http1: a Range) and a limit (a head still held back)', async (t) => {
  const r = new ReplayBuffer(new ReplayBudget(1 << 20))
  r.push(b('0123'))
  r.push(b('4567'))
  r.push(b('89'))
  r.release(1)
  const cases: [number, number | undefined, string][] = [
    [0, undefined, '[X]123456789'],
    [2, undefined, '12[X]3456789'],
    [3, undefined, '123[X]456789'],
    [5, undefined, '12345[X]6789'],
    [8, undefined, '12345678[X]9'],
    [2, 7, '12[X]3456'],
  ]
  for (const [at, upTo, want] of cases) {
    const s = sink()
    r.writeTo(s.socket, { at, lines: b('[X]') }, upTo)
    t.equal(s.data().toString(), want, `insert at ${at}${upTo === undefined ? '' : `, up to ${upTo}`}`)
  }
  const s = sink()
  r.writeTo(s.socket, undefined, 4)
  t.equal(s.data().toString(), '123', 'nothing at or past upTo')
})

t.test('a long session: released chunks are dropped from the array, the rest stays right', async (t) => {
  const r = new ReplayBuffer(new ReplayBudget(1 << 30))
  for (let k = 0; k < 200; k++) r.push(b(`${String(k).padStart(3, '0')}|`))
  r.release(150 * 4 + 2)
  t.equal(r.chunkCount, 50)
  const s = sink()
  r.writeTo(s.socket)
  const want = Array.from({ length: 50 }, (_, k) => `${String(k + 150).padStart(3, '0')}|`)
    .join('')
    .slice(2)
  t.equal(s.data().toString(), want)
  r.release(r.end)
  t.equal(r.chunkCount, 0, 'everything answered: nothing held')
})

t.test('random pushes, releases and resets against a model', async (t) => {
  for (const seed of [1, 2, 3, 4, 5]) {
    const rand = mulberry32(seed)
    const budget = new ReplayBudget(1 << 30)
    const r = new ReplayBuffer(budget)
    let model = Buffer.alloc(0)
    let start = 0
    const failures: string[] = []
    for (let step = 0; step < 400 && failures.length === 0; step++) {
      const roll = rand()
      if (roll < 0.5) {
        const c = Buffer.from(Array.from({ length: between(rand, 1, 9) }, () => between(rand, 0, 255)))
        r.push(c)
        model = Buffer.concat([model, c])
      } else if (roll < 0.95) {
        const upTo = start + between(rand, 0, model.length + 3)
        r.release(upTo)
        const cut = Math.min(Math.max(upTo - start, 0), model.length)
        model = model.subarray(cut)
        start += cut
      } else {
        const at = start + model.length + between(rand, 0, 5)
        r.reset(at)
        model = Buffer.alloc(0)
        start = at
      }
      const s = sink()
      r.writeTo(s.socket)
      if (!s.data().equals(model) || r.start !== start || budget.total !== model.length) {
        failures.push(
          `seed ${seed} step ${step}: held ${s.data().length} bytes from ${r.start}, model ${model.length} from ${start}`
        )
      }
    }
    t.same(failures, [], `seed ${seed}: 400 steps agree with the model`)
  }
})
