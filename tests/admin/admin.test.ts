/**
 * The admin server in front of a real balancer: two listeners over two in-process echo backends,
 * sessions pushed through, then metrics, the JSON API, admin state changes that the balancing
 * honours, weights, the token policy and the error answers.
 */
import http from 'node:http'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { CSV_COLUMNS } from '../../lib/admin/api.js'
import { startAdmin, type AdminServer } from '../../lib/admin/server.js'
import type { Balancer } from '../../lib/balancer.js'
import { BatonError, ConfigError } from '../../lib/errors.js'
import { backendsOf, scope, type Scope } from '../helpers/balancer.js'
import type { Client } from '../helpers/clients.js'
import { echoServer, HOST, type TestServer } from '../helpers/servers.js'
import { until, within } from '../helpers/wait.js'

const log = pino({ level: 'silent' })

interface Reply {
  status: number
  headers: http.IncomingHttpHeaders
  text: string
  /** The body parsed as JSON, undefined when it is not JSON. */
  body: any
}

/** node:http without an agent: every header is the test's own (fetch forbids Host, may add Origin). */
function request(
  port: number,
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: string } = {}
): Promise<Reply> {
  return within(
    new Promise<Reply>((resolve, reject) => {
      const req = http.request(
        { host: HOST, port, method, path, headers: options.headers, agent: false },
        (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('error', reject)
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8')
            let body: unknown
            try {
              body = JSON.parse(text)
            } catch {
              body = undefined
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body })
          })
        }
      )
      req.on('error', reject)
      req.end(options.body)
    }),
    `${method} ${path}`
  )
}

interface Setup {
  s: Scope
  balancer: Balancer
  alpha: TestServer
  bravo: TestServer
  /** Port of listener `web` (balance first: alpha, then bravo); `api` has alpha only. */
  port: number
  admin: AdminServer
  adminPort: number
  call(
    method: string,
    path: string,
    options?: { headers?: Record<string, string>; body?: string }
  ): Promise<Reply>
}

async function setup(t: Test, token?: string, hosts?: string[]): Promise<Setup> {
  const s = scope(t)
  const alpha = await s.server(echoServer('alpha'))
  const bravo = await s.server(echoServer('bravo'))
  const { balancer, port } = await s.balancer({
    log: { level: 'silent' },
    listeners: [
      {
        name: 'web',
        listen: { host: HOST, port: 0 },
        balance: 'first',
        pool: { idle: 1 },
        backends: backendsOf([alpha, bravo]),
      },
      { name: 'api', listen: { host: HOST, port: 0 }, backends: backendsOf([alpha]) },
    ],
  })
  const admin = await startAdmin(balancer, {
    host: HOST,
    port: 0,
    log,
    ...(token !== undefined && { token }),
    ...(hosts !== undefined && { hosts }),
  })
  t.teardown(() => admin.close())
  const adminPort = admin.address().port
  return { s, balancer, alpha, bravo, port, admin, adminPort, call: (m, p, o) => request(adminPort, m, p, o) }
}

/** Open a client on `port` and make one echo round trip through it. */
async function session(t: Test, s: Scope, port: number, tag: string): Promise<Client> {
  const c = await s.connect(port)
  const data = Buffer.from(`hello ${tag}\n`)
  t.same(await c.roundTrip(data), data, `${tag} echoed`)
  return c
}

function backendOf(balancer: Balancer, listener: string, name: string) {
  const b = balancer.frontends.find((l) => l.name === listener)?.backends.find((x) => x.name === name)
  if (b === undefined) throw new Error(`no backend ${listener}/${name}`)
  return b
}

t.test('metrics, backends and sessions reflect the traffic', async (t) => {
  const { s, balancer, port, call } = await setup(t)
  for (let i = 0; i < 3; i++) await session(t, s, port, `client ${i}`)
  await session(t, s, balancer.address('api').port, 'api client')

  const m = await call('GET', '/metrics')
  t.equal(m.status, 200)
  t.match(m.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  const lines = new Set(m.text.split('\n'))
  for (const line of [
    'baton_sessions_total{listener="web"} 3',
    'baton_sessions_total{listener="api"} 1',
    'baton_sessions_active{listener="web"} 3',
    'baton_backend_up{listener="web",backend="alpha"} 1',
    'baton_backend_up{listener="web",backend="bravo"} 1',
    'baton_backend_sessions_active{listener="web",backend="alpha"} 3',
    'baton_backend_sessions_active{listener="web",backend="bravo"} 0',
    'baton_backend_admin_state{listener="web",backend="alpha",state="ready"} 1',
    'baton_backend_admin_state{listener="web",backend="alpha",state="drain"} 0',
    'baton_backend_weight{listener="api",backend="alpha"} 1',
    'baton_handoffs_total{listener="web",connection="pooled"} 0',
    'baton_failovers_total{listener="web"} 0',
    '# TYPE baton_handoff_latency_seconds histogram',
    'baton_handoff_latency_seconds_count{listener="web",connection="new"} 0',
  ])
    t.ok(lines.has(line), line)
  t.match(m.text, /^baton_client_received_bytes_total\{listener="web"\} [1-9]\d*$/m, 'live bytes counted')
  t.match(
    m.text,
    /^baton_backend_sent_bytes_total\{listener="web",backend="alpha"\} [1-9]\d*$/m,
    'live bytes counted per backend'
  )
  t.match(m.text, /^process_resident_memory_bytes \d+/m, 'process metrics')
  t.match(m.text, /^nodejs_eventloop_lag_seconds /m, 'Node runtime metrics')
  t.match(
    m.text,
    /^baton_build_info\{version="\d+\.\d+\.\d+[^"]*",node="v\d+[^"]*",data_plane="(js|native)"\} 1$/m
  )

  const backends = await call('GET', '/api/backends')
  t.equal(backends.status, 200)
  t.equal(backends.body.length, 3)
  t.match(backends.body[0], {
    listener: 'web',
    name: 'alpha',
    address: `${HOST}:${balancer.frontends[0]!.backends[0]!.port}`,
    weight: 1,
    health: 'up',
    admin: 'ready',
    active: 3,
    sessions: Number,
    failures: { consecutive: 0, connectErrors: 0, serverFailures: 0, ejections: 0 },
  })
  t.match(backends.body[2], { listener: 'api', name: 'alpha', active: 1 })

  const first = await call('GET', '/api/sessions?limit=3')
  t.match(first.body, { total: 4, offset: 0, limit: 3 })
  t.equal(first.body.sessions.length, 3)
  const rest = await call('GET', '/api/sessions?offset=3&limit=3')
  t.equal(rest.body.sessions.length, 1)
  t.match(rest.body.sessions[0], { listener: 'api', backend: 'alpha', state: 'open' })
  const ids = [...first.body.sessions, ...rest.body.sessions].map((x: { id: number }) => x.id)
  t.same(
    ids,
    [...ids].sort((a, b) => a - b),
    'pages follow session ids'
  )
  t.equal((await call('GET', '/api/sessions')).body.limit, 100, 'default limit')
  for (const q of ['limit=0', 'limit=1001', 'offset=-1', 'limit=abc', 'offset=1.5']) {
    const r = await call('GET', `/api/sessions?${q}`)
    t.equal(r.status, 400, q)
    t.type(r.body.error, 'string')
  }
})

t.test('drain, maint and ready change where new sessions go', async (t) => {
  const { s, balancer, port, call } = await setup(t)
  const alphaB = backendOf(balancer, 'web', 'alpha')
  const kept = await session(t, s, port, 'before drain')
  t.same(
    balancer.sessions().map((x) => x.backend),
    ['alpha'],
    'first client went to alpha'
  )

  const ambiguous = await call('POST', '/api/backends/alpha/drain')
  t.equal(ambiguous.status, 409, 'alpha is in two listeners')
  t.match(ambiguous.body.error, /web\/alpha/)

  const drained = await call('POST', '/api/backends/web%2Falpha/drain')
  t.equal(drained.status, 200)
  t.match(drained.body, { listener: 'web', name: 'alpha', admin: 'drain' })
  t.equal(alphaB.admin, 'drain')
  t.equal(backendOf(balancer, 'api', 'alpha').admin, 'ready', 'the other listener keeps its alpha')

  await session(t, s, port, 'after drain')
  const onBravo = balancer.sessions().filter((x) => x.backend === 'bravo')
  t.equal(onBravo.length, 1, 'the new client went to bravo')
  t.same(
    await kept.roundTrip(Buffer.from('still here')),
    Buffer.from('still here'),
    'drain keeps live sessions'
  )

  await until(() => alphaB.pool!.size === 1, 'alpha pool filled')
  const maint = await call('POST', '/api/backends/web/alpha/maint')
  t.equal(maint.status, 200)
  t.match(maint.body, { admin: 'maint', pool: 0 })
  t.equal(alphaB.pool!.size, 0, 'maint empties the warm pool')
  const m = await call('GET', '/metrics')
  t.match(m.text, 'baton_backend_admin_state{listener="web",backend="alpha",state="maint"} 1')
  t.match(m.text, 'baton_backend_admin_state{listener="web",backend="alpha",state="ready"} 0')

  const ready = await call('POST', '/api/backends/web/alpha/ready')
  t.match(ready.body, { admin: 'ready' })
  await until(() => alphaB.pool!.size === 1, 'ready refills the pool')
  await session(t, s, port, 'after ready')
  t.equal(
    balancer.sessions().filter((x) => x.backend === 'alpha').length,
    2,
    'alpha takes new sessions again'
  )

  t.equal((await call('POST', '/api/backends/bravo/drain')).status, 200, 'a unique bare name works')
  t.equal((await call('POST', '/api/backends/nope/drain')).status, 404)
  t.equal((await call('POST', '/api/backends/web/nope/maint')).status, 404)
  t.equal((await call('POST', '/api/backends/web/alpha/sleep')).status, 404, 'unknown action')
  t.equal((await call('POST', '/api/backends/web%ZZ/drain')).status, 400, 'bad percent-encoding')
})

t.test('weight: valid values are applied, others answer 400', async (t) => {
  const { balancer, call } = await setup(t)
  const json = { 'content-type': 'application/json' }
  const ok = await call('PUT', '/api/backends/bravo/weight', { headers: json, body: '{"weight":7}' })
  t.equal(ok.status, 200)
  t.match(ok.body, { name: 'bravo', weight: 7 })
  t.equal(backendOf(balancer, 'web', 'bravo').weight, 7)
  t.match((await call('GET', '/metrics')).text, 'baton_backend_weight{listener="web",backend="bravo"} 7')

  for (const body of [
    '{"weight":0}',
    '{"weight":1001}',
    '{"weight":2.5}',
    '{"weight":"5"}',
    '{}',
    'null',
    'weight=5',
    '',
  ]) {
    const r = await call('PUT', '/api/backends/bravo/weight', { headers: json, body })
    t.equal(r.status, 400, `body ${JSON.stringify(body)}`)
    t.type(r.body.error, 'string')
  }
  t.equal(backendOf(balancer, 'web', 'bravo').weight, 7, 'bad input changed nothing')
  const big = await call('PUT', '/api/backends/bravo/weight', {
    headers: json,
    body: `{"weight":1,"x":"${'x'.repeat(5000)}"}`,
  })
  t.equal(big.status, 413)
  t.equal(
    (await call('PUT', '/api/backends/zulu/weight', { headers: json, body: '{"weight":2}' })).status,
    404
  )
  t.equal((await call('POST', '/api/backends/bravo/weight', { body: '{"weight":2}' })).status, 405)
})

t.test('with a token, changes need it and reads stay open on loopback', async (t) => {
  const { call } = await setup(t, 's3cret-token')
  const none = await call('POST', '/api/backends/bravo/drain')
  t.equal(none.status, 401)
  t.match(none.headers['www-authenticate'], /^Bearer/)
  t.type(none.body.error, 'string')
  t.equal(
    (await call('POST', '/api/backends/bravo/drain', { headers: { authorization: 'Bearer wrong' } })).status,
    401
  )
  t.equal(
    (await call('POST', '/api/backends/bravo/drain', { headers: { authorization: 's3cret-token' } })).status,
    401,
    'scheme required'
  )
  const auth = { authorization: 'Bearer s3cret-token' }
  const good = await call('POST', '/api/backends/bravo/drain', { headers: auth })
  t.equal(good.status, 200)
  t.equal(good.body.admin, 'drain')
  t.equal((await call('GET', '/metrics')).status, 200, 'GET needs no token on loopback')
  t.equal((await call('GET', '/api/backends')).status, 200)
  const reload = await call('POST', '/api/reload', { headers: auth })
  t.equal(reload.status, 501)
  t.same(reload.body, { error: 'reload needs a config file' })
})

t.test('the Host header must name this server, with a token as without (DNS rebinding)', async (t) => {
  // A page on evil.example whose name is made to resolve to 127.0.0.1 talks to the admin server
  // with `Host: evil.example`; a token (which such a page may have phished, or a browser extension
  // holds) must not make that name acceptable.
  const auth = { authorization: 'Bearer s3cret-token' }
  for (const token of [undefined, 's3cret-token']) {
    const { call, adminPort } = await setup(t, token)
    const withAuth = token !== undefined ? auth : {}
    for (const host of [
      'evil.example',
      'evil.example:80',
      `evil.example:${adminPort}`,
      '192.0.2.1',
      '0.0.0.0',
    ]) {
      const post = await call('POST', '/api/backends/bravo/drain', { headers: { ...withAuth, host } })
      t.equal(post.status, 403, `token ${token !== undefined}: POST with Host ${host} refused`)
      t.match(post.body.error, /host/)
      const get = await call('GET', '/api/backends', { headers: { ...withAuth, host } })
      t.equal(get.status, 403, `token ${token !== undefined}: GET with Host ${host} refused`)
    }
    for (const host of [
      `127.0.0.1:${adminPort}`,
      'localhost',
      `LOCALHOST.:${adminPort}`,
      `[::1]:${adminPort}`,
    ]) {
      const post = await call('POST', '/api/backends/bravo/ready', { headers: { ...withAuth, host } })
      t.equal(post.status, 200, `token ${token !== undefined}: POST with Host ${host} accepted`)
    }
  }
})

t.test('admin.hosts: a listed name is accepted as the Host, others are still refused', async (t) => {
  const auth = { authorization: 'Bearer s3cret-token' }
  const { call, adminPort } = await setup(t, 's3cret-token', ['baton.internal', 'Admin.Example.'])
  for (const host of [
    'baton.internal',
    `baton.internal:${adminPort}`,
    'BATON.internal.',
    'admin.example:9',
  ]) {
    t.equal(
      (await call('POST', '/api/backends/bravo/drain', { headers: { ...auth, host } })).status,
      200,
      `listed: ${host}`
    )
    t.equal((await call('GET', '/metrics', { headers: { host } })).status, 200, `listed, GET: ${host}`)
  }
  for (const host of ['evil.example', 'x.baton.internal', 'baton.internal.evil.example']) {
    t.equal(
      (await call('POST', '/api/backends/bravo/drain', { headers: { ...auth, host } })).status,
      403,
      `not listed: ${host}`
    )
  }
  t.equal(
    (await call('POST', '/api/backends/bravo/drain', { headers: { host: 'baton.internal' } })).status,
    401,
    'a listed Host does not stand in for the token'
  )
})

t.test('binding outside loopback needs a token; bad tokens and ports are refused', async (t) => {
  const { balancer } = await setup(t)
  for (const host of ['0.0.0.0', '::', '192.0.2.1', 'example.com']) {
    await t.rejects(
      startAdmin(balancer, { host, port: 0, log }),
      { code: 'ERR_BATON_ADMIN', name: 'ConfigError', side: 'config', retryable: false },
      host
    )
  }
  const err = await startAdmin(balancer, { host: '0.0.0.0', port: 0, log }).catch((e: unknown) => e)
  t.ok(err instanceof BatonError)
  t.ok(err instanceof ConfigError, 'a bad admin option is a configuration error')
  t.match((err as Error).message, /without a token/)
  await t.rejects(startAdmin(balancer, { host: HOST, port: 0, log, token: '' }), { code: 'ERR_BATON_ADMIN' })
  await t.rejects(startAdmin(balancer, { host: HOST, port: 0, log, token: 'has space' }), {
    code: 'ERR_BATON_ADMIN',
  })
  await t.rejects(startAdmin(balancer, { host: HOST, port: 70000, log }), { code: 'ERR_BATON_ADMIN' })
  for (const host of ['127.0.0.1', 'localhost', '127.1.2.3']) {
    const a = await startAdmin(balancer, { host, port: 0, log })
    await a.close()
  }
  t.pass('loopback binds without a token')
})

t.test('unknown routes, wrong methods, browsers', async (t) => {
  const { call } = await setup(t)
  const nf = await call('GET', '/nope')
  t.equal(nf.status, 404)
  t.type(nf.body.error, 'string')
  const wrong = await call('GET', '/api/reload')
  t.equal(wrong.status, 405)
  t.equal(wrong.headers.allow, 'POST')
  t.equal((await call('DELETE', '/metrics')).status, 405)
  t.equal((await call('HEAD', '/metrics')).status, 200)
  const csrf = await call('POST', '/api/backends/bravo/drain', { headers: { origin: 'http://evil.example' } })
  t.equal(csrf.status, 403, 'cross-origin POST refused')
  const rebind = await call('GET', '/api/backends', { headers: { host: 'evil.example:80' } })
  t.equal(rebind.status, 403, 'a DNS-rebinding Host is refused')
  t.equal((await call('GET', '/api/backends', { headers: { host: 'localhost:1' } })).status, 200)
})

t.test('GET /api/backends.csv: every backend, a header line, CRLF', async (t) => {
  const { s, port, call } = await setup(t)
  await session(t, s, port, 'csv client')
  const csv = await call('GET', '/api/backends.csv')
  t.equal(csv.status, 200)
  t.match(csv.headers['content-type'], /^text\/csv; charset=utf-8/)
  t.match(csv.headers['content-disposition'], /^attachment; filename="baton-backends\.csv"$/)
  const lines = csv.text.split('\r\n')
  t.equal(lines.pop(), '', 'ends with CRLF')
  t.equal(lines[0], CSV_COLUMNS.join(','))
  t.equal(lines.length, 4, 'header and three backends')
  const alpha = Object.fromEntries(CSV_COLUMNS.map((c, i) => [c, lines[1]!.split(',')[i]]))
  t.match(alpha, { listener: 'web', backend: 'alpha', health: 'up', admin: 'ready', sessions: '1' })
  t.ok(Number(alpha.bytes_sent) > 0, 'live bytes counted')
  t.match(alpha.state_since, /^\d{4}-\d\d-\d\dT/)
  t.equal(alpha.last_check, '', 'no checks on this listener')
})

t.test('the status page lists listeners and backends with their state', async (t) => {
  const { call } = await setup(t)
  await call('POST', '/api/backends/bravo/drain')
  const page = await call('GET', '/')
  t.equal(page.status, 200)
  t.match(page.headers['content-type'], /^text\/html/)
  t.match(page.text, /<h2>web /)
  t.match(page.text, /<h2>api /)
  t.match(page.text, /<tr class="ok"><td>alpha<\/td>/)
  t.match(page.text, /<tr class="warn"><td>bravo<\/td>.*DRAIN/)
  t.match(page.text, /setInterval/, 'refreshes itself')
  t.match(page.text, /<h1>Baton <small class="version">\d+\.\d+\.\d+[^<]* · Node\.js v\d+/, 'version')
  t.match(page.text, /<p class="meta">up \d+ (s|min|h|d)/, 'uptime')
  t.match(page.text, /<a href="api\/backends\.csv" download>/, 'CSV export link')
  t.match(
    page.text,
    /<tr class="warn"><td>bravo<\/td>.*<button type="button" data-backend="web\/bravo" data-state="ready">ready<\/button><button type="button" data-backend="web\/bravo" data-state="drain" disabled>/,
    'buttons for the other states; the current one disabled'
  )
  t.match(
    page.text,
    /<tr class="ok"><td>alpha<\/td>(<td>[^]*?<\/td>){7}<td>–<\/td>/,
    'no rate before two samples'
  )
  t.notMatch(page.text, /<(script|link)[^>]+src=|https?:\/\//, 'self-contained')
})
