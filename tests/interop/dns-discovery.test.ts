/**
 * DNS service discovery against a real DNS server: dnsmasq in the foreground on a loopback port,
 * answering for `.test` from a hosts file (changed, then SIGHUP to re-read it) and from
 * `--srv-host` records. Backends listen on 127.0.0.2, .3 and .4, all on one port, so that the
 * A records alone say which is which. Four clients loop connect → request → response → close
 * through Baton the whole time; not one may fail while records are added, removed, and while the
 * DNS server is gone (the last good answer is kept, the failures are counted).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import dgram from 'node:dgram'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { createBalancer, type Balancer } from '../../lib/index.js'
import { until, within } from '../helpers/wait.js'
import { onPath, spawnPeer, stopPeer, type Peer } from './helpers/process.js'
import { oneRequest } from './helpers/ping.js'

t.setTimeout(180_000)
const LONG_MS = 30_000
const ADDRS = ['127.0.0.2', '127.0.0.3', '127.0.0.4']

interface Backend {
  address: string
  server: net.Server
  connections: number
}

/** A line server on `address:port` that answers `X` with `pong X`, counting connections. */
function lineServer(address: string, port: number): Promise<Backend> {
  const b: Backend = { address, server: net.createServer(), connections: 0 }
  b.server.on('connection', (s) => {
    b.connections++
    let buf = ''
    s.setEncoding('utf8')
    s.on('data', (d: string) => {
      buf += d
      let i: number
      while ((i = buf.indexOf('\n')) >= 0) {
        s.write(`pong ${buf.slice(0, i)}\n`)
        buf = buf.slice(i + 1)
      }
    })
    s.on('error', () => {})
  })
  return new Promise((resolve, reject) => {
    b.server.once('error', reject)
    b.server.listen(port, address, () => resolve(b))
  })
}

/** Three backends on one port, one per loopback address (a few tries to find a port free on all). */
async function backends(): Promise<{ port: number; all: Backend[] }> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const first = await lineServer(ADDRS[0]!, 0)
    const port = (first.server.address() as net.AddressInfo).port
    const all = [first]
    try {
      for (const a of ADDRS.slice(1)) all.push(await lineServer(a, port))
      return { port, all }
    } catch {
      for (const b of all) b.server.close()
    }
  }
  throw new Error('no port free on 127.0.0.2-4')
}

/** A port free now for both UDP and TCP (dnsmasq binds both, right after). */
async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const tcp = net.createServer()
    await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve))
    const port = (tcp.address() as net.AddressInfo).port
    const udp = dgram.createSocket('udp4')
    const ok = await new Promise<boolean>((resolve) => {
      udp.once('error', () => resolve(false))
      udp.bind(port, '127.0.0.1', () => resolve(true))
    })
    await new Promise<void>((resolve) => tcp.close(() => resolve()))
    await new Promise<void>((resolve) => udp.close(() => resolve()))
    if (ok) return port
  }
  throw new Error('no port free for both UDP and TCP')
}

/** dnsmasq on a free port; a few tries, since the port may be taken between the check and the bind. */
async function dnsmasqOnFreePort(hosts: string, extra: string[] = []): Promise<{ peer: Peer; port: number }> {
  let last: Error | undefined
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort()
    const peer = startDnsmasq(port, hosts, extra)
    try {
      await dnsmasqUp(peer)
      return { peer, port }
    } catch (err) {
      last = err as Error
      await stopPeer(peer).catch(() => {})
    }
  }
  throw last!
}

function startDnsmasq(port: number, hosts: string, extra: string[] = []): Peer {
  return spawnPeer('dnsmasq', 'dnsmasq', [
    '-k',
    '-C',
    '/dev/null',
    `--port=${port}`,
    '--listen-address=127.0.0.1',
    '--bind-interfaces',
    '--no-resolv',
    '--no-hosts',
    `--addn-hosts=${hosts}`,
    '--local=/test/', // answer NODATA/NXDOMAIN for .test itself (no upstream to refuse for)
    '--local-ttl=1',
    '--pid-file=',
    '--log-facility=-',
    ...(process.getuid?.() === 0 ? ['--user=root'] : []),
    ...extra,
  ])
}

async function dnsmasqUp(peer: Peer): Promise<void> {
  await until(
    () => /started, version/.test(peer.stderr() + peer.stdout()) || peer.child.exitCode !== null,
    'dnsmasq start',
    { timeoutMs: LONG_MS, intervalMs: 20 }
  )
  if (peer.child.exitCode !== null) throw new Error(`dnsmasq exited: ${peer.stderr()}`)
}

const skipWithout = (t: Test): boolean => {
  if (onPath('dnsmasq')) return false
  const why = 'dnsmasq is not on PATH (apt-get install -y dnsmasq-base)'
  if (process.env.CI !== undefined) t.fail(why)
  else t.pass('dns discovery', { skip: why })
  return true
}

t.test(
  'A records: added addresses become backends, removed ones drain, a dead DNS server changes nothing',
  async (t) => {
    if (skipWithout(t)) return
    const dir = mkdtempSync(join(tmpdir(), 'baton-dns-'))
    const hosts = join(dir, 'hosts')
    const { port, all } = await backends()
    const [b2, b3, b4] = all as [Backend, Backend, Backend]
    writeFileSync(hosts, `${b2.address} api.test\n${b3.address} api.test\n`)
    const started = await dnsmasqOnFreePort(hosts)
    const dnsPort = started.port
    let dns = started.peer
    let balancer: Balancer | undefined
    let stopLoops = false
    t.teardown(async () => {
      stopLoops = true
      await balancer?.close(0)
      await stopPeer(dns).catch(() => {})
      for (const b of all) b.server.close()
      rmSync(dir, { recursive: true, force: true })
    })

    balancer = createBalancer({
      listeners: [{ listen: '127.0.0.1:0', discover: [{ name: 'api.test', port }] }],
      dns: { resolvers: [`127.0.0.1:${dnsPort}`], minTtl: 100, maxTtl: 2000, timeout: 300, tries: 1 },
      log: { level: 'silent' },
    })
    await balancer.listen()
    const listener = balancer.frontends[0]!
    const names = (): string[] => listener.backends.map((b) => b.name).sort()
    t.same(
      names(),
      [`${b2.address}:${port}`, `${b3.address}:${port}`],
      'the first answer is there before the first client'
    )
    const lport = balancer.address().port

    let done = 0
    const errors = new Map<string, number>()
    const loop = async (id: number): Promise<void> => {
      for (let i = 0; i < 200_000 && !stopLoops; i++) {
        try {
          await oneRequest(lport, id * 1_000_000 + i)
          done++
        } catch (err) {
          const code = (err as Error).message
          errors.set(code, (errors.get(code) ?? 0) + 1)
        }
      }
    }
    const loops = Promise.all([0, 1, 2, 3].map(loop))
    const more = async (n: number, what: string): Promise<void> => {
      const target = done + n
      await until(() => done >= target, `${n} more requests ${what}`, { timeoutMs: LONG_MS, intervalMs: 10 })
    }
    await more(100, 'at start')
    t.ok(b2.connections > 0 && b3.connections > 0, 'both resolved backends serve')
    t.equal(b4.connections, 0, 'the unlisted one does not')

    // .2 leaves the records, .4 joins.
    writeFileSync(hosts, `${b3.address} api.test\n${b4.address} api.test\n`)
    dns.child.kill('SIGHUP')
    await until(
      () => names().join() === [`${b3.address}:${port}`, `${b4.address}:${port}`].join(),
      'backends follow the records',
      {
        timeoutMs: LONG_MS,
        intervalMs: 10,
      }
    )
    const b2Then = b2.connections
    await more(200, 'after the change')
    t.ok(b4.connections > 0, 'the added address takes clients')
    t.equal(b2.connections, b2Then, 'the removed address takes none')

    // A reload with the same discover entries keeps what DNS found (no lookup needed first).
    const reloaded = await balancer.reload({
      listeners: [{ listen: '127.0.0.1:0', discover: [{ name: 'api.test', port }] }],
      dns: { resolvers: [`127.0.0.1:${dnsPort}`], minTtl: 100, maxTtl: 2000, timeout: 300, tries: 1 },
      log: { level: 'silent' },
    })
    t.same(reloaded.backendsRemoved, [], 'a reload drains none of the discovered backends')
    t.same(names(), [`${b3.address}:${port}`, `${b4.address}:${port}`], 'and keeps them')

    // The DNS server dies: lookups fail, the last good set stays.
    const failuresBefore = listener.counters.dnsFailures
    await stopPeer(dns)
    await until(() => listener.counters.dnsFailures >= failuresBefore + 2, 'failed lookups counted', {
      timeoutMs: LONG_MS,
      intervalMs: 20,
    })
    t.same(names(), [`${b3.address}:${port}`, `${b4.address}:${port}`], 'the last good answer is kept')
    await more(200, 'while DNS is down')

    // Back, with only .4.
    writeFileSync(hosts, `${b4.address} api.test\n`)
    dns = startDnsmasq(dnsPort, hosts)
    try {
      await dnsmasqUp(dns)
    } catch {
      // Its port was taken meanwhile: a new port, given to Baton by a reload (which restarts the lookups).
      await stopPeer(dns).catch(() => {})
      const again = await dnsmasqOnFreePort(hosts)
      dns = again.peer
      t.comment(`dnsmasq moved to port ${again.port}`)
      await balancer.reload({
        listeners: [{ listen: '127.0.0.1:0', discover: [{ name: 'api.test', port }] }],
        dns: { resolvers: [`127.0.0.1:${again.port}`], minTtl: 100, maxTtl: 2000, timeout: 300, tries: 1 },
        log: { level: 'silent' },
      })
    }
    await until(() => names().join() === `${b4.address}:${port}`, 'backends follow the records again', {
      timeoutMs: LONG_MS,
      intervalMs: 10,
    })
    await more(200, 'after DNS came back')

    stopLoops = true
    await within(loops, 'client loops ending', LONG_MS)
    t.same(Object.fromEntries(errors), {}, 'no client error while records changed and DNS was down')
    t.ok(listener.counters.dnsLookups > listener.counters.dnsFailures, 'lookups counted')
  }
)

t.test('SRV records: targets of the lowest priority, their ports and weights', async (t) => {
  if (skipWithout(t)) return
  const dir = mkdtempSync(join(tmpdir(), 'baton-dns-'))
  const hosts = join(dir, 'hosts')
  const { port, all } = await backends()
  writeFileSync(hosts, ADDRS.map((a, i) => `${a} api-${i}.test\n`).join(''))
  const { peer: dns, port: dnsPort } = await dnsmasqOnFreePort(hosts, [
    `--srv-host=_api._tcp.test,api-0.test,${port},0,10`,
    `--srv-host=_api._tcp.test,api-1.test,${port},0,30`,
    `--srv-host=_api._tcp.test,api-2.test,${port},5,10`, // a fallback: not used
  ])
  let balancer: Balancer | undefined
  t.teardown(async () => {
    await balancer?.close(0)
    await stopPeer(dns).catch(() => {})
    for (const b of all) b.server.close()
    rmSync(dir, { recursive: true, force: true })
  })
  balancer = createBalancer({
    listeners: [{ listen: '127.0.0.1:0', discover: [{ srv: '_api._tcp.test' }] }],
    dns: { resolvers: [`127.0.0.1:${dnsPort}`], minTtl: 100, timeout: 500, tries: 2 },
    log: { level: 'silent' },
  })
  await balancer.listen()
  const got = balancer.frontends[0]!.backends.map((b) => [b.name, b.baseWeight]).sort()
  t.same(got, [
    [`${ADDRS[0]}:${port}`, 10],
    [`${ADDRS[1]}:${port}`, 30],
  ])
  await oneRequest(balancer.address().port, 1)
  t.pass('traffic flows to an SRV target')
})
