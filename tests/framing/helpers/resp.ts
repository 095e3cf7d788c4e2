/**
 * Helpers for the RESP framer tests: request and reply encoders, and a seeded random reply of any
 * RESP2/RESP3 type, nested.
 */
import { between } from './frames.js'

const b = (s: string): Buffer => Buffer.from(s)

/** A command as a RESP multibulk request. */
export function cmd(...args: (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [b(`*${args.length}\r\n`)]
  for (const arg of args) {
    const data = typeof arg === 'string' ? b(arg) : arg
    parts.push(b(`$${data.length}\r\n`), data, b('\r\n'))
  }
  return Buffer.concat(parts)
}

/** An inline command, CRLF-terminated unless `lf`. */
export const inline = (line: string, lf = false): Buffer => b(line + (lf ? '\n' : '\r\n'))

const agg = (type: string, items: readonly Buffer[], count = items.length): Buffer =>
  Buffer.concat([b(`${type}${count}\r\n`), ...items])

/** Reply encoders, one per RESP type. */
export const reply = {
  simple: (s: string): Buffer => b(`+${s}\r\n`),
  error: (s: string): Buffer => b(`-${s}\r\n`),
  int: (n: number | bigint): Buffer => b(`:${n}\r\n`),
  bulk: (s: string | Buffer | null): Buffer =>
    s === null
      ? b('$-1\r\n')
      : Buffer.concat([b(`$${Buffer.byteLength(s)}\r\n`), typeof s === 'string' ? b(s) : s, b('\r\n')]),
  array: (items: readonly Buffer[] | null): Buffer => (items === null ? b('*-1\r\n') : agg('*', items)),
  null: (): Buffer => b('_\r\n'),
  double: (n: string): Buffer => b(`,${n}\r\n`),
  bool: (v: boolean): Buffer => b(`#${v ? 't' : 'f'}\r\n`),
  blobError: (s: string): Buffer => b(`!${Buffer.byteLength(s)}\r\n${s}\r\n`),
  verbatim: (s: string): Buffer => b(`=${Buffer.byteLength(s) + 4}\r\ntxt:${s}\r\n`),
  big: (s: string): Buffer => b(`(${s}\r\n`),
  map: (pairs: readonly (readonly [Buffer, Buffer])[]): Buffer => agg('%', pairs.flat(), pairs.length),
  set: (items: readonly Buffer[]): Buffer => agg('~', items),
  /** An attribute: it goes before the reply it annotates (`value`), and is part of it. */
  attribute: (pairs: readonly (readonly [Buffer, Buffer])[], value: Buffer): Buffer =>
    Buffer.concat([agg('|', pairs.flat(), pairs.length), value]),
  push: (items: readonly Buffer[]): Buffer => agg('>', items),
  /** RESP3 streamed string: `$?` then `;len` chunks, `;0` to end (an empty piece would end it: left out). */
  streamedString: (pieces: readonly string[]): Buffer =>
    Buffer.concat([
      b('$?\r\n'),
      ...pieces.filter((p) => p !== '').map((p) => b(`;${Buffer.byteLength(p)}\r\n${p}\r\n`)),
      b(';0\r\n'),
    ]),
  /** RESP3 streamed aggregate (`*?`, `%?`, `~?`…), ended by `.`. */
  streamed: (type: string, items: readonly Buffer[]): Buffer =>
    Buffer.concat([b(`${type}?\r\n`), ...items, b('.\r\n')]),
}

/** One of each type, nested a little: what a Redis 7 server may send, and a few it never does. */
export function everyReply(): { name: string; data: Buffer; error: boolean }[] {
  const r = reply
  const list: [string, Buffer, boolean?][] = [
    ['simple string', r.simple('OK')],
    ['error', r.error('ERR unknown command'), true],
    ['integer', r.int(-42)],
    ['bulk string', r.bulk('hello\r\nworld')],
    ['empty bulk string', r.bulk('')],
    ['null bulk string', r.bulk(null)],
    ['array', r.array([r.bulk('a'), r.int(1), r.null()])],
    ['empty array', r.array([])],
    ['null array', r.array(null)],
    ['null', r.null()],
    ['double', r.double('3.14')],
    ['boolean', r.bool(true)],
    ['blob error', r.blobError('SYNTAX invalid'), true],
    ['verbatim string', r.verbatim('Some string')],
    ['big number', r.big('3492890328409238509324850943850943825024385')],
    ['map', r.map([[r.simple('key'), r.array([r.int(1), r.map([[r.bulk('k'), r.bool(false)]])])]])],
    ['empty map', r.map([])],
    ['set', r.set([r.simple('a'), r.simple('b')])],
    ['attribute then reply', r.attribute([[r.simple('ttl'), r.int(3600)]], r.array([r.int(2), r.int(3)]))],
    [
      'attribute nested in an array',
      r.array([r.attribute([[r.simple('key-popularity'), r.double('0.19')]], r.int(2)), r.int(3)]),
    ],
    ['error after an attribute', r.attribute([[r.simple('a'), r.null()]], r.error('ERR x')), true],
    ['streamed string', r.streamedString(['Hell', 'o wor', 'ld'])],
    ['streamed array', r.streamed('*', [r.int(1), r.streamed('%', [r.simple('a'), r.int(2)])])],
    ['deep nesting', r.array([r.array([r.array([r.array([r.set([r.map([[r.int(1), r.array([])]])])])])])])],
  ]
  return list.map(([name, data, error = false]) => ({ name, data, error }))
}

/**
 * A random reply (never a push, nor an error unless `errors`), nested up to `depth` more levels.
 * `leafs` bounds the simple values, so a reply stays small.
 */
export function randomReply(rand: () => number, depth: number, errors = true): Buffer {
  const r = reply
  const text = (max: number): string =>
    Array.from({ length: between(rand, 0, max) }, () =>
      String.fromCharCode(between(rand, 0, 9) === 0 ? 10 : between(rand, 0x61, 0x7a))
    ).join('')
  const word = (): string => text(6).replace(/\n/g, 'x')
  const kind = between(rand, 0, depth > 0 ? 17 : 10)
  const items = (): Buffer[] =>
    Array.from({ length: between(rand, 0, 3) }, () => randomReply(rand, depth - 1, false))
  switch (kind) {
    case 0:
      return r.simple(word())
    case 1:
      return errors ? r.error(`ERR ${word()}`) : r.int(between(rand, -1000, 1000))
    case 2:
      return r.int(between(rand, -1000, 1000))
    case 3:
      return r.bulk(rand() < 0.2 ? null : text(12))
    case 4:
      return r.null()
    case 5:
      return r.double(`${between(rand, -99, 99)}.5`)
    case 6:
      return r.bool(rand() < 0.5)
    case 7:
      return errors ? r.blobError(`ERR ${text(8)}`) : r.big(`${between(rand, 0, 1e9)}`)
    case 8:
      return r.verbatim(text(8))
    case 9:
      return r.big(`${between(rand, 0, 1e9)}${between(rand, 0, 1e9)}`)
    case 10:
      return r.array(rand() < 0.1 ? null : [])
    case 11:
    case 12:
      return r.array(items())
    case 13: {
      const pairs = Array.from(
        { length: between(rand, 0, 2) },
        () => [randomReply(rand, depth - 1, false), randomReply(rand, depth - 1, false)] as const
      )
      return r.map(pairs)
    }
    case 14:
      return r.set(items())
    case 15: {
      const pairs = Array.from(
        { length: between(rand, 1, 2) },
        () => [r.simple(word()), randomReply(rand, depth - 1, false)] as const
      )
      return r.attribute(pairs, randomReply(rand, depth - 1, errors))
    }
    case 16:
      return r.streamedString(Array.from({ length: between(rand, 1, 3) }, () => text(5)))
    default:
      return r.streamed('*', items())
  }
}

/** A random push (out-of-band), as a RESP3 server sends for invalidations or pub/sub. */
export function randomPush(rand: () => number, depth: number): Buffer {
  const items = [reply.bulk('invalidate'), randomReply(rand, depth, false)]
  return reply.push(items)
}
