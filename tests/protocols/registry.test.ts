/**
 * The protocol registry (lib/protocols/): every module is complete, its name is accepted by the
 * schema and `--protocol` and listed in `--help`, its options sit under its key, its health check
 * is a `healthCheck.type`, and it has a conformance test. And the memcached health check against
 * servers that answer, refuse and stay silent.
 */
import { existsSync } from 'node:fs'
import net from 'node:net'
import { once } from 'node:events'
import t from 'tap'
import { parseCommand, USAGE } from '../../lib/cli/args.js'
import { validateConfig } from '../../lib/config/validate.js'
import { ConfigError } from '../../lib/errors.js'
import { framerFor } from '../../lib/framing/index.js'
import { checkSpecOf } from '../../lib/health/checker.js'
import { runCheck } from '../../lib/health/checks.js'
import { PROTOCOL_CHECKS, PROTOCOL_NAMES, protocolOf } from '../../lib/protocols/index.js'
import { memcachedCheck } from '../../lib/protocols/memcached/health.js'

const one = (listener: Record<string, unknown>): unknown => ({
  listeners: [{ listen: '127.0.0.1:7000', backends: ['127.0.0.1:7101'], ...listener }],
})

t.test(
  'every registered protocol is a whole module, known to the schema, the CLI and the tests',
  async (t) => {
    t.same(
      PROTOCOL_NAMES.slice(0, 4),
      ['opaque', 'length-prefixed', 'http1', 'resp'],
      'the old ones, in order'
    )
    t.ok(PROTOCOL_NAMES.includes('memcached'))
    for (const name of PROTOCOL_NAMES) {
      const m = protocolOf(name)
      t.equal(m.name, name)
      t.ok(m.summary.length > 0, `${name}: a summary`)
      // A resume (lib/replay/resume.ts) for every protocol whose framer delimits responses; none for opaque.
      t.equal(typeof m.resume, name === 'opaque' ? 'undefined' : 'function', `${name}: its resume`)
      t.equal(
        (m.optionsKey === undefined) === (m.options === undefined),
        true,
        `${name}: options with their key`
      )
      const config = validateConfig(one({ protocol: name, replay: 'safe' })).listeners[0]!
      t.equal(config.protocol, name, `${name}: accepted by the schema`)
      t.type(framerFor(config), 'function', `${name}: a framer with replay on`)
      t.ok(USAGE.includes(name), `${name}: in --help`)
      const command = parseCommand([
        '--listen',
        '127.0.0.1:7000',
        '--backend',
        '127.0.0.1:7101',
        '--protocol',
        name,
      ])
      t.equal(command.kind, 'run')
      t.ok(
        existsSync(new URL(`../framing/conformance/${name}.test.ts`, import.meta.url)),
        `${name}: a conformance test`
      )
    }
    t.equal(framerFor(validateConfig(one({ protocol: 'opaque', replay: 'none' })).listeners[0]!), undefined)
    t.throws(() => validateConfig(one({ protocol: 'memcache' })), ConfigError)
    t.throws(() => protocolOf('nope'), TypeError)
  }
)

t.test('defaults come from the module, not from a protocol name', async (t) => {
  t.same(protocolOf('opaque').defaults, { requests: false, onDown: 'keep', onDrain: 'finish' })
  for (const name of PROTOCOL_NAMES.filter((n) => n !== 'opaque')) {
    t.same(protocolOf(name).defaults, { requests: true, onDown: 'migrate', onDrain: 'migrate' }, name)
  }
})

t.test('protocol options sit under the module key, validated there', async (t) => {
  const base = validateConfig(one({})).listeners[0]!
  t.equal((base as Record<string, unknown>).memcached, undefined, 'no memcached key unless given')
  t.equal(base.framing.lengthBytes, 4, 'length-prefixed keeps `framing`, with its defaults')
  const mc = validateConfig(one({ protocol: 'memcached', memcached: { maxLineBytes: '8KiB' } })).listeners[0]!
  t.same(mc.memcached, { maxLineBytes: 8192 })
  t.throws(() => validateConfig(one({ protocol: 'memcached', memcached: { maxLines: 1 } })), ConfigError)
  t.throws(
    () =>
      framerFor(validateConfig(one({ protocol: 'memcached', memcached: { maxLineBytes: 1 } })).listeners[0]!),
    {
      code: 'ERR_BATON_CONFIG',
    }
  )
})

t.test('the protocols own health checks are healthCheck types and --health-check values', async (t) => {
  t.same([...PROTOCOL_CHECKS].sort(), ['memcached', 'redis'])
  for (const name of PROTOCOL_CHECKS) {
    const hc = validateConfig(one({ healthCheck: { type: name } })).listeners[0]!.healthCheck
    t.equal(checkSpecOf(hc)?.type, 'custom', `${name}: the module's check`)
    const command = parseCommand([
      '--listen',
      '127.0.0.1:7000',
      '--backend',
      '127.0.0.1:7101',
      '--health-check',
      name,
    ])
    t.equal(
      command.kind === 'run' &&
        (command.config.listeners as { healthCheck: { type: string } }[])[0]!.healthCheck.type,
      name
    )
  }
  t.throws(
    () => parseCommand(['--listen', '127.0.0.1:7000', '--backend', '127.0.0.1:7101', '--health-check', 'x']),
    ConfigError
  )
})

/** A server that answers every connection with `reply` once it reads `version\r\n`, or stays silent. */
async function fake(reply: string | undefined): Promise<{ port: number; close: () => void }> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((s) => {
    sockets.add(s)
    s.on('error', () => {})
    let got = ''
    s.on('data', (d) => {
      got += d.toString('latin1')
      if (reply !== undefined && got === 'version\r\n') s.write(reply)
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy()
      server.close()
    },
  }
}

t.test('the memcached health check: version answered by VERSION', async (t) => {
  const up = await fake('VERSION 1.6.18\r\n')
  const err = await fake('SERVER_ERROR out of memory\r\n')
  const silent = await fake(undefined)
  t.teardown(() => [up, err, silent].forEach((s) => s.close()))
  t.same(await memcachedCheck({ host: '127.0.0.1', port: up.port }, 1000), {
    ok: true,
    reason: 'VERSION 1.6.18',
  })
  t.same(await memcachedCheck({ host: '127.0.0.1', port: err.port }, 1000), {
    ok: false,
    reason: 'reply "SERVER_ERROR out of memory"',
  })
  t.match(await memcachedCheck({ host: '127.0.0.1', port: silent.port }, 200), {
    ok: false,
    reason: /timeout/,
  })
  const spec = checkSpecOf(
    validateConfig(one({ healthCheck: { type: 'memcached' } })).listeners[0]!.healthCheck
  )!
  t.same(await runCheck(spec, { host: '127.0.0.1', port: up.port }, 1000), {
    ok: true,
    reason: 'VERSION 1.6.18',
  })
})
