/**
 * A minimal proxy on the native plane, for tests: Node accepts (paused, so it reads nothing),
 * connects to a backend and, once both sockets are up, attaches them to the plane. Each session
 * records its events in order; `next(type)` returns a recorded one or waits for it (bounded).
 */
import { EventEmitter } from 'node:events'
import fs from 'node:fs'
import net, { type Socket } from 'node:net'
import {
  loadNativePlane,
  type AttachOptions,
  type NativePlane,
  type PlaneEvent,
  type PlaneHandle,
} from '../../../lib/native/plane.js'
import { HOST } from '../../helpers/servers.js'
import { once, WAIT_MS, within } from '../../helpers/wait.js'

const load = loadNativePlane()
/** The plane, or undefined (then `skip` says why and every test is skipped). */
export const plane: NativePlane | undefined = load.plane
export const skip: string | false =
  load.plane === undefined ? `native plane unavailable: ${load.reason}` : false

/** The plane, for code that only runs when `skip` is false. */
export function thePlane(): NativePlane {
  if (plane === undefined) throw new Error('native plane unavailable')
  return plane
}

type EventOf<T extends PlaneEvent['type']> = Extract<PlaneEvent, { type: T }>

export class ProxiedSession extends EventEmitter {
  readonly events: PlaneEvent[] = []
  handle!: PlaneHandle
  /** The proxy's own two net.Socket objects, destroyed by attach(). */
  originals: Socket[] = []

  constructor() {
    super()
    this.on('error', noop) // plane 'error' events are data here, not a throw
  }

  record = (event: PlaneEvent): void => {
    this.events.push(event)
    this.emit(event.type, event)
  }

  /** The first recorded `type` event (that passes `filter`), now or when it comes. */
  async next<T extends PlaneEvent['type']>(
    type: T,
    filter: (e: EventOf<T>) => boolean = () => true,
    timeoutMs = WAIT_MS
  ): Promise<EventOf<T>> {
    const seen = this.events.find((e): e is EventOf<T> => e.type === type && filter(e as EventOf<T>))
    if (seen !== undefined) return seen
    const [e] = await once<[EventOf<T>]>(this, type, { timeoutMs, filter })
    return e
  }

  types(): string[] {
    return this.events.map((e) => (e.type === 'error' ? `error:${e.side}` : e.type))
  }
}

export class NativeProxy extends EventEmitter {
  port = 0
  readonly sessions: ProxiedSession[] = []
  private readonly server: net.Server

  /** `backend()` names the port of each new session's server. */
  constructor(
    readonly plane: NativePlane,
    private readonly backend: () => number,
    private readonly options: AttachOptions = {}
  ) {
    super()
    this.server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (client) =>
      this.accept(client)
    )
  }

  async listen(): Promise<this> {
    this.server.listen({ host: HOST, port: 0 })
    await within(once(this.server, 'listening'), 'native proxy listening')
    this.port = (this.server.address() as net.AddressInfo).port
    return this
  }

  /** The next session attached (or the latest one, if `sessions` already holds `index`). */
  async session(index = this.sessions.length): Promise<ProxiedSession> {
    const have = this.sessions[index]
    if (have !== undefined) return have
    const [s] = await once<[ProxiedSession]>(this, 'session', { filter: () => this.sessions.length > index })
    return this.sessions[index] ?? s
  }

  /** Connect to `port` and move `session` onto that connection; resolves with the bytes re-sent. */
  async failover(session: ProxiedSession, port: number): Promise<number> {
    const upstream = await connected(port)
    return this.plane.replaceServer(session.handle, upstream)
  }

  close(): Promise<void> {
    for (const s of this.sessions) this.plane.close(s.handle)
    return new Promise((resolve) => this.server.close(() => resolve()))
  }

  private accept(client: Socket): void {
    client.on('error', noop)
    const upstream = net.connect({ host: HOST, port: this.backend() })
    upstream.on('error', (err) => {
      client.destroy()
      this.emit('connect-error', err)
    })
    upstream.once('connect', () => {
      const session = new ProxiedSession()
      session.originals = [client, upstream]
      session.handle = this.plane.attach(client, upstream, session.record, this.options)
      this.sessions.push(session)
      this.emit('session', session)
    })
  }
}

/** A connected socket to a loopback port (not reading: connect handlers run before Node reads). */
export async function connected(port: number): Promise<Socket> {
  const socket = net.connect({ host: HOST, port })
  socket.on('error', noop)
  await within(once(socket, 'connect'), `connect to ${port}`)
  return socket
}

export async function nativeProxy(backend: () => number, options: AttachOptions = {}): Promise<NativeProxy> {
  return new NativeProxy(thePlane(), backend, options).listen()
}

/** Open descriptors of this process. */
export function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length
}

function noop(): void {}
