/**
 * The replay buffer: references (never copies) to the client chunks of requests that were sent to
 * the server and are not yet fully answered, so they can be re-sent to another backend.
 *
 *   chunks:  [ c0 | c1 | c2 | c3 ]        head = index of the first live chunk
 *              ^^^^ headOffset bytes of chunks[head] already released
 *   absolute: start ............ end      (client byte offsets since the session began)
 *
 * `release(upTo)` drops everything before an absolute offset the moment its response completes.
 * Bounded per session by the caller (`replay.maxBytes`) and across the process by a shared budget
 * (`replay.maxTotalBytes`).
 */
import type { Socket } from 'node:net'

/** The shared empty array of a buffer that holds nothing (never pushed to). */
const NO_CHUNKS: Buffer[] = []

/** Replay bytes held across every session of the process. */
export class ReplayBudget {
  total = 0
  constructor(public max: number) {}
  get exceeded(): boolean {
    return this.total > this.max
  }
}

export class ReplayBuffer {
  /** Allocated at the first push: an idle session's buffer holds no array (issue 11, idle memory). */
  private chunks: Buffer[] = NO_CHUNKS
  private head = 0
  private headOffset = 0
  /** Absolute client offset of the first byte held. */
  start = 0
  /** Absolute client offset just after the last byte held. */
  end = 0
  private readonly budget: ReplayBudget

  constructor(budget: ReplayBudget) {
    this.budget = budget
  }

  get bytes(): number {
    return this.end - this.start
  }

  push(chunk: Buffer): void {
    if (this.chunks === NO_CHUNKS) this.chunks = []
    this.chunks.push(chunk)
    this.end += chunk.length
    this.budget.total += chunk.length
  }

  /** Drop every byte before absolute offset `upTo`. */
  release(upTo: number): void {
    if (upTo > this.end) upTo = this.end
    if (upTo <= this.start) return
    this.budget.total -= upTo - this.start
    const chunks = this.chunks
    while (this.start < upTo) {
      const c = chunks[this.head]!
      const left = c.length - this.headOffset
      if (this.start + left <= upTo) {
        this.start += left
        this.head++
        this.headOffset = 0
      } else {
        this.headOffset += upTo - this.start
        this.start = upTo
      }
    }
    if (this.head === chunks.length) {
      this.chunks = NO_CHUNKS // everything answered: an idle session keeps no array
      this.head = 0
    } else if (this.head >= 64 && this.head * 2 >= chunks.length) {
      chunks.splice(0, this.head)
      this.head = 0
    }
  }

  /** Drop everything and carry on counting from absolute offset `at`. */
  reset(at: number): void {
    this.budget.total -= this.end - this.start
    this.chunks = NO_CHUNKS
    this.head = 0
    this.headOffset = 0
    this.start = at
    this.end = at
  }

  /**
   * Write every held byte to `socket`, in order, as slices of the original chunks. `insert` adds
   * bytes of Baton's own at an offset from the start (http1: a `Range` for a resumed GET). Only the
   * bytes before absolute offset `upTo` are written (http1: a head still held back stays held).
   */
  writeTo(socket: Socket, insert?: { at: number; lines: Buffer }, upTo = this.end): boolean {
    let flowing = true
    let offset = 0
    const limit = upTo - this.start
    for (let i = this.head; i < this.chunks.length && offset < limit; i++) {
      const c = this.chunks[i]!
      let part = i === this.head && this.headOffset > 0 ? c.subarray(this.headOffset) : c
      if (offset + part.length > limit) part = part.subarray(0, limit - offset)
      if (insert !== undefined && insert.at >= offset && insert.at < offset + part.length) {
        const cut = insert.at - offset
        if (cut > 0) socket.write(part.subarray(0, cut))
        socket.write(insert.lines)
        offset += cut
        part = part.subarray(cut)
        insert = undefined
      }
      offset += part.length
      flowing = socket.write(part)
    }
    return flowing
  }

  /** The first `max` held bytes (or fewer), copied: for a look at the oldest request on a failover. */
  peek(max: number): Buffer {
    const parts: Buffer[] = []
    let n = 0
    for (let i = this.head; i < this.chunks.length && n < max; i++) {
      const c = this.chunks[i]!
      const part = i === this.head && this.headOffset > 0 ? c.subarray(this.headOffset) : c
      parts.push(part)
      n += part.length
    }
    return Buffer.concat(parts, Math.min(n, max))
  }

  /** Number of chunk references held (for tests and the snapshot). */
  get chunkCount(): number {
    return this.chunks.length - this.head
  }
}
