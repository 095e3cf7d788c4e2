/**
 * The primary's workers as processes: it forks them, tells an unexpected exit from one it asked
 * for, replaces the former (at once, unless workers die in a tight loop: respawn.ts) and counts it,
 * and at the end waits, bounded, for all of them to go.
 *
 *   phase      a worker exits                       fork()
 *   starting   the start fails (`failedStart`)      forks
 *   running    logged (warn), counted, replaced     forks
 *   stopping   awaited (`allExited`)                nothing
 *
 * What a worker is to the primary beyond its process (its configuration generation, its last
 * answers, its IPC questions) is the primary's: `make` builds the member, `exited` hears of its end.
 */
import cluster, { type Worker } from 'node:cluster'
import type { Logger } from 'pino'
import { RespawnThrottle } from './respawn.js'

export interface Supervised {
  readonly worker: Worker
  /** Listening (it said `ready`). */
  ready: boolean
}

export interface SupervisorHooks<M extends Supervised> {
  /** The member kept for a worker just forked. */
  make(worker: Worker): M
  /** A worker exited, for whatever reason; `member` is already out of `members`. */
  exited(worker: Worker, member: M | undefined): void
  /** A worker exited during start-up: the start has failed (`how`: its code or signal). */
  failedStart(worker: Worker, how: string): void
}

export type Phase = 'starting' | 'running' | 'stopping'

/** After the grace period, how long workers get to exit before they are killed. */
export const KILL_MARGIN_MS = 5000

export class Supervisor<M extends Supervised> {
  /** The live workers, by node:cluster id. */
  readonly members = new Map<number, M>()
  phase: Phase = 'starting'
  /** Workers that exited unexpectedly and were replaced. */
  restarts = 0
  private readonly throttle = new RespawnThrottle()
  private readonly respawns = new Set<NodeJS.Timeout>()
  private exitWaiters: (() => void)[] = []

  constructor(
    private readonly log: Logger,
    private readonly hooks: SupervisorHooks<M>
  ) {}

  /** Listen for exits and fork `count` workers. */
  start(count: number): void {
    cluster.on('exit', (worker, code, signal) => this.onExit(worker, code, signal))
    for (let i = 0; i < count; i++) this.fork()
  }

  fork(): void {
    if (this.phase === 'stopping') return
    const worker = cluster.fork()
    this.members.set(worker.id, this.hooks.make(worker))
  }

  /** The listening workers, in worker id order. */
  listening(): M[] {
    return [...this.members.values()].filter((m) => m.ready).sort((a, b) => a.worker.id - b.worker.id)
  }

  readyCount(): number {
    let n = 0
    for (const m of this.members.values()) if (m.ready) n++
    return n
  }

  /** From now on an exit is awaited, not replaced; replacements not yet started never start. */
  stopping(): void {
    this.phase = 'stopping'
    for (const t of this.respawns) clearTimeout(t)
    this.respawns.clear()
  }

  killAll(): void {
    for (const m of this.members.values()) m.worker.process.kill('SIGKILL')
  }

  /** Resolves once every worker has exited; those still there after `ms` are killed. */
  allExited(ms: number): Promise<void> {
    if (this.members.size === 0) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        const left = [...this.members.values()]
        this.log.warn({ workers: left.map((m) => m.worker.id) }, 'workers did not exit in time, killing them')
        for (const m of left) m.worker.process.kill('SIGKILL')
        // A killed process is gone at once; do not wait on its 'exit' forever all the same.
        setTimeout(resolve, KILL_MARGIN_MS).unref()
      }, ms)
      this.exitWaiters.push(() => {
        clearTimeout(timer)
        resolve()
      })
    })
  }

  private onExit(worker: Worker, code: number | null, signal: string | null): void {
    const gone = this.members.get(worker.id)
    this.members.delete(worker.id)
    this.hooks.exited(worker, gone)
    if (this.phase === 'stopping') {
      this.log.debug({ worker: worker.id, workerPid: worker.process.pid, code, signal }, 'worker exited')
      if (this.members.size === 0) for (const done of this.exitWaiters.splice(0)) done()
      return
    }
    if (this.phase === 'starting') {
      this.hooks.failedStart(worker, signal !== null ? `signal ${signal}` : `code ${code}`)
      return
    }
    this.restarts++
    const delayMs = this.throttle.died()
    this.log.warn(
      { worker: worker.id, workerPid: worker.process.pid, code, signal },
      'worker exited unexpectedly, starting a replacement'
    )
    if (delayMs > 0) this.log.warn({ delayMs }, 'workers are exiting in a tight loop: the replacement waits')
    const timer = setTimeout(() => {
      this.respawns.delete(timer)
      this.fork()
    }, delayMs)
    this.respawns.add(timer)
  }
}
