/**
 * Upgrade without a refused connection (issue 16): the built `baton` runs; SIGUSR2 starts its
 * successor with the listening sockets (listener and admin server); the old process stops
 * accepting and drains. Meanwhile four clients loop connect → request → response → close, and
 * not one of them may be refused, reset or cut short. A session open at the upgrade finishes on
 * the old process, which exits 0 only after it has. A successor that cannot start (an invalid
 * config file) changes nothing. The same again with `workers: 2`.
 *
 * Needs only node and /bin/sh; here because it runs the CLI through a real upgrade (issue 16 asks
 * for it in `npm run test:interop`).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import t, { type Test } from 'tap'
import { children, CLI, ensureBuilt, parseLog } from '../helpers/cli.js'
import { until, within } from '../helpers/wait.js'
import { oneRequest } from './helpers/ping.js'

const HOST = '127.0.0.1'
t.setTimeout(180_000)
const LONG_MS = 30_000

interface Line {
  msg: string
  pid: number
  address?: string
  successorPid?: number
  reason?: string
}

/** A backend that answers each line `X` with `pong X`. */
function lineServer(): Promise<net.Server> {
  const server = net.createServer((s) => {
    let buf = ''
    s.setEncoding('utf8')
    s.on('data', (d: string) => {
      buf += d
      let i: number
      while ((i = buf.indexOf('\n')) >= 0) {
        s.write(`pong ${buf.slice(0, i)}\n`)
        buf = buf.slice(i + 1)
      }
    })
    s.on('error', () => {})
  })
  return new Promise((resolve) => server.listen(0, HOST, () => resolve(server)))
}

/**
 * With `workers > 1` the same through a `--workers` primary: it hands over the sockets it holds
 * for its workers (lib/cluster/sockets.ts); the successor's workers listen on them; the old workers
 * stop accepting and finish their sessions, and the old primary exits once they have.
 */
const upgradeTest = (workers: number) => async (t: Test) => {
  ensureBuilt((c) => t.comment(c))
  const dir = mkdtempSync(join(tmpdir(), 'baton-upgrade-'))
  const file = join(dir, 'baton.yaml')
  const backend = await lineServer()
  const bport = (backend.address() as net.AddressInfo).port
  const config = [
    'listeners:',
    '  - name: web',
    `    listen: ${HOST}:0`,
    `    backends: ['${HOST}:${bport}']`,
    `admin: { listen: '${HOST}:0' }`,
    'shutdownGrace: 20s',
    'log: { level: info }',
    ...(workers > 1 ? [`workers: ${workers}`] : []),
    '',
  ].join('\n')
  writeFileSync(file, config)

  const lines: Line[] = []
  const old: ChildProcess = spawn(process.execPath, [CLI, '--config', file], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.add(old)
  let stderr = ''
  old.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
  createInterface({ input: old.stdout! }).on('line', (l) => {
    const v = parseLog<Line>(l)
    if (v !== undefined) lines.push(v)
  })
  const oldExit = new Promise<number | null>((resolve) => old.once('exit', (code) => resolve(code)))
  const pids = new Set<number>()
  t.teardown(async () => {
    stopLoops = true
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {}
    }
    backend.close()
    rmSync(dir, { recursive: true, force: true })
  })
  const logged = async (what: string, p: (l: Line) => boolean): Promise<Line> => {
    await until(() => lines.some(p), `log line: ${what} (stderr: ${stderr})`, {
      timeoutMs: LONG_MS,
      intervalMs: 20,
    })
    return lines.find(p)!
  }

  const listening = await logged('listening', (l) => l.msg === 'listening')
  const port = Number(listening.address!.split(':').pop())
  const admin = await logged('admin', (l) => l.msg === 'admin server listening')
  const adminPort = Number(admin.address!.split(':').pop())
  pids.add(old.pid!)

  // A session open at upgrade time: it must finish on the old process.
  const held = net.connect({ host: HOST, port })
  held.setEncoding('utf8')
  let heldGot = ''
  held.on('data', (d: string) => (heldGot += d))
  held.on('error', () => {})
  held.write('held 1\n')
  await until(() => heldGot === 'pong held 1\n', 'held session first answer')

  // Four clients in a loop, each connect → request → response → close.
  let stopLoops = false
  let done = 0
  const errors = new Map<string, number>()
  const loop = async (id: number): Promise<void> => {
    for (let i = 0; i < 200_000 && !stopLoops; i++) {
      try {
        await oneRequest(port, id * 1_000_000 + i)
        done++
      } catch (err) {
        const code = (err as Error).message
        errors.set(code, (errors.get(code) ?? 0) + 1)
      }
    }
  }
  const loops = Promise.all([0, 1, 2, 3].map(loop))
  const moreRequests = async (n: number, what: string): Promise<void> => {
    const target = done + n
    await until(() => done >= target, `${n} more requests ${what}`, { timeoutMs: LONG_MS, intervalMs: 10 })
  }
  await moreRequests(100, 'before the upgrade')

  // A successor that cannot start: the running process keeps accepting.
  writeFileSync(file, 'listeners: [ { listen: nowhere } ]\n')
  old.kill('SIGUSR2')
  const failed = await logged('upgrade failed', (l) => l.msg.startsWith('upgrade failed'))
  t.match(failed.reason, /exited with code 2/, 'the successor refused its config and exited 2')
  writeFileSync(file, config)
  await moreRequests(100, 'after a failed upgrade')
  t.equal(old.exitCode, null, 'the old process still runs')

  // The real upgrade.
  old.kill('SIGUSR2')
  const accepting = await logged(
    'successor accepting',
    (l) => l.msg === 'upgrade: accepting on the sockets handed over'
  )
  const successor = accepting.pid
  pids.add(successor)
  t.not(successor, old.pid, 'a new process')
  if (workers === 1) {
    const took = lines.find((l) => l.pid === successor && l.msg === 'listening') as Line & {
      inherited?: boolean
    }
    t.equal(took?.address, listening.address, 'the successor listens on the same address')
    t.equal(took?.inherited, true, 'with the socket handed over, not a new bind')
  } else {
    // The successor primary takes the socket; its workers say `listening` with it, before it
    // announces that it accepts.
    t.ok(
      lines.some((l) => l.pid === successor && l.msg === 'listener takes a passed socket'),
      'the successor primary took the socket handed over'
    )
    const took = lines.filter(
      (l) => l.msg === 'listening' && (l as Line & { inherited?: boolean }).inherited === true
    )
    t.equal(took.length, workers, `each of the successor's ${workers} workers listens on it`)
    t.ok(
      took.every((l) => l.address === listening.address && l.pid !== old.pid),
      'on the same address, in other processes'
    )
  }
  await logged('old stopping', (l) => l.pid === old.pid && l.msg === 'stopping')
  await moreRequests(200, 'while the old process drains')
  t.equal(old.exitCode, null, 'the old process waits for its open session')

  // The admin socket went over too: the successor answers on the same port.
  const ready = await fetch(`http://${HOST}:${adminPort}/readyz`)
  t.equal(ready.status, 200, 'admin /readyz answers on the handed-over admin socket')

  held.write('held 2\n')
  await until(() => heldGot === 'pong held 1\npong held 2\n', 'held session answered during the drain')
  held.end()
  t.equal(
    await within(oldExit, 'old process exit', LONG_MS),
    0,
    'the old process exits 0 once its session ended'
  )
  await moreRequests(200, 'after the old process exited')

  stopLoops = true
  await within(loops, 'client loops ending', LONG_MS)
  t.same(Object.fromEntries(errors), {}, 'no refused, reset or short connection')
  t.ok(done >= 600, `${done} requests made`)

  // The successor stops as usual.
  process.kill(successor, 'SIGTERM')
  await until(
    () => {
      try {
        process.kill(successor, 0)
        return false
      } catch {
        return true
      }
    },
    'successor exit',
    { timeoutMs: LONG_MS, intervalMs: 20 }
  )
  pids.delete(successor)
}

t.test(
  'SIGUSR2: the successor takes the sockets, the old process drains, no client is refused',
  upgradeTest(1)
)
t.test(
  "SIGUSR2 with --workers 2: the old workers drain, the successor's workers accept, no client is refused",
  upgradeTest(2)
)
