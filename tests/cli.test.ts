/**
 * The built `baton` command, run as a child process: exit codes, one-line errors without stack
 * traces, config files, and a real run with traffic and a clean SIGTERM.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { parse as parseYaml } from 'yaml'
import { parseCommand } from '../lib/cli/args.js'
import { validateConfig } from '../lib/config/validate.js'
import { children, CLI, ensureBuilt, parseLog, ROOT } from './helpers/cli.js'

const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version
// Each case starts a node process; on a loaded 2-core CI box that is ~1s apiece, and the build in
// t.before can take a while: give the whole file more than the default 60s (every wait stays bounded).
t.setTimeout(300_000)
const RUN_TIMEOUT_MS = 30_000
const WAIT_MS = 20_000

t.before(() => ensureBuilt((text) => t.comment(text)))

function spawnCli(
  args: string[],
  env: NodeJS.ProcessEnv = process.env
): ChildProcess & { stdout: Readable; stderr: Readable } {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env })
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

interface Result {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Run the CLI to completion (bounded). */
function run(args: string[], timeoutMs = RUN_TIMEOUT_MS, env?: NodeJS.ProcessEnv): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawnCli(args, env)
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s))
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(
        new Error(
          `baton ${args.join(' ')} did not exit within ${timeoutMs}ms\nstdout: ${stdout}\nstderr: ${stderr}`
        )
      )
    }, timeoutMs)
    child.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

type Expect = string | RegExp

/** The resolved configuration `--check` prints (YAML) before its `configuration OK` line. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function checked(r: Result): any {
  return parseYaml(r.stdout.slice(0, r.stdout.lastIndexOf('configuration OK')))
}

/** Check a usage error: status 2, nothing on stdout, exactly one `baton: ...` line on stderr, no stack. */
function checkUsageError(t: Test, args: string[], r: Result, expected: Expect): string {
  t.equal(r.code, 2, `exit status 2 for: ${args.join(' ')}`)
  t.equal(r.stdout, '', 'nothing on stdout')
  t.notMatch(r.stderr, /\n {4}at /, 'no stack trace')
  t.notMatch(r.stderr, /internal error/, 'not an internal error')
  t.match(r.stderr, /^[^\n]*\n$/, 'exactly one line on stderr')
  const line = r.stderr.replace(/\n$/, '')
  if (typeof expected === 'string') t.equal(line, `baton: ${expected}`)
  else t.match(line, expected)
  return line
}

/**
 * Run several bad command lines at once (each is a node start-up, slow on a busy box) and check
 * each result in the order given. Returns the error lines.
 */
async function usageErrors(t: Test, cases: [args: string[], expected: Expect][]): Promise<string[]> {
  const results = await Promise.all(cases.map(([args]) => run(args)))
  return cases.map(([args, expected], i) => checkUsageError(t, args, results[i]!, expected))
}

type LogLine = Record<string, unknown> & { level: string; msg: string; time: string }

/** Lines of a stream, kept, with bounded waits for one that matches. */
class Lines {
  readonly all: string[] = []
  private waiters: {
    match: (line: string) => boolean
    resolve: (line: string) => void
    fail: (e: Error) => void
  }[] = []
  private closed = false

  constructor(stream: Readable) {
    const rl = createInterface({ input: stream, crlfDelay: Infinity })
    rl.on('line', (line) => {
      this.all.push(line)
      this.waiters = this.waiters.filter((w) => {
        if (!w.match(line)) return true
        w.resolve(line)
        return false
      })
    })
    rl.on('close', () => {
      this.closed = true
      for (const w of this.waiters) w.fail(new Error('stream ended'))
      this.waiters = []
    })
  }

  /** The first line (already seen or still to come) for which `match` is true. */
  wait(match: (line: string) => boolean, what: string, timeoutMs = WAIT_MS): Promise<string> {
    const seen = this.all.find(match)
    if (seen !== undefined) return Promise.resolve(seen)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter)
        reject(new Error(`no line for "${what}" within ${timeoutMs}ms; got:\n${this.all.join('\n')}`))
      }, timeoutMs)
      const waiter = {
        match,
        resolve: (line: string) => {
          clearTimeout(timer)
          resolve(line)
        },
        fail: (e: Error) => {
          clearTimeout(timer)
          reject(new Error(`no line for "${what}" (${e.message}); got:\n${this.all.join('\n')}`))
        },
      }
      if (this.closed) waiter.fail(new Error('stream ended'))
      else this.waiters.push(waiter)
    })
  }

  /** JSON log records seen so far (non-JSON lines skipped). */
  logs(): LogLine[] {
    return this.all.flatMap((l) => {
      const v = parseLog<LogLine>(l)
      return v === undefined ? [] : [v]
    })
  }

  /** The first JSON log record matching `match`. */
  async waitLog(match: (log: LogLine) => boolean, what: string, timeoutMs = WAIT_MS): Promise<LogLine> {
    const line = await this.wait(
      (l) => {
        const v = parseLog<LogLine>(l)
        return v !== undefined && match(v)
      },
      what,
      timeoutMs
    )
    return parseLog<LogLine>(line)!
  }
}

interface Running {
  child: ChildProcess
  stdout: Lines
  stderr: Lines
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** Send `signal` and wait (bounded) for the exit. */
  stop(
    signal?: NodeJS.Signals,
    timeoutMs?: number
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** Start the CLI as a long-running child; it is SIGKILLed in teardown if still alive. */
function start(t: Test, args: string[]): Running {
  const child = spawnCli(args)
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }))
  })
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  const stdout = new Lines(child.stdout!)
  const stderr = new Lines(child.stderr!)
  return {
    child,
    stdout,
    stderr,
    exited,
    async stop(signal = 'SIGTERM', timeoutMs = WAIT_MS) {
      child.kill(signal)
      let timer: NodeJS.Timeout | undefined
      try {
        return await Promise.race([
          exited,
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () =>
                reject(
                  new Error(
                    `baton did not exit within ${timeoutMs}ms of ${signal}\nstdout:\n${stdout.all.join('\n')}\nstderr:\n${stderr.all.join('\n')}`
                  )
                ),
              timeoutMs
            )
          }),
        ])
      } finally {
        clearTimeout(timer)
      }
    },
  }
}

/** A port that nothing listens on (bound, read, closed). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/** An in-process echo server on 127.0.0.1, closed in teardown. */
async function echoServer(t: Test): Promise<number> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    socket.pipe(socket)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: '127.0.0.1', port: 0 }, resolve)
  })
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      })
  )
  return (server.address() as net.AddressInfo).port
}

/** Send `payload` to port, half-close, and collect everything until the other side closes (bounded). */
function exchange(port: number, payload: Buffer, timeoutMs = WAIT_MS): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`exchange with port ${port} timed out after ${timeoutMs}ms`))
    }, timeoutMs)
    socket.on('connect', () => socket.end(payload))
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    socket.on('close', () => {
      clearTimeout(timer)
      resolve(Buffer.concat(chunks))
    })
  })
}

t.test('--help prints the usage and exits 0', async (t) => {
  for (const flag of ['--help', '-h']) {
    const r = await run([flag])
    t.equal(r.code, 0, flag)
    t.equal(r.stderr, '')
    t.match(r.stdout, /^Usage: baton --listen HOST:PORT --backend HOST:PORT/)
    t.match(r.stdout, /--config FILE/)
    t.match(r.stdout, /--check/)
  }
  // --help wins over everything else on the line, even bad input.
  const r = await run(['--listen', 'nonsense', '--help'])
  t.equal(r.code, 0)
  t.match(r.stdout, /^Usage: baton/)
})

t.test('--version prints "baton <version>" and exits 0', async (t) => {
  for (const flag of ['--version', '-v']) {
    const r = await run([flag])
    t.equal(r.code, 0, flag)
    t.equal(r.stdout, `baton ${VERSION}\n`)
    t.equal(r.stderr, '')
  }
})

t.test('unknown flag: exit 2, one line with a did-you-mean hint', async (t) => {
  await usageErrors(t, [
    [
      ['--lsiten', '127.0.0.1:7000', '--backend', '127.0.0.1:7101'],
      '--lsiten: unknown option (did you mean "--listen"?); see --help',
    ],
    [
      ['--listen', '127.0.0.1:7000', '--backend', '127.0.0.1:7101', '--balanse', 'first'],
      '--balanse: unknown option (did you mean "--balance"?); see --help',
    ],
    [['--frobnicate'], '--frobnicate: unknown option; see --help'],
    [
      ['--listen', '127.0.0.1:7000', '--backend', '127.0.0.1:7101', 'extra'],
      /^baton: Unexpected argument 'extra'.*; see --help$/,
    ],
    [['--listen'], /^baton: Option '-l, --listen <value>' argument missing; see --help$/],
  ])
})

t.test('missing or malformed flags', async (t) => {
  await usageErrors(t, [
    [[], '--listen: required (or use --config FILE); see --help'],
    [['--listen', '127.0.0.1:7000'], '--backend: at least one is required (or --discover); see --help'],
    [
      ['--listen', '127.0.0.1:7000', '--backend', '7101'],
      '--backend 7101: expected HOST:PORT, [V6]:PORT or unix:/PATH, e.g. 127.0.0.1:7101',
    ],
    [
      ['--listen', '127.0.0.1:7000', '--backend', '127.0.0.1:7101,wieght=2'],
      '--backend 127.0.0.1:7101,wieght=2: unknown parameter "wieght" (did you mean "weight"?); expected weight=N, maxconn=N, name=NAME, group=NAME, send-proxy=v1|v2|none or backup',
    ],
  ])
})

t.test('bad values: exit 2 with the field path', async (t) => {
  await usageErrors(t, [
    [
      ['--listen', '127.0.0.1:0', '--backend', '127.0.0.1:7101', '--backend', '127.0.0.1:80a'],
      'listeners[0].backends[1].port: expected an integer from 1 to 65535, got "80a"',
    ],
    [
      ['--listen', '127.0.0.1:99999', '--backend', '127.0.0.1:7101'],
      'listeners[0].listen.port: expected an integer from 0 to 65535 (0: any free port), got 99999',
    ],
    [
      ['--listen', '127.0.0.1:0', '--backend', '127.0.0.1:7101', '--balance', 'rr'],
      'listeners[0].balance: expected one of "round-robin", "least-connections", "random", "power-of-two", "source-hash", "first", got "rr"',
    ],
    [
      ['--listen', '127.0.0.1:0', '--backend', '127.0.0.1:7101', '--connect-timeout', '5x'],
      'listeners[0].connectTimeout: expected a duration such as 500ms, 2s or 10m, got "5x"',
    ],
    [
      ['--listen', '127.0.0.1:0', '--backend', '127.0.0.1:7101', '--log-level', 'verbose'],
      'log.level: expected one of "trace", "debug", "info", "warn", "error", "fatal", "silent", got "verbose"',
    ],
  ])
  // Several problems: one line each, all with the prefix, still no stack.
  const r = await run(['--listen', '127.0.0.1:x', '--backend', '127.0.0.1:80a', '--balance', 'rr'])
  t.equal(r.code, 2)
  t.equal(r.stdout, '')
  t.notMatch(r.stderr, /\n {4}at /)
  t.strictSame(r.stderr.trimEnd().split('\n'), [
    'baton: listeners[0].listen.port: expected an integer from 0 to 65535 (0: any free port), got "x"',
    'baton: listeners[0].backends[0].port: expected an integer from 1 to 65535, got "80a"',
    'baton: listeners[0].balance: expected one of "round-robin", "least-connections", "random", "power-of-two", "source-hash", "first", got "rr"',
  ])
})

t.test('durations a timer cannot hold: exit 2 naming the field, from flags and from a file', async (t) => {
  // Node would clamp each of these to 1 ms (TimeoutOverflowWarning): every request would time out.
  const TOO_LONG = 'expected a duration of at most 24d20h31m23.647s (2147483647 ms)'
  const flags = ['--listen', '127.0.0.1:0', '--backend', '127.0.0.1:7101', '--check']
  const dir = t.testdir({
    'baton.yaml': [
      'listeners:',
      '  - listen: 127.0.0.1:0',
      '    connectTimeout: 99999999999999999999999h',
      '    backends: [127.0.0.1:7101]',
      '',
    ].join('\n'),
  })
  await usageErrors(t, [
    [[...flags, '--response-timeout', '600h'], `listeners[0].responseTimeout: ${TOO_LONG}, got "600h"`],
    [
      [...flags, '--connect-timeout', '99999999999999999999999h'],
      `listeners[0].connectTimeout: ${TOO_LONG}, got "99999999999999999999999h"`,
    ],
    [
      [...flags, '--check-interval', '600h'],
      'listeners[0].healthCheck.interval: expected a duration of at most 22d14h17m37.86s (1952257860 ms), got "600h"',
    ],
    [
      ['--config', join(dir, 'baton.yaml'), '--check'],
      `listeners[0].connectTimeout: ${TOO_LONG}, got "99999999999999999999999h"`,
    ],
  ])
  const r = await run([...flags, '--response-timeout', '596h'])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /\n {4}responseTimeout: 596h\n/, 'the longest whole hours that fit are accepted')
})

t.test('--check with flags prints the resolved config and exits 0', async (t) => {
  const r = await run([
    '--listen',
    ':7000',
    '--backend',
    '127.0.0.1:7101,weight=3,maxconn=5',
    '--retries',
    '1',
    '--check',
  ])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /\nconfiguration OK \(command line\)\n$/)
  const config = checked(r) as {
    listeners: { listen: unknown; backends: unknown[]; retries: number }[]
  }
  t.strictSame(config.listeners[0]!.listen, { host: '0.0.0.0', port: 7000 })
  t.strictSame(config.listeners[0]!.backends, [
    { host: '127.0.0.1', port: 7101, weight: 3, maxConnections: 5 },
  ])
  t.equal(config.listeners[0]!.retries, 1)
})

t.test('--config with YAML and JSON files and --check', async (t) => {
  const dir = t.testdir({
    'baton.yaml': [
      'listeners:',
      '  - name: web',
      '    listen: 127.0.0.1:0',
      '    balance: least-connections',
      '    connectTimeout: 500ms',
      '    maxPendingBytes: 64KiB',
      '    backends:',
      '      - 127.0.0.1:7101',
      '      - { host: 127.0.0.1, port: 7102, weight: 2 }',
      'shutdownGrace: 2s',
      'log:',
      '  level: warn',
      '',
    ].join('\n'),
    'baton.json': JSON.stringify({
      listeners: [
        {
          listen: { host: '127.0.0.1', port: '0' },
          backends: ['127.0.0.1:7101'],
          passive: { cooldown: '1m' },
        },
      ],
    }),
  })

  const yaml = join(dir, 'baton.yaml')
  let r = await run(['--config', yaml, '--check'])
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stderr, '')
  t.match(
    r.stdout,
    new RegExp(`\\nconfiguration OK \\(${yaml.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\)\\n$`)
  )
  let config = checked(r) as Record<string, any>
  t.equal(config.listeners[0].name, 'web')
  t.equal(config.listeners[0].balance, 'least-connections')
  t.equal(config.listeners[0].connectTimeout, '500ms', 'a duration as written')
  t.equal(config.listeners[0].clientTimeout, '10m', 'a default duration spelled as one')
  t.equal(config.listeners[0].maxPendingBytes, 65536)
  t.strictSame(config.listeners[0].backends, [
    { host: '127.0.0.1', port: 7101, weight: 1, maxConnections: 0 },
    { host: '127.0.0.1', port: 7102, weight: 2, maxConnections: 0 },
  ])
  t.equal(config.shutdownGrace, '2s')
  t.strictSame(config.log, { level: 'warn', access: true }, 'the access log is on by default for the command')

  // --log-level on the command line overrides the file.
  r = await run(['-c', yaml, '--log-level', 'debug', '--check'])
  t.equal(r.code, 0, r.stderr)
  config = checked(r) as Record<string, any>
  t.equal(config.log.level, 'debug')

  const json = join(dir, 'baton.json')
  r = await run(['--config', json, '--check'])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /configuration OK/)
  config = checked(r) as Record<string, any>
  t.strictSame(config.listeners[0].listen, { host: '127.0.0.1', port: 0 })
  t.strictSame(config.listeners[0].passive, {
    failures: 3,
    cooldown: '1m',
    maxCooldown: '5m',
    maxEjectPercent: 50,
  })
})

t.test('bad config files: exit 2, one line each', async (t) => {
  const dir = t.testdir({
    'typo.yaml':
      'listeners:\n  - listen: 127.0.0.1:0\n    backends:\n      - { host: 127.0.0.1, port: 7101, wieght: 2 }\n',
    'typo.json': JSON.stringify({
      listeners: [{ listen: '127.0.0.1:0', backends: ['127.0.0.1:7101'] }],
      shutdownGrase: '1s',
    }),
    'broken.yaml': 'listeners:\n  - listen: [127.0.0.1:0\n    backends: {\n',
    'broken.json': '{ "listeners": [ { "listen": "127.0.0.1:0", } ',
    'list.yaml': '- 127.0.0.1:7101\n',
    'empty.yaml': '',
  })
  const missing = join(dir, 'nope.yaml')
  const broken = ['broken.yaml', 'broken.json'].map((name) => join(dir, name))
  const notMapping = ['list.yaml', 'empty.yaml'].map((name) => join(dir, name))
  const lines = await usageErrors(t, [
    [
      ['--config', join(dir, 'typo.yaml'), '--check'],
      'listeners[0].backends[0].wieght: unknown option (did you mean "weight"?)',
    ],
    [['--config', join(dir, 'typo.json')], 'shutdownGrase: unknown option (did you mean "shutdownGrace"?)'],
    [['--config', missing], `--config ${missing}: no such file`],
    ...broken.map((path): [string[], Expect] => [
      ['--config', path, '--check'],
      /^baton: .+: not valid YAML or JSON: .+/,
    ]),
    ...notMapping.map((path): [string[], Expect] => [
      ['--config', path],
      `${path}: expected a mapping with "listeners" at the top`,
    ]),
  ])
  broken.forEach((path, i) => {
    const line = lines[3 + i]!
    t.ok(line.startsWith(`baton: ${path}: not valid YAML or JSON: `), line)
  })
})

t.test('a config that is not a regular file, or is over 1 MiB, is refused at once: exit 2', async (t) => {
  // Each used to hang: /dev/zero read without end (RSS climbing), a FIFO blocked opening it.
  const MiB = 1024 * 1024
  const head = 'listeners: [{ listen: "127.0.0.1:0", backends: ["127.0.0.1:7101"] }]\n'
  const pad = (size: number) => head + '#'.repeat(size - head.length - 1) + '\n'
  const dir = t.testdir({ 'big.yaml': pad(MiB + 1), 'limit.yaml': pad(MiB), sub: {} })
  const fifo = join(dir, 'fifo.yaml')
  execFileSync('mkfifo', [fifo])
  const cases: [path: string, expected: string][] = [
    ['/dev/zero', '--config /dev/zero: not a regular file (a character device)'],
    [join(dir, 'sub'), `--config ${join(dir, 'sub')}: not a regular file (a directory)`],
    [fifo, `--config ${fifo}: not a regular file (a FIFO)`],
    [join(dir, 'big.yaml'), `--config ${join(dir, 'big.yaml')}: larger than 1 MiB (${MiB + 1} bytes)`],
  ]
  // A shorter bound than other runs: these must fail at once, and a hang holds a growing process.
  const results = await Promise.all(cases.map(([path]) => run(['--config', path, '--check'], 10_000)))
  cases.forEach(([path, expected], i) => checkUsageError(t, ['--config', path], results[i]!, expected))
  const r = await run(['--config', join(dir, 'limit.yaml'), '--check'])
  t.equal(r.code, 0, `exactly 1 MiB is accepted: ${r.stderr}`)
  t.match(r.stdout, /configuration OK/)
})

t.test('--config cannot be combined with --listen or --backend', async (t) => {
  const dir = t.testdir({
    'baton.yaml': 'listeners: [{ listen: "127.0.0.1:0", backends: ["127.0.0.1:7101"] }]\n',
  })
  const path = join(dir, 'baton.yaml')
  await usageErrors(t, [
    [
      ['--config', path, '--listen', '127.0.0.1:7000'],
      '--listen: cannot be combined with --config; put it in the config file',
    ],
    [
      ['--config', path, '--backend', '127.0.0.1:7102'],
      '--backend: cannot be combined with --config; put it in the config file',
    ],
  ])
})

t.test(
  "--data-plane sets the listener's dataPlane (default auto); a bad value or one with --config is refused",
  async (t) => {
    const plane = (extra: string[]) => {
      const cmd = parseCommand(['--listen', '127.0.0.1:7000', '--backend', '127.0.0.1:7101', ...extra])
      if (cmd.kind !== 'run') throw new Error('expected a run command')
      return validateConfig(cmd.config).listeners[0]!.dataPlane
    }
    t.equal(plane([]), 'auto', 'the default')
    t.equal(plane(['--data-plane', 'js']), 'js')
    t.equal(plane(['--data-plane', 'auto']), 'auto')
    t.throws(
      () => plane(['--data-plane', 'fast']),
      /listeners\[0\]\.dataPlane: expected one of "auto", "js", "native"/
    )
    t.throws(
      () => parseCommand(['--config', 'baton.yaml', '--data-plane', 'js'], () => ({})),
      /--data-plane: cannot be combined with --config; put it in the config file/
    )
  }
)

t.test('address already in use: exit 2 naming the listener', async (t) => {
  const blocker = net.createServer()
  await new Promise<void>((resolve, reject) => {
    blocker.once('error', reject)
    blocker.listen({ host: '127.0.0.1', port: 0 }, resolve)
  })
  t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())))
  const { port } = blocker.address() as net.AddressInfo
  const backend = await freePort()
  const r = await run(['--listen', `127.0.0.1:${port}`, '--backend', `127.0.0.1:${backend}`])
  t.equal(r.code, 2, r.stderr)
  t.notMatch(r.stderr, /\n {4}at /, 'no stack trace')
  t.match(
    r.stderr,
    new RegExp(
      `^baton: listener "127\\.0\\.0\\.1:${port}" cannot bind 127\\.0\\.0\\.1:${port}: address already in use\\n$`,
      'm'
    )
  )
  t.equal(r.stderr.split('\n').filter((l) => l.startsWith('baton: ')).length, 1, 'one error line')
})

t.test('a backend refusing at start is a warning; SIGTERM exits 0', async (t) => {
  const dead = await freePort()
  const baton = start(t, ['--listen', '127.0.0.1:0', '--backend', `127.0.0.1:${dead}`])
  const listening = await baton.stdout.waitLog((l) => l.msg === 'listening', 'listening')
  t.equal(listening.level, 'info', 'the level as text')
  t.match(listening.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'an ISO 8601 time')
  t.match(listening.address, /^127\.0\.0\.1:\d+$/)
  t.not(listening.address, '127.0.0.1:0', 'the bound port is logged')
  const warn = await baton.stdout.waitLog(
    (l) => l.msg === 'backend not reachable at start',
    'backend warning'
  )
  t.equal(warn.level, 'warn', 'a warning')
  t.equal(warn.backend, `127.0.0.1:${dead}`)
  t.equal(warn.reason, 'ECONNREFUSED')
  t.equal(baton.child.exitCode, null, 'still running')

  // It still accepts: a client gets a connection, which is then closed for want of a backend.
  const port = Number(/:(\d+)$/.exec(String(listening.address))![1])
  const reply = await exchange(port, Buffer.from('hello')).catch((err: NodeJS.ErrnoException) => {
    t.equal(err.code, 'ECONNRESET', 'closed (or reset) without a reply')
    return Buffer.alloc(0)
  })
  t.equal(reply.length, 0, 'no bytes back from a dead backend')

  const exit = await baton.stop('SIGTERM')
  t.strictSame(exit, { code: 0, signal: null }, 'SIGTERM exits 0')
  t.ok(
    baton.stdout.logs().some((l) => l.msg === 'stopping'),
    'logged "stopping"'
  )
  t.ok(
    baton.stdout.logs().some((l) => l.msg === 'stopped'),
    'logged "stopped"'
  )
  t.equal(baton.stderr.all.join('\n'), '', 'nothing on stderr')
})

t.test('a real run: traffic through two weighted backends, debug lines, SIGTERM', async (t) => {
  const echo1 = await echoServer(t)
  const echo2 = await echoServer(t)
  const baton = start(t, [
    '--listen',
    '127.0.0.1:0',
    '--backend',
    `127.0.0.1:${echo1}`,
    '--backend',
    `127.0.0.1:${echo2},weight=2`,
    '--balance',
    'round-robin',
    '--log-level',
    'debug',
  ])
  const listening = await baton.stdout.waitLog((l) => l.msg === 'listening', 'listening')
  t.equal(listening.balance, 'round-robin')
  t.strictSame(listening.backends, [`127.0.0.1:${echo1}`, `127.0.0.1:${echo2} weight=2`])
  const port = Number(/:(\d+)$/.exec(String(listening.address))![1])

  // Sequential sessions so each one's backend is the algorithm's next pick.
  const SESSIONS = 6
  for (let i = 0; i < SESSIONS; i++) {
    const payload = Buffer.alloc(1000 + i * 1000, `session ${i};`)
    const reply = await exchange(port, payload)
    t.ok(reply.equals(payload), `session ${i}: ${payload.length} bytes echoed intact`)
  }

  const closedLines: LogLine[] = []
  for (let i = 0; i < SESSIONS; i++) {
    // Wait for each "session closed" line in turn; the server side may close a moment after the client.
    closedLines.push(
      await baton.stdout.waitLog(
        (l) => l.msg === 'session closed' && closedLines.every((c) => c.session !== l.session),
        `session closed #${i + 1}`
      )
    )
  }
  closedLines.sort((a, b) => Number(a.session) - Number(b.session))
  closedLines.forEach((l, i) => {
    const bytes = 1000 + i * 1000
    t.equal(l.level, 'debug', 'a debug line')
    t.equal(l.outcome, 'done', `session ${i} outcome`)
    t.equal(l.bytesFromClient, bytes, `session ${i} bytes from client`)
    t.equal(l.bytesToClient, bytes, `session ${i} bytes to client`)
    t.type(l.durationMs, 'number')
    t.match(l.client, /^127\.0\.0\.1:\d+$/)
  })
  const picks = closedLines.map((l) => l.backend)
  const count = (b: string): number => picks.filter((p) => p === b).length
  t.equal(count(`127.0.0.1:${echo1}`), 2, `weight 1 backend: 2 of 6 (${picks.join(', ')})`)
  t.equal(count(`127.0.0.1:${echo2}`), 4, `weight 2 backend: 4 of 6 (${picks.join(', ')})`)

  const exit = await baton.stop('SIGTERM')
  t.strictSame(exit, { code: 0, signal: null }, 'SIGTERM exits 0')
  t.ok(
    baton.stdout.logs().some((l) => l.msg === 'stopped'),
    'logged "stopped"'
  )
  t.equal(baton.stderr.all.join('\n'), '', 'nothing on stderr')
})

t.test('--workers: bad values exit 2; --check shows the setting; a file may carry it', async (t) => {
  await usageErrors(t, [
    [
      ['--listen', '127.0.0.1:0', '--backend', '127.0.0.1:7101', '--workers', '0'],
      'workers: expected "auto" or an integer from 1 to 1024, got 0',
    ],
    [
      ['--listen', '127.0.0.1:0', '--backend', '127.0.0.1:7101', '--workers', 'many'],
      'workers: expected "auto" or an integer from 1 to 1024, got "many"',
    ],
    [
      ['--listen', '127.0.0.1:0', '--backend', '127.0.0.1:7101', '--wokers', '2'],
      '--wokers: unknown option (did you mean "--workers"?); see --help',
    ],
  ])
  let r = await run([
    '--listen',
    '127.0.0.1:0',
    '--backend',
    '127.0.0.1:7101',
    '--workers',
    'auto',
    '--check',
  ])
  t.equal(r.code, 0, r.stderr)
  t.equal(checked(r).workers, 'auto')
  r = await run(['--listen', '127.0.0.1:0', '--backend', '127.0.0.1:7101', '--check'])
  t.equal(checked(r).workers, undefined, 'absent: one process')

  const dir = t.testdir({
    'baton.yaml': 'listeners: [{ listen: "127.0.0.1:0", backends: ["127.0.0.1:7101"] }]\nworkers: 3\n',
  })
  r = await run(['--config', join(dir, 'baton.yaml'), '--check'])
  t.equal(checked(r).workers, 3, 'from the file')
  r = await run(['--config', join(dir, 'baton.yaml'), '--workers', '2', '--check'])
  t.equal(r.code, 0, r.stderr)
  t.equal(checked(r).workers, 2, 'the flag wins')
  r = await run(['--help'])
  t.match(r.stdout, /--workers N\|auto/)
})

t.test('--workers 2: address already in use exits 2 naming the listener, workers and all', async (t) => {
  const blocker = net.createServer()
  await new Promise<void>((resolve, reject) => {
    blocker.once('error', reject)
    blocker.listen({ host: '127.0.0.1', port: 0 }, resolve)
  })
  t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())))
  const { port } = blocker.address() as net.AddressInfo
  const backend = await freePort()
  const r = await run([
    '--listen',
    `127.0.0.1:${port}`,
    '--backend',
    `127.0.0.1:${backend}`,
    '--workers',
    '2',
  ])
  t.equal(r.code, 2, r.stderr)
  t.notMatch(r.stderr, /\n {4}at /, 'no stack trace')
  t.equal(
    r.stderr,
    `baton: listener "127.0.0.1:${port}" cannot bind 127.0.0.1:${port}: address already in use\n`,
    'one line, as with one process'
  )
})

t.test('--workers 2 from the command line: traffic, SIGTERM exits 0', async (t) => {
  const echo = await echoServer(t)
  const baton = start(t, ['--listen', '127.0.0.1:0', '--backend', `127.0.0.1:${echo}`, '--workers', '2'])
  const started = await baton.stdout.waitLog((l) => l.msg === 'workers started', 'workers started')
  t.equal(started.workers, 2)
  t.equal(started.scheduling, 'none', 'the kernel spreads connections (SCHED_NONE) unless told otherwise')
  const listening = await baton.stdout.waitLog((l) => l.msg === 'listening', 'listening')
  const port = Number(/:(\d+)$/.exec(String(listening.address))![1])
  for (let i = 0; i < 4; i++) {
    const payload = Buffer.from(`hello ${i}`)
    t.ok((await exchange(port, payload)).equals(payload), `session ${i} echoed`)
  }
  // SIGHUP without a config file: a warning, nothing else.
  baton.child.kill('SIGHUP')
  await baton.stdout.waitLog((l) => l.msg === 'SIGHUP: nothing to reload without --config', 'SIGHUP warning')
  t.strictSame(await baton.stop('SIGTERM'), { code: 0, signal: null }, 'SIGTERM exits 0')
  t.equal(baton.stderr.all.join('\n'), '', 'nothing on stderr')
})

t.test('an admin address that cannot be used: exit 2, with one process or with workers', async (t) => {
  const backend = await freePort()
  const base = ['--listen', '127.0.0.1:0', '--backend', `127.0.0.1:${backend}`, '--admin', '10.0.0.1:9']
  // Refused by the config check, before any listener is bound or logs "listening".
  const expected =
    'baton: admin.listen: the admin server refuses to bind 10.0.0.1 without a token: bind 127.0.0.1 (or ::1, localhost), or set admin.tokenFile, --admin-token-file or BATON_ADMIN_TOKEN\n'
  const [single, workers] = await Promise.all([run(base), run([...base, '--workers', '2'])])
  t.equal(single.code, 2, 'one process: exits')
  t.equal(single.stderr, expected)
  t.equal(single.stdout, '', 'nothing logged: not even "listening"')
  t.equal(workers.code, 2, 'workers: exits')
  t.equal(workers.stderr, expected)
})

t.test('--check refuses what the runtime would refuse, one test each', async (t) => {
  const yaml = (text: string): string => text
  const dir = t.testdir({
    'same-address.yaml': yaml(
      'listeners:\n  - { listen: "127.0.0.1:7000", backends: ["127.0.0.1:7101"] }\n  - { name: two, listen: "127.0.0.1:7000", backends: ["127.0.0.1:7102"] }\n'
    ),
    'wildcard.yaml': yaml(
      'listeners:\n  - { listen: "127.0.0.1:7000", backends: ["127.0.0.1:7101"] }\n  - { name: two, listen: ":7000", backends: ["127.0.0.1:7102"] }\n'
    ),
    'same-backend.yaml': yaml(
      'listeners:\n  - { listen: "127.0.0.1:7000", backends: ["127.0.0.1:7101", "127.0.0.1:7101"] }\n'
    ),
    'same-name.yaml': yaml(
      'listeners:\n  - listen: "127.0.0.1:7000"\n    backends: [{ name: a, host: 127.0.0.1, port: 7101 }, { name: a, host: 127.0.0.1, port: 7102 }]\n'
    ),
    'scheme.yaml': yaml('listeners:\n  - { listen: "127.0.0.1:7000", backends: ["redis://127.0.0.1"] }\n'),
    'scheme-host.yaml': yaml(
      'listeners:\n  - { listen: "127.0.0.1:7000", backends: [{ host: "redis://127.0.0.1", port: 6379 }] }\n'
    ),
    'path.yaml': yaml(
      'listeners:\n  - { listen: "127.0.0.1:7000", backends: ["127.0.0.1:7101"], healthCheck: { type: http, path: healthz } }\n'
    ),
    'admin.yaml': yaml(
      'listeners:\n  - { listen: "127.0.0.1:7000", backends: ["127.0.0.1:7101"] }\nadmin: { listen: "0.0.0.0:9000" }\n'
    ),
  })
  const check = (file: string): string[] => ['--config', join(dir, file), '--check']
  await usageErrors(t, [
    [
      check('same-address.yaml'),
      'listeners[1].listen: 127.0.0.1:7000 is already taken by listeners[0] (127.0.0.1:7000); each listener needs its own address',
    ],
    [
      check('wildcard.yaml'),
      'listeners[1].listen: 0.0.0.0:7000 is already taken by listeners[0] (127.0.0.1:7000); each listener needs its own address',
    ],
    [
      check('same-backend.yaml'),
      'listeners[0].backends[1]: backend name "127.0.0.1:7101" is already used by backends[0]; give each backend its own name',
    ],
    [
      check('same-name.yaml'),
      'listeners[0].backends[1].name: backend name "a" is already used by backends[0]; give each backend its own name',
    ],
    [
      check('scheme.yaml'),
      'listeners[0].backends[0]: expected a host name or IP address without a scheme (not a URL such as "redis://host"), got "redis://127.0.0.1"',
    ],
    [
      check('scheme-host.yaml'),
      'listeners[0].backends[0].host: expected a host name or IP address without a scheme (not a URL such as "redis://host"), got "redis://127.0.0.1"',
    ],
    [
      check('path.yaml'),
      'listeners[0].healthCheck.path: expected a path that starts with "/", such as /healthz, got "healthz"',
    ],
    [
      check('admin.yaml'),
      'admin.listen: the admin server refuses to bind 0.0.0.0 without a token: bind 127.0.0.1 (or ::1, localhost), or set admin.tokenFile, --admin-token-file or BATON_ADMIN_TOKEN',
    ],
    [
      ['--listen', '127.0.0.1:7000', '--backend', 'redis://127.0.0.1:6379', '--check'],
      /^baton: (--backend|listeners\[0\]\.backends\[0\])[^\n]*scheme/,
    ],
    [
      [
        '--listen',
        '127.0.0.1:7000',
        '--backend',
        '127.0.0.1:7101',
        '--health-check',
        'http:healthz',
        '--check',
      ],
      'listeners[0].healthCheck.path: expected a path that starts with "/", such as /healthz, got "healthz"',
    ],
  ])
})

t.test('admin token from a file, the environment or the config: --check never prints it', async (t) => {
  const TOKEN = 's3cret-token-from-somewhere'
  const dir = t.testdir({
    token: `  ${TOKEN}\n`,
    'open-token': `${TOKEN}\n`,
    empty: ' \n',
    'baton.yaml': `listeners: [{ listen: "127.0.0.1:0", backends: ["127.0.0.1:7101"] }]\nadmin: { listen: "0.0.0.0:0", tokenFile: ${join(dir0(), 'token')} }\n`,
    'inline.yaml': `listeners: [{ listen: "127.0.0.1:0", backends: ["127.0.0.1:7101"] }]\nadmin: { listen: "0.0.0.0:0", token: ${TOKEN} }\n`,
    'both.yaml': `listeners: [{ listen: "127.0.0.1:0", backends: ["127.0.0.1:7101"] }]\nadmin: { token: ${TOKEN}, tokenFile: /nonexistent }\n`,
  })
  function dir0(): string {
    return t.testdirName
  }
  chmodSync(join(dir, 'token'), 0o600)
  chmodSync(join(dir, 'empty'), 0o600)
  chmodSync(join(dir, 'open-token'), 0o644)
  const flags = ['--listen', '127.0.0.1:0', '--backend', '127.0.0.1:7101', '--admin', '0.0.0.0:0']
  const env = { ...process.env, BATON_ADMIN_TOKEN: ` ${TOKEN} ` }
  const noEnv = { ...process.env }
  delete noEnv.BATON_ADMIN_TOKEN
  const [fromFlag, fromEnv, fromConfig, inline, flagBeatsEnv] = await Promise.all([
    run([...flags, '--admin-token-file', join(dir, 'token'), '--check'], RUN_TIMEOUT_MS, noEnv),
    run([...flags, '--check'], RUN_TIMEOUT_MS, env),
    run(['--config', join(dir, 'baton.yaml'), '--check'], RUN_TIMEOUT_MS, noEnv),
    run(['--config', join(dir, 'inline.yaml'), '--check'], RUN_TIMEOUT_MS, noEnv),
    run([...flags, '--admin-token-file', join(dir, 'token'), '--check'], RUN_TIMEOUT_MS, env),
  ])
  for (const [r, source] of [
    [fromFlag, `--admin-token-file ${join(dir, 'token')}`],
    [fromEnv, 'BATON_ADMIN_TOKEN'],
    [fromConfig, `admin.tokenFile ${join(dir, 'token')}`],
    [inline, 'admin.token'],
    [flagBeatsEnv, `--admin-token-file ${join(dir, 'token')}`],
  ] as const) {
    t.equal(r.code, 0, r.stderr)
    t.notMatch(r.stdout, TOKEN, `the token is not printed (${source})`)
    t.equal(checked(r).admin.token, `(hidden, from ${source})`, `where it came from: ${source}`)
    t.equal(checked(r).admin.tokenFile, undefined, 'read into the token')
  }

  const bad = await Promise.all([
    run([...flags, '--admin-token-file', join(dir, 'empty'), '--check'], RUN_TIMEOUT_MS, noEnv),
    run([...flags, '--admin-token-file', join(dir, 'open-token'), '--check'], RUN_TIMEOUT_MS, noEnv),
    run([...flags, '--admin-token-file', join(dir, 'missing'), '--check'], RUN_TIMEOUT_MS, noEnv),
    run([...flags, '--admin-token-file', dir, '--check'], RUN_TIMEOUT_MS, noEnv),
    run([...flags, '--check'], RUN_TIMEOUT_MS, { ...noEnv, BATON_ADMIN_TOKEN: '  ' }),
    run(['--config', join(dir, 'both.yaml'), '--check'], RUN_TIMEOUT_MS, noEnv),
  ])
  const expected = [
    `baton: --admin-token-file ${join(dir, 'empty')}: empty`,
    `baton: --admin-token-file ${join(dir, 'open-token')}: readable by every user (mode 644); chmod 600 (or 640) it`,
    `baton: --admin-token-file ${join(dir, 'missing')}: no such file`,
    `baton: --admin-token-file ${dir}: not a regular file (a directory)`,
    'baton: BATON_ADMIN_TOKEN: set but empty; unset it or give a token',
    'baton: admin: set token or tokenFile, not both',
  ]
  bad.forEach((r, i) => {
    t.equal(r.code, 2, expected[i])
    t.equal(r.stderr, `${expected[i]}\n`)
    t.notMatch(r.stderr + r.stdout, TOKEN, 'the token is not printed')
  })
})

t.test('--no-access-log turns the access log off; it is on otherwise', async (t) => {
  const flags = ['--listen', '127.0.0.1:0', '--backend', '127.0.0.1:7101', '--check']
  const [on, off, both] = await Promise.all([
    run(flags),
    run([...flags, '--no-access-log']),
    run([...flags, '--no-access-log', '--access-log']),
  ])
  t.equal(checked(on).log.access, true)
  t.equal(checked(off).log.access, false)
  checkUsageError(t, flags, both, '--access-log and --no-access-log: choose one')
})

t.test('SIGUSR1 does not open an inspector; the process keeps serving, access line and all', async (t) => {
  const echo = await echoServer(t)
  const baton = start(t, ['--listen', '127.0.0.1:0', '--backend', `127.0.0.1:${echo}`])
  const listening = await baton.stdout.waitLog((l) => l.msg === 'listening', 'listening')
  const port = Number(/:(\d+)$/.exec(String(listening.address))![1])
  // Node's inspector takes 127.0.0.1:9229 and says so on stderr; a port 9229 taken by someone
  // else on this box would only make the port check below say nothing, so it is made conditional.
  const inspectorFreeBefore = await refused(9229)
  baton.child.kill('SIGUSR1')
  const line = await baton.stdout.waitLog((l) => l.signal === 'SIGUSR1', 'SIGUSR1 logged')
  t.match(line.msg, /SIGUSR1 ignored/)
  const payload = Buffer.from('still there?')
  t.ok((await exchange(port, payload)).equals(payload), 'still serving')
  const access = await baton.stdout.waitLog((l) => l.msg === 'access', 'an access line (on by default)')
  t.equal(access.termination, '--')
  t.equal(access.level, 'info')
  t.equal(baton.child.exitCode, null, 'still running')
  t.notMatch(baton.stderr.all.join('\n'), /Debugger listening/, 'no inspector on stderr')
  if (inspectorFreeBefore) t.ok(await refused(9229), 'nothing listens on 127.0.0.1:9229')
  t.strictSame(await baton.stop('SIGTERM'), { code: 0, signal: null }, 'SIGTERM exits 0')
  t.equal(baton.stderr.all.join('\n'), '', 'nothing on stderr')
})

/** Whether a connect to 127.0.0.1:`port` is refused. */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    const timer = setTimeout(() => {
      socket.destroy()
      resolve(false)
    }, 2000)
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.destroy()
      resolve(false)
    })
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      resolve(err.code === 'ECONNREFUSED')
    })
  })
}

t.test('a reload reads the token file again: the admin server takes the new token', async (t) => {
  const echo = await echoServer(t)
  const dir = t.testdir({
    token: 'first-token-1234\n',
    'baton.yaml': [
      'listeners:',
      `  - { listen: "127.0.0.1:0", backends: [{ name: alpha, host: 127.0.0.1, port: ${echo} }] }`,
      'admin:',
      '  listen: 127.0.0.1:0',
      `  tokenFile: ${join(t.testdirName, 'token')}`,
      '',
    ].join('\n'),
  })
  chmodSync(join(dir, 'token'), 0o600)
  const env = { ...process.env }
  delete env.BATON_ADMIN_TOKEN
  const child = spawnCli(['--config', join(dir, 'baton.yaml')], env)
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  const stdout = new Lines(child.stdout)
  const adminLine = await stdout.waitLog((l) => l.msg === 'admin server listening', 'admin listening')
  const adminPort = Number(/:(\d+)$/.exec(String(adminLine.address))![1])
  const drain = (token: string): Promise<number> => post(adminPort, '/api/backends/alpha/drain', token)
  t.equal(await drain('first-token-1234'), 200, 'the first token works')
  writeFileSync(join(dir, 'token'), 'second-token-5678\n')
  child.kill('SIGHUP')
  await stdout.waitLog((l) => l.msg === 'admin token changed', 'token changed')
  t.equal(await drain('first-token-1234'), 401, 'the old token no longer does')
  t.equal(await drain('second-token-5678'), 200, 'the new one does')
  t.notMatch(stdout.all.join('\n'), /first-token|second-token/, 'no token in the log')
  child.kill('SIGTERM')
})

function post(port: number, path: string, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path,
        agent: false,
        headers: { authorization: `Bearer ${token}` },
      },
      (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode ?? 0))
      }
    )
    req.setTimeout(WAIT_MS, () => req.destroy(new Error(`POST ${path}: no answer within ${WAIT_MS} ms`)))
    req.on('error', reject)
    req.end()
  })
}

t.test('--workers 2: SIGUSR1 to the primary and to a worker opens no inspector', async (t) => {
  const echo = await echoServer(t)
  const baton = start(t, ['--listen', '127.0.0.1:0', '--backend', `127.0.0.1:${echo}`, '--workers', '2'])
  await baton.stdout.waitLog((l) => l.msg === 'workers started', 'workers started')
  const worker = await baton.stdout.waitLog(
    (l) => l.msg === 'listening' && typeof l.worker === 'number' && typeof l.pid === 'number',
    'a worker listening'
  )
  const port = Number(/:(\d+)$/.exec(String(worker.address))![1])
  baton.child.kill('SIGUSR1')
  await baton.stdout.waitLog((l) => l.signal === 'SIGUSR1', 'the primary logs SIGUSR1')
  process.kill(Number(worker.pid), 'SIGUSR1')
  for (let i = 0; i < 4; i++) {
    const payload = Buffer.from(`after SIGUSR1 ${i}`)
    t.ok((await exchange(port, payload)).equals(payload), `session ${i} served`)
  }
  t.notMatch(baton.stderr.all.join('\n'), /Debugger listening/, 'no inspector on stderr')
  t.ok(
    baton.stdout.logs().every((l) => l.msg !== 'worker exited unexpectedly, starting a replacement'),
    'no worker exited'
  )
  t.strictSame(await baton.stop('SIGTERM'), { code: 0, signal: null }, 'SIGTERM exits 0')
  t.equal(baton.stderr.all.join('\n'), '', 'nothing on stderr')
})
