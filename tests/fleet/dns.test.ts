/**
 * The pure parts of DNS discovery (lib/discovery/dns.ts) and its config; the lookups themselves
 * run against dnsmasq in tests/interop/dns-discovery.test.ts.
 */
import t from 'tap'
import {
  backendName,
  backendsOf,
  DNS_DEFAULTS,
  lowestPriority,
  refreshDelay,
  sameBackends,
  srvWeight,
  unionOf,
} from '../../lib/discovery/dns.js'
import { validateConfig } from '../../lib/config/validate.js'
import { ConfigError } from '../../lib/errors.js'
import { parseCommand } from '../../lib/cli/args.js'

t.test('refreshDelay: the TTL within the bounds', async (t) => {
  t.equal(refreshDelay(30, 1000, 300_000), 30_000)
  t.equal(refreshDelay(0, 1000, 300_000), 1000, 'TTL 0: the lower bound')
  t.equal(refreshDelay(undefined, 1000, 300_000), 1000, 'no TTL: the lower bound')
  t.equal(refreshDelay(86_400, 1000, 300_000), 300_000, 'a day: the upper bound')
})

t.test('backendsOf: sorted, one per address and port', async (t) => {
  const b = backendsOf(
    [
      { address: '10.0.0.3', port: 80, weight: 1 },
      { address: '10.0.0.1', port: 80, weight: 2 },
      { address: '10.0.0.3', port: 80, weight: 5 },
      { address: 'fd00::1', port: 80, weight: 1 },
    ],
    7
  )
  t.same(
    b.map((x) => [backendName(x.host, x.port), x.weight, x.maxConnections]),
    [
      ['[fd00::1]:80', 1, 7],
      ['10.0.0.1:80', 2, 7],
      ['10.0.0.3:80', 1, 7],
    ]
  )
})

t.test('SRV: lowest priority value only, weights within 1..1000', async (t) => {
  const r = [
    { name: 'a', port: 1, priority: 10, weight: 5 },
    { name: 'b', port: 1, priority: 0, weight: 0 },
    { name: 'c', port: 1, priority: 0, weight: 60_000 },
  ]
  t.same(
    lowestPriority(r).map((x) => x.name),
    ['b', 'c']
  )
  t.same(lowestPriority([]), [])
  t.equal(srvWeight(0), 1)
  t.equal(srvWeight(60_000), 1000)
  t.equal(srvWeight(20), 20)
})

t.test('unionOf and sameBackends', async (t) => {
  const a = { host: '10.0.0.1', port: 80, weight: 1, maxConnections: 0 }
  const b = { host: '10.0.0.2', port: 80, weight: 1, maxConnections: 0 }
  t.same(unionOf([[a], [a, b]]), [a, b], 'the first entry to name a backend wins')
  t.ok(sameBackends([a, b], [b, a]), 'order does not matter')
  t.notOk(sameBackends([a], [a, b]))
  t.notOk(sameBackends([a], [{ ...a, weight: 2 }]), 'a weight change is a change')
})

t.test('config: discover entries and dns settings', async (t) => {
  const c = validateConfig({
    listeners: [
      { listen: ':7000', discover: [{ name: 'api.internal', port: 8080 }, { srv: '_api._tcp.internal' }] },
    ],
    dns: { resolvers: ['127.0.0.1:5353', '10.0.0.2', '[::1]:53'], minTtl: '500ms' },
  })
  t.same(c.listeners[0]!.backends, [], 'no static backend needed')
  t.same(c.listeners[0]!.discover, [
    { name: 'api.internal', port: 8080, family: 'any', weight: 1, maxConnections: 0 },
    { srv: '_api._tcp.internal', family: 'any', weight: 1, maxConnections: 0 },
  ])
  t.same(c.dns, {
    resolvers: ['127.0.0.1:5353', '10.0.0.2', '[::1]:53'],
    minTtl: 500,
    maxTtl: 300_000,
    timeout: 2000,
    tries: 2,
  })
  t.same(DNS_DEFAULTS, { minTtl: 1000, maxTtl: 300_000, timeout: 2000, tries: 2 })
  t.equal(
    validateConfig({ listeners: [{ listen: ':1', backends: ['a:1'] }] }).dns,
    undefined,
    'absent stays absent'
  )

  const issues = (input: unknown): readonly string[] => {
    try {
      validateConfig(input)
    } catch (err) {
      if (err instanceof ConfigError) return err.issues
      throw err
    }
    return []
  }
  const one = (discover: unknown): readonly string[] => issues({ listeners: [{ listen: ':1', discover }] })
  t.match(one([{ name: 'api.internal' }]), [/discover\[0\]\.port: expected the backends' port/])
  t.match(one([{ srv: '_a._tcp.x', port: 80 }]), [/discover\[0\]\.port: SRV records give the port/])
  t.match(one([{ port: 80 }]), [/discover\[0\]: expected either "name" \(with "port"\) or "srv"/])
  t.match(one([]), [/backends: expected at least one backend/])
  t.match(issues({ listeners: [{ listen: ':1', backends: ['a:1'] }], dns: { resolvers: ['dns.google'] } }), [
    /dns\.resolvers\[0\]: expected an IP address/,
  ])
})

t.test('--discover and --resolver', async (t) => {
  const c = parseCommand([
    '-l',
    ':7000',
    '--discover',
    'api.internal:8080',
    '--discover',
    'srv:_api._tcp.internal',
    '--resolver',
    '127.0.0.1:5353',
  ])
  t.same(c.kind === 'run' && c.config, {
    listeners: [
      {
        listen: ':7000',
        backends: [],
        discover: [{ name: 'api.internal', port: 8080 }, { srv: '_api._tcp.internal' }],
      },
    ],
    dns: { resolvers: ['127.0.0.1:5353'] },
    log: { access: true },
  })
  t.ok(c.kind === 'run' && validateConfig(c.config), 'a valid config')
  t.throws(
    () => parseCommand(['-l', ':7000', '--discover', 'api.internal']),
    /expected NAME:PORT or srv:NAME/
  )
  t.throws(() => parseCommand(['-l', ':7000']), /at least one is required \(or --discover\)/)
})
