/**
 * Fuzzing the config loader: `validateConfig` (lib/config/validate.ts, one zod schema) on any value,
 * on valid configs with any field set to an odd value, and on YAML text (`readConfigFile`) and
 * command lines (`parseCommand`) built from them. The loader must return a config or throw a
 * ConfigError whose every issue is one line naming a field; never throw anything else, never change
 * its input. A config it accepts must be one the code can run: every number finite, every duration
 * within what a timer holds, every size and port an integer in range, and validating it again (a
 * reload of what `baton --check` prints) must give the same config.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inspect } from 'node:util'
import fc from 'fast-check'
import t from 'tap'
import { stringify as toYaml } from 'yaml'
import { parseCommand, readConfigFile } from '../../lib/cli/args.js'
import { configSchema, MAX_TIMER_MS } from '../../lib/config/schema.js'
import { unwrap, validateConfig } from '../../lib/config/validate.js'
import { ConfigError } from '../../lib/errors.js'
import { check, property } from './helpers/fuzz.js'

/** Every field path the schema knows (arrays as index 0), found by walking it as validate.ts does. */
function schemaPaths(): (string | number)[][] {
  const out: (string | number)[][] = []
  const walk = (node: unknown, path: (string | number)[]): void => {
    const n = unwrap(node) as { shape?: Record<string, unknown>; element?: unknown }
    if (n.shape !== undefined) {
      for (const [key, child] of Object.entries(n.shape)) {
        out.push([...path, key])
        walk(child, [...path, key])
      }
    } else if (n.element !== undefined) {
      out.push([...path, 0])
      walk(n.element, [...path, 0])
    }
  }
  walk(configSchema, [])
  return out
}

const PATHS = schemaPaths()

/** Values that have broken config loaders: units at their limits, spellings of infinity, types. */
const odd: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(
    0,
    -0,
    -1,
    1,
    0.5,
    1.5,
    2 ** 31 - 1,
    2 ** 31,
    2 ** 32,
    2 ** 53,
    2 ** 53 + 2,
    1e308,
    -1e308,
    Infinity,
    -Infinity,
    NaN,
    Number.MIN_VALUE,
    Number.EPSILON,
    '',
    ' ',
    '0',
    '-1',
    '1.5',
    '08',
    '0x10',
    '1e3',
    '1e400',
    'NaN',
    'Infinity',
    '-Infinity',
    'null',
    '10',
    '10ms',
    '10s',
    '10m',
    '10h',
    '24d',
    '596h',
    '597h',
    '600h',
    '99999999999999999999h',
    '1e9h',
    '2147483647',
    '2147483648',
    '2147483647ms',
    '1.5s',
    '.5s',
    '5.s',
    ' 5s ',
    '5 s',
    '5S',
    '5sec',
    '64KiB',
    '1MiB',
    '1GiB',
    '8GiB',
    '1e3KiB',
    '99999999999999999999GiB',
    '1.5KiB',
    '-1KiB',
    '1 kb',
    'auto',
    'AUTO',
    'none',
    'safe',
    'all',
    'opaque',
    'http1',
    'resp',
    'length-prefixed',
    'round-robin',
    '127.0.0.1:7000',
    ':7000',
    '[::1]:7000',
    '::1',
    '[::1]',
    'localhost',
    'host:port',
    'a:b:c',
    ':',
    '127.0.0.1:0',
    '127.0.0.1:65536',
    '127.0.0.1:-1',
    '127.0.0.1:1e3',
    'é.example',
    '-a.example',
    '__proto__',
    'constructor',
    'toString',
    'x'.repeat(300),
    true,
    false,
    null,
    [],
    {},
    [1],
    [200, 399],
    [399, 200],
    { host: '127.0.0.1', port: 1 },
    { host: '', port: 0 },
    { mode: 'all' },
    { type: 'http' },
    { __proto__: { port: 1 } }
  ),
  fc.string(),
  fc.integer(),
  fc.double(),
  fc.jsonValue({ maxDepth: 2 })
)

/** A small valid config; every listener field can then be overwritten. */
const base = (): Record<string, unknown> => ({
  listeners: [
    {
      listen: '127.0.0.1:7000',
      backends: ['127.0.0.1:7101', { host: '127.0.0.1', port: 7102, weight: 2 }],
    },
  ],
})

function setPath(root: Record<string, unknown>, path: readonly (string | number)[], value: unknown): void {
  let node: Record<string | number, unknown> = root
  for (const key of path.slice(0, -1)) {
    const next = node[key]
    if (typeof next !== 'object' || next === null) {
      node[key] = typeof path[path.indexOf(key) + 1] === 'number' ? [{}] : {}
    }
    node = node[key] as Record<string | number, unknown>
  }
  Object.defineProperty(node, path.at(-1)!, { value, enumerable: true, writable: true, configurable: true })
}

/** A valid config with some fields (known paths, and a few unknown keys) set to odd values. */
const config = fc
  .array(
    fc.tuple(
      fc.oneof(
        { weight: 8, arbitrary: fc.constantFrom(...PATHS) },
        {
          weight: 1,
          arbitrary: fc
            .tuple(
              fc.constantFrom(...PATHS),
              fc.constantFrom('balanse', 'listen ', '__proto__', 'Timeout', 'x')
            )
            .map(([p, k]) => [...p.slice(0, -1), k]),
        }
      ),
      odd
    ),
    { maxLength: 5 }
  )
  .map((sets) => {
    const c = base()
    for (const [path, value] of sets) setPath(c, path, value)
    return c
  })

/** Names of the fields that are durations, sizes or ports, in the resolved config. */
const DURATION = /(Timeout|timeout|interval|Grace|cooldown|Cooldown|maxAge|slowStart)$/
const SIZE = /^(maxPendingBytes|maxFrameBytes|maxBytes|maxTotalBytes)$/

/** The loader's contract, for one input: a config that can run, or a ConfigError. */
function loads(input: unknown): void {
  const before = inspect(input, { depth: Infinity })
  let result: unknown
  try {
    result = validateConfig(input)
  } catch (err) {
    check(err instanceof ConfigError, () => `threw ${(err as Error)?.constructor?.name}: ${String(err)}`)
    const issues = (err as ConfigError).issues
    check(issues.length > 0, () => 'a ConfigError without issues')
    for (const line of issues) {
      check(
        typeof line === 'string' && !line.includes('\n'),
        () => `an issue is not one line: ${JSON.stringify(line)}`
      )
      check(/: ./.test(line), () => `an issue names no field: ${JSON.stringify(line)}`)
    }
    return
  } finally {
    check(inspect(input, { depth: Infinity }) === before, () => 'validateConfig changed its input')
  }
  sane(result, [])
  // Compared as JSON, which is what is written out (and has no -0: `cooldown: -0` comes back as 0).
  const written = JSON.stringify(result)
  const again = JSON.stringify(validateConfig(JSON.parse(written)))
  check(again === written, () => `validating the resolved config again gives another config: ${again}`)
}

/** Every number finite; durations, sizes and ports in range. */
function sane(v: unknown, path: (string | number)[]): void {
  const where = path.join('.')
  if (typeof v === 'number') {
    check(Number.isFinite(v), () => `${where} is ${v}`)
    const key = String(path.at(-1))
    if (DURATION.test(key)) check(v >= 0 && v <= MAX_TIMER_MS, () => `duration ${where} is ${v}`)
    if (SIZE.test(key)) check(Number.isSafeInteger(v) && v >= 0, () => `size ${where} is ${v}`)
    if (key === 'port') check(Number.isInteger(v) && v >= 0 && v <= 65535, () => `port ${where} is ${v}`)
    return
  }
  if (typeof v !== 'object' || v === null) return
  for (const [k, x] of Object.entries(v)) sane(x, [...path, k])
}

property(
  t,
  'any value: a config or a ConfigError, never another exception',
  fc.anything({ maxDepth: 4 }),
  (v) => loads(v),
  500
)

property(
  t,
  'a valid config with fields set to odd values: a config that can run, or one line per problem naming the field',
  config,
  (c) => loads(c),
  1000
)

const dir = mkdtempSync(join(tmpdir(), 'baton-fuzz-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const file = join(dir, 'baton.yaml')

/** YAML fragments: anchors, aliases, merges, tags, flow collections, the things YAML adds to JSON. */
const YAML_TOKENS = [
  '&a ',
  '*a',
  '<<: *a\n',
  '!!binary ',
  '!!str ',
  '!!int ',
  '!!float ',
  '!!set ',
  '!!omap ',
  '? ',
  '- ',
  '[',
  ']',
  '{',
  '}',
  ': ',
  '\t',
  '\n',
  '  ',
  '#',
  '|\n',
  '>\n',
  '---\n',
  '...\n',
  '%YAML 1.1\n',
  '"\\u0000"',
  "'",
  '~',
  '.inf',
  '.nan',
  '0o17',
  '0x1F',
  '1_000',
  'yes',
  'no',
  'on',
]

property(
  t,
  'YAML text (a valid config written out, then mutated): readConfigFile returns a mapping or a ConfigError',
  fc.tuple(
    config,
    fc.array(fc.tuple(fc.nat(), fc.oneof(fc.constantFrom(...YAML_TOKENS), fc.string({ maxLength: 4 }))), {
      maxLength: 6,
    })
  ),
  ([c, edits]) => {
    let text = toYaml(c)
    for (const [at, token] of edits) {
      const i = at % (text.length + 1)
      text = text.slice(0, i) + token + text.slice(i)
    }
    writeFileSync(file, text)
    let parsed: unknown
    try {
      parsed = readConfigFile(file)
    } catch (err) {
      check(err instanceof ConfigError, () => `readConfigFile threw ${String(err)}`)
      return
    }
    loads(parsed)
  },
  300
)

const FLAGS = [
  '--listen',
  '--backend',
  '--balance',
  '--protocol',
  '--replay',
  '--response-timeout',
  '--pool-idle',
  '--health-check',
  '--check-interval',
  '--connect-timeout',
  '--retries',
  '--max-connections',
  '--workers',
  '--log-level',
  '--admin',
  '--pretty',
  '--check',
  '--listne',
  '-l',
  '-b',
  '--',
  '-x',
]

property(
  t,
  'command lines: parseCommand gives a command or a ConfigError, and a run command validates or fails cleanly',
  fc.array(
    fc.oneof(
      fc.constantFrom(...FLAGS),
      odd.filter((v) => typeof v === 'string') as fc.Arbitrary<string>,
      fc.constantFrom(
        '127.0.0.1:7000',
        '127.0.0.1:7101,weight=2',
        'h:1,maxconn=3,name=a',
        'h:1,wieght=2',
        '[::1]:1',
        'http:/health',
        'redis'
      )
    ),
    { maxLength: 12 }
  ),
  (argv) => {
    let command
    try {
      command = parseCommand(['--listen', '127.0.0.1:7000', '--backend', '127.0.0.1:7101', ...argv], () =>
        base()
      )
    } catch (err) {
      check(err instanceof ConfigError, () => `parseCommand threw ${String(err)}`)
      return
    }
    if (command.kind === 'run') loads(command.config)
  },
  500
)
