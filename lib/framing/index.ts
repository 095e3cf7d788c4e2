/**
 * The framer for a listener, from its protocol module (lib/protocols/). `opaque` with `replay:
 * none` needs no framer at all: the session then takes the plain splice path and pays nothing for
 * replay.
 */
import type { ListenerConfig } from '../config/schema.js'
import { protocolOf } from '../protocols/index.js'
import type { FramerFactory } from './types.js'

export * from './types.js'

export function framerFor(config: ListenerConfig): FramerFactory | undefined {
  return protocolOf(config.protocol).framer(config)
}
