/**
 * What a Baton process does on each signal, the same for one process (lib/cli.ts) and for the
 * `--workers` primary (lib/cluster/primary.ts); only how each drains differs, and that is passed in.
 *
 *   SIGINT, SIGTERM  stop accepting, give live sessions `shutdownGrace`, exit 0 (`drain`); the
 *                    service manager is told STOPPING=1 and a successor still starting is killed.
 *                    A second one exits 1 at once (`kill` first: the primary's workers go too).
 *   SIGHUP           re-read the config file and apply it (`reload`), between RELOADING=1 and
 *                    READY=1; without a file there is nothing to re-read, and the log says so.
 *   SIGUSR2          start a successor and hand it the listening sockets (upgrade.ts); once it
 *                    accepts, drain as on SIGTERM (`drain` with its pid, no STOPPING=1: the service
 *                    goes on). Ignored while stopping, or with a warning where nothing can be handed.
 *   SIGUSR1          ignored, in every process (`ignoreSigusr1`).
 *
 * A `--workers` worker handles its own (lib/cluster/worker.ts): it counts signals rather than
 * checking whether it is stopping, because a terminal's Ctrl-C reaches it and its primary at once
 * and the primary's `stop` must not make that one SIGINT a second.
 */
import type { Logger } from 'pino'
import { BatonError } from '../errors.js'
import { sdNotify } from './notify.js'
import { Upgrader, type HandedSocket } from './upgrade.js'

export interface SignalOptions {
  log: Logger
  /** Stop accepting, finish the sessions within the grace period, exit 0; `successorPid` after an upgrade. */
  drain(signal: string, successorPid?: number): void
  /** On a second signal, just before exiting 1. */
  kill?(): void
  /** Re-read the configuration and apply it; rejects (having logged why) when it is refused. Absent without a file. */
  reload?: () => Promise<unknown>
  /** SIGUSR2: the command line to run again and the sockets to hand over, or why an upgrade cannot be. */
  upgrade: { argv: readonly string[]; sockets: () => HandedSocket[] } | { unavailable: string }
}

export class ProcessSignals {
  private draining = false
  private readonly upgrader: Upgrader | undefined

  constructor(private readonly options: SignalOptions) {
    const u = options.upgrade
    this.upgrader =
      'argv' in u
        ? new Upgrader(options.log, u.argv, u.sockets, (pid) => this.stop('upgrade', pid))
        : undefined
  }

  /** Stopping (a signal or a hand-over): no longer ready, no upgrade. */
  get stopping(): boolean {
    return this.draining
  }

  /** Handle SIGINT, SIGTERM, SIGHUP and SIGUSR2 from now on. */
  install(): void {
    const { log, reload } = this.options
    process.on('SIGINT', () => this.stop('SIGINT'))
    process.on('SIGTERM', () => this.stop('SIGTERM'))
    process.on('SIGHUP', () => {
      if (reload === undefined) return log.warn('SIGHUP: nothing to reload without --config')
      void sdNotify(log, 'RELOADING=1')
        .then(reload)
        .catch(() => {}) // reload() logs why
        .finally(() => sdNotify(log, 'READY=1'))
    })
    const u = this.options.upgrade
    process.on('SIGUSR2', () => {
      if ('unavailable' in u) return log.warn(u.unavailable)
      if (this.draining) return log.warn('SIGUSR2: stopping already, no upgrade')
      this.upgrader?.start()
    })
  }

  /** A signal, or a successor that accepts (`successorPid`): drain; a second time, exit 1 now. */
  stop(signal: string, successorPid?: number): void {
    const { log } = this.options
    if (this.draining) {
      log.warn({ signal }, 'second signal, exiting now')
      this.options.kill?.()
      log.flush()
      process.exit(1)
    }
    this.draining = true
    // A hand-over is no stop of the service: its successor has told the manager it is the main pid.
    if (successorPid === undefined) {
      void sdNotify(log, 'STOPPING=1')
      this.upgrader?.abort()
    }
    this.options.drain(signal, successorPid)
  }
}

/**
 * Run a reload (SIGHUP or `POST /api/reload`); if it is refused, log why (the running configuration
 * stays) and reject with the same error, for the API to answer.
 */
export async function sayIfRefused<T>(log: Logger, apply: () => Promise<T>): Promise<T> {
  try {
    return await apply()
  } catch (err) {
    log.error(
      { reason: err instanceof BatonError ? err.message.split('\n') : String(err) },
      'reload refused, the running configuration stays'
    )
    throw err
  }
}

/**
 * SIGUSR1 starts Node's inspector (a debugger on 127.0.0.1:9229 that runs any code it is sent) in
 * a process without a handler for it. Baton handles it, first thing and in every process: it logs
 * to stdout, so there is no log file to reopen (as nginx and HAProxy do on USR1), and it says so.
 * `log` gives the logger to say it to, once there is one.
 */
export function ignoreSigusr1(log: () => Logger | undefined): void {
  process.on('SIGUSR1', () => {
    log()?.info(
      { signal: 'SIGUSR1' },
      'SIGUSR1 ignored: logs go to stdout, nothing to reopen (Node inspector not started)'
    )
  })
}
