/**
 * Interop (issue 13, item 3): a real PostgreSQL behind an opaque listener. psql's startup (an
 * SSLRequest answered `N`, then the StartupMessage) goes through Baton, and the session is pinned
 * once the server has answered it: when its backend process dies with a query unanswered, the
 * query is not re-sent to another backend (it never saw the startup), the client is closed as a
 * plain proxy would.
 *
 * PostgreSQL will not run as root: as root, the cluster is made and run as the `postgres` user in a
 * temporary directory. Skips with the reason when PostgreSQL or that user is missing.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, chmodSync, chownSync } from 'node:fs'
import { userInfo, tmpdir } from 'node:os'
import net from 'node:net'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import t, { type Test } from 'tap'
import { createBalancer, type Balancer } from '../../lib/index.js'
import { spawnPeer, stopAll, finished, type Peer } from './helpers/process.js'
import { once, WAIT_MS } from '../helpers/wait.js'

function pgBin(): string | undefined {
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return undefined
  for (const v of readdirSync(root).sort().reverse()) {
    const bin = join(root, v, 'bin')
    if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'postgres'))) return bin
  }
  return undefined
}

/** The user to run PostgreSQL as: ourselves, or `postgres` when we are root. */
function pgUser(): { uid: number; gid: number; name: string } | undefined {
  if (process.getuid?.() !== 0) return { uid: process.getuid!(), gid: process.getgid!(), name: userInfo().username }
  try {
    const id = (flag: string): number => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim())
    return { uid: id('-u'), gid: id('-g'), name: 'postgres' }
  } catch {
    return undefined
  }
}

function asUser(user: string, argv: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['runuser', ['-u', user, '--', ...argv]] : [argv[0]!, argv.slice(1)]
}

async function freePort(): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as net.AddressInfo).port
  await new Promise((r) => s.close(r))
  return port
}

/** Resolves once `peer`'s stderr matches (PostgreSQL logs there). */
function stderrMatches(peer: Peer, re: RegExp, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${re} from ${peer.name}: ${peer.stderr()}`)), ms)
    const check = (): void => {
      if (!re.test(peer.stderr())) return
      clearTimeout(timer)
      peer.child.stderr?.off('data', check)
      resolve()
    }
    peer.child.stderr?.on('data', check)
    check()
  })
}

function startup(user: string): Buffer {
  const params = Buffer.from(`user\0${user}\0database\0postgres\0\0`, 'latin1')
  const b = Buffer.alloc(8 + params.length)
  b.writeUInt32BE(b.length, 0)
  b.writeUInt32BE(0x00030000, 4)
  params.copy(b, 8)
  return b
}

function query(sql: string): Buffer {
  const text = Buffer.from(sql + '\0')
  const b = Buffer.alloc(5 + text.length)
  b[0] = 0x51
  b.writeUInt32BE(4 + text.length, 1)
  text.copy(b, 5)
  return b
}

t.test('PostgreSQL through Baton: psql works; a session pinned by its startup is not re-sent', async (t: Test) => {
  const bin = pgBin()
  const user = pgUser()
  if (bin === undefined || user === undefined) {
    const why = bin === undefined ? 'PostgreSQL is not installed (apt-get install -y postgresql)' : 'running as root and there is no postgres user'
    if (process.env.CI !== undefined) t.fail(why)
    else t.pass('postgres interop', { skip: why })
    return
  }
  const dir = mkdtempSync(join(tmpdir(), 'baton-pg-'))
  chmodSync(dir, 0o700)
  chownSync(dir, user.uid, user.gid)
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
  const init = spawnPeer('initdb', ...asUser(user.name, [join(bin, 'initdb'), '-D', join(dir, 'data'), '-A', 'trust', '-U', 'baton', '--no-sync']))
  t.equal((await finished(init, 60_000)).code, 0, 'initdb')
  const pgPort = await freePort()
  const pg = spawnPeer('postgres', ...asUser(user.name, [join(bin, 'postgres'), '-D', join(dir, 'data'), '-k', dir, '-h', '127.0.0.1', '-p', String(pgPort), '-c', 'fsync=off']))
  peers.push(pg)
  await stderrMatches(pg, /ready to accept connections/, 30_000)
  await new Promise<void>((r) => other.listen(0, '127.0.0.1', r))
  balancer = createBalancer({
    listeners: [
      {
        listen: '127.0.0.1:0',
        dataPlane: 'js',
        balance: 'first',
        backends: [`127.0.0.1:${pgPort}`, `127.0.0.1:${(other.address() as net.AddressInfo).port}`],
      },
    ],
    log: { level: 'silent' },
  })
  await balancer.listen()
  const port = balancer.address().port

  const psql = spawnPeer('psql', join(bin, 'psql'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'baton', '-d', 'postgres', '-Atc', 'select 40 + 2'])
  t.equal((await finished(psql, 30_000)).code, 0, `psql through Baton: ${psql.stderr().trim()}`)
  t.equal(psql.stdout().trim(), '42')

  // A raw client: startup, then a query that will not be answered before its backend process dies.
  const client = net.connect(port, '127.0.0.1')
  client.on('error', () => {})
  client.write(startup('baton'))
  let pid = 0
  let got = Buffer.alloc(0)
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no ReadyForQuery')), WAIT_MS)
    client.on('data', function onData(c: Buffer) {
      got = Buffer.concat([got, c])
      // Walk the messages: BackendKeyData ('K') carries the backend's pid; ReadyForQuery ('Z') ends the startup.
      for (let at = 0; at + 5 <= got.length; ) {
        const len = got.readUInt32BE(at + 1)
        if (at + 1 + len > got.length) break
        if (got[at] === 0x4b) pid = got.readUInt32BE(at + 5)
        if (got[at] === 0x5a) {
          clearTimeout(timer)
          client.off('data', onData)
          return resolve()
        }
        at += 1 + len
      }
    })
  })
  t.ok(pid > 0, `the backend process is ${pid}`)
  client.write(query('SELECT pg_sleep(30)'))
  const closed = once(client, 'close', { timeoutMs: 20_000 })
  process.kill(pid, 'SIGKILL')
  await closed
  t.equal(otherAccepted, 0, 'the query was not re-sent to a backend that never saw the startup')
  t.equal(balancer.counters().failovers, 0, 'no failover')
})
