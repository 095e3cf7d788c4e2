#!/usr/bin/env node
/**
 * bench/lib/node-proxy.mjs — the floor: the least a Node.js TCP proxy can do. Each client gets a new
 * connection to the next backend (round-robin); bytes are piped both ways with backpressure
 * (data / pause / drain) and half-close (end → end); an error on one side destroys the other. No
 * timeouts, no health checks, no retry, nothing Baton adds. Whatever Baton costs beyond this is
 * Baton's own; what this costs is the price of any user-space proxy in Node.
 *
 * As a module: `listenNodeProxy({ host, port, backends: [{ host, port }, …] })` → { server, counters }, where
 * `counters` is { accepted, active } (bench/splice.mjs waits for `active` to drop to 0 between runs).
 * As a program (bench/compare.mjs starts it as one more balancer):
 *
 *   node bench/lib/node-proxy.mjs --listen 127.0.0.1:PORT --backend 127.0.0.1:P1 [--backend …]
 *
 * Only 127.0.0.1 is ever used.
 */
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

export const NODE_PROXY_FILE = fileURLToPath(import.meta.url)

export async function listenNodeProxy({ host, port = 0, backends, backlog = 511 }) {
  const counters = { accepted: 0, active: 0 }
  let next = 0
  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (c) => {
    counters.accepted++
    counters.active++
    const b = backends[next++ % backends.length]
    const s = net.connect({ host: b.host, port: b.port, allowHalfOpen: true, noDelay: true })
    let closed = 0
    const onClose = () => ++closed === 2 && counters.active--
    c.on('close', onClose)
    s.on('close', onClose)
    c.on('error', () => s.destroy())
    s.on('error', () => c.destroy())
    c.on('data', (d) => s.write(d) || c.pause())
    s.on('data', (d) => c.write(d) || s.pause())
    s.on('drain', () => c.resume())
    c.on('drain', () => s.resume())
    c.on('end', () => s.end())
    s.on('end', () => c.end())
  })
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host, port, backlog }, resolve)
  })
  return { server, counters }
}

/** "127.0.0.1:8080" → { host, port } */
function hostPort(v) {
  const i = v.lastIndexOf(':')
  const port = Number(v.slice(i + 1))
  if (i < 1 || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad address ${v}`)
  return { host: v.slice(0, i), port }
}

if (process.argv[1] === NODE_PROXY_FILE) {
  const { values } = parseArgs({
    options: { listen: { type: 'string' }, backend: { type: 'string', multiple: true } },
  })
  if (values.listen === undefined || !values.backend?.length) {
    console.error('usage: node bench/lib/node-proxy.mjs --listen HOST:PORT --backend HOST:PORT [--backend …]')
    process.exit(2)
  }
  const listen = hostPort(values.listen)
  await listenNodeProxy({ ...listen, backends: values.backend.map(hostPort) })
  console.log(`node proxy on ${values.listen} → ${values.backend.join(', ')}`)
}
