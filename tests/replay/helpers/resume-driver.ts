/**
 * A socket-free stand-in for the replayer's resume paths (lib/replay/replayer.ts `fromServer()`,
 * `onServerFailed()`, `attached()`), driving one protocol's `Resume` (lib/replay/resume.ts) over
 * its framer and a real `ReplayBuffer`: what the client would receive, what a replacement server
 * would be sent, and how the session would end. Used by the resume unit tests and the framer
 * conformance driver's resume step.
 *
 *   driver.request(bytes)          client bytes: recorded, parsed
 *   driver.server(chunk)           a server's bytes: fed, forwarded, or fitted while resuming
 *   driver.fail()                  the server connection fails: cut, failover, re-send
 */
import type { Socket } from 'node:net'
import type { FramerFactory, FramingError } from '../../../lib/framing/types.js'
import { ReplayBudget, ReplayBuffer } from '../../../lib/replay/buffer.js'
import type { RequestInsert, Resume, ResumeFactory, ResumeFramer } from '../../../lib/replay/resume.js'

export type Ending =
  | { kind: 'mismatch'; why: string }
  | { kind: 'unrecoverable'; why: string }
  | { kind: 'framing'; error: FramingError }

export class ResumeDriver {
  readonly framer: ResumeFramer
  readonly resume: Resume
  /** What the client has received, in order. */
  readonly client: Buffer[] = []
  /** Responses verified (the replayer's `resumed(true)`). */
  verified = 0
  /** How the session ended, if it did (the client would be closed). */
  ended: Ending | undefined = undefined
  /** False past the replay bound (the replayer's `recording`). */
  recording = true
  /** Every client byte before this offset is answered. */
  released = 0
  /** What the last failover added to the re-sent requests (http1: a `Range`). */
  insert: RequestInsert | undefined = undefined
  private readonly replay = new ReplayBuffer(new ReplayBudget(Number.MAX_SAFE_INTEGER))

  constructor(framer: FramerFactory, resume: ResumeFactory) {
    this.framer = framer({
      answered: (upTo) => {
        this.released = upTo
        this.replay.release(upTo)
      },
    })
    this.resume = resume()
  }

  /** The client's bytes so far, joined. */
  get received(): Buffer {
    return Buffer.concat(this.client)
  }

  request(bytes: Buffer): void {
    this.replay.push(bytes)
    const err = this.framer.request(bytes)
    if (err !== undefined) throw new Error(`the request did not parse: ${err.message}`)
  }

  /** Server bytes, as `Replayer.fromServer()` takes them. Returns false once the session has ended. */
  server(chunk: Buffer): boolean {
    if (this.ended !== undefined) throw new Error('server bytes after the session ended')
    const framer = this.framer
    const resume = this.resume
    if (resume.resuming) {
      const step = resume.feed(chunk, framer)
      if (typeof step === 'string') return this.end({ kind: 'mismatch', why: step })
      if ('code' in step) return this.end({ kind: 'framing', error: step })
      if (step.used < 0 || step.used > chunk.length) throw new Error(`used ${step.used} of ${chunk.length}`)
      if (step.verified) this.verified++
      for (const b of step.out) this.client.push(b)
      if (step.used === chunk.length) return true
      chunk = chunk.subarray(step.used)
    }
    const err = framer.response(chunk)
    if (err !== undefined) return this.end({ kind: 'framing', error: err })
    const out = resume.forwarded(chunk, framer, this.recording)
    if (out !== undefined) this.client.push(out)
    return true
  }

  /**
   * The server connection fails (`Replayer.onServerFailed()` once the policy allows a replay).
   * Returns what a replacement server is sent, or undefined when the session ended or nothing is
   * unanswered (a clean boundary: the next request opens a new connection).
   */
  fail(): Buffer | undefined {
    if (this.ended !== undefined) throw new Error('a failure after the session ended')
    const partial = this.resume.cut(this.framer)
    if (this.framer.pending() === 0 && !partial) return undefined
    const setup = this.resume.failover(partial, this.replay)
    if (typeof setup === 'string') {
      this.end({ kind: 'unrecoverable', why: setup })
      return undefined
    }
    this.insert = setup
    this.framer.restartResponse()
    const sent: Buffer[] = []
    const socket = { write: (b: Buffer) => sent.push(Buffer.from(b)) > 0 } as unknown as Socket
    this.replay.writeTo(socket, setup)
    return Buffer.concat(sent)
  }

  private end(how: Ending): false {
    this.ended = how
    return false
  }
}

/** `data` in pieces of `size` bytes (the last shorter). */
export function pieces(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = []
  for (let at = 0; at < data.length; at += size) out.push(data.subarray(at, at + size))
  return out
}
