/**
 * Which accept stages a listener runs, in order, built from its config. A stage that needs the
 * real client address comes after the one that can rewrite it (PROXY), and routing by what the
 * client says (TLS) after the rules that may refuse it. A listener that configures none gets no
 * pipeline (`undefined`), and its accept path does no work for stages at all.
 *
 * To add a stage: a builder in BUILDERS, at its place in the order, that returns undefined when
 * the listener's config does not ask for it.
 */
import type { ListenerConfig } from '../config/schema.js'
import { tlsStage } from '../tls/stage.js'
import { blockListOf } from './cidr.js'
import { accessStage, acceptRateStage, perSourceRateStage, perSourceStage } from './limits.js'
import { acceptProxyStage } from './proxy/stage.js'
import type { AcceptStage } from './types.js'

export type { AcceptContext, AcceptStage, MoreResult, StageVerdict } from './types.js'
export { Pipeline, type PipelineHost } from './pipeline.js'
export { Refusals } from './refusals.js'

/**
 * State a listener keeps for its stages across reloads (per-source counts, token buckets): a
 * reload builds new stages, and sessions that are already live still count.
 */
export type AcceptState = Record<string, unknown>

type Builder = (config: ListenerConfig, state: AcceptState) => AcceptStage | undefined

const BUILDERS: readonly Builder[] = [
  // 0. the listener's accept rate: first, before any work is spent on the client
  (c, state) => {
    const r = c.rateLimit
    return r !== undefined && r.accept > 0 ? acceptRateStage(r.accept, r.acceptBurst ?? r.accept, state) : undefined
  },
  // 1. PROXY protocol (rewrites the client address)
  (c) =>
    c.acceptProxy === undefined
      ? undefined
      : acceptProxyStage({
          from: blockListOf(c.acceptProxy.from),
          required: c.acceptProxy.required,
          timeout: c.acceptProxy.timeout,
          checkUntrusted: c.acceptProxy.checkUntrusted ?? c.protocol !== 'opaque',
        }),
  // 2. access rules and limits, on the real client address
  (c) =>
    c.allow !== undefined || c.deny !== undefined
      ? accessStage(
          c.allow !== undefined ? blockListOf(c.allow) : undefined,
          c.deny !== undefined ? blockListOf(c.deny) : undefined
        )
      : undefined,
  (c, state) => {
    const r = c.rateLimit
    return r !== undefined && r.perSource > 0
      ? perSourceRateStage(r.perSource, r.perSourceBurst ?? r.perSource, state)
      : undefined
  },
  (c, state) => (c.maxConnectionsPerSource > 0 ? perSourceStage(c.maxConnectionsPerSource, state) : undefined),
  // 3. routing by what the client sends first (TLS SNI / ALPN): lib/tls/
  (c) => tlsStage(c),
]

/** The stages of `config`, or undefined when it has none. */
export function stagesFor(config: ListenerConfig, state: AcceptState): AcceptStage[] | undefined {
  let out: AcceptStage[] | undefined
  for (const build of BUILDERS) {
    const stage = build(config, state)
    if (stage !== undefined) (out ??= []).push(stage)
  }
  return out
}
