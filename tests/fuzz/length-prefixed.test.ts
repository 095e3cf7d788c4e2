/**
 * Fuzzing the length-prefixed framer (lib/framing/length-prefixed.ts) under every frame layout:
 * valid frame streams against the model, mutated streams and noise for crashes, huge frames and deep
 * pipelines for memory.
 */
import fc from 'fast-check'
import t from 'tap'
import { lengthPrefixed, type LengthPrefixedOptions } from '../../lib/framing/length-prefixed.js'
import { frame } from '../framing/helpers/frames.js'
import { fuzzFramer } from './helpers/suite.js'
import { lpOptions, lpStream, TOKENS } from './helpers/streams.js'

/** Its two header buffers and the ring of end offsets (8 bytes a slot, doubling from 16). */
const bound =
  (o: LengthPrefixedOptions) =>
  (peak: number): number =>
    2048 + 2 * ((o.lengthOffset ?? 0) + o.lengthBytes) + 16 * Math.max(16, 2 * peak)

const long = fc
  .record({
    options: lpOptions.map((o) => ({ ...o, maxFrameBytes: 1 << 20 })),
    body: fc.oneof(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 100_000, max: 1_000_000 })),
    frames: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1000, max: 20_000 })),
  })
  .map(({ options, body, frames }) => {
    // One huge frame, or thousands of small ones pipelined: the ring grows with the pipeline only.
    const max = Math.min(
      body,
      2 ** (8 * Math.min(options.lengthBytes, 3)) - 1 - (options.lengthOffset ?? 0) - options.lengthBytes
    )
    const one = frame(options, Buffer.alloc(Math.max(0, frames > 4 ? Math.min(max, 3) : max), 0x61))
    const client = Buffer.concat(Array.from({ length: frames }, () => one))
    return { factory: lengthPrefixed(options), client, server: client, bound: bound(options) }
  })

fuzzFramer(t, {
  rules: 'length-prefixed',
  cases: lpOptions.chain((o) =>
    lpStream(o).map((stream) => ({ factory: lengthPrefixed(o), stream, bound: bound(o) }))
  ),
  tokens: TOKENS.lp,
  long,
})
