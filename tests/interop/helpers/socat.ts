/**
 * Real socat peers for interop tests. Each server runs in its own process group (`detached: true`)
 * because `fork` makes socat spawn one child per connection: killing the group (`kill(-pid)`) takes
 * the listener and every live connection down at once, as a crashed backend host would.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import net from 'node:net'

export interface SocatServer {
  readonly host: string
  readonly port: number
  /** Pid of the listening socat, also its process group id. */
  readonly pid: number
  readonly child: ChildProcess
  /** Resolves when the listening socat has exited (after `kill`, or on its own). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** What socat wrote on stderr so far (for failure messages). */
  stderr(): string
}

/** True when a `socat` binary is on PATH. */
export function hasSocat(): boolean {
  const r = spawnSync('socat', ['-V'], { stdio: 'ignore' })
  return r.error === undefined && r.status === 0
}

/** A port that was free a moment ago: bind port 0 on `host`, read the port, close. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen({ host, port: 0 }, () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no port from listen(0)'))))
    })
  })
}

/**
 * Wait until a server just spawned accepts on `host:port`. Rejects when it exits first (the message
 * names `what` and carries `output()`) or does not listen within `timeoutMs`; an exit after that
 * (our own kill) is not an error.
 */
export async function untilListening(
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>,
  what: string,
  output: () => string,
  host: string,
  port: number,
  timeoutMs: number
): Promise<void> {
  let early: Error | undefined
  const died = exited.then(({ code, signal }) => {
    early = new Error(`${what} on ${host}:${port} exited early (code ${code}, signal ${signal}): ${output()}`)
    throw early
  })
  died.catch(() => {})
  await Promise.race([waitForPort(port, host, timeoutMs), died])
  if (early !== undefined) throw early
}

/** Try to connect until something accepts, for at most `timeoutMs`. */
export async function waitForPort(port: number, host = '127.0.0.1', timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last: Error | undefined
  while (Date.now() < deadline) {
    try {
      await new Promise<void>((resolve, reject) => {
        const socket = net.connect({ host, port })
        const timer = setTimeout(
          () => {
            socket.destroy()
            reject(new Error('connect timed out'))
          },
          Math.max(1, Math.min(1000, deadline - Date.now()))
        )
        socket.once('connect', () => {
          clearTimeout(timer)
          socket.destroy()
          resolve()
        })
        socket.once('error', (err) => {
          clearTimeout(timer)
          socket.destroy()
          reject(err)
        })
      })
      return
    } catch (err) {
      last = err as Error
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  throw new Error(`nothing accepted on ${host}:${port} within ${timeoutMs}ms: ${last?.message ?? 'timeout'}`)
}

const live = new Set<SocatServer>()
let exitHookInstalled = false

/**
 * Start `socat TCP-LISTEN:PORT,fork,reuseaddr,bind=HOST PIPE` (an echo server) on a free port and
 * resolve once it accepts connections. Retries on another port if the chosen one was taken meanwhile.
 */
export async function startSocatEcho(
  options: { host?: string; timeoutMs?: number } = {}
): Promise<SocatServer> {
  const host = options.host ?? '127.0.0.1'
  const timeoutMs = options.timeoutMs ?? 5000
  let lastError: Error | undefined
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort(host)
    const server = spawnSocat(
      ['-lpsocat', `TCP-LISTEN:${port},fork,reuseaddr,bind=${host}`, 'PIPE'],
      host,
      port
    )
    try {
      await untilListening(server.exited, 'socat', () => server.stderr().trim(), host, port, timeoutMs)
      return server
    } catch (err) {
      killSocat(server)
      lastError = err as Error
    }
  }
  throw lastError ?? new Error('socat did not start')
}

function spawnSocat(args: string[], host: string, port: number): SocatServer {
  const child = spawn('socat', args, { detached: true, stdio: ['ignore', 'ignore', 'pipe'] })
  if (child.pid === undefined) throw new Error('socat could not be spawned (is it on PATH?)')
  let stderr = ''
  child.stderr?.setEncoding('utf8')
  child.stderr?.on('data', (s: string) => {
    if (stderr.length < 10_000) stderr += s
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }))
    child.once('error', () => resolve({ code: null, signal: null }))
  })
  const server: SocatServer = { host, port, pid: child.pid, child, exited, stderr: () => stderr }
  live.add(server)
  void exited.then(() => live.delete(server))
  if (!exitHookInstalled) {
    exitHookInstalled = true
    // Last resort: never leave socat groups behind, even when a test forgets its teardown.
    process.once('exit', () => {
      for (const s of live) killSocat(s)
    })
  }
  return server
}

/**
 * Kill a socat server's whole process group (the listener and its per-connection children).
 * SIGKILL by default: no goodbye, like a host that died. Safe to call twice.
 */
export function killSocat(server: SocatServer, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(-server.pid, signal)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err
  }
}

/** Kill the group and wait for the listening socat to be gone (bounded). */
export async function stopSocat(server: SocatServer, timeoutMs = 5000): Promise<void> {
  killSocat(server)
  let timer: NodeJS.Timeout | undefined
  await Promise.race([
    server.exited,
    new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`socat ${server.pid} did not exit within ${timeoutMs}ms`)),
        timeoutMs
      )
    }),
  ]).finally(() => clearTimeout(timer))
}
