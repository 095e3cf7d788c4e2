/**
 * Test clients. A `Client` records how its socket ended (error code, FIN) from the moment it is
 * created, so a reset can never crash the test process, and it does not read until asked: a client
 * that is never told to read is a slow reader.
 */
import { createHash } from 'node:crypto'
import net, { type Socket } from 'node:net'
import type { Digest } from './servers.js'
import { HOST } from './servers.js'
import { WAIT_MS, within } from './wait.js'

export interface ClientEnd {
  /** The socket's error code (ECONNRESET, ECONNREFUSED...), if it had one. */
  error: string | undefined
  /** Whether a FIN arrived before the close. */
  ended: boolean
}

export class Client {
  readonly socket: Socket
  error: string | undefined
  ended = false
  /** Resolves when the socket has closed, however that happened. */
  readonly closed: Promise<ClientEnd>

  constructor(port: number, options: { allowHalfOpen?: boolean } = {}) {
    this.socket = net.connect({ host: HOST, port, allowHalfOpen: options.allowHalfOpen ?? false })
    this.socket.on('error', (err: NodeJS.ErrnoException) => {
      this.error = err.code ?? err.message
    })
    this.socket.once('end', () => {
      this.ended = true
    })
    this.closed = new Promise((resolve) => {
      this.socket.once('close', () => resolve({ error: this.error, ended: this.ended }))
    })
  }

  get isClosed(): boolean {
    return this.socket.closed
  }

  /** Resolves on connect; rejects if the socket closes first or nothing happens in time. */
  async connected(): Promise<this> {
    if (!this.socket.connecting) {
      if (this.socket.destroyed) throw new Error(`client closed before connecting (${this.error})`)
      return this
    }
    const socket = this.socket
    await within(
      new Promise<void>((resolve, reject) => {
        const onConnect = (): void => {
          socket.off('close', onClose)
          resolve()
        }
        const onClose = (): void => {
          socket.off('connect', onConnect)
          reject(new Error(`client closed before connecting (${this.error ?? 'no error'})`))
        }
        socket.once('connect', onConnect)
        socket.once('close', onClose)
      }),
      'client connect'
    )
    return this
  }

  /** Every byte until the FIN (or close). */
  async readAll(timeoutMs = WAIT_MS): Promise<Buffer> {
    const chunks: Buffer[] = []
    this.socket.on('data', (c: Buffer) => chunks.push(c))
    this.socket.resume()
    await within(this.closedOrEnded(), 'client read to end', timeoutMs)
    return Buffer.concat(chunks)
  }

  /** Hash of every byte until the FIN, without keeping them. */
  async digest(timeoutMs = WAIT_MS): Promise<Digest> {
    const hash = createHash('sha256')
    let bytes = 0
    this.socket.on('data', (c: Buffer) => {
      hash.update(c)
      bytes += c.length
    })
    this.socket.resume()
    await within(this.closedOrEnded(), 'client digest to end', timeoutMs)
    return { bytes, sha256: hash.digest('hex') }
  }

  /** Exactly `n` bytes (the socket stays open). */
  read(n: number, timeoutMs = WAIT_MS): Promise<Buffer> {
    return within(
      new Promise<Buffer>((resolve, reject) => {
        const chunks: Buffer[] = []
        let got = 0
        const onData = (c: Buffer): void => {
          chunks.push(c)
          got += c.length
          if (got < n) return
          done()
          const all = Buffer.concat(chunks)
          // More than asked for: give the rest back so the next read sees it.
          if (all.length > n) this.socket.unshift(all.subarray(n))
          resolve(all.subarray(0, n))
        }
        const onClose = (): void => {
          done()
          reject(new Error(`socket closed after ${got} of ${n} bytes (${this.error ?? 'no error'})`))
        }
        const done = (): void => {
          this.socket.off('data', onData)
          this.socket.off('close', onClose)
          this.socket.pause()
        }
        this.socket.on('data', onData)
        this.socket.once('close', onClose)
        this.socket.resume() // a 'data' listener alone does not restart a paused socket
      }),
      `client read of ${n} bytes`,
      timeoutMs
    )
  }

  /** Write `data` and read back as many bytes: one echo round trip. */
  async roundTrip(data: Buffer, timeoutMs = WAIT_MS): Promise<Buffer> {
    const reply = this.read(data.length, timeoutMs)
    this.socket.write(data)
    return reply
  }

  /**
   * Write `data`, honouring backpressure; resolves once Node has handed all of it to the kernel,
   * rejects if the socket closes first (a client that is not `allowHalfOpen` closes on the peer's FIN).
   */
  write(data: Buffer, timeoutMs = WAIT_MS, chunk = 64 * 1024): Promise<void> {
    const socket = this.socket
    return within(
      new Promise<void>((resolve, reject) => {
        let offset = 0
        const onClose = (): void => {
          socket.off('drain', pump)
          reject(new Error(`client closed after writing ${offset} of ${data.length} bytes`))
        }
        const pump = (): void => {
          while (offset < data.length) {
            if (socket.destroyed || socket.writableEnded) return onClose()
            const slice = data.subarray(offset, offset + chunk)
            offset += slice.length
            if (!socket.write(slice)) {
              socket.once('drain', pump)
              return
            }
          }
          socket.off('close', onClose)
          resolve()
        }
        socket.once('close', onClose)
        pump()
      }),
      `client write of ${data.length} bytes`,
      timeoutMs
    )
  }

  destroy(): void {
    this.socket.destroy()
  }

  /** The FIN or the close, whichever comes first (the caller bounds the wait). */
  private closedOrEnded(): Promise<unknown> {
    if (this.ended || this.socket.closed) return Promise.resolve()
    return Promise.race([new Promise((resolve) => this.socket.once('end', resolve)), this.closed])
  }
}

/** A connected client. */
export function connectClient(port: number, options: { allowHalfOpen?: boolean } = {}): Promise<Client> {
  return new Client(port, options).connected()
}

/** A fresh random-looking but reproducible payload (cheaper than randomBytes for small sizes). */
export function pattern(size: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe(size)
  let x = seed >>> 0 || 1
  for (let i = 0; i < size; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    b[i] = x & 0xff
  }
  return b
}
