/**
 * Helpers for the http1 framer tests: raw HTTP/1.x messages built byte for byte (the framer is
 * strict, so the tests say exactly what goes on the wire), and chunked bodies.
 */

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
