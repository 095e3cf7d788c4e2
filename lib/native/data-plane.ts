/**
 * Which data plane a listener's sessions run on (`dataPlane: auto | js | native`), decided once per
 * listener from its configuration and whether the addon loaded (lib/native/plane.ts).
 *
 * - `js`: always the JavaScript plane.
 * - `native`: the native splice plane; the config is refused (schema.ts) when the protocol parses
 *   bytes or the addon is not there, so by the time a listener is built it is available.
 * - `auto`: native where the addon loaded, the protocol's module can be carried natively (`native`
 *   in lib/protocols/types.ts: opaque, and http1 and resp, which the plane follows and hands to
 *   JavaScript whenever it cannot) and the platform is Linux (the loader says no elsewhere); js
 *   otherwise. The default.
 *
 * The other framers that parse bytes (memcached, length-prefixed) need the bytes in user
 * space and always run on the JavaScript plane.
 */
import { availableParallelism } from 'node:os'
import type { Logger } from 'pino'
import { protocolOf } from '../protocols/index.js'
import { loadNativePlane, MAX_PLANE_THREADS, type NativePlane, type NativePlaneLoad } from './plane.js'

/** What of a listener's `sendProxy` the plane choice reads (the native plane cannot write a header). */
interface ProxyOut {
  readonly sendProxy?: string | undefined
  readonly backends?: readonly { readonly sendProxy?: string | undefined }[]
}

/** Whether a PROXY header goes to any backend: those sessions stay on the JavaScript plane. */
function sendsProxy(c: ProxyOut): boolean {
  return (c.backends ?? []).some((b) => (b.sendProxy ?? c.sendProxy ?? 'none') !== 'none')
}

export const DATA_PLANES = ['auto', 'js', 'native'] as const
export type DataPlaneOption = (typeof DATA_PLANES)[number]
export type DataPlane = 'native' | 'js'

export interface ResolvedPlane {
  plane: DataPlane
  /** The loaded addon, when `plane` is native. */
  native: NativePlane | undefined
  /** Why a listener that could have run natively runs on js (the addon's absence), if so. */
  reason: string | undefined
}

/** The protocol's module says the plane can carry it (it moves bytes and parses none: opaque). */
function carriesNatively(protocol: string): boolean {
  try {
    return protocolOf(protocol).native
  } catch {
    return false // an unknown name: the schema reports it
  }
}

/** The plane for a listener's `dataPlane` and `protocol`. */
export function resolveDataPlane(
  config: { readonly dataPlane: DataPlaneOption; readonly protocol: string } & ProxyOut,
  load: NativePlaneLoad = loadNativePlane()
): ResolvedPlane {
  if (config.dataPlane === 'js' || !carriesNatively(config.protocol) || sendsProxy(config))
    return { plane: 'js', native: undefined, reason: undefined }
  if (load.plane === undefined) return { plane: 'js', native: undefined, reason: load.reason }
  return { plane: 'native', native: load.plane, reason: undefined }
}

/**
 * Why `dataPlane: native` cannot be had for this listener, or undefined when it can: the config
 * check's message (schema.ts), which names the loader's reason.
 */
export function nativeRefusal(config: { readonly protocol: string } & ProxyOut): string | undefined {
  if (!carriesNatively(config.protocol))
    return `the native plane carries opaque, http1 and resp only; protocol ${config.protocol} parses its bytes and runs on the JavaScript plane (dataPlane: auto or js)`
  if (sendsProxy(config))
    return 'sendProxy writes a PROXY header on every server connection, which the native plane does not do yet: use dataPlane auto or js'
  const load = loadNativePlane()
  return load.plane === undefined ? `the native plane is not available: ${load.reason}` : undefined
}

let said = false

/**
 * Say once per process, at start, that the addon is not there and why, when a listener would
 * otherwise have used it (an `auto` opaque listener).
 */
export function sayIfUnavailable(
  log: Logger,
  listeners: readonly { readonly dataPlane: DataPlaneOption; readonly protocol: string }[]
): void {
  if (said) return
  const load = loadNativePlane()
  if (load.plane !== undefined) return
  if (!listeners.some((l) => l.dataPlane === 'auto' && carriesNatively(l.protocol))) return
  said = true
  log.info(
    { reason: load.reason },
    'native data plane not available: opaque listeners run on the JavaScript plane'
  )
}

/**
 * `nativeThreads` as a number: `auto` is the CPUs this process may use shared out between the
 * `workers` processes (`auto` workers: one per CPU, so one thread each), at least 1, at most
 * MAX_PLANE_THREADS. An experienced HAProxy user's expectation: threads × processes ≈ cores.
 */
export function resolveNativeThreads(
  config: { readonly nativeThreads: 'auto' | number; readonly workers?: 'auto' | number | undefined },
  cpus = availableParallelism()
): number {
  if (config.nativeThreads !== 'auto') return config.nativeThreads
  const processes = config.workers === 'auto' ? cpus : (config.workers ?? 1)
  return Math.min(MAX_PLANE_THREADS, Math.max(1, Math.floor(cpus / processes)))
}

/**
 * Give the plane its thread count (at start and at each reload; new sessions follow it). Returns
 * the count, or undefined when the addon is not loaded.
 */
export function applyNativeThreads(
  config: Parameters<typeof resolveNativeThreads>[0],
  load: NativePlaneLoad = loadNativePlane()
): number | undefined {
  if (load.plane === undefined) return undefined
  const threads = resolveNativeThreads(config)
  load.plane.configure({ threads })
  return threads
}
