/**
 * RESP wire basics shared by the request and reply scanners: the options and their limits, the
 * line bytes, and the fast path for a bulk string wholly in one chunk.
 */
import { ConfigError } from '../../errors.js'

export interface RespOptions {
  /** Largest bulk string (either side); default 512 MiB, Redis's `proto-max-bulk-len`. */
  readonly maxBulkBytes?: number
  /** Longest inline command, and longest simple-type reply line; default 64 KiB, as Redis. */
  readonly maxInlineBytes?: number
  /** Deepest nesting of reply aggregates; default 64. */
  readonly maxDepth?: number
}

export interface Limits {
  readonly maxBulkBytes: number
  readonly maxInlineBytes: number
  readonly maxDepth: number
}

/** The length of the bulk string `wholeBulkString` last found (no object per call). */
export let bulkLength = 0

/**
 * `$N\r\n` + N bytes + `\r\n` at `chunk[i]` (the `$`), wholly in `chunk[.., len)`, N at most
 * `max` and at most 15 digits: returns the index after it and sets `bulkLength`; else -1.
 */
export function wholeBulkString(chunk: Buffer, i: number, len: number, max: number): number {
  let j = i + 1
  let n = 0
  const digitsEnd = Math.min(len, j + 15)
  while (j < digitsEnd) {
    const d = chunk[j]! - 0x30
    if (d < 0 || d > 9) break
    n = n * 10 + d
    j++
  }
  if (j === i + 1 || n > max) return -1
  const body = j + 2
  const end = body + n + 2
  if (end > len || chunk[j] !== CR || chunk[j + 1] !== LF) return -1
  if (chunk[body + n] !== CR || chunk[body + n + 1] !== LF) return -1
  bulkLength = n
  return end
}

/** Largest multibulk or aggregate count accepted (Redis: INT_MAX). */
export const MAX_COUNT = 2 ** 31 - 1

export const CR = 13
export const LF = 10

export const DEFAULTS: Limits = { maxBulkBytes: 512 * 1024 * 1024, maxInlineBytes: 64 * 1024, maxDepth: 64 }

/** Checks the options once, at the edge. */
export function respLimits(options: RespOptions = {}): Limits {
  const issues: string[] = []
  const out = { ...DEFAULTS }
  for (const key of ['maxBulkBytes', 'maxInlineBytes', 'maxDepth'] as const) {
    const value = options[key]
    if (value === undefined) continue
    if (!Number.isSafeInteger(value) || value < 1) {
      issues.push(`resp.${key}: expected a positive integer, got ${String(value)}`)
    } else {
      out[key] = value
    }
  }
  if (issues.length > 0) throw new ConfigError(issues)
  return Object.freeze(out)
}
