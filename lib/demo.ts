/**
 * `npm run demo`: three small backends on loopback, Baton in front of them on 127.0.0.1:7000, and a
 * live line per session saying which backend served it. Ctrl-C stops everything.
 *
 * Each demo backend speaks just enough HTTP for curl, and echoes anything else line by line with
 * its name in front, so `nc` shows the splice too.
 */
import net, { type Socket } from 'node:net'
import { createBalancer } from './balancer.js'
import { BatonError } from './errors.js'
import type { SessionCloseEvent } from './balancer.js'

const LISTEN_PORT = Number(process.env.BATON_DEMO_PORT ?? 7000)
const BACKEND_PORTS = [LISTEN_PORT + 101, LISTEN_PORT + 102, LISTEN_PORT + 103]

const demoSockets = new Set<Socket>()

function demoBackend(name: string): net.Server {
  return net.createServer((socket: Socket) => {
    demoSockets.add(socket)
    socket.on('close', () => demoSockets.delete(socket))
    socket.on('error', () => socket.destroy())
    socket.once('data', (first: Buffer) => {
      if (/^(GET|HEAD|POST|PUT|DELETE|OPTIONS) /.test(first.toString('latin1', 0, 8))) {
        const body = `Hello from ${name} (port ${(socket.address() as net.AddressInfo).port}), through Baton.\n`
        socket.end(
          `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
            `X-Backend: ${name}\r\nConnection: close\r\n\r\n${body}`
        )
        return
      }
      socket.write(`[${name}] `)
      socket.write(first)
      socket.on('data', (chunk: Buffer) => {
        socket.write(`[${name}] `)
        socket.write(chunk)
      })
      socket.on('end', () => socket.end())
    })
  })
}

function listen(server: net.Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => resolve())
  })
}

async function main(): Promise<void> {
  const backends = BACKEND_PORTS.map((port, i) => ({ server: demoBackend(`backend-${i + 1}`), port }))
  try {
    for (const b of backends) await listen(b.server, b.port)
  } catch (err) {
    process.stderr.write(
      `demo: cannot start the demo backends on ports ${BACKEND_PORTS.join(', ')}: ${(err as Error).message}\n`
    )
    for (const b of backends) b.server.close()
    process.exit(2)
  }
  const balancer = createBalancer({
    listeners: [
      {
        name: 'demo',
        listen: { host: '127.0.0.1', port: LISTEN_PORT },
        balance: 'round-robin',
        backends: BACKEND_PORTS.map((port, i) => ({ name: `backend-${i + 1}`, host: '127.0.0.1', port })),
      },
    ],
    log: { level: 'warn', pretty: true },
  })
  try {
    await balancer.listen()
  } catch (err) {
    process.stderr.write(`demo: ${err instanceof BatonError ? err.message : String(err)}\n`)
    for (const b of backends) b.server.close()
    process.exit(2)
  }

  const served = new Map<string, number>()
  balancer.on('sessionClose', (e: SessionCloseEvent) => {
    const name = e.backend ?? 'none'
    served.set(name, (served.get(name) ?? 0) + 1)
    const tally = [...served].map(([k, v]) => `${k}: ${v}`).join('  ')
    process.stdout.write(
      `session ${e.id} from ${e.client} → ${e.backends.join(' → ') || 'no backend'}  ` +
        `${e.bytesFromClient} B in, ${e.bytesToClient} B out, ${e.durationMs} ms, ${e.outcome}   [${tally}]\n`
    )
  })

  process.stdout.write(
    [
      '',
      `Baton is listening on 127.0.0.1:${LISTEN_PORT}, round-robin over three demo backends:`,
      ...BACKEND_PORTS.map((p, i) => `  backend-${i + 1}  127.0.0.1:${p}`),
      '',
      'Try, in another terminal:',
      `  curl http://127.0.0.1:${LISTEN_PORT}/          (run it a few times: each answer names its backend)`,
      `  nc 127.0.0.1 ${LISTEN_PORT}                     (type lines: the backend echoes them with its name)`,
      '',
      'Each finished session prints a line here. Ctrl-C stops everything.',
      '',
    ].join('\n')
  )

  let stopping = false
  const stop = (): void => {
    if (stopping) process.exit(1)
    stopping = true
    process.stdout.write('\nstopping…\n')
    void balancer.close(1000).then(() => {
      for (const b of backends) b.server.close()
      for (const s of demoSockets) s.destroy()
      process.stdout.write('stopped.\n')
      process.exit(0)
    })
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
}

void main()
