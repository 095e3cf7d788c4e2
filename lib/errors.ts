/**
 * Errors with stable codes, in the manner of Node's `ERR_*` table and undici's `lib/core/errors.js`:
 * callers and tests branch on `code`, never on the message. `side` says where the failure came from.
 */
export type ErrorSide = 'client' | 'server' | 'internal' | 'config'

export class BatonError extends Error {
  readonly code: string
  readonly side: ErrorSide
  constructor(code: string, side: ErrorSide, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'BatonError'
    this.code = code
    this.side = side
  }
}

/** The configuration (file or flags) is invalid. `issues` holds one line per problem. */
export class ConfigError extends BatonError {
  readonly issues: readonly string[]
  constructor(issues: readonly string[]) {
    super('ERR_BATON_CONFIG', 'config', issues.join('\n'))
    this.name = 'ConfigError'
    this.issues = issues
  }
}

/** A listener could not be bound (address in use, permission, no such address). */
export class ListenError extends BatonError {
  readonly listener: string
  constructor(listener: string, address: string, cause: NodeJS.ErrnoException) {
    const why =
      cause.code === 'EADDRINUSE'
        ? 'address already in use'
        : cause.code === 'EACCES'
          ? 'permission denied'
          : cause.code === 'EADDRNOTAVAIL'
            ? 'address not available on this machine'
            : cause.message
    super('ERR_BATON_LISTEN', 'internal', `listener "${listener}" cannot bind ${address}: ${why}`, { cause })
    this.name = 'ListenError'
    this.listener = listener
  }
}

/**
 * The error of a server's FIN, made once: a close between turns is the common end of a session
 * under connection churn, and an Error's stack trace costs more than the rest of the decision.
 */
let SERVER_EOF: BatonError | undefined
export function serverEof(): BatonError {
  return (SERVER_EOF ??= new BatonError('ERR_BATON_SERVER_EOF', 'server', 'server closed'))
}
