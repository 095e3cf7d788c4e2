/**
 * `length-prefixed`: binary protocols whose every message carries its length, one response per
 * request (lib/framing/length-prefixed.ts). Options under the listener's `framing` key.
 */
import { z } from 'zod'
import { int, size } from '../../config/fields.js'
import { lengthPrefixed } from '../../framing/length-prefixed.js'
import { byteResume } from '../../replay/byte-resume.js'
import type { ProtocolModule } from '../types.js'

/** Frame layout: [lengthOffset bytes][length field][body]. */
const options = z
  .strictObject({
    /** Size of the length field. */
    lengthBytes: z
      .union([z.literal(1), z.literal(2), z.literal(4), z.literal(8)], { error: 'expected 1, 2, 4 or 8' })
      .default(4),
    littleEndian: z.boolean().default(false),
    /** Whether the length counts the header (offset + length field) as well as the body. */
    lengthIncludesHeader: z.boolean().default(false),
    /** Bytes before the length field (a type or flags field), part of the header. */
    lengthOffset: int(0, 16).default(0),
    /** A frame over this size closes the session (logged and counted). */
    maxFrameBytes: size.default(16 * 1024 * 1024),
  })
  .prefault({})

export const lengthPrefixedProtocol = {
  name: 'length-prefixed',
  summary: 'binary messages that carry their own length, one response per request',
  optionsKey: 'framing',
  options,
  framer: (listener) => lengthPrefixed(listener.framing as z.output<typeof options>),
  resume: byteResume,
  defaults: { requests: true, onDown: 'migrate', onDrain: 'migrate' },
  native: false,
} as const satisfies ProtocolModule
