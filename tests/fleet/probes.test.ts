/**
 * The admin server's probe paths (/healthz, /readyz) for Kubernetes and load balancers: answered
 * to anyone (no token, any Host header), 503 from /readyz once the listeners stop accepting; and
 * BATON_ADMIN_TOKEN, the admin token from the environment (a Kubernetes Secret).
 */
import http from 'node:http'
import { pino } from 'pino'
import t from 'tap'
import { startAdmin } from '../../lib/admin/server.js'
import { createBalancer } from '../../lib/balancer.js'
import { parseCommand } from '../../lib/cli/args.js'
import { echoServer, HOST } from '../helpers/servers.js'

function get(
  port: number,
  path: string,
  host: string,
  method = 'GET'
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: HOST, port, path, method, headers: { host } }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('/healthz and /readyz: open to probes, readiness follows accepting', async (t) => {
  const echo = await echoServer()
  const balancer = createBalancer({
    listeners: [{ listen: `${HOST}:0`, backends: [`${HOST}:${echo.port}`] }],
    log: { level: 'silent' },
  })
  await balancer.listen()
  const admin = await startAdmin(balancer, {
    host: HOST,
    port: 0,
    token: 'a-long-enough-token',
    log: pino({ level: 'silent' }),
    history: { intervalMs: 60_000 },
  })
  t.teardown(async () => {
    await admin.close()
    await balancer.close(0)
    await echo.close()
  })
  const port = admin.address().port
  t.same(await get(port, '/healthz', 'kubelet.invalid'), { status: 200, body: 'ok\n' }, 'healthz: any Host')
  t.same(
    await get(port, '/readyz', '10.1.2.3:9901'),
    { status: 200, body: 'ready\n' },
    'readyz: ready while accepting'
  )
  t.equal((await get(port, '/readyz', 'x', 'HEAD')).status, 200, 'HEAD too')
  t.equal((await get(port, '/api/listeners', 'evil.example')).status, 403, 'the rest still checks the Host')
  t.equal((await get(port, '/readyz', 'x', 'POST')).status, 403, 'only GET and HEAD skip the checks')
  for (const l of balancer.frontends) l.stopAccepting()
  t.same(
    await get(port, '/readyz', 'x'),
    { status: 503, body: 'not ready\n' },
    'not ready once it stops accepting'
  )
  t.equal((await get(port, '/healthz', 'x')).status, 200, 'but alive')
})

t.test('BATON_ADMIN_TOKEN gives the admin token, over the config file\'s (README: Admin token)', async (t) => {
  const before = process.env.BATON_ADMIN_TOKEN
  t.teardown(() => {
    if (before === undefined) delete process.env.BATON_ADMIN_TOKEN
    else process.env.BATON_ADMIN_TOKEN = before
  })
  process.env.BATON_ADMIN_TOKEN = 'from-the-environment'
  const flags = parseCommand(['-l', ':7000', '-b', '127.0.0.1:1', '--admin', '0.0.0.0:9901'])
  t.same(flags.kind === 'run' && flags.config.admin, {
    listen: '0.0.0.0:9901',
    token: 'from-the-environment',
  })
  const file = parseCommand(['-c', 'x.yaml'], () => ({
    listeners: [],
    admin: { listen: '0.0.0.0:9901', token: 'from-the-file-itself' },
  }))
  t.same(
    file.kind === 'run' && file.config.admin,
    { listen: '0.0.0.0:9901', token: 'from-the-environment' },
    'the environment wins over the file (first found: --admin-token-file, BATON_ADMIN_TOKEN, admin.tokenFile, admin.token)'
  )
})
