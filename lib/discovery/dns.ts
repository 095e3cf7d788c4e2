/**
 * DNS service discovery: a listener's `discover` entries name DNS records whose answers are
 * backends (Envoy's STRICT_DNS cluster, nginx's `server … resolve`, HAProxy's `server-template`).
 *
 *   { name: api.internal, port: 8080 }   every A/AAAA address of the name, on that port
 *   { srv: _api._tcp.example }           every SRV target of the lowest priority value, on its port,
 *                                        with its weight (Consul, Kubernetes headless services)
 *
 * Each entry is looked up again when its records expire: at the smallest TTL of the answer,
 * bounded below by `dns.minTtl` and above by `dns.maxTtl` (Node's resolver reports no TTL for
 * SRV records themselves, so an SRV entry follows the TTL of its targets' addresses). The backend
 * set is the static `backends` plus the union of every entry's last good answer; when it changes,
 * the listener applies it as a reload does (Listener.reconfigure): new addresses become backends,
 * removed ones drain, per `onDrain`. A failed lookup (timeout, SERVFAIL, NXDOMAIN, no records)
 * keeps the last good answer, is counted (`dnsFailures`) and logged, and is tried again after
 * `dns.minTtl`.
 *
 * Lookups go to `dns.resolvers` (Node's `dns.promises.Resolver` with `setServers`), or to the
 * system's resolvers (/etc/resolv.conf) when none are given. The pure parts (bounds, the set from
 * the answers) are exported for tests; the class is the thin shell with timers.
 */
import { Resolver } from 'node:dns/promises'
import type { Logger } from 'pino'
import { dnsSchema, type BackendConfig, type ListenerConfig } from '../config/schema.js'

export type DiscoverConfig = NonNullable<ListenerConfig['discover']>[number]
export type DnsConfig = ReturnType<typeof dnsSchema.parse>

/** The `dns` settings when the config has none. */
export const DNS_DEFAULTS: DnsConfig = Object.freeze(dnsSchema.parse({}))

/** One address of an answer, and how long it may be kept (seconds). */
export interface Address {
  address: string
  ttl: number
}

export interface EntryAnswer {
  backends: BackendConfig[]
  /** When to look again, in ms (the answer's TTL within the bounds). */
  refreshMs: number
}

/** The TTL in seconds, as ms within [minMs, maxMs]; no TTL (or 0) means the lower bound. */
export function refreshDelay(ttlSeconds: number | undefined, minMs: number, maxMs: number): number {
  const ms = ttlSeconds === undefined ? minMs : ttlSeconds * 1000
  return Math.min(maxMs, Math.max(minMs, ms))
}

/** `host:port` name of a backend at `address` (IPv6 in brackets), as static backends are named. */
export function backendName(address: string | undefined, port: number | undefined): string {
  const a = address ?? ''
  return `${a.includes(':') ? `[${a}]` : a}:${port ?? 0}`
}

/** The backends of one entry's addresses, sorted and without duplicates (an answer's order varies). */
export function backendsOf(
  addresses: readonly { address: string; port: number; weight: number }[],
  maxConnections: number
): BackendConfig[] {
  const byName = new Map<string, BackendConfig>()
  for (const a of addresses) {
    const name = backendName(a.address, a.port)
    if (!byName.has(name))
      byName.set(name, { host: a.address, port: a.port, weight: a.weight, maxConnections })
  }
  return [...byName.values()].sort((x, y) =>
    backendName(x.host, x.port).localeCompare(backendName(y.host, y.port))
  )
}

/** RFC 2782: clients use the lowest priority value first; the others are fallbacks (not used yet). */
export function lowestPriority<T extends { priority: number }>(records: readonly T[]): T[] {
  if (records.length === 0) return []
  const lowest = Math.min(...records.map((r) => r.priority))
  return records.filter((r) => r.priority === lowest)
}

/** SRV weight 0 means "rarely"; Baton's weights start at 1 and stop at 1000. */
export function srvWeight(weight: number): number {
  return Math.min(1000, Math.max(1, weight))
}

/** The union of the entries' backends; the first entry to name a backend gives its settings. */
export function unionOf(answers: readonly (readonly BackendConfig[])[]): BackendConfig[] {
  const seen = new Set<string>()
  const out: BackendConfig[] = []
  for (const list of answers) {
    for (const b of list) {
      const name = backendName(b.host, b.port)
      if (seen.has(name)) continue
      seen.add(name)
      out.push(b)
    }
  }
  return out
}

/** Whether two backend lists are the same set with the same settings. */
export function sameBackends(a: readonly BackendConfig[], b: readonly BackendConfig[]): boolean {
  const key = (l: readonly BackendConfig[]): string =>
    l
      .map((x) => `${backendName(x.host, x.port)} ${x.weight} ${x.maxConnections}`)
      .sort()
      .join('\n')
  return key(a) === key(b)
}

/** Where lookups and failures are counted (the listener's counters). */
export interface DiscoveryCounters {
  dnsLookups: number
  dnsFailures: number
}

/**
 * The lookups of one listener's `discover` entries. `onChange` gets the whole discovered set each
 * time it differs from the last one.
 */
export class DnsDiscovery {
  private readonly resolver: Resolver
  /** Each entry's last good answer (undefined until it has one). */
  private readonly last: (BackendConfig[] | undefined)[]
  private readonly timers = new Set<NodeJS.Timeout>()
  private applied: BackendConfig[] = []
  private stopped = false

  constructor(
    readonly entries: readonly DiscoverConfig[],
    readonly settings: DnsConfig,
    private readonly log: Logger,
    private readonly counters: DiscoveryCounters,
    private readonly onChange: (backends: BackendConfig[]) => void
  ) {
    this.resolver = new Resolver({ timeout: settings.timeout, tries: settings.tries })
    if (settings.resolvers !== undefined && settings.resolvers.length > 0)
      this.resolver.setServers(settings.resolvers)
    this.last = entries.map(() => undefined)
  }

  /** Look every entry up once (resolves when each has answered or failed), then keep them fresh. */
  async start(): Promise<void> {
    await Promise.all(this.entries.map((_, i) => this.refresh(i)))
  }

  stop(): void {
    this.stopped = true
    this.resolver.cancel()
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
  }

  /** The discovered set now (the union of the last good answers). */
  get backends(): BackendConfig[] {
    return this.applied
  }

  private async refresh(i: number): Promise<void> {
    if (this.stopped) return
    const entry = this.entries[i]!
    const what = entry.srv !== undefined ? `SRV ${entry.srv}` : `${entry.name}`
    let delay: number
    this.counters.dnsLookups++
    try {
      const answer = await this.lookup(entry)
      if (this.stopped) return
      delay = answer.refreshMs
      const before = this.last[i]
      this.last[i] = answer.backends
      if (before === undefined || !sameBackends(before, answer.backends))
        this.log.info(
          {
            discover: what,
            backends: answer.backends.map((b) => backendName(b.host, b.port)),
            refreshMs: delay,
          },
          'dns: records resolved'
        )
      this.apply()
    } catch (err) {
      if (this.stopped) return
      this.counters.dnsFailures++
      delay = this.settings.minTtl
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message
      this.log.warn(
        {
          discover: what,
          code,
          failures: this.counters.dnsFailures,
          kept: (this.last[i] ?? []).map((b) => backendName(b.host, b.port)),
          retryMs: delay,
        },
        'dns: lookup failed, keeping the last good answer'
      )
    }
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      void this.refresh(i)
    }, delay)
    timer.unref()
    this.timers.add(timer)
  }

  private apply(): void {
    const next = unionOf(this.last.filter((l): l is BackendConfig[] => l !== undefined))
    if (sameBackends(next, this.applied)) return
    this.applied = next
    this.onChange(next)
  }

  private async lookup(entry: DiscoverConfig): Promise<EntryAnswer> {
    const { minTtl, maxTtl } = this.settings
    if (entry.srv !== undefined) {
      const records = lowestPriority(await this.resolver.resolveSrv(entry.srv))
      if (records.length === 0) throw Object.assign(new Error('no SRV records'), { code: 'ENODATA' })
      const found: { address: string; port: number; weight: number }[] = []
      let ttl = Infinity
      // A target that does not resolve is left out; the entry fails only when none resolves.
      const targets = await Promise.allSettled(records.map((r) => this.addresses(r.name, entry.family)))
      let firstError: unknown
      targets.forEach((t, k) => {
        if (t.status === 'rejected') {
          firstError ??= t.reason
          return
        }
        for (const a of t.value) {
          found.push({ address: a.address, port: records[k]!.port, weight: srvWeight(records[k]!.weight) })
          ttl = Math.min(ttl, a.ttl)
        }
      })
      if (found.length === 0) throw firstError ?? new Error('no SRV target resolves')
      return {
        backends: backendsOf(found, entry.maxConnections),
        refreshMs: refreshDelay(Number.isFinite(ttl) ? ttl : undefined, minTtl, maxTtl),
      }
    }
    const addresses = await this.addresses(entry.name!, entry.family)
    const ttl = Math.min(...addresses.map((a) => a.ttl))
    return {
      backends: backendsOf(
        addresses.map((a) => ({ address: a.address, port: entry.port!, weight: entry.weight })),
        entry.maxConnections
      ),
      refreshMs: refreshDelay(ttl, minTtl, maxTtl),
    }
  }

  /** A and/or AAAA records of `name`; rejects when there are none (or the lookups failed). */
  private async addresses(name: string, family: DiscoverConfig['family']): Promise<Address[]> {
    const asks: Promise<Address[]>[] = []
    if (family !== 'ipv6') asks.push(this.resolver.resolve4(name, { ttl: true }))
    if (family !== 'ipv4') asks.push(this.resolver.resolve6(name, { ttl: true }))
    const settled = await Promise.allSettled(asks)
    const out: Address[] = []
    let failure: unknown
    for (const s of settled) {
      if (s.status === 'fulfilled') out.push(...s.value)
      // ENODATA for one family is an answer (the name has only the other); anything else is not.
      else if ((s.reason as NodeJS.ErrnoException).code !== 'ENODATA' || failure === undefined)
        failure = s.reason
    }
    if (out.length === 0)
      throw failure ?? Object.assign(new Error(`${name}: no addresses`), { code: 'ENODATA' })
    // One family answered and the other failed for real (not "no such records"): not a whole answer.
    for (const s of settled)
      if (s.status === 'rejected' && (s.reason as NodeJS.ErrnoException).code !== 'ENODATA') throw s.reason
    return out
  }
}
