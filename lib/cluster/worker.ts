/**
 * A `--workers` worker: takes its configuration from the primary (never from the file, which may
 * have changed since the primary read it), accepts and splices, follows the backend state the
 * primary sends, and answers its questions (figures, sessions, metrics, reload).
 *
 * Stopping: the primary's `stop` message, or SIGINT/SIGTERM sent to the worker itself (a terminal's
 * Ctrl-C reaches the whole process group), closes the balancer with the grace period and exits 0;
 * a second signal exits at once. If the primary goes away (its IPC channel closes), the worker stops
 * the same way rather than linger. SIGHUP is ignored: reloads come from the primary. (Not
 * lib/fleet/signals.ts: that one is for a process that reloads and upgrades itself.)
 */
import cluster from 'node:cluster'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { createMetrics } from '../admin/metrics.js'
import { processRegistry } from '../admin/process-metrics.js'
import { Balancer } from '../balancer.js'
import { BatonError } from '../errors.js'
import { createLogger } from '../log.js'
import { snapshotOf } from '../table.js'
import { answerAsk } from './ipc.js'
import { isBatonMessage, type Ask, type FromWorker, type ToWorker } from './protocol.js'
import { applyState, settlePools } from './state.js'
import { figuresOf, type WorkerSession } from './view.js'
import type { NativeHandle } from '../fleet/inherit.js'

export function runWorker(): void {
  const id = cluster.worker?.id ?? 0
  let balancer: Balancer | undefined
  let log: Logger | undefined
  let registry: Registry | undefined
  let stopping = false
  let signals = 0
  /** The listening handles the primary sent (sockets.ts), by listener name. */
  const sockets = new Map<string, NativeHandle>()
  /** Of those, the ones the primary itself was passed (systemd, an upgrade), for the log. */
  const passed = new Set<string>()

  const send = (msg: FromWorker, then?: () => void): void => {
    if (!process.connected) return then?.()
    process.send!(msg, undefined, {}, () => then?.())
  }

  const exit = (code: number): void => {
    log?.flush()
    process.exit(code)
  }

  const stop = (graceMs?: number): void => {
    if (stopping) return
    stopping = true
    if (balancer === undefined) return exit(0)
    void balancer.close(graceMs ?? balancer.config.shutdownGrace).then(() => exit(0))
  }

  const onSignal = (signal: NodeJS.Signals): void => {
    if (++signals > 1) {
      log?.warn({ signal }, 'second signal, exiting now')
      return exit(1)
    }
    stop()
  }

  const start = async (msg: Extract<ToWorker, { type: 'baton:init' }>): Promise<void> => {
    if (balancer !== undefined || stopping) return
    log = createLogger(msg.config.log).child({ worker: id })
    balancer = new Balancer(msg.config, { logger: log })
    applyState(balancer, msg.state, log)
    // The listeners' sockets came before `init` (IPC keeps the order): listen on them in place.
    const missing = msg.sockets.filter((n) => !sockets.has(n))
    if (missing.length > 0)
      return send({ type: 'baton:failed', message: `no socket received for ${missing.join(', ')}` }, () =>
        exit(2)
      )
    try {
      await balancer.listen({
        take: (name) => {
          const h = sockets.get(name)
          sockets.delete(name)
          return h
        },
        passed: (name) => passed.has(name),
      })
    } catch (err) {
      const message = err instanceof BatonError ? err.message : String(err)
      return send({ type: 'baton:failed', message }, () => exit(2))
    }
    settlePools(balancer)
    // The event-loop and GC monitors start now, so the first scrape has samples (not NaN means).
    if (msg.config.admin.listen !== undefined) processRegistry()
    send({ type: 'baton:ready' })
  }

  const answer = async (ask: Ask): Promise<unknown> => {
    const b = balancer
    if (b === undefined) throw new Error('not started')
    switch (ask.op) {
      case 'snapshot':
        return figuresOf(b)
      case 'sessions': {
        const sessions: WorkerSession[] = []
        const now = Date.now()
        let i = 0
        for (const e of b.table.values()) {
          if (i++ < ask.offset) continue
          if (sessions.length === ask.limit) break
          sessions.push({ ...snapshotOf(e, now), worker: id, pid: process.pid })
        }
        return { total: b.table.size, sessions }
      }
      case 'metrics':
        // Made at the first scrape, so a cluster without an admin server runs no metrics at all.
        // Health checks run in the primary, which serves their metrics itself.
        registry ??= createMetrics(b, { checks: false })
        return registry.getMetricsAsJSON()
      case 'reload':
        return b.reload(ask.config)
    }
  }

  process.on('message', (msg: unknown, handle: unknown) => {
    if (!isBatonMessage<ToWorker>(msg)) return
    switch (msg.type) {
      case 'baton:socket':
        if (handle !== undefined && handle !== null) {
          sockets.set(msg.name, handle as NativeHandle)
          if (msg.inherited) passed.add(msg.name)
        }
        break
      case 'baton:init':
        void start(msg)
        break
      case 'baton:state':
        if (balancer !== undefined) applyState(balancer, msg.state, log!)
        break
      case 'baton:ask':
        answerAsk(msg, answer, send)
        break
      case 'baton:stop':
        stop(msg.graceMs)
        break
    }
  })
  process.on('disconnect', () => {
    log?.warn('the primary is gone, stopping')
    stop()
  })
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  process.on('SIGHUP', () => {})
  process.on('SIGUSR2', () => {}) // upgrades are the primary's business
  send({ type: 'baton:hello' })
}
