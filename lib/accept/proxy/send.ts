/**
 * `sendProxy`: the PROXY protocol header Baton writes first on every server connection of a
 * session: the first one, each replacement after a failover, and a warm pooled connection at the
 * moment it is taken (before any byte of the session). It names the session's client (the real
 * one, after `acceptProxy`) and the address the client connected to, and passes on the TLVs of a
 * v2 header received.
 *
 * A connection that was sent a header belongs to that client for its whole life, so it is never
 * given back to the warm pool (`pool.reuse`) and a pooled connection is only ever one that has
 * carried nothing yet (session.ts). Backends that close idle connections which sent no header in
 * time (nginx's `proxy_protocol_timeout`, HAProxy's `timeout client`) need a `pool.maxAge` below that.
 */
import type { Socket } from 'node:net'
import type { Backend } from '../../backend.js'
import type { ListenerConfig } from '../../config/schema.js'
import type { AcceptContext } from '../types.js'
import { encodeV1, encodeV2 } from './codec.js'

export type ProxyVersion = 'v1' | 'v2'

/** Which backends get a header, and which version; undefined when none does (the usual case). */
export function proxyVersions(
  config: ListenerConfig,
  backends: readonly Backend[]
): Map<Backend, ProxyVersion> | undefined {
  let out: Map<Backend, ProxyVersion> | undefined
  // `backends` is built from `config.backends`, in order (listener.ts).
  config.backends.forEach((bc, i) => {
    const v = bc.sendProxy ?? config.sendProxy
    if (v === undefined || v === 'none') return
    ;(out ??= new Map()).set(backends[i]!, v)
  })
  return out
}


/** The header for a session's client, from what the accept stages found or from its socket. */
export function proxyHeader(version: ProxyVersion, client: Socket, accept: AcceptContext | undefined): Buffer {
  const a =
    accept !== undefined
      ? {
          sourceAddress: accept.clientAddress,
          sourcePort: accept.clientPort,
          destinationAddress: accept.localAddress,
          destinationPort: accept.localPort,
          tlvs: accept.proxy?.tlvs,
        }
      : {
          sourceAddress: client.remoteAddress ?? '',
          sourcePort: client.remotePort ?? 0,
          destinationAddress: client.localAddress ?? '',
          destinationPort: client.localPort ?? 0,
        }
  return version === 'v1' ? encodeV1(a) : encodeV2(a)
}
