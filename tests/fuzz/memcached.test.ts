/**
 * Fuzzing the memcached framer (lib/protocols/memcached/framer.ts): valid streams against the
 * model, mutated streams and noise for crashes, very long lines and values for memory.
 *
 * The model is resp's (model.ts): one reply per request, in order; a request that gets none
 * (`noreply`) is released with the one before it, or at once when nothing is pending; a partial
 * request is safe. Quiet meta runs (answered together by their `mn`) do not fit that model: the
 * conformance suite covers them (tests/framing/conformance/memcached.test.ts).
 */
import fc from 'fast-check'
import t from 'tap'
import { memcached, type MemcachedOptions } from '../../lib/protocols/memcached/framer.js'
import { mulberry32 } from '../framing/helpers/frames.js'
import { generator } from '../framing/helpers/memcached.js'
import { StreamBuilder, type Stream } from './helpers/model.js'
import { fuzzFramer } from './helpers/suite.js'

/** Two line buffers (made on first need), the token offsets, the queue of requests in flight. */
const bound = (peak: number): number => 2 * 2048 + 4 * 4 * 32 + 1024 + 16 * Math.max(16, 2 * peak)

/** A valid stream from a seed: loud exchanges and silent requests, no quiet runs. */
const stream: fc.Arbitrary<Stream> = fc
  .record({ seed: fc.integer(), count: fc.integer({ min: 0, max: 8 }) })
  .map(({ seed, count }) => {
    const rand = mulberry32(seed)
    const gen = generator(rand)
    const b = new StreamBuilder()
    for (let k = 0; k < count; k++) {
      if (rand() < 0.25) {
        b.request(gen.silent().data, { kind: 'noop' })
        continue
      }
      const x = gen.exchange()
      const at = b.request(x.req.data, { safe: x.req.safe })
      b.response(Buffer.concat(x.reply), true, at, 'end')
    }
    return b.build()
  })

const TOKENS = [
  '\r\n',
  '\n',
  '\r',
  ' ',
  'noreply',
  ' q',
  'get ',
  'gets a b c\r\n',
  'set k 0 0 5\r\n',
  'set k 0 0 99999999999\r\n',
  'cas k 0 0 1 2 noreply\r\n',
  'ms k 3 q\r\n',
  'mg k v q\r\n',
  'mn\r\n',
  'watch\r\n',
  'quit\r\n',
  'stats\r\n',
  'VALUE k 0 3\r\n',
  'VALUE k 0 999999999999\r\n',
  'VA 2 f\r\n',
  'END\r\n',
  'MN\r\n',
  'HD\r\n',
  'EN\r\n',
  'STORED\r\n',
  'ERROR\r\n',
  'SERVER_ERROR x\r\n',
  '\x80',
]

const options: fc.Arbitrary<MemcachedOptions> = fc.record({
  maxLineBytes: fc.integer({ min: 16, max: 200 }),
  maxValueBytes: fc.integer({ min: 16, max: 100 }),
})

const long = fc
  .record({
    kind: fc.constantFrom('multi-get', 'value', 'stats', 'line'),
    n: fc.oneof(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 10_000, max: 30_000 })),
  })
  .map(({ kind, n }) => {
    const client =
      kind === 'multi-get'
        ? Buffer.from(`get ${'key '.repeat(n)}`)
        : kind === 'value'
          ? Buffer.concat([Buffer.from(`set k 0 0 ${n * 64}\r\n`), Buffer.alloc(n * 64, 0x61)])
          : Buffer.from(kind === 'stats' ? 'stats\r\n' : `x${'y'.repeat(n)}`)
    const server =
      kind === 'stats'
        ? Buffer.from('STAT a 1\r\n'.repeat(n))
        : kind === 'value'
          ? Buffer.from('STORED\r\n')
          : Buffer.alloc(0)
    return { factory: memcached({ maxLineBytes: 1 << 20, maxValueBytes: 1 << 22 }), client, server, bound }
  })

fuzzFramer(t, {
  rules: 'resp',
  cases: fc
    .tuple(options, stream)
    .map(([o, s]) => ({ factory: memcached(), stream: s, bound, small: memcached(o) })),
  tokens: TOKENS,
  long,
})
