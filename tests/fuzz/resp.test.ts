/**
 * Fuzzing the RESP framer (lib/framing/resp.ts): valid RESP2/RESP3 streams against the model,
 * mutated streams and noise for crashes, very long commands and replies for memory.
 */
import fc from 'fast-check'
import t from 'tap'
import { resp, type RespOptions } from '../../lib/framing/resp.js'
import { fuzzFramer } from './helpers/suite.js'
import { respStream, TOKENS } from './helpers/streams.js'

/** Bytes a state command kept for the prologue may take: 4 KiB of arguments, their framing. */
const STATE_BYTES = 8 * 1024

/** What a RESP framer may retain: its buffers and stacks, the queue, the session state kept. */
const bound =
  (o: Required<RespOptions>) =>
  (peak: number): number =>
    4096 + 32 + 4 * 16 * o.maxDepth + 4096 + 16 * Math.max(16, 2 * peak) + STATE_BYTES * (5 + peak)

const options: fc.Arbitrary<Required<RespOptions>> = fc.record({
  maxBulkBytes: fc.integer({ min: 1, max: 64 }),
  maxInlineBytes: fc.integer({ min: 1, max: 80 }),
  maxDepth: fc.integer({ min: 1, max: 6 }),
})
const DEFAULTS = { maxBulkBytes: 512 * 1024 * 1024, maxInlineBytes: 64 * 1024, maxDepth: 64 }

/** A command with `count` arguments after its name, the same argument each time (`count` may be left open). */
function longCommand(name: string, arg: string, count: number, open: boolean): Buffer {
  const head = `*${open ? 2 ** 31 - 1 : count + 1}\r\n$${name.length}\r\n${name}\r\n`
  return Buffer.concat([Buffer.from(head), Buffer.from(arg.repeat(count))])
}

const long = fc
  .record({
    name: fc.constantFrom('AUTH', 'HELLO', 'SELECT', 'CLIENT', 'XREAD', 'ZADD', 'GET', 'MSET', 'SUBSCRIBE'),
    arg: fc.constantFrom('$0\r\n\r\n', '$1\r\nx\r\n', '$5\r\nSETNA\r\n', `$40\r\n${'a'.repeat(40)}\r\n`),
    count: fc.oneof(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 10_000, max: 40_000 })),
    open: fc.boolean(),
    reply: fc.constantFrom('array', 'streamed string', 'streamed array', 'pushes', 'deep', 'inline'),
    replyCount: fc.oneof(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 10_000, max: 40_000 })),
  })
  .map((x) => {
    const client = longCommand(x.name, x.arg, x.count, x.open)
    const n = x.replyCount
    const server = Buffer.from(
      x.reply === 'array'
        ? `*${n}\r\n${':1\r\n'.repeat(n)}`
        : x.reply === 'streamed string'
          ? `$?\r\n${';1\r\nx\r\n'.repeat(n)};0\r\n`
          : x.reply === 'streamed array'
            ? `*?\r\n${'+a\r\n'.repeat(n)}.\r\n`
            : x.reply === 'pushes'
              ? '>1\r\n:1\r\n'.repeat(n)
              : x.reply === 'deep'
                ? '*1\r\n'.repeat(Math.min(n, 64)) + ':1\r\n'
                : `+${'a'.repeat(Math.min(n, 64 * 1024))}\r\n`
    )
    return { factory: resp(), client, server, bound: bound(DEFAULTS) }
  })

fuzzFramer(t, {
  rules: 'resp',
  cases: fc.tuple(options, respStream).map(([o, stream]) => ({
    factory: resp(),
    stream,
    bound: bound(DEFAULTS),
    small: resp(o),
  })),
  tokens: TOKENS.resp,
  long,
})
