/**
 * A session: one accepted client connection and its current server connection, spliced both ways.
 *
 *   client ──data──► [held until connected] ──write──► server
 *   client ◄──write── ─────────────────────── ◄──data── server
 *
 * - Backpressure: a `write()` that returns false pauses the other side's reads until `drain`.
 * - Half-close: both sockets are `allowHalfOpen`; a FIN from one side ends the other side's write
 *   half, and the session ends when both sockets have closed.
 * - An error, reset or idle timeout on either side destroys both; nothing outlives the session.
 *
 * The handlers are module-level functions that find their session through `socket[kSession]`
 * (as Node's net.js and undici do) so a session costs no closures. A server socket that is no
 * longer the session's current one has its back-reference removed, so its late events are ignored.
 */
import net, { type Socket } from 'node:net'
import type { Logger } from 'pino'
import type { Backend } from './backend.js'
import { BatonError } from './errors.js'
import type { ListenerConfig } from './config/schema.js'
import type { SessionState, TableEntry, ConnectionTable } from './table.js'

export const kSession = Symbol('baton.session')
type SessionSocket = Socket & { [kSession]?: Session }

/** How a session ended; one counter each, and the `outcome` field of the close log line. */
export type Outcome =
  | 'done'
  | 'client-error'
  | 'server-error'
  | 'client-timeout'
  | 'server-timeout'
  | 'no-backend'
  | 'connect-failed'
  | 'shutdown'

/** What a session needs from the listener that accepted it. */
export interface SessionHost {
  readonly name: string
  readonly config: ListenerConfig
  readonly table: ConnectionTable
  readonly log: Logger
  /** A backend for this session, avoiding `avoid`; undefined when none is usable. */
  pick(session: Session, avoid: ReadonlySet<Backend> | undefined): Backend | undefined
  connectFailed(session: Session, backend: Backend, err: Error): void
  connected(session: Session, backend: Backend): void
  closed(session: Session): void
}

export class Session implements TableEntry {
  readonly id: number
  readonly listener: string
  readonly client: Socket
  readonly startedAt = Date.now()
  server: Socket | undefined = undefined
  backend: Backend | undefined = undefined
  readonly history: Backend[] = []
  state: SessionState = 'connecting'
  outcome: Outcome | undefined = undefined
  error: Error | undefined = undefined

  private readonly host: SessionHost
  /** Client bytes that arrived before the server connection was up, in order. */
  private held: Buffer[] = []
  private heldBytes = 0
  private clientEnded = false
  private clientClosed = false
  private serverClosed = false
  /** Connect attempts so far; the first one plus up to `retries` more. */
  private attempts = 0
  /** Backends that failed to connect for this session (allocated only on the first failure). */
  private failed: Set<Backend> | undefined = undefined
  private connectTimer: NodeJS.Timeout | undefined = undefined

  constructor(host: SessionHost, client: Socket) {
    this.host = host
    this.id = host.table.newId()
    this.listener = host.name
    this.client = client
    const c = client as SessionSocket
    c[kSession] = this
    client.setNoDelay(true)
    client.on('data', onClientData)
    client.on('end', onClientEnd)
    client.on('error', onClientError)
    client.on('close', onClientClose)
    client.on('drain', onClientDrain)
    if (host.config.clientTimeout > 0) {
      client.setTimeout(host.config.clientTimeout)
      client.on('timeout', onClientTimeout)
    }
    host.table.add(this)
  }

  /** Choose a backend and connect to it; called once at start and again after a failed connect. */
  connect(): void {
    const backend = this.host.pick(this, this.failed)
    if (backend === undefined) {
      this.destroy('no-backend', new BatonError('ERR_BATON_NO_BACKEND', 'server', 'no usable backend'))
      return
    }
    this.attempts++
    backend.active++
    const server = net.connect({ host: backend.host, port: backend.port, allowHalfOpen: true, noDelay: true })
    ;(server as SessionSocket)[kSession] = this
    server.on('connect', onServerConnect)
    server.on('data', onServerData)
    server.on('end', onServerEnd)
    server.on('error', onServerError)
    server.on('close', onServerClose)
    server.on('drain', onServerDrain)
    this.host.table.attach(this, backend, server)
    this.connectTimer = setTimeout(onConnectTimeout, this.host.config.connectTimeout, this)
  }

  /** Client bytes while connecting: hold them, and stop reading once the cap is reached. */
  hold(chunk: Buffer): void {
    this.held.push(chunk)
    this.heldBytes += chunk.length
    if (this.heldBytes >= this.host.config.maxPendingBytes) this.client.pause()
  }

  onConnected(server: Socket): void {
    clearTimeout(this.connectTimer)
    this.connectTimer = undefined
    this.state = 'open'
    const backend = this.backend!
    this.host.connected(this, backend)
    if (this.host.config.serverTimeout > 0) {
      server.setTimeout(this.host.config.serverTimeout)
      server.on('timeout', onServerTimeout)
    }
    let flowing = true
    if (this.held.length > 0) {
      server.cork()
      for (const chunk of this.held) flowing = server.write(chunk)
      server.uncork()
      this.held = []
      this.heldBytes = 0
    }
    if (this.clientEnded) server.end()
    else if (flowing) this.client.resume()
    else this.client.pause()
  }

  /** The current connect failed or timed out: count it against the backend and try another. */
  onConnectFailed(server: Socket, err: Error): void {
    clearTimeout(this.connectTimer)
    this.connectTimer = undefined
    const backend = this.backend!
    delete (server as SessionSocket)[kSession]
    server.destroy()
    this.host.table.detach(this)
    backend.active--
    this.host.connectFailed(this, backend, err)
    if (this.state !== 'connecting') return // the client went away meanwhile
    if (this.attempts > this.host.config.retries) {
      this.destroy('connect-failed', err)
      return
    }
    // Never the backend that just failed, unless it is the only one this listener has.
    ;(this.failed ??= new Set()).add(backend)
    this.connect()
  }

  onClientEnd(): void {
    this.clientEnded = true
    if (this.state === 'open') this.server?.end()
  }

  onServerEnd(): void {
    this.client.end()
  }

  onClientClose(): void {
    this.clientClosed = true
    if (this.state === 'connecting') this.destroy('client-error')
    else if (this.serverClosed) this.finish('done')
  }

  onServerClose(): void {
    this.serverClosed = true
    if (this.clientClosed) this.finish('done')
  }

  /** End the session now: destroy both sockets and release everything. */
  destroy(outcome: Outcome, err?: Error): void {
    if (this.state === 'closed') return
    this.client.destroy()
    const server = this.server
    if (server !== undefined) {
      delete (server as SessionSocket)[kSession]
      server.destroy()
    }
    this.error ??= err
    this.finish(outcome)
  }

  private finish(outcome: Outcome): void {
    if (this.state === 'closed') return
    this.state = 'closed'
    this.outcome = outcome
    clearTimeout(this.connectTimer)
    this.connectTimer = undefined
    this.held = []
    // The backend's slot was taken when the connect started and is given back once: here, or in
    // onConnectFailed (which also clears `server`).
    if (this.backend !== undefined && this.server !== undefined) this.backend.active--
    this.host.table.remove(this)
    this.host.closed(this)
  }
}

// Module-level handlers: `this` is the socket, the session is found through kSession.

function onClientData(this: SessionSocket, chunk: Buffer): void {
  const s = this[kSession]!
  const server = s.server
  if (s.state === 'open' && server !== undefined) {
    if (!server.write(chunk)) this.pause()
  } else if (s.state === 'connecting') {
    s.hold(chunk)
  }
}

function onClientEnd(this: SessionSocket): void {
  this[kSession]?.onClientEnd()
}

function onClientError(this: SessionSocket, err: Error): void {
  this[kSession]?.destroy('client-error', err)
}

function onClientClose(this: SessionSocket): void {
  this[kSession]?.onClientClose()
}

function onClientDrain(this: SessionSocket): void {
  this[kSession]?.server?.resume()
}

function onClientTimeout(this: SessionSocket): void {
  this[kSession]?.destroy('client-timeout')
}

function onServerConnect(this: SessionSocket): void {
  const s = this[kSession]
  if (s !== undefined && s.server === this) s.onConnected(this)
}

function onServerData(this: SessionSocket, chunk: Buffer): void {
  const s = this[kSession]
  if (s !== undefined && !s.client.write(chunk)) this.pause()
}

function onServerEnd(this: SessionSocket): void {
  const s = this[kSession]
  if (s !== undefined && s.server === this) s.onServerEnd()
}

function onServerError(this: SessionSocket, err: Error): void {
  const s = this[kSession]
  if (s === undefined || s.server !== this) return
  if (s.state === 'connecting') s.onConnectFailed(this, err)
  else s.destroy('server-error', err)
}

function onServerClose(this: SessionSocket): void {
  const s = this[kSession]
  if (s !== undefined && s.server === this) s.onServerClose()
}

function onServerDrain(this: SessionSocket): void {
  const s = this[kSession]
  if (s !== undefined && s.server === this) s.client.resume()
}

function onServerTimeout(this: SessionSocket): void {
  const s = this[kSession]
  if (s !== undefined && s.server === this) s.destroy('server-timeout')
}

function onConnectTimeout(s: Session): void {
  const server = s.server
  if (server === undefined || s.state !== 'connecting') return
  s.onConnectFailed(
    server,
    new BatonError('ERR_BATON_CONNECT_TIMEOUT', 'server', `connect to ${s.backend?.address} timed out`)
  )
}
