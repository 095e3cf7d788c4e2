/**
 * Why a backend takes no new session, in words, for the log lines that say a backend went down or
 * that no other one is usable: an operator reading them at night should not have to ask the API.
 */
import type { Backend } from '../backend.js'

/** Why `b` takes no new session now, or undefined when it does. */
export function whyUnusable(b: Backend, now = Date.now()): string | undefined {
  if (b.admin === 'drain') return 'draining (admin)'
  if (b.admin === 'maint') return 'in maintenance (admin)'
  if (!b.checkedUp) return 'down (health check)'
  if (b.coolingUntil !== 0 && b.isDown(now))
    return `down for ${b.coolingUntil - now} ms more (passive: ${b.consecutiveFailures} failures in a row)`
  if (b.isFull()) return `full (${b.active} sessions, maxConnections ${b.maxConnections})`
  return undefined
}

/**
 * Each backend of `backends` but `except`, with why it is not usable (`failedHere`: it already
 * failed for this session, so the session will not go back to it).
 */
export function unusableOthers(
  backends: readonly Backend[],
  except: Backend | undefined,
  failedHere?: ReadonlySet<Backend>
): Record<string, string> {
  const now = Date.now()
  const out: Record<string, string> = {}
  for (const b of backends) {
    if (b === except) continue
    out[b.name] = whyUnusable(b, now) ?? (failedHere?.has(b) === true ? 'failed for this session' : 'usable')
  }
  return out
}

/** How many of `backends` take new sessions now. */
export function usableCount(backends: readonly Backend[]): number {
  let n = 0
  for (const b of backends) if (b.usable()) n++
  return n
}
