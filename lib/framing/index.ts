/**
 * Framers by protocol name. `opaque` with `replay: none` needs no framer at all: the session then
 * takes the plain splice path and pays nothing for replay.
 */
import type { ListenerConfig } from '../config/schema.js'
import { http1 } from './http1.js'
import { lengthPrefixed } from './length-prefixed.js'
import { opaque } from './opaque.js'
import { resp } from './resp.js'
import type { FramerFactory } from './types.js'

export * from './types.js'

export function framerFor(config: ListenerConfig): FramerFactory | undefined {
  switch (config.protocol) {
    case 'opaque':
      return config.replay.mode === 'none' ? undefined : opaque
    case 'length-prefixed':
      return lengthPrefixed(config.framing)
    case 'http1':
      return http1()
    case 'resp':
      return resp()
  }
}
