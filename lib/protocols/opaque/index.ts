/**
 * `opaque`: no protocol knowledge, turn-taking only (lib/framing/opaque.ts). With `replay: none`
 * no framer at all: the session takes the plain splice path and pays nothing for replay.
 */
import { opaque } from '../../framing/opaque.js'
import type { ProtocolModule } from '../types.js'

export const opaqueProtocol = {
  name: 'opaque',
  summary: 'turn-taking only: a request is the client bytes since the server last spoke (default)',
  framer: (listener) => (listener.replay.mode === 'none' ? undefined : opaque),
  defaults: { requests: false, onDown: 'keep', onDrain: 'finish' },
  native: true,
} as const satisfies ProtocolModule
