/**
 * Conformance of the memcached framer (tests/framing/helpers/conformance.ts): seeded random
 * pipelines of classic commands (get/gets/gat with several keys, the storage commands with their
 * data blocks, cas, delete, incr/decr, touch, `noreply` where memcached reads it), meta commands
 * (mg, ms, md, ma, mn; runs of quiet ones ended by `mn`), stats and unknown commands, with CRLF or
 * bare LF line ends, valid or with one fault, modelled by the generator.
 */
import t from 'tap'
import { memcached } from '../../../lib/protocols/memcached/framer.js'
import { protocolOf } from '../../../lib/protocols/index.js'
import { conformance, type ConformanceCase } from '../helpers/conformance.js'
import { between, mulberry32 } from '../helpers/frames.js'
import { generator, type Group, type Req } from '../helpers/memcached.js'

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
  resume: protocolOf('memcached').resume,
  cases: FAULTS.flatMap((fault) => SEEDS.map((seed) => makeCase(seed, fault))),
  tries: 20,
})
