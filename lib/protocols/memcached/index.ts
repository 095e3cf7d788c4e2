/**
 * `memcached`: the text protocol, classic and meta commands (framer.ts, commands.ts). Reads and
 * idempotent writes are re-sent, a cut `VALUE` block is resumed verified (the replacement's bytes
 * must match what the client has), health check `memcached` (`version`). Options under the
 * listener's `memcached` key; none is required, so a config without them resolves as before.
 */
import { z } from 'zod'
import { size } from '../../config/fields.js'
import { byteResume } from '../../replay/byte-resume.js'
import type { ProtocolModule } from '../types.js'
import { memcached, type MemcachedOptions } from './framer.js'
import { memcachedCheck } from './health.js'

const options = z
  .strictObject({
    /** Longest request or reply line (a multi-get's keys); default 64 KiB. */
    maxLineBytes: size.optional(),
    /** Largest data block either way; default 1 GiB (memcached's own ceiling for `-I`). */
    maxValueBytes: size.optional(),
  })
  .optional()

export const memcachedProtocol = {
  name: 'memcached',
  summary:
    'memcached text protocol (classic and meta): reads and set/delete/touch re-sent, cut VALUEs resumed',
  optionsKey: 'memcached',
  options,
  framer: (listener) => memcached(listener.memcached as MemcachedOptions | undefined),
  resume: byteResume,
  healthCheck: { name: 'memcached', check: memcachedCheck },
  defaults: { requests: true, onDown: 'migrate', onDrain: 'migrate' },
  native: false,
} as const satisfies ProtocolModule
