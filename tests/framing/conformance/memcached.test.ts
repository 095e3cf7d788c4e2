/**
 * Conformance of the memcached framer (tests/framing/helpers/conformance.ts): seeded random
 * pipelines of classic commands (get/gets/gat with several keys, the storage commands with their
 * data blocks, cas, delete, incr/decr, touch, `noreply` where memcached reads it), meta commands
 * (mg, ms, md, ma, mn; runs of quiet ones ended by `mn`), stats and unknown commands, with CRLF or
 * bare LF line ends, valid or with one fault, modelled by the generator.
 */
import t from 'tap'
import { memcached } from '../../../lib/protocols/memcached/framer.js'
import { conformance, type ConformanceCase } from '../helpers/conformance.js'
import { between, mulberry32 } from '../helpers/frames.js'

const OPTIONS = { maxLineBytes: 300, maxValueBytes: 40 }

type Fault =
  | 'none'
  | 'fewer replies'
  | 'partial request'
  | 'extra reply'
  | 'oversize value'
  | 'oversize line'
  | 'long command line'
  | 'binary protocol'
  | 'bad retrieval reply'
  | 'oversize reply value'

const REQUEST_FAULTS: Fault[] = ['oversize value', 'oversize line', 'long command line', 'binary protocol']
const REPLY_FAULTS: Fault[] = ['extra reply', 'bad retrieval reply', 'oversize reply value']

/** One request: its bytes, whether memcached answers it, and whether it is safe. */
interface Req {
  data: Buffer
  replies: boolean
  safe: boolean
}

/** One reply (a group of units for a quiet run): each unit with the request index it waits for. */
interface Group {
  units: { data: Buffer; after: number }[]
  /** The last request this reply answers. */
  last: number
}

function generator(rand: () => number) {
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
      default:
        return {
          req: {
            data: line(pick(['', 'bogus', 'GET a', 'set k 0 0', 'set k 0 0 x'])),
            replies: true,
            safe: false,
          },
          reply: [crlf('ERROR')],
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

function makeCase(seed: number, fault: Fault): ConformanceCase {
  const rand = mulberry32(seed * 7919 + fault.length * 31 + fault.charCodeAt(0))
  const gen = generator(rand)
  const reqs: Req[] = []
  const groups: Group[] = []
  const count = between(rand, 3, 7)
  // The group a fault goes into is a plain exchange (not a quiet run).
  const bad = between(rand, 0, count - 1)
  const faulty =
    fault !== 'none' && fault !== 'fewer replies' && fault !== 'partial request' && fault !== 'extra reply'
  // A few requests with no reply may come first, before anything is pending.
  for (let n = rand() < 0.3 ? between(rand, 1, 2) : 0; n > 0; n--) reqs.push(gen.silent())
  for (let k = 0; k < count; k++) {
    if (rand() < 0.25 && !(faulty && k === bad)) {
      const run = gen.quietRun()
      const first = reqs.length
      reqs.push(...run.reqs)
      const units = run.answers.flatMap((a, j) => (a === undefined ? [] : [{ data: a, after: first + j }]))
      groups.push({ units, last: reqs.length - 1 })
    } else {
      const x = gen.exchange()
      reqs.push(x.req)
      groups.push({ units: x.reply.map((data) => ({ data, after: reqs.length - 1 })), last: reqs.length - 1 })
    }
    while (rand() < 0.25) reqs.push(gen.silent())
  }
  let replyCount = groups.length
  let stopAt = groups.length
  let code: string | undefined
  let requestFault = false
  const badAt = groups[bad]!.last
  /** The request of group `bad` turns bad; nothing after it is sent. */
  const badRequest = (data: Buffer, error: string): void => {
    reqs.length = badAt + 1
    reqs[badAt] = { data, replies: true, safe: false }
    requestFault = true
    code = error
  }
  /** Group `bad`'s reply turns bad: `request` and `reply` replace its exchange. */
  const badReply = (request: string, reply: Buffer, error: string): void => {
    reqs[badAt] = { data: Buffer.from(request), replies: true, safe: true }
    groups[bad] = { units: [{ data: reply, after: badAt }], last: badAt }
    stopAt = bad
    code = error
  }
  switch (fault) {
    case 'fewer replies':
      replyCount = between(rand, 0, groups.length - 1)
      break
    case 'partial request': {
      const last = reqs.at(-1)!
      reqs[reqs.length - 1] = { ...last, data: last.data.subarray(0, between(rand, 1, last.data.length - 1)) }
      // Replies only to whole requests.
      replyCount = between(rand, 0, groups.filter((g) => g.last < reqs.length - 1).length)
      break
    }
    case 'oversize value':
      badRequest(
        gen.block(`set k 0 0 ${OPTIONS.maxValueBytes + between(rand, 1, 5)}`, Buffer.alloc(3)),
        'ERR_BATON_FRAME_TOO_LARGE'
      )
      break
    case 'oversize line':
      badRequest(Buffer.from(`get ${'k '.repeat(OPTIONS.maxLineBytes)}\r\n`), 'ERR_BATON_FRAME_TOO_LARGE')
      break
    case 'long command line':
      // Not a retrieval, over 2048 bytes: memcached closes such a connection, and so does the framer.
      badRequest(Buffer.from(`delete ${'k'.repeat(2100)}\r\n`), 'ERR_BATON_FRAME_TOO_LARGE')
      break
    case 'binary protocol':
      badRequest(Buffer.from([0x80, 0x00, 0x00, 0x01, 0, 0, 0, 0]), 'ERR_BATON_FRAME_MALFORMED')
      break
    case 'extra reply':
      code = 'ERR_BATON_FRAME_MALFORMED'
      break
    case 'bad retrieval reply':
      badReply('get k\r\n', gen.crlf('STORED'), 'ERR_BATON_FRAME_MALFORMED')
      break
    case 'oversize reply value': {
      const v = Buffer.alloc(OPTIONS.maxValueBytes + 1, 0x61)
      badReply('mg k v\r\n', gen.block(`VA ${v.length}`, v), 'ERR_BATON_FRAME_TOO_LARGE')
      break
    }
  }

  const ends: number[] = []
  let at = 0
  for (const r of reqs) ends.push((at += r.data.length))
  const partial = fault === 'partial request'
  const whole = (j: number): boolean => !(partial && j === reqs.length - 1)

  // Server bytes; a reply may begin once its first unit's request is whole, and each later unit of
  // a quiet run waits for its own request (the MN for the mn).
  const parts: Buffer[] = []
  const bounds = [0]
  const need: number[] = []
  const gates: { at: number; need: number }[] = []
  for (const g of requestFault ? [] : groups.slice(0, replyCount)) {
    let s = bounds.at(-1)!
    g.units.forEach((u, j) => {
      if (j === 0) need.push(ends[u.after]!)
      else gates.push({ at: s, need: ends[u.after]! })
      parts.push(u.data)
      s += u.data.length
    })
    bounds.push(s)
  }
  if (fault === 'extra reply') {
    const extra = gen.crlf('STORED')
    parts.push(extra)
    need.push(Infinity)
    bounds.push(bounds.at(-1)! + extra.length)
  }

  // The model, requests first: a request with no reply is released at once while nothing is
  // queued, and with the request before it otherwise; a reply releases its last request and the
  // silent ones after it.
  const answered: number[] = []
  for (let j = 0; j < reqs.length && !reqs[j]!.replies && whole(j); j++) answered.push(ends[j]!)
  const replied = requestFault ? [] : groups.slice(0, Math.min(replyCount, stopAt))
  for (const g of replied) {
    let last = g.last
    while (last + 1 < reqs.length && !reqs[last + 1]!.replies && whole(last + 1)) last++
    answered.push(ends[last]!)
  }
  const lastAnswered = replied.at(-1)?.last ?? -1
  const open = reqs.filter((r, j) => j > lastAnswered && whole(j) && r.replies)
  const pending = open.length + (partial ? 1 : 0)
  return {
    name: `seed ${seed}, ${fault}`,
    group: fault,
    factory: memcached(OPTIONS),
    requests: Buffer.concat(reqs.map((r) => r.data)),
    responses: Buffer.concat(parts),
    bounds,
    need,
    gates,
    model: {
      answered,
      pending,
      code,
      safe: code === undefined ? open.every((r) => r.safe) : undefined,
      pinned: false,
    },
    requestFault,
    alsoReleases: ends,
  }
}

const FAULTS: Fault[] = ['none', 'fewer replies', 'partial request', ...REQUEST_FAULTS, ...REPLY_FAULTS]
const SEEDS = Array.from({ length: 8 }, (_, k) => k + 1)

conformance(t, {
  cases: FAULTS.flatMap((fault) => SEEDS.map((seed) => makeCase(seed, fault))),
  tries: 20,
})
