/**
 * Awaiters for the integration tests. Every wait is bounded: it rejects with a message naming what
 * it waited for instead of letting the file run into tap's timeout. No fixed sleeps: wait for an
 * event, or (where the thing to observe has no event, such as "the kernel stopped taking bytes")
 * poll a predicate with a bounded number of short turns.
 */
import type { EventEmitter } from 'node:events'

/** Long enough for a loaded CI machine, short enough that a hang is reported well within tap's 60 s. */
export const WAIT_MS = 10_000
/** For bulk transfers of tens of MiB, which take seconds on a busy two-core machine. */
export const BULK_MS = 45_000

/** The arguments of the next `event` from `emitter` (that passes `filter`, if given). */
export function once<A extends unknown[] = unknown[]>(
  emitter: EventEmitter,
  event: string,
  options: { timeoutMs?: number; filter?: (...args: A) => boolean } = {}
): Promise<A> {
  const { timeoutMs = WAIT_MS, filter } = options
  return new Promise<A>((resolve, reject) => {
    const onEvent = (...args: unknown[]): void => {
      if (filter !== undefined && !filter(...(args as A))) return
      clearTimeout(timer)
      emitter.off(event, onEvent)
      resolve(args as A)
    }
    const timer = setTimeout(() => {
      emitter.off(event, onEvent)
      reject(new Error(`timed out after ${timeoutMs} ms waiting for "${event}"`))
    }, timeoutMs)
    emitter.on(event, onEvent)
  })
}

/** The first `n` `event`s from `emitter`, each as its first argument. */
export function collect<T>(
  emitter: EventEmitter,
  event: string,
  n: number,
  timeoutMs = WAIT_MS
): Promise<T[]> {
  return new Promise<T[]>((resolve, reject) => {
    const got: T[] = []
    const onEvent = (arg: T): void => {
      got.push(arg)
      if (got.length < n) return
      clearTimeout(timer)
      emitter.off(event, onEvent)
      resolve(got)
    }
    const timer = setTimeout(() => {
      emitter.off(event, onEvent)
      reject(new Error(`timed out after ${timeoutMs} ms with ${got.length} of ${n} "${event}" events`))
    }, timeoutMs)
    emitter.on(event, onEvent)
  })
}

/** `promise`, or a rejection saying `what` did not happen within `timeoutMs`. */
export async function within<T>(promise: Promise<T>, what: string, timeoutMs = WAIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${timeoutMs} ms`)), timeoutMs)
  })
  try {
    return await Promise.race([promise, expired])
  } finally {
    clearTimeout(timer)
  }
}

/** Whether `promise` settles within `timeoutMs` (it is left running either way). */
export async function settlesWithin(promise: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs)
  })
  try {
    return await Promise.race([
      promise.then(
        () => true,
        () => true
      ),
      expired,
    ])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Poll `predicate` every `intervalMs` until it holds; at most `timeoutMs / intervalMs` turns. For
 * conditions with no event of their own (a socket paused, the kernel no longer taking bytes).
 */
export async function until(
  predicate: () => boolean,
  what: string,
  options: { timeoutMs?: number; intervalMs?: number } = {}
): Promise<void> {
  const { timeoutMs = WAIT_MS, intervalMs = 5 } = options
  const turns = Math.ceil(timeoutMs / intervalMs)
  const deadline = Date.now() + timeoutMs
  for (let i = 0; i < turns && Date.now() <= deadline; i++) {
    if (predicate()) return
    await new Promise<void>((resolve) => setTimeout(resolve, intervalMs))
  }
  if (predicate()) return
  throw new Error(`${what}: not within ${timeoutMs} ms`)
}
