/**
 * Interop (issue 13, items 2 and 3): TLS passthrough routed by SNI and ALPN to `openssl s_server`
 * backends in two groups, each with its own certificate made with openssl at test time, reached by
 * `openssl s_client -servername` and `curl --resolve`. The certificate a client is shown says which
 * group answered; curl checks it against that group's certificate only (`--cacert`), so a wrong
 * route fails the handshake. Then a client-first pin: a TLS session whose s_server dies mid-session
 * is passed on, and nothing is re-sent to another backend.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import t, { type Test } from 'tap'
import { createBalancer, type Balancer } from '../../lib/index.js'
import { hasCommand, spawnPeer, stopAll, stdoutMatches, finished, killPeer, type Peer } from './helpers/process.js'
import { once } from '../helpers/wait.js'
import { parseClientHello } from '../../lib/tls/client-hello.js'
import { captureHello, opensslHello } from '../tls/helpers/capture.js'

const HAS_OPENSSL = hasCommand('openssl', ['version'])
const HAS_CURL = hasCommand('curl')

function skipWithout(t: Test, ok: boolean, what: string): boolean {
  if (ok) return false
  const why = `${what} is not on PATH (apt-get install -y ${what})`
  if (process.env.CI !== undefined) t.fail(why)
  else t.pass(`${what} interop`, { skip: why })
  return true
}

/** A self-signed certificate for `name` (and its SAN) in `dir`. */
function makeCert(dir: string, tag: string, name: string): { cert: string; key: string } {
  const cert = join(dir, `${tag}.crt`)
  const key = join(dir, `${tag}.key`)
  const r = spawnSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', `/CN=${name}`, '-addext', `subjectAltName=DNS:${name}`, '-keyout', key, '-out', cert],
    { stdio: 'ignore', timeout: 20_000 }
  )
  if (r.status !== 0) throw new Error(`openssl req for ${name} failed`)
  return { cert, key }
}

/** `openssl s_server -www` on 127.0.0.1 with a free port; resolves with the peer and its port. */
async function sServer(name: string, c: { cert: string; key: string }, extra: string[] = []): Promise<{ peer: Peer; port: number }> {
  const peer = spawnPeer(name, 'openssl', ['s_server', '-accept', '127.0.0.1:0', '-cert', c.cert, '-key', c.key, '-www', ...extra])
  await stdoutMatches(peer, /ACCEPT .*:\d+/, 10_000)
  return { peer, port: Number(/ACCEPT .*:(\d+)/.exec(peer.stdout())![1]) }
}

/** `openssl s_client` through Baton: the peer certificate's subject CN it was shown. */
async function sClientCN(port: number, args: string[]): Promise<string | undefined> {
  const peer = spawnPeer('s_client', 'openssl', ['s_client', '-connect', `127.0.0.1:${port}`, ...args])
  peer.child.stdin?.end() // EOF on stdin: s_client closes once the handshake is done
  await finished(peer, 15_000)
  return /subject=\s*CN\s*=\s*([^\s,/]+)/.exec(peer.stdout())?.[1]
}

t.test('openssl s_client and curl reach the group their server name or ALPN routes to', async (t) => {
  if (skipWithout(t, HAS_OPENSSL, 'openssl')) return
  const dir = mkdtempSync(join(tmpdir(), 'baton-sni-'))
  const peers: Peer[] = []
  let balancer: Balancer | undefined
  t.teardown(async () => {
    await balancer?.close(0)
    await stopAll(peers)
    rmSync(dir, { recursive: true, force: true })
  })
  const apiCert = makeCert(dir, 'api', 'api.example.com')
  const wwwCert = makeCert(dir, 'www', 'www.example.com')
  const api = await sServer('s_server api', apiCert)
  const www = await sServer('s_server www', wwwCert)
  peers.push(api.peer, www.peer)
  balancer = createBalancer({
    listeners: [
      {
        listen: '127.0.0.1:0',
        backends: [
          { host: '127.0.0.1', port: www.port },
          { host: '127.0.0.1', port: api.port, group: 'api' },
        ],
        tls: {
          routes: [
            { serverName: 'api.example.com', group: 'api' },
            { alpn: 'acme-tls/1', group: 'api' },
          ],
        },
      },
    ],
    log: { level: 'silent' },
  })
  await balancer.listen()
  const port = balancer.address().port

  t.equal(await sClientCN(port, ['-servername', 'api.example.com']), 'api.example.com', 's_client -servername api.example.com: the api group')
  t.equal(await sClientCN(port, ['-servername', 'www.example.com']), 'www.example.com', 's_client -servername www.example.com: the default group')
  t.equal(await sClientCN(port, ['-noservername']), 'www.example.com', 's_client without SNI: the default group')
  t.equal(
    await sClientCN(port, ['-servername', 'www.example.com', '-alpn', 'acme-tls/1']),
    'api.example.com',
    's_client -alpn acme-tls/1: routed by ALPN'
  )

  if (!skipWithout(t, HAS_CURL, 'curl')) {
    // Not spawnSync: Baton runs in this process and must keep accepting.
    const curl = async (name: string, ca: string): Promise<{ status: number | null; out: string }> => {
      const peer = spawnPeer('curl', 'curl', [
        '-sS', '--max-time', '10', '--cacert', ca, '--resolve', `${name}:${port}:127.0.0.1`,
        '-o', '/dev/null', '-w', '%{http_code}', `https://${name}:${port}/`,
      ])
      const exit = await finished(peer, 15_000)
      return { status: exit.code, out: `${peer.stdout()} ${peer.stderr()}`.trim() }
    }
    t.same(await curl('api.example.com', apiCert.cert), { status: 0, out: '200' }, 'curl api.example.com verifies against the api certificate')
    t.same(await curl('www.example.com', wwwCert.cert), { status: 0, out: '200' }, 'curl www.example.com verifies against the www certificate')
    t.not((await curl('api.example.com', wwwCert.cert)).status, 0, 'and not against the other group\'s (the check can fail)')
  }
  const l = balancer.frontends[0]!
  t.equal(l.counters.refused, 0, 'nothing refused')
})

t.test('client-first: a TLS session pinned once s_server answered its hello; s_server dies, nothing re-sent', async (t) => {
  if (skipWithout(t, HAS_OPENSSL, 'openssl')) return
  const dir = mkdtempSync(join(tmpdir(), 'baton-pin-'))
  const peers: Peer[] = []
  let balancer: Balancer | undefined
  let otherAccepted = 0
  const other = net.createServer((s) => {
    otherAccepted++
    s.destroy()
  })
  t.teardown(async () => {
    await balancer?.close(0)
    await stopAll(peers)
    other.close()
    rmSync(dir, { recursive: true, force: true })
  })
  await new Promise<void>((r) => other.listen(0, '127.0.0.1', r))
  const first = await sServer('s_server', makeCert(dir, 'a', 'a.example.com'))
  peers.push(first.peer)
  balancer = createBalancer({
    listeners: [
      {
        listen: '127.0.0.1:0',
        dataPlane: 'js',
        balance: 'first',
        backends: [`127.0.0.1:${first.port}`, `127.0.0.1:${(other.address() as net.AddressInfo).port}`],
      },
    ],
    log: { level: 'silent' },
  })
  await balancer.listen()
  const client = tls.connect({ host: '127.0.0.1', port: balancer.address().port, servername: 'a.example.com', rejectUnauthorized: false })
  const errors: Error[] = []
  client.on('error', (e) => errors.push(e))
  await once(client, 'secureConnect')
  t.equal((client.getPeerCertificate().subject as { CN?: string }).CN, 'a.example.com', 'handshake with s_server through Baton')
  // A request s_server (-www) will not answer until the blank line; it dies first.
  client.write('GET / HTTP/1.0\r\n')
  killPeer(first.peer)
  await once(client, 'close')
  t.equal(otherAccepted, 0, 'nothing re-sent to a backend that never saw the handshake')
  t.equal(balancer.counters().failovers, 0, 'no failover')
  t.same(errors.map((e) => e.message).filter((m) => !/ECONNRESET|socket hang up|disconnected/.test(m)), [], 'no TLS error from foreign bytes')
})

t.test('the parser on hellos captured from openssl s_client and curl, split at every byte', async (t) => {
  if (skipWithout(t, HAS_OPENSSL, 'openssl')) return
  const alpn = Array.from({ length: 60 }, (_, i) => `protocol-${i}`).join(',')
  const cases: [string, Promise<Buffer>, string | undefined, string[]][] = [
    ['s_client -servername -alpn', opensslHello(['-servername', 'Api.Example.com', '-alpn', 'h2,http/1.1']), 'api.example.com', ['h2', 'http/1.1']],
    ['s_client -noservername', opensslHello(['-noservername']), undefined, []],
    // A hello larger than one 512-byte record: OpenSSL fragments its handshake across records.
    ['s_client -max_send_frag 512, a long ALPN list', opensslHello(['-servername', 'big.example', '-alpn', alpn, '-max_send_frag', '512']), 'big.example', alpn.split(',')],
  ]
  if (HAS_CURL)
    cases.push([
      'curl --resolve',
      captureHello((port) => {
        const peer = spawnPeer('curl', 'curl', ['-sk', '--max-time', '5', '--resolve', `curl.example:${port}:127.0.0.1`, `https://curl.example:${port}/`])
        return () => killPeer(peer)
      }),
      'curl.example',
      ['h2', 'http/1.1'],
    ])
  for (const [what, capture, name, protocols] of cases) {
    const hello = await capture
    const r = parseClientHello(hello)
    t.same(r.kind === 'hello' ? [r.serverName, r.alpn, r.bytes] : kindOf(r), [name, protocols, hello.length], `${what}: ${hello.length} bytes`)
    let bad = 0
    for (let i = 0; i < hello.length; i++) {
      const p = parseClientHello(hello.subarray(0, i))
      if (p.kind !== 'more' && bad++ < 3) t.fail(`${what}: prefix ${i}: ${p.kind}`)
    }
    t.equal(bad, 0, `${what}: every proper prefix asks for more`)
    if (what.includes('max_send_frag')) {
      let records = 0
      for (let at = 0; at < hello.length; at += 5 + hello.readUInt16BE(at + 3)) records++
      t.ok(records > 1, `${what}: the hello came in ${records} records`)
    }
  }
})

function kindOf(r: { kind: string }): string {
  return r.kind
}
