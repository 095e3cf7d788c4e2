/**
 * Addresses (lib/address.ts) and every form the schema takes for them: host:port, :port, [v6]:port,
 * { host, port } with and without brackets, unix:/path and { path, mode }; and what it refuses.
 */
import { existsSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import {
  formatAddress,
  MAX_UNIX_PATH_BYTES,
  peerHost,
  removeStaleSocket,
  unixPathProblem,
} from '../lib/address.js'
import { validateConfig } from '../lib/config/validate.js'
import { ConfigError } from '../lib/errors.js'
import { parseBackendFlag, parseCommand } from '../lib/cli/args.js'
import { socketDir, staleSocket } from './helpers/net.js'
import { once, within } from './helpers/wait.js'

t.test('formatAddress', async (t) => {
  t.equal(formatAddress({ host: '127.0.0.1', port: 7000 }), '127.0.0.1:7000')
  t.equal(formatAddress({ host: '::1', port: 7000 }), '[::1]:7000')
  t.equal(formatAddress({ host: 'fe80::1%eth0', port: 22 }), '[fe80::1%eth0]:22')
  t.equal(formatAddress({ host: 'db.local', port: 5432 }), 'db.local:5432')
  t.equal(formatAddress({ path: '/run/app.sock' }), 'unix:/run/app.sock')
  t.equal(formatAddress({ host: '', port: 0, path: '/run/app.sock' }), 'unix:/run/app.sock')
})

t.test('peerHost: the address part of a client name', async (t) => {
  t.equal(peerHost('127.0.0.1:5000'), '127.0.0.1')
  t.equal(peerHost('::1:5000'), '::1')
  t.equal(peerHost('::ffff:127.0.0.1:5000'), '::ffff:127.0.0.1')
  t.equal(peerHost('unix'), 'unix')
})

t.test('unixPathProblem', async (t) => {
  t.equal(unixPathProblem('/run/app.sock'), undefined)
  t.equal(unixPathProblem(`/${'a'.repeat(MAX_UNIX_PATH_BYTES - 1)}`), undefined, '107 bytes fit')
  t.match(unixPathProblem(`/${'a'.repeat(MAX_UNIX_PATH_BYTES)}`), /at most 107 bytes .*this one has 108\)$/)
  t.match(unixPathProblem(`/${'é'.repeat(54)}`), /this one has 109/, 'bytes, not characters')
  t.match(unixPathProblem('app.sock'), /absolute/)
  t.match(unixPathProblem('./app.sock'), /absolute/)
  t.match(unixPathProblem(''), /expected a socket path/)
  t.match(unixPathProblem('/a\0b'), /NUL/)
})

const one = (l: Record<string, unknown>) => ({
  listeners: [{ listen: '127.0.0.1:7000', backends: ['127.0.0.1:7101'], ...l }],
})

function errors(input: unknown): string[] {
  try {
    validateConfig(input)
  } catch (err) {
    if (err instanceof ConfigError) return [...err.issues]
    throw err
  }
  return []
}

t.test('schema: every form of a TCP address', async (t) => {
  const l = (listen: unknown, backend: unknown) =>
    validateConfig(one({ listen, backends: [backend] })).listeners[0]!
  const forms: [unknown, { host: string; port: number }][] = [
    ['127.0.0.1:7000', { host: '127.0.0.1', port: 7000 }],
    ['localhost:7000', { host: 'localhost', port: 7000 }],
    ['[::1]:7000', { host: '::1', port: 7000 }],
    ['[fe80::1%lo]:7000', { host: 'fe80::1%lo', port: 7000 }],
    [
      { host: '::1', port: 7000 },
      { host: '::1', port: 7000 },
    ],
    [
      { host: '[::1]', port: 7000 },
      { host: '::1', port: 7000 },
    ],
    [
      { host: '[2001:db8::5]', port: '7000' },
      { host: '2001:db8::5', port: 7000 },
    ],
  ]
  for (const [form, want] of forms) {
    const got = l(form, form)
    t.strictSame(got.listen, want, `listen ${JSON.stringify(form)}`)
    t.strictSame(
      [got.backends[0]!.host, got.backends[0]!.port],
      [want.host, want.port],
      `backend ${JSON.stringify(form)}`
    )
  }
  t.strictSame(l(':7000', 'a:1').listen, { host: '0.0.0.0', port: 7000 }, ':port is every interface')
})

t.test('schema: unix-domain sockets', async (t) => {
  const c = validateConfig(
    one({
      listen: 'unix:/run/baton.sock',
      backends: ['unix:/run/app.sock', { path: '/run/app2.sock', weight: 2 }, '127.0.0.1:7101'],
    })
  ).listeners[0]!
  t.strictSame(c.listen, { path: '/run/baton.sock' })
  t.strictSame(c.backends[0], { path: '/run/app.sock', weight: 1, maxConnections: 0 })
  t.strictSame(c.backends[1], { path: '/run/app2.sock', weight: 2, maxConnections: 0 })
  t.strictSame(c.backends[2], { host: '127.0.0.1', port: 7101, weight: 1, maxConnections: 0 })
  const modes = validateConfig(one({ listen: { path: '/run/b.sock', mode: '0660' } })).listeners[0]!.listen
  t.strictSame(modes, { path: '/run/b.sock', mode: 0o660 })
  t.equal(
    validateConfig(one({ listen: { path: '/run/b.sock', mode: '600' } })).listeners[0]!.listen.mode,
    0o600
  )
})

t.test('schema: what it refuses, with the field named', async (t) => {
  const long = `/${'s'.repeat(MAX_UNIX_PATH_BYTES)}`
  t.strictSame(errors(one({ backends: ['unix:app.sock'] })), [
    'listeners[0].backends[0].path: expected an absolute socket path (a relative one depends on the directory Baton starts in), got "app.sock"',
  ])
  t.strictSame(errors(one({ listen: 'unix:' })), [
    'listeners[0].listen.path: expected a socket path after "unix:", such as unix:/run/app.sock, got ""',
  ])
  t.match(errors(one({ listen: `unix:${long}` })), [
    /^listeners\[0\]\.listen\.path: expected a socket path of at most 107 bytes/,
  ])
  t.strictSame(errors(one({ backends: [{ host: 'a', port: 1, path: '/a.sock' }] })), [
    'listeners[0].backends[0].host: expected either host and port or a unix socket path, not both',
    'listeners[0].backends[0].port: expected either host and port or a unix socket path, not both',
  ])
  t.strictSame(errors(one({ listen: { host: '127.0.0.1', port: 1, mode: '660' } })), [
    'listeners[0].listen.mode: applies to a unix socket path only',
  ])
  t.strictSame(errors(one({ listen: { path: '/a.sock', mode: 660 } })), [
    'listeners[0].listen.mode: expected an octal file mode as text, such as "660" or "0660", got 660',
  ])
  t.strictSame(errors(one({ listen: { path: '/a.sock', mode: '0980' } })), [
    'listeners[0].listen.mode: expected an octal file mode as text, such as "660" or "0660", got "0980"',
  ])
  t.strictSame(errors(one({ backends: [{ host: '::1' }] })), [
    'listeners[0].backends[0].port: expected an integer from 1 to 65535; an IPv6 address takes its port after brackets, as [::1]:7000',
  ])
  t.strictSame(errors(one({ backends: ['::1:7000'] })), [
    'listeners[0].backends[0].port: expected an integer from 1 to 65535; an IPv6 address takes its port after brackets, as [::1]:7000',
  ])
  t.strictSame(errors(one({ backends: [{ pth: '/a.sock' }] })), [
    'listeners[0].backends[0].pth: unknown option (did you mean "path"?)',
    'listeners[0].backends[0].host: expected a host name or IP address',
    'listeners[0].backends[0].port: expected an integer from 1 to 65535',
  ])
  // The admin server stays on TCP.
  t.match(errors({ ...one({}), admin: { listen: 'unix:/run/admin.sock' } }), [/^admin\.listen/])
})

t.test('schema: backup and allBackups', async (t) => {
  const c = validateConfig(one({ backends: ['a:1', { host: 'b', port: 1, backup: true }], allBackups: true }))
    .listeners[0]!
  t.equal(c.allBackups, true)
  t.equal(c.backends[0]!.backup, undefined, 'absent means a primary, and stays absent')
  t.equal(c.backends[1]!.backup, true)
  t.equal(validateConfig(one({})).listeners[0]!.allBackups, false, 'allBackups defaults to false')
  t.strictSame(errors(one({ backends: [{ host: 'a', port: 1, backup: 'yes' }] })), [
    'listeners[0].backends[0].backup: expected true or false, got "yes"',
  ])
  t.strictSame(errors(one({ backends: [{ host: 'a', port: 1, backup: true }] })), [
    'listeners[0].backends: expected at least one backend that is not a backup (backups serve only while every other is out)',
  ])
})

t.test('CLI: --backend and --listen in every form', async (t) => {
  t.strictSame(parseBackendFlag('unix:/run/app.sock,weight=2', 0), { path: '/run/app.sock', weight: 2 })
  t.strictSame(parseBackendFlag('[::1]:7101,name=v6', 0), { host: '::1', port: '7101', name: 'v6' })
  t.strictSame(parseBackendFlag('127.0.0.1:7101,backup', 0), {
    host: '127.0.0.1',
    port: '7101',
    backup: true,
  })
  t.throws(() => parseBackendFlag('127.0.0.1:7101,backup=1', 0), /backup takes no value/)
  t.throws(() => parseBackendFlag('7101', 0), /expected HOST:PORT, \[V6\]:PORT or unix:\/PATH/)
  t.throws(() => parseBackendFlag('::1:7101', 0), /IPv6 address takes its port after brackets/)
  t.throws(() => parseBackendFlag('[::1]7101', 0), /expected HOST:PORT/)
  const cmd = parseCommand([
    '--listen',
    'unix:/run/baton.sock',
    '--backend',
    'unix:/run/app.sock',
    '--backend',
    '[::1]:7101,backup',
  ])
  if (cmd.kind !== 'run') throw new Error('expected a run command')
  const l = validateConfig(cmd.config).listeners[0]!
  t.strictSame(l.listen, { path: '/run/baton.sock' })
  t.strictSame(
    l.backends.map((b) => formatAddress(b) + (b.backup === true ? ' backup' : '')),
    ['unix:/run/app.sock', '[::1]:7101 backup']
  )
  const relative = parseCommand(['--listen', ':7000', '--backend', 'unix:app.sock'])
  if (relative.kind !== 'run') throw new Error('expected a run command')
  t.throws(() => validateConfig(relative.config), /backends\[0\]\.path: expected an absolute socket path/)
})

t.test('removeStaleSocket: a dead socket file goes, a live one and other files stay', async (t) => {
  const dir = socketDir(t)
  t.equal(await removeStaleSocket(join(dir, 'absent.sock')), false, 'nothing there')

  const live = join(dir, 'live.sock')
  const server = net.createServer().listen(live)
  await within(once(server, 'listening'), 'listening')
  t.teardown(() => server.close())
  t.equal(await removeStaleSocket(live), false, 'something accepts: left alone')
  t.ok(existsSync(live))

  const stale = join(dir, 'stale.sock')
  await staleSocket(stale)
  t.ok(existsSync(stale), 'the crash left its socket file')
  t.equal(await removeStaleSocket(stale), true, 'refused: removed')
  t.notOk(existsSync(stale))

  const plain = join(dir, 'plain.sock')
  writeFileSync(plain, 'not a socket')
  t.equal(await removeStaleSocket(plain), false, 'a regular file is never removed')
  t.ok(existsSync(plain))
})
