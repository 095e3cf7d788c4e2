/**
 * Property: how the bytes are cut never changes what the RESP framer finds. For seeded random
 * request streams (multibulk and inline commands, and lines that get no reply) and reply streams
 * (every type, nested, with attributes, and pushes between replies), valid or with one fault, feeding
 * them whole, cut at every point, cut at random, one byte at a time, and interleaved at random gives
 * the same answers, final pending() and error. The requests-first feed is checked against a model
 * built by the generator; every step is checked against `responseOpen`/`openStart` and the rule
 * "pending() is 0 exactly when every client byte seen is released".
 */
import { isDeepStrictEqual } from 'node:util'
import t from 'tap'
import { resp } from '../../lib/framing/resp.js'
import type { Framer } from '../../lib/framing/types.js'
import { between, cut, feed, mulberry32, steps, type Step } from './helpers/frames.js'
import { cmd, randomPush, randomReply, reply } from './helpers/resp.js'

const OPTIONS = { maxBulkBytes: 32, maxInlineBytes: 40, maxDepth: 4 }
const factory = resp(OPTIONS)

type Fault =
  | 'none'
  | 'fewer replies'
  | 'partial request'
  | 'extra reply'
  | 'oversize request bulk'
  | 'oversize inline'
  | 'malformed request'
  | 'bad reply type'
  | 'too deep reply'
  | 'oversize reply bulk'

const REQUEST_FAULTS: Fault[] = ['oversize request bulk', 'oversize inline', 'malformed request']
const REPLY_FAULTS: Fault[] = ['extra reply', 'bad reply type', 'too deep reply', 'oversize reply bulk']

interface Segment {
  data: Buffer
  /** The real request (index) this reply answers; -1 for a push, or a reply with none. */
  answers: number
}

interface Case {
  name: string
  requests: Buffer
  replies: Buffer
  /** Client offset where each real request ends. */
  requestEnds: number[]
  segments: Segment[]
  /** Server offsets where each segment begins, then the end of the last. */
  bounds: number[]
  model: { answered: number[]; pending: number; code: string | undefined }
  requestFault: boolean
}

const COMMANDS = ['GET', 'SET', 'INCR', 'MGET', 'PING', 'HSET', 'LPUSH', 'EXISTS', 'zadd', 'del']

function makeCase(seed: number, fault: Fault): Case {
  const rand = mulberry32(seed * 7919 + fault.length * 31 + fault.charCodeAt(0))
  const word = (): string =>
    Array.from({ length: between(rand, 1, 6) }, () => String.fromCharCode(between(rand, 0x61, 0x7a))).join('')
  const binary = (): Buffer =>
    Buffer.from(Array.from({ length: between(rand, 0, 10) }, () => between(rand, 0, 255)))
  const request = (): Buffer => {
    const name = COMMANDS[between(rand, 0, COMMANDS.length - 1)]!
    const argc = between(rand, 0, 3)
    if (rand() < 0.3) {
      const args = Array.from({ length: argc }, word)
      return Buffer.from(`${[name, ...args].join(' ')}${rand() < 0.5 ? '\r\n' : '\n'}`)
    }
    return cmd(name, ...Array.from({ length: argc }, binary))
  }
  const NOOPS = ['\r\n', '\n', '  \r\n', '*0\r\n', '*-1\r\n']
  const noop = (): Buffer => Buffer.from(NOOPS[between(rand, 0, NOOPS.length - 1)]!)

  const count = between(rand, 3, 8)
  // Real requests, each followed by 0 to 2 lines that get no reply.
  const pieces: { data: Buffer; real: boolean }[] = []
  for (let k = 0; k < count; k++) {
    pieces.push({ data: request(), real: true })
    for (let n = rand() < 0.3 ? between(rand, 1, 2) : 0; n > 0; n--)
      pieces.push({ data: noop(), real: false })
  }
  const bad = between(rand, 0, count - 1)
  let replyCount = count
  let model: Case['model']
  let requestFault = false
  // End offsets: of each real request, and where its release reaches (the no-reply lines after it).
  const realEnds = (): { ends: number[]; releases: number[] } => {
    const ends: number[] = []
    const releases: number[] = []
    let at = 0
    for (const p of pieces) {
      at += p.data.length
      if (p.real) {
        ends.push(at)
        releases.push(at)
      } else {
        releases[releases.length - 1] = at
      }
    }
    return { ends, releases }
  }
  const realIndex = (k: number): number => pieces.findIndex((p) => p.real && k-- === 0)
  switch (fault) {
    case 'none':
    case 'fewer replies':
    case 'extra reply':
    case 'bad reply type':
    case 'too deep reply':
    case 'oversize reply bulk':
      break
    case 'partial request': {
      // Cut the last real request; drop what follows it.
      const at = realIndex(count - 1)
      pieces.length = at + 1
      const last = pieces[at]!.data
      pieces[at] = { data: last.subarray(0, between(rand, 1, last.length - 1)), real: true }
      replyCount = between(rand, 0, count - 1)
      break
    }
    case 'oversize request bulk':
    case 'oversize inline':
    case 'malformed request': {
      const data =
        fault === 'oversize request bulk'
          ? cmd('SET', 'k', Buffer.alloc(OPTIONS.maxBulkBytes + between(rand, 1, 5), 0x78))
          : fault === 'oversize inline'
            ? Buffer.from(`SET k ${'v'.repeat(OPTIONS.maxInlineBytes)}\r\n`)
            : Buffer.from(`*2\r\n$3\r\nGET\r\n${rand() < 0.5 ? '+k' : '$x'}\r\n`)
      pieces[realIndex(bad)] = { data, real: true }
      requestFault = true
      break
    }
  }
  const { ends, releases } = realEnds()
  if (fault === 'fewer replies') replyCount = between(rand, 0, count - 1)

  const segments: Segment[] = []
  const pushes = (): void => {
    for (let n = rand() < 0.25 ? between(rand, 1, 2) : 0; n > 0; n--) {
      segments.push({ data: randomPush(rand, 1), answers: -1 })
    }
  }
  for (let k = 0; k < replyCount; k++) {
    pushes()
    let data = randomReply(rand, 3)
    if (k === bad && fault === 'bad reply type') {
      data = Buffer.concat([Buffer.from('*2\r\n:1\r\n'), Buffer.from('?x\r\n')])
    } else if (k === bad && fault === 'too deep reply') {
      data = Buffer.concat([Buffer.from('*1\r\n'.repeat(OPTIONS.maxDepth + 1)), reply.int(1)])
    } else if (k === bad && fault === 'oversize reply bulk') {
      data = reply.array([reply.int(1), reply.bulk('x'.repeat(OPTIONS.maxBulkBytes + 1))])
    }
    segments.push({ data, answers: k })
  }
  pushes()
  if (fault === 'extra reply') segments.push({ data: randomReply(rand, 2), answers: -1 })

  const stop = REPLY_FAULTS.includes(fault) && fault !== 'extra reply' ? bad : replyCount
  switch (fault) {
    case 'extra reply':
      model = { answered: releases, pending: 0, code: 'ERR_BATON_FRAME_MALFORMED' }
      break
    case 'bad reply type':
      model = { answered: releases.slice(0, bad), pending: count - bad, code: 'ERR_BATON_FRAME_MALFORMED' }
      break
    case 'too deep reply':
    case 'oversize reply bulk':
      model = { answered: releases.slice(0, bad), pending: count - bad, code: 'ERR_BATON_FRAME_TOO_LARGE' }
      break
    case 'oversize request bulk':
    case 'oversize inline':
    case 'malformed request':
      model = {
        answered: [],
        pending: bad + 1,
        code: fault === 'malformed request' ? 'ERR_BATON_FRAME_MALFORMED' : 'ERR_BATON_FRAME_TOO_LARGE',
      }
      break
    default:
      model = { answered: releases.slice(0, stop), pending: count - stop, code: undefined }
  }
  const bounds = [0]
  for (const s of segments) bounds.push(bounds.at(-1)! + s.data.length)
  return {
    name: `seed ${seed}, ${fault}`,
    requests: Buffer.concat(pieces.map((p) => p.data)),
    replies: Buffer.concat(segments.map((s) => s.data)),
    requestEnds: ends,
    segments,
    bounds,
    model,
    requestFault,
  }
}

function stepChecker(c: Case): (framer: Framer, step: Step, answered: readonly number[]) => void {
  let client = 0
  let server = 0
  return (framer, step, answered) => {
    if (step.side === 'request') {
      client += step.chunk.length
    } else {
      const base = server
      server += step.chunk.length
      const open = !c.bounds.includes(server)
      const start = c.bounds.filter((b) => b < server).at(-1) ?? 0
      const openStart = open && start >= base ? start - base : -1
      if (framer.responseOpen !== open || framer.openStart !== openStart) {
        throw new Error(
          `at server offset ${server}: responseOpen ${framer.responseOpen}, openStart ${framer.openStart};` +
            ` expected ${open}, ${openStart}`
        )
      }
    }
    for (let k = 1; k < answered.length; k++) {
      if (answered[k]! <= answered[k - 1]!) throw new Error(`answered not increasing: ${answered}`)
    }
    const released = answered.at(-1) ?? 0
    if ((framer.pending() === 0) !== (released === client)) {
      throw new Error(`pending() ${framer.pending()} with ${client - released} client bytes unreleased`)
    }
    if (framer.atBoundary() && framer.pending() !== 0) throw new Error('atBoundary() with requests pending')
  }
}

interface Outcome {
  answered?: number[]
  pending?: number
  error?: unknown
  threw?: string
}

function outcome(c: Case, plan: Step[]): Outcome {
  try {
    const seen = feed(factory, plan, stepChecker(c))
    return { answered: seen.answered, pending: seen.pending, error: seen.error && { ...seen.error } }
  } catch (err) {
    return { threw: (err as Error).message }
  }
}

const sequential = (reqChunks: Buffer[], resChunks: Buffer[]): Step[] => [
  ...steps('request', reqChunks),
  ...steps('response', resChunks),
]

function randomPoints(rand: () => number, length: number, n: number): number[] {
  const points = new Set<number>()
  for (let k = 0; k < n && length > 1; k++) points.add(between(rand, 1, length - 1))
  return [...points].sort((a, b) => a - b)
}

const bytes = (data: Buffer): Buffer[] => Array.from(data, (_, k) => data.subarray(k, k + 1))

/**
 * Client and server chunks of random sizes, interleaved at random, where a reply may begin only
 * once its request is whole (pushes, and the extra reply, once everything before them may).
 */
function interleaved(c: Case, rand: () => number): Step[] {
  const plan: Step[] = []
  let client = 0
  let server = 0
  const allowed = (): number => {
    if (client >= c.requests.length) return c.replies.length
    for (const [k, s] of c.segments.entries()) {
      const need = s.answers >= 0 ? c.requestEnds[s.answers]! : s === c.segments.at(-1) ? Infinity : 0
      if (need > client) return c.bounds[k]!
    }
    return c.replies.length
  }
  while (client < c.requests.length || server < c.replies.length) {
    const room = allowed() - server
    if (client < c.requests.length && (room <= 0 || rand() < 0.5)) {
      const n = Math.min(between(rand, 1, 24), c.requests.length - client)
      plan.push({ side: 'request', chunk: c.requests.subarray(client, (client += n)) })
    } else {
      const n = Math.min(between(rand, 1, 24), room)
      plan.push({ side: 'response', chunk: c.replies.subarray(server, (server += n)) })
    }
  }
  return plan
}

const FAULTS: Fault[] = ['none', 'fewer replies', 'partial request', ...REQUEST_FAULTS, ...REPLY_FAULTS]
const SEEDS = Array.from({ length: 8 }, (_, k) => k + 1)

for (const fault of FAULTS) {
  t.test(fault, async (t) => {
    for (const seed of SEEDS) {
      const c = makeCase(seed, fault)
      const rand = mulberry32(c.requests.length * 31 + c.replies.length)
      const whole = outcome(c, sequential([c.requests], [c.replies]))
      t.same(
        { answered: whole.answered, pending: whole.pending, code: (whole.error as { code?: string })?.code },
        c.model,
        `${c.name}: whole streams match the model${whole.threw ? ` (${whole.threw})` : ''}`
      )
      const failures: string[] = []
      const expect = (label: string, plan: Step[], pick?: (o: Outcome) => unknown): void => {
        const got = outcome(c, plan)
        const same =
          pick === undefined ? isDeepStrictEqual(got, whole) : isDeepStrictEqual(pick(got), pick(whole))
        if (failures.length < 3 && (!same || got.threw !== undefined)) {
          failures.push(`${label}: ${JSON.stringify(got)}`)
        }
      }
      for (let p = 1; p < c.requests.length; p++) {
        expect(`requests cut at ${p}`, sequential(cut(c.requests, [p]), [c.replies]))
      }
      for (let p = 1; p < c.replies.length; p++) {
        expect(`replies cut at ${p}`, sequential([c.requests], cut(c.replies, [p])))
      }
      expect('one byte at a time', sequential(bytes(c.requests), bytes(c.replies)))
      for (let k = 0; k < 20; k++) {
        const reqPoints = randomPoints(rand, c.requests.length, between(rand, 1, 12))
        const resPoints = randomPoints(rand, c.replies.length, between(rand, 1, 12))
        expect(
          `cut at ${reqPoints} / ${resPoints}`,
          sequential(cut(c.requests, reqPoints), cut(c.replies, resPoints))
        )
      }
      // Interleaved, a line that gets no reply is released alone when nothing is pending before
      // it, so only the last release is compared; a fault may stop the framer after more or
      // fewer client bytes, so then only the error.
      if (!c.requestFault) {
        const pick =
          c.model.code === undefined
            ? (o: Outcome): unknown => ({ released: o.answered?.at(-1), pending: o.pending, error: o.error })
            : (o: Outcome): unknown => o.error
        for (let k = 0; k < 20; k++) expect(`interleaving ${k}`, interleaved(c, rand), pick)
      }
      t.same(failures, [], `${c.name}: ${c.requests.length}+${c.replies.length} bytes, every cut agrees`)
    }
  })
}
