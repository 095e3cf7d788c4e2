/**
 * Conformance of the length-prefixed framer (tests/framing/helpers/conformance.ts): seeded random
 * request and response streams under six frame layouts, valid and with one fault (fewer responses,
 * a partial request, an extra response, oversize and malformed frames), modelled by the generator.
 */
import t from 'tap'
import { lengthPrefixed, type LengthPrefixedOptions } from '../../../lib/framing/length-prefixed.js'
import { protocolOf } from '../../../lib/protocols/index.js'
import { conformance, type ConformanceCase } from '../helpers/conformance.js'
import { between, frame, mulberry32 } from '../helpers/frames.js'

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

function makeCase(options: LengthPrefixedOptions, seed: number, fault: Fault): ConformanceCase {
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
  let model: ConformanceCase['model']
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
  // A response frame may begin once its request has begun (an early answer); one with no
  // request, once every request byte is in.
  const need = resFrames.map((_, k) => (k < reqFrames.length ? requestStarts[k]! + 1 : Infinity))
  return {
    name,
    factory: lengthPrefixed(options),
    group: name.replace(/, seed.*/, ''),
    requests: Buffer.concat(reqFrames),
    responses: Buffer.concat(resFrames),
    bounds: responseBounds,
    need,
    model: { ...model, safe: true, pinned: false },
    requestFault: fault === 'oversize request' || fault === 'malformed request',
  }
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

conformance(t, {
  resume: protocolOf('length-prefixed').resume,
  cases: OPTION_SETS.flatMap((options) =>
    SEEDS.flatMap((seed) =>
      FAULTS.filter((fault) => fault !== 'malformed request' || options.lengthIncludesHeader).map((fault) =>
        makeCase(options, seed, fault)
      )
    )
  ),
})
