/**
 * Baton's own shortages are not a backend's fault (issue 10, "Running out of file descriptors is
 * blamed on backends"). The CLI runs under a low `ulimit -n`, three healthy echo backends behind it,
 * and a flood of clients far past what the descriptors allow:
 * - with `maxConnections` derived from the limit (the default), the excess is refused at accept
 *   (`rejected`) before any EMFILE;
 * - with an explicit `maxConnections` above the limit, EMFILE does happen: it is counted as a local
 *   error, the rejection log is rate-limited, and no backend is marked down.
 * In both cases the backends stay up and a client that comes after the flood is served.
 */
import { spawn } from 'node:child_process'
import net from 'node:net'
import { createInterface } from 'node:readline'
import t from 'tap'
import { children, CLI, ensureBuilt, parseLog, ROOT } from '../helpers/cli.js'
import { echoServer, HOST, type TestServer } from '../helpers/servers.js'
import { oneListener, startBalancer } from '../helpers/balancer.js'
import { loadNativePlane } from '../../lib/native/plane.js'

t.setTimeout(120_000)
t.before(() => ensureBuilt((text) => t.comment(text)))

interface LogLine {
  msg: string
  level: string
  address?: string
  component?: string
  [k: string]: unknown
}

async function startUnderLimit(nofile: number, extra: string[], backends: TestServer[]) {
  const args = [
    CLI,
    '--listen',
    `${HOST}:0`,
    '--admin',
    `${HOST}:0`,
    '--log-level',
    'info',
    ...backends.flatMap((b) => ['--backend', `${HOST}:${b.port}`]),
    ...extra,
  ]
  const child = spawn('bash', ['-c', `ulimit -n ${nofile} && exec "$0" "$@"`, process.execPath, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.add(child)
  const lines: LogLine[] = []
  createInterface({ input: child.stdout }).on('line', (l) => {
    const v = parseLog<LogLine>(l)
    if (v !== undefined) lines.push(v)
  })
  const ports = await new Promise<{ port: number; admin: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('baton did not start')), 20_000)
    let port = 0
    let admin = 0
    const check = setInterval(() => {
      for (const l of lines) {
        if (l.msg === 'listening' && l.address !== undefined) port = Number(l.address.split(':').pop())
        if (l.msg === 'admin server listening' && l.address !== undefined)
          admin = Number(l.address.split(':').pop())
      }
      if (port > 0 && admin > 0) {
        clearInterval(check)
        clearTimeout(timer)
        resolve({ port, admin })
      }
    }, 20)
  })
  return { child, lines, ...ports }
}

/**
 * Open `n` clients at once; each sends one line and waits for its echo, a close, or 5 s. A client
 * that got its echo stays connected until every client is done, so the flood holds `n` sessions
 * at its peak however fast the balancer serves them (a client that left at once could let the
 * flood pass under the limit on a slow machine).
 */
async function flood(port: number, n: number): Promise<{ echoed: number; closed: number }> {
  let echoed = 0
  let closed = 0
  const sockets: net.Socket[] = []
  await Promise.all(
    Array.from(
      { length: n },
      (_, i) =>
        new Promise<void>((resolve) => {
          const s = net.connect({ host: HOST, port })
          sockets.push(s)
          const msg = `hello ${i}\n`
          let got = ''
          const timer = setTimeout(done, 5000)
          function done(): void {
            clearTimeout(timer)
            resolve()
          }
          s.on('connect', () => s.write(msg))
          s.on('data', (d) => {
            got += d.toString()
            if (got === msg) {
              echoed++
              done()
            }
          })
          s.on('error', () => {})
          s.on('close', () => {
            if (got !== msg) closed++
            done()
          })
        })
    )
  )
  for (const s of sockets) s.destroy()
  return { echoed, closed }
}

/**
 * GET on the admin server. Right after a flood the process may still be short of descriptors
 * (sessions closing), and the admin accept is shed like any other: a bounded number of tries.
 */
async function get(admin: number, path: string): Promise<Response> {
  let last: unknown
  for (let i = 0; i < 50; i++) {
    try {
      return await fetch(`http://${HOST}:${admin}${path}`)
    } catch (err) {
      last = err
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  throw last
}

async function metrics(admin: number): Promise<Map<string, number>> {
  const res = await get(admin, '/metrics')
  const text = await res.text()
  const m = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue
    const sp = line.lastIndexOf(' ')
    m.set(line.slice(0, sp), Number(line.slice(sp + 1)))
  }
  return m
}

function sum(m: Map<string, number>, name: string): number {
  let total = 0
  for (const [k, v] of m) if (k === name || k.startsWith(`${name}{`)) total += v
  return total
}

async function backendsUp(admin: number): Promise<boolean[]> {
  const res = await get(admin, '/api/backends')
  const body = (await res.json()) as
    { backends?: { health?: string; up?: boolean }[] } | { health?: string }[]
  const list = Array.isArray(body) ? body : (body.backends ?? [])
  return list.map((b) => (b as { health?: string }).health !== 'down' && (b as { up?: boolean }).up !== false)
}

t.test('descriptor limit sets the default maxConnections: excess refused, no backend blamed', async (t) => {
  const backends = await Promise.all([echoServer('a'), echoServer('b'), echoServer('c')])
  t.teardown(() => Promise.all(backends.map((b) => b.close())))
  const b = await startUnderLimit(120, [], backends)
  t.teardown(() => void b.child.kill('SIGKILL'))
  const r = await flood(b.port, 400)
  t.ok(r.echoed > 0, `some clients served during the flood (${r.echoed})`)
  const m = await metrics(b.admin)
  t.ok(sum(m, 'baton_rejected_total') > 0, 'the excess was refused at accept (rejected)')
  t.equal(sum(m, 'baton_connect_errors_total'), 0, 'no connect error counted against a backend')
  t.same(await backendsUp(b.admin), [true, true, true], 'every backend still up')
  t.notOk(
    b.lines.some((l) => /marked down/.test(l.msg)),
    'no backend marked down in the log'
  )
  const after = await flood(b.port, 5)
  t.equal(after.echoed, 5, 'clients after the flood are served')
})

t.test('EMFILE flood past an explicit maxConnections: no backend blamed, served after', async (t) => {
  const backends = await Promise.all([echoServer('a'), echoServer('b'), echoServer('c')])
  t.teardown(() => Promise.all(backends.map((b) => b.close())))
  const b = await startUnderLimit(120, ['--max-connections', '5000'], backends)
  t.teardown(() => void b.child.kill('SIGKILL'))
  // Waves, so descriptors churn: accepts fail with EMFILE and, now and then, an accept takes the
  // last descriptor and leaves none for the backend connect.
  let closed = 0
  for (let wave = 0; wave < 10; wave++) closed += (await flood(b.port, 150)).closed
  t.ok(closed > 0, `clients past the descriptors were closed (${closed})`)
  const m = await metrics(b.admin)
  t.equal(sum(m, 'baton_connect_errors_total'), 0, 'no connect error counted against a backend')
  t.same(await backendsUp(b.admin), [true, true, true], 'every backend still up')
  t.notOk(
    b.lines.some((l) => /marked down/.test(l.msg)),
    'no backend marked down in the log'
  )
  const warnings = b.lines.filter((l) => /out of local resources/.test(l.msg)).length
  t.ok(warnings <= 15, `the local-error warning is rate-limited (${warnings} lines)`)
  // Sessions of the flood may still be closing: a bounded number of tries for a served client.
  let served = false
  for (let i = 0; i < 50 && !served; i++) {
    served = (await flood(b.port, 1)).echoed === 1
    if (!served) await new Promise((r) => setTimeout(r, 100))
  }
  t.ok(served, 'a client after the flood is served')
})

t.test('EMFILE on a backend connect: local error, client shed briefly, backend untouched', async (t) => {
  // Deterministic: the connect itself fails with EMFILE, as socket() does when the accept took the
  // last descriptor.
  const backend = await echoServer('a')
  t.teardown(() => backend.close())
  const { balancer, port } = await startBalancer(oneListener([backend]))
  t.teardown(() => balancer.close(0))
  const realConnect = net.connect
  let failNext = 1
  ;(net as { connect: typeof net.connect }).connect = ((...args: Parameters<typeof net.connect>) => {
    const o = args[0] as { port?: number }
    if (failNext > 0 && typeof o === 'object' && o.port === backend.port) {
      failNext--
      const s = new net.Socket()
      process.nextTick(() =>
        s.destroy(Object.assign(new Error('connect EMFILE'), { code: 'EMFILE', syscall: 'socket' }))
      )
      return s
    }
    return realConnect(...args)
  }) as typeof net.connect
  t.teardown(() => void ((net as { connect: typeof net.connect }).connect = realConnect))
  // On the native plane the plane makes the connect itself (docs/native-plane.md, "Connects"): the
  // same EMFILE from its socket(), as the addon reports it.
  const plane = loadNativePlane().plane
  if (balancer.frontends[0]!.plane === 'native' && plane !== undefined) {
    const realPlaneConnect = plane.connect.bind(plane)
    const own = plane as { connect: typeof plane.connect }
    own.connect = (family, address, p, onDone) => {
      if (failNext > 0 && p === backend.port) {
        failNext--
        throw Object.assign(new Error('socket EMFILE'), { code: 'EMFILE' })
      }
      return realPlaneConnect(family, address, p, onDone)
    }
    t.teardown(() => void delete (own as { connect?: unknown }).connect)
  }
  const first = await flood(port, 1)
  t.equal(first.closed, 1, 'the client whose connect hit EMFILE is closed')
  const shed = await flood(port, 1)
  t.equal(shed.closed, 1, `a client right after is shed (descriptors short)`)
  const c = balancer.frontends[0]!.counters
  t.equal(c.localErrors, 2, 'both counted as local errors')
  t.equal(c.connectErrors, 0, 'not a connect error')
  const be = balancer.frontends[0]!.backends[0]!
  t.equal(be.counters.connectErrors, 0, 'nothing counted against the backend')
  t.equal(be.consecutiveFailures, 0, 'no consecutive failure recorded')
  let served = false
  for (let i = 0; i < 50 && !served; i++) {
    served = (await flood(port, 1)).echoed === 1
    if (!served) await new Promise((r) => setTimeout(r, 50))
  }
  t.ok(served, 'once the shed window passes, clients are served again')
})
