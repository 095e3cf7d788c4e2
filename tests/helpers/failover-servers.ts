/**
 * Backends and clients for the failover tests.
 *
 * Every app server here speaks one small request/response protocol: each message is a frame,
 * a 4-byte big-endian body length then the body, and each request frame gets exactly one response
 * frame, in order. Baton is put in front of them as `length-prefixed` (it sees the frames) or as
 * `opaque` (it sees only turns: the client speaks, then the server). The same servers serve both.
 *
 *   frameServer(opts)      answers every request with frame(answer(body)); can also end, reset or
 *                          go silent after n answers, or send only part of its first answer
 *   closeOnAcceptServer()  accepts, then end()s or destroy()s the connection at once
 *   lateServer()           reads and never answers; `lateMs` after a request it writes LATE_BYTES
 *                          if its socket still takes writes (Baton must have let go of it by then)
 *
 * From ./servers.js: resetServer({ afterRead: 1 }) resets on the first data; refusedPort().
 */
import net, { type Socket } from 'node:net'
import type { Balancer } from '../../lib/balancer.js'
import type { SessionSnapshot } from '../../lib/table.js'
import { HOST, TestServer } from './servers.js'
import { until, within, WAIT_MS } from './wait.js'

export type Protocol = 'opaque' | 'length-prefixed'
export const PROTOCOLS: readonly Protocol[] = ['opaque', 'length-prefixed']

/** How the failed session gets its next server connection: from a warm pool, or a new connect. */
export type Handoff = 'pooled' | 'new'
export const HANDOFFS: readonly Handoff[] = ['pooled', 'new']

/** The listener options for a protocol (4-byte big-endian lengths) and a hand-off kind. */
export function listenerOptions(protocol: Protocol, handoff: Handoff) {
  return {
    protocol,
    ...(protocol === 'length-prefixed' ? { framing: { lengthBytes: 4 as const } } : {}),
    pool: { idle: handoff === 'pooled' ? 2 : 0 },
  }
}

/**
 * Baton let go of a server connection that died between turns, and the client did not notice: the
 * session is open and either waits without a server for the client's next request (the JavaScript
 * plane) or has already moved to another backend (the native plane, which has no event for the
 * client's next bytes and so moves at once).
 */
export function letGoBetweenTurns(live: SessionSnapshot | undefined): boolean {
  return live?.state === 'open' && (live.server === undefined || live.backends.length > 1)
}

/** A frame: 4-byte big-endian body length, then the body. */
export function frame(body: Buffer | string): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : body
  const header = Buffer.allocUnsafe(4)
  header.writeUInt32BE(b.length, 0)
  return Buffer.concat([header, b])
}

/** Splits a byte stream into frame bodies (copies; test code only). */
export class FrameParser {
  private buffered: Buffer = Buffer.alloc(0)

  push(chunk: Buffer): Buffer[] {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk])
    const out: Buffer[] = []
    for (;;) {
      if (this.buffered.length < 4) break
      const len = this.buffered.readUInt32BE(0)
      if (this.buffered.length < 4 + len) break
      out.push(this.buffered.subarray(4, 4 + len))
      this.buffered = this.buffered.subarray(4 + len)
    }
    return out
  }
}

const OK = Buffer.from('ok:')

/** What every well-behaved backend answers to a request body. */
export function okAnswer(body: Buffer): Buffer {
  return Buffer.concat([OK, body])
}

/** The whole response frame a client should get for `body`. */
export function expectedResponse(body: Buffer, answer: (b: Buffer) => Buffer = okAnswer): Buffer {
  return frame(answer(body))
}

/** A recognisable request body: `tag` then filler bytes up to `size`. */
export function body(tag: string, size = 64): Buffer {
  const b = Buffer.alloc(Math.max(size, tag.length), 0x2e) // '.'
  b.write(tag, 0)
  return b
}

export interface FrameServerOptions {
  /** Body of the response to a request body. Default `okAnswer`. */
  answer?: (req: Buffer) => Buffer
  /** After answering this many requests on a connection, end it (FIN). */
  endAfter?: number
  /** After answering this many requests on a connection, reset it (RST) in the same tick. */
  resetAfter?: number
  /** After answering this many requests on a connection, answer no more (emits `silent`). */
  answerLimit?: number
  /**
   * Cut one response: on the first connection that gets a request, the response to its
   * `request`-th request (0-based, default 0) is written only up to `bytes` bytes, in the same write
   * as the whole responses before it; then the connection goes silent and `partial` is emitted with
   * the socket. The test resets it (`resetAll()`) when it wants.
   */
  partial?: { bytes: number; request?: number }
}

/**
 * The app server. Events: `request` (socket, body), `answered` (socket, count on that socket),
 * `silent` (socket), `partial` (socket), `reset` (socket).
 */
export class FrameServer extends TestServer {
  /** Requests read, over every connection. */
  requests = 0
  /** Responses written (whole), over every connection. */
  answers = 0
  /** Request bytes read, over every connection. */
  bytesRead = 0
  private partialDone = false
  /** While frozen, requests are read and counted but not answered. */
  private frozen = false
  /** Unanswered requests per connection that has had at least one request. */
  private readonly unanswered = new Map<Socket, number>()

  constructor(name: string, options: FrameServerOptions = {}) {
    const answer = options.answer ?? okAnswer
    super(name, (socket) => {
      const parser = new FrameParser()
      let answered = 0
      let cutHere = false
      socket.on('data', (chunk: Buffer) => {
        this.bytesRead += chunk.length
        socket.cork()
        for (const req of parser.push(chunk)) {
          if (socket.destroyed) return
          this.requests++
          this.unanswered.set(socket, (this.unanswered.get(socket) ?? 0) + 1)
          this.emit('request', socket, req)
          if (this.frozen) continue
          if (options.answerLimit !== undefined && answered >= options.answerLimit) continue
          if (options.partial !== undefined && !this.partialDone) {
            this.partialDone = true
            cutHere = true
          }
          const response = frame(answer(req))
          if (cutHere && answered === (options.partial?.request ?? 0)) {
            socket.write(response.subarray(0, options.partial!.bytes))
            socket.uncork()
            answered = Infinity // nothing more on this connection
            this.emit('partial', socket)
            return
          }
          socket.write(response)
          this.unanswered.set(socket, this.unanswered.get(socket)! - 1)
          answered++
          this.answers++
          this.emit('answered', socket, answered)
          if (options.answerLimit !== undefined && answered === options.answerLimit)
            this.emit('silent', socket)
          if (options.resetAfter !== undefined && answered === options.resetAfter) {
            socket.uncork()
            this.reset(socket)
            return
          }
          if (options.endAfter !== undefined && answered === options.endAfter) {
            socket.uncork()
            socket.end()
            return
          }
        }
        socket.uncork()
      })
      socket.on('end', () => {
        if (!socket.destroyed) socket.end()
      })
      socket.once('close', () => this.unanswered.delete(socket))
    })
  }

  /** From now on read requests but answer none. */
  freeze(): void {
    this.frozen = true
  }

  /** Connections that have had a request; and how many of them wait for an answer now. */
  inFlight(): { used: number; waiting: number } {
    let waiting = 0
    for (const n of this.unanswered.values()) if (n > 0) waiting++
    return { used: this.unanswered.size, waiting }
  }

  /** Reset (RST) every open connection. */
  resetAll(): void {
    for (const s of this.sockets) this.reset(s)
  }

  /** A crash: reset every connection, then stop listening so that connects are refused. */
  async kill(): Promise<void> {
    this.resetAll()
    await this.close()
  }

  private reset(socket: Socket): void {
    if (socket.destroyed) return
    socket.resetAndDestroy()
    this.emit('reset', socket)
  }
}

export function frameServer(name: string, options: FrameServerOptions = {}): Promise<FrameServer> {
  return new FrameServer(name, options).listen()
}

/** Accepts, then `end()`s (FIN; it still reads, allowHalfOpen) or `destroy()`s the connection at once. */
export function closeOnAcceptServer(
  how: 'end' | 'destroy',
  name = `close-on-accept-${how}`
): Promise<TestServer> {
  return new TestServer(name, (socket) => {
    if (how === 'end') socket.end()
    else socket.destroy()
  }).listen()
}

/** What `lateServer` writes once it is too late. */
export const LATE_BYTES = frame('LATE-LATE-LATE')

/**
 * Reads and never answers; `lateMs` after each connection's first request it writes LATE_BYTES if
 * the socket still takes writes (allowHalfOpen: after Baton's FIN it still does, and the bytes go
 * to a closed socket). Emits `late` ({ written }) at that moment.
 */
export class LateServer extends TestServer {
  constructor(lateMs: number, name = 'late') {
    super(name, (socket) => {
      let timer: NodeJS.Timeout | undefined
      socket.on('data', () => {
        if (timer !== undefined) return
        this.emit('request', socket)
        timer = setTimeout(() => {
          const written = !socket.destroyed && socket.writable
          if (written) socket.write(LATE_BYTES)
          this.emit('late', { written })
        }, lateMs)
      })
    })
  }
}

export function lateServer(lateMs: number, name = 'late'): Promise<LateServer> {
  return new LateServer(lateMs, name).listen()
}

/** Wait (bounded) until the warm pools of the backends at `indices` hold `idle` connections. */
export async function poolsFilled(balancer: Balancer, indices: readonly number[], idle = 2): Promise<void> {
  await until(
    () => {
      const backends = balancer.listenerSnapshots()[0]!.backends
      return indices.every((i) => backends[i]!.pool >= idle)
    },
    `warm pools of backends ${indices.join(', ')} filled`,
    { timeoutMs: WAIT_MS, intervalMs: 5 }
  )
}

/**
 * A raw client that writes as soon as the socket exists (the bytes go with the handshake, before
 * Baton has a server connection) and collects everything it receives.
 */
export class RecordingClient {
  readonly socket: Socket
  readonly chunks: Buffer[] = []
  received = 0
  error: string | undefined
  ended = false
  closedAt: number | undefined
  readonly closed: Promise<void>
  private waiters: { n: number; resolve: () => void }[] = []

  constructor(port: number, first?: Buffer, options: { allowHalfOpen?: boolean } = {}) {
    this.socket = net.connect({ host: HOST, port, allowHalfOpen: options.allowHalfOpen ?? false })
    this.socket.on('error', (err: NodeJS.ErrnoException) => {
      this.error = err.code ?? err.message
    })
    this.socket.on('data', (c: Buffer) => {
      this.chunks.push(c)
      this.received += c.length
      this.waiters = this.waiters.filter((w) => {
        if (this.received < w.n) return true
        w.resolve()
        return false
      })
    })
    this.socket.once('end', () => {
      this.ended = true
    })
    this.closed = new Promise((resolve) => {
      this.socket.once('close', () => {
        this.closedAt = Date.now()
        for (const w of this.waiters) w.resolve()
        this.waiters = []
        resolve()
      })
    })
    if (first !== undefined) this.socket.write(first)
  }

  get data(): Buffer {
    return Buffer.concat(this.chunks)
  }

  /** Resolves once `n` bytes in all have arrived, or the socket closed (bounded). */
  async receivedAtLeast(n: number, what = `${n} bytes`, timeoutMs = WAIT_MS): Promise<Buffer> {
    if (this.received < n && !this.socket.closed) {
      await within(new Promise<void>((resolve) => this.waiters.push({ n, resolve })), what, timeoutMs)
    }
    return this.data
  }

  write(data: Buffer): void {
    this.socket.write(data)
  }

  destroy(): void {
    this.socket.destroy()
  }
}

/** A RecordingClient destroyed when the test ends. */
export function recordingClient(
  t: { teardown(fn: () => unknown): void },
  port: number,
  first?: Buffer,
  options: { allowHalfOpen?: boolean } = {}
): RecordingClient {
  const c = new RecordingClient(port, first, options)
  t.teardown(() => c.destroy())
  return c
}

/** `a` and `b` are the same bytes; on failure, say where they first differ. */
export function sameBytes(a: Buffer, b: Buffer): string | undefined {
  if (a.equals(b)) return undefined
  const n = Math.min(a.length, b.length)
  let i = 0
  while (i < n && a[i] === b[i]) i++
  return `${a.length} vs ${b.length} bytes, first difference at ${i}`
}

/** Known bugs, each shown by a test (or assertions) marked with `knownBug(BUGS.x)`. */
export const BUGS = {
} as const

/**
 * Options that mark a test or an assertion as showing a known bug: `{ todo }` (tap does not run a
 * todo subtest; a todo assertion runs but cannot fail the suite), unless FAILOVER_RUN_TODO is set
 * in the environment, to check a fix: `FAILOVER_RUN_TODO=1 npx tap tests/failover`.
 */
export function knownBug(reason: string): { todo?: string } {
  return process.env.FAILOVER_RUN_TODO !== undefined ? {} : { todo: `bug: ${reason}` }
}
