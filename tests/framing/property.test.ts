/**
 * Property: how the bytes are cut into chunks never changes what the length-prefixed framer finds.
 * For seeded random request and response streams (valid ones, and ones with a fault), feeding them
 * whole, cut at every single point, cut into random pieces, one byte at a time, and interleaved at
 * random (a response never before its request has begun) all give the same `answered` offsets, the
 * same final `pending()` and the same error. The whole feed is also checked against a model built
 * from the generator, and every step against `responseOpen`/`openStart` and the invariant
 * "pending() is 0 exactly when every client byte seen is released".
 */
import { isDeepStrictEqual } from 'node:util'
import t from 'tap'
import { lengthPrefixed, type LengthPrefixedOptions } from '../../lib/framing/length-prefixed.js'
import type { Framer } from '../../lib/framing/types.js'
import { between, cut, feed, frame, mulberry32, steps, type Observed, type Step } from './helpers/frames.js'

const MAX = 48

const OPTION_SETS: LengthPrefixedOptions[] = [
  { lengthBytes: 1, maxFrameBytes: MAX },
  { lengthBytes: 2, littleEndian: true, lengthOffset: 1, maxFrameBytes: MAX },
  { lengthBytes: 4, lengthIncludesHeader: true, maxFrameBytes: MAX },
  { lengthBytes: 2, lengthIncludesHeader: true, lengthOffset: 3, maxFrameBytes: MAX },
  { lengthBytes: 8, littleEndian: true, lengthOffset: 2, maxFrameBytes: MAX },
  { lengthBytes: 8, lengthIncludesHeader: true, maxFrameBytes: MAX },
]

const SEEDS = [1, 2, 3]

type Fault =
  | 'none'
  | 'fewer responses'
  | 'partial request'
  | 'extra response'
  | 'oversize request'
  | 'oversize response'
  | 'malformed request'

/** A generated pair of streams, where each response frame begins, and what the framer must report. */
interface Case {
  name: string
  options: LengthPrefixedOptions
  requests: Buffer
  responses: Buffer
  /** Client offset where request frame k begins (for the interleaving rule). */
  requestStarts: number[]
  /** Server offset where response frame k begins, then the end of the last one. */
  responseBounds: number[]
  /** `answered`, `pending` and the error code for requests fed first, then responses. */
  model: { answered: number[]; pending: number; code: string | undefined }
  /** The fault is on the client side: the responses are never parsed. */
  requestFault: boolean
}

function makeCase(options: LengthPrefixedOptions, seed: number, fault: Fault): Case {
  const rand = mulberry32(seed * 7919 + OPTION_SETS.indexOf(options) * 104729 + fault.length)
  const header = (options.lengthOffset ?? 0) + options.lengthBytes
  const bodyMax = MAX - header
  const lead = (): Buffer =>
    Buffer.from(Array.from({ length: options.lengthOffset ?? 0 }, () => between(rand, 0, 255)))
  const body = (): Buffer =>
    Buffer.from(Array.from({ length: between(rand, 0, bodyMax) }, () => between(rand, 0, 255)))
  const good = (): Buffer => frame(options, body(), { lead: lead() })
  const oversize = (): Buffer => {
    const huge = options.lengthBytes === 8 && rand() < 0.5
    const length = huge
      ? 2n ** 53n + BigInt(between(rand, 0, 1000)) * 2n ** 40n
      : BigInt(options.lengthIncludesHeader ? MAX + 1 : bodyMax + 1) + BigInt(between(rand, 0, 3))
    // The header and a little of a body that must never be waited for.
    return Buffer.concat([
      frame(options, '', { length, lead: lead() }),
      Buffer.alloc(between(rand, 0, 5), 0x55),
    ])
  }
  const malformed = (): Buffer => frame(options, '', { length: between(rand, 0, header - 1), lead: lead() })

  const count = between(rand, 4, 10)
  const reqFrames = Array.from({ length: count }, good)
  let resCount = count
  let model: Case['model']
  const ends: number[] = []
  const at = { sum: 0 }
  for (const f of reqFrames) ends.push((at.sum += f.length))
  const bad = between(rand, 0, count - 1)
  switch (fault) {
    case 'none':
      model = { answered: ends, pending: 0, code: undefined }
      break
    case 'fewer responses':
      resCount = between(rand, 0, count - 1)
      model = { answered: ends.slice(0, resCount), pending: count - resCount, code: undefined }
      break
    case 'partial request': {
      const last = reqFrames[count - 1]!
      reqFrames[count - 1] = last.subarray(0, between(rand, 1, last.length - 1))
      resCount = between(rand, 0, count - 1)
      model = { answered: ends.slice(0, resCount), pending: count - resCount, code: undefined }
      break
    }
    case 'extra response':
      resCount = count + 1
      model = { answered: ends, pending: 0, code: 'ERR_BATON_FRAME_MALFORMED' }
      break
    case 'oversize request':
    case 'malformed request':
      reqFrames[bad] = fault === 'malformed request' ? malformed() : oversize()
      model = {
        answered: [],
        pending: bad + 1,
        code: fault === 'malformed request' ? 'ERR_BATON_FRAME_MALFORMED' : 'ERR_BATON_FRAME_TOO_LARGE',
      }
      break
    case 'oversize response':
      model = { answered: ends.slice(0, bad), pending: count - bad, code: 'ERR_BATON_FRAME_TOO_LARGE' }
      break
  }
  const resFrames = Array.from({ length: resCount }, good)
  if (fault === 'oversize response') resFrames[bad] = oversize()

  const requestStarts = [0]
  for (const f of reqFrames) requestStarts.push(requestStarts.at(-1)! + f.length)
  const responseBounds = [0]
  for (const f of resFrames) responseBounds.push(responseBounds.at(-1)! + f.length)
  const o = options
  const name =
    `${o.lengthBytes}B ${o.littleEndian ? 'LE' : 'BE'}${o.lengthIncludesHeader ? ' incl' : ''}` +
    ` off ${o.lengthOffset ?? 0}, seed ${seed}, ${fault}`
  return {
    name,
    options,
    requests: Buffer.concat(reqFrames),
    responses: Buffer.concat(resFrames),
    requestStarts,
    responseBounds,
    model,
    requestFault: fault === 'oversize request' || fault === 'malformed request',
  }
}

/**
 * A per-step check for one feed: `responseOpen`/`openStart` against the response frame bounds,
 * and `pending()` against the client bytes not yet released.
 */
function stepChecker(c: Case): (framer: Framer, step: Step, answered: readonly number[]) => void {
  let client = 0
  let server = 0
  return (framer, step, answered) => {
    if (step.side === 'request') {
      client += step.chunk.length
    } else {
      const base = server
      server += step.chunk.length
      const open = !c.responseBounds.includes(server)
      const start = c.responseBounds.filter((b) => b < server).at(-1) ?? 0
      const openStart = open && start >= base ? start - base : -1
      if (framer.responseOpen !== open || framer.openStart !== openStart) {
        throw new Error(
          `at server offset ${server}: responseOpen ${framer.responseOpen}, openStart ${framer.openStart};` +
            ` expected ${open}, ${openStart}`
        )
      }
    }
    const released = answered.at(-1) ?? 0
    if ((framer.pending() === 0) !== (released === client)) {
      throw new Error(`pending() ${framer.pending()} with ${client - released} client bytes unreleased`)
    }
    if (framer.atBoundary() && framer.pending() !== 0) throw new Error('atBoundary() with requests pending')
  }
}

/** What a feed is compared on: the answers, the final pending() and the error (code and message). */
function outcome(c: Case, plan: Step[]): unknown {
  try {
    const seen = feed(lengthPrefixed(c.options), plan, stepChecker(c))
    return { answered: seen.answered, pending: seen.pending, error: seen.error && { ...seen.error } }
  } catch (err) {
    return { threw: (err as Error).message }
  }
}

/** Requests first, then responses, each cut as given. */
const sequential = (c: Case, reqChunks: Buffer[], resChunks: Buffer[]): Step[] => [
  ...steps('request', reqChunks),
  ...steps('response', resChunks),
]

/** Cut points: `n` distinct random ones inside `length` bytes, ascending. */
function randomPoints(rand: () => number, length: number, n: number): number[] {
  const points = new Set<number>()
  for (let k = 0; k < n && length > 1; k++) points.add(between(rand, 1, length - 1))
  return [...points].sort((a, b) => a - b)
}

const bytes = (data: Buffer): Buffer[] => Array.from(data, (_, k) => data.subarray(k, k + 1))

/**
 * Client and server chunks of random sizes, interleaved at random, where a response frame may
 * begin only once its request has begun (or once every request byte is in, for responses that
 * have no request). The answers then come in the same order as with requests first.
 */
function interleaved(c: Case, rand: () => number): Step[] {
  const plan: Step[] = []
  let client = 0
  let server = 0
  const { requests, responses } = c
  const requestCount = c.requestStarts.length - 1
  /** How far into the responses the client bytes fed so far allow. */
  const allowed = (): number => {
    if (client >= requests.length) return responses.length
    let k = 0 // response frames that may begin: those whose request has begun
    while (k < requestCount && c.requestStarts[k]! < client) k++
    return k < c.responseBounds.length ? c.responseBounds[k]! : responses.length
  }
  while (client < requests.length || server < responses.length) {
    const room = allowed() - server
    if (client < requests.length && (room <= 0 || rand() < 0.5)) {
      const n = Math.min(between(rand, 1, 24), requests.length - client)
      plan.push({ side: 'request', chunk: requests.subarray(client, (client += n)) })
    } else {
      const n = Math.min(between(rand, 1, 24), room)
      plan.push({ side: 'response', chunk: responses.subarray(server, (server += n)) })
    }
  }
  return plan
}

const FAULTS: Fault[] = [
  'none',
  'fewer responses',
  'partial request',
  'extra response',
  'oversize request',
  'oversize response',
  'malformed request',
]

for (const options of OPTION_SETS) {
  const cases = SEEDS.flatMap((seed) =>
    FAULTS.filter((fault) => fault !== 'malformed request' || options.lengthIncludesHeader).map((fault) =>
      makeCase(options, seed, fault)
    )
  )
  t.test(cases[0]!.name.replace(/, seed.*/, ''), async (t) => {
    for (const c of cases) {
      const rand = mulberry32(c.requests.length * 31 + c.responses.length)
      const whole = outcome(c, sequential(c, [c.requests], [c.responses])) as Observed
      t.same(
        { answered: whole.answered, pending: whole.pending, code: (whole.error as Observed['error'])?.code },
        c.model,
        `${c.name}: whole streams match the model`
      )
      const failures: string[] = []
      const expect = (label: string, plan: Step[], sameFinalPending = true): void => {
        const got = outcome(c, plan)
        const want = sameFinalPending ? whole : { ...whole, pending: (got as Observed).pending }
        if (failures.length < 3 && !isDeepStrictEqual(got, want)) {
          failures.push(`${label}: ${JSON.stringify(got)}`)
        }
      }
      for (let p = 1; p < c.requests.length; p++) {
        expect(`requests cut at ${p}`, sequential(c, cut(c.requests, [p]), [c.responses]))
      }
      for (let p = 1; p < c.responses.length; p++) {
        expect(`responses cut at ${p}`, sequential(c, [c.requests], cut(c.responses, [p])))
      }
      expect('one byte at a time', sequential(c, bytes(c.requests), bytes(c.responses)))
      for (let k = 0; k < 25; k++) {
        const reqPoints = randomPoints(rand, c.requests.length, between(rand, 1, 12))
        const resPoints = randomPoints(rand, c.responses.length, between(rand, 1, 12))
        expect(
          `requests cut at ${reqPoints}, responses at ${resPoints}`,
          sequential(c, cut(c.requests, reqPoints), cut(c.responses, resPoints))
        )
      }
      // Interleaved, a fault stops the framer after more or fewer client bytes than requests-first
      // did: a client-side fault changes what is answered (so is left out), a server-side one only
      // the final pending().
      if (!c.requestFault) {
        const stopsEarly = c.model.code !== undefined
        for (let k = 0; k < 25; k++) expect(`interleaving ${k}`, interleaved(c, rand), !stopsEarly)
      }
      t.same(failures, [], `${c.name}: ${c.requests.length}+${c.responses.length} bytes, every cut agrees`)
    }
  })
}
