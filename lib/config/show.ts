/**
 * What `baton --check` prints: the resolved configuration as YAML, every default filled in, with
 * durations as they were written (`connectTimeout: 500ms`, not 500) and defaults spelled the same
 * way (`clientTimeout: 10m`), so the output reads like a config file and can be used as one. The
 * admin token is never printed: only where it came from.
 */
import { stringify } from 'yaml'
import { configSchema, DURATIONS } from './schema.js'

/** `resolved`: the validated config (plus anything resolved later, such as each listener's plane). */
export function showConfig(resolved: unknown, input: unknown, tokenSource?: string): string {
  const shown = walk(configSchema, resolved, input) as Record<string, unknown>
  const admin = shown.admin as Record<string, unknown> | undefined
  if (admin?.token !== undefined) {
    admin.token = `(hidden${tokenSource !== undefined ? `, from ${tokenSource}` : ''})`
  }
  return stringify(shown, { lineWidth: 0 })
}

/** 600000 → `10m`, 1500 → `1500ms`: the largest unit that divides it (parseDuration reads it back). */
export function spellMs(ms: number): string | number {
  if (ms === 0) return 0
  for (const [unit, size] of [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`
  }
  return `${ms}ms`
}

function defOf(node: unknown): Record<string, unknown> | undefined {
  return (node as { _zod?: { def?: Record<string, unknown> } })._zod?.def
}

function walk(node: unknown, out: unknown, input: unknown): unknown {
  for (let i = 0; i < 12; i++) {
    if (typeof node === 'object' && node !== null && DURATIONS.has(node) && typeof out === 'number') {
      return typeof input === 'string' || typeof input === 'number' ? input : spellMs(out)
    }
    const def = defOf(node)
    if (def === undefined) return out
    if (def.innerType !== undefined) node = def.innerType
    else if (def.type === 'pipe') node = def.out
    else break
  }
  const def = defOf(node)
  if (def?.type === 'object' && typeof out === 'object' && out !== null && !Array.isArray(out)) {
    const shape = def.shape as Record<string, unknown>
    const src = typeof input === 'object' && input !== null ? (input as Record<string, unknown>) : {}
    const result: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(out)) {
      result[k] = shape[k] !== undefined ? walk(shape[k], v, src[k]) : v
    }
    return result
  }
  if (def?.type === 'array' && Array.isArray(out)) {
    const src = Array.isArray(input) ? input : []
    return out.map((v, i) => walk(def.element, v, src[i]))
  }
  return out
}
