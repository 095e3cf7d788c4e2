/**
 * The fuzz harness: runs fast-check properties under tap, and measures what a parser retains.
 *
 * Run counts: each property has a short default (a few hundred runs, for `npm test`);
 * `FUZZ_RUNS=N` scales them (`npm run fuzz` sets 20000: a property of 300 gets N runs, a heavy
 * one of 40 gets N × 40 / 300). `FUZZ_SEED=S` replays a run
 * (fast-check prints the seed and the path of any failure; `FUZZ_PATH=P` goes straight to it).
 */
import type { Test } from 'tap'
import fc from 'fast-check'

const envInt = (name: string): number | undefined => {
  const v = process.env[name]
  if (v === undefined || v === '') return undefined
  const n = Number(v)
  if (!Number.isSafeInteger(n)) throw new Error(`${name}: expected an integer, got ${JSON.stringify(v)}`)
  return n
}

const FUZZ_RUNS = envInt('FUZZ_RUNS')
const FUZZ_SEED = envInt('FUZZ_SEED')
const FUZZ_PATH = process.env.FUZZ_PATH

/** True under `npm run fuzz` (FUZZ_RUNS set). */
export const long = FUZZ_RUNS !== undefined

/**
 * Check `predicate` over `arb`: a tap assertion that passes with the run count, or fails with
 * fast-check's report (seed, path, the shrunk counterexample). The predicate throws (or returns
 * false) on a broken invariant. `runs` is the short-run count, replaced by FUZZ_RUNS.
 */
export function property<T>(
  t: Test,
  name: string,
  arb: fc.Arbitrary<T>,
  predicate: (value: T) => boolean | void,
  runs = 300
): void {
  // FUZZ_RUNS is the count for a property of the usual 300; heavier ones (fewer by default) scale.
  const numRuns = FUZZ_RUNS === undefined ? runs : Math.max(1, Math.round((FUZZ_RUNS * runs) / 300))
  const started = performance.now()
  const details = fc.check(fc.property(arb, predicate), {
    numRuns,
    ...(FUZZ_SEED !== undefined ? { seed: FUZZ_SEED } : {}),
    ...(FUZZ_PATH !== undefined ? { path: FUZZ_PATH } : {}),
    endOnFailure: false,
  })
  const ms = Math.round(performance.now() - started)
  if (details.failed) {
    const cause =
      details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance)
    t.fail(`${name}: ${cause}\n${fc.defaultReportMessage(details)}`)
  } else {
    t.pass(`${name}: ${details.numRuns} runs, ${ms} ms`)
  }
}

/** Throws with `message` unless `ok`: invariants read as plain statements. */
export function check(ok: boolean, message: () => string): void {
  if (!ok) throw new Error(message())
}

/** A Buffer with an ArrayBuffer of its own (so a retained view of it can be recognised). */
export const own = (bytes: ArrayLike<number>): Buffer => {
  const copy = new Uint8Array(bytes.length)
  copy.set(bytes)
  return Buffer.from(copy.buffer, 0, copy.length)
}

/**
 * Bytes reachable from `root` through own properties, arrays, maps and sets: every distinct
 * ArrayBuffer behind a typed array counts whole (a small view of a large buffer pins all of it;
 * Node's shared pool slabs excepted),
 * 8 bytes per array slot and property, 2 per string character. `foreign` collects the reachable
 * ArrayBuffers that are in `inputs`: views of chunks the parser was given.
 */
export function retained(
  root: unknown,
  inputs: ReadonlySet<ArrayBufferLike> = new Set()
): { bytes: number; foreign: number } {
  const seen = new Set<unknown>()
  let bytes = 0
  let foreign = 0
  const visit = (v: unknown): void => {
    if (typeof v === 'string') {
      bytes += 2 * v.length
      return
    }
    if (typeof v !== 'object' || v === null || seen.has(v)) return
    seen.add(v)
    if (ArrayBuffer.isView(v)) {
      const buffer = v.buffer
      // Node's small Buffers share 8 KiB pool slabs with unrelated ones: count only the view.
      if (
        buffer.byteLength === Buffer.poolSize &&
        v.byteLength < Buffer.poolSize >>> 1 &&
        !inputs.has(buffer)
      ) {
        bytes += v.byteLength
        return
      }
      if (!seen.has(buffer)) {
        seen.add(buffer)
        bytes += buffer.byteLength
        if (inputs.has(buffer)) foreign++
      }
      return
    }
    if (v instanceof Map) {
      for (const [k, x] of v) {
        bytes += 16
        visit(k)
        visit(x)
      }
      return
    }
    if (v instanceof Set) {
      for (const x of v) {
        bytes += 8
        visit(x)
      }
      return
    }
    // A node:crypto Hash holds its state natively, out of reach and of fixed size.
    if ((v as object).constructor?.name === 'Hash') return
    for (const key of Object.keys(v)) {
      bytes += 8
      visit((v as Record<string, unknown>)[key])
    }
  }
  visit(root)
  return { bytes, foreign }
}
