/**
 * The protocol registry (lib/protocols/types.ts): one module per protocol, each in its own folder.
 * Its names feed the config schema (`protocol`), `--protocol` and its help text; its option
 * schemas become listener keys; its health checks become `healthCheck.type` values. Adding a
 * protocol is a folder, an import and an entry in MODULES below.
 */
import { http1Protocol } from './http1/index.js'
import { lengthPrefixedProtocol } from './length-prefixed/index.js'
import { memcachedProtocol } from './memcached/index.js'
import { opaqueProtocol } from './opaque/index.js'
import { respProtocol } from './resp/index.js'
import type { ProtocolModule } from './types.js'

export type { ProtocolListener, ProtocolModule } from './types.js'

/** In the order `--help` lists them; the first is the default. */
const MODULES = [
  opaqueProtocol,
  lengthPrefixedProtocol,
  http1Protocol,
  respProtocol,
  memcachedProtocol,
] as const

type Module = (typeof MODULES)[number]
export type ProtocolName = Module['name']

export const PROTOCOL_NAMES = MODULES.map((m) => m.name) as unknown as readonly [
  ProtocolName,
  ...ProtocolName[],
]

const BY_NAME: ReadonlyMap<string, ProtocolModule> = new Map(MODULES.map((m) => [m.name, m]))

/** The module for a (validated) protocol name. */
export function protocolOf(name: string): ProtocolModule {
  const m = BY_NAME.get(name)
  if (m === undefined) throw new TypeError(`unknown protocol "${name}"`)
  return m
}

type WithOptions = Extract<Module, { readonly optionsKey: string }>

/** Each protocol's option schema under its key, to spread into the listener schema. */
export const PROTOCOL_OPTIONS = Object.fromEntries(
  MODULES.flatMap((m) => ('optionsKey' in m ? [[m.optionsKey, m.options]] : []))
) as { [M in WithOptions as M['optionsKey']]: M['options'] }

type WithCheck = Extract<Module, { readonly healthCheck: unknown }>
export type ProtocolCheckName = WithCheck['healthCheck']['name']

/** The protocols' own health checks, by `healthCheck.type` name. */
export const PROTOCOL_CHECKS = MODULES.flatMap((m) =>
  'healthCheck' in m ? [m.healthCheck.name] : []
) as ProtocolCheckName[]

export function protocolCheck(name: string): ProtocolModule['healthCheck'] {
  for (const m of MODULES) if ('healthCheck' in m && m.healthCheck.name === name) return m.healthCheck
  return undefined
}

/** `--help` text: the names, the default first. */
export const PROTOCOL_HELP = PROTOCOL_NAMES.join(', ')
