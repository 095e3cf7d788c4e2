/**
 * A backend's warm pool: `idle` established, unused server connections kept ready so that a new
 * session or a failover hand-off skips the TCP handshake.
 *
 * A pooled connection is dropped on any data (a server that speaks first cannot be pooled), on
 * close or error, and once older than `maxAge`; the pool refills in the background, backing off
 * (100 ms doubling to 10 s) while the backend refuses or drops them. `take()` checks a connection
 * before handing it out.
 */
import net, { type Socket } from 'node:net'

const kPool = Symbol('baton.pool')
type PooledSocket = Socket & { [kPool]?: WarmPool; bornAt?: number }

const BACKOFF_MIN = 100
const BACKOFF_MAX = 10_000

export interface PoolOptions {
  readonly idle: number
  readonly maxAge: number
}

export interface PoolTarget {
  readonly host: string
  readonly port: number
  /** A unix-domain backend's socket path (host and port then unused). */
  readonly path?: string | undefined
}

export class WarmPool {
  private readonly idle: Socket[] = []
  private connecting = 0
  private backoff = 0
  private timer: NodeJS.Timeout | undefined
  private due = 0
  private stopped = false
  /** Connections handed out, connections dropped (data, close, error, age). */
  taken = 0
  dropped = 0

  constructor(
    private readonly target: PoolTarget,
    private readonly options: PoolOptions
  ) {}

  get size(): number {
    return this.idle.length
  }

  start(): void {
    this.stopped = false
    this.fill()
  }

  /** Close every pooled connection and stop refilling (backend down, listener closing). */
  stop(): void {
    this.stopped = true
    clearTimeout(this.timer)
    this.timer = undefined
    for (const s of this.idle.splice(0)) release(s).destroy()
  }

  /** An established, checked idle connection with the pool's listeners removed, or undefined. */
  take(now = Date.now()): Socket | undefined {
    while (this.idle.length > 0) {
      const s = this.idle.shift() as PooledSocket
      release(s)
      if (
        s.destroyed ||
        s.readyState !== 'open' ||
        s.readableLength > 0 ||
        now - (s.bornAt ?? 0) > this.options.maxAge
      ) {
        this.dropped++
        s.destroy()
        continue
      }
      this.taken++
      this.schedule(0)
      return s
    }
    this.schedule(0)
    return undefined
  }

  /** Take back a connection left at a clean boundary (`pool.reuse`). False when the pool is full. */
  give(socket: Socket): boolean {
    if (this.stopped || this.idle.length >= this.options.idle || socket.destroyed) return false
    this.adopt(socket as PooledSocket)
    return true
  }

  /** Run `fill()` after `delay`, or sooner if a fill is already due sooner (refills beat ageing). */
  private schedule(delay: number): void {
    if (this.stopped) return
    const due = Date.now() + delay
    if (this.timer !== undefined) {
      if (this.due <= due) return
      clearTimeout(this.timer)
    }
    this.due = due
    this.timer = setTimeout(onFillTimer, delay, this)
    this.timer.unref()
  }

  /** @internal */
  fill(): void {
    this.timer = undefined
    if (this.stopped) return
    const now = Date.now()
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const s = this.idle[i] as PooledSocket
      if (now - (s.bornAt ?? 0) > this.options.maxAge) {
        this.idle.splice(i, 1)
        release(s).destroy()
        this.dropped++
      }
    }
    while (this.idle.length + this.connecting < this.options.idle) {
      this.connecting++
      const s = net.connect({
        host: this.target.host,
        port: this.target.port,
        path: this.target.path,
        allowHalfOpen: true,
        noDelay: true,
      }) as PooledSocket
      s[kPool] = this
      s.once('connect', onPoolConnect)
      s.on('error', onPoolError)
      s.on('close', onPoolClose)
    }
    // Age out connections before they go stale, even when nobody takes them.
    if (this.idle.length > 0) this.schedule(Math.max(50, this.options.maxAge / 2))
  }

  /** @internal */
  connected(s: PooledSocket): void {
    this.connecting--
    this.backoff = 0
    s.bornAt = Date.now()
    this.adopt(release(s))
    this.schedule(Math.max(50, this.options.maxAge / 2)) // age it out even if nobody takes it
  }

  private adopt(s: PooledSocket): void {
    s[kPool] = this
    s.bornAt ??= Date.now()
    s.on('data', onPoolData)
    s.on('end', onPoolEnd)
    s.on('error', onPoolError)
    s.on('close', onPoolClose)
    if (this.stopped) {
      release(s).destroy()
      return
    }
    this.idle.push(s)
  }

  /** @internal A pooled or connecting socket failed or spoke: drop it, refill with back-off. */
  lost(s: PooledSocket, failed: boolean): void {
    const i = this.idle.indexOf(s)
    if (i >= 0) this.idle.splice(i, 1)
    else if (s.readyState !== 'open' || s.bornAt === undefined)
      this.connecting = Math.max(0, this.connecting - 1)
    release(s).destroy()
    this.dropped++
    if (failed) this.backoff = this.backoff === 0 ? BACKOFF_MIN : Math.min(BACKOFF_MAX, this.backoff * 2)
    this.schedule(this.backoff)
  }
}

function release(s: PooledSocket): PooledSocket {
  delete s[kPool]
  s.off('connect', onPoolConnect)
  s.off('data', onPoolData)
  s.off('end', onPoolEnd)
  s.off('error', onPoolError)
  s.off('close', onPoolClose)
  return s
}

function onFillTimer(pool: WarmPool): void {
  pool.fill()
}

function onPoolConnect(this: PooledSocket): void {
  this[kPool]?.connected(this)
}

function onPoolData(this: PooledSocket): void {
  // A pooled connection must be silent: a server that speaks unprompted cannot be pooled.
  this[kPool]?.lost(this, true)
}

function onPoolEnd(this: PooledSocket): void {
  this[kPool]?.lost(this, false)
}

function onPoolError(this: PooledSocket): void {
  this[kPool]?.lost(this, true)
}

function onPoolClose(this: PooledSocket): void {
  this[kPool]?.lost(this, false)
}
