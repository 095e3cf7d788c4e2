/**
 * The listener's accept queue (`backlog`). A burst of connects larger than the queue, arriving while
 * Baton is busy, has its surplus SYNs dropped by the kernel; the clients retry them after a second.
 * The default queue (4096, capped by net.core.somaxconn) holds such a burst, as HAProxy's (its
 * frontend's maxconn) does. Here Baton's event loop is blocked while a child process opens more
 * connections than the old default of 511 allowed: every handshake must complete in the kernel's
 * queue meanwhile, and every session must then come up.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { oneListener, scope } from '../helpers/balancer.js'
import { echoServer } from '../helpers/servers.js'
import { until, within } from '../helpers/wait.js'

const BURST = 1000

/** Opens `n` connections to `port` at once; writes how many completed their handshake to `file`. */
const CLIENT = `
const net = require('node:net')
const fs = require('node:fs')
const [port, n, file] = process.argv.slice(1)
let connected = 0
const sockets = []
for (let i = 0; i < Number(n); i++) {
  const s = net.connect(Number(port), '127.0.0.1', () => {
    connected++
    fs.writeFileSync(file, String(connected))
  })
  s.on('error', (err) => { fs.writeFileSync(file + '.err', err.message); process.exit(1) })
  sockets.push(s)
}
process.on('message', () => { for (const s of sockets) s.destroy(); process.exit(0) })
`

const somaxconn = (): number => {
  try {
    return Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8').trim())
  } catch {
    return 0
  }
}

/** Sleep `ms` without returning to the event loop. */
function block(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

t.test('a burst of connects while the event loop is busy waits in the accept queue', async (t) => {
  if (somaxconn() < BURST) {
    t.pass('accept queue', { skip: `net.core.somaxconn is ${somaxconn()}, under the burst of ${BURST}` })
    return
  }
  const s = scope(t)
  const echo = await s.server(echoServer('echo'))
  const { balancer, port } = await s.balancer(oneListener([echo]))
  const dir = mkdtempSync(path.join(tmpdir(), 'baton-backlog-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'connected')
  const child = spawn(process.execPath, ['-e', CLIENT, String(port), String(BURST), file], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  })
  t.teardown(() => child.kill('SIGKILL'))
  await within(new Promise((resolve) => child.once('spawn', resolve)), 'the client process starts')
  // Baton's loop (this process) accepts nothing from here on; the kernel completes handshakes into
  // the listener's queue until it is full. Polled from the file the child writes, at most 10 s.
  let connected = 0
  const deadline = Date.now() + 10_000
  while (connected < BURST && Date.now() < deadline) {
    block(5)
    try {
      connected = Number(readFileSync(file, 'utf8')) || 0
    } catch {
      connected = 0
    }
  }
  t.equal(connected, BURST, `all ${BURST} handshakes completed while Baton's loop was blocked`)
  await until(() => balancer.counters().accepted >= BURST, `Baton accepts all ${BURST}`, {
    timeoutMs: 30_000,
  })
  await until(
    () => balancer.sessions().filter((x) => x.state === 'open').length >= BURST,
    'every session up',
    {
      timeoutMs: 30_000,
    }
  )
  t.equal(balancer.counters().accepted, BURST, 'each accepted once')
  child.send('done')
})
