/**
 * sd_notify: the built `baton` under a fake service manager. socat receives on a unix datagram
 * socket (Node has none) named by NOTIFY_SOCKET and prints every datagram; baton must send
 * MAINPID=<its pid> with READY=1 once it listens, RELOADING=1 then READY=1 around a SIGHUP
 * reload, and STOPPING=1 on SIGTERM. Baton sends through systemd-notify (lib/fleet/notify.ts).
 * socat prints datagrams back to back, so the checks look for each assignment in order. The same
 * again with `workers: 2`: the primary handles the signals with the same code (lib/fleet/signals.ts).
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { children, CLI, ensureBuilt } from '../helpers/cli.js'
import { echoServer } from '../helpers/servers.js'
import { until, within } from '../helpers/wait.js'
import { hasCommand, onPath, spawnPeer, stopPeer } from './helpers/process.js'

t.setTimeout(120_000)

const notifyTest = (workers: number) => async (t: Test) => {
  const missing = !hasCommand('socat', ['-V'])
    ? 'socat'
    : !onPath('systemd-notify')
      ? 'systemd-notify'
      : undefined
  if (missing !== undefined) {
    const why = `${missing} is not on PATH (apt-get install -y socat systemd)`
    if (process.env.CI !== undefined) t.fail(why)
    else t.pass('sd_notify', { skip: why })
    return
  }
  ensureBuilt((c) => t.comment(c))
  const dir = mkdtempSync(join(tmpdir(), 'baton-notify-'))
  const sock = join(dir, 'notify.sock')
  const file = join(dir, 'baton.yaml')
  const echo = await echoServer()
  writeFileSync(
    file,
    `listeners: [ { listen: '127.0.0.1:0', backends: ['127.0.0.1:${echo.port}'] } ]\nshutdownGrace: 1s\n` +
      (workers > 1 ? `workers: ${workers}\n` : '')
  )
  const socat = spawnPeer('socat', 'socat', ['-u', `UNIX-RECV:${sock}`, 'STDOUT'])
  t.teardown(async () => {
    await stopPeer(socat).catch(() => {})
    await echo.close()
    rmSync(dir, { recursive: true, force: true })
  })
  await until(() => {
    try {
      return statSync(sock).isSocket()
    } catch {
      return false
    }
  }, 'socat bound the notify socket')

  const baton = spawn(process.execPath, [CLI, '--config', file, '--log-level', 'warn'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NOTIFY_SOCKET: sock },
  })
  children.add(baton)
  const exited = new Promise<number | null>((resolve) => baton.once('exit', (c) => resolve(c)))
  const heard = (): string => socat.stdout()
  /** Each of `parts` appears in what socat printed, in this order. */
  const inOrder = (...parts: string[]): boolean => {
    let at = 0
    for (const p of parts) {
      const i = heard().indexOf(p, at)
      if (i < 0) return false
      at = i + p.length
    }
    return true
  }
  await until(() => inOrder('READY=1'), `READY=1 (heard: ${JSON.stringify(heard())})`, { timeoutMs: 20_000 })
  t.ok(
    heard().includes(`MAINPID=${baton.pid}`),
    'MAINPID is baton itself (a successor after an upgrade says so too)'
  )
  t.notOk(heard().includes('STOPPING=1'), 'not stopping')

  baton.kill('SIGHUP')
  await until(
    () => inOrder('READY=1', 'RELOADING=1', 'READY=1'),
    `RELOADING=1 then READY=1 (heard: ${JSON.stringify(heard())})`,
    {
      timeoutMs: 20_000,
    }
  )
  t.pass('a reload is bracketed by RELOADING=1 and READY=1')

  baton.kill('SIGTERM')
  await until(
    () => inOrder('RELOADING=1', 'READY=1', 'STOPPING=1'),
    `STOPPING=1 (heard: ${JSON.stringify(heard())})`,
    {
      timeoutMs: 20_000,
    }
  )
  t.pass('STOPPING=1 on SIGTERM')
  t.equal(await within(exited, 'baton exit', 20_000), 0)
}

t.test('READY=1 with MAINPID, RELOADING=1 and READY=1 on SIGHUP, STOPPING=1 on SIGTERM', notifyTest(1))
t.test('the same through a --workers 2 primary', notifyTest(2))
