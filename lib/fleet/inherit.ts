/**
 * Listening sockets handed to this process instead of bound by it: systemd socket activation
 * (sd_listen_fds(3): `LISTEN_FDS` descriptors from fd 3 on, for this process only when `LISTEN_PID`
 * is its pid, named by the colon-separated `LISTEN_FDNAMES`), and a Baton upgrade (upgrade.ts),
 * which starts its successor exactly as systemd would. The socket never closes between the two
 * processes, so a client connecting meanwhile waits in the kernel's accept queue: it is never
 * refused.
 *
 * Which listener takes which socket: the one whose `name` is the descriptor's name (`admin` is the
 * admin server), else the one whose configured address is the socket's bound address. A socket no
 * listener takes is logged and closed; a listener no socket matches binds its address as usual.
 *
 * Each descriptor is opened as a listening `net.Server` here, and its handle moves to the
 * listener's own server in the same tick (`Listener.listen(inherited)`): no connection can be
 * accepted in between.
 */
import net from 'node:net'
import util from 'node:util'
import type { Logger } from 'pino'

/** sd_listen_fds(3): the first passed descriptor. */
export const LISTEN_FDS_START = 3

export interface InheritedSocket {
  readonly fd: number
  /** From `LISTEN_FDNAMES`; systemd's default is `unknown`. */
  readonly name: string
  /** Bound address, from getsockname. */
  readonly host: string
  readonly port: number
  /**
   * Listening already (a net.Server); or, in a `--workers` primary, the bare descriptor's handle,
   * which accepts nowhere until a worker listens on it (takeInheritedHandles). Taken by whoever
   * matches it.
   */
  readonly server: Adoptable
}

/**
 * A socket handle as node:net keeps it (libuv's TCP or Pipe wrap), not attached to any server: it
 * accepts nothing until a `net.Server` listens on it. This is what node:cluster's own primary holds
 * for its workers; it can be sent to a worker over IPC (`worker.send(msg, handle)`).
 */
export interface NativeHandle {
  readonly fd: number
  close(callback?: () => void): void
  getsockname?(out: Record<string, unknown>): number
}

/** What a listener can take: an inherited net.Server, or a bare handle. */
export type Adoptable = net.Server | NativeHandle

/** Where listeners find their inherited sockets (the Inherited pool, a worker's handles). */
export interface SocketPool {
  take(name: string, host: string, port: number): Adoptable | undefined
  /** Whether `name`'s socket came from outside (systemd, an upgrade); true when not said. */
  passed?(name: string): boolean
}

/** The descriptors systemd's rules give this process: `[fd, name]` pairs, or [] when none. */
export function listenFds(env: NodeJS.ProcessEnv = process.env, pid = process.pid): [number, string][] {
  const n = Number(env.LISTEN_FDS ?? '')
  if (!Number.isInteger(n) || n <= 0 || n > 1024) return []
  if (Number(env.LISTEN_PID ?? '') !== pid) return []
  const names = (env.LISTEN_FDNAMES ?? '').split(':')
  const out: [number, string][] = []
  for (let i = 0; i < n; i++) out.push([LISTEN_FDS_START + i, decodeFdName(names[i] || 'unknown')])
  return out
}

/** Remove the variables, as sd_listen_fds(unset_environment=1) does: no child may take them too. */
export function unsetListenEnv(env: NodeJS.ProcessEnv = process.env): void {
  delete env.LISTEN_FDS
  delete env.LISTEN_PID
  delete env.LISTEN_FDNAMES
}

type Taken = {
  sockets: InheritedSocket[]
  refused: { fd: number; name: string; reason: string }[]
}

/** One passed descriptor opened: its address and what holds it, or why it is refused. */
type Opened = Pick<InheritedSocket, 'host' | 'port' | 'server'> | string

/** The descriptors passed to this process (LISTEN_FDS), each opened by `open`; the variables are unset. */
function takePassed(env: NodeJS.ProcessEnv, open: (fd: number) => Opened): Taken {
  const taken: Taken = { sockets: [], refused: [] }
  const fds = listenFds(env)
  unsetListenEnv(env)
  for (const [fd, name] of fds) {
    const o = open(fd)
    if (typeof o === 'string') taken.refused.push({ fd, name, reason: o })
    else taken.sockets.push({ fd, name, ...o })
  }
  return taken
}

/**
 * The sockets passed to this process, each opened as a listening server. Descriptors that are not
 * listening TCP sockets are reported in `refused` (and left alone).
 */
export function takeInheritedSockets(env: NodeJS.ProcessEnv = process.env): Taken {
  return takePassed(env, openServer)
}

/**
 * For a `--workers` primary: the passed descriptors as bare handles (`net._createServerHandle`, the
 * function node:cluster's primary makes its shared handles with). Unlike takeInheritedSockets, no
 * descriptor is polled for accepts here: the primary must not take connections, its workers listen
 * on the handles it sends them.
 */
export function takeInheritedHandles(env: NodeJS.ProcessEnv = process.env): Taken {
  return takePassed(env, openBareHandle)
}

function openServer(fd: number): Opened {
  const server = new net.Server()
  server.on('error', () => {}) // reported by the caller, from the missing address
  try {
    server.listen({ fd })
  } catch (err) {
    return (err as Error).message
  }
  const a = server.address()
  if (a === null || typeof a === 'string') {
    if (a !== null) server.close()
    return a === null ? 'not a listening socket' : 'not a TCP socket'
  }
  return { host: a.address, port: a.port, server }
}

function openBareHandle(fd: number): Opened {
  const h = openHandle(fd)
  if (typeof h === 'string') return h
  const out: Record<string, unknown> = {}
  if (typeof h.getsockname !== 'function' || h.getsockname(out) !== 0 || typeof out.port !== 'number') {
    h.close()
    return 'not a TCP socket'
  }
  return { host: String(out.address), port: out.port, server: h }
}

type CreateServerHandle = (
  address: string | null,
  port: number | null,
  addressType: number | null,
  fd?: number,
  flags?: number
) => NativeHandle | number

/** node:net's internal handle factory (exported by node:net, used by node:cluster; Node 20). */
function createServerHandle(): CreateServerHandle {
  const f = (net as unknown as { _createServerHandle?: CreateServerHandle })._createServerHandle
  if (typeof f !== 'function') throw new Error('this Node has no net._createServerHandle')
  return f
}

/** A bare handle on a passed descriptor, or why not. */
export function openHandle(fd: number): NativeHandle | string {
  const h = createServerHandle()(null, null, null, fd)
  return typeof h === 'number' ? `cannot open the descriptor (${errnoName(h)})` : h
}

/**
 * Bind a TCP address in a bare handle (not listening yet: the first worker's listen() does that).
 * `host` must be an IP address or absent (any address, IPv6 first as node:net does). Throws an
 * Error with the errno `code`.
 */
export function bindHandle(where: { host?: string; port?: number }): NativeHandle {
  const create = createServerHandle()
  const h = create(where.host ?? null, where.port ?? 0, where.host === undefined ? 4 : net.isIP(where.host))
  if (typeof h === 'number') {
    const code = errnoName(h)
    throw Object.assign(new Error(`bind: ${code}`), { code, errno: h })
  }
  // libuv reports EADDRINUSE at listen(), not bind(), and a listen() after a failed bind() binds a
  // random port; the worker's handle would not even know. Check the port, as node:net's
  // checkBindError does for node:cluster's shared handles.
  const out: Record<string, unknown> = {}
  if (
    where.port !== undefined &&
    where.port !== 0 &&
    (h.getsockname?.(out) !== 0 || out.port !== where.port)
  ) {
    h.close()
    throw Object.assign(new Error('bind: EADDRINUSE'), { code: 'EADDRINUSE' })
  }
  return h
}

function errnoName(errno: number): string {
  try {
    return util.getSystemErrorName(errno)
  } catch {
    return String(errno)
  }
}

/** The pool of inherited sockets not yet taken. */
export class Inherited implements SocketPool {
  private readonly left: InheritedSocket[]

  constructor(sockets: readonly InheritedSocket[] = []) {
    this.left = [...sockets]
  }

  get size(): number {
    return this.left.length
  }

  /** The socket for the listener called `name` with configured address `host:port`, if one was passed. */
  take(name: string, host: string, port: number): Adoptable | undefined {
    let i = this.left.findIndex((s) => s.name === name)
    if (i < 0 && port !== 0) i = this.left.findIndex((s) => s.port === port && sameHost(s.host, host))
    if (i < 0) return undefined
    return this.left.splice(i, 1)[0]!.server
  }

  /** Close what no listener took, and say which (and, given `log`, warn of each). */
  closeRest(log?: Logger): InheritedSocket[] {
    const rest = this.left.splice(0)
    for (const s of rest) {
      s.server.close()
      log?.warn(
        { fd: s.fd, name: s.name, address: `${s.host}:${s.port}` },
        'passed socket matches no listener: closed'
      )
    }
    return rest
  }
}

function sameHost(bound: string, configured: string): boolean {
  if (bound === configured) return true
  // `::` with dual stack also answers 0.0.0.0; the other way round it does not.
  return net.isIP(configured) !== 0 && configured.replace(/^::ffff:/, '') === bound.replace(/^::ffff:/, '')
}

/**
 * Hand an inherited server's listening handle (or a bare handle) to `target`, which becomes its
 * owner (accepting with its own connection handler). `net.Server.listen(handle)` takes the handle
 * as it is, also in a node:cluster worker (a handle is listened on in place, never asked of the
 * primary).
 */
export function adoptHandle(target: net.Server, inherited: Adoptable, backlog?: number): void {
  target.listen(inherited as net.Server, backlog)
  // The shell that opened it must never close it: it belongs to `target` now.
  if (inherited instanceof net.Server) (inherited as unknown as { _handle: unknown })._handle = null
}

/** The descriptor of a listening server or a bare handle (Unix), to pass on to a successor. */
export function serverFd(server: Adoptable): number | undefined {
  const fd =
    server instanceof net.Server
      ? (server as unknown as { _handle?: { fd?: number } | null })._handle?.fd
      : server.fd
  return typeof fd === 'number' && fd >= 0 ? fd : undefined
}

/** `:` separates LISTEN_FDNAMES; listener names such as `127.0.0.1:7000` have one. */
export function encodeFdName(name: string): string {
  return name.replace(/%/g, '%25').replace(/:/g, '%3A')
}

export function decodeFdName(name: string): string {
  return name.replace(/%3A/gi, ':').replace(/%25/g, '%')
}
