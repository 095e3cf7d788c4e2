/**
 * The opaque crash check (DESIGN.md): a killed server closes its connections with a FIN, so on the
 * wire a crash between turns looks exactly like a graceful close. A connect to the backend that
 * starts after the close was seen tells them apart: accepted, the backend is alive and closed on
 * purpose; refused, it died.
 *
 * Only a connect that *started after* a close may answer for it: one that started earlier may have
 * reached the listener just before the crash. Within that rule the answers are shared:
 *
 * - **Witnesses.** Every session's own connect to the backend is a check: it started at a known time
 *   and the backend's listener accepted it (`connectStarted`, `witness`). A close waits for the next
 *   one, for at most `GRACE_MS`, when another session connect to the backend is due by then (from
 *   the mean gap between its session connects and the time since the last one); under connection
 *   churn the closes of ended sessions are answered by the connects of new ones, and no probe is
 *   made.
 * - **Probes.** Otherwise (or when the grace runs out) one probe connect per backend at a time; its
 *   verdict answers every close seen before it started. Closes that came while it was in flight
 *   wait for the next witness or probe.
 *
 * A connect that completes is not yet proof: a killed process's listening socket can still complete
 * connects in the moment before the kernel closes it (a process group dies one process at a time:
 * socat's forked children close their connections while the parent's listener still accepts). Its
 * accept queue is then reset. So an accepted probe is held `CONFIRM_MS` and only then counts as
 * alive (a reset or close meanwhile: dead). A witness counts at once: it only ever answers under
 * churn, where waiting would cost every close its latency; the one case that then behaves as a plain
 * proxy is a backend whose listener outlives its connections by a moment while new sessions still
 * reach it (the FIN between turns goes on to the client). Under the same churn (session connects to
 * the backend every GRACE_MS or more often, on average) a probe counts at once too: it stands for
 * the witness that did not come because every session was waiting on a check (clients in a closed
 * loop that all closed together reconnect only once answered: holding each probe CONFIRM_MS would
 * keep them in that lockstep at one probe and 3 ms per close).
 *
 * Waiters are answered in the order their closes came (`since` ascends along `waiting`), never
 * synchronously from `checkBackend`.
 */
import net, { type Socket } from 'node:net'

/**
 * How long a close waits for a witnessing connect before a probe is started; it waits only when
 * one is due that soon (the backend's mean gap between session connects, and the time since
 * another session's connect, are both within it). A probe holds the close CONFIRM_MS anyway.
 */
export const GRACE_MS = 3
/** The weight of the newest gap in the moving average of gaps between connects. */
const GAP_WEIGHT = 0.2
/** How long an accepted check connection must stay up (no reset, no close) to count as alive. */
export const CONFIRM_MS = 3

export interface CheckWaiter {
  /** The verdict: the backend accepted a connection (alive) or refused or timed out (dead). */
  checked(alive: boolean): void
}

interface Target {
  readonly host: string
  readonly port: number
  /** A unix-domain backend's socket path (host and port then unused). */
  readonly path?: string | undefined
  /** Sessions on the backend now, connecting ones included (Backend.active), where known. */
  readonly active?: number
}

interface Waiting {
  readonly waiter: CheckWaiter
  /** When the close was seen (performance.now()). */
  readonly since: number
  readonly timeoutMs: number
}

/** One backend's checks. */
interface Checks {
  readonly target: Target
  waiting: Waiting[]
  /** When the last session connect to the backend started, and the one before it. */
  lastConnect: number
  prevConnect: number
  /** The mean time between session connects to the backend (ms, moving average). */
  gap: number
  probe: Socket | undefined
  probeStartedAt: number
  /** The probe in flight was started under churn: accepted, it counts at once (see above). */
  probeAtOnce: boolean
  grace: NodeJS.Timeout | undefined
}

const kChecks = Symbol('baton.checks')
type ProbeSocket = Socket & { [kChecks]?: Checks }

const all = new Map<Target, Checks>()

function checksOf(target: Target): Checks {
  let c = all.get(target)
  if (c === undefined) {
    c = {
      target,
      waiting: [],
      lastConnect: -Infinity,
      prevConnect: -Infinity,
      gap: Infinity,
      probe: undefined,
      probeStartedAt: 0,
      probeAtOnce: false,
      grace: undefined,
    }
    all.set(target, c)
  }
  return c
}

/** A session connect to `target` starts now (performance.now()): a witness may follow. */
export function connectStarted(target: Target, at: number): void {
  const c = checksOf(target)
  const gap = at - c.lastConnect
  if (gap >= 0) c.gap = c.gap === Infinity ? gap : c.gap + (gap - c.gap) * GAP_WEIGHT
  c.prevConnect = c.lastConnect
  c.lastConnect = at
}

/** A session connect to `target` that started at `startedAt` was accepted: the backend was alive then. */
export function witness(target: Target, startedAt: number): void {
  const c = all.get(target)
  if (c === undefined || c.waiting.length === 0) return
  answer(c, startedAt, true)
}

/**
 * Ask whether `target` is alive after a close seen now; `waiter.checked()` is called once, later.
 * `ownConnect` is when the closing connection's own connect started (`-1` if it came from the pool):
 * when that is the backend's latest connect, no other session is connecting and no witness is due.
 */
export function checkBackend(target: Target, timeoutMs: number, waiter: CheckWaiter, ownConnect = -1): void {
  const c = checksOf(target)
  const now = performance.now()
  c.waiting.push({ waiter, since: now, timeoutMs })
  if (c.grace !== undefined && allWaiting(c)) {
    // Nobody left to connect: the grace would only delay the probe.
    clearTimeout(c.grace)
    c.grace = undefined
  }
  if (c.probe !== undefined || c.grace !== undefined) return // the next verdict will come to it
  decide(c, now, ownConnect)
}

/**
 * Every session on the backend waits for a verdict: none of them is connecting or talking, so no
 * witness can come from them, and clients in a closed loop (each reconnects once its session has
 * ended) will not connect before an answer. Waiting for a witness would only delay the probe; this
 * is how closes that came together (the sessions of a burst) stay fast.
 */
function allWaiting(c: Checks): boolean {
  const active = c.target.active
  return active !== undefined && c.waiting.length >= active
}

/** The waiter no longer wants the verdict (its session ended). */
export function cancelCheck(target: Target, waiter: CheckWaiter): void {
  const c = all.get(target)
  if (c === undefined) return
  const i = c.waiting.findIndex((w) => w.waiter === waiter)
  if (i >= 0) c.waiting.splice(i, 1)
  if (c.waiting.length === 0 && c.grace !== undefined) {
    clearTimeout(c.grace)
    c.grace = undefined
  }
}

/**
 * Waiters remain and nothing is on its way to answer them: wait for a witness when another
 * session's connect is due within GRACE_MS, or probe at once. "Another": the latest connect, or the
 * one before it when the latest is the closing connection's own. A lone client closing and
 * reconnecting (a serial loop) thus waits for one probe, not for the grace before it (its connects
 * are a probe's CONFIRM_MS or more apart); under churn a session that closes before anyone else
 * connected to its backend still waits for the witness that is due, rather than probing (a probe is
 * one more connection for the backend, and holds the close CONFIRM_MS anyway).
 */
function decide(c: Checks, now: number, ownConnect = -1): void {
  const other = c.lastConnect !== ownConnect ? c.lastConnect : c.prevConnect
  // When is the next connect due? About `gap` after the last one (unknown after a single connect),
  // and not sooner than the time since another session's connect: traffic that stopped has a stale gap.
  const since = now - other
  if ((c.gap === Infinity ? since : Math.max(c.gap, since)) <= GRACE_MS && !allWaiting(c))
    c.grace = setTimeout(onGrace, GRACE_MS, c)
  else startProbe(c, now)
}

function onGrace(c: Checks): void {
  c.grace = undefined
  if (c.waiting.length > 0 && c.probe === undefined) startProbe(c, performance.now())
}

function startProbe(c: Checks, now: number): void {
  const socket = net.connect({ host: c.target.host, port: c.target.port, path: c.target.path }) as ProbeSocket
  socket[kChecks] = c
  c.probe = socket
  c.probeStartedAt = now
  c.probeAtOnce = c.gap <= GRACE_MS
  socket.setTimeout(c.waiting[0]!.timeoutMs)
  socket.once('connect', onConnected)
  socket.once('timeout', onDead)
  socket.once('error', onDead)
  socket.once('end', onDead)
  socket.once('close', onDead)
}

/** Answer, in order, every waiter whose close came before a check that started at `startedAt`. */
function answer(c: Checks, startedAt: number, alive: boolean): void {
  const waiting = c.waiting
  let n = 0
  while (n < waiting.length && waiting[n]!.since <= startedAt) n++
  if (n === 0) return
  const done = n === waiting.length ? waiting : waiting.slice(0, n)
  c.waiting = n === waiting.length ? [] : waiting.slice(n)
  if (c.grace !== undefined) {
    if (c.waiting.length === 0) {
      clearTimeout(c.grace)
      c.grace = undefined
    } else {
      // The grace ran for the closes just answered; the ones left came later and get theirs in full.
      c.grace.refresh()
    }
  }
  for (const w of done) w.waiter.checked(alive)
}

function settle(socket: ProbeSocket, alive: boolean): void {
  const c = socket[kChecks]
  if (c === undefined) return
  socket[kChecks] = undefined
  socket.destroy()
  if (c.probe === socket) c.probe = undefined
  answer(c, c.probeStartedAt, alive)
  // Closes that came while the probe was in flight need a check that started after them.
  if (c.waiting.length > 0 && c.probe === undefined && c.grace === undefined) decide(c, performance.now())
}

/** Accepted: held CONFIRM_MS; a reset or close meanwhile (a dying listener's queue) settles it dead. */
function onConnected(this: ProbeSocket): void {
  if (this[kChecks]?.probeAtOnce === true) return settle(this, true)
  setTimeout(onConfirmed, CONFIRM_MS, this)
}

function onConfirmed(socket: ProbeSocket): void {
  settle(socket, true)
}

function onDead(this: ProbeSocket): void {
  settle(this, false)
}
