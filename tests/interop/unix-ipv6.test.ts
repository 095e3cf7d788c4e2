/**
 * Interop over unix-domain sockets and IPv6: Baton (`protocol: http1`) listening on a unix socket in
 * front of two real nginx, one listening on a unix socket (`listen unix:…`) and one on [::1] (on
 * 127.0.0.1 where ::1 cannot be bound). curl reaches Baton with `--unix-socket`; Node's keep-alive
 * http client fetches an 8 MiB file in a loop over one connection, and the unix nginx is SIGKILLed
 * between two of its requests (which leaves its socket file behind, as any crash does): every body
 * arrives whole, on the same client connection, from the other nginx. Skips with the reason when
 * nginx (or, for its part, curl) is missing.
 */
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { createBalancer } from '../../lib/index.js'
import { closeHard } from '../helpers/balancer.js'
import { ipv6Unavailable } from '../helpers/net.js'
import { within } from '../helpers/wait.js'
import { hasNginx, makeDocRoot, sha256 } from './helpers/nginx.js'
import { hasCommand, killPeer, spawnPeer, stopAll, type Peer } from './helpers/process.js'
import { freePort } from './helpers/socat.js'

const run = promisify(execFile)

/** One nginx process (`master_process off`: its pid is the server) on `listen`, serving `root`. */
async function nginx(name: string, listen: string, root: string, prefix: string): Promise<Peer> {
  const conf = path.join(prefix, `${name}.conf`)
  writeFileSync(
    conf,
    [
      'worker_processes 1;',
      'error_log stderr;',
      `pid ${path.join(prefix, `${name}.pid`)};`,
      'events {}',
      'http {',
      '  access_log off;',
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(
        (d) => `  ${d}_temp_path ${path.join(prefix, `${name}-${d}`)};`
      ),
      `  server { listen ${listen}; root ${root}; keepalive_requests 100000; }`,
      '}',
      '',
    ].join('\n')
  )
  return spawnPeer(name, 'nginx', [
    '-e',
    'stderr',
    '-c',
    conf,
    '-p',
    prefix,
    '-g',
    'daemon off; master_process off;',
  ])
}

/** Resolves once `where` accepts a connection (bounded). */
async function accepting(where: net.NetConnectOpts, what: string): Promise<void> {
  const deadline = Date.now() + 5000
  for (let i = 0; i < 100 && Date.now() < deadline; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(where)
      s.once('connect', () => (s.destroy(), resolve(true)))
      s.once('error', () => resolve(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`${what}: not accepting within 5 s`)
}

t.test('nginx on a unix socket and on [::1], Baton on a unix socket', async (t) => {
  if (!hasNginx()) return t.pass('unix/IPv6 interop', { skip: 'nginx is not on PATH' })
  const v6Why = await ipv6Unavailable()
  const v6Host = v6Why === undefined ? '::1' : '127.0.0.1'
  if (v6Why !== undefined) t.comment(`${v6Why}: the second nginx listens on 127.0.0.1`)

  const root = makeDocRoot()
  const dir = mkdtempSync(path.join(tmpdir(), 'baton-'))
  const peers: Peer[] = []
  let balancer: ReturnType<typeof createBalancer> | undefined
  t.teardown(async () => {
    if (balancer !== undefined) await closeHard(balancer)
    await stopAll(peers)
    root.remove()
    rmSync(dir, { recursive: true, force: true })
  })
  const unixSock = path.join(dir, 'nginx.sock')
  const port = await freePort(v6Host)
  const listen6 = v6Host === '::1' ? `[::1]:${port}` : `127.0.0.1:${port}`
  peers.push(await nginx('unix-nginx', `unix:${unixSock}`, root.dir, dir))
  peers.push(await nginx('v6-nginx', listen6, root.dir, dir))
  await accepting({ path: unixSock }, 'nginx on a unix socket')
  await accepting({ host: v6Host, port }, `nginx on ${listen6}`)

  const batonSock = path.join(dir, 'baton.sock')
  balancer = createBalancer({
    log: { level: 'silent' },
    listeners: [
      {
        listen: `unix:${batonSock}`,
        backends: [`unix:${unixSock}`, listen6],
        balance: 'first',
        protocol: 'http1',
        healthCheck: { type: 'http', path: '/small.bin', interval: 200 },
      },
    ],
  })
  await balancer.listen()
  t.same(
    balancer.frontends[0]!.backends.map((b) => b.name),
    [`unix:${unixSock}`, listen6]
  )

  if (hasCommand('curl')) {
    const { stdout } = await within(
      run('curl', ['-sS', '--unix-socket', batonSock, '-o', '-', 'http://localhost/small.bin'], {
        encoding: 'buffer',
        maxBuffer: 1 << 20,
      }),
      'curl --unix-socket'
    )
    t.equal(
      sha256(stdout),
      root.files.small.sha256,
      'curl --unix-socket through Baton to nginx on a unix socket'
    )
  } else t.comment('curl not on PATH: that part skipped')

  // One keep-alive connection; the unix nginx dies part-way through the loop.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const sockets = new Set<net.Socket>()
  const get = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const req = http.get({ socketPath: batonSock, path: root.files.big.path, agent }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve(sha256(chunks)))
        res.on('error', reject)
      })
      req.on('socket', (s: net.Socket) => sockets.add(s))
      req.on('error', reject)
    })
  const served: string[] = []
  for (let i = 0; i < 8; i++) {
    if (i === 3) killPeer(peers[0]!) // mid-loop: the next request (or this one's tail) fails over
    t.equal(await within(get(), `request ${i}`), root.files.big.sha256, `body ${i} whole`)
    served.push(balancer.sessions()[0]?.backend ?? '?')
  }
  t.equal(sockets.size, 1, 'every request on the one client connection')
  t.equal(served.at(-1), listen6, 'served by the other nginx after the kill')
  t.equal(balancer.counters().unrecoverable, 0)
})
