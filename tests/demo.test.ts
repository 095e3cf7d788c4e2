/**
 * `npm run demo` (dist/demo.js) as a user runs it: the scripted failover is seen live, `--client`
 * works against a running demo, Ctrl-C exits cleanly, bad flags and a taken port say so in one line.
 * And examples/baton.yaml passes `baton --check`.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import net from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import t from 'tap'
import { parse } from 'yaml'
import { children, CLI, ensureBuilt, ROOT } from './helpers/cli.js'

const DEMO = join(ROOT, 'dist', 'demo.js')
// Each case starts node; on a loaded 2-core box that and the build in t.before take a while.
t.setTimeout(180_000)
const WAIT_MS = 30_000

t.before(() => ensureBuilt((text) => t.comment(text)))

type Child = ChildProcess & { stdout: Readable; stderr: Readable }

/** A running node process whose stdout lines can be awaited in order, each wait bounded. */
class Run {
  readonly child: Child
  readonly lines: string[] = []
  stderr = ''
  private cursor = 0
  private wake: (() => void) | undefined
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>

  constructor(args: string[], env: NodeJS.ProcessEnv = process.env) {
    this.child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] }) as Child
    children.add(this.child)
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      this.lines.push(line)
      this.wake?.()
    })
    this.child.stderr.setEncoding('utf8').on('data', (s: string) => (this.stderr += s))
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        children.delete(this.child)
        resolve({ code, signal })
        this.wake?.()
      })
    })
  }

  get output(): string {
    return `stdout:\n${this.lines.join('\n')}\nstderr:\n${this.stderr}`
  }

  /** The next line (after the last one matched) that matches `pattern`, within WAIT_MS. */
  async next(pattern: RegExp): Promise<RegExpExecArray> {
    const deadline = Date.now() + WAIT_MS
    for (;;) {
      for (; this.cursor < this.lines.length; this.cursor++) {
        const m = pattern.exec(this.lines[this.cursor]!)
        if (m !== null) {
          this.cursor++
          return m
        }
      }
      if (this.child.exitCode !== null || this.child.signalCode !== null)
        throw new Error(`exited before a line matching ${pattern}\n${this.output}`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`no line matching ${pattern} within ${WAIT_MS} ms\n${this.output}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      this.wake = undefined
    }
  }

  /** The exit, within WAIT_MS (the process is killed past it). */
  async exit(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let timer: NodeJS.Timeout | undefined
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.child.kill('SIGKILL')
        reject(new Error(`did not exit within ${WAIT_MS} ms\n${this.output}`))
      }, WAIT_MS)
    })
    try {
      return await Promise.race([this.exited, expired])
    } finally {
      clearTimeout(timer)
    }
  }
}

t.test('the demo fails a backend over live, the client keeps every byte and its connection', async (t) => {
  const demo = new Run([DEMO, '--port', '0'])
  t.teardown(() => void demo.child.kill('SIGKILL'))
  const port = Number((await demo.next(/^Baton is listening on 127\.0\.0\.1:(\d+) /))[1])
  t.ok(port > 0, `Baton listens on port ${port}`)

  const crashed = (await demo.next(/^(backend-\d)\s+CRASH 2\.0 MiB into the response/))[1]!
  const failover = await demo.next(
    /^baton\s+failover: session (\d+) (backend-\d) → (backend-\d) over a new connection, 1 request re-sent/
  )
  t.equal(failover[2], crashed, 'the failover leaves the backend that crashed')
  t.not(failover[3], crashed, 'for another one')
  t.ok(
    await demo.next(new RegExp(`^${failover[3]}\\s+GET /file\\.bin with Range: bytes=\\d+-, If-Range: "`)),
    'the replacement is asked for the rest only (Range, If-Range)'
  )
  const whole = await demo.next(/^client\s+(\d+) of (\d+) bytes: every byte, sha256 ok, same connection/)
  t.equal(whole[1], String(4 * 1024 * 1024), 'the client got all 4 MiB')
  const second = await demo.next(
    /^client\s+second request on the same connection: GET \/ → 200 from (backend-\d)/
  )
  t.not(second[1], crashed, 'the second request is served by a live backend')
  const closed = await demo.next(/^baton\s+session (\d+) from \S+ closed: (backend-\d) → (backend-\d),/)
  t.same([closed[1], closed[2], closed[3]], [failover[1], crashed, failover[3]], "the session's history")
  await demo.next(/^baton\s+counters: failovers 1, verified resumes 1, replayed requests 1, unrecoverable 0$/)
  await demo.next(new RegExp(`^${crashed}\\s+restarted on 127\\.0\\.0\\.1:\\d+`))
  await demo.next(/^Ctrl-C stops everything\.$/)
  t.notOk(
    demo.lines.some((l) => /FAILED|did not go as it should/.test(l)),
    'no check failed'
  )

  // What the demo suggests trying afterwards: its own client, against it.
  const client = new Run([DEMO, '--client', '--port', String(port)])
  const served: string[] = []
  for (let i = 0; i < 6; i++)
    served.push((await client.next(/^client\s+GET \/ → 200 "Hello from (backend-\d) /))[1]!)
  t.ok(new Set(served).size >= 2, `round-robin over new connections: ${served.join(', ')}`)
  await client.next(/^client\s+\d+ of \d+ bytes: every byte, sha256 ok, same connection/)
  await client.next(/^client\s+second request on the same connection: GET \/ → 200/)
  const clientExit = await client.exit()
  if (!t.same(clientExit, { code: 0, signal: null }, '--client exits 0')) t.comment(client.output)
  await demo.next(/^baton\s+failover: session \d+ backend-\d → backend-\d/)

  demo.child.kill('SIGINT')
  await demo.next(/^stopped\.$/)
  t.same(await demo.exit(), { code: 0, signal: null }, 'Ctrl-C: a clean exit')
  t.equal(demo.stderr, '', 'nothing on stderr')
})

t.test('--help; bad flags and a taken port: one line, exit 2', async (t) => {
  const help = new Run([DEMO, '--help'])
  t.same(await help.exit(), { code: 0, signal: null })
  const text = help.lines.join('\n')
  for (const word of ['--port', '--no-script', '--client', 'BATON_DEMO_PORT']) t.match(text, word)

  const busy = net.createServer()
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => void busy.close())
  const port = (busy.address() as net.AddressInfo).port
  const cases: [string[], NodeJS.ProcessEnv, RegExp][] = [
    [
      ['--port', String(port), '--no-script'],
      {},
      new RegExp(`127\\.0\\.0\\.1:${port} is already in use.*--port`),
    ],
    [
      ['--no-script'],
      { BATON_DEMO_PORT: String(port) },
      new RegExp(`127\\.0\\.0\\.1:${port} is already in use`),
    ],
    [['--port', '70000'], {}, /--port: expected a port from 0 to 65535, got "70000"/],
    [['--bogus'], {}, /--bogus/],
  ]
  const runs = cases.map(([args, env]) => new Run([DEMO, ...args], { ...process.env, ...env }))
  for (const [i, run] of runs.entries()) {
    const [args, , expected] = cases[i]!
    t.same(await run.exit(), { code: 2, signal: null }, `exit 2 for ${args.join(' ')}`)
    t.match(run.stderr, /^demo: [^\n]*\n$/, 'one line on stderr')
    t.match(run.stderr, expected)
  }
})

t.test('examples/baton.yaml passes baton --check', async (t) => {
  const check = new Run([CLI, '--check', '--config', join('examples', 'baton.yaml')])
  const exit = await check.exit()
  if (!t.same(exit, { code: 0, signal: null }, 'exit 0')) t.comment(check.output)
  const out = check.lines.join('\n')
  t.match(out, /configuration OK/)
  // The resolved config is printed before that line (JSON today; YAML parses either).
  const config = parse(out.slice(0, out.lastIndexOf('configuration OK'))) as {
    listeners: { name: string; protocol: string; healthCheck: { type: string } }[]
    admin: { listen?: { host: string; port: number } }
  }
  t.same(
    config.listeners.map((l) => [l.name, l.protocol, l.healthCheck.type]),
    [
      ['web', 'http1', 'http'],
      ['cache', 'resp', 'redis'],
    ]
  )
  t.same(config.admin.listen, { host: '127.0.0.1', port: 9000 })
})
