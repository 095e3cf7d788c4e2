/** A PROXY protocol header (v1 or v2), as received from a trusted upstream or sent to a backend. */
export interface ProxyHeader {
  version: 1 | 2
  /** `local`: the upstream's own connection (a health check); its addresses are not a client's. */
  command: 'proxy' | 'local'
  /** `unknown` (v1 `UNKNOWN`, v2 AF_UNSPEC) carries no address. */
  family: 'tcp4' | 'tcp6' | 'unix' | 'unknown'
  sourceAddress?: string
  sourcePort?: number
  destinationAddress?: string
  destinationPort?: number
  /** v2 type-length-value extensions, kept as received (ALPN, authority, unique id, SSL…). */
  tlvs?: { type: number; value: Buffer }[]
}
