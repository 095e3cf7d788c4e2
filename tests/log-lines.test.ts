/**
 * The log lines an operator reads on a bad night (README "Logs"): a backend going down says why and
 * how many are still up; "up again" has one wording; "no other backend is usable" and "no backend
 * available" say why each backend is not; failed admin authentication is logged, at most once a
 * second; a reload says what changed.
 */
import { EventEmitter } from 'node:events'
import http from 'node:http'
import { pino } from 'pino'
import t from 'tap'
import { startAdmin } from '../lib/admin/server.js'
import type { SessionCloseEvent } from '../lib/balancer.js'
import { JSON_LOG_OPTIONS } from '../lib/log.js'
import { backendsOf, oneListener, scope } from './helpers/balancer.js'
import { withPlane } from './helpers/plane.js'
import { echoServer, HOST, refusedPort } from './helpers/servers.js'
import { once, within } from './helpers/wait.js'

type Line = Record<string, unknown> & { msg: string; level: string }

/** A pino destination that keeps every JSON line. */
class Captured extends EventEmitter {
  readonly lines: Line[] = []
  write(text: string): void {
    for (const l of text.split('\n')) {
      if (l === '') continue
      const line = JSON.parse(l) as Line
      this.lines.push(line)
      this.emit('line', line)
    }
  }

  async next(msg: string, filter: (l: Line) => boolean = () => true): Promise<Line> {
    const seen = this.lines.find((l) => l.msg === msg && filter(l))
    if (seen !== undefined) return seen
    const [line] = await once<[Line]>(this, 'line', { filter: (l) => l.msg === msg && filter(l) })
    return line
  }

  logger() {
    return pino({ level: 'info', ...JSON_LOG_OPTIONS }, this)
  }
}

t.test('health check: down says why and how many are up; up again, in one wording', async (t) => {
  const s = scope(t)
  const alpha = await s.server(echoServer('alpha'))
  const bravo = await s.server(echoServer('bravo'))
  const out = new Captured()
  await s.balancer(
    oneListener([alpha, bravo], {
      healthCheck: { type: 'tcp', interval: 50, timeout: 500, rise: 1, fall: 1 },
    }),
    { logger: out.logger() }
  )
  const port = bravo.port
  await bravo.close()
  const down = await out.next('health check: backend is down')
  t.equal(down.level, 'warn')
  t.equal(down.backend, 'bravo')
  t.match(down.reason, /ECONNREFUSED|refused/i, `why: ${String(down.reason)}`)
  t.equal(down.up, 1, 'one backend still up')
  t.equal(down.of, 2)
  // Back on the same port.
  await bravo.listen(port)
  const up = await out.next('backend is up again', (l) => l.backend === 'bravo')
  t.equal(up.level, 'info')
  t.equal(up.via, 'health check')
  t.equal(up.up, 2)
  t.equal(up.of, 2)
})

t.test(
  'passive: marked down with the reason and the count; no backend: why each one is not usable',
  async (t) => {
    const s = scope(t)
    const one = await refusedPort('one')
    const two = await refusedPort('two')
    const out = new Captured()
    const { balancer, port } = await s.balancer(
      oneListener([one, two], { balance: 'first', retries: 1, passive: { failures: 1, cooldown: 60_000 } }),
      { logger: out.logger() }
    )
    const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
    const client = s.client(port)
    await within(client.closed, 'client closed')
    t.equal((await closed)[0].outcome, 'connect-failed')
    const down = await out.next('backend marked down after consecutive connect failures')
    t.equal(down.backend, 'one')
    t.equal(down.reason, 'ECONNREFUSED')
    t.equal(down.up, 1, 'the other is still up')
    t.equal(down.of, 2)
    const none = await out.next('no backend available, client closed')
    const why = none.backends as Record<string, string>
    t.match(why.one, /^down for \d+ ms more \(passive: 1 failures in a row\)$/)
    // maxEjectPercent (50) keeps the second one in: it is not down, it failed for this session.
    t.equal(why.two, 'failed for this session')
  }
)

t.test('no other backend is usable: why each other one is not', async (t) => {
  const s = scope(t)
  const alpha = await s.server(echoServer('alpha'))
  const bravo = await s.server(echoServer('bravo'))
  const out = new Captured()
  const { balancer } = await s.balancer(
    oneListener([alpha, bravo], {
      protocol: 'length-prefixed', // onDown: migrate
      healthCheck: { type: 'tcp', interval: 50, timeout: 500, rise: 1, fall: 1 },
    }),
    { logger: out.logger() }
  )
  balancer.frontends[0]!.backends[1]!.admin = 'maint'
  await alpha.close()
  const line = await out.next('no other backend is usable: sessions stay on this one for now')
  t.equal(line.backend, 'alpha')
  t.strictSame(line.others, { bravo: 'in maintenance (admin)' })
})

t.test('failed admin authentication is logged, at most once a second', async (t) => {
  const s = scope(t)
  const alpha = await s.server(echoServer('alpha'))
  const out = new Captured()
  const { balancer } = await s.balancer(oneListener([alpha]))
  const admin = await startAdmin(balancer, { host: HOST, port: 0, token: 'right-token', log: out.logger() })
  t.teardown(() => admin.close())
  const started = Date.now()
  const statuses: number[] = []
  for (const authorization of ['Bearer wrong', undefined, 'Bearer wrong-again']) {
    statuses.push(await post(admin.address().port, '/api/backends/alpha/drain', authorization))
  }
  const elapsed = Date.now() - started
  t.strictSame(statuses, [401, 401, 401])
  const first = await out.next('admin authentication failed')
  t.equal(first.level, 'warn')
  t.equal(first.credentials, 'wrong')
  t.equal(first.method, 'POST')
  t.equal(first.path, '/api/backends/alpha/drain')
  t.match(first.remote, /^127\.0\.0\.1:\d+$/)
  t.equal(first.failures, 1)
  t.notMatch(JSON.stringify(out.lines), /right-token|wrong-again/, 'no token in the log')
  const lines = out.lines.filter((l) => l.msg === 'admin authentication failed')
  t.ok(lines.length <= Math.floor(elapsed / 1000) + 1, `${lines.length} lines in ${elapsed} ms`)
  // A good token is not logged as a failure.
  t.equal(await post(admin.address().port, '/api/backends/alpha/ready', 'Bearer right-token'), 200)
  t.equal(out.lines.filter((l) => l.msg === 'admin authentication failed').length, lines.length)
})

t.test('a reload says what changed', async (t) => {
  const s = scope(t)
  const alpha = await s.server(echoServer('alpha'))
  const bravo = await s.server(echoServer('bravo'))
  const charlie = await s.server(echoServer('charlie'))
  const out = new Captured()
  const { balancer, port } = await s.balancer(
    {
      log: { level: 'info' },
      listeners: [{ name: 'web', listen: { host: HOST, port: 0 }, backends: backendsOf([alpha, bravo]) }],
    },
    { logger: out.logger() }
  )
  const same = {
    log: { level: 'info' as const },
    listeners: [{ name: 'web', listen: { host: HOST, port }, backends: backendsOf([alpha, bravo]) }],
  }
  await balancer.reload(withPlane(same))
  const unchanged = await out.next('configuration reloaded')
  t.equal(unchanged.unchanged, true, 'nothing changed, and it says so')

  await balancer.reload(
    withPlane({
      log: { level: 'info' },
      maxConnections: 100,
      listeners: [
        {
          name: 'web',
          listen: { host: HOST, port },
          connectTimeout: '1s',
          backends: backendsOf([{ endpoint: alpha, weight: 3 }, charlie]),
        },
        { name: 'extra', listen: { host: HOST, port: 0 }, backends: backendsOf([charlie]) },
      ],
    })
  )
  const changed = await out.next('configuration reloaded', (l) => l.unchanged === undefined)
  t.strictSame(changed.backendsAdded, ['web/charlie'])
  t.strictSame(changed.backendsRemoved, ['web/bravo'])
  t.strictSame(changed.backendsChanged, ['web/alpha (weight 1 → 3)'])
  t.strictSame(changed.listenersChanged, ['web (connectTimeout)'])
  t.strictSame(changed.listenersAdded, ['extra'])
  t.strictSame(changed.settingsChanged, ['maxConnections'])
  t.equal(changed.listenersRemoved, undefined, 'empty lists are left out')
})

function post(port: number, path: string, authorization: string | undefined): Promise<number> {
  return within(
    new Promise<number>((resolve, reject) => {
      const req = http.request(
        {
          host: HOST,
          port,
          method: 'POST',
          path,
          agent: false,
          headers: authorization !== undefined ? { authorization } : {},
        },
        (res) => {
          res.resume()
          res.on('end', () => resolve(res.statusCode ?? 0))
        }
      )
      req.on('error', reject)
      req.end()
    }),
    `POST ${path}`
  )
}
