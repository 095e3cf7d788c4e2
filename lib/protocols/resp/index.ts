/**
 * `resp`: Redis, RESP2 and RESP3 (lib/framing/resp/): reads and idempotent writes are re-sent,
 * session state (AUTH, SELECT…) is replayed first on a new connection; health check `redis`.
 */
import { resp } from '../../framing/resp.js'
import { redisCheck } from '../../health/checks.js'
import { byteResume } from '../../replay/byte-resume.js'
import type { ProtocolModule } from '../types.js'
import { DEFAULTS } from '../../framing/resp/wire.js'

export const respProtocol = {
  name: 'resp',
  summary: 'Redis (RESP2/3): reads and idempotent writes are re-sent, AUTH/SELECT replayed',
  framer: () => resp(),
  resume: byteResume,
  healthCheck: { name: 'redis', check: redisCheck },
  defaults: { requests: true, onDown: 'migrate', onDrain: 'migrate' },
  // The plane follows plain commands and RESP2 replies; the rest, and every failure, is JavaScript's.
  native: true,
  nativeFraming: { resp: { maxBulkBytes: DEFAULTS.maxBulkBytes } },
} as const satisfies ProtocolModule
