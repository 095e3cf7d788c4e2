/**
 * The error code table (lib/errors.ts): every code has its kind, side, retryable flag and meaning;
 * every code the sources raise is in it and every code in it is raised somewhere; each kind's
 * subclass carries what the table says; framing errors know whose bytes they were; the outcome and
 * unrecoverable-reason tables agree with the rest; docs/errors.md is the table as generated here.
 *
 * After changing the table: `BATON_UPDATE_DOCS=1 npx tap tests/errors.test.ts` rewrites the
 * generated part of docs/errors.md.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import {
  BackendError,
  BatonError,
  ClientError,
  ClusterError,
  CODES,
  ConfigError,
  FramingError,
  isErrorCode,
  LimitError,
  ListenError,
  NativePlaneError,
  OUTCOME_CODES,
  serverEof,
  UNRECOVERABLE,
  type ErrorCode,
  type ErrorKind,
} from '../lib/errors.js'
import { lengthPrefixed } from '../lib/framing/length-prefixed.js'
import { http1 } from '../lib/framing/http1.js'
import { NOT_REPLAYABLE } from '../lib/replay/policy.js'

const ROOT = join(import.meta.dirname, '..')
const codes = Object.keys(CODES) as ErrorCode[]

/** Every file under `dir` (relative to the repository) whose name ends in one of `exts`. */
function sources(dir: string, exts: readonly string[]): string[] {
  const out: string[] = []
  for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })) {
    if (e.isFile() && exts.some((x) => e.name.endsWith(x))) out.push(join(e.parentPath, e.name))
  }
  return out
}

const ERRORS_TS = join(ROOT, 'lib', 'errors.ts')
const code = [...sources('lib', ['.ts']), ...sources('native', ['.c', '.h'])].filter((f) => f !== ERRORS_TS)
const text = new Map(code.map((f) => [f, readFileSync(f, 'utf8')]))
/** lib/errors.ts past its tables: the subclasses and helpers, which raise codes too. */
const errorsTs = readFileSync(ERRORS_TS, 'utf8')
const raisers = errorsTs.slice(errorsTs.indexOf('export abstract class BatonError'))

t.test('every code has a kind, a side, a retryable flag and a one-line meaning', async (t) => {
  const kinds: readonly ErrorKind[] = ['config', 'listen', 'cluster', 'backend', 'client', 'framing', 'limit', 'native']
  t.ok(codes.length >= 20, `${codes.length} codes`)
  for (const c of codes) {
    const info = CODES[c]
    t.match(c, /^ERR_[A-Z][A-Z0-9_]*[A-Z0-9]$/, `${c}: Node's ERR_ form`)
    t.ok(kinds.includes(info.kind), `${c}: kind ${info.kind}`)
    t.ok(['client', 'server', 'internal', 'config', 'peer'].includes(info.side), `${c}: side ${info.side}`)
    t.equal(typeof info.retryable, 'boolean', `${c}: retryable`)
    t.ok(info.meaning.length > 20 && !info.meaning.includes('\n'), `${c}: meaning is one line`)
    t.ok(isErrorCode(c))
  }
  t.notOk(isErrorCode('ERR_BATON_NOPE'))
  t.notOk(isErrorCode('toString'), 'not fooled by the prototype')
  t.equal(new Set(codes.map((c) => CODES[c].meaning)).size, codes.length, 'no two codes share a meaning')
  // Only a server's transient failure may be worth re-sending the request for.
  for (const c of codes) if (CODES[c].retryable) t.equal(CODES[c].side, 'server', `${c}: retryable, so server-side`)
})

t.test('every code the sources raise is in the table, and every code in it is raised', async (t) => {
  const found = new Set<string>()
  for (const [file, src] of text) {
    // Baton's own prefixes, quoted: 'ERR_BATON_X' in TypeScript, "ERR_NATIVE_PLANE_X" in C.
    for (const m of src.matchAll(/['"`](ERR_(?:BATON|NATIVE)_[A-Z0-9_]+)['"`]/g)) {
      found.add(m[1]!)
      t.ok(isErrorCode(m[1]), `${m[1]} (${file.slice(ROOT.length + 1)}) is in CODES`)
    }
  }
  for (const c of codes) {
    const used = [...text.values(), raisers].some((src) => src.includes(`'${c}'`) || src.includes(`"${c}"`))
    t.ok(used, `${c} is raised or checked somewhere in lib/ or native/`)
  }
  t.ok(found.size >= 15, `${found.size} codes found in the sources`)
})

t.test('no error is made with a bare BatonError or a code outside the table', async (t) => {
  for (const [file, src] of text) {
    t.notMatch(src, /new BatonError\(/, `${file.slice(ROOT.length + 1)}: a subclass, not the base`)
  }
})

t.test('each kind has its subclass, and each instance carries what the table says', async (t) => {
  const made: [BatonError, string, ErrorKind][] = [
    [new ConfigError(['a: bad']), 'ConfigError', 'config'],
    [new ConfigError(['port: bad'], 'ERR_BATON_ADMIN'), 'ConfigError', 'config'],
    [new ListenError('web', '127.0.0.1:1', Object.assign(new Error('x'), { code: 'EADDRINUSE' })), 'ListenError', 'listen'],
    [new ListenError(undefined, 'a worker could not bind'), 'ListenError', 'listen'],
    [new ClusterError('ERR_BATON_WORKERS', 'x'), 'ClusterError', 'cluster'],
    [new BackendError('ERR_BATON_CONNECT_TIMEOUT', 'x'), 'BackendError', 'backend'],
    [serverEof(), 'BackendError', 'backend'],
    [new ClientError('ERR_BATON_REQUEST_TIMEOUT', 'x'), 'ClientError', 'client'],
    [new FramingError('ERR_BATON_FRAME_MALFORMED', 'server', 'x'), 'FramingError', 'framing'],
    [new LimitError('ERR_BATON_QUEUE', 'x'), 'LimitError', 'limit'],
    [new NativePlaneError('ERR_NATIVE_PLANE_SOCKET', 'x'), 'NativePlaneError', 'native'],
  ]
  const kindsSeen = new Set<ErrorKind>()
  for (const [err, name, kind] of made) {
    const info = CODES[err.code]
    kindsSeen.add(kind)
    t.ok(err instanceof BatonError && err instanceof Error, `${name}: a BatonError`)
    t.equal(err.name, name)
    t.equal(info.kind, kind, `${err.code} belongs to ${name}`)
    if (info.side !== 'peer') t.equal(err.side, info.side, `${err.code}: side from the table`)
    t.equal(err.retryable, info.retryable, `${err.code}: retryable from the table`)
  }
  t.equal(kindsSeen.size, new Set(codes.map((c) => CODES[c].kind)).size, 'every kind made once')
  t.strictSame((made[2]![0] as ListenError).listener, 'web')
  t.match(made[2]![0].message, /listener "web" cannot bind 127\.0\.0\.1:1: address already in use/)
  t.equal(serverEof(), serverEof(), 'the FIN error is made once')
})

t.test('framing errors: made by the framer, side by whose bytes, reply kept', async (t) => {
  const lp = lengthPrefixed({ lengthBytes: 4, maxFrameBytes: 64 })({ answered() {} })
  const tooBig = Buffer.from([0, 0, 1, 0])
  const req = lp.request(tooBig)
  t.ok(req instanceof FramingError, 'a FramingError')
  t.match(req, { code: 'ERR_BATON_FRAME_TOO_LARGE', side: 'client', retryable: false })
  const lp2 = lengthPrefixed({ lengthBytes: 4, maxFrameBytes: 1024 })({ answered() {} })
  t.match(lp2.response(Buffer.from([0, 0, 0, 1, 0x61])), {
    code: 'ERR_BATON_FRAME_MALFORMED',
    side: 'server',
    message: /response without a request/,
  })

  const h = http1()({ answered() {} })
  const bad = h.request(Buffer.from('GET / HTTP/1.1\nHost: x\n\n'))
  t.ok(bad instanceof FramingError)
  t.match(bad, { code: 'ERR_BATON_FRAME_MALFORMED', side: 'client' })
  t.match(bad?.reply?.toString('latin1'), /^HTTP\/1\.1 400 /, 'the client is told why')
  const h2 = http1()({ answered() {} })
  t.match(h2.response(Buffer.from('HTTP/1.1 200 OK\r\n\r\n')), { side: 'server', reply: undefined })
})

t.test('outcomes and codes: one mapping, covering every session error', async (t) => {
  const listed = new Set<string>(Object.values(OUTCOME_CODES).flat())
  for (const c of codes) {
    const kind = CODES[c].kind
    if (kind === 'backend' || kind === 'client' || kind === 'framing' || kind === 'limit')
      t.ok(listed.has(c), `${c} (a session's error) is listed under an outcome`)
  }
  t.strictSame(OUTCOME_CODES['framing-error'], ['ERR_BATON_FRAME_TOO_LARGE', 'ERR_BATON_FRAME_MALFORMED'])
})

t.test('unrecoverable reasons: bounded labels, the policy uses them, each is raised', async (t) => {
  const labels = Object.keys(UNRECOVERABLE)
  for (const l of labels) t.match(l, /^[a-z]+(-[a-z]+)*$/, `${l}: a label value`)
  for (const v of Object.values(NOT_REPLAYABLE)) t.ok(labels.includes(v), `policy reason ${v} is a label`)
  const policyLabels = new Set<string>(Object.values(NOT_REPLAYABLE))
  for (const l of labels) {
    if (policyLabels.has(l)) continue
    const used = [...text.values()].some((src) => new RegExp(`unrecoverable\\([^)]*'${l}'`).test(src))
    t.ok(used, `${l}: some path reports it`)
  }
})

/** The generated part of docs/errors.md. */
function renderDocs(): string {
  const cell = (s: string): string => s.replaceAll('|', '\\|')
  const lines = ['### Codes', '', '| code | kind | side | retryable | meaning |', '|---|---|---|---|---|']
  for (const c of codes) {
    const i = CODES[c]
    lines.push(`| \`${c}\` | ${i.kind} | ${i.side} | ${i.retryable ? 'yes' : 'no'} | ${cell(i.meaning)} |`)
  }
  lines.push('', '### Outcomes and codes', '', '| outcome | codes its error may carry |', '|---|---|')
  for (const [outcome, list] of Object.entries(OUTCOME_CODES)) {
    lines.push(`| \`${outcome}\` | ${list.length === 0 ? '(none of Baton\'s; Node\'s socket codes, or no error)' : list.map((c) => `\`${c}\``).join(', ')} |`)
  }
  lines.push('', '### Unrecoverable reasons', '', '| `reason` | meaning |', '|---|---|')
  for (const [label, meaning] of Object.entries(UNRECOVERABLE)) lines.push(`| \`${label}\` | ${cell(meaning)} |`)
  return lines.join('\n')
}

t.test('docs/errors.md is the table', async (t) => {
  const path = join(ROOT, 'docs', 'errors.md')
  const BEGIN = '<!-- generated from lib/errors.ts by tests/errors.test.ts: do not edit by hand -->'
  const END = '<!-- end of generated part -->'
  const doc = readFileSync(path, 'utf8')
  const from = doc.indexOf(BEGIN)
  const to = doc.indexOf(END)
  t.ok(from >= 0 && to > from, 'the markers are there')
  const want = `${BEGIN}\n${renderDocs()}\n${END}`
  const have = doc.slice(from, to + END.length)
  if (process.env.BATON_UPDATE_DOCS === '1' && have !== want) {
    writeFileSync(path, doc.slice(0, from) + want + doc.slice(to + END.length))
    t.pass('docs/errors.md rewritten')
    return
  }
  t.equal(have, want, 'up to date (BATON_UPDATE_DOCS=1 npx tap tests/errors.test.ts rewrites it)')
})
