/**
 * A reference for what a framer must report on a VALID stream, computed from where the generator
 * put each message rather than by parsing bytes, and a driver that feeds the stream in the pieces
 * and order a plan gives and compares the framer with the reference after every step.
 *
 *   client:  |strays|== req 0 ==|noop|== req 1 ==|== req 2 (partial)
 *   server:  |== 100 ==|== res 0 ==|push|== res 1 ==
 *            a unit that answers pops the oldest request; interim units and pushes answer nothing
 *
 * The rules the reference follows are the framer contract of lib/framing/types.ts: `answered(e)`
 * once the response to the request ending at `e` is whole (or, when the response was whole first,
 * once the request is); `pending()` counts requests sent and not answered, a partial one included;
 * `responseOpen`/`openStart` say whether the server is inside a response unit and where in the
 * last chunk it began.
 */
import type { Framer, FramerExtras, FramerFactory } from '../../../lib/framing/types.js'
import { between, mulberry32 } from '../../framing/helpers/frames.js'
import { check, own, retained } from './fuzz.js'

export type Rules = 'opaque' | 'length-prefixed' | 'http1' | 'resp'

/** One client message: a request, a line that gets no reply (resp), or a stray CRLF (http1). */
export interface RequestUnit {
  start: number
  end: number
  kind: 'real' | 'noop' | 'stray'
  /** http1: where the head is whole; where the request line is whole (the method known). */
  headEnd: number
  lineEnd: number
  /** May be re-sent under `replay: safe`. */
  safe: boolean
  /** http1: from this offset on its head has said it is safe (method, then Idempotency-Key). */
  safeAt: number
}

/** One server message: a response that answers the oldest request, or one that answers nothing. */
export interface ResponseUnit {
  start: number
  end: number
  answers: boolean
  /** The server may begin it once the client has sent this many bytes. */
  need: number
}

export interface Stream {
  requests: Buffer
  responses: Buffer
  reqs: RequestUnit[]
  units: ResponseUnit[]
}

/** When a server may begin the response to a request: its first byte, its whole head, all of it. */
export type After = 'begin' | 'head' | 'end'

/** Lays messages end to end and records their bounds. */
export class StreamBuilder {
  private readonly reqParts: Buffer[] = []
  private readonly resParts: Buffer[] = []
  private readonly reqs: RequestUnit[] = []
  private readonly units: ResponseUnit[] = []
  private c = 0
  private s = 0

  /** A client message; returns its index. */
  request(
    data: Buffer,
    options: {
      kind?: RequestUnit['kind']
      head?: number
      line?: number
      safe?: boolean
      safeAt?: number
    } = {}
  ): number {
    const start = this.c
    this.reqParts.push(data)
    this.c += data.length
    this.reqs.push({
      start,
      end: this.c,
      kind: options.kind ?? 'real',
      headEnd: start + (options.head ?? data.length),
      lineEnd: start + (options.line ?? data.length),
      safe: options.safe ?? true,
      safeAt: options.safe === false ? Infinity : start + (options.safeAt ?? 0),
    })
    return this.reqs.length - 1
  }

  /** A server message; `to` is the request it is sent for (-1: none, it may come any time). */
  response(data: Buffer, answers: boolean, to: number, after: After): void {
    const r = this.reqs[to]
    const need = r === undefined ? 0 : after === 'begin' ? r.start + 1 : after === 'head' ? r.headEnd : r.end
    this.resParts.push(data)
    this.units.push({ start: this.s, end: this.s + data.length, answers, need })
    this.s += data.length
  }

  build(): Stream {
    return {
      requests: Buffer.concat(this.reqParts),
      responses: Buffer.concat(this.resParts),
      reqs: this.reqs,
      units: this.units,
    }
  }
}

/** A plan step: feed up to `n` client (`client`) or server bytes, or fail the server over. */
export type PlanStep = { side: 'client' | 'server'; n: number } | { side: 'failover' }

/**
 * How a stream is fed: the `steps` first (fast-check shrinks these), then pieces of 1 to `piece`
 * bytes, client or server at random from `seed`, with a failover in about one step of 30 when
 * `failovers`, until both streams are in.
 */
export interface Plan {
  steps: PlanStep[]
  seed: number
  piece: number
  failovers: boolean
}

/**
 * What the framer must report, kept step by step as the driver feeds the same bytes.
 */
class Reference {
  readonly answered: number[] = []
  /** Complete, unanswered requests: end offsets, whether safe. */
  private readonly queue: { end: number; safe: boolean }[] = []
  private early = false
  c = 0
  s = 0
  private released = 0
  private readonly stream: Stream
  private readonly rules: Rules

  constructor(stream: Stream, rules: Rules) {
    this.stream = stream
    this.rules = rules
  }

  /** How many server bytes may have been sent, given the client bytes sent so far. */
  serverAllowed(): number {
    for (const u of this.stream.units) if (u.need > this.c) return u.start
    return this.stream.responses.length
  }

  client(n: number): void {
    const to = this.c + n
    for (const r of this.stream.reqs) {
      if (r.end <= this.c || r.end > to) continue
      if (r.kind === 'stray') continue
      if (r.kind === 'noop') {
        if (this.queue.length > 0) this.queue.at(-1)!.end = r.end
        else this.release(r.end)
      } else if (this.early) {
        this.early = false
        this.release(r.end)
      } else {
        this.queue.push({ end: r.end, safe: r.safe })
      }
    }
    this.c = to
    if (this.rules === 'opaque') this.opaquePending = this.c > this.released
  }

  private opaquePending = false

  server(n: number): void {
    const to = this.s + n
    if (this.rules === 'opaque') {
      if (this.c > this.released) this.release(this.c)
      this.opaquePending = false
    }
    for (const u of this.stream.units) {
      if (u.end <= this.s || u.end > to || !u.answers) continue
      const oldest = this.queue.shift()
      if (oldest !== undefined) this.release(oldest.end)
      else this.early = true
    }
    this.s = to
  }

  /** The server fails: the replacement sends the open unit again from its start. */
  failover(): void {
    const open = this.openUnit()
    if (open !== undefined) this.s = open.start
  }

  private release(upTo: number): void {
    if (upTo > this.released) {
      this.released = upTo
      this.answered.push(upTo)
    }
  }

  openUnit(): ResponseUnit | undefined {
    return this.stream.units.find((u) => u.start < this.s && this.s < u.end)
  }

  partialRequest(): RequestUnit | undefined {
    return this.stream.reqs.find((r) => r.start < this.c && this.c < r.end)
  }

  pending(): number {
    if (this.rules === 'opaque') return this.opaquePending ? 1 : 0
    return this.queue.length + (this.partialRequest() !== undefined ? 1 : 0)
  }

  atBoundary(): boolean {
    return this.pending() === 0 && this.openUnit() === undefined
  }

  /** `openStart` after a server chunk that began at `base`. */
  openStart(base: number): number {
    const open = this.openUnit()
    return open !== undefined && open.start >= base ? open.start - base : -1
  }

  pendingSafe(): boolean {
    if (this.rules === 'opaque' || this.rules === 'length-prefixed') return true
    if (!this.queue.every((q) => q.safe)) return false
    const p = this.partialRequest()
    if (this.rules === 'resp' || p === undefined || p.kind !== 'real') return true
    // The method is known once the request line is whole; an Idempotency-Key later makes it safe.
    return this.c < p.lineEnd || this.c >= p.safeAt
  }

  /** http1: the absolute offset client bytes are held back from, or -1. */
  holdFrom(): number {
    const p = this.partialRequest()
    if (p === undefined) return -1
    return p.kind === 'stray' || this.c < p.headEnd ? p.start : -1
  }
}

/** Turns a plan into the steps actually fed: a server step never runs ahead of its request. */
export function* schedule(stream: Stream, plan: Plan): Generator<PlanStep> {
  const ref = new Reference(stream, 'opaque')
  const room = (): { client: number; server: number } => ({
    client: stream.requests.length - ref.c,
    server: ref.serverAllowed() - ref.s,
  })
  const take = (side: 'client' | 'server', n: number): PlanStep | undefined => {
    const free = room()
    const other = side === 'client' ? 'server' : 'client'
    const pick = free[side] > 0 ? side : free[other] > 0 ? other : undefined
    if (pick === undefined) return undefined
    const k = Math.min(n, free[pick])
    if (pick === 'client') ref.c += k
    else ref.s += k
    return { side: pick, n: k }
  }
  const failover = (): PlanStep => {
    const open = ref.openUnit()
    if (open !== undefined) ref.s = open.start
    return { side: 'failover' }
  }
  for (const p of plan.steps) {
    if (p.side === 'failover') {
      yield failover()
      continue
    }
    const step = take(p.side, p.n)
    if (step !== undefined) yield step
  }
  const rand = mulberry32(plan.seed)
  for (let failovers = 0; ;) {
    if (plan.failovers && failovers < 20 && rand() < 1 / 30) {
      failovers++
      yield failover()
      continue
    }
    const step = take(rand() < 0.5 ? 'client' : 'server', between(rand, 1, plan.piece))
    if (step === undefined) return
    yield step
  }
}

/** What the driver observed that a memory bound is judged on. */
export interface Fed {
  peakPending: number
  peakRetained: number
  foreign: number
}

/**
 * Feed `stream` as `plan` says to a framer from `factory`, checking after every step that the
 * framer reports exactly what the reference does. Throws on the first difference.
 */
export function driveModel(
  factory: FramerFactory,
  rules: Rules,
  stream: Stream,
  plan: Plan,
  measure = false
): Fed {
  const answered: number[] = []
  const framer: Framer & FramerExtras = factory({ answered: (upTo) => answered.push(upTo) })
  const ref = new Reference(stream, rules)
  const inputs = new Set<ArrayBufferLike>()
  const fed: Fed = { peakPending: 0, peakRetained: 0, foreign: 0 }
  let k = 0
  const where = (): string => `step ${k} (client ${ref.c}, server ${ref.s})`
  for (const step of schedule(stream, plan)) {
    k++
    if (step.side === 'failover') {
      framer.restartResponse()
      ref.failover()
      check(!framer.responseOpen, () => `${where()}: responseOpen right after restartResponse()`)
      continue
    }
    const data = step.side === 'client' ? stream.requests : stream.responses
    const from = step.side === 'client' ? ref.c : ref.s
    // A copy with a buffer of its own: a view of it kept by the framer is then recognisable.
    const chunk = own(data.subarray(from, from + step.n))
    if (measure) inputs.add(chunk.buffer)
    const err = step.side === 'client' ? framer.request(chunk) : framer.response(chunk)
    check(
      err === undefined,
      () => `${where()}: ${step.side} bytes of a valid stream refused: ${err?.message}`
    )
    if (step.side === 'client') ref.client(step.n)
    else ref.server(step.n)
    check(
      answered.length === ref.answered.length && answered.every((a, i) => a === ref.answered[i]),
      () =>
        `${where()}: answered ${JSON.stringify(answered)}, the stream's bounds give ${JSON.stringify(ref.answered)}`
    )
    check(
      framer.pending() === ref.pending(),
      () => `${where()}: pending() ${framer.pending()}, expected ${ref.pending()}`
    )
    check(
      framer.atBoundary() === ref.atBoundary(),
      () => `${where()}: atBoundary() ${framer.atBoundary()}, expected ${ref.atBoundary()}`
    )
    if (rules !== 'opaque') {
      const open = ref.openUnit() !== undefined
      check(
        framer.responseOpen === open,
        () => `${where()}: responseOpen ${framer.responseOpen}, expected ${open}`
      )
      if (step.side === 'server') {
        const start = ref.openStart(from)
        check(
          framer.openStart === start,
          () => `${where()}: openStart ${framer.openStart}, expected ${start}`
        )
      }
      check(
        framer.requestOpen?.() === (ref.partialRequest() !== undefined),
        () => `${where()}: requestOpen() ${framer.requestOpen?.()}`
      )
    }
    check(
      framer.pendingSafe() === ref.pendingSafe(),
      () => `${where()}: pendingSafe() ${framer.pendingSafe()}, expected ${ref.pendingSafe()}`
    )
    if (rules === 'http1') {
      const hold = framer.holdFrom!()
      check(hold === ref.holdFrom(), () => `${where()}: holdFrom() ${hold}, expected ${ref.holdFrom()}`)
    }
    if (measure) {
      const r = retained(framer, inputs)
      fed.peakRetained = Math.max(fed.peakRetained, r.bytes)
      fed.foreign = Math.max(fed.foreign, r.foreign)
    }
    fed.peakPending = Math.max(fed.peakPending, framer.pending())
  }
  return fed
}
