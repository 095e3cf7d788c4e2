/**
 * Baton's library API. `createBalancer(config)` validates the config and returns a Balancer:
 * `listen()`, `close(graceMs?)`, `sessions()`, `counters()`, `listenerSnapshots()` and events.
 */
export { createBalancer, Balancer } from './balancer.js'
export { startAdmin } from './admin/server.js'
export type { AdminOptions, AdminServer } from './admin/server.js'
export type {
  BalancerOptions,
  Counters,
  ListenerSnapshot,
  BackendFailureEvent,
  SessionCloseEvent,
  ReloadResult,
} from './balancer.js'
export type { Config, ConfigInput, ListenerConfig, BackendConfig } from './config/schema.js'
export { configSchema } from './config/schema.js'
export { validateConfig } from './config/validate.js'
export {
  BatonError,
  ConfigError,
  ListenError,
  ClusterError,
  BackendError,
  ClientError,
  FramingError,
  LimitError,
  NativePlaneError,
  CODES,
  OUTCOME_CODES,
  UNRECOVERABLE,
  isErrorCode,
  type ErrorCode,
  type ErrorKind,
  type ErrorSide,
  type UnrecoverableReason,
} from './errors.js'
export type { SessionSnapshot, SessionState } from './table.js'
export type { BackendSnapshot } from './backend.js'
export type { Outcome } from './session.js'
export { ALGORITHMS, type AlgorithmName } from './balancing/types.js'
