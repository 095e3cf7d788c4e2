/**
 * The native splice data plane: loader and typed wrapper around build/Release/baton_plane.node
 * (native/plane.c; the design is in docs/native-plane.md).
 *
 * The addon is optional. `loadNativePlane()` returns `{ plane }` when it loaded, or
 * `{ plane: undefined, reason }` (not Linux, not built, failed to load, turned off with
 * BATON_NATIVE=0) so the caller can say once why it runs on the JavaScript plane.
 *
 * Hand-off: once both sockets are connected, `attach(client, server, onEvent, options)` duplicates
 * their descriptors into the addon and destroys the two net.Socket objects (closing the original
 * descriptor sends nothing: the duplicate keeps the connection). From then on bytes move kernel to
 * kernel and `onEvent` is called only when something happens. The caller must have stopped caring
 * about the sockets first: destroy() still emits their 'close' event.
 */
import { createRequire } from 'node:module'
import type { Socket } from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { getSystemErrorName } from 'node:util'
import { NativePlaneError } from '../errors.js'

/** What the C side exports (native/plane.c, `init`). */
interface Binding {
  readonly version: string
  readonly statsLength: number
  readonly poolStatsLength: number
  readonly maxThreads: number
  setCallback(
    fn: (id: number, kind: number, a: number, errno: number, address?: string, port?: number) => void
  ): void
  attach(
    clientFd: number,
    serverFd: number,
    replayBytes: number,
    flags: number,
    head?: Buffer,
    maxHeadBytes?: number
  ): number
  detach(id: number): [number, number, Buffer?, Buffer?, Buffer?, Buffer?]
  followProbe(resp: boolean, limit: number, sides: number[], chunks: Buffer[]): number[]
  connect(family: number, address: string, port: number, now: number): number
  cancelConnect(token: number): void
  localName(token: number): string
  listen(fd: number, backlog: number): void
  unlisten(fd: number): void
  resumeAccept(fd: number): void
  forgetAccepted(token: number): void
  replaceServer(id: number, fd: number): number
  shutdownClient(id: number): void
  pause(id: number, paused: boolean): void
  close(id: number, resetClient?: boolean): boolean
  stats(id: number, out: Float64Array): boolean
  poolStats(out: Float64Array): void
  configure(
    maxIdlePipes: number,
    pipeSize: number,
    copyReads: number,
    threads: number,
    connectNow: number
  ): void
}

/** A session inside the native plane. Opaque: a stale handle is refused, never misused. */
export type PlaneHandle = number & { readonly __planeHandle: true }

/** A server connect the plane makes itself (`connect()`), until `attachConnected` or `cancelConnect`. */
export type PlaneConnection = number & { readonly __planeConnection: true }

/**
 * A client the plane accepted (`listen`), until `attach`/`attachConnected` take it, `closeAccepted`
 * closes it or `takeAccepted` gives its descriptor to the caller.
 */
export type PlaneAccepted = number & { readonly __planeAccepted: true }

/**
 * A client accepted on a listening socket of `listen` (its address from accept4, no getpeername),
 * or, with `client` undefined, an accept that failed (`errno`, its name in `code`): the listening
 * socket is paused until `resumeAccept`, its new clients waiting in the kernel's queue.
 */
export type AcceptListener = (
  client: PlaneAccepted | undefined,
  errno: number,
  code: string,
  address: string,
  port: number
) => void

/** An accepted client not yet attached reset or failed (`watchAccepted`). */
export type GoneListener = (client: PlaneAccepted, errno: number, code: string) => void

/** The outcome of a plane connect: `errno` 0 when it connected, else why not (its name in `code`). */
export type ConnectListener = (connection: PlaneConnection, errno: number, code: string) => void

export type PlaneSide = 'client' | 'server' | 'internal'
export type PlaneCloseReason = 'done' | 'client-error' | 'internal-error'

export interface PlaneStats {
  /** Bytes read from the client (including an attach `head`). */
  bytesFromClient: number
  /** Bytes written to server connections (replays count again). */
  bytesToServer: number
  bytesFromServer: number
  bytesToClient: number
  /** When bytes last moved, in ms of CLOCK_MONOTONIC_COARSE; see `idleMs`. */
  lastActivity: number
  /** Milliseconds since bytes last moved, on the same clock. */
  idleMs: number
  /** Client bytes held in the replay pipe (what a replaceServer would re-send). */
  replayBytes: number
  /** Client bytes since the server last spoke: the unanswered request (opaque turn-taking). */
  unansweredBytes: number
  /** Server bytes forwarded since the client last sent any: a response has started. */
  serverBytesSinceRequest: number
  /** Every unanswered byte is in the replay pipe (false after an overflow until the server speaks). */
  replayable: boolean
  /** unansweredBytes === 0: the server had answered everything the client sent. */
  answered: boolean
  /** serverBytesSinceRequest > 0: part (or all) of a response reached the client. */
  responseStarted: boolean
  /** Requests answered: times the server spoke after client bytes. */
  turns: number
  failovers: number
  /** Bytes re-sent by replaceServer, summed. */
  replayedBytes: number
  /** Times recording stopped because the replay pipe could not take a request. */
  replayOverflows: number
  /** Pipes the session holds now (0 when idle). */
  pipes: number
  /** Bytes read from one side and not yet written to the other. */
  pendingToServer: number
  pendingToClient: number
  clientEof: boolean
  serverEof: boolean
  /** The server's FIN is held for the caller (holdServerEof): shutdownClient, replaceServer or close. */
  serverEofHeld: boolean
  /** shutdown(SHUT_WR) done on the server / the client. */
  finSentToServer: boolean
  finSentToClient: boolean
  /** The server connection failed and is closed; waiting for replaceServer or close. */
  serverDown: boolean
  paused: boolean
  closed: boolean
  /**
   * The server spoke before the client's first byte (a greeting): a new server would greet again,
   * so the session cannot move to another one (opaque's `pinned`). Sticky.
   */
  serverFirst: boolean
  /**
   * The client's first bytes opened a client-first handshake (a TLS ClientHello, the HTTP/2
   * preface, a PostgreSQL startup; lib/framing/client-first.ts): once the server has answered, the
   * session cannot move to another one. Sticky.
   */
  clientFirst: boolean
  /** A framed session stopped moving bytes for JavaScript to take it over (`handoff`). */
  handing: boolean
  /** resp: how long the command the client is part-way through has been coming (ms; 0: none). */
  partialMs: number
  /** The plane thread that moves this session's bytes (1..threads), or 0: the main loop. */
  thread: number
}

export type PlaneEvent =
  | { type: 'client-eof'; stats: PlaneStats }
  | { type: 'server-eof'; held: boolean; stats: PlaneStats }
  | { type: 'error'; side: PlaneSide; errno: number; code: string; stats: PlaneStats }
  | { type: 'close'; reason: PlaneCloseReason; stats: PlaneStats }
  /**
   * A framed session (`http1`, `resp`) stopped moving bytes: JavaScript takes it over with `detach` now.
   * `errno`: a server error (`server-error`), or ENOMEM (`history`).
   */
  | { type: 'handoff'; reason: HandoffReason; errno: number; code: string; stats: PlaneStats }

/** Why a framed session went to JavaScript (native/plane.c, H_*). */
export type HandoffReason = 'unfollowed' | 'server-eof' | 'server-error' | 'client-eof' | 'history'

/**
 * A framed session taken off the plane (`detach`): its descriptors (-1: none) and, per side, the
 * bytes read since the last clean point (`history`) and those read and not yet written on
 * (`unsent`: the history's tail, or more when they reach back past the clean point).
 */
export interface Detached {
  clientFd: number
  serverFd: number
  clientHistory: Buffer | undefined
  clientUnsent: Buffer | undefined
  serverHistory: Buffer | undefined
  serverUnsent: Buffer | undefined
}

/**
 * Called with the event and the session's handle, so one module-level function can serve every
 * session (finding its owner by handle) instead of a closure per session.
 */
export type PlaneListener = (event: PlaneEvent, handle: PlaneHandle) => void

export interface AttachOptions {
  /** Capacity of the replay pipe; 0 (default) records nothing. Rounded up to whole pages. */
  replayBytes?: number
  /** Hold a server FIN for the caller instead of passing it to the client (default false). */
  holdServerEof?: boolean
  /**
   * Follow http1 boundaries (docs/native-plane.md, "http1 on the plane"): no replay pipe, and
   * whatever the plane does not follow, or any EOF or server error, is handed to JavaScript
   * (`handoff` event, then `detach`). `maxHeadBytes`: a longer head is not followed.
   */
  http1?: { maxHeadBytes: number }
  /** The same for resp (docs/native-plane.md, "resp on the plane"); a longer bulk string is not followed. */
  resp?: { maxBulkBytes: number }
  /** Client bytes Node already read (an accept stage's peek): sent first, and recorded. */
  head?: Buffer
}

export interface PoolStats {
  /** Idle pipes in the pool. */
  idle: number
  /** Pipes held by sessions now. */
  inUse: number
  created: number
  destroyed: number
  /** F_SETPIPE_SZ calls (replay pipes, a changed pipeSize). */
  resized: number
  maxIdle: number
  pipeSize: number
  sessions: number
  /** Replay pipes repacked because many small segments ran out of slots before bytes (a copy). */
  replayCompactions: number
  /** Plane threads new sessions go to (0: the main thread). */
  threads: number
  /** Plane threads running now (a thread the configuration dropped runs until its last session ends). */
  threadsRunning: number
}

export interface PlaneConfig {
  /** Idle pipes kept for reuse (default 1024); lowering it closes the extra ones at once. */
  maxIdlePipes?: number
  /** Capacity of data pipes in bytes (default: the kernel's, 64 KiB). */
  pipeSize?: number
  /**
   * Small reads are copied (recv into one buffer, send on at once) and only bulk is spliced
   * (default true; native/plane.c, pump). false: every read splices through a pipe (tests of the
   * pipe path use it).
   */
  copyReads?: boolean
  /**
   * Plane threads, each with its own epoll loop (HAProxy's `nbthread`). A session starts on the
   * main thread's loop and moves to the least loaded plane thread once a read brings 16 KiB or more
   * (bulk). 0: every session on the main loop. Default: the CPUs this process may use
   * (`os.availableParallelism()`), at most MAX_PLANE_THREADS. Applies to sessions that go bulk
   * from then on; a thread no longer configured ends with its last session.
   */
  threads?: number
  /**
   * A connect done inside `connect()` (loopback runs the handshake inside the call) is reported on
   * the next tick instead of through the epoll (default true). false: always through the epoll
   * (tests of that path).
   */
  connectNow?: boolean
}

/** The most plane threads `configure({ threads })` takes (native/plane.c, MAX_THREADS). */
export const MAX_PLANE_THREADS = 64

export interface NativePlane {
  readonly version: string
  /**
   * Hand two connected sockets (or raw descriptors, which stay the caller's to close) to the plane.
   * Sockets are destroyed after their descriptors are duplicated. A client the plane accepted
   * (`PlaneAccepted`) is the plane's from the call on, closed by it if the attach fails. `onEvent`
   * runs on this thread.
   */
  attach(
    client: Socket | number | PlaneAccepted,
    server: Socket | number,
    onEvent: PlaneListener,
    options?: AttachOptions
  ): PlaneHandle
  /**
   * Connect to `address` (an IP address of `family`) and `port` without a Node socket: `onDone` is
   * called once, on this thread, when the connect succeeded or failed (a failed one is closed by
   * the plane), unless `cancelConnect` came first. Throws (with the errno's name as `code`) when it
   * cannot even start: out of descriptors, no route. `now`: a connect done inside the call
   * (loopback) is reported on the next tick rather than through the epoll a loop turn later;
   * for a caller that has nothing to wait for (a Node socket that has yet to read the client's
   * first bytes is better served by that turn).
   */
  connect(
    family: 4 | 6,
    address: string,
    port: number,
    onDone: ConnectListener,
    options?: { now?: boolean }
  ): PlaneConnection
  /** The connect is no longer wanted: closed, and its `onDone` never called. */
  cancelConnect(connection: PlaneConnection): void
  /** The local `address:port` of a connected connection (before `attachConnected`). */
  localName(connection: PlaneConnection): string
  /**
   * `attach` with a server connection the plane made (`connect`, which reported success): nothing
   * is duplicated or closed on the server side. Once the arguments are valid the connection is the
   * plane's (closed by it when the attach fails); after a throw, `cancelConnect` closes what is
   * still the caller's and nothing else.
   */
  attachConnected(
    client: Socket | number | PlaneAccepted,
    server: PlaneConnection,
    onEvent: PlaneListener,
    options?: AttachOptions
  ): PlaneHandle
  /**
   * Accept on `fd`, a bound TCP socket the caller keeps (and closes after `unlisten`), instead of
   * Node: each client is one `onAccept` call, on this thread. `backlog` > 0 calls listen(2) with
   * it; 0 takes a socket that listens already. Throws (the errno's name as `code`) when it cannot.
   */
  listen(fd: number, backlog: number, onAccept: AcceptListener): void
  /** Stop accepting on `fd`; clients accepted and not yet delivered are closed. */
  unlisten(fd: number): void
  /** Accept again on `fd` after an accept failed (`onAccept` with no client). */
  resumeAccept(fd: number): void
  /**
   * Be told, once, when an accepted client resets or fails before it is attached (a FIN alone is
   * not reported: a half-closed client may still want its answer). Its descriptor stays the
   * caller's: `closeAccepted` it.
   */
  watchAccepted(client: PlaneAccepted, onGone: GoneListener): void
  /** Close an accepted client (refused, or its session ended before the attach). */
  closeAccepted(client: PlaneAccepted): void
  /** The accepted client's descriptor, the caller's from now on (for `new net.Socket({ fd })`). */
  takeAccepted(client: PlaneAccepted): number
  /** Live counters and state; undefined once the session is gone. Cheap: no allocation but the object. */
  stats(handle: PlaneHandle): PlaneStats | undefined
  /**
   * The same into `out` (from `emptyStats()`), allocating nothing: false, and `out` unchanged,
   * once the session is gone. For a caller that looks at every session often (the sweep).
   */
  statsInto(handle: PlaneHandle, out: PlaneStats): boolean
  /**
   * Move the session to another server connection (new or pooled): the old server descriptor is
   * closed and the replay pipe is sent to the new one (and kept, for another failover). Returns the
   * bytes re-sent. Throws ERR_NATIVE_PLANE_NOT_REPLAYABLE when unanswered bytes were not recorded,
   * and ERR_NATIVE_PLANE_CLOSED when the plane closed the session on its own thread and its `close`
   * event is on its way (pause, resume and shutdownClient are no-ops then).
   */
  replaceServer(handle: PlaneHandle, server: Socket | number): number
  /** No more server bytes; the FIN goes to the client after what is in flight (a held EOF passes on). */
  shutdownClient(handle: PlaneHandle): void
  /** Stop reading both sides (bytes already read still go out). */
  pause(handle: PlaneHandle): void
  resume(handle: PlaneHandle): void
  /**
   * Close both descriptors now (shutdown, timeouts). No event follows; returns the final stats
   * (also when the plane had just closed it itself, its `close` event not yet delivered).
   * `resetClient`: the client gets an RST instead of a FIN (a server reset that cannot be hidden).
   */
  close(handle: PlaneHandle, resetClient?: boolean): PlaneStats | undefined
  /**
   * Take a framed session off the plane (after its `handoff` event, or at JavaScript's own time):
   * no event follows, and the descriptors are the caller's.
   */
  detach(handle: PlaneHandle): Detached
  /**
   * For tests: the http1 or resp boundary follower alone, on fresh state, fed `chunks` (each read
   * from its side); returns how many bytes of each it followed (-1 after the first it did not follow
   * whole). `limit`: maxHeadBytes or maxBulkBytes.
   */
  followProbe(
    protocol: 'http1' | 'resp',
    limit: number,
    chunks: readonly { side: 'client' | 'server'; bytes: Buffer }[]
  ): number[]
  poolStats(): PoolStats
  configure(config: PlaneConfig): void
}

export type NativePlaneLoad = { plane: NativePlane; reason: undefined } | { plane: undefined; reason: string }

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
export const ADDON_PATH = path.join(ROOT, 'build', 'Release', 'baton_plane.node')
const ABI_VERSION = '5'

// Stats layout: native/plane.c, ST_*.
const ST = {
  fromClient: 0,
  toServer: 1,
  fromServer: 2,
  toClient: 3,
  lastActivity: 4,
  replayBytes: 5,
  unanswered: 6,
  serverSinceReq: 7,
  replayable: 8,
  turns: 9,
  failovers: 10,
  replayed: 11,
  overflows: 12,
  pipes: 13,
  c2sPending: 14,
  s2cPending: 15,
  flags: 16,
  idleMs: 17,
  thread: 18,
  partialMs: 19,
} as const
const FL = {
  clientEof: 1,
  serverEof: 2,
  serverFinSent: 4,
  clientFinSent: 8,
  serverDown: 16,
  paused: 32,
  closed: 64,
  serverEofHeld: 128,
  serverFirst: 256,
  clientFirst: 512,
  handing: 1024,
} as const
const EV_CLIENT_EOF = 1
const EV_SERVER_EOF = 2
const EV_ERROR = 3
const EV_CLOSE = 4
const EV_CONNECT = 5
const EV_ACCEPT = 6
const EV_CLIENT_GONE = 7
const EV_HANDOFF = 8
const HANDOFF_REASONS: readonly HandoffReason[] = [
  'unfollowed',
  'unfollowed',
  'server-eof',
  'server-error',
  'client-eof',
  'history',
]
/** A connect's or an accepted client's token: (generation << 22) | descriptor (native/plane.c). */
const TOKEN_FD = 2 ** 22
/** A connect token with this bit was done inside the call (loopback): no EV_CONNECT follows. */
const CONN_NOW = 2 ** 52
const SIDES: readonly PlaneSide[] = ['client', 'server', 'internal']
const REASONS: readonly PlaneCloseReason[] = ['done', 'client-error', 'internal-error', 'done']
const F_HOLD_SERVER_EOF = 1
const F_SERVER_OWNED = 2
const F_CLIENT_OWNED = 4
const F_HTTP1 = 8
const F_RESP = 16

export { NativePlaneError }

class Plane implements NativePlane {
  readonly version: string
  private readonly listeners = new Map<number, PlaneListener>()
  private readonly connects = new Map<number, ConnectListener>()
  /** Connects that succeeded and are not yet attached or cancelled. */
  private readonly connected = new Set<number>()
  /** Listening descriptors the plane accepts on, with their listener. */
  private readonly acceptors = new Map<number, AcceptListener>()
  /** Accepted clients not yet attached, closed or taken, with who watches them (watchAccepted). */
  private readonly accepted = new Map<number, GoneListener | undefined>()
  private readonly scratch: Float64Array
  private readonly poolScratch: Float64Array

  constructor(private readonly binding: Binding) {
    this.version = binding.version
    this.scratch = new Float64Array(binding.statsLength)
    this.poolScratch = new Float64Array(binding.poolStatsLength)
    binding.setCallback(this.dispatch)
  }

  attach(
    client: Socket | number | PlaneAccepted,
    server: Socket | number,
    onEvent: PlaneListener,
    options: AttachOptions = {}
  ): PlaneHandle {
    return this.attachAny(client, server, false, onEvent, options)
  }

  attachConnected(
    client: Socket | number | PlaneAccepted,
    server: PlaneConnection,
    onEvent: PlaneListener,
    options: AttachOptions = {}
  ): PlaneHandle {
    return this.attachAny(client, server, true, onEvent, options)
  }

  connect(
    family: 4 | 6,
    address: string,
    port: number,
    onDone: ConnectListener,
    options: { now?: boolean } = {}
  ): PlaneConnection {
    const token = this.binding.connect(family, address, port, options.now === true ? 1 : 0)
    if (token >= CONN_NOW) {
      // Connected inside the call: told on the next tick (never from inside the call), unless
      // cancelled first.
      this.connected.add(token)
      process.nextTick(() => {
        if (this.connected.has(token)) onDone(token as PlaneConnection, 0, '')
      })
      return token as PlaneConnection
    }
    this.connects.set(token, onDone)
    return token as PlaneConnection
  }

  cancelConnect(connection: PlaneConnection): void {
    // A connect still waiting for its outcome, or one that succeeded and was not attached; never
    // one that failed (the plane closed it, and its descriptor number may be another's by now).
    if (this.connects.delete(connection) || this.connected.delete(connection))
      this.binding.cancelConnect(connection)
  }

  localName(connection: PlaneConnection): string {
    return this.binding.localName(connection)
  }

  listen(fd: number, backlog: number, onAccept: AcceptListener): void {
    if (this.acceptors.has(fd))
      throw new NativePlaneError('ERR_INVALID_ARG_VALUE', `the plane accepts on descriptor ${fd} already`)
    if (!Number.isInteger(backlog) || backlog < 0)
      throw new NativePlaneError(
        'ERR_INVALID_ARG_VALUE',
        `backlog must be a non-negative integer, got ${backlog}`
      )
    this.binding.listen(fd, backlog)
    this.acceptors.set(fd, onAccept)
  }

  unlisten(fd: number): void {
    if (!this.acceptors.delete(fd)) return
    this.binding.unlisten(fd)
  }

  resumeAccept(fd: number): void {
    if (this.acceptors.has(fd)) this.binding.resumeAccept(fd)
  }

  closeAccepted(client: PlaneAccepted): void {
    if (this.accepted.delete(client)) this.binding.cancelConnect(client)
  }

  takeAccepted(client: PlaneAccepted): number {
    if (!this.accepted.delete(client))
      throw new NativePlaneError(
        'ERR_INVALID_ARG_VALUE',
        'not an accepted client (taken, attached or closed)'
      )
    this.binding.forgetAccepted(client)
    return client % TOKEN_FD
  }

  watchAccepted(client: PlaneAccepted, onGone: GoneListener): void {
    if (this.accepted.has(client)) this.accepted.set(client, onGone)
  }

  private attachAny(
    client: Socket | number | PlaneAccepted,
    server: Socket | number,
    owned: boolean,
    onEvent: PlaneListener,
    options: AttachOptions
  ): PlaneHandle {
    const replayBytes = options.replayBytes ?? 0
    if (!Number.isInteger(replayBytes) || replayBytes < 0 || replayBytes > 1 << 30)
      throw new NativePlaneError(
        'ERR_INVALID_ARG_VALUE',
        `replayBytes must be an integer from 0 to 1 GiB, got ${replayBytes}`
      )
    if (owned && !this.connected.has(server as number))
      throw new NativePlaneError(
        'ERR_INVALID_ARG_VALUE',
        'not a connection that connected (or attached already)'
      )
    // The checks that can still throw come before anything is taken: after a throw, what the
    // caller gave is still the caller's (cancelConnect, closeAccepted).
    const serverFd = owned ? (server as number) : descriptorOf(server, 'server')
    // An accepted client is the plane's own: nothing to duplicate, and the addon closes it if the
    // attach fails.
    const clientOwned = typeof client === 'number' && this.accepted.delete(client)
    const clientFd = clientOwned ? (client as number) : descriptorOf(client, 'client')
    // An owned connection is the plane's from here on: the addon closes it if it fails.
    if (owned) this.connected.delete(server as number)
    let head = options.head
    let buffered: Buffer | null = null
    if (typeof client !== 'number' && client.readableLength > 0) {
      // Read by Node and not yet consumed: it goes first, like an accept stage's peek.
      buffered = client.read() as Buffer | null
      if (buffered !== null) head = head === undefined ? buffered : Buffer.concat([head, buffered])
    }
    let id: number
    try {
      id = this.binding.attach(
        clientFd,
        serverFd,
        replayBytes,
        (options.holdServerEof === true ? F_HOLD_SERVER_EOF : 0) |
          (owned ? F_SERVER_OWNED : 0) |
          (clientOwned ? F_CLIENT_OWNED : 0) |
          (options.http1 !== undefined ? F_HTTP1 : 0) |
          (options.resp !== undefined ? F_RESP : 0),
        head,
        options.http1?.maxHeadBytes ?? options.resp?.maxBulkBytes
      )
    } catch (err) {
      if (buffered !== null && typeof client !== 'number') client.unshift(buffered) // left as it was
      throw err
    }
    this.listeners.set(id, onEvent)
    if (typeof client !== 'number') client.destroy()
    if (typeof server !== 'number') server.destroy()
    return id as PlaneHandle
  }

  stats(handle: PlaneHandle): PlaneStats | undefined {
    return this.binding.stats(handle, this.scratch) ? statsFrom(this.scratch) : undefined
  }

  statsInto(handle: PlaneHandle, out: PlaneStats): boolean {
    if (!this.binding.stats(handle, this.scratch)) return false
    fillStats(this.scratch, out)
    return true
  }

  replaceServer(handle: PlaneHandle, server: Socket | number): number {
    const fd = descriptorOf(server, 'server')
    const resent = this.binding.replaceServer(handle, fd)
    if (typeof server !== 'number') server.destroy()
    return resent
  }

  shutdownClient(handle: PlaneHandle): void {
    this.binding.shutdownClient(handle)
  }

  pause(handle: PlaneHandle): void {
    this.binding.pause(handle, true)
  }

  resume(handle: PlaneHandle): void {
    this.binding.pause(handle, false)
  }

  close(handle: PlaneHandle, resetClient = false): PlaneStats | undefined {
    const last = this.stats(handle)
    this.listeners.delete(handle)
    if (!this.binding.close(handle, resetClient) || last === undefined) return undefined
    last.closed = true
    return last
  }

  followProbe(
    protocol: 'http1' | 'resp',
    limit: number,
    chunks: readonly { side: 'client' | 'server'; bytes: Buffer }[]
  ): number[] {
    return this.binding.followProbe(
      protocol === 'resp',
      limit,
      chunks.map((c) => (c.side === 'client' ? 0 : 1)),
      chunks.map((c) => c.bytes)
    )
  }

  detach(handle: PlaneHandle): Detached {
    this.listeners.delete(handle)
    const [clientFd, serverFd, clientHistory, clientUnsent, serverHistory, serverUnsent] =
      this.binding.detach(handle)
    return { clientFd, serverFd, clientHistory, clientUnsent, serverHistory, serverUnsent }
  }

  poolStats(): PoolStats {
    const d = this.poolScratch
    this.binding.poolStats(d)
    return {
      idle: d[0]!,
      inUse: d[1]!,
      created: d[2]!,
      destroyed: d[3]!,
      resized: d[4]!,
      maxIdle: d[5]!,
      pipeSize: d[6]!,
      sessions: d[7]!,
      replayCompactions: d[8]!,
      threads: d[9]!,
      threadsRunning: d[10]!,
    }
  }

  configure(config: PlaneConfig): void {
    const { maxIdlePipes = -1, pipeSize = 0, copyReads, threads, connectNow } = config
    if (
      maxIdlePipes !== -1 &&
      (!Number.isInteger(maxIdlePipes) || maxIdlePipes < 0 || maxIdlePipes > 1 << 20)
    )
      throw new NativePlaneError(
        'ERR_INVALID_ARG_VALUE',
        `maxIdlePipes must be an integer from 0 to 1048576, got ${maxIdlePipes}`
      )
    if (!Number.isInteger(pipeSize) || pipeSize < 0 || pipeSize > 1 << 30)
      throw new NativePlaneError(
        'ERR_INVALID_ARG_VALUE',
        `pipeSize must be an integer from 0 to 1 GiB, got ${pipeSize}`
      )
    if (threads !== undefined && (!Number.isInteger(threads) || threads < 0 || threads > MAX_PLANE_THREADS))
      throw new NativePlaneError(
        'ERR_INVALID_ARG_VALUE',
        `threads must be an integer from 0 to ${MAX_PLANE_THREADS}, got ${threads}`
      )
    this.binding.configure(
      maxIdlePipes,
      pipeSize,
      copyReads === undefined ? -1 : copyReads ? 1 : 0,
      threads ?? -1,
      connectNow === undefined ? -1 : connectNow ? 1 : 0
    )
  }

  /**
   * The one callback the addon calls (on this thread, from a uv callback, never inside one of the
   * calls above). The stats are read now: what the plane thread saw since the event is in them.
   */
  private readonly dispatch = (
    id: number,
    kind: number,
    a: number,
    errno: number,
    address?: string,
    port?: number
  ): void => {
    if (kind === EV_ACCEPT) {
      const onAccept = this.acceptors.get(a)
      if (errno !== 0) return onAccept?.(undefined, errno, errnoCode(errno), '', 0)
      // Accepted before an unlisten: nobody wants the client.
      if (onAccept === undefined) return this.binding.cancelConnect(id)
      this.accepted.set(id, undefined)
      return onAccept(id as PlaneAccepted, 0, '', address ?? '', port ?? 0)
    }
    if (kind === EV_CLIENT_GONE) {
      const onGone = this.accepted.get(id)
      if (onGone === undefined) return
      this.accepted.set(id, undefined) // once
      return onGone(id as PlaneAccepted, errno, errnoCode(errno))
    }
    if (kind === EV_CONNECT) {
      const done = this.connects.get(id)
      if (done === undefined) return
      // Connected, the connection is the caller's (attachConnected or cancelConnect); failed, the
      // plane closed it. Either way this listener is done.
      this.connects.delete(id)
      // A connected one keeps a mark so that cancelConnect still closes it.
      if (errno === 0) this.connected.add(id)
      return done(id as PlaneConnection, errno, errno === 0 ? '' : errnoCode(errno))
    }
    const listener = this.listeners.get(id)
    if (listener === undefined) return
    const stats = this.binding.stats(id, this.scratch) ? statsFrom(this.scratch) : undefined
    if (stats === undefined) return
    if (kind === EV_CLOSE) this.listeners.delete(id)
    const h = id as PlaneHandle
    switch (kind) {
      case EV_CLIENT_EOF:
        return listener({ type: 'client-eof', stats }, h)
      case EV_SERVER_EOF:
        return listener({ type: 'server-eof', held: a === 1, stats }, h)
      case EV_ERROR:
        return listener(
          { type: 'error', side: SIDES[a] ?? 'internal', errno, code: errnoCode(errno), stats },
          h
        )
      case EV_CLOSE:
        return listener({ type: 'close', reason: REASONS[a] ?? 'done', stats }, h)
      case EV_HANDOFF:
        return listener(
          {
            type: 'handoff',
            reason: HANDOFF_REASONS[a] ?? 'unfollowed',
            errno,
            code: errno === 0 ? '' : errnoCode(errno),
            stats,
          },
          h
        )
    }
  }
}

function statsFrom(d: Float64Array): PlaneStats {
  return fillStats(d, emptyStats())
}

/** A PlaneStats of zeros, to be filled by `statsInto` (every field, in the order fillStats sets them). */
export function emptyStats(): PlaneStats {
  return {
    bytesFromClient: 0,
    bytesToServer: 0,
    bytesFromServer: 0,
    bytesToClient: 0,
    lastActivity: 0,
    idleMs: 0,
    replayBytes: 0,
    unansweredBytes: 0,
    serverBytesSinceRequest: 0,
    replayable: false,
    answered: true,
    responseStarted: false,
    turns: 0,
    failovers: 0,
    replayedBytes: 0,
    replayOverflows: 0,
    pipes: 0,
    pendingToServer: 0,
    pendingToClient: 0,
    clientEof: false,
    serverEof: false,
    serverEofHeld: false,
    finSentToServer: false,
    finSentToClient: false,
    serverDown: false,
    paused: false,
    closed: false,
    serverFirst: false,
    clientFirst: false,
    handing: false,
    partialMs: 0,
    thread: 0,
  }
}

function fillStats(d: Float64Array, o: PlaneStats): PlaneStats {
  const flags = d[ST.flags]!
  const unanswered = d[ST.unanswered]!
  const serverSince = d[ST.serverSinceReq]!
  o.bytesFromClient = d[ST.fromClient]!
  o.bytesToServer = d[ST.toServer]!
  o.bytesFromServer = d[ST.fromServer]!
  o.bytesToClient = d[ST.toClient]!
  o.lastActivity = d[ST.lastActivity]!
  o.idleMs = d[ST.idleMs]!
  o.replayBytes = d[ST.replayBytes]!
  o.unansweredBytes = unanswered
  o.serverBytesSinceRequest = serverSince
  o.replayable = d[ST.replayable] === 1
  o.answered = unanswered === 0
  o.responseStarted = serverSince > 0
  o.turns = d[ST.turns]!
  o.failovers = d[ST.failovers]!
  o.replayedBytes = d[ST.replayed]!
  o.replayOverflows = d[ST.overflows]!
  o.pipes = d[ST.pipes]!
  o.pendingToServer = d[ST.c2sPending]!
  o.pendingToClient = d[ST.s2cPending]!
  o.clientEof = (flags & FL.clientEof) !== 0
  o.serverEof = (flags & FL.serverEof) !== 0
  o.serverEofHeld = (flags & FL.serverEofHeld) !== 0
  o.finSentToServer = (flags & FL.serverFinSent) !== 0
  o.finSentToClient = (flags & FL.clientFinSent) !== 0
  o.serverDown = (flags & FL.serverDown) !== 0
  o.paused = (flags & FL.paused) !== 0
  o.closed = (flags & FL.closed) !== 0
  o.serverFirst = (flags & FL.serverFirst) !== 0
  o.clientFirst = (flags & FL.clientFirst) !== 0
  o.handing = (flags & FL.handing) !== 0
  o.partialMs = d[ST.partialMs]!
  o.thread = d[ST.thread]!
  return o
}

function errnoCode(errno: number): string {
  try {
    return getSystemErrorName(-errno)
  } catch {
    return `E${errno}`
  }
}

/**
 * The descriptor of a connected socket that has nothing buffered in Node: bytes queued for writing
 * or read and not consumed (server side) would be lost once the plane takes over.
 */
function descriptorOf(socket: Socket | number, side: 'client' | 'server'): number {
  if (typeof socket === 'number') return socket
  if (socket.destroyed || socket.connecting)
    throw new NativePlaneError(
      'ERR_NATIVE_PLANE_SOCKET',
      `the ${side} socket is ${socket.destroyed ? 'destroyed' : 'still connecting'}`
    )
  if (socket.writableLength > 0)
    throw new NativePlaneError(
      'ERR_NATIVE_PLANE_BUFFERED',
      `the ${side} socket has ${socket.writableLength} bytes queued for writing; wait for 'drain'`
    )
  if (side === 'server' && socket.readableLength > 0)
    throw new NativePlaneError(
      'ERR_NATIVE_PLANE_BUFFERED',
      `the server socket has ${socket.readableLength} bytes read and not consumed`
    )
  // net.Socket keeps its libuv handle in `_handle`; on Unix its `fd` getter is the descriptor.
  const fd = (socket as unknown as { _handle?: { fd?: number } | null })._handle?.fd
  if (typeof fd !== 'number' || fd < 0)
    throw new NativePlaneError(
      'ERR_NATIVE_PLANE_SOCKET',
      `the ${side} socket has no file descriptor (not a TCP socket?)`
    )
  return fd
}

let loaded: NativePlaneLoad | undefined
/** One Plane per loaded binding: a second one would take over the binding's single callback. */
const planes = new WeakMap<Binding, Plane>()

/**
 * The native plane, or why not. Decided once per thread; later calls return the same answer.
 * `BATON_NATIVE=0` turns it off; `BATON_NATIVE_PATH` names another .node file (packagers).
 */
export function loadNativePlane(): NativePlaneLoad {
  loaded ??= probeNativePlane({
    file: process.env.BATON_NATIVE_PATH || ADDON_PATH,
    disabled: process.env.BATON_NATIVE === '0',
  })
  return loaded
}

/** The uncached probe behind loadNativePlane (tests give it missing or broken files). */
export function probeNativePlane(
  options: { file?: string; disabled?: boolean; platform?: string } = {}
): NativePlaneLoad {
  const { file = ADDON_PATH, disabled = false, platform = process.platform } = options
  if (platform !== 'linux')
    return { plane: undefined, reason: `splice(2) is Linux-only; this platform is ${platform}` }
  if (disabled) return { plane: undefined, reason: 'turned off with BATON_NATIVE=0' }
  let binding: Binding
  try {
    binding = createRequire(import.meta.url)(file) as Binding
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    const missing =
      e.code === 'MODULE_NOT_FOUND' || /cannot open shared object file: No such file/i.test(e.message)
    return {
      plane: undefined,
      reason: missing
        ? `the addon is not built (${file.startsWith(ROOT + path.sep) ? path.relative(ROOT, file) : file} missing; npm run build:native)`
        : `the addon failed to load: ${e.message.split('\n')[0]}`,
    }
  }
  if (binding.version !== ABI_VERSION)
    return {
      plane: undefined,
      reason: `the addon is version ${String(binding.version)}, this code expects ${ABI_VERSION} (npm run build:native)`,
    }
  let plane = planes.get(binding)
  if (plane === undefined) {
    plane = new Plane(binding)
    planes.set(binding, plane)
  }
  return { plane, reason: undefined }
}
