/**
 * Request/response over the primary's IPC channel to each worker (protocol.ts: `ask` and `reply`).
 *
 *   primary (Asker)                              worker (answerAsk)
 *   ask(worker, op) ── baton:ask { id, op } ───►  answer(op) resolves or throws
 *        ◄──────────── baton:reply { id, ok, value | error } ──
 *
 * Each question has an id and a timeout. It settles once: with the reply, with the timeout, with a
 * failed send, or when its worker exits (`workerGone`); a reply that comes later finds nothing and
 * is dropped. A worker that does not answer is left out of `askAll`'s answers and listed apart, never
 * waited for past the timeout.
 */
import type { Worker } from 'node:cluster'
import type { Ask, FromWorker, ToWorker } from './protocol.js'

type Reply = Extract<FromWorker, { type: 'baton:reply' }>

interface Pending {
  worker: number
  timer: NodeJS.Timeout
  resolve: (value: unknown) => void
  reject: (err: Error) => void
}

export interface Gathered<T> {
  answers: { id: number; value: T }[]
  failures: { id: number; error: string }[]
}

/** The primary's side: questions out, replies matched to them by id. */
export class Asker {
  private readonly pending = new Map<number, Pending>()
  private nextId = 1

  /** Ask one worker; rejects on an error reply, a timeout, a failed send or the worker's exit. */
  ask(worker: Worker, ask: Ask, timeoutMs: number): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (!worker.isConnected()) return reject(new Error(`worker ${worker.id} is not connected`))
      const id = this.nextId++
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`no answer within ${timeoutMs} ms`))
      }, timeoutMs)
      this.pending.set(id, { worker: worker.id, timer, resolve, reject })
      const msg: ToWorker = { type: 'baton:ask', id, ...ask }
      worker.send(msg, (err: Error | null) => {
        if (err === null || !this.pending.has(id)) return
        this.pending.delete(id)
        clearTimeout(timer)
        reject(err)
      })
    })
  }

  /**
   * Ask every worker of `workers`, in that order; those that fail or time out are listed apart.
   * `onAnswer` runs as each answer arrives (before a later 'exit' of that worker is handled).
   */
  async askAll<T, W extends { readonly worker: Worker }>(
    workers: readonly W[],
    ask: Ask,
    timeoutMs: number,
    onAnswer?: (w: W, value: T) => void
  ): Promise<Gathered<T>> {
    const settled = await Promise.allSettled(
      workers.map((w) =>
        this.ask(w.worker, ask, timeoutMs).then((value) => {
          onAnswer?.(w, value as T)
          return value
        })
      )
    )
    const out: Gathered<T> = { answers: [], failures: [] }
    settled.forEach((s, i) => {
      const id = workers[i]!.worker.id
      if (s.status === 'fulfilled') out.answers.push({ id, value: s.value as T })
      else out.failures.push({ id, error: (s.reason as Error).message })
    })
    return out
  }

  /** A `baton:reply` came: settle its question (if still waiting). */
  settle(reply: Reply): void {
    const p = this.pending.get(reply.id)
    if (p === undefined) return
    this.pending.delete(reply.id)
    clearTimeout(p.timer)
    if (reply.ok) p.resolve(reply.value)
    else p.reject(new Error(reply.error))
  }

  /** The worker exited: its open questions fail now rather than at their timeouts. */
  workerGone(workerId: number): void {
    for (const [id, p] of this.pending) {
      if (p.worker !== workerId) continue
      this.pending.delete(id)
      clearTimeout(p.timer)
      p.reject(new Error(`worker ${workerId} exited`))
    }
  }
}

/** The worker's side: answer one `baton:ask` and send the reply (`ok` with the value, or the error). */
export function answerAsk(
  msg: Extract<ToWorker, { type: 'baton:ask' }>,
  answer: (ask: Ask) => Promise<unknown>,
  send: (reply: Reply) => void
): void {
  answer(msg).then(
    (value) => send({ type: 'baton:reply', id: msg.id, ok: true, value }),
    (err: unknown) =>
      send({ type: 'baton:reply', id: msg.id, ok: false, error: (err as Error).message ?? String(err) })
  )
}
