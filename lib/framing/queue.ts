/**
 * The requests a framer has seen whole and not yet seen answered, oldest first: each one's end offset
 * (absolute, in client bytes) and its flags, in a ring that doubles when full. Shared by the http1
 * and resp framers; the flag bits are theirs.
 */

/** The arrays of a queue that has never held a request (never written to). */
const NONE: number[] = []

export class RequestQueue {
  /** Allocated at the first push: an idle session's framer holds no arrays (issue 11, idle memory). */
  private ends: number[] = NONE
  private flags: number[] = NONE
  private head = 0
  count = 0
  /** Queued requests without `safeFlag` (always 0 when no safe flag is given). */
  unsafe = 0
  private readonly safeFlag: number
  private readonly capacity: number

  /** `safeFlag`: the flag bit that marks a request safe to re-send, to keep `unsafe`; 0 for none. */
  constructor(safeFlag = 0, capacity = 8) {
    this.safeFlag = safeFlag
    this.capacity = capacity
  }

  push(end: number, flags: number): void {
    if (this.count === this.ends.length) this.grow()
    const at = (this.head + this.count) % this.ends.length
    this.ends[at] = end
    this.flags[at] = flags
    this.count++
    if (this.safeFlag !== 0 && (flags & this.safeFlag) === 0) this.unsafe++
  }

  /** Flags of the oldest. */
  peek(): number {
    if (this.ends === NONE) this.grow() // as the eager arrays read: 0
    return this.flags[this.head]!
  }

  /** Drops the oldest and returns its end offset. */
  shift(): number {
    if (this.ends === NONE) this.grow()
    const end = this.ends[this.head]!
    if (this.safeFlag !== 0 && (this.flags[this.head]! & this.safeFlag) === 0) this.unsafe--
    this.head = (this.head + 1) % this.ends.length
    this.count--
    return end
  }

  /** A request that gets no reply ended at `end`: release it with the last one. */
  extendLast(end: number): void {
    if (this.ends === NONE) this.grow()
    this.ends[(this.head + this.count - 1) % this.ends.length] = end
  }

  clear(): void {
    this.head = 0
    this.count = 0
    this.unsafe = 0
  }

  private grow(): void {
    const size = this.ends.length
    if (size === 0) {
      this.ends = new Array<number>(this.capacity).fill(0)
      this.flags = new Array<number>(this.capacity).fill(0)
      return
    }
    const ends = new Array<number>(size * 2).fill(0)
    const flags = new Array<number>(size * 2).fill(0)
    for (let k = 0; k < this.count; k++) {
      ends[k] = this.ends[(this.head + k) % size]!
      flags[k] = this.flags[(this.head + k) % size]!
    }
    this.ends = ends
    this.flags = flags
    this.head = 0
  }
}
