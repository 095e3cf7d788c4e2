/**
 * The TLS routing accept stage: waits (bounded in time and size) for the client's ClientHello,
 * reads its server name and ALPN without terminating TLS, and chooses the backend group
 * (routes.ts). It only peeks: the hello's bytes stay in the context's head and go to the backend
 * untouched, and the opaque framer then pins the session once the server answers it
 * (lib/framing/client-first.ts).
 *
 * Refusals, each counted per reason by the accept pipeline and logged at most once a second:
 *   tls-hello-timeout  no whole hello within `tls.helloTimeout` (a client that never sends one)
 *   tls-too-large      the hello would pass `tls.maxHelloBytes`
 *   tls-malformed      a handshake record that is no well-formed ClientHello
 *   tls-not-tls        the first bytes are not TLS (with `nonTls: refuse`, the default)
 *   tls-no-hello       the client ended (FIN, reset) before its hello was whole
 */
import type { AcceptContext, AcceptStage } from '../accept/types.js'
import type { ListenerConfig } from '../config/schema.js'
import { parseClientHello } from './client-hello.js'
import { compileRoutes, type Router } from './routes.js'

export const TLS_REFUSALS = ['tls-hello-timeout', 'tls-too-large', 'tls-malformed', 'tls-not-tls', 'tls-no-hello'] as const
export type TlsRefusal = (typeof TLS_REFUSALS)[number]

/** What this stage needs of the accept context. */
export type HelloContext = Pick<AcceptContext, 'serverName' | 'alpn' | 'group' | 'more' | 'peek'>

export type TlsConfig = NonNullable<ListenerConfig['tls']>

export class TlsRouteStage implements AcceptStage {
  readonly name = 'tls'
  readonly readTimeout: number
  readonly maxBytes: number
  private readonly route: Router
  private readonly config: TlsConfig

  constructor(config: TlsConfig) {
    this.config = config
    this.readTimeout = config.helloTimeout
    this.maxBytes = config.maxHelloBytes
    this.route = compileRoutes(config.routes, config.defaultGroup)
  }

  run(ctx: HelloContext): TlsRefusal | undefined | Promise<TlsRefusal | undefined> {
    // Bytes may already be there (read with an earlier stage's): decide without a tick if so.
    const now = this.decide(ctx)
    if (now !== 'more') return now
    return this.wait(ctx)
  }

  private async wait(ctx: HelloContext): Promise<TlsRefusal | undefined> {
    // Bounded: every turn reads at least one byte or ends; `more()` ends at the deadline and the size bound.
    for (;;) {
      const r = await ctx.more()
      const v = this.decide(ctx)
      if (v !== 'more') return v
      if (r === 'timeout') return 'tls-hello-timeout'
      if (r === 'full') return 'tls-too-large'
      if (r === 'end') return 'tls-no-hello'
    }
  }

  /** The verdict on the bytes so far, or `more`. */
  private decide(ctx: HelloContext): TlsRefusal | undefined | 'more' {
    const head = ctx.peek()
    if (head.length === 0) return 'more'
    const hello = parseClientHello(head, this.maxBytes)
    switch (hello.kind) {
      case 'more':
        return 'more'
      case 'not-tls':
        if (this.config.nonTls === 'refuse') return 'tls-not-tls'
        ctx.group = this.config.defaultGroup
        return undefined
      case 'malformed':
        return 'tls-malformed'
      case 'too-large':
        return 'tls-too-large'
      case 'hello':
        if (hello.serverName !== undefined) ctx.serverName = hello.serverName
        if (hello.alpn.length > 0) ctx.alpn = [...hello.alpn]
        ctx.group = this.route(hello.serverName, hello.alpn)
        return undefined
    }
  }
}

/** The stage for a listener with `tls`, or undefined. */
export function tlsStage(config: ListenerConfig): TlsRouteStage | undefined {
  return config.tls === undefined ? undefined : new TlsRouteStage(config.tls)
}
