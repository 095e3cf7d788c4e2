/**
 * The crash driver: feeds any bytes (mutated valid streams, noise) to a framer in any order, with
 * failovers and the session's other calls in between, and checks what must hold whatever the input:
 *
 * - nothing throws; a bad input gives a FramingError with one of the two codes, and the framer then
 *   returns that same error on every later call, either side;
 * - `answered()` offsets strictly increase and never pass the client bytes seen;
 * - `atBoundary()` only with nothing pending and no response open; `openStart` is -1 or inside the
 *   last server chunk, and -1 when no response is open; `holdFrom()` lies between what is released
 *   and what was seen;
 * - what the framer retains stays under `bound(peak pending)`: its limits, plus a little per
 *   request in flight, never a share of the bytes it was fed.
 */
import fc from 'fast-check'
import type { Framer, FramerExtras, FramerFactory, FramingError } from '../../../lib/framing/types.js'
import { check, own, retained } from './fuzz.js'

export type Op =
  | { side: 'client' | 'server'; n: number }
  | { side: 'failover' }
  /** Server bytes read as replies to a replayed prologue (resp), then the rest as responses. */
  | { side: 'swallow'; n: number }

const size = fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 2000 }))

export const ops: fc.Arbitrary<Op[]> = fc.array(
  fc.oneof(
    { weight: 10, arbitrary: fc.record({ side: fc.constant<'client'>('client'), n: size }) },
    { weight: 10, arbitrary: fc.record({ side: fc.constant<'server'>('server'), n: size }) },
    { weight: 1, arbitrary: fc.constant<Op>({ side: 'failover' }) },
    { weight: 1, arbitrary: fc.record({ side: fc.constant<'swallow'>('swallow'), n: size }) }
  ),
  { maxLength: 60 }
)

const CODES = new Set(['ERR_BATON_FRAME_TOO_LARGE', 'ERR_BATON_FRAME_MALFORMED'])

function validError(e: FramingError, where: string): void {
  check(CODES.has(e.code), () => `${where}: error code ${String(e.code)}`)
  check(typeof e.message === 'string' && e.message.length > 0, () => `${where}: error without a message`)
  check(e.reply === undefined || Buffer.isBuffer(e.reply), () => `${where}: reply is not a Buffer`)
}

/** Touch every optional power the session may call; none may throw. */
function extras(f: Framer & FramerExtras): void {
  f.prologue?.()
  f.pendingBlocking?.()
  f.requestOpen?.()
  void [f.closeDelimited, f.closeAfter, f.responseInHead, f.responseChunked, f.pinned, f.delimited]
  f.pendingSafe()
}

export interface CrashResult {
  error: FramingError | undefined
  peakPending: number
  peakRetained: number
  /** Views of fed chunks the framer still held at some step. */
  foreign: number
}

/**
 * Feed `client` and `server` bytes as `plan` says (leftovers at the end: client, then server).
 * Throws on a broken invariant; a framing error ends the feed, as it ends the session.
 */
export function driveCrash(
  factory: FramerFactory,
  client: Buffer,
  server: Buffer,
  plan: readonly Op[],
  bound: (peakPending: number) => number
): CrashResult {
  const answered: number[] = []
  const f: Framer & FramerExtras = factory({ answered: (upTo) => answered.push(upTo) })
  const inputs = new Set<ArrayBufferLike>()
  const result: CrashResult = { error: undefined, peakPending: 0, peakRetained: 0, foreign: 0 }
  let c = 0
  let s = 0
  let k = 0
  const where = (): string => `step ${k} (client ${c}, server ${s})`
  const piece = (data: Buffer, at: number, n: number): Buffer => {
    const chunk = own(data.subarray(at, at + n))
    inputs.add(chunk.buffer)
    return chunk
  }
  const all: Op[] = [...plan, { side: 'client', n: client.length }, { side: 'server', n: server.length }]
  for (const op of all) {
    k++
    let err: FramingError | undefined
    let lastServer = -1
    if (op.side === 'failover') {
      f.restartResponse()
      check(
        !f.responseOpen && f.openStart === -1,
        () => `${where()}: a response open right after restartResponse()`
      )
    } else if (op.side === 'client') {
      if (c >= client.length) continue
      const chunk = piece(client, c, op.n)
      c += chunk.length
      err = f.request(chunk)
    } else {
      if (s >= server.length) continue
      let chunk = piece(server, s, op.n)
      s += chunk.length
      if (op.side === 'swallow' && f.swallowReply !== undefined) {
        const r = f.swallowReply(chunk)
        if ('code' in r) {
          validError(r, where())
          chunk = chunk.subarray(chunk.length)
        } else {
          check(
            Number.isInteger(r.used) && r.used >= 0 && r.used <= chunk.length,
            () => `${where()}: swallowReply used ${r.used} of ${chunk.length}`
          )
          check(
            r.complete || r.used === chunk.length,
            () => `${where()}: an incomplete reply left bytes unused`
          )
          chunk = chunk.subarray(r.used)
        }
      }
      if (chunk.length > 0) {
        lastServer = chunk.length
        err = f.response(chunk)
      }
    }
    if (err !== undefined) {
      validError(err, where())
      const again = [f.request(Buffer.from('x')), f.response(Buffer.from('x'))]
      check(
        again.every((e) => e === err),
        () => `${where()}: after an error the framer returned ${again.map((e) => e?.code)} instead of it`
      )
      result.error = err
      break
    }
    for (let i = 0; i < answered.length; i++) {
      const a = answered[i]!
      check(
        a > (answered[i - 1] ?? 0),
        () => `${where()}: answered ${JSON.stringify(answered)} not increasing`
      )
      check(a <= c, () => `${where()}: answered(${a}) past the ${c} client bytes seen`)
    }
    const pending = f.pending()
    check(Number.isInteger(pending) && pending >= 0, () => `${where()}: pending() ${pending}`)
    if (f.atBoundary()) {
      check(
        pending === 0 && !f.responseOpen,
        () => `${where()}: atBoundary() with ${pending} pending, responseOpen ${f.responseOpen}`
      )
    }
    if (!f.responseOpen)
      check(f.openStart === -1, () => `${where()}: openStart ${f.openStart} with no response open`)
    if (lastServer >= 0) {
      check(
        f.openStart >= -1 && f.openStart < lastServer,
        () => `${where()}: openStart ${f.openStart} outside a ${lastServer}-byte chunk`
      )
    }
    if (f.holdFrom !== undefined) {
      const hold = f.holdFrom()
      const released = answered.at(-1) ?? 0
      check(
        hold === -1 || (hold >= released && hold <= c),
        () => `${where()}: holdFrom() ${hold}, released ${released}`
      )
    }
    extras(f)
    result.peakPending = Math.max(result.peakPending, pending)
    const r = retained(f, inputs)
    result.peakRetained = Math.max(result.peakRetained, r.bytes)
    result.foreign = Math.max(result.foreign, r.foreign)
    const limit = bound(result.peakPending)
    check(r.bytes <= limit, () => `${where()}: the framer retains ${r.bytes} bytes, over its bound ${limit}`)
  }
  return result
}
