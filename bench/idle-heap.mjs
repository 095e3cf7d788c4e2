#!/usr/bin/env node
/**
 * bench/idle-heap.mjs — where the memory of an idle session goes, in Baton's own process.
 *
 *   npm run build && node --expose-gc bench/idle-heap.mjs [--sessions 4000] [--protocol opaque]
 *                                                          [--no-timeouts] [--direct] [--settle]
 *                                                          [--data-plane auto|js|native]
 *
 * Baton runs in this process as a library; a child process holds the backend and the clients, so
 * only Baton's objects are measured. After a full GC before and after opening the sessions it prints
 * per session: RSS, V8 heap used and committed, and array buffers. `--no-timeouts` sets clientTimeout
 * and serverTimeout to 0 (no timer per socket); `--direct` skips Baton and accepts the clients here
 * with a plain net.Server holding them: the cost of one accepted socket, for comparison.
 * Loopback only; the child is killed at the end.
 */
import { fork } from 'node:child_process'
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    sessions: { type: 'string', default: '4000' },
    protocol: { type: 'string', default: 'opaque' },
    'no-timeouts': { type: 'boolean', default: false },
    direct: { type: 'boolean', default: false },
    peer: { type: 'boolean', default: false },
    settle: { type: 'boolean', default: false },
    'data-plane': { type: 'string' },
  },
})
const N = Number(values.sessions)
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

if (values.peer) {
  // The child: a backend that holds every connection, and N clients once told the port.
  const held = []
  const backend = net.createServer((s) => held.push(s))
  backend.listen(0, '127.0.0.1', () => process.send({ backend: backend.address().port }))
  process.on('message', async ({ port, expect }) => {
    const clients = []
    for (let i = 0; i < N; i++) {
      clients.push(net.connect(port, '127.0.0.1').on('error', () => {}))
      if (i % 200 === 199) await pause(30)
    }
    for (let k = 0; k < 500 && held.length < expect; k++) await pause(20)
    process.send({ held: held.length })
  })
} else {
  if (typeof global.gc !== 'function') {
    console.error('run with node --expose-gc')
    process.exit(2)
  }
  const peer = fork(fileURLToPath(import.meta.url), ['--peer', '--sessions', String(N)])
  try {
    const { backend } = await new Promise((resolve) => peer.once('message', resolve))
    let port
    let count = () => 0
    if (values.direct) {
      const kept = []
      const server = net.createServer((s) => kept.push(s))
      await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
      port = server.address().port
      count = () => kept.length
    } else {
      const { createBalancer } = await import('../dist/index.js')
      const timeouts = values['no-timeouts'] ? { clientTimeout: 0, serverTimeout: 0 } : {}
      const balancer = createBalancer({
        listeners: [
          {
            listen: '127.0.0.1:0',
            backends: [`127.0.0.1:${backend}`],
            protocol: values.protocol,
            ...(values['data-plane'] !== undefined ? { dataPlane: values['data-plane'] } : {}),
            // The clients never send a byte: keep them (http1's default first-byte bound is 10 s).
            firstByteTimeout: 0,
            ...timeouts,
          },
        ],
        log: { level: 'silent' },
      })
      await balancer.listen()
      port = balancer.address().port
      count = () => balancer.table.size
    }
    await pause(200)
    global.gc()
    global.gc()
    const before = process.memoryUsage()
    peer.send({ port, expect: values.direct ? 0 : N })
    const { held } = await new Promise((resolve) => peer.once('message', resolve))
    for (let k = 0; k < 250 && count() < N; k++) await pause(20)
    // --settle: wait for V8's memory reducer to give back the young generation grown during the
    // connection burst (a few quiet seconds), as an idle process would.
    await pause(values.settle ? 12_000 : 500)
    global.gc()
    global.gc()
    const after = process.memoryUsage()
    const n = count()
    const per = (key) => ((after[key] - before[key]) / n / 1024).toFixed(2)
    console.log(
      `${values.direct ? 'direct (one accepted socket each)' : `Baton ${values.protocol}${values['data-plane'] !== undefined ? ` (dataPlane ${values['data-plane']})` : ''}${values['no-timeouts'] ? ', no timeouts' : ''}`}: ` +
        `${n} sessions (backend held ${held}); KiB per session: rss ${per('rss')}, heap used ${per('heapUsed')}, ` +
        `heap committed ${per('heapTotal')}, array buffers ${per('arrayBuffers')}`
    )
  } finally {
    peer.kill()
  }
  process.exit(0)
}
