/**
 * Socket addresses as Baton spells them: `host:port`, `[v6]:port` and `unix:/path` (nginx's
 * spelling). One place parses and prints them, so a listener's default name, a backend's, the logs,
 * the metrics labels and the status page all say the same thing.
 *
 * A unix-domain address has a `path` and no host or port (`host: ''`, `port: 0` where a type
 * wants them). Its clients have no address at all: they are named `unix`.
 */
import { connect } from 'node:net'
import { lstatSync, unlinkSync } from 'node:fs'
import type { Socket } from 'node:net'

/** As the config gives an address: host and port, or a path (then host and port are absent or unused). */
export interface SocketAddress {
  readonly host?: string | undefined
  readonly port?: number | undefined
  /** A unix-domain socket's path; host and port are then unused. */
  readonly path?: string | undefined
}

export const UNIX_PREFIX = 'unix:'

/** What a unix-domain client is called in logs and the table, and what `source-hash` cannot hash. */
export const UNIX_CLIENT = 'unix'

/**
 * `sun_path` holds 108 bytes on Linux, the terminating NUL included; a longer path would be cut
 * (or refused with ENAMETOOLONG, depending on the libuv version). macOS allows 103.
 */
export const MAX_UNIX_PATH_BYTES = 107

/** `unix:/run/app.sock`, `[::1]:7000`, `127.0.0.1:7000`. */
export function formatAddress(a: SocketAddress): string {
  if (a.path !== undefined) return `${UNIX_PREFIX}${a.path}`
  const host = a.host ?? ''
  return `${host.includes(':') ? `[${host}]` : host}:${a.port ?? 0}`
}

/** Why `path` cannot be a unix socket address, or undefined when it can. */
export function unixPathProblem(path: string): string | undefined {
  if (path === '') return 'expected a socket path after "unix:", such as unix:/run/app.sock'
  if (!path.startsWith('/'))
    return 'expected an absolute socket path (a relative one depends on the directory Baton starts in)'
  if (path.includes('\0')) return 'expected a socket path without NUL bytes'
  const bytes = Buffer.byteLength(path)
  if (bytes > MAX_UNIX_PATH_BYTES)
    return `expected a socket path of at most ${MAX_UNIX_PATH_BYTES} bytes (the kernel's sun_path; this one has ${bytes})`
  return undefined
}

/**
 * The name of an accepted client: `address:port` as Node gives it (`::1:51234` for IPv6, as HAProxy
 * logs it), or `unix` for a client of a unix-domain listener, which has no address.
 */
export function peerName(socket: Socket, unix: boolean): string {
  if (unix) return UNIX_CLIENT
  return `${socket.remoteAddress}:${socket.remotePort}`
}

/** The address part of a `peerName` (what `source-hash` and per-source limits key on). */
export function peerHost(name: string): string {
  const i = name.lastIndexOf(':')
  return i < 0 ? name : name.slice(0, i)
}

/**
 * Before listening on `path`: remove a socket file left by a process that died without cleaning up,
 * but only if nothing accepts on it (a connect is refused). A live socket is left alone (the listen
 * then fails with EADDRINUSE), and so is anything that is not a socket. Resolves to whether a file
 * was removed.
 */
export async function removeStaleSocket(path: string, timeoutMs = 1000): Promise<boolean> {
  let isSocket: boolean
  try {
    isSocket = lstatSync(path).isSocket()
  } catch {
    return false // absent (or unreadable: listen will say so)
  }
  if (!isSocket) return false
  const alive = await new Promise<boolean>((resolve) => {
    const s = connect({ path })
    const done = (v: boolean): void => {
      clearTimeout(timer)
      s.destroy()
      resolve(v)
    }
    // A listener with a full queue does not answer: it is alive.
    const timer = setTimeout(() => done(true), timeoutMs)
    s.once('connect', () => done(true))
    s.once('error', (err: NodeJS.ErrnoException) =>
      done(err.code !== 'ECONNREFUSED' && err.code !== 'ENOENT')
    )
  })
  if (alive) return false
  try {
    unlinkSync(path)
    return true
  } catch {
    return false
  }
}
