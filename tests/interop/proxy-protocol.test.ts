/**
 * PROXY protocol interop, end to end with real peers:
 *
 *   client (127.0.0.5) ──► HAProxy `send-proxy-v2` ──► Baton (acceptProxy from 127.0.0.1,
 *                          (127.0.0.1)                  sendProxy v1 | v2, protocol http1)
 *                                                        ──► nginx `listen … proxy_protocol`
 *
 * nginx answers each GET with `$proxy_protocol_addr $proxy_protocol_port` and logs the same in its
 * access log, so the client sees its own address and port come back across two hops that each
 * connect from 127.0.0.1. The client binds 127.0.0.5 (any 127/8 address is local on Linux) so that
 * its address differs from every hop's. Also: Baton's table names the real client, and a client
 * that connects to Baton directly (untrusted) with a forged header is refused.
 *
 * Skips with the reason when haproxy or nginx is not on PATH.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { createBalancer, type Balancer } from '../../lib/index.js'
import { closeHard } from '../helpers/balancer.js'
import { until, within } from '../helpers/wait.js'
import { hasCommand, spawnPeer, stopAll, type Peer } from './helpers/process.js'
import { freePort, untilListening } from './helpers/socat.js'

const HOST = '127.0.0.1'
const CLIENT = '127.0.0.5'

const missing = !hasCommand('haproxy', ['-v'])
  ? 'haproxy is not on PATH (apt-get install -y haproxy)'
  : !hasCommand('nginx', ['-v'])
    ? 'nginx is not on PATH (apt-get install -y nginx)'
    : undefined

/**
 * What HAProxy does to its server connection when its own client leaves at once (as the
 * `untilListening` probe does): connect from HOST, send the v2 header, reset. Run in a child while
 * this process is blocked in execFileSync, so the reset reaches Baton's socket while it still waits
 * in the accept queue: Baton accepts a client whose address can no longer be asked. This made the
 * test flaky when HAProxy's probe connection lost that race (refused as proxy-untrusted).
 */
function headerThenResetBeforeAccept(port: number): void {
  const script = `
    const net = require('node:net')
    const header = Buffer.from('0d0a0d0a000d0a515549540a2111000c7f0000057f00000130393039', 'hex')
    const s = net.connect({ host: '${HOST}', port: ${port}, localAddress: '${HOST}' })
    s.on('error', (e) => { console.error(e.message); process.exit(1) })
    s.on('connect', () => s.write(header, () => s.resetAndDestroy()))
    s.on('close', () => process.exit(0))`
  execFileSync(process.execPath, ['-e', script], { timeout: 10_000, stdio: ['ignore', 'ignore', 'inherit'] })
}

/** One GET on a new connection from CLIENT; resolves with the body and the client's own port. */
function get(port: number): Promise<{ body: string; localPort: number }> {
  return within(
    new Promise((resolve, reject) => {
      const s = net.connect({ host: HOST, port, localAddress: CLIENT })
      let got = ''
      let localPort = 0
      s.setEncoding('latin1')
      s.on('connect', () => {
        localPort = s.localPort! // gone once the socket closes
        s.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
      })
      s.on('data', (d: string) => (got += d))
      s.on('error', reject)
      s.on('close', () => {
        const body = got.slice(got.indexOf('\r\n\r\n') + 4)
        if (!got.startsWith('HTTP/1.1 200')) reject(new Error(`not a 200: ${JSON.stringify(got.slice(0, 200))}`))
        else resolve({ body: body.trim(), localPort })
      })
    }),
    'GET through HAProxy and Baton'
  )
}

if (missing !== undefined) {
  t.pass('PROXY protocol interop', { skip: missing })
} else {
  t.test('HAProxy send-proxy-v2 → Baton → nginx proxy_protocol: the real client end to end', async (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'baton-pp-'))
    const peers: Peer[] = []
    const balancers: Balancer[] = []
    t.teardown(async () => {
      for (const b of balancers) await closeHard(b)
      await stopAll(peers)
      rmSync(dir, { recursive: true, force: true })
    })

    const nginxPort = await freePort(HOST)
    const accessLog = path.join(dir, 'access.log')
    const nginxConf = path.join(dir, 'nginx.conf')
    writeFileSync(
      nginxConf,
      [
        'worker_processes 1;',
        'error_log stderr;',
        `pid ${path.join(dir, 'nginx.pid')};`,
        'events {}',
        'http {',
        `  client_body_temp_path ${path.join(dir, 'cb')};`,
        `  proxy_temp_path ${path.join(dir, 'px')};`,
        `  fastcgi_temp_path ${path.join(dir, 'fc')};`,
        `  uwsgi_temp_path ${path.join(dir, 'uw')};`,
        `  scgi_temp_path ${path.join(dir, 'sc')};`,
        "  log_format pp '$proxy_protocol_addr $proxy_protocol_port $remote_addr';",
        `  access_log ${accessLog} pp;`,
        `  server { listen ${HOST}:${nginxPort} proxy_protocol;`,
        '    location / { return 200 "$proxy_protocol_addr $proxy_protocol_port\\n"; } }',
        '}',
        '',
      ].join('\n')
    )
    const nginx = spawnPeer('nginx', 'nginx', ['-e', 'stderr', '-c', nginxConf, '-p', dir, '-g', 'daemon off; master_process off;'])
    peers.push(nginx)
    await untilListening(nginx.exited, 'nginx', () => nginx.stderr(), HOST, nginxPort, 5000)

    for (const version of ['v2', 'v1'] as const) {
      const balancer = createBalancer({
        log: { level: 'silent' },
        listeners: [
          {
            listen: { host: HOST, port: 0 },
            backends: [{ host: HOST, port: nginxPort }],
            protocol: 'http1',
            acceptProxy: { from: [HOST] },
            sendProxy: version,
          },
        ],
      })
      balancers.push(balancer)
      await balancer.listen()
      const batonPort = balancer.address(0).port

      const haproxyPort = await freePort(HOST)
      const haproxyConf = path.join(dir, `haproxy-${version}.cfg`)
      writeFileSync(
        haproxyConf,
        [
          'global',
          '  maxconn 100',
          'defaults',
          '  mode tcp',
          '  timeout connect 5s',
          '  timeout client 30s',
          '  timeout server 30s',
          'frontend fe',
          `  bind ${HOST}:${haproxyPort}`,
          '  default_backend be',
          'backend be',
          `  server baton ${HOST}:${batonPort} send-proxy-v2`,
          '',
        ].join('\n')
      )
      const haproxy = spawnPeer(`haproxy-${version}`, 'haproxy', ['-db', '-f', haproxyConf])
      peers.push(haproxy)
      await untilListening(haproxy.exited, 'haproxy', () => haproxy.stderr(), HOST, haproxyPort, 5000)

      const seen: string[] = []
      balancer.on('sessionOpen', (snap: { client: string }) => seen.push(snap.client))
      for (let i = 0; i < 3; i++) {
        const { body, localPort } = await get(haproxyPort)
        t.equal(body, `${CLIENT} ${localPort}`, `${version}: nginx saw the client's own address and port`)
        t.ok(seen.includes(`${CLIENT}:${localPort}`), `${version}: Baton's session named the client`)
      }
      await until(() => readFileSync(accessLog, 'utf8').trim().split('\n').length >= (version === 'v2' ? 3 : 6), 'nginx access log written')
      const lines = readFileSync(accessLog, 'utf8').trim().split('\n').slice(-3)
      for (const line of lines) t.match(line, new RegExp(`^${CLIENT.replace(/\./g, '\\.')} \\d+ 127\\.0\\.0\\.1$`), `${version}: logged ${line}`)
      const l = balancer.frontends[0]!
      t.equal(l.counters.refused, 0, `${version}: nothing refused`)

      // A trusted upstream that sends its header and resets before Baton accepts: it left, so it
      // is abandoned (a client error), not refused as an untrusted source.
      const clientErrors = l.counters.clientErrors
      headerThenResetBeforeAccept(batonPort)
      await until(() => l.counters.clientErrors > clientErrors || l.counters.refused > 0, 'reset client dealt with')
      t.equal(l.counters.refused, 0, `${version}: a trusted client reset before the accept is not refused`)
      t.ok(l.counters.clientErrors > clientErrors, `${version}: it is counted as a client that left`)

      // Straight to Baton from 127.0.0.5 (not trusted) with a forged header: refused and counted.
      const forged = net.connect({ host: HOST, port: batonPort, localAddress: CLIENT })
      forged.on('error', () => {})
      forged.write('PROXY TCP4 192.0.2.1 127.0.0.1 1 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n')
      await within(new Promise((r) => forged.once('close', r)), 'forged header: closed')
      t.equal(l.refusals.counts.get('proxy-untrusted'), 1, `${version}: forged header refused`)
    }
  })
}
