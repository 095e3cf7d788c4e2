/**
 * Durations and sizes as people write them in config files: `500ms`, `2s`, `1.5m`, `1h`; `64KiB`,
 * `1MiB`, `16kb`. A bare number is milliseconds or bytes.
 */
const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/
const DURATION_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

export function parseDuration(text: string): number | undefined {
  const m = DURATION.exec(text.trim())
  if (m === null) return undefined
  return Math.round(Number(m[1]) * DURATION_MS[m[2] ?? 'ms']!)
}

const SIZE = /^(\d+(?:\.\d+)?)\s*(b|kb|kib|k|mb|mib|m|gb|gib|g)?$/i
const SIZE_BYTES: Record<string, number> = {
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
}

export function parseSize(text: string): number | undefined {
  const m = SIZE.exec(text.trim())
  if (m === null) return undefined
  return Math.round(Number(m[1]) * SIZE_BYTES[(m[2] ?? 'b').toLowerCase()]!)
}

/** `host:port`, `[v6]:port` or `:port`. The port is returned as text so the schema can judge it. */
export function splitHostPort(text: string): { host: string; port: string } | undefined {
  const v6 = /^\[([^\]]+)\]:(.*)$/.exec(text)
  if (v6 !== null) return { host: v6[1]!, port: v6[2]! }
  const i = text.lastIndexOf(':')
  // No port, or an IPv6 address without brackets ("::1"): not a host:port.
  if (i < 0 || text.indexOf(':') !== i || text.startsWith('[')) return undefined
  return { host: text.slice(0, i), port: text.slice(i + 1) }
}
