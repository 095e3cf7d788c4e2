/**
 * A SHA-1 of the bytes already forwarded of an open response, for a verified resume — computed
 * lazily. Most responses complete without a failure and their hash is never read, so the bytes are
 * first only referenced (the chunks are the ones already written to the client; nothing is copied);
 * past `KEEP_BYTES` they are folded into a real hash, which then runs on. A response that completes
 * costs an array push and a reset, not a hash object and a pass over every byte.
 */
import { createHash, type Hash } from 'node:crypto'

/** Bytes referenced before hashing starts: bounds what an open response keeps alive. */
export const KEEP_BYTES = 64 * 1024

export class LazyHash {
  /** Bytes seen since the last reset. */
  bytes = 0
  private parts: Buffer[] | undefined = undefined
  private hash: Hash | undefined = undefined

  update(buf: Buffer): void {
    this.bytes += buf.length
    if (this.hash !== undefined) {
      this.hash.update(buf)
      return
    }
    ;(this.parts ??= []).push(buf)
    if (this.bytes > KEEP_BYTES) this.fold()
  }

  /** The digest of every byte so far; the hash goes on taking bytes afterwards. */
  digest(): Buffer {
    this.fold()
    return this.hash!.copy().digest()
  }

  reset(): void {
    this.bytes = 0
    if (this.parts !== undefined && this.parts.length > 0) this.parts.length = 0
    this.hash = undefined
  }

  private fold(): void {
    this.hash ??= createHash('sha1')
    if (this.parts === undefined) return
    for (const p of this.parts) this.hash.update(p)
    this.parts.length = 0
  }
}
