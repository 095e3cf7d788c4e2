/**
 * The I/O shell around `HealthState`: run a check every `interval` (± `jitter`), feed each result
 * to the state, and call `onFlip` only when the state flips.
 *
 * Checks never overlap: the next one is scheduled when the previous one has settled, so a check
 * that takes its whole `timeout` stretches the period instead of stacking probes on a slow backend.
 * The first check runs after a random fraction of `interval`, so checkers started together spread
 * out (HAProxy's `spread-checks`). Timers are unref'd: checking never keeps the process alive.
 * `stop()` clears the timer and aborts the check in flight, which destroys its socket.
 */
import type { CheckRecord } from '../backend.js'
import type { ListenerConfig } from '../config/schema.js'
import { protocolCheck } from '../protocols/index.js'
import { checkOf, type CheckFn, type CheckResult, type CheckSpec, type CheckTarget } from './checks.js'
import { HealthState } from './state.js'

export interface CheckerOptions {
  /** Milliseconds between the end of one check and the start of the next; default 2000. */
  interval: number
  /** Milliseconds a check may take, connect included; default `interval`. */
  timeout: number
  /** Consecutive successes that bring a down target up; default 2. */
  rise: number
  /** Consecutive failures that take an up target down; default 3. */
  fall: number
  /** Fraction of `interval` each period varies by, up or down; default 0.1. */
  jitter: number
  /** State before the first check; default up (a fresh backend takes traffic, like HAProxy). */
  initiallyUp: boolean
}

/** HAProxy's defaults: `inter 2s`, `rise 2`, `fall 3`, `timeout check` = `inter`. */
export const CHECKER_DEFAULTS = { interval: 2000, rise: 2, fall: 3, jitter: 0.1, initiallyUp: true } as const

/** Seams for tests: the timer functions and the random source. */
export interface CheckerHooks {
  setTimeout?: (fn: () => void, ms: number) => { unref?(): unknown }
  clearTimeout?: (timer: any) => void
  random?: () => number
}

export type FlipListener = (up: boolean, reason: string | undefined) => void

export class HealthChecker {
  readonly options: Readonly<CheckerOptions>
  private readonly state: HealthState
  private readonly check: CheckFn
  private readonly setTimer: NonNullable<CheckerHooks['setTimeout']>
  private readonly clearTimer: NonNullable<CheckerHooks['clearTimeout']>
  private readonly random: () => number
  private timer: unknown
  private inFlight: AbortController | undefined
  /** Bumped by start/stop, so a check that settles after `stop()` is ignored. */
  private generation = 0
  private running = false
  /** Checks completed, and the last result (for snapshots and logs). */
  checks = 0
  last: CheckResult | undefined
  /** How long the last check took, ms (connect included). */
  lastMs = 0
  /** Told of every check result and its duration in ms, before any flip (checkerFor sets it). */
  onResult: ((result: CheckResult, ms: number) => void) | undefined = undefined

  constructor(
    private readonly target: CheckTarget,
    spec: CheckSpec,
    options: Partial<CheckerOptions>,
    private readonly onFlip: FlipListener,
    hooks: CheckerHooks = {}
  ) {
    const interval = options.interval ?? CHECKER_DEFAULTS.interval
    const merged: CheckerOptions = {
      ...CHECKER_DEFAULTS,
      timeout: interval,
      ...withoutUndefined(options),
      interval,
    }
    for (const key of ['interval', 'timeout'] as const) {
      if (!(Number.isFinite(merged[key]) && merged[key] > 0))
        throw new RangeError(`health check ${key} must be > 0, got ${merged[key]}`)
    }
    if (!(merged.jitter >= 0 && merged.jitter < 1))
      throw new RangeError(`health check jitter must be in [0, 1), got ${merged.jitter}`)
    this.options = Object.freeze(merged)
    this.state = new HealthState(merged.rise, merged.fall, merged.initiallyUp)
    this.check = checkOf(spec)
    this.setTimer = hooks.setTimeout ?? setTimeout
    this.clearTimer = hooks.clearTimeout ?? clearTimeout
    this.random = hooks.random ?? Math.random
  }

  get up(): boolean {
    return this.state.up
  }

  start(): void {
    if (this.running) return
    this.running = true
    this.generation++
    this.schedule(this.random() * this.options.interval)
  }

  stop(): void {
    if (!this.running) return
    this.running = false
    this.generation++
    if (this.timer !== undefined) this.clearTimer(this.timer)
    this.timer = undefined
    this.inFlight?.abort()
    this.inFlight = undefined
  }

  private schedule(ms: number): void {
    const timer = this.setTimer(() => void this.tick(), ms)
    timer.unref?.()
    this.timer = timer
  }

  private async tick(): Promise<void> {
    this.timer = undefined
    const generation = this.generation
    const controller = new AbortController()
    this.inFlight = controller
    const started = performance.now()
    const result = await this.check(this.target, this.options.timeout, controller.signal)
    if (generation !== this.generation) return
    this.inFlight = undefined
    this.checks++
    this.last = result
    this.lastMs = performance.now() - started
    this.onResult?.(result, this.lastMs)
    const { interval, jitter } = this.options
    this.schedule(interval * (1 + jitter * (2 * this.random() - 1)))
    const flip = this.state.observe(result.ok)
    if (flip !== undefined) this.onFlip(flip === 'up', result.reason)
  }
}

function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}

/** The check a listener's `healthCheck` setting asks for; undefined for `none`. */
export function checkSpecOf(hc: ListenerConfig['healthCheck']): CheckSpec | undefined {
  switch (hc.type) {
    case 'none':
      return undefined
    case 'http':
      return { type: 'http', path: hc.path, expectStatus: hc.expectStatus }
    case 'send-expect':
      return {
        type: 'send-expect',
        ...(hc.send !== undefined ? { send: hc.send } : {}),
        ...(hc.sendHex !== undefined ? { sendHex: hc.sendHex } : {}),
        expect: hc.expect ?? '',
        expectRegex: hc.expectRegex,
      }
    case 'tcp':
      return { type: 'tcp' }
    default: {
      // A protocol's own check (lib/protocols/): `redis`, `memcached`…
      const own = protocolCheck(hc.type)
      return own === undefined ? undefined : { type: 'custom', name: own.name, check: own.check }
    }
  }
}

/**
 * A checker for one backend per a listener's `healthCheck`, not started; undefined for `none`.
 * It starts from the backend's current health, so a backend found down before a reload stays down
 * until it passes `rise` checks (and its flip back up is seen).
 */
export function checkerFor(
  backend: CheckTarget & { readonly checkedUp: boolean; readonly checks?: CheckRecord },
  hc: ListenerConfig['healthCheck'],
  onFlip: FlipListener
): HealthChecker | undefined {
  const spec = checkSpecOf(hc)
  if (spec === undefined) return undefined
  const checker = new HealthChecker(
    { host: backend.host, port: backend.port },
    spec,
    {
      interval: hc.interval,
      timeout: hc.timeout ?? hc.interval,
      rise: hc.rise,
      fall: hc.fall,
      initiallyUp: backend.checkedUp,
    },
    onFlip
  )
  const record = backend.checks
  if (record !== undefined) checker.onResult = (result, ms) => recordCheck(record, result, ms)
  return checker
}

/** Count a check result into a backend's record and keep it as the last one. */
export function recordCheck(record: CheckRecord, result: CheckResult, ms: number, now = Date.now()): void {
  if (result.ok) record.passed++
  else record.failed++
  record.last = { ok: result.ok, reason: result.reason, ms, at: now }
}
