/**
 * The properties every framer is fuzzed on, given its generators (one call per framer file).
 */
import fc from 'fast-check'
import type { Test } from 'tap'
import type { FramerFactory } from '../../../lib/framing/types.js'
import { driveCrash, ops } from './crash.js'
import { check, property, retained } from './fuzz.js'
import { driveModel, type Rules, type Stream } from './model.js'
import { mutate, mutations, plan } from './streams.js'

/** A framer under its options, a valid stream for it, and what it may retain. */
export interface Case {
  factory: FramerFactory
  stream: Stream
  /** Most bytes the framer may retain with `peak` requests in flight at most. */
  bound: (peak: number) => number
  /** The framer with small limits, for the crash fuzz (errors come sooner); `factory` if absent. */
  small?: FramerFactory
}

export interface Suite {
  rules: Rules
  cases: fc.Arbitrary<Case>
  /** Protocol fragments spliced into mutated streams. */
  tokens: readonly string[]
  /**
   * Single long messages (a request or a response that goes on and on): client and server bytes
   * and the factory; the framer must retain no more for them than its bound for one request.
   */
  long?: fc.Arbitrary<{
    factory: FramerFactory
    client: Buffer
    server: Buffer
    bound: (peak: number) => number
  }>
  /** Short-run counts: the model property, the crash properties. */
  runs?: { model?: number; crash?: number; long?: number }
}

export function fuzzFramer(t: Test, suite: Suite): void {
  const runs = { model: 300, crash: 300, long: 40, ...suite.runs }

  property(
    t,
    'valid streams cut and interleaved at random, with failovers: every report matches the model',
    fc.tuple(suite.cases, plan(true)),
    ([c, p]) => {
      const fed = driveModel(c.factory, suite.rules, c.stream, p, true)
      const limit = c.bound(fed.peakPending)
      check(fed.peakRetained <= limit, () => `retained ${fed.peakRetained} bytes, over the bound ${limit}`)
      const viewsSafe = c.factory({ answered() {} }).viewsSafe === true
      check(!viewsSafe || fed.foreign === 0, () => 'viewsSafe, yet a view of a parsed chunk was kept')
    },
    runs.model
  )

  property(
    t,
    'mutated streams in any order, with failovers and prologue replies: no throw, sound errors, bounded memory',
    fc.tuple(suite.cases, mutations, mutations, ops),
    ([c, mc, ms, p]) => {
      driveCrash(
        c.factory,
        mutate(c.stream.requests, mc, suite.tokens),
        mutate(c.stream.responses, ms, suite.tokens),
        p,
        c.bound
      )
    },
    runs.crash
  )

  const noise = fc
    .array(
      fc.oneof(
        fc.constantFrom(...suite.tokens).map((s) => Buffer.from(s, 'latin1')),
        fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a))
      ),
      { maxLength: 30 }
    )
    .map((parts) => Buffer.concat(parts))
  property(
    t,
    'noise (protocol fragments and random bytes) on both sides: no throw, sound errors, bounded memory',
    fc.tuple(suite.cases, noise, noise, ops),
    ([c, client, server, p]) => {
      driveCrash(c.small ?? c.factory, client, server, p, c.bound)
    },
    runs.crash
  )

  if (suite.long !== undefined) {
    property(
      t,
      'one very long message: the framer retains no more than for a short one',
      fc.tuple(suite.long, ops),
      ([l, p]) => {
        driveCrash(l.factory, l.client, l.server, p, l.bound)
      },
      runs.long
    )
  }

  // opaque has no requests to repeat: its state is two counters.
  if (suite.rules === 'opaque') return
  property(
    t,
    'a long session (the same exchanges again and again on one framer): retained memory does not grow',
    suite.cases,
    (c) => {
      const framer = c.factory({ answered() {} })
      const sizes: number[] = []
      for (let rep = 0; rep < 30; rep++) {
        // Each request, then its responses: the pipeline never deeper than one exchange.
        let s = 0
        for (const r of c.stream.reqs) {
          check(
            framer.request(c.stream.requests.subarray(r.start, r.end)) === undefined,
            () => 'request refused'
          )
          // The server goes as far as this request lets it: up to the first unit that waits for more.
          const end = c.stream.units.find((u) => u.need > r.end)?.start ?? c.stream.responses.length
          if (end > s) {
            check(
              framer.response(c.stream.responses.subarray(s, end)) === undefined,
              () => 'response refused'
            )
            s = end
          }
        }
        if (s < c.stream.responses.length) framer.response(c.stream.responses.subarray(s))
        sizes.push(retained(framer).bytes)
      }
      // The first round may allocate what the framer keeps for good (a grown line buffer, a scratch
      // buffer); from the second on, nothing more.
      check(
        sizes.slice(2).every((b) => b <= sizes[1]!),
        () => `retained bytes per round: ${sizes.join(', ')}`
      )
    },
    Math.max(20, Math.floor(runs.model / 10))
  )
}
