/**
 * In-process backends that misbehave on purpose, each on 127.0.0.1 port 0 (never a host outside
 * loopback). Every one is an `Endpoint`: where it listens, how many connections it holds now and
 * has accepted, and `close()`, which destroys its connections and stops listening.
 *
 *   echoServer()        sends back what it reads; ends when the client ends
 *   refusedPort()       a port that was bound and closed again: connects get ECONNREFUSED
 *   resetServer(...)    resets the connection (RST) after reading n bytes, or on demand
 *   hangServer()        accepts, then never reads or writes
 *   sinkServer()        reads and hashes everything; can be paused to act as a slow reader
 *   streamServer(data)  writes `data` as fast as the kernel takes it (honouring write() === false)
 *                       while hashing what it reads: the two halves of a bulk transfer
 *   halfCloseServer(r)  writes `r`, ends its write side at once, and keeps reading
 *   replyOnEndServer(f) reads until the client's FIN, then answers f(bytes) and ends
 *   blackholeServer()   a listener whose accept queue is full, so a connect hangs (see there)
 */
import { createHash } from 'node:crypto'
import { EventEmitter } from 'node:events'
import net, { type Socket } from 'node:net'
import { Worker } from 'node:worker_threads'
import { once, WAIT_MS, within } from './wait.js'

export const HOST = '127.0.0.1'

export interface Endpoint {
  readonly name: string
  readonly host: string
  readonly port: number
  /** A unix-domain socket's path, for a server that listens on one (`listenAt`). */
  readonly path?: string | undefined
  /** Connections open now. */
  readonly connections: number
  /** Connections accepted since start. */
  readonly accepted: number
  close(): Promise<void>
}

export interface Digest {
  bytes: number
  sha256: string
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

/**
 * A listening server that keeps its sockets in a set. Events: `connection` (socket),
 * `disconnect` (socket), and what each kind adds (`digest`, `received`, `reset`, `blocked`).
 */
export class TestServer extends EventEmitter implements Endpoint {
  readonly name: string
  host = HOST
  port = 0
  path: string | undefined = undefined
  accepted = 0
  readonly sockets = new Set<Socket>()
  private readonly server: net.Server
  private closing: Promise<void> | undefined

  constructor(name: string, handler: (socket: Socket) => void, options: net.ServerOpts = {}) {
    super()
    this.name = name
    this.server = net.createServer({ allowHalfOpen: true, ...options }, (socket) => {
      this.accepted++
      this.sockets.add(socket)
      // Resets and aborts are what these servers are for; a test observes them through `close`.
      socket.on('error', ignore)
      socket.once('close', () => {
        this.sockets.delete(socket)
        this.emit('disconnect', socket)
      })
      handler(socket)
      this.emit('connection', socket)
    })
  }

  get connections(): number {
    return this.sockets.size
  }

  async listen(port = 0): Promise<this> {
    this.closing = undefined // listening again after close(): a restart
    this.server.listen({ host: HOST, port })
    await within(once(this.server, 'listening'), `${this.name} listening`)
    this.port = (this.server.address() as net.AddressInfo).port
    return this
  }

  /** Listen on a unix-domain socket (`{ path }`) or another loopback address (`{ host: '::1' }`). */
  async listenAt(where: { path: string } | { host: string; port?: number }): Promise<this> {
    this.closing = undefined
    this.server.listen('path' in where ? { path: where.path } : { host: where.host, port: where.port ?? 0 })
    await within(once(this.server, 'listening'), `${this.name} listening`)
    if ('path' in where) {
      this.path = where.path
      this.host = ''
      this.port = 0
    } else {
      this.host = where.host
      this.port = (this.server.address() as net.AddressInfo).port
    }
    return this
  }

  /**
   * Stop accepting; the connections it has carry on. (The listening socket closes at once; the
   * `close` event waits for the last connection, which is why `close()` destroys them.)
   */
  stopAccepting(): void {
    this.server.close()
  }

  /** Destroy every connection, stop listening; resolves once the server has closed. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      for (const s of this.sockets) s.destroy()
      if (!this.server.listening) return resolve()
      this.server.close(() => resolve())
    })
    return this.closing
  }
}

function ignore(): void {}

/** Sends back what it reads, with backpressure; ends its side when the client ends. */
export function echoServer(name = 'echo', port = 0): Promise<TestServer> {
  return new TestServer(name, (socket) => socket.pipe(socket)).listen(port)
}

/** A port on loopback where nothing listens: bound, then closed again. Connects are refused. */
export async function refusedPort(name = 'refused'): Promise<Endpoint> {
  const server = await new TestServer(name, ignore).listen()
  await server.close()
  return { name, host: HOST, port: server.port, connections: 0, accepted: 0, close: async () => {} }
}

/**
 * Resets connections with an RST (`socket.resetAndDestroy()`), emitting `reset`: each one once it
 * has read `afterRead` bytes, or all of them when `resetAll()` is called. `greeting` is written on
 * connect (reset them with `resetAll()` once the client has seen it: a reset sent right after
 * accept can reach the connecting side before its connect completes, and is then a connect error).
 */
export class ResetServer extends TestServer {
  constructor(options: { afterRead?: number; greeting?: Buffer }, name = 'reset') {
    super(name, (socket) => {
      if (options.greeting !== undefined) socket.write(options.greeting)
      const limit = options.afterRead
      if (limit === undefined) return
      let read = 0
      socket.on('data', (chunk: Buffer) => {
        read += chunk.length
        if (read >= limit) this.reset(socket)
      })
    })
  }

  resetAll(): void {
    for (const s of this.sockets) this.reset(s)
  }

  private reset(socket: Socket): void {
    if (socket.destroyed) return
    socket.resetAndDestroy()
    this.emit('reset', socket)
  }
}

export function resetServer(
  options: { afterRead?: number; greeting?: Buffer },
  name = 'reset'
): Promise<ResetServer> {
  return new ResetServer(options, name).listen()
}

/** Accepts and then does nothing at all: never reads (so the kernel buffers fill), never writes. */
export function hangServer(name = 'hang'): Promise<TestServer> {
  return new TestServer(name, ignore, { pauseOnConnect: true }).listen()
}

/**
 * Reads and hashes everything; on the client's FIN emits `digest` ({ bytes, sha256 }) and ends.
 * `pause()` stops reading on every connection (and new ones start paused) until `resume()`.
 */
export class SinkServer extends TestServer {
  /** Bytes read so far, over all connections. */
  received = 0
  private paused = false

  constructor(name = 'sink') {
    super(name, (socket) => {
      const hash = createHash('sha256')
      let bytes = 0
      if (this.paused) socket.pause()
      socket.on('data', (chunk: Buffer) => {
        hash.update(chunk)
        bytes += chunk.length
        this.received += chunk.length
        if (this.paused) socket.pause()
      })
      socket.on('end', () => {
        this.emit('digest', { bytes, sha256: hash.digest('hex') } satisfies Digest)
        socket.end()
      })
    })
  }

  pause(): void {
    this.paused = true
    for (const s of this.sockets) s.pause()
  }

  resume(): void {
    this.paused = false
    for (const s of this.sockets) s.resume()
  }
}

export function sinkServer(name = 'sink'): Promise<SinkServer> {
  return new SinkServer(name).listen()
}

/**
 * On each connection, writes `payload` in `chunk`-sized slices as fast as the kernel takes them,
 * waiting for `drain` whenever `write()` returns false (emitting `blocked` each time), then ends its
 * write side (at once, or with `endAfterPeer` only once the client has ended its own). Meanwhile it
 * hashes what it reads and emits `digest` on the client's FIN.
 */
export interface StreamOptions {
  chunk?: number
  endAfterPeer?: boolean
}

export class StreamServer extends TestServer {
  /** Of the latest connection: payload bytes handed to `write()` so far. */
  offered = 0
  /** Of the latest connection: true while waiting for `drain` after `write()` returned false. */
  waiting = false
  /** Times `write()` returned false, over all connections. */
  blockedCount = 0
  private latest: Socket | undefined

  constructor(payload: Buffer, options: StreamOptions = {}, name = 'stream') {
    const { chunk = 64 * 1024, endAfterPeer = false } = options
    super(name, (socket) => {
      this.latest = socket
      this.offered = 0
      const hash = createHash('sha256')
      let bytes = 0
      let peerEnded = false
      let written = false
      socket.on('data', (c: Buffer) => {
        hash.update(c)
        bytes += c.length
      })
      socket.on('end', () => {
        peerEnded = true
        this.emit('digest', { bytes, sha256: hash.digest('hex') } satisfies Digest)
        if (written) socket.end()
      })
      let offset = 0
      const pump = (): void => {
        this.waiting = false
        while (offset < payload.length && !socket.destroyed) {
          const slice = payload.subarray(offset, offset + chunk)
          offset += slice.length
          if (socket === this.latest) this.offered = offset
          if (!socket.write(slice)) {
            this.waiting = true
            this.blockedCount++
            this.emit('blocked', socket)
            socket.once('drain', pump)
            return
          }
        }
        written = true
        if (!socket.destroyed && (peerEnded || !endAfterPeer)) socket.end()
      }
      pump()
    })
  }

  /** Of the latest connection: payload bytes the kernel has taken (offered minus Node's queue). */
  get flushed(): number {
    return this.offered - (this.latest?.writableLength ?? 0)
  }
}

export function streamServer(
  payload: Buffer,
  options: StreamOptions = {},
  name = 'stream'
): Promise<StreamServer> {
  return new StreamServer(payload, options, name).listen()
}

/**
 * Writes `reply` and ends its write side at once, then keeps reading; on the client's FIN emits
 * `received` (every byte read on that connection) and closes.
 */
export function halfCloseServer(reply: Buffer, name = 'half-close'): Promise<TestServer> {
  const server: TestServer = new TestServer(name, (socket) => {
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('end', () => {
      server.emit('received', Buffer.concat(chunks))
      socket.destroy()
    })
    socket.end(reply)
  })
  return server.listen()
}

/** Reads until the client's FIN, then writes `answer(bytes read)` and ends. */
export function replyOnEndServer(
  answer: (received: Buffer) => Buffer,
  name = 'reply-on-end'
): Promise<TestServer> {
  return new TestServer(name, (socket) => {
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('end', () => socket.end(answer(Buffer.concat(chunks))))
  }).listen()
}

/**
 * A loopback port where `connect()` neither succeeds nor fails: it hangs, for connect timeouts.
 *
 * Linux drops a SYN when the listener's accept queue is full (`sk_acceptq_is_full`), and the
 * client just retransmits it (after 1 s, 3 s, ...). Node accepts every connection as soon as it can,
 * so the listener lives in a worker thread whose event loop is parked in `Atomics.wait()` right
 * after `listen()` and so never calls accept(). With `backlog: 1` the queue holds two connections;
 * two filler connections fill it, and from then on every connect hangs until its own timeout.
 * (Verified on Linux 6.x: the third connect stays pending; `blackholeServer()` checks the two
 * fillers connected, and the connect-timeout tests check the time the failure took.)
 */
export class BlackholeServer implements Endpoint {
  readonly name: string
  readonly host = HOST
  readonly connections = 0
  readonly accepted = 0
  port = 0
  private readonly worker: Worker
  private readonly flag = new Int32Array(new SharedArrayBuffer(4))
  private readonly fillers: Socket[] = []
  private closing: Promise<void> | undefined

  constructor(name = 'blackhole') {
    this.name = name
    this.worker = new Worker(BLACKHOLE_WORKER, { eval: true, workerData: this.flag, execArgv: [] })
  }

  async start(): Promise<this> {
    const [port] = await within(once<[number]>(this.worker, 'message'), 'blackhole worker listening')
    this.port = port
    for (let i = 0; i < BLACKHOLE_BACKLOG + 1; i++) {
      const s = net.connect({ host: HOST, port })
      s.on('error', ignore)
      this.fillers.push(s)
      await within(once(s, 'connect'), `blackhole filler connection ${i + 1}`, 2000)
    }
    return this
  }

  /** Wake the worker so it closes its listener and exits, and drop the fillers. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const s of this.fillers) s.destroy()
      Atomics.store(this.flag, 0, 1)
      Atomics.notify(this.flag, 0)
      await within(once(this.worker, 'exit'), 'blackhole worker exit', WAIT_MS).catch(() =>
        this.worker.terminate()
      )
    })()
    return this.closing
  }
}

const BLACKHOLE_BACKLOG = 1

// Plain CommonJS so the worker needs no TypeScript loader (execArgv is emptied).
const BLACKHOLE_WORKER = `
const { parentPort, workerData } = require('node:worker_threads')
const net = require('node:net')
const server = net.createServer()
server.listen({ host: '${HOST}', port: 0, backlog: ${BLACKHOLE_BACKLOG} }, () => {
  parentPort.postMessage(server.address().port)
  Atomics.wait(workerData, 0, 0) // parked: this thread never accepts
  server.close()
  process.exit(0)
})
`

export function blackholeServer(name = 'blackhole'): Promise<BlackholeServer> {
  return new BlackholeServer(name).start()
}
