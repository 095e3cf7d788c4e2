/**
 * Errors with stable codes, in the manner of Node's `ERR_*` table and undici's `lib/core/errors.js`:
 * callers and tests branch on `code` (or on the subclass), never on the message.
 *
 * One table, `CODES`, holds every code Baton raises, and for each: the kind (which subclass raises
 * it), the side it comes from, whether a retry makes sense, and what it means. `ErrorCode` is its
 * keys, so a code that is not in the table is a compile error, and each subclass takes only the
 * codes of its own kind. docs/errors.md lists the table for operators (tests/errors.test.ts checks
 * that the list and the table agree).
 *
 *   side       where the failure came from (as Pingora's ErrorSource): the `client`, a `server`
 *              (a backend), Baton itself (`internal`: its own limits, resources, processes), or the
 *              operator's `config`. `peer` in the table: the side whose bytes it was (a framing
 *              error in a request is the client's, in a response the server's); the instance says
 *              which.
 *   retryable  the same request, sent again now on another server connection, may succeed: true
 *              for a server's transient failures (what failover does); false for everything an
 *              operator or the client must change first.
 *
 * How a session ended (`Outcome` in lib/session.ts) is a separate, coarser label: an outcome
 * counts sessions, a code names one error. `OUTCOME_CODES` below maps each outcome to the codes
 * that may be a session's `error` when it ends so (socket errors from Node, `ECONNRESET` and the
 * like, carry Node's own codes and are not in this table).
 */
import type { Outcome } from './session.js'

export type ErrorSide = 'client' | 'server' | 'internal' | 'config'

/** The kinds a caller branches on: one subclass each. */
export type ErrorKind = 'config' | 'listen' | 'cluster' | 'backend' | 'client' | 'framing' | 'limit' | 'native'

interface CodeInfo {
  readonly kind: ErrorKind
  readonly side: ErrorSide | 'peer'
  readonly retryable: boolean
  readonly meaning: string
}

export const CODES = {
  // Start-up and configuration: the operator must change something.
  ERR_BATON_CONFIG: {
    kind: 'config',
    side: 'config',
    retryable: false,
    meaning: 'The configuration (file, flags or the object given to createBalancer) is invalid; `issues` has one line per problem.',
  },
  ERR_BATON_ADMIN: {
    kind: 'config',
    side: 'config',
    retryable: false,
    meaning: 'An admin server option is invalid (port, token, a non-loopback address without a token, history size).',
  },
  ERR_BATON_LISTEN: {
    kind: 'listen',
    side: 'internal',
    retryable: false,
    meaning: 'A listening address could not be bound (in use, permission, not on this machine), or a worker could not start its listeners.',
  },
  ERR_BATON_WORKERS: {
    kind: 'cluster',
    side: 'internal',
    retryable: false,
    meaning: 'With --workers: a worker exited during start-up, or the workers were not all listening in time.',
  },
  ERR_BATON_INHERIT: {
    kind: 'cluster',
    side: 'config',
    retryable: false,
    meaning: 'Listening sockets passed by systemd or an upgrade (LISTEN_FDS) cannot be used with --workers without NODE_CLUSTER_SCHED_POLICY=none.',
  },
  ERR_BATON_RELOAD: {
    kind: 'cluster',
    side: 'internal',
    retryable: false,
    meaning: 'With --workers: no worker could apply a new configuration (the old one stays).',
  },
  // A session's server side.
  ERR_BATON_SERVER_EOF: {
    kind: 'backend',
    side: 'server',
    retryable: true,
    meaning: 'The server closed its connection (FIN); a failure when a request was unanswered.',
  },
  ERR_BATON_CONNECT_TIMEOUT: {
    kind: 'backend',
    side: 'server',
    retryable: true,
    meaning: 'A connect to a backend did not complete within connectTimeout.',
  },
  ERR_BATON_RESPONSE_TIMEOUT: {
    kind: 'backend',
    side: 'server',
    retryable: true,
    meaning: 'A server did not answer a request within responseTimeout.',
  },
  ERR_BATON_NO_BACKEND: {
    kind: 'backend',
    side: 'server',
    retryable: false,
    meaning: 'No backend was usable for the session (all down, in maintenance, full, or already failed it).',
  },
  ERR_BATON_PROLOGUE: {
    kind: 'backend',
    side: 'server',
    retryable: false,
    meaning: "A replacement server refused the session's state (a Redis AUTH or SELECT replayed on failover).",
  },
  ERR_BATON_RESUME_MISMATCH: {
    kind: 'backend',
    side: 'server',
    retryable: false,
    meaning: "A replacement server's response differs from the part of the response the client already has.",
  },
  // A session's client side.
  ERR_BATON_FIRST_BYTE_TIMEOUT: {
    kind: 'client',
    side: 'client',
    retryable: false,
    meaning: 'A new client sent nothing within firstByteTimeout.',
  },
  ERR_BATON_REQUEST_TIMEOUT: {
    kind: 'client',
    side: 'client',
    retryable: false,
    meaning: 'A request was not whole within requestTimeout.',
  },
  // Either side's bytes.
  ERR_BATON_FRAME_TOO_LARGE: {
    kind: 'framing',
    side: 'peer',
    retryable: false,
    meaning: "A request or response is over the protocol's size limit (maxHeadBytes, maxFrameBytes, maxBulkBytes...).",
  },
  ERR_BATON_FRAME_MALFORMED: {
    kind: 'framing',
    side: 'peer',
    retryable: false,
    meaning: 'A request or response breaks its protocol, or a response came with no request for it.',
  },
  // Baton's own limits.
  ERR_BATON_QUEUE: {
    kind: 'limit',
    side: 'internal',
    retryable: false,
    meaning: 'A client waiting in the listener queue for a full backend was turned away (queue full or its wait timed out).',
  },
  // The native splice plane (lib/native/, native/plane.c). The addon throws the codes it owns as
  // plain Errors with `code` set; NativePlaneError raises the ones its JavaScript side checks.
  ERR_NATIVE_PLANE_SOCKET: {
    kind: 'native',
    side: 'internal',
    retryable: false,
    meaning: 'A socket given to the native plane has no usable descriptor (not connected, or not a TCP or unix socket).',
  },
  ERR_NATIVE_PLANE_BUFFERED: {
    kind: 'native',
    side: 'internal',
    retryable: false,
    meaning: 'A socket given to the native plane still has bytes queued in Node.',
  },
  ERR_NATIVE_PLANE_SESSION: {
    kind: 'native',
    side: 'internal',
    retryable: false,
    meaning: 'The native plane has no such session (closed or never opened).',
  },
  ERR_NATIVE_PLANE_CLOSED: {
    kind: 'native',
    side: 'internal',
    retryable: false,
    meaning: 'A native session closed on its plane thread and its close event is on its way: it cannot move to another server.',
  },
  ERR_NATIVE_PLANE_NOT_REPLAYABLE: {
    kind: 'native',
    side: 'internal',
    retryable: false,
    meaning: 'A native session cannot move to a new server: unanswered bytes were past its replay bound.',
  },
  ERR_NATIVE_PLANE_SYSCALL: {
    kind: 'native',
    side: 'internal',
    retryable: false,
    meaning: 'A system call of the native plane failed (pipe, epoll...).',
  },
  ERR_NATIVE_PLANE_INIT: {
    kind: 'native',
    side: 'internal',
    retryable: false,
    meaning: 'The native plane could not start in this process (no event loop, no /dev/null, a libuv handle failed).',
  },
  ERR_NATIVE_PLANE_NO_CALLBACK: {
    kind: 'native',
    side: 'internal',
    retryable: false,
    meaning: 'The native plane was used before its event callback was set.',
  },
  ERR_INVALID_ARG_VALUE: {
    kind: 'native',
    side: 'internal',
    retryable: false,
    meaning: "An argument to the native plane is out of range (Node's own code, as the addon's argument checks use it).",
  },
  ERR_INVALID_ARG_TYPE: {
    kind: 'native',
    side: 'internal',
    retryable: false,
    meaning: "An argument to the native plane has the wrong type (Node's own code, from the addon's argument checks).",
  },
} as const satisfies Record<string, CodeInfo>

export type ErrorCode = keyof typeof CODES

/** The codes of one kind: what its subclass's constructor takes. */
export type CodeOf<K extends ErrorKind> = {
  [C in ErrorCode]: (typeof CODES)[C]['kind'] extends K ? C : never
}[ErrorCode]

/**
 * The codes a session's `error` may carry when it ends with each outcome (lib/session.ts), the one
 * place the two taxonomies meet. Socket errors from Node (`ECONNRESET`, `ECONNREFUSED`, `EPIPE`,
 * `EMFILE`...) and the native plane's reports of them keep Node's codes and are not listed; an
 * outcome may also end with no error at all (`done`, a timeout of the sweep, a FIN).
 */
export const OUTCOME_CODES = {
  done: [],
  'client-error': [],
  'server-error': ['ERR_BATON_SERVER_EOF', 'ERR_BATON_RESPONSE_TIMEOUT'],
  'client-timeout': ['ERR_BATON_FIRST_BYTE_TIMEOUT', 'ERR_BATON_REQUEST_TIMEOUT'],
  'server-timeout': ['ERR_BATON_RESPONSE_TIMEOUT'],
  'no-backend': ['ERR_BATON_NO_BACKEND', 'ERR_BATON_QUEUE'],
  'connect-failed': ['ERR_BATON_CONNECT_TIMEOUT'],
  unrecoverable: [
    'ERR_BATON_NO_BACKEND',
    'ERR_BATON_CONNECT_TIMEOUT',
    'ERR_BATON_RESPONSE_TIMEOUT',
    'ERR_BATON_SERVER_EOF',
    'ERR_BATON_PROLOGUE',
    'ERR_BATON_RESUME_MISMATCH',
    'ERR_NATIVE_PLANE_NOT_REPLAYABLE',
  ],
  'framing-error': ['ERR_BATON_FRAME_TOO_LARGE', 'ERR_BATON_FRAME_MALFORMED'],
  'client-incomplete': ['ERR_BATON_SERVER_EOF', 'ERR_BATON_RESPONSE_TIMEOUT'],
  'local-error': [
    'ERR_NATIVE_PLANE_SYSCALL',
    'ERR_NATIVE_PLANE_SOCKET',
    'ERR_NATIVE_PLANE_BUFFERED',
    'ERR_NATIVE_PLANE_SESSION',
  ],
  shutdown: [],
} as const satisfies Record<Outcome, readonly ErrorCode[]>

/**
 * Why a server's failure could not be hidden from the client (the session then ends `unrecoverable`,
 * as a plain L4 proxy's would): a bounded label for the `reason` of `baton_unrecoverable_total` and
 * of the log line, and what it means. lib/replay/policy.ts gives the replay policy's five.
 */
export const UNRECOVERABLE = {
  'no-backend': 'no other backend is usable for the hand-off',
  'connect-failed': 'every connect for the hand-off failed',
  pinned: 'the session is pinned to its server (a greeting, a transaction, subscriptions, a tunnel)',
  'prologue-refused': 'the replacement server refused the session state (prologue)',
  'resume-mismatch': 'the replacement response differs from what the client already has',
  'not-resumable': 'the response was cut at a point where it cannot be resumed',
  'replay-off': 'replay is off',
  'replay-over-budget': 'the unanswered requests passed replay.maxBytes',
  'unsafe-request': 'an unanswered request is not safe to re-send',
  'partial-response': 'part of the response was already forwarded and it is not delimited',
  'max-attempts': 'replay.maxAttempts reached',
} as const

export type UnrecoverableReason = keyof typeof UNRECOVERABLE

/** Whether `code` (a string from anywhere: an Error's `code`, a log line) is one of Baton's. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(CODES, code)
}

/**
 * The base of every error Baton raises itself. Not made directly: each kind has its subclass, so
 * that `instanceof` answers the question a caller has (bad config? a backend? the client?).
 */
export abstract class BatonError extends Error {
  readonly code: ErrorCode
  readonly side: ErrorSide
  /** From the table: may the same request succeed if sent again now on another server connection. */
  readonly retryable: boolean
  protected constructor(code: ErrorCode, message: string, options?: { cause?: unknown; side?: 'client' | 'server' }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    const info: CodeInfo = CODES[code]
    this.name = 'BatonError'
    this.code = code
    // `peer` codes take the side from the instance (a framing error: whose bytes).
    this.side = info.side === 'peer' ? (options?.side ?? 'client') : info.side
    this.retryable = info.retryable
  }
}

/** The configuration (file or flags, or the admin server's options) is invalid. `issues` holds one line per problem. */
export class ConfigError extends BatonError {
  readonly issues: readonly string[]
  constructor(issues: readonly string[], code: CodeOf<'config'> = 'ERR_BATON_CONFIG') {
    super(code, issues.join('\n'))
    this.name = 'ConfigError'
    this.issues = issues
  }
}

/** A listener could not be bound (address in use, permission, no such address). */
export class ListenError extends BatonError {
  /** The listener's name; undefined when a `--workers` worker reported the failure in a message. */
  readonly listener: string | undefined
  constructor(listener: string, address: string, cause: NodeJS.ErrnoException)
  constructor(listener: undefined, message: string)
  constructor(listener: string | undefined, what: string, cause?: NodeJS.ErrnoException) {
    if (cause === undefined) {
      super('ERR_BATON_LISTEN', what)
    } else {
      const why =
        cause.code === 'EADDRINUSE'
          ? 'address already in use'
          : cause.code === 'EACCES'
            ? 'permission denied'
            : cause.code === 'EADDRNOTAVAIL'
              ? 'address not available on this machine'
              : cause.message
      super('ERR_BATON_LISTEN', `listener "${listener}" cannot bind ${what}: ${why}`, { cause })
    }
    this.name = 'ListenError'
    this.listener = listener
  }
}

/** `--workers`: the primary could not start, supervise or reload its workers. */
export class ClusterError extends BatonError {
  constructor(code: CodeOf<'cluster'>, message: string) {
    super(code, message)
    this.name = 'ClusterError'
  }
}

/** A backend failed a session, or none could take it (the `error` of a session's close). */
export class BackendError extends BatonError {
  constructor(code: CodeOf<'backend'>, message: string, options?: { cause?: unknown }) {
    super(code, message, options)
    this.name = 'BackendError'
  }
}

/** The client failed a bound Baton keeps (it went silent, or was too slow with a request). */
export class ClientError extends BatonError {
  constructor(code: CodeOf<'client'>, message: string) {
    super(code, message)
    this.name = 'ClientError'
  }
}

/**
 * A request or response could not be framed (malformed, or over a size limit). Returned, not
 * thrown, by a framer's `request()` (side `client`) and `response()` (side `server`); the session
 * closes with it as its error.
 */
export class FramingError extends BatonError {
  declare readonly code: CodeOf<'framing'>
  declare readonly side: 'client' | 'server'
  /** Bytes to send the client before closing it (HTTP: a `400 Bad Request`), for client-side errors. */
  readonly reply: Buffer | undefined
  constructor(code: CodeOf<'framing'>, side: 'client' | 'server', message: string, reply?: Buffer) {
    super(code, message, { side })
    this.name = 'FramingError'
    this.reply = reply
  }
}

/** Baton's own limits turned a client away (the listener queue). */
export class LimitError extends BatonError {
  constructor(code: CodeOf<'limit'>, message: string) {
    super(code, message)
    this.name = 'LimitError'
  }
}

/** The native splice plane refused a call (lib/native/plane.ts). */
export class NativePlaneError extends BatonError {
  constructor(code: CodeOf<'native'>, message: string, options?: { cause?: unknown }) {
    super(code, message, options)
    this.name = 'NativePlaneError'
  }
}

/**
 * The error of a server's FIN, made once: a close between turns is the common end of a session
 * under connection churn, and an Error's stack trace costs more than the rest of the decision.
 */
let SERVER_EOF: BackendError | undefined
export function serverEof(): BackendError {
  return (SERVER_EOF ??= new BackendError('ERR_BATON_SERVER_EOF', 'server closed'))
}

/**
 * An error the native plane reports for a socket: Node's shape for a socket error (`code` the
 * errno's name), as the JavaScript plane would have got from the socket, so that
 * what reads a session's error (a reset passed on as a reset, `isLocalError`, the access log) sees
 * the same on both planes.
 */
export function socketError(code: string, message: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(message)
  err.code = code
  return err
}
