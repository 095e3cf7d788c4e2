/**
 * Helpers for the framer tests: a seeded PRNG, a length-prefixed frame encoder, and a recording
 * sink, and the cutting of streams into steps (the driver is conformance.ts).
 */
import type { Framer, FramerFactory } from '../../../lib/framing/types.js'
import type { LengthPrefixedOptions } from '../../../lib/framing/length-prefixed.js'

/**
 * mulberry32 (Tommy Ettinger, public domain): the same "random" sequence on every run. Floats in
 * [0, 1). (The balancing tests keep their own copy; each test folder stays self-contained.)
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** An integer in [lo, hi]. */
export const between = (rand: () => number, lo: number, hi: number): number =>
  lo + Math.floor(rand() * (hi - lo + 1))

/**
 * One frame: `lead` (lengthOffset bytes, filled with 0xee unless given), the length field, `body`.
 * `length` overrides the value written in the length field (for malformed and oversize frames);
 * it may be a bigint for 8-byte fields.
 */
export function frame(
  options: LengthPrefixedOptions,
  body: Buffer | string,
  extra: { length?: number | bigint; lead?: Buffer } = {}
): Buffer {
  const data = typeof body === 'string' ? Buffer.from(body) : body
  const offset = options.lengthOffset ?? 0
  const header = offset + options.lengthBytes
  const value = BigInt(extra.length ?? (options.lengthIncludesHeader ? header + data.length : data.length))
  const out = Buffer.alloc(header + data.length, 0xee)
  extra.lead?.copy(out, 0)
  writeLength(out, offset, options.lengthBytes, options.littleEndian ?? false, value)
  data.copy(out, header)
  return out
}

function writeLength(
  out: Buffer,
  at: number,
  bytes: 1 | 2 | 4 | 8,
  littleEndian: boolean,
  value: bigint
): void {
  for (let k = 0; k < bytes; k++) {
    const byte = Number((value >> BigInt(8 * k)) & 0xffn)
    out[littleEndian ? at + k : at + bytes - 1 - k] = byte
  }
}

/** A framer with a sink that records every `answered()` call. */
export function recording(factory: FramerFactory): { framer: Framer; answered: number[] } {
  const answered: number[] = []
  const framer = factory({ answered: (upTo) => answered.push(upTo) })
  return { framer, answered }
}

/** One step of a feed: client bytes (`request`) or server bytes (`response`). */
export type Step = { side: 'request' | 'response'; chunk: Buffer }

/** `data` cut at each of `points` (ascending, within 1..length-1). */
export function cut(data: Buffer, points: readonly number[]): Buffer[] {
  const out: Buffer[] = []
  let from = 0
  for (const p of points) {
    out.push(data.subarray(from, p))
    from = p
  }
  out.push(data.subarray(from))
  return out
}

/** Steps for one side, from chunks. */
export const steps = (side: Step['side'], chunks: readonly Buffer[]): Step[] =>
  chunks.map((chunk) => ({ side, chunk }))
