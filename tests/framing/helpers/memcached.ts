/**
 * Random memcached traffic for the framer tests (conformance, fuzz): loud exchanges (a request and
 * the exact reply memcached gives it), requests that get no reply, and runs of quiet meta commands
 * ended by `mn`, with CRLF or bare LF line ends.
 */
import { between } from './frames.js'

/** One request: its bytes, whether memcached answers it, and whether it is safe. */
export interface Req {
  data: Buffer
  replies: boolean
  safe: boolean
}

/** One reply (a group of units for a quiet run): each unit with the request index it waits for. */
export interface Group {
  units: { data: Buffer; after: number }[]
  /** The last request this reply answers. */
  last: number
}

export function generator(rand: () => number) {
  const pick = <T>(items: readonly T[]): T => items[between(rand, 0, items.length - 1)]!
  const key = (): string =>
    Array.from({ length: between(rand, 1, 8) }, () => pick('abcxyz019_-:'.split(''))).join('')
  const value = (): Buffer =>
    Buffer.from(
      Array.from({ length: between(rand, 0, 20) }, () => (rand() < 0.1 ? 10 : between(rand, 0, 255)))
    )
  const eol = (): string => (rand() < 0.2 ? '\n' : '\r\n')
  const line = (s: string): Buffer => Buffer.from(s + eol(), 'latin1')
  const crlf = (s: string): Buffer => Buffer.from(`${s}\r\n`, 'latin1')
  const block = (head: string, data: Buffer, ending = '\r\n'): Buffer =>
    Buffer.concat([Buffer.from(head + ending, 'latin1'), data, Buffer.from('\r\n')])
  const valueReply = (k: string, cas: boolean): Buffer => {
    const v = value()
    return block(`VALUE ${k} ${between(rand, 0, 9)} ${v.length}${cas ? ` ${between(rand, 1, 1e6)}` : ''}`, v)
  }
  const metaValue = (): Buffer => {
    const v = value()
    return block(`VA ${v.length}${rand() < 0.5 ? ' t-1 f0' : ''}`, v)
  }

  /** A loud (answered) exchange: the request, and its reply. */
  const exchange = (): { req: Req; reply: Buffer[] } => {
    const kind = pick([
      'get', 'gets', 'gat', 'set', 'add', 'replace', 'append', 'cas', 'delete', 'incr', 'touch',
      'mg', 'ms', 'md', 'ma', 'mn', 'version', 'stats', 'unknown',
    ] as const) // prettier-ignore
    switch (kind) {
      case 'get':
      case 'gets':
      case 'gat': {
        const keys = Array.from({ length: between(rand, 1, 3) }, key)
        const head = kind === 'gat' ? `gat ${between(rand, 0, 99)}` : kind
        const hits = keys.filter(() => rand() < 0.6).map((k) => valueReply(k, kind === 'gets'))
        const end = rand() < 0.1 ? crlf('SERVER_ERROR out of memory') : crlf('END')
        return {
          req: { data: line(`${head} ${keys.join(' ')}`), replies: true, safe: true },
          reply: [...hits, end],
        }
      }
      case 'set':
      case 'add':
      case 'replace':
      case 'append': {
        const v = value()
        const req = block(
          `${kind} ${key()} ${between(rand, 0, 9)} ${between(rand, 0, 99)} ${v.length}`,
          v,
          eol()
        )
        return {
          req: { data: req, replies: true, safe: kind === 'set' || kind === 'replace' },
          reply: [crlf(pick(['STORED', 'NOT_STORED', 'SERVER_ERROR out of memory storing object']))],
        }
      }
      case 'cas': {
        const v = value()
        const req = block(`cas ${key()} 0 0 ${v.length} ${between(rand, 1, 999)}`, v, eol())
        return {
          req: { data: req, replies: true, safe: false },
          reply: [crlf(pick(['STORED', 'EXISTS', 'NOT_FOUND']))],
        }
      }
      case 'delete':
        return {
          req: { data: line(`delete ${key()}`), replies: true, safe: true },
          reply: [crlf(pick(['DELETED', 'NOT_FOUND']))],
        }
      case 'incr':
        return {
          req: {
            data: line(`${pick(['incr', 'decr'])} ${key()} ${between(rand, 1, 9)}`),
            replies: true,
            safe: false,
          },
          reply: [crlf(pick([String(between(rand, 0, 1e9)), 'NOT_FOUND']))],
        }
      case 'touch':
        return {
          req: { data: line(`touch ${key()} 30`), replies: true, safe: true },
          reply: [crlf(pick(['TOUCHED', 'NOT_FOUND']))],
        }
      case 'mg':
        return {
          req: {
            data: line(`mg ${key()} ${pick(['v', 'v t f', 's', 'k v O123'])}`),
            replies: true,
            safe: true,
          },
          reply: [rand() < 0.5 ? metaValue() : crlf(pick(['EN', 'HD', 'HD t30']))],
        }
      case 'ms': {
        const v = value()
        const mode = pick(['', ' MS', ' ME', ' MA', ' C77', ' T30'])
        return {
          req: {
            data: block(`ms ${key()} ${v.length}${mode}`, v, eol()),
            replies: true,
            safe: ['', ' MS', ' T30'].includes(mode),
          },
          reply: [crlf(pick(['HD', 'NS', 'EX', 'NF']))],
        }
      }
      case 'md':
        return {
          req: { data: line(`md ${key()}`), replies: true, safe: true },
          reply: [crlf(pick(['HD', 'NF']))],
        }
      case 'ma':
        return {
          req: { data: line(`ma ${key()} v`), replies: true, safe: false },
          reply: [rand() < 0.5 ? metaValue() : crlf('NF')],
        }
      case 'mn':
        return { req: { data: line('mn'), replies: true, safe: true }, reply: [crlf('MN')] }
      case 'version':
        return { req: { data: line('version'), replies: true, safe: true }, reply: [crlf('VERSION 1.6.18')] }
      case 'stats': {
        const stats = Array.from({ length: between(rand, 0, 4) }, () =>
          crlf(`STAT ${key()} ${between(rand, 0, 1e6)}`)
        )
        return { req: { data: line('stats'), replies: true, safe: true }, reply: [...stats, crlf('END')] }
      }
      default: {
        // Answered ERROR, nothing done: unknown commands are not re-sent; a malformed set is
        // still a set (the table's word), and re-sending it does nothing either.
        const [text, safe] = pick([
          ['', false],
          ['bogus', false],
          ['GET a', false],
          ['set k 0 0', true],
          ['set k 0 0 x', true],
        ] as const)
        return { req: { data: line(text), replies: true, safe }, reply: [crlf('ERROR')] }
      }
    }
  }

  /** A request that gets no reply. */
  const silent = (): Req => {
    const v = value()
    return {
      data: pick([
        () => block(`set ${key()} 0 0 ${v.length} noreply`, v, eol()),
        () => line(`delete ${key()} noreply`),
        () => line(`incr ${key()} 1 noreply`),
        () => line(`touch ${key()} 10 noreply`),
      ])(),
      replies: false,
      safe: true,
    }
  }

  /** A run of quiet meta commands and the `mn` that ends it: each may or may not answer. */
  const quietRun = (): { reqs: Req[]; answers: (Buffer | undefined)[] } => {
    const reqs: Req[] = []
    const answers: (Buffer | undefined)[] = []
    for (let n = between(rand, 1, 3); n > 0; n--) {
      const kind = pick(['mg', 'ms', 'md'])
      if (kind === 'mg') {
        reqs.push({ data: line(`mg ${key()} v q`), replies: true, safe: true })
        answers.push(rand() < 0.5 ? metaValue() : undefined) // a miss (EN) is not sent
      } else if (kind === 'ms') {
        const v = value()
        reqs.push({ data: block(`ms ${key()} ${v.length} q`, v, eol()), replies: true, safe: true })
        answers.push(rand() < 0.3 ? crlf('NS') : undefined) // success (HD) is not sent
      } else {
        reqs.push({ data: line(`md ${key()} q`), replies: true, safe: true })
        answers.push(rand() < 0.3 ? crlf('NF') : undefined)
      }
    }
    reqs.push({ data: line('mn'), replies: true, safe: true })
    answers.push(crlf('MN'))
    return { reqs, answers }
  }
  return { exchange, silent, quietRun, crlf, block }
}
