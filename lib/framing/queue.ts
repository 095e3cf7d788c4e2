/**
 * The requests a framer has seen whole and not yet seen answered, oldest first: each one's end offset
 * (absolute, in client bytes) and its flags. Shared by the http1, resp and memcached framers; the
 * flag bits are theirs.
 *
 *   oldest: firstEnd / firstFlags          (fields: a client that waits for each answer needs no more)
 *   later:  ends[] / flags[], a ring that doubles when full, allocated at the first pipelined request
 *
 * A session that is idle, or that sends one request at a time, holds no array (issue 11, idle memory).
 */

/** The ring of a queue that never had two requests at once (never written to). */
const NONE: number[] = []

export class RequestQueue {
  count = 0
  /** Queued requests without `safeFlag` (always 0 when no safe flag is given). */
  unsafe = 0
  private firstEnd = 0
  private firstFlags = 0
  /** The requests after the oldest, from `head`: `count - 1` of them. */
  private ends: number[] = NONE
  private flags: number[] = NONE
  private head = 0
  private readonly safeFlag: number
  private readonly capacity: number

  /** `safeFlag`: the flag bit that marks a request safe to re-send, to keep `unsafe`; 0 for none. */
  constructor(safeFlag = 0, capacity = 8) {
    this.safeFlag = safeFlag
    this.capacity = capacity
  }

  push(end: number, flags: number): void {
    if (this.count === 0) {
      this.firstEnd = end
      this.firstFlags = flags
    } else {
      const rest = this.count - 1
      if (rest === this.ends.length) this.grow()
      const at = (this.head + rest) % this.ends.length
      this.ends[at] = end
      this.flags[at] = flags
    }
    this.count++
    if (this.safeFlag !== 0 && (flags & this.safeFlag) === 0) this.unsafe++
  }

  /** Flags of the oldest. */
  peek(): number {
    return this.firstFlags
  }

  /** Drops the oldest and returns its end offset. */
  shift(): number {
    const end = this.firstEnd
    if (this.safeFlag !== 0 && (this.firstFlags & this.safeFlag) === 0) this.unsafe--
    this.count--
    if (this.count > 0) {
      // The next one moves up from the ring.
      this.firstEnd = this.ends[this.head]!
      this.firstFlags = this.flags[this.head]!
      this.head = (this.head + 1) % this.ends.length
    }
    return end
  }

  /** A request that gets no reply ended at `end`: release it with the last one. */
  extendLast(end: number): void {
    if (this.count <= 1) this.firstEnd = end
    else this.ends[(this.head + this.count - 2) % this.ends.length] = end
  }

  /** Forgets every request and gives the ring back (a framer that stops pairing holds none). */
  clear(): void {
    this.head = 0
    this.count = 0
    this.unsafe = 0
    this.ends = NONE
    this.flags = NONE
  }

  private grow(): void {
    const size = this.ends.length
    const rest = this.count - 1
    const ends = new Array<number>(size === 0 ? this.capacity : size * 2).fill(0)
    const flags = new Array<number>(ends.length).fill(0)
    for (let k = 0; k < rest; k++) {
      ends[k] = this.ends[(this.head + k) % size]!
      flags[k] = this.flags[(this.head + k) % size]!
    }
    this.ends = ends
    this.flags = flags
    this.head = 0
  }
}
