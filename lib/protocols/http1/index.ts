/**
 * `http1`: HTTP/1.0 and 1.1 (lib/framing/http1.ts), resumed by `http1Resume` (./resume.ts, around
 * lib/framing/http1-resume.ts): a cut GET is re-sent with a `Range` for the rest where it can be.
 */
import { DEFAULT_MAX_HEAD_BYTES, http1 } from '../../framing/http1.js'
import type { ProtocolModule } from '../types.js'
import { http1Resume } from './resume.js'

export const http1Protocol = {
  name: 'http1',
  summary: 'HTTP/1.x: idempotent methods and Idempotency-Key requests are re-sent, cut GETs resumed',
  framer: () => http1(),
  resume: http1Resume,
  defaults: { requests: true, onDown: 'migrate', onDrain: 'migrate' },
  // The plane follows plain keep-alive exchanges; the rest, and every failure, is JavaScript's.
  native: true,
  nativeFraming: { http1: { maxHeadBytes: DEFAULT_MAX_HEAD_BYTES } },
} as const satisfies ProtocolModule
