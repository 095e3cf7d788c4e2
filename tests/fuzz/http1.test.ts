/**
 * Fuzzing the http1 framer (lib/framing/http1.ts): pipelined requests and responses of every body
 * kind against the model, mutated streams and noise (smuggling-shaped fragments among them) for
 * crashes, and endless heads, chunks, trailers and interim responses for memory.
 */
import fc from 'fast-check'
import t from 'tap'
import { DEFAULT_MAX_HEAD_BYTES, http1 } from '../../lib/framing/http1.js'
import { fuzzFramer } from './helpers/suite.js'
import { http1Stream, TOKENS } from './helpers/streams.js'

/** Its two line buffers (each at most maxHeadBytes) and the request queue (two slots a request). */
const bound =
  (maxHead: number) =>
  (peak: number): number =>
    2048 + 2 * maxHead + 32 * Math.max(8, 2 * peak)

const MAX_HEAD = 4096

const long = fc
  .record({
    kind: fc.constantFrom('headers', 'chunks', 'trailers', 'interims', 'body', 'pipeline'),
    count: fc.oneof(fc.integer({ min: 0, max: 50 }), fc.integer({ min: 5000, max: 30_000 })),
    side: fc.boolean(),
  })
  .map(({ kind, count, side }) => {
    const n = count
    const head = side ? 'POST / HTTP/1.1\r\n' : 'HTTP/1.1 200 OK\r\n'
    const message =
      kind === 'headers'
        ? `${head}${'X-A: b\r\n'.repeat(n)}\r\n`
        : kind === 'chunks'
          ? `${head}Transfer-Encoding: chunked\r\n\r\n${'1;e=x\r\na\r\n'.repeat(n)}0\r\n\r\n`
          : kind === 'trailers'
            ? `${head}Transfer-Encoding: chunked\r\n\r\n0\r\n${'T: v\r\n'.repeat(n)}\r\n`
            : kind === 'interims'
              ? `${'HTTP/1.1 100 Continue\r\n\r\n'.repeat(n)}HTTP/1.1 204 No\r\n\r\n`
              : kind === 'body'
                ? `${head}Content-Length: ${n * 100}\r\n\r\n${'a'.repeat(n * 100)}`
                : 'GET / HTTP/1.1\r\n\r\n'.repeat(n)
    const request = Buffer.from(kind === 'interims' || !side ? 'GET / HTTP/1.1\r\n\r\n' : message, 'latin1')
    const response = Buffer.from(
      kind === 'pipeline' ? 'HTTP/1.1 204 No\r\n\r\n'.repeat(n) : side ? 'HTTP/1.1 204 No\r\n\r\n' : message,
      'latin1'
    )
    return {
      factory: http1({ maxHeadBytes: MAX_HEAD }),
      client: request,
      server: response,
      bound: bound(MAX_HEAD),
    }
  })

fuzzFramer(t, {
  rules: 'http1',
  cases: fc.tuple(fc.integer({ min: 64, max: 8192 }), http1Stream).map(([max, stream]) => ({
    factory: http1(),
    stream,
    bound: bound(DEFAULT_MAX_HEAD_BYTES),
    small: http1({ maxHeadBytes: max }),
  })),
  tokens: TOKENS.http1,
  long,
})
