/**
 * Schema fields shared by the config schema (schema.ts) and the protocol modules' option schemas
 * (lib/protocols/): a leaf module, so that neither imports the other.
 */
import { z } from 'zod'
import { parseSize } from '../units.js'

/** An integer in [min, max] (max optional); "12" is read as 12, like ports. */
export function int(min: number, max?: number) {
  const msg =
    max === undefined ? `expected an integer of ${min} or more` : `expected an integer from ${min} to ${max}`
  const base = z.int({ error: msg }).min(min, { error: msg })
  return z.preprocess(
    (v) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v),
    max === undefined ? base : base.max(max, { error: msg })
  )
}

/** A size: bytes as a number, or text such as `64KiB`, `1MiB`. */
export const size = z.preprocess(
  (v) => (typeof v === 'string' ? (parseSize(v) ?? v) : v),
  z
    .int({ error: 'expected a size such as 65536, 64KiB or 1MiB' })
    .min(0, { error: 'expected a size of 0 or more' })
)
