/**
 * systemd socket activation, faked the way systemd does it: listening sockets at fd 3.., with
 * LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID (set by `sh -c 'LISTEN_PID=$$ exec …'`, since the pid
 * is not known before the spawn). The sockets are bound by this test process, passed to the built
 * `baton`, and closed here: from then on only baton holds them.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import t from 'tap'
import { children, CLI, ensureBuilt, parseLog } from '../helpers/cli.js'
import { echoServer } from '../helpers/servers.js'
import { until, within } from '../helpers/wait.js'
import { decodeFdName, encodeFdName, listenFds, serverFd } from '../../lib/fleet/inherit.js'

const HOST = '127.0.0.1'
t.setTimeout(120_000)

t.test('listenFds follows sd_listen_fds(3)', async (t) => {
  t.same(listenFds({ LISTEN_FDS: '2', LISTEN_PID: '42', LISTEN_FDNAMES: 'web:admin' }, 42), [
    [3, 'web'],
    [4, 'admin'],
  ])
  t.same(
    listenFds({ LISTEN_FDS: '2', LISTEN_PID: '42' }, 42),
    [
      [3, 'unknown'],
      [4, 'unknown'],
    ],
    'unnamed: systemd says "unknown"'
  )
  t.same(listenFds({ LISTEN_FDS: '1', LISTEN_PID: '41' }, 42), [], 'meant for another process')
  t.same(listenFds({ LISTEN_FDS: '1' }, 42), [], 'no LISTEN_PID: not for us')
  t.same(listenFds({ LISTEN_FDS: 'x', LISTEN_PID: '42' }, 42), [])
  t.same(listenFds({}, 42), [])
  t.equal(decodeFdName(encodeFdName('127.0.0.1:7000')), '127.0.0.1:7000')
  t.equal(encodeFdName('[::1]:80').includes(':'), false, 'no colon left in a name')
  t.equal(decodeFdName(encodeFdName('100%:x')), '100%:x')
})

interface Line {
  msg: string
  pid: number
  listener?: string
  address?: string
  inherited?: boolean
  name?: string
}

function bound(): Promise<net.Server> {
  const s = net.createServer()
  return new Promise((resolve) => s.listen(0, HOST, () => resolve(s)))
}

/** Run baton with `sockets` at fd 3.. as systemd would; they are closed in this process at once. */
function activate(file: string, sockets: net.Server[], names: string | undefined) {
  const fds = sockets.map((s) => serverFd(s)!)
  const child = spawn(
    '/bin/sh',
    ['-c', 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"', 'sh', process.execPath, CLI, '--config', file],
    {
      stdio: ['ignore', 'pipe', 'pipe', ...fds],
      env: {
        ...process.env,
        LISTEN_FDS: String(fds.length),
        ...(names !== undefined ? { LISTEN_FDNAMES: names } : {}),
      },
    }
  )
  children.add(child)
  for (const s of sockets) s.close() // baton holds them now
  const lines: Line[] = []
  createInterface({ input: child.stdout! }).on('line', (l) => {
    const v = parseLog<Line>(l)
    if (v !== undefined) lines.push(v)
  })
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)))
  return { child, lines, exited, stderr: () => stderr }
}

function echoOnce(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: HOST, port })
    let got = ''
    s.setEncoding('utf8')
    s.on('connect', () => s.end(text))
    s.on('data', (d: string) => (got += d))
    s.on('error', reject)
    s.on('close', () => resolve(got))
  })
}

t.test('named sockets go to the listener and the admin server of that name', async (t) => {
  ensureBuilt((c) => t.comment(c))
  const dir = mkdtempSync(join(tmpdir(), 'baton-activation-'))
  const echo = await echoServer()
  const web = await bound()
  const admin = await bound()
  const stray = await bound()
  const webPort = (web.address() as net.AddressInfo).port
  const adminPort = (admin.address() as net.AddressInfo).port
  const strayPort = (stray.address() as net.AddressInfo).port
  const file = join(dir, 'baton.yaml')
  // Port 0 in the file: only the names can match these sockets.
  writeFileSync(
    file,
    [
      'listeners:',
      '  - name: web',
      `    listen: ${HOST}:0`,
      `    backends: ['${HOST}:${echo.port}']`,
      `admin: { listen: '${HOST}:0' }`,
      'shutdownGrace: 1s',
      '',
    ].join('\n')
  )
  const run = activate(file, [web, admin, stray], 'web:admin:stray')
  t.teardown(async () => {
    run.child.kill('SIGKILL')
    await echo.close()
    rmSync(dir, { recursive: true, force: true })
  })
  await until(() => run.lines.some((l) => l.msg === 'admin server listening'), `admin up (${run.stderr()})`, {
    timeoutMs: 30_000,
    intervalMs: 20,
  })
  const l = run.lines.find((x) => x.msg === 'listening')!
  t.equal(l.address, `${HOST}:${webPort}`, 'the listener took the passed socket, not a new port')
  t.equal(l.inherited, true)
  t.equal(await echoOnce(webPort, 'hello'), 'hello', 'traffic flows through the passed socket')
  const res = await fetch(`http://${HOST}:${adminPort}/readyz`)
  t.equal(res.status, 200, 'the admin server answers on its passed socket')
  t.ok(
    run.lines.some((x) => x.msg === 'passed socket matches no listener: closed' && x.name === 'stray'),
    'a socket no listener takes is logged'
  )
  const refused = await new Promise<string>((resolve) => {
    const s = net.connect({ host: HOST, port: strayPort })
    s.on('connect', () => {
      s.destroy()
      resolve('connected')
    })
    s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? ''))
  })
  t.equal(refused, 'ECONNREFUSED', 'and closed')
  run.child.kill('SIGTERM')
  t.equal(await within(run.exited, 'baton exit'), 0)
})

t.test('unnamed sockets (FileDescriptorName unset) match by address', async (t) => {
  ensureBuilt((c) => t.comment(c))
  const dir = mkdtempSync(join(tmpdir(), 'baton-activation-'))
  const echo = await echoServer()
  const web = await bound()
  const webPort = (web.address() as net.AddressInfo).port
  const file = join(dir, 'baton.yaml')
  writeFileSync(
    file,
    `listeners: [ { listen: '${HOST}:${webPort}', backends: ['${HOST}:${echo.port}'] } ]\nshutdownGrace: 1s\n`
  )
  const run = activate(file, [web], undefined)
  t.teardown(async () => {
    run.child.kill('SIGKILL')
    await echo.close()
    rmSync(dir, { recursive: true, force: true })
  })
  await until(() => run.lines.some((l) => l.msg === 'listening'), `listening (${run.stderr()})`, {
    timeoutMs: 30_000,
    intervalMs: 20,
  })
  // Bound by this test before baton started: a bind of its own would have failed (address in use).
  t.equal(run.lines.find((x) => x.msg === 'listening')!.inherited, true)
  t.equal(await echoOnce(webPort, 'x'), 'x')
  run.child.kill('SIGTERM')
  t.equal(await within(run.exited, 'baton exit'), 0)
})

t.test('with --workers 2 the workers serve the passed sockets; the primary the admin one', async (t) => {
  ensureBuilt((c) => t.comment(c))
  const dir = mkdtempSync(join(tmpdir(), 'baton-activation-'))
  const echo = await echoServer()
  const web = await bound()
  const admin = await bound()
  const webPort = (web.address() as net.AddressInfo).port
  const adminPort = (admin.address() as net.AddressInfo).port
  const file = join(dir, 'baton.yaml')
  writeFileSync(
    file,
    [
      'listeners:',
      '  - name: web',
      `    listen: ${HOST}:0`,
      `    backends: ['${HOST}:${echo.port}']`,
      `admin: { listen: '${HOST}:0' }`,
      'shutdownGrace: 1s',
      'workers: 2',
      '',
    ].join('\n')
  )
  const run = activate(file, [web, admin], 'web:admin')
  t.teardown(async () => {
    run.child.kill('SIGKILL')
    await echo.close()
    rmSync(dir, { recursive: true, force: true })
  })
  await until(() => run.lines.some((l) => l.msg === 'workers started'), `workers up (${run.stderr()})`, {
    timeoutMs: 30_000,
    intervalMs: 20,
  })
  const primary = run.child.pid!
  t.ok(
    run.lines.some(
      (l) => l.pid === primary && l.msg === 'listener takes a passed socket' && l.listener === 'web'
    ),
    'the primary took the passed socket for the listener'
  )
  const listening = run.lines.filter((l) => l.msg === 'listening')
  t.equal(listening.length, 2, 'both workers listen')
  for (const l of listening) {
    t.not(l.pid, primary, 'in a worker')
    t.equal(l.address, `${HOST}:${webPort}`, 'on the passed socket, not a new port')
    t.equal(l.inherited, true)
  }
  for (let i = 0; i < 20; i++) t.equal(await echoOnce(webPort, `hello ${i}`), `hello ${i}`)
  t.equal(
    run.lines.find((l) => l.msg === 'admin server listening')?.address,
    `${HOST}:${adminPort}`,
    'the admin server took its passed socket'
  )
  const res = await fetch(`http://${HOST}:${adminPort}/readyz`)
  t.equal(res.status, 200, 'the admin server answers on its passed socket')
  run.child.kill('SIGTERM')
  t.equal(await within(run.exited, 'baton exit'), 0)
})
