/**
 * For the tests on other address families: whether ::1 can be bound here, short temporary
 * directories for unix-domain sockets (a socket path has at most 107 bytes, which tap's fixture
 * directories can exceed), and a frame client that connects to any address.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net, { type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FrameParser, frame } from './failover-servers.js'
import { once, WAIT_MS, within } from './wait.js'

let v6: Promise<string | undefined> | undefined

/** Undefined when a listener can be bound on [::1]; otherwise why not (the reason to skip). */
export function ipv6Unavailable(): Promise<string | undefined> {
  v6 ??= new Promise((resolve) => {
    const server = net.createServer()
    server.once('error', (err: NodeJS.ErrnoException) =>
      resolve(`cannot listen on [::1] here: ${err.code ?? err.message}`)
    )
    server.listen({ host: '::1', port: 0 }, () => server.close(() => resolve(undefined)))
  })
  return v6
}

/** A fresh directory under the system's temp dir, removed when the test ends. */
export function socketDir(t: { teardown(fn: () => unknown): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'baton-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

export type Where = { path: string } | { host: string; port: number }

/**
 * Sends frames (failover-servers.ts's protocol) and collects the response bodies, over TCP or a
 * unix-domain socket. Destroyed when the test ends.
 */
export class FrameClient {
  readonly socket: Socket
  readonly bodies: Buffer[] = []
  error: string | undefined
  readonly closed: Promise<void>
  private readonly parser = new FrameParser()

  constructor(t: { teardown(fn: () => unknown): void }, where: Where) {
    this.socket = net.connect(where)
    t.teardown(() => this.socket.destroy())
    this.socket.on('error', (err: NodeJS.ErrnoException) => {
      this.error = err.code ?? err.message
    })
    this.socket.on('data', (c: Buffer) => {
      for (const b of this.parser.push(c)) this.bodies.push(b)
      this.socket.emit('bodies')
    })
    this.closed = new Promise((resolve) => this.socket.once('close', () => resolve()))
  }

  async connected(): Promise<this> {
    if (this.socket.connecting) await within(once(this.socket, 'connect'), 'frame client connect')
    return this
  }

  /** Send `body` and resolve with the next response body (bounded). */
  async request(body: string, timeoutMs = WAIT_MS): Promise<string> {
    const want = this.bodies.length + 1
    this.socket.write(frame(body))
    await within(
      new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (this.bodies.length >= want) done(resolve)
        }
        const onClose = (): void =>
          done(() => reject(new Error(`client closed (${this.error ?? 'no error'})`)))
        const done = (f: () => void): void => {
          this.socket.off('bodies', check)
          this.socket.off('close', onClose)
          f()
        }
        this.socket.on('bodies', check)
        this.socket.once('close', onClose)
        check()
      }),
      `response to ${body}`,
      timeoutMs
    )
    return this.bodies[want - 1]!.toString()
  }
}

/**
 * Leave a socket file at `path` with nothing behind it, as a crash does: a child process binds it
 * and is killed with SIGKILL (Node unlinks its socket file on a clean close, so this needs a crash).
 */
export async function staleSocket(path: string): Promise<void> {
  const child = spawn(
    process.execPath,
    ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`],
    { stdio: ['ignore', 'pipe', 'inherit'] }
  )
  try {
    await within(once(child.stdout!, 'data'), 'child bound the socket')
  } finally {
    const exited = once(child, 'exit')
    child.kill('SIGKILL')
    await within(exited, 'child killed')
  }
}
