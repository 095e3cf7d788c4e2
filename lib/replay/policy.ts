/**
 * May the requests in flight on a failed server connection be re-sent elsewhere? A pure function of
 * what the session knows at that moment, unit-tested without sockets (tests/replay/policy.test.ts).
 * The answer is the reason it may not (a bounded label for the log and the `unrecoverable` count),
 * or undefined when it may. Where to: the balancer's pick, avoiding every backend that already
 * failed this session (`Session.failed`), as on a first connect.
 */
import type { UnrecoverableReason } from '../errors.js'

export type ReplayMode = 'safe' | 'all' | 'none'

export interface FailureFacts {
  /** The listener's `replay` mode. */
  readonly mode: ReplayMode
  /** The session still records its unanswered requests (false past `replay.maxBytes`). */
  readonly recording: boolean
  /** Every unanswered request may be re-sent under `replay: safe`. */
  readonly pendingSafe: boolean
  /** Part of the response was already forwarded to the client. */
  readonly partial: boolean
  /** The framer delimits responses (a cut one can be resumed verified). */
  readonly delimited: boolean
  /** Times the oldest unanswered request has been sent already. */
  readonly attempts: number
  /** `replay.maxAttempts`. */
  readonly maxAttempts: number
}

/**
 * The reasons a failure cannot be hidden, as logged and counted: labels of the `UNRECOVERABLE`
 * table (lib/errors.ts), which says what each means.
 */
export const NOT_REPLAYABLE = {
  off: 'replay-off',
  overBound: 'replay-over-budget',
  unsafe: 'unsafe-request',
  partialOpaque: 'partial-response',
  attempts: 'max-attempts',
} as const satisfies Record<string, UnrecoverableReason>

export type NotReplayable = (typeof NOT_REPLAYABLE)[keyof typeof NOT_REPLAYABLE]

export function whyNotReplay(f: FailureFacts): NotReplayable | undefined {
  if (f.mode === 'none') return NOT_REPLAYABLE.off
  if (!f.recording) return NOT_REPLAYABLE.overBound
  if (f.mode === 'safe' && !f.pendingSafe) return NOT_REPLAYABLE.unsafe
  if (f.partial && !f.delimited) return NOT_REPLAYABLE.partialOpaque
  if (f.attempts + 1 >= f.maxAttempts) return NOT_REPLAYABLE.attempts
  return undefined
}
