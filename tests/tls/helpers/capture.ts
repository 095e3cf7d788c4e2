/**
 * Real ClientHellos, captured at test time: a plain TCP server on loopback reads what a real TLS
 * client sends until `parseClientHello` says the hello is whole (or something else), then closes.
 * The client (Node's `tls.connect`, `openssl s_client`, curl) fails its handshake, which is expected.
 */
import { spawn } from 'node:child_process'
import net from 'node:net'
import tls from 'node:tls'
import { parseClientHello } from '../../../lib/tls/client-hello.js'

const CAPTURE_MS = 10_000
/** Past this a capture stops whatever the parser says (a bound, not an expected size). */
const CAPTURE_MAX = 256 * 1024

/** Listen on 127.0.0.1:0; `start(port)` makes a client connect; resolves with the bytes it sent. */
export function captureHello(start: (port: number) => () => void, maxBytes = CAPTURE_MAX): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let stop: (() => void) | undefined
    const server = net.createServer((socket) => {
      const chunks: Buffer[] = []
      let n = 0
      socket.on('error', () => {})
      socket.on('data', (chunk: Buffer) => {
        chunks.push(chunk)
        n += chunk.length
        const all = Buffer.concat(chunks, n)
        const r = parseClientHello(all, maxBytes)
        if (r.kind === 'more' && n < CAPTURE_MAX) return
        finish(r.kind === 'hello' ? all.subarray(0, r.bytes) : all)
        socket.destroy()
      })
    })
    const timer = setTimeout(() => finish(new Error(`no ClientHello within ${CAPTURE_MS} ms`)), CAPTURE_MS)
    let done = false
    function finish(v: Buffer | Error): void {
      if (done) return
      done = true
      clearTimeout(timer)
      server.close()
      stop?.()
      if (v instanceof Error) reject(v)
      else resolve(v)
    }
    server.listen(0, '127.0.0.1', () => {
      stop = start((server.address() as net.AddressInfo).port)
    })
  })
}

/** The ClientHello of Node's own TLS client. */
export function nodeHello(options: tls.ConnectionOptions = {}): Promise<Buffer> {
  return captureHello((port) => {
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options })
    socket.on('error', () => {})
    return () => socket.destroy()
  })
}

/** The ClientHello of `openssl s_client` with these extra arguments. */
export function opensslHello(args: readonly string[], maxBytes?: number): Promise<Buffer> {
  return captureHello((port) => {
    const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, ...args], {
      stdio: ['pipe', 'ignore', 'ignore'],
    })
    child.on('error', () => {})
    return () => child.kill('SIGKILL')
  }, maxBytes)
}

/** Re-frame a hello's handshake message into records of at most `size` bytes each (still valid TLS). */
export function refragment(hello: Buffer, size: number): Buffer {
  const parts: Buffer[] = []
  let at = 0
  const message: Buffer[] = []
  while (at < hello.length) {
    const len = hello.readUInt16BE(at + 3)
    message.push(hello.subarray(at + 5, at + 5 + len))
    at += 5 + len
  }
  const body = Buffer.concat(message)
  for (let i = 0; i < body.length; i += size) {
    const frag = body.subarray(i, i + size)
    const head = Buffer.from([0x16, 0x03, 0x01, 0, 0])
    head.writeUInt16BE(frag.length, 3)
    parts.push(head, frag)
  }
  return Buffer.concat(parts)
}
