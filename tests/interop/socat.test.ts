/**
 * Interop: Baton in front of three real socat echo servers. 50 clients at once each push 1 MiB of
 * random bytes through the balancer and must get every byte back, in order (sha256).
 */
import { createHash, randomBytes } from 'node:crypto'
import net from 'node:net'
import t from 'tap'
import { createBalancer, type Balancer, type SessionCloseEvent } from '../../lib/index.js'
import { hasSocat, startSocatEcho, stopSocat, killSocat, type SocatServer } from './helpers/socat.js'
import { withPlane } from '../helpers/plane.js'

const CLIENTS = 50
const BYTES = 1024 * 1024
const CLIENT_TIMEOUT_MS = 30_000

/** Send `payload`, read until as many bytes came back, then end. Resolves with the echo. */
function echoThrough(port: number, payload: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let received = 0
    const socket = net.connect({ host: '127.0.0.1', port })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`echo timed out after ${timeoutMs}ms with ${received}/${payload.length} bytes back`))
    }, timeoutMs)
    socket.on('connect', () => socket.write(payload))
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      received += chunk.length
      if (received >= payload.length) socket.end()
    })
    socket.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    socket.on('close', () => {
      clearTimeout(timer)
      if (received >= payload.length) resolve(Buffer.concat(chunks, received))
      else reject(new Error(`connection closed with ${received}/${payload.length} bytes back`))
    })
  })
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

t.test('50 concurrent clients × 1 MiB through Baton to 3 socat echo servers', async (t) => {
  if (!hasSocat()) {
    const why = 'socat is not on PATH (apt-get install -y socat)'
    if (process.env.CI !== undefined) t.fail(why)
    else t.pass('socat interop', { skip: why })
    return
  }

  const servers: SocatServer[] = []
  let balancer: Balancer | undefined
  t.teardown(async () => {
    await balancer?.close(0)
    for (const s of servers) killSocat(s)
    await Promise.all(servers.map((s) => stopSocat(s).catch(() => {})))
  })

  for (let i = 0; i < 3; i++) servers.push(await startSocatEcho())
  t.equal(new Set(servers.map((s) => s.port)).size, 3, 'three distinct ports')

  balancer = createBalancer(
    withPlane({
      listeners: [
        {
          listen: '127.0.0.1:0',
          backends: servers.map((s) => `${s.host}:${s.port}`),
          balance: 'round-robin',
          connectTimeout: '2s',
          retries: 0,
        },
      ],
      log: { level: 'silent' },
    })
  )
  const closed: SessionCloseEvent[] = []
  let allClosed: () => void = () => {}
  const allClosedP = new Promise<void>((resolve) => (allClosed = resolve))
  balancer.on('sessionClose', (e: SessionCloseEvent) => {
    if (closed.push(e) === CLIENTS) allClosed()
  })
  await balancer.listen()
  const { port } = balancer.address()

  const payloads = Array.from({ length: CLIENTS }, () => randomBytes(BYTES))
  const results = await Promise.allSettled(payloads.map((p) => echoThrough(port, p, CLIENT_TIMEOUT_MS)))

  let intact = 0
  results.forEach((r, i) => {
    if (r.status === 'rejected') {
      t.fail(`client ${i}: ${(r.reason as Error).message}`)
      return
    }
    if (r.value.length === BYTES && sha256(r.value) === sha256(payloads[i]!)) intact++
    else t.fail(`client ${i}: echo differs (${r.value.length} bytes, sha256 ${sha256(r.value)})`)
  })
  t.equal(intact, CLIENTS, 'every client got its 1 MiB back byte for byte')

  // Every session has ended on both sides once its client closed; wait for the last events (bounded).
  let timer: NodeJS.Timeout | undefined
  await Promise.race([allClosedP, new Promise<void>((r) => (timer = setTimeout(r, 5000)))])
  clearTimeout(timer)
  t.equal(closed.length, CLIENTS, 'a sessionClose event per client')
  t.same(
    closed.map((e) => e.outcome),
    Array(CLIENTS).fill('done'),
    'every session ended as "done"'
  )
  t.ok(
    closed.every((e) => e.bytesFromClient === BYTES && e.bytesToClient === BYTES),
    'each session moved exactly 1 MiB each way'
  )

  // Round-robin over equal weights: 50 sessions split 17/17/16.
  const perBackend = new Map<string, number>()
  for (const e of closed) perBackend.set(e.backend ?? '?', (perBackend.get(e.backend ?? '?') ?? 0) + 1)
  t.same(
    [...perBackend.values()].sort((a, b) => b - a),
    [17, 17, 16],
    `round-robin spread: ${JSON.stringify(Object.fromEntries(perBackend))}`
  )
  t.same(
    new Set(perBackend.keys()),
    new Set(servers.map((s) => `${s.host}:${s.port}`)),
    'every socat server got sessions'
  )

  const c = balancer.counters()
  t.equal(c.accepted, CLIENTS)
  t.equal(c.active, 0)
  t.equal(c.connectErrors, 0)
  t.equal(c.noBackend, 0)
  t.equal(c.bytesFromClient, CLIENTS * BYTES)
  t.equal(c.bytesToClient, CLIENTS * BYTES)
})
