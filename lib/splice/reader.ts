/**
 * Reading without churning the allocator.
 *
 * A Node socket that emits `data` reads into a fresh 64 KiB buffer every time (malloc, then a
 * realloc down to the bytes read). Freed in bulk by the garbage collector, those blocks let glibc
 * trim the top of its heap and grow it again, so every read faults in fresh pages: under a bulk
 * transfer Baton's process took 367,000 page faults in 3 s and sat mostly idle (issue 11). Node's
 * `onread` (a user buffer the handle reads into, handed to a callback) avoids the allocation, but
 * only `net.connect` takes it as an option; the same mechanism is switched on here for any socket,
 * accepted ones included, through the socket's own `kBuffer`/`kBufferCb`/`kBufferGen` slots and
 * `handle.useUserBuffer()` (what `net.Socket`'s constructor does with `onread`).
 *
 *   read ──► SHARED (64 KiB, one per process) ──copy──► chunk      small reads, idle sockets
 *        └─► own buffer (64 KiB, per busy socket) ────► chunk      reads of BIG bytes or more
 *
 * - A socket starts on the process-wide SHARED buffer. What lands there is copied out (a request of
 *   a few hundred bytes costs a copy from Node's 8 KiB buffer pool, not a 64 KiB allocation), so
 *   SHARED is free again when the callback returns and an idle socket holds no buffer of its own.
 * - A read of BIG bytes or more means a bulk transfer: the socket gets a buffer of its own (from a
 *   small free list), and later reads land there and are passed on as views, without a copy.
 * - The handler says whether it kept the chunk (a write still queued, a replay buffer holding it):
 *   then the socket's buffer belongs to the keeper and the socket takes another; otherwise the same
 *   buffer is read into again. A small read on an own buffer gives it back and returns the socket
 *   to SHARED.
 *
 * Where the slots are missing (another Node version), `data` events are used as before.
 */
import type { Socket } from 'node:net'

/** The handler of a socket's chunks; returns true when it keeps a reference to `chunk`. */
export type ChunkHandler = (socket: Socket, chunk: Buffer) => boolean

const SIZE = 64 * 1024
/** A read at least this big moves the socket onto a buffer of its own. */
const BIG = 16 * 1024
/** Own buffers kept for reuse, at most (1 MiB). */
const FREE_MAX = 16

const kHandler = Symbol('baton.read.handler')
const kOwn = Symbol('baton.read.own')
const kData = Symbol('baton.read.data')

type ReadSocket = Socket & {
  [kHandler]?: ChunkHandler
  [kOwn]?: Buffer | undefined
  [kData]?: (chunk: Buffer) => void
  [key: symbol]: unknown
}

interface Slots {
  buffer: symbol
  callback: symbol
  generator: symbol
}

let slots: Slots | null | undefined
let shared: Buffer | undefined
const free: Buffer[] = []

function slotsOf(socket: Socket): Slots | null {
  if (slots !== undefined) return slots
  const found = new Map<string, symbol>()
  for (const sym of Object.getOwnPropertySymbols(socket)) {
    const d = sym.description
    if (d === 'kBuffer' || d === 'kBufferCb' || d === 'kBufferGen') found.set(d, sym)
  }
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: unknown } })._handle
  slots =
    found.size === 3 && typeof handle?.useUserBuffer === 'function'
      ? { buffer: found.get('kBuffer')!, callback: found.get('kBufferCb')!, generator: found.get('kBufferGen')! }
      : null
  return slots
}

/** Whether sockets read into reused buffers here (false: `data` events, one allocation per read). */
export function reusesBuffers(socket: Socket): boolean {
  return slotsOf(socket) !== null
}

function takeBuffer(): Buffer {
  return free.pop() ?? Buffer.allocUnsafeSlow(SIZE)
}

function giveBuffer(b: Buffer): void {
  if (free.length < FREE_MAX) free.push(b)
}

/**
 * Deliver `socket`'s bytes to `handler`, reading into reused buffers where this Node allows it.
 * Call before the socket's first read (in the `connection` callback, or right after
 * `net.connect()`); a pooled socket that already reads may switch too.
 */
export function readChunks(socket: Socket, handler: ChunkHandler): void {
  const s = socket as ReadSocket
  s[kHandler] = handler
  const sl = slotsOf(socket)
  const handle = (socket as unknown as { _handle?: { useUserBuffer(b: Buffer): void } | null })._handle
  if (sl === null || handle == null) {
    // Once: a socket read first by the accept pipeline, then by its session, is switched twice.
    if (s[kData] === undefined) {
      s[kData] = onData
      socket.on('data', onData)
    }
    return
  }
  shared ??= Buffer.allocUnsafeSlow(SIZE)
  s[sl.buffer] = shared
  s[sl.callback] = onRead
  s[sl.generator] = nextBuffer
  handle.useUserBuffer(shared)
}

/** Stop delivering to the current handler; later bytes go to `handler` (a pool's watcher, say). */
export function redirectChunks(socket: Socket, handler: ChunkHandler): void {
  ;(socket as ReadSocket)[kHandler] = handler
}

/** The socket is done with: give its own buffer back. */
export function releaseReader(socket: Socket): void {
  const s = socket as ReadSocket
  const own = s[kOwn]
  if (own !== undefined) {
    s[kOwn] = undefined
    giveBuffer(own)
  }
}

function onData(this: ReadSocket, chunk: Buffer): void {
  this[kHandler]!(this, chunk)
}

/**
 * The socket whose read was delivered last. Node calls the generator as a plain function (no
 * `this`) right after the callback of the same socket, so the callback leaves its socket here.
 */
let current: ReadSocket | undefined

/** `kBufferCb`: called by Node with `this` the socket, after `n` bytes landed in `buf`. */
function onRead(this: ReadSocket, n: number, buf: Buffer): void {
  current = this
  const handler = this[kHandler]!
  if (buf === shared) {
    // Copy out: SHARED must be free again when this returns.
    const chunk = Buffer.allocUnsafe(n)
    buf.copy(chunk, 0, 0, n)
    if (n >= BIG) this[kOwn] = takeBuffer()
    handler(this, chunk)
    return
  }
  const kept = handler(this, n === buf.length ? buf : buf.subarray(0, n))
  if (kept) {
    // The chunk's buffer now belongs to whoever kept it.
    this[kOwn] = n >= BIG ? takeBuffer() : undefined
  } else if (n < BIG) {
    this[kOwn] = undefined
    giveBuffer(buf)
  }
}

/** `kBufferGen`: the buffer the next read of the socket just read lands in. */
function nextBuffer(): Buffer {
  const s = current
  current = undefined
  return s?.[kOwn] ?? shared!
}
