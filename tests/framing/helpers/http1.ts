/**
 * Helpers for the http1 framer tests: raw HTTP/1.x messages built byte for byte (the framer is
 * strict, so the tests say exactly what goes on the wire), chunked bodies, and the strictness cases
 * (tests/framing/http1.test.ts; the native plane's follower is held to them too,
 * tests/native/follow-agreement.test.ts).
 */
import type { FramingError } from '../../../lib/framing/types.js'

/** A header list: name and value, written as `name: value`. Order and repeats are kept. */
export type Headers = ReadonlyArray<readonly [string, string]>

/** A message: start line, headers, the empty line, then `body` as given (already encoded). */
export function message(startLine: string, headers: Headers = [], body: string = ''): Buffer {
  const head = headers.map(([name, value]) => `${name}: ${value}\r\n`).join('')
  return Buffer.from(`${startLine}\r\n${head}\r\n${body}`, 'latin1')
}

/** A request; `version` defaults to HTTP/1.1. */
export const request = (
  method: string,
  target: string,
  headers: Headers = [],
  body = '',
  version = 'HTTP/1.1'
): Buffer => message(`${method} ${target} ${version}`, headers, body)

/** A response; the reason phrase is `R` unless given. */
export const response = (
  status: number,
  headers: Headers = [],
  body = '',
  reason = 'R',
  version = 'HTTP/1.1'
): Buffer => message(`${version} ${status} ${reason}`, headers, body)

/** A response with a Content-Length body. */
export const sized = (status: number, body: string, headers: Headers = []): Buffer =>
  response(status, [...headers, ['Content-Length', String(body.length)]], body)

/**
 * A chunked body: each part as one chunk (hex size, then `;ext` if given for that chunk), the
 * last chunk (with its own extension if `lastExt`), the trailer fields and the final CRLF.
 */
export function chunked(
  parts: readonly string[],
  options: { exts?: readonly (string | undefined)[]; lastExt?: string; trailers?: Headers } = {}
): string {
  let out = ''
  parts.forEach((part, k) => {
    const ext = options.exts?.[k]
    out += `${part.length.toString(16)}${ext === undefined ? '' : `;${ext}`}\r\n${part}\r\n`
  })
  out += `0${options.lastExt === undefined ? '' : `;${options.lastExt}`}\r\n`
  for (const [name, value] of options.trailers ?? []) out += `${name}: ${value}\r\n`
  return `${out}\r\n`
}

/** Absolute end offsets of `messages` laid end to end. */
export function ends(messages: readonly Buffer[]): number[] {
  const out: number[] = []
  let at = 0
  for (const m of messages) out.push((at += m.length))
  return out
}

export const join = (messages: readonly Buffer[]): Buffer => Buffer.concat(messages)

const h = (text: string): Buffer => Buffer.from(text, 'latin1')

/** A POST with `headers` and `body`. */
export const headed = (headers: Headers, body = ''): Buffer => request('POST', '/', headers, body)

/** Every client-side strictness case: one malformed request each. */
export const CLIENT_CASES: [string, Buffer][] = [
  [
    'both Content-Length and Transfer-Encoding',
    headed([
      ['Content-Length', '3'],
      ['Transfer-Encoding', 'chunked'],
    ]),
  ],
  [
    'Transfer-Encoding before Content-Length',
    headed([
      ['Transfer-Encoding', 'chunked'],
      ['Content-Length', '3'],
    ]),
  ],
  [
    'differing repeated Content-Length',
    headed([
      ['Content-Length', '3'],
      ['Content-Length', '4'],
    ]),
  ],
  ['differing Content-Length in a list', headed([['Content-Length', '3, 4']])],
  ['non-numeric Content-Length', headed([['Content-Length', 'abc']])],
  ['negative Content-Length', headed([['Content-Length', '-1']])],
  ['signed Content-Length', headed([['Content-Length', '+1']])],
  ['empty Content-Length', headed([['Content-Length', '']])],
  ['Content-Length of 16 digits', headed([['Content-Length', '1234567890123456']])],
  ['Transfer-Encoding: chunked, gzip', headed([['Transfer-Encoding', 'chunked, gzip']])],
  ['Transfer-Encoding: identity', headed([['Transfer-Encoding', 'identity']])],
  ['Transfer-Encoding: chunked twice', headed([['Transfer-Encoding', 'chunked, chunked']])],
  [
    'Transfer-Encoding: chunked in two fields, then gzip',
    headed([
      ['Transfer-Encoding', 'chunked'],
      ['Transfer-Encoding', 'gzip'],
    ]),
  ],
  [
    'Transfer-Encoding in HTTP/1.0',
    request('POST', '/', [['Transfer-Encoding', 'chunked']], '0\r\n\r\n', 'HTTP/1.0'),
  ],
  ['non-hex chunk size', headed([['Transfer-Encoding', 'chunked']], 'zz\r\n')],
  ['empty chunk size', headed([['Transfer-Encoding', 'chunked']], '\r\n')],
  ['chunk size of 17 hex digits', headed([['Transfer-Encoding', 'chunked']], '00000000000000001\r\n')],
  ['negative chunk size', headed([['Transfer-Encoding', 'chunked']], '-1\r\n')],
  ['bad chunk terminator', headed([['Transfer-Encoding', 'chunked']], '3\r\nabcX\r\n')],
  ['chunk data without CRLF but LF', headed([['Transfer-Encoding', 'chunked']], '3\r\nabc\n')],
  ['bare LF in a chunk-size line', headed([['Transfer-Encoding', 'chunked']], '3\nabc\r\n')],
  ['bare LF in the request line', h('GET / HTTP/1.1\nHost: a\r\n\r\n')],
  ['bare LF in a header line', h('GET / HTTP/1.1\r\nHost: a\n\r\n')],
  ['bare LF ending the head', h('GET / HTTP/1.1\r\nHost: a\r\n\n')],
  ['bare CR in a header value', h('GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n')],
  ['whitespace between a header name and the colon', h('GET / HTTP/1.1\r\nHost : a\r\n\r\n')],
  ['tab between a header name and the colon', h('GET / HTTP/1.1\r\nContent-Length\t: 0\r\n\r\n')],
  ['obs-fold', h('GET / HTTP/1.1\r\nX-A: a\r\n  folded\r\n\r\n')],
  ['whitespace before the first header', h('GET / HTTP/1.1\r\n Host: a\r\n\r\n')],
  ['invalid header name character', h('GET / HTTP/1.1\r\nX(a): b\r\n\r\n')],
  ['empty header name', h('GET / HTTP/1.1\r\n: b\r\n\r\n')],
  ['header line without a colon', h('GET / HTTP/1.1\r\nHost\r\n\r\n')],
  ['control character in a header value', h('GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n')],
  ['request line without a version', h('GET /\r\n\r\n')],
  ['request line with two spaces', h('GET  / HTTP/1.1\r\n\r\n')],
  ['request line with HTTP/2.0', h('GET / HTTP/2.0\r\n\r\n')],
  ['request line with a lower-case version', h('GET / http/1.1\r\n\r\n')],
  ['request line with a bad method', h('G(T / HTTP/1.1\r\n\r\n')],
  ['request line with trailing space', h('GET / HTTP/1.1 \r\n\r\n')],
  ['request line of garbage', h('\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n')],
]

/** Every server-side strictness case: one malformed response each, and its error code where not MALFORMED. */
export const SERVER_CASES: [string, Buffer, FramingError['code']?][] = [
  [
    'both Content-Length and Transfer-Encoding',
    response(200, [
      ['Content-Length', '3'],
      ['Transfer-Encoding', 'chunked'],
    ]),
  ],
  [
    'differing Content-Length',
    response(200, [
      ['Content-Length', '1'],
      ['Content-Length', '2'],
    ]),
  ],
  ['non-numeric Content-Length', response(200, [['Content-Length', '1a']])],
  ['chunked twice', response(200, [['Transfer-Encoding', 'chunked, chunked']])],
  ['non-hex chunk size', response(200, [['Transfer-Encoding', 'chunked']], 'g\r\n')],
  ['bad chunk terminator', response(200, [['Transfer-Encoding', 'chunked']], '1\r\nab')],
  ['bare LF', h('HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n')],
  ['bare CR', h('HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n')],
  ['whitespace before the colon', h('HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n')],
  ['obs-fold', h('HTTP/1.1 200 OK\r\nA: b\r\n\tc\r\n\r\n')],
  ['invalid name', h('HTTP/1.1 200 OK\r\nA@: b\r\n\r\n')],
  ['status line without a code', h('HTTP/1.1 OK\r\n\r\n')],
  ['status code of two digits', h('HTTP/1.1 20 OK\r\n\r\n')],
  ['status code below 100', h('HTTP/1.1 099 OK\r\n\r\n')],
  ['not HTTP', h('SSH-2.0-OpenSSH_9.6\r\n')],
  ['an empty line for a status line', h('\r\nHTTP/1.1 200 OK\r\n\r\n')],
  ['a head over maxHeadBytes', response(200, [['X', 'x'.repeat(300)]]), 'ERR_BATON_FRAME_TOO_LARGE'],
]
