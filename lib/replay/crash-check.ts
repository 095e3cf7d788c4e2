/**
 * The opaque crash check (DESIGN.md): a killed server closes its connections with a FIN, so on the
 * wire a crash between turns looks exactly like a graceful close. A connect to the backend tells
 * them apart: accepted, it is alive and closed on purpose; refused, it died.
 *
 * One check per backend at a time, shared: a session whose server closed asks; if a check of that
 * backend started less than `JOIN_MS` ago, the session takes its verdict (waiting for it while it is
 * in flight) instead of opening its own connection. Under connection churn (every server closing
 * after its reply) that turns one probe connect per session into at most one per `JOIN_MS` per
 * backend. Only checks that started at most `JOIN_MS` before a close are taken for it. The one case that then behaves as a plain proxy: a backend that
 * dies within `JOIN_MS` after a shared check started (the check still reaches its listener and says
 * alive) — the FIN between turns goes on to the client.
 */
import net, { type Socket } from 'node:net'

/** A check this recent is shared instead of starting another. */
export const JOIN_MS = 5

export interface CheckWaiter {
  /** The verdict: the backend accepted a connection (alive) or refused or timed out (dead). */
  checked(alive: boolean): void
}

interface Target {
  readonly host: string
  readonly port: number
  /** A unix-domain backend's socket path (host and port then unused). */
  readonly path?: string | undefined
}

const kCheck = Symbol('baton.check')

interface Check {
  readonly startedAt: number
  readonly socket: Socket
  readonly target: Target
  waiters: CheckWaiter[]
}

type CheckSocket = Socket & { [kCheck]?: Check }

const inflight = new Map<Target, Check>()
/** The last settled check of each backend: when it started and what it said. */
const settled = new Map<Target, { startedAt: number; alive: boolean }>()
/** Waiters answered from a settled check, with the verdict, pairwise; called in a microtask. */
let answered: (CheckWaiter | boolean)[] = []

function answerJoined(): void {
  const list = answered
  answered = []
  for (let i = 0; i < list.length; i += 2) (list[i] as CheckWaiter).checked(list[i + 1] as boolean)
}

/** Ask whether `target` is alive; `waiter.checked()` is called once, later (never synchronously). */
export function checkBackend(target: Target, timeoutMs: number, waiter: CheckWaiter): void {
  const now = performance.now()
  const current = inflight.get(target)
  if (current !== undefined && now - current.startedAt <= JOIN_MS) {
    current.waiters.push(waiter)
    return
  }
  const last = settled.get(target)
  if (last !== undefined && now - last.startedAt <= JOIN_MS) {
    // The same check, already answered: as if this close had joined it while in flight.
    answered.push(waiter, last.alive)
    if (answered.length === 2) queueMicrotask(answerJoined)
    return
  }
  const socket = net.connect({ host: target.host, port: target.port, path: target.path }) as CheckSocket
  const check: Check = { startedAt: now, socket, target, waiters: [waiter] }
  socket[kCheck] = check
  socket.setTimeout(timeoutMs)
  socket.once('connect', onAlive)
  socket.once('timeout', onDead)
  socket.once('error', onDead)
  inflight.set(target, check)
}

/** The waiter no longer wants the verdict (its session ended). */
export function cancelCheck(target: Target, waiter: CheckWaiter): void {
  const j = answered.indexOf(waiter)
  if (j >= 0) answered.splice(j, 2)
  const check = inflight.get(target)
  if (check === undefined) return
  const i = check.waiters.indexOf(waiter)
  if (i >= 0) check.waiters.splice(i, 1)
}

function settle(socket: CheckSocket, alive: boolean): void {
  const check = socket[kCheck]
  if (check === undefined) return
  socket[kCheck] = undefined
  socket.destroy()
  if (inflight.get(check.target) === check) inflight.delete(check.target)
  settled.set(check.target, { startedAt: check.startedAt, alive })
  for (const w of check.waiters) w.checked(alive)
}

function onAlive(this: CheckSocket): void {
  settle(this, true)
}

function onDead(this: CheckSocket): void {
  settle(this, false)
}
