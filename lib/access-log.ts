/**
 * The access log: one line per session when it ends (`log.access: true`), in the manner of
 * HAProxy's `option tcplog`. The listener builds it from what the session exposes at its end
 * (`Listener.closed`); nothing here runs, and nothing is allocated for it, when it is off.
 *
 * The termination code is two letters, HAProxy's model (README "Access log" has the table):
 *
 *   first: who or what ended the session    second: where the session was
 *     -  nobody: a normal end                  -  normal end
 *     C  the client aborted (reset, error)     C  waiting for a backend connection
 *     c  client timeout                        R  connected, nothing from the client yet
 *     S  the server failed (refused, reset,    H  the client spoke, no server byte yet
 *        closed mid-answer, none usable)       D  data: the server had sent bytes
 *     s  server timeout (connect or answer)
 *     P  Baton refused the protocol (framing)
 *     R  Baton out of resources (EMFILE...)
 *     K  killed: shutdown past its grace
 */
import type { Outcome } from './session.js'

/** What the line is built from: the session at its end (kept structural, so it is testable alone). */
export interface AccessFacts {
  outcome: Outcome
  error: Error | undefined
  /** When the first backend connection came up (ms since the epoch), 0 if none did. */
  connectedAt: number
  bytesFromClient: number
  bytesToClient: number
}

/** The first letter: who or what ended the session, and why. */
export function causeLetter(outcome: Outcome, error: Error | undefined): string {
  switch (outcome) {
    case 'done':
      return '-'
    case 'client-error':
      return 'C'
    case 'client-timeout':
    case 'client-incomplete':
      return 'c'
    case 'server-timeout':
      return 's'
    case 'connect-failed':
      return (error as { code?: string } | undefined)?.code === 'ERR_BATON_CONNECT_TIMEOUT' ? 's' : 'S'
    case 'server-error':
    case 'no-backend':
    case 'unrecoverable':
      return 'S'
    case 'framing-error':
      return 'P'
    case 'local-error':
      return 'R'
    case 'shutdown':
      return 'K'
  }
}

/** The second letter: how far the session had got. */
export function phaseLetter(f: AccessFacts): string {
  if (f.outcome === 'done') return '-'
  if (f.connectedAt === 0) return 'C'
  if (f.bytesToClient > 0) return 'D'
  return f.bytesFromClient > 0 ? 'H' : 'R'
}

export function terminationCode(f: AccessFacts): string {
  return causeLetter(f.outcome, f.error) + phaseLetter(f)
}

/** Every code's meaning, for the README table and the tests (first letter, then second). */
export const CAUSES = ['-', 'C', 'c', 'S', 's', 'P', 'R', 'K'] as const
export const PHASES = ['-', 'C', 'R', 'H', 'D'] as const
