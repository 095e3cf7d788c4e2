/**
 * The built `baton` command, run as a child process: exit codes, one-line errors without stack
 * traces, config files, and a real run with traffic and a clean SIGTERM.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { children, CLI, ensureBuilt, parseLog, ROOT } from './helpers/cli.js'

const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version
// Each case starts a node process; on a loaded 2-core CI box that is ~1s apiece, and the build in
// t.before can take a while: give the whole file more than the default 60s (every wait stays bounded).
t.setTimeout(300_000)
const RUN_TIMEOUT_MS = 30_000
const WAIT_MS = 20_000

t.before(() => ensureBuilt((text) => t.comment(text)))

function spawnCli(args: string[]): ChildProcess & { stdout: Readable; stderr: Readable } {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
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
function run(args: string[], timeoutMs = RUN_TIMEOUT_MS): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawnCli(args)
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

type LogLine = Record<string, unknown> & { level: number; msg: string }

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
    [['--listen', '127.0.0.1:7000'], '--backend: at least one is required; see --help'],
    [
      ['--listen', '127.0.0.1:7000', '--backend', '7101'],
      '--backend 7101: expected HOST:PORT, [V6]:PORT or unix:/PATH, e.g. 127.0.0.1:7101',
    ],
    [
      ['--listen', '127.0.0.1:7000', '--backend', '127.0.0.1:7101,wieght=2'],
      '--backend 127.0.0.1:7101,wieght=2: unknown parameter "wieght" (did you mean "weight"?); expected weight=N, maxconn=N, name=NAME or backup',
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
  t.match(r.stdout, /"responseTimeout": 2145600000,/, 'the longest whole hours that fit are accepted')
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
  const config = JSON.parse(r.stdout.slice(0, r.stdout.lastIndexOf('configuration OK'))) as {
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
  let config = JSON.parse(r.stdout.slice(0, r.stdout.lastIndexOf('configuration OK'))) as Record<string, any>
  t.equal(config.listeners[0].name, 'web')
  t.equal(config.listeners[0].balance, 'least-connections')
  t.equal(config.listeners[0].connectTimeout, 500)
  t.equal(config.listeners[0].maxPendingBytes, 65536)
  t.strictSame(config.listeners[0].backends, [
    { host: '127.0.0.1', port: 7101, weight: 1, maxConnections: 0 },
    { host: '127.0.0.1', port: 7102, weight: 2, maxConnections: 0 },
  ])
  t.equal(config.shutdownGrace, 2000)
  t.strictSame(config.log, { level: 'warn' })

  // --log-level on the command line overrides the file.
  r = await run(['-c', yaml, '--log-level', 'debug', '--check'])
  t.equal(r.code, 0, r.stderr)
  config = JSON.parse(r.stdout.slice(0, r.stdout.lastIndexOf('configuration OK'))) as Record<string, any>
  t.equal(config.log.level, 'debug')

  const json = join(dir, 'baton.json')
  r = await run(['--config', json, '--check'])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /configuration OK/)
  config = JSON.parse(r.stdout.slice(0, r.stdout.lastIndexOf('configuration OK'))) as Record<string, any>
  t.strictSame(config.listeners[0].listen, { host: '127.0.0.1', port: 0 })
  t.strictSame(config.listeners[0].passive, {
    failures: 3,
    cooldown: 60_000,
    maxCooldown: 300_000,
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
  t.equal(listening.level, 30)
  t.match(listening.address, /^127\.0\.0\.1:\d+$/)
  t.not(listening.address, '127.0.0.1:0', 'the bound port is logged')
  const warn = await baton.stdout.waitLog(
    (l) => l.msg === 'backend not reachable at start',
    'backend warning'
  )
  t.equal(warn.level, 40, 'a warning')
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
    t.equal(l.level, 20, 'a debug line')
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
  t.equal(JSON.parse(r.stdout.slice(0, r.stdout.lastIndexOf('configuration OK'))).workers, 'auto')
  r = await run(['--listen', '127.0.0.1:0', '--backend', '127.0.0.1:7101', '--check'])
  t.equal(
    JSON.parse(r.stdout.slice(0, r.stdout.lastIndexOf('configuration OK'))).workers,
    undefined,
    'absent: one process'
  )

  const dir = t.testdir({
    'baton.yaml': 'listeners: [{ listen: "127.0.0.1:0", backends: ["127.0.0.1:7101"] }]\nworkers: 3\n',
  })
  r = await run(['--config', join(dir, 'baton.yaml'), '--check'])
  t.equal(JSON.parse(r.stdout.slice(0, r.stdout.lastIndexOf('configuration OK'))).workers, 3, 'from the file')
  r = await run(['--config', join(dir, 'baton.yaml'), '--workers', '2', '--check'])
  t.equal(r.code, 0, r.stderr)
  t.equal(JSON.parse(r.stdout.slice(0, r.stdout.lastIndexOf('configuration OK'))).workers, 2, 'the flag wins')
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
  const expected =
    'baton: admin server refuses to bind 10.0.0.1 without a token: bind 127.0.0.1 (or ::1, localhost), or set a token\n'
  const [single, workers] = await Promise.all([run(base), run([...base, '--workers', '2'])])
  t.equal(single.code, 2, 'one process: exits, the bound listener closed')
  t.equal(single.stderr, expected)
  t.equal(workers.code, 2, 'workers: exits, the workers stopped')
  t.equal(workers.stderr, expected)
})
