/**
 * Fuzzing the opaque framer (lib/framing/opaque.ts): turn-taking on any bytes. It keeps no view of
 * a chunk (`viewsSafe`, which lets the reader reuse its buffers): checked on every step.
 */
import fc from 'fast-check'
import t from 'tap'
import { opaque } from '../../lib/framing/opaque.js'
import { fuzzFramer } from './helpers/suite.js'
import { opaqueStream } from './helpers/streams.js'

fuzzFramer(t, {
  rules: 'opaque',
  cases: opaqueStream.map((stream) => ({ factory: opaque, stream, bound: () => 512 })),
  tokens: ['\r\n', '\x00', '\xff'],
  long: fc.integer({ min: 0, max: 1 << 20 }).map((n) => {
    const bytes = Buffer.alloc(n, 0x61)
    return { factory: opaque, client: bytes, server: bytes, bound: () => 512 }
  }),
})
