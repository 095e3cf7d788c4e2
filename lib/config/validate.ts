/**
 * Turns zod's issues into one line each that names the field path, what was expected and what was
 * given: `listeners[0].backends[1].port: expected an integer from 1 to 65535, got "80a"`. Unknown keys
 * get a hint when a known key is close (undici's renamed-option hints, fastify's start-up checks).
 */
import type { z } from 'zod'
import { ConfigError } from '../errors.js'
import { configSchema, type Config } from './schema.js'

export function validateConfig(input: unknown): Config {
  const result = configSchema.safeParse(input, { reportInput: true })
  if (result.success) return Object.freeze(result.data) as Config
  throw new ConfigError(result.error.issues.flatMap((issue) => formatIssue(issue).split('\n')))
}

/** A key printed as it is; any other (empty, spaces, a newline…) is quoted, so a message stays one line. */
const PLAIN_KEY = /^[A-Za-z_$][\w$-]*$/

export function formatPath(path: readonly PropertyKey[]): string {
  let out = ''
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`
    else if (!PLAIN_KEY.test(String(p))) out += `[${JSON.stringify(String(p))}]`
    else out += out === '' ? String(p) : `.${String(p)}`
  }
  return out === '' ? '(top level)' : out
}

function formatIssue(issue: z.core.$ZodIssue): string {
  const where = formatPath(issue.path)
  if (issue.code === 'unrecognized_keys') {
    return issue.keys
      .map((key) => {
        const known = knownKeysAt(issue.path)
        const near = closest(key, known)
        const hint = near !== undefined ? ` (did you mean "${near}"?)` : ''
        return `${formatPath([...issue.path, key])}: unknown option${hint}`
      })
      .join('\n')
  }
  let message = issue.message
  if (issue.code === 'invalid_value' && 'values' in issue) {
    message = `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`
  } else if (issue.code === 'invalid_type' && message.startsWith('Invalid input')) {
    message =
      issue.input === undefined ? `required, expected ${issue.expected}` : `expected ${issue.expected}`
  }
  const got =
    'input' in issue &&
    issue.input !== undefined &&
    (typeof issue.input !== 'object' || issue.code === 'invalid_type')
      ? `, got ${show(issue.input)}`
      : ''
  return `${where}: ${message}${got}`
}

function show(v: unknown): string {
  if (typeof v === 'object' && v !== null) return Array.isArray(v) ? 'a list' : 'an object'
  if (typeof v === 'number') return String(v) // NaN and Infinity, which JSON spells null
  const s = JSON.stringify(v)
  return s.length > 60 ? `${s.slice(0, 57)}...` : s
}

/** The keys the schema allows at a path, walking through arrays, preprocessors and defaults. */
function knownKeysAt(path: readonly PropertyKey[]): string[] {
  let node: unknown = configSchema
  for (const p of path) {
    node = unwrap(node)
    if (typeof p === 'number') node = (node as { element?: unknown }).element
    else node = (node as { shape?: Record<string, unknown> }).shape?.[String(p)]
    if (node === undefined) return []
  }
  const shape = (unwrap(node) as { shape?: Record<string, unknown> }).shape
  return shape !== undefined ? Object.keys(shape) : []
}

/** The schema a zod node wraps: defaults, optionals and preprocess pipes each wrap the one that holds the shape. */
export function unwrap(node: unknown): unknown {
  for (let i = 0; i < 8; i++) {
    const def = (node as { _zod?: { def?: Record<string, unknown> } })._zod?.def
    if (def === undefined) return node
    if (def.innerType !== undefined) node = def.innerType
    else if (def.type === 'pipe') node = def.out
    else return node
  }
  return node
}

/** The known key nearest to `key` by edit distance, if it is near enough to be a likely typo. */
export function closest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = Math.max(2, Math.floor(key.length / 3)) + 1
  for (const k of known) {
    const d = editDistance(key.toLowerCase(), k.toLowerCase())
    if (d < bestDistance) {
      best = k
      bestDistance = d
    }
  }
  return best
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
      prev = cur
    }
  }
  return row[b.length]!
}
