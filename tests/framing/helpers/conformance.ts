/**
 * The framer conformance driver: one harness for every protocol. A protocol's test file gives its
 * framer factory and a generator of request/response streams (valid ones, and ones with one
 * fault), each with the model of what the framer must report; the driver checks the framer
 * contract of lib/framing/types.ts on every case:
 *
 * - split at every byte: the streams fed whole, cut at every single point (each side), one byte
 *   at a time, and cut at random all give the same `answered` offsets, `pending()`,
 *   `pendingSafe()`, `pinned`, error and the protocol's own observations;
 * - interleavings: client and server chunks of random sizes interleaved at random, a response
 *   unit never before the client bytes it needs (`need`), agree on the same;
 * - pipelining: the generators put several requests before their responses;
 * - boundaries: after every step `responseOpen`/`openStart` match the generator's unit edges,
 *   `pending()` is 0 exactly when every client byte seen is released, `answered` only grows,
 *   and `atBoundary()` implies nothing pending and no response open;
 * - pinning: `pinned` matches the model once everything is in, and never goes back to false;
 * - limits and malformed input: the fault cases end in the model's error code, and a framer that
 *   failed returns the same error on every later call, either side;
 * - resume (for a protocol whose module offers one, `subject.resume`): every case without a fault
 *   has its responses cut at every byte (sampled when long), the server fails, the unanswered
 *   requests are re-sent (tests/replay/helpers/resume-driver.ts) and a replacement answers them
 *   again: the client must end with every response once (the framer, fed what the client got,
 *   agrees with the whole streams; byte for byte where the resume does not re-frame).
 *
 *   case: requests |== r0 ==|== r1 ==|== r2 ==|        responses |== u0 ==|== u1 ==|== u2 ==|
 *         need[k]: client bytes that must be in before unit k may begin (pipelining allowed)
 */
import { isDeepStrictEqual } from 'node:util'
import type { Test } from 'tap'
import type { Framer, FramerExtras, FramerFactory, FramingError } from '../../../lib/framing/types.js'
import type { ResumeFactory } from '../../../lib/replay/resume.js'
import { ResumeDriver, type Ending } from '../../replay/helpers/resume-driver.js'
import { between, cut, mulberry32, steps, type Step } from './frames.js'

export interface ConformanceModel {
  /** `answered()` offsets, requests fed first and then responses. */
  answered: number[]
  /** `pending()` at the end. */
  pending: number
  /** The error's code, if the case has a fault that ends the framing. */
  code?: string | undefined
  /** `pendingSafe()` at the end; not compared when undefined. */
  safe?: boolean
  /** `pinned` at the end; not compared when undefined (false is checked when given). */
  pinned?: boolean
}

export interface ConformanceCase {
  name: string
  /** This case's framer (its own options); the subject's when absent. */
  factory?: FramerFactory
  /** Cases are reported in groups (a fault, an option set). */
  group: string
  requests: Buffer
  responses: Buffer
  /**
   * Server offsets of every response unit's edges, from 0 (the end of a close-delimited last unit
   * left out); `'never'` for a framer that never reports a response open (opaque).
   */
  bounds: number[] | 'never'
  /** Per response unit: client bytes that must be in before it may begin (Infinity: all of them). */
  need: number[]
  /**
   * Further holds inside a unit: server bytes from `at` on wait for `need` client bytes (memcached:
   * the `MN` that ends a run of quiet commands waits for the `mn`, later than the run's first answer).
   */
  gates?: readonly { at: number; need: number }[]
  model: ConformanceModel
  /** A client-side fault: left out of the interleavings (the framer stops after other client bytes). */
  requestFault?: boolean
  /**
   * Offsets an interleaved feed may release besides the model's (resp: a line that gets no reply
   * is released alone when nothing is pending before it). With these, interleavings compare the
   * release points as a subset and the last one exactly.
   */
  alsoReleases?: number[]
}

export interface ConformanceSubject {
  /** The framer, for the cases that bring none of their own. */
  factory?: FramerFactory
  cases: readonly ConformanceCase[]
  /** Protocol-specific observations compared across every cut (http1: `closeDelimited`). */
  observe?: (framer: Framer & FramerExtras) => Record<string, unknown>
  /** False where interleaving changes the requests by design (opaque: a turn is whatever came first). */
  interleave?: boolean
  /** Random cuts and interleavings per case; default 25. */
  tries?: number
  /** The protocol module's resume, for the resume step (none: the step is skipped). */
  resume?: ResumeFactory | undefined
  /**
   * The resume re-frames what it passes on (http1: a resumed chunked body is re-chunked), so the
   * client's bytes are compared as responses, not byte for byte.
   */
  resumeReframes?: boolean
}

interface Outcome {
  answered: number[]
  pending: number
  safe: boolean
  pinned: boolean
  error: FramingError | undefined
  observed: Record<string, unknown>
}

type Result = Outcome | { threw: string }

const threw = (r: Result): r is { threw: string } => 'threw' in r

/**
 * Checks run after every step: the boundary rules. `edges`: the server bytes are the case's own,
 * so its unit edges apply (not for responses a resume re-framed).
 */
function stepChecker(
  c: ConformanceCase,
  edges = true
): (framer: Framer, step: Step, answered: readonly number[]) => void {
  let client = 0
  let server = 0
  let pinned = false
  return (framer, step, answered) => {
    if (step.side === 'request') {
      client += step.chunk.length
    } else if (edges) {
      const base = server
      server += step.chunk.length
      const bounds = c.bounds
      const open = bounds !== 'never' && !bounds.includes(server)
      const start = bounds === 'never' ? 0 : (bounds.filter((b) => b < server).at(-1) ?? 0)
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
    if (released > client) throw new Error(`released ${released}, past the ${client} client bytes seen`)
    if ((framer.pending() === 0) !== (released === client)) {
      throw new Error(`pending() ${framer.pending()} with ${client - released} client bytes unreleased`)
    }
    if (framer.atBoundary() && (framer.pending() !== 0 || framer.responseOpen)) {
      throw new Error('atBoundary() with a request pending or a response open')
    }
    if (pinned && !framer.pinned) throw new Error('pinned went back to false')
    pinned = framer.pinned
  }
}

/** Feed `plan`, stopping at the first error (which every later call, either side, must return again). */
function run(subject: ConformanceSubject, c: ConformanceCase, plan: readonly Step[], edges = true): Result {
  try {
    const answered: number[] = []
    const factory = c.factory ?? subject.factory
    if (factory === undefined) throw new Error('no framer for this case')
    const framer = factory({ answered: (upTo) => answered.push(upTo) })
    const check = stepChecker(c, edges)
    let error: FramingError | undefined
    for (const step of plan) {
      error = step.side === 'request' ? framer.request(step.chunk) : framer.response(step.chunk)
      if (error !== undefined) {
        if (framer.request(Buffer.from('x')) !== error || framer.response(Buffer.from('x')) !== error) {
          throw new Error('a failed framer must keep returning its error')
        }
        break
      }
      check(framer, step, answered)
    }
    return {
      answered,
      pending: framer.pending(),
      safe: framer.pendingSafe(),
      pinned: framer.pinned,
      error: error && { ...error },
      observed: subject.observe?.(framer) ?? {},
    }
  } catch (err) {
    return { threw: (err as Error).message }
  }
}

/** Requests first, then responses; no empty chunk (a socket never reads one). */
const sequential = (reqChunks: Buffer[], resChunks: Buffer[]): Step[] =>
  [...steps('request', reqChunks), ...steps('response', resChunks)].filter((s) => s.chunk.length > 0)

/** `n` distinct random cut points inside `length` bytes, ascending. */
function randomPoints(rand: () => number, length: number, n: number): number[] {
  const points = new Set<number>()
  for (let k = 0; k < n && length > 1; k++) points.add(between(rand, 1, length - 1))
  return [...points].sort((a, b) => a - b)
}

const bytes = (data: Buffer): Buffer[] => Array.from(data, (_, k) => data.subarray(k, k + 1))

/** Client and server chunks of random sizes, interleaved at random, each unit only once its `need` is in. */
function interleaved(c: ConformanceCase, rand: () => number): Step[] {
  const plan: Step[] = []
  let client = 0
  let server = 0
  const { requests, responses } = c
  const bounds = c.bounds === 'never' ? [0, responses.length] : c.bounds
  const allowed = (): number => {
    if (client >= requests.length) return responses.length
    let limit = responses.length
    for (let k = 0; k < c.need.length; k++) {
      if (c.need[k]! > client) {
        limit = bounds[k] ?? responses.length
        break
      }
    }
    for (const g of c.gates ?? []) if (g.need > client && g.at < limit) limit = g.at
    return limit
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

/** What two feeds must agree on: everything, or (interleaved) what the order cannot change. */
function agrees(c: ConformanceCase, got: Result, whole: Outcome, interleavedFeed: boolean): boolean {
  if (threw(got)) return false
  if (!interleavedFeed) return isDeepStrictEqual(got, whole)
  const faulted = c.model.code !== undefined
  let releases: boolean
  if (c.alsoReleases === undefined) {
    releases = isDeepStrictEqual(got.answered, whole.answered)
  } else {
    const allowed = new Set([...whole.answered, ...c.alsoReleases])
    releases =
      got.answered.every((a) => allowed.has(a)) && (faulted || got.answered.at(-1) === whole.answered.at(-1))
  }
  if (!releases || !isDeepStrictEqual(got.error, whole.error)) return false
  // A server-side fault stops the framer after more or fewer client bytes: what is still pending
  // then (and whether it is safe) depends on the order.
  if (faulted) return true
  return (
    got.pending === whole.pending &&
    got.safe === whole.safe &&
    got.pinned === whole.pinned &&
    isDeepStrictEqual(got.observed, whole.observed)
  )
}

/** Responses longer than this are cut at sampled points in the resume step, not at every byte. */
const RESUME_EVERY_BYTE = 600

/**
 * The resume step at one cut: `at` server bytes reach the client, the server fails, a replacement
 * answers the re-sent requests (in random pieces). Returns what went wrong, 'skip' where the
 * replayer would not resume (a pinned session, a close-delimited body), or undefined.
 */
function resumeAt(
  subject: ConformanceSubject,
  c: ConformanceCase,
  whole: Outcome,
  at: number,
  rand: () => number
): string | 'skip' | undefined {
  const factory = c.factory ?? subject.factory!
  const d = new ResumeDriver(factory, subject.resume!)
  d.request(c.requests)
  const have = c.responses.subarray(0, at)
  for (const piece of cut(have, randomPoints(rand, at, between(rand, 0, 6)))) d.server(piece)
  if (d.ended !== undefined) return `the cut itself ended the session: ${JSON.stringify(d.ended)}`
  // Not resumed by the replayer: a pinned session, a close-delimited body; and with nothing
  // pending, the old server's unprompted bytes (a RESP3 push) are owed by no replacement.
  if (d.framer.pinned || d.framer.closeDelimited === true || d.framer.pending() === 0) return 'skip'
  const bounds = c.bounds as number[]
  // The replacement answers the oldest unanswered request from the start: the unit cut part-way,
  // or the next one at a clean edge.
  const start = Math.max(...bounds.filter((b) => b <= at))
  const released = d.released
  const resent = d.fail()
  const ended = d.ended as Ending | undefined // fail() may end it
  if (ended !== undefined) {
    // http1: a client inside a chunk-size line or the trailer section cannot be resumed.
    return subject.resumeReframes === true && ended.kind === 'unrecoverable' ? 'skip' : JSON.stringify(ended)
  }
  if (resent === undefined)
    return at < c.responses.length ? 'nothing re-sent with responses to come' : undefined
  if (d.insert === undefined && !resent.equals(c.requests.subarray(released)))
    return `re-sent ${resent.length} bytes, not the ${c.requests.length - released} unanswered`
  const replacement = c.responses.subarray(start)
  for (const piece of cut(replacement, randomPoints(rand, replacement.length, between(rand, 0, 6)))) {
    if (piece.length > 0 && !d.server(piece)) return `the replacement ended it: ${JSON.stringify(d.ended)}`
  }
  const got = d.received
  if (subject.resumeReframes !== true) {
    if (!got.equals(c.responses))
      return `the client got ${got.length} bytes, not the ${c.responses.length} sent`
    const verified = bounds.includes(at) ? 0 : 1
    if (d.verified !== verified) return `verified ${d.verified} times, not ${verified}`
  }
  const seen = run(subject, c, sequential([c.requests], [got]), subject.resumeReframes !== true)
  if (!agrees(c, seen, whole, false)) return `what the client got parses as ${JSON.stringify(seen)}`
  return undefined
}

/** Run the conformance checks for every case of `subject`, one tap subtest per group. */
export function conformance(t: Test, subject: ConformanceSubject): void {
  const groups = new Map<string, ConformanceCase[]>()
  for (const c of subject.cases) {
    const list = groups.get(c.group) ?? []
    list.push(c)
    groups.set(c.group, list)
  }
  const tries = subject.tries ?? 25
  for (const [group, cases] of groups) {
    t.test(group, async (t) => {
      for (const c of cases) {
        const rand = mulberry32(c.requests.length * 31 + c.responses.length)
        const first = run(subject, c, sequential([c.requests], [c.responses]))
        if (threw(first)) {
          t.fail(`${c.name}: whole streams: ${first.threw}`)
          continue
        }
        const whole = first
        const got: ConformanceModel = {
          answered: whole.answered,
          pending: whole.pending,
          code: whole.error?.code,
        }
        const want: ConformanceModel = { ...c.model, code: c.model.code }
        delete want.safe
        delete want.pinned
        t.same(got, want, `${c.name}: whole streams match the model`)
        if (c.model.safe !== undefined) t.equal(whole.safe, c.model.safe, `${c.name}: pendingSafe()`)
        if (c.model.pinned !== undefined) t.equal(whole.pinned, c.model.pinned, `${c.name}: pinned`)
        const failures: string[] = []
        const expect = (label: string, plan: Step[], mixed = false): void => {
          if (failures.length >= 3) return
          const result = run(subject, c, plan)
          if (!agrees(c, result, whole, mixed)) failures.push(`${label}: ${JSON.stringify(result)}`)
        }
        for (let p = 1; p < c.requests.length; p++) {
          expect(`requests cut at ${p}`, sequential(cut(c.requests, [p]), [c.responses]))
        }
        for (let p = 1; p < c.responses.length; p++) {
          expect(`responses cut at ${p}`, sequential([c.requests], cut(c.responses, [p])))
        }
        expect('one byte at a time', sequential(bytes(c.requests), bytes(c.responses)))
        for (let k = 0; k < tries; k++) {
          const reqPoints = randomPoints(rand, c.requests.length, between(rand, 1, 12))
          const resPoints = randomPoints(rand, c.responses.length, between(rand, 1, 12))
          expect(
            `requests cut at ${reqPoints}, responses at ${resPoints}`,
            sequential(cut(c.requests, reqPoints), cut(c.responses, resPoints))
          )
        }
        if (subject.interleave !== false && c.requestFault !== true) {
          for (let k = 0; k < tries; k++) expect(`interleaving ${k}`, interleaved(c, rand), true)
        }
        t.same(failures, [], `${c.name}: ${c.requests.length}+${c.responses.length} bytes, every cut agrees`)
        if (subject.resume !== undefined && c.model.code === undefined && c.bounds !== 'never') {
          const length = c.responses.length
          const points =
            length <= RESUME_EVERY_BYTE
              ? Array.from({ length: Math.max(0, length - 1) }, (_, k) => k + 1)
              : randomPoints(rand, length, 4 * tries)
          const problems: string[] = []
          let resumed = 0
          for (const at of points) {
            const problem = resumeAt(subject, c, whole, at, rand)
            if (problem === undefined) resumed++
            else if (problem !== 'skip' && problems.length < 3) problems.push(`cut at ${at}: ${problem}`)
          }
          t.same(problems, [], `${c.name}: resumed at ${resumed} of ${points.length} cuts`)
        }
      }
    })
  }
}

/** Offsets where `parts` laid end to end begin, then the end of the last. */
export function edges(parts: readonly Buffer[]): number[] {
  const out = [0]
  for (const p of parts) out.push(out.at(-1)! + p.length)
  return out
}
