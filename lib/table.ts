/**
 * The connection table: every live session by id, with the association between its client
 * connection and its current server connection (the patent's "connection management data storage").
 *
 * An entry is created once when the client is accepted and removed once when the session ends. A
 * session that moves to another server connection (failover, a later issue) updates its entry in
 * place — `attach()` — so the id, the client side and the history of backends stay as they were.
 */
import type { Socket } from 'node:net'
import type { Backend } from './backend.js'
import { UNIX_CLIENT } from './address.js'

export interface TableEntry {
  readonly id: number
  readonly listener: string
  readonly client: Socket
  /**
   * Bytes read from and written to the client so far. The client socket's own counts, until a
   * session on the native plane hands its descriptor over; then the plane's (read on demand).
   */
  readonly bytesFromClient: number
  readonly bytesToClient: number
  /** The client's `address:port`, read at accept. */
  readonly remote: string
  readonly startedAt: number
  /** The current server connection, undefined while connecting or between connections. */
  server: Socket | undefined
  /**
   * The current server connection's local `address:port`, kept where the socket no longer knows it
   * (its descriptor passed to the native plane).
   */
  serverLocal?: string | undefined
  /** The current backend. */
  backend: Backend | undefined
  /** Every backend this session has been attached to, in order (replaced by `attach`, never emptied). */
  history: Backend[]
  state: SessionState
  /**
   * `bytesFromClient` and `bytesToClient` as they were when their bytes were last credited to a
   * backend (creditBackend); what is above them belongs to the current backend.
   */
  creditedFromClient: number
  creditedToClient: number
}

export type SessionState = 'connecting' | 'open' | 'closing' | 'closed'

export interface SessionSnapshot {
  id: number
  listener: string
  state: SessionState
  client: string
  backend: string | undefined
  /** Local address of the current server connection (`host:port`), if connected. */
  server: string | undefined
  backends: string[]
  bytesFromClient: number
  bytesToClient: number
  startedAt: number
  durationMs: number
}

export class ConnectionTable {
  private readonly entries = new Map<number, TableEntry>()
  private nextId = 1

  get size(): number {
    return this.entries.size
  }

  newId(): number {
    return this.nextId++
  }

  add(entry: TableEntry): void {
    this.entries.set(entry.id, entry)
  }

  get(id: number): TableEntry | undefined {
    return this.entries.get(id)
  }

  /** Point an entry at a (new) server connection: an update, never a delete-and-recreate. */
  attach(entry: TableEntry, backend: Backend, server: Socket): void {
    if (entry.backend !== backend) creditBackend(entry)
    entry.backend = backend
    entry.server = server
    const h = entry.history
    // The first one as a literal: a push into an empty array reserves 17 slots (152 bytes) for
    // what is, for nearly every session, its only backend.
    if (h.length === 0) entry.history = [backend]
    else if (h[h.length - 1] !== backend) h.push(backend)
  }

  /** The entry no longer has a server connection (it failed or is being replaced). */
  detach(entry: TableEntry): void {
    entry.server = undefined
    entry.serverLocal = undefined
  }

  remove(entry: TableEntry): void {
    creditBackend(entry)
    this.entries.delete(entry.id)
  }

  values(): IterableIterator<TableEntry> {
    return this.entries.values()
  }

  snapshot(now = Date.now()): SessionSnapshot[] {
    const out: SessionSnapshot[] = []
    for (const e of this.entries.values()) out.push(snapshotOf(e, now))
    return out
  }
}

/**
 * Add the client bytes of `entry` since its last credit to its current backend's `bytesSent` and
 * `bytesReceived` (backend.ts says what they count), at a switch of backend and at the end. Bytes
 * that came before the first backend was chosen go to that backend.
 */
export function creditBackend(entry: TableEntry): void {
  const b = entry.backend
  if (b === undefined) return
  const from = entry.bytesFromClient
  const to = entry.bytesToClient
  // Never negative: a session whose descriptors pass to the native plane switches from the sockets'
  // counts to the plane's, which may start lower; the mark then follows them down.
  b.counters.bytesSent += Math.max(0, from - entry.creditedFromClient)
  b.counters.bytesReceived += Math.max(0, to - entry.creditedToClient)
  entry.creditedFromClient = from
  entry.creditedToClient = to
}

/** The bytes of live sessions not yet credited to their current backend, per backend. */
export function uncreditedBytes(
  entries: Iterable<TableEntry>
): Map<Backend, { sent: number; received: number }> {
  const out = new Map<Backend, { sent: number; received: number }>()
  for (const e of entries) {
    const b = e.backend
    if (b === undefined) continue
    let sum = out.get(b)
    if (sum === undefined) out.set(b, (sum = { sent: 0, received: 0 }))
    sum.sent += Math.max(0, e.bytesFromClient - e.creditedFromClient)
    sum.received += Math.max(0, e.bytesToClient - e.creditedToClient)
  }
  return out
}

export function snapshotOf(e: TableEntry, now = Date.now()): SessionSnapshot {
  return {
    id: e.id,
    listener: e.listener,
    state: e.state,
    client: e.remote,
    backend: e.backend?.name,
    server: e.serverLocal ?? serverName(e),
    backends: e.history.map((b) => b.name),
    bytesFromClient: e.bytesFromClient,
    bytesToClient: e.bytesToClient,
    startedAt: e.startedAt,
    durationMs: now - e.startedAt,
  }
}

/** The local end of the server connection, once connected: `host:port`, or `unix` (no address). */
function serverName(e: TableEntry): string | undefined {
  const s = e.server
  if (s === undefined) return undefined
  if (s.localPort !== undefined) return `${s.localAddress}:${s.localPort}`
  return e.backend?.path !== undefined && !s.connecting && !s.destroyed ? UNIX_CLIENT : undefined
}
