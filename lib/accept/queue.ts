/**
 * The listener's queue (HAProxy's server queue with `timeout queue`): when every backend that could
 * take a new session is full (`maxConnections`), a new client waits, first come first served, for
 * up to `queue.timeout` instead of being closed at once. A session of the listener that ends frees
 * a slot and the oldest waiting client is given another pick; one that waits past the timeout is
 * closed and counted (`queue-timeout`), as is one that finds the queue at `queue.max` (`queue-full`).
 * Only a session's first pick queues: a failover never waits (its client is mid-request).
 *
 *   enqueue ──► [ s1 | s2 | s3 ] ──► retry(): s1.connect() when a session ends
 *                 └─ one timer, for the head (all wait the same timeout, so the head expires first)
 *
 * Clients that leave while waiting are skipped when they reach the head.
 */
import type { Backend } from '../backend.js'

export interface Queued {
  /** Still waiting for its first backend (not closed meanwhile). */
  readonly waiting: boolean
  /** Pick again (it may queue again, at the head). */
  retry(): void
  /** Waited too long, or the queue is full: close it with `reason`. */
  reject(reason: string): void
}

export class SessionQueue {
  private readonly items: { s: Queued; deadline: number }[] = []
  private timer: NodeJS.Timeout | undefined = undefined
  private retrying = false

  /** Settings may change on reload; waiting clients keep their deadlines. */
  constructor(
    public timeout: number,
    public max: number
  ) {}

  get length(): number {
    return this.items.length
  }

  /**
   * Queue `s` when a backend is only full (not down, not drained): there, a slot will free up.
   * Returns false when it should be closed at once (no backend is merely full).
   */
  offer(s: Queued, backends: readonly Backend[]): boolean {
    if (!backends.some(waitable)) return false
    if (this.retrying) {
      // Re-queued during retry(): it keeps its place at the head.
      this.items.unshift({ s, deadline: this.headDeadline ?? Date.now() + this.timeout })
      return true
    }
    if (this.items.length >= this.max) {
      s.reject('queue-full')
      return true
    }
    this.items.push({ s, deadline: Date.now() + this.timeout })
    this.arm()
    return true
  }

  private headDeadline: number | undefined

  /** A slot may have freed: the oldest waiting client picks again. */
  retry(): void {
    if (this.retrying) return // a session closed while the head picked again: it is handled
    while (this.items.length > 0) {
      const head = this.items.shift()!
      if (!head.s.waiting) continue
      this.retrying = true
      this.headDeadline = head.deadline
      try {
        head.s.retry()
      } finally {
        this.retrying = false
        this.headDeadline = undefined
      }
      break
    }
    this.arm()
  }

  private arm(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    const head = this.items[0]
    if (head === undefined) return
    this.timer = setTimeout(onQueueTimer, Math.max(0, head.deadline - Date.now()), this)
    this.timer.unref()
  }

  /** @internal Close every client whose wait is over. */
  expire(): void {
    const now = Date.now()
    while (this.items.length > 0 && this.items[0]!.deadline <= now) {
      const { s } = this.items.shift()!
      if (s.waiting) s.reject('queue-timeout')
    }
    this.arm()
  }

  /** The queue is turned off (reload): every waiting client picks once more, now, and is not queued again. */
  flush(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    for (const { s } of this.items.splice(0)) if (s.waiting) s.reject('queue-off')
  }
}

/** A backend that would take sessions again once one of its own ends. */
function waitable(b: Backend): boolean {
  return b.isFull() && b.admin === 'ready' && b.checkedUp && !(b.coolingUntil !== 0 && b.isDown())
}

function onQueueTimer(q: SessionQueue): void {
  q.expire()
}
