/**
 * The messages between the `--workers` primary and its workers, over node:cluster's IPC channel
 * (JSON). Every one has a `type` starting with `baton:`, so prom-client's and node:cluster's own
 * messages on the same channel are never mistaken for ours.
 *
 *   worker                                  primary
 *   hello  ───────────────────────────────►              (its message handler is in place)
 *          ◄─────────────────────────────── socket       one per listener, with its listening handle
 *                                                        (sockets.ts; none under NODE_CLUSTER_SCHED_POLICY=rr)
 *          ◄─────────────────────────────── init         config (checks off), backend states, socket names
 *   ready  ───────────────────────────────►              listening; or `failed` and exit 2
 *          ◄─────────────────────────────── state        backend states, on every change
 *          ◄─────────────────────────────── ask          id, op: snapshot | sessions | metrics | reload
 *   reply  ───────────────────────────────►              id, ok, value or error
 *          ◄─────────────────────────────── stop         graceMs: stop accepting, finish sessions, exit 0
 */
import type { Config } from '../config/schema.js'
import type { BackendState } from './state.js'

export type Ask =
  | { op: 'snapshot' }
  | { op: 'sessions'; offset: number; limit: number }
  | { op: 'metrics' }
  | { op: 'reload'; config: Config }

export type ToWorker =
  | { type: 'baton:init'; config: Config; state: BackendState[]; sockets: string[] }
  | { type: 'baton:socket'; name: string; inherited: boolean }
  | { type: 'baton:state'; state: BackendState[] }
  | ({ type: 'baton:ask'; id: number } & Ask)
  | { type: 'baton:stop'; graceMs: number }

export type FromWorker =
  | { type: 'baton:hello' }
  | { type: 'baton:ready' }
  | { type: 'baton:failed'; message: string }
  | { type: 'baton:reply'; id: number; ok: true; value: unknown }
  | { type: 'baton:reply'; id: number; ok: false; error: string }

/** True for a message of ours (anything else on the channel belongs to node:cluster or prom-client). */
export function isBatonMessage<T extends { type: string }>(msg: unknown): msg is T {
  return (
    typeof msg === 'object' &&
    msg !== null &&
    typeof (msg as { type?: unknown }).type === 'string' &&
    (msg as { type: string }).type.startsWith('baton:')
  )
}

/**
 * The configuration a worker runs: the same, with active health checks off (the primary runs them
 * and passes their verdicts on) and one process (a worker never starts workers of its own).
 */
export function workerConfig(config: Config): Config {
  return {
    ...config,
    workers: 1,
    listeners: config.listeners.map((l) => ({ ...l, healthCheck: { ...l.healthCheck, type: 'none' } })),
  }
}
