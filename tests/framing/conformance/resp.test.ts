/**
 * Conformance of the RESP framer (tests/framing/helpers/conformance.ts): seeded random request
 * streams (multibulk and inline commands, and lines that get no reply) and reply streams (every
 * RESP2/RESP3 type, nested, with attributes, and pushes between replies), valid or with one fault,
 * and a transaction that pins the session, modelled by the generator.
 */
import t from 'tap'
import { resp } from '../../../lib/framing/resp.js'
import { protocolOf } from '../../../lib/protocols/index.js'
import { conformance, type ConformanceCase } from '../helpers/conformance.js'
import { between, mulberry32 } from '../helpers/frames.js'
import { cmd, randomPush, randomReply, reply } from '../helpers/resp.js'

const OPTIONS = { maxBulkBytes: 32, maxInlineBytes: 40, maxDepth: 4 }

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
  | 'pinned'

const REQUEST_FAULTS: Fault[] = ['oversize request bulk', 'oversize inline', 'malformed request']
const REPLY_FAULTS: Fault[] = ['extra reply', 'bad reply type', 'too deep reply', 'oversize reply bulk']

const COMMANDS = ['GET', 'SET', 'INCR', 'MGET', 'PING', 'HSET', 'LPUSH', 'EXISTS', 'zadd', 'del']

function makeCase(seed: number, fault: Fault): ConformanceCase {
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
  let model: ConformanceCase['model']
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
    case 'pinned':
      // A transaction: a replacement server could not continue it.
      pieces[realIndex(bad)] = { data: rand() < 0.5 ? cmd('MULTI') : Buffer.from('multi\r\n'), real: true }
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

  const segments: { data: Buffer; answers: number }[] = []
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
  const pieceEnds: number[] = []
  let at = 0
  for (const p of pieces) pieceEnds.push((at += p.data.length))
  return {
    name: `seed ${seed}, ${fault}`,
    group: fault,
    requests: Buffer.concat(pieces.map((p) => p.data)),
    responses: Buffer.concat(segments.map((s) => s.data)),
    bounds,
    // A reply may begin once its request is whole; a push any time; an extra reply at the end.
    need: segments.map((s) =>
      s.answers >= 0 ? ends[s.answers]! : s === segments.at(-1) && fault === 'extra reply' ? Infinity : 0
    ),
    model: {
      ...model,
      safe: model.pending === 0 ? true : undefined,
      pinned: requestFault ? undefined : fault === 'pinned',
    },
    requestFault,
    alsoReleases: pieceEnds,
  }
}

const FAULTS: Fault[] = [
  'none',
  'fewer replies',
  'partial request',
  'pinned',
  ...REQUEST_FAULTS,
  ...REPLY_FAULTS,
]
const SEEDS = Array.from({ length: 8 }, (_, k) => k + 1)

conformance(t, {
  factory: resp(OPTIONS),
  resume: protocolOf('resp').resume,
  cases: FAULTS.flatMap((fault) => SEEDS.map((seed) => makeCase(seed, fault))),
  tries: 20,
})
