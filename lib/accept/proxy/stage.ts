/**
 * `acceptProxy`: the PROXY protocol header (v1 or v2) from a trusted upstream, as an accept stage.
 *
 * - From a source in `from`, the header must come first (unless `required: false`), whole within
 *   `timeout`; its source address and port become the session's client everywhere (logs, table,
 *   source-hash, the access rules after this stage), its destination the session's local address,
 *   and the header itself is kept (`ctx.proxy`) for `sendProxy` to pass its TLVs on. A LOCAL
 *   header (the upstream's own health check) or an UNKNOWN / AF_UNSPEC / Unix one leaves the
 *   socket's addresses in place.
 * - From any other source, a PROXY header is refused (`proxy-untrusted`): nobody outside `from`
 *   may choose the address Baton believes. Finding one means waiting for the client's first bytes
 *   before a backend is picked, which a server-first protocol would never send: so untrusted
 *   clients are checked where the protocol is client-first (http1, resp, length-prefixed) and, for
 *   opaque, only with `checkUntrusted: true`. Unchecked, such a header is only data to the backend
 *   (and follows Baton's own header where `sendProxy` is on), so it still cannot pass as theirs.
 */
import type { BlockList } from 'node:net'
import type { AcceptContext, AcceptStage, StageVerdict } from '../types.js'
import { inList } from '../cidr.js'
import { looksLikeProxy, MAX_V2_BYTES, parseProxy, V2_SIGNATURE } from './codec.js'

export const REASONS = {
  untrusted: 'proxy-untrusted',
  missing: 'proxy-missing',
  invalid: 'proxy-invalid',
  tooLong: 'proxy-too-long',
  timeout: 'proxy-timeout',
  incomplete: 'proxy-incomplete',
} as const

export interface AcceptProxyOptions {
  from: BlockList
  required: boolean
  timeout: number
  checkUntrusted: boolean
}

export function acceptProxyStage(o: AcceptProxyOptions): AcceptStage {
  return {
    name: 'accept-proxy',
    readTimeout: o.timeout,
    maxBytes: MAX_V2_BYTES,
    run(ctx) {
      if (inList(o.from, ctx.clientAddress)) return readHeader(ctx, o.required)
      return o.checkUntrusted ? refuseHeader(ctx) : undefined
    },
  }
}

async function readHeader(ctx: AcceptContext, required: boolean): Promise<StageVerdict> {
  // Each turn reads at least one byte and a header is at most MAX_V2_BYTES: bounded.
  for (let turn = 0; turn <= MAX_V2_BYTES + 1; turn++) {
    const r = parseProxy(ctx.peek())
    if (r.ok) {
      const h = r.header
      ctx.consume(r.length)
      ctx.proxy = h
      if (h.command === 'proxy' && (h.family === 'tcp4' || h.family === 'tcp6')) {
        ctx.clientAddress = h.sourceAddress!
        ctx.clientPort = h.sourcePort!
        ctx.localAddress = h.destinationAddress!
        ctx.localPort = h.destinationPort!
      }
      return undefined
    }
    if (!r.incomplete) {
      if (r.error === 'missing') return required ? REASONS.missing : undefined
      return r.error === 'too-long' ? REASONS.tooLong : REASONS.invalid
    }
    const more = await ctx.more()
    if (more === 'timeout') return REASONS.timeout
    if (more === 'full') return REASONS.tooLong
    if (more === 'end') return !required && ctx.headBytes === 0 ? undefined : REASONS.incomplete
  }
  return REASONS.invalid
}

/** An untrusted client: passed on at its first bytes unless they start a PROXY header. */
async function refuseHeader(ctx: AcceptContext): Promise<StageVerdict> {
  for (let turn = 0; turn <= V2_SIGNATURE.length + 1; turn++) {
    const head = ctx.peek()
    if (head.length > 0) {
      if (!looksLikeProxy(head)) return undefined
      // "PROXY " or the whole v2 signature: a header, not a coincidence of a few bytes.
      if (head.length >= 6 && head[0] === 0x50) return REASONS.untrusted
      if (head.length >= V2_SIGNATURE.length) return REASONS.untrusted
    }
    const more = await ctx.more()
    // Nothing (more) within the deadline: not a header; the session's own bounds apply from here.
    if (more !== 'data') return undefined
  }
  return undefined
}
