import t, { type Test } from 'tap'
import { validateConfig } from '../lib/config/validate.js'
import { BatonError, ConfigError } from '../lib/errors.js'

/** A minimal config with one listener, its fields overridden by `listener`. */
function one(listener: Record<string, unknown> = {}, top: Record<string, unknown> = {}): unknown {
  return { listeners: [{ listen: '127.0.0.1:7000', backends: ['127.0.0.1:7101'], ...listener }], ...top }
}

/** Validate `input`, expect a ConfigError, and return it. */
function configError(t: Test, input: unknown): ConfigError {
  try {
    validateConfig(input)
  } catch (err) {
    t.type(err, ConfigError)
    t.type(err, BatonError)
    const e = err as ConfigError
    t.equal(e.code, 'ERR_BATON_CONFIG')
    t.equal(e.name, 'ConfigError')
    t.equal(e.side, 'config')
    t.equal(e.message, e.issues.join('\n'))
    return e
  }
  t.fail(`expected a ConfigError for ${JSON.stringify(input)}`)
  return new ConfigError([])
}

/** Expect exactly these problem lines, in this order. */
function rejects(t: Test, input: unknown, lines: string[]): void {
  const err = configError(t, input)
  t.strictSame(err.message.split('\n'), lines)
}

const PORT = 'expected an integer from 1 to 65535'
const LISTEN_PORT = 'expected an integer from 0 to 65535 (0: any free port)'
const ALGOS = '"round-robin", "least-connections", "random", "power-of-two", "source-hash", "first"'
const LEVELS = '"trace", "debug", "info", "warn", "error", "fatal", "silent"'

t.test('a minimal config resolves every default', async (t) => {
  const config = validateConfig({ listeners: [{ listen: '127.0.0.1:7000', backends: ['127.0.0.1:7101'] }] })
  t.strictSame(config, {
    listeners: [
      {
        listen: { host: '127.0.0.1', port: 7000 },
        backends: [{ host: '127.0.0.1', port: 7101, weight: 1, maxConnections: 0 }],
        balance: 'round-robin',
        allBackups: false,
        maxConnections: 0,
        backlog: 4096,
        connectTimeout: 5000,
        clientTimeout: 600_000,
        serverTimeout: 600_000,
        requestTimeout: 10_000,
        halfClosedTimeout: 30_000,
        maxConnectionsPerSource: 0,
        retries: 3,
        maxPendingBytes: 65536,
        protocol: 'opaque',
        framing: {
          lengthBytes: 4,
          littleEndian: false,
          lengthIncludesHeader: false,
          lengthOffset: 0,
          maxFrameBytes: 16 * 1024 * 1024,
        },
        replay: { mode: 'safe', maxBytes: 1024 * 1024, maxAttempts: 3 },
        responseTimeout: 0,
        pool: { idle: 0, maxAge: 60_000, reuse: false },
        healthCheck: {
          type: 'none',
          path: '/',
          expectStatus: [200, 399],
          expectRegex: false,
          interval: 2000,
          rise: 2,
          fall: 3,
        },
        slowStart: 0,
        passive: { failures: 3, cooldown: 10_000, maxCooldown: 300_000, maxEjectPercent: 50 },
        dataPlane: 'auto',
        nativeAccept: true,
      },
    ],
    maxConnections: 0,
    admin: {},
    replay: { maxTotalBytes: 256 * 1024 * 1024 },
    shutdownGrace: 30_000,
    nativeThreads: 'auto',
    log: { level: 'info' },
  })
  t.ok(Object.isFrozen(config), 'the resolved config is frozen')
  const l = config.listeners[0]!
  t.equal(l.name, undefined, 'listener name stays unset (defaults to the address at run time)')
  t.equal(l.backends[0]!.name, undefined, 'backend name stays unset')
  t.equal(config.log.pretty, undefined, 'log.pretty stays unset (decided by the terminal)')
})

t.test('host:port shorthand and object form are the same', async (t) => {
  const short = validateConfig(one({ listen: 'localhost:7000', backends: ['10.0.0.1:80', 'db.local:5432'] }))
  const long = validateConfig(
    one({
      listen: { host: 'localhost', port: 7000 },
      backends: [
        { host: '10.0.0.1', port: 80 },
        { host: 'db.local', port: 5432 },
      ],
    })
  )
  t.strictSame(short, long)
  t.strictSame(short.listeners[0]!.listen, { host: 'localhost', port: 7000 })
  t.strictSame(
    short.listeners[0]!.backends.map((b) => [b.host, b.port]),
    [
      ['10.0.0.1', 80],
      ['db.local', 5432],
    ]
  )
})

t.test('":7000" listens on every interface', async (t) => {
  const config = validateConfig(one({ listen: ':7000' }))
  t.strictSame(config.listeners[0]!.listen, { host: '0.0.0.0', port: 7000 })
})

t.test('IPv6 in brackets, and listen port 0', async (t) => {
  const config = validateConfig(one({ listen: '[::1]:0', backends: ['[::1]:8080'] }))
  t.strictSame(config.listeners[0]!.listen, { host: '::1', port: 0 })
  t.equal(config.listeners[0]!.backends[0]!.host, '::1')
  t.equal(config.listeners[0]!.backends[0]!.port, 8080)
})

t.test('ports given as strings become numbers', async (t) => {
  const config = validateConfig(
    one({ listen: { host: '127.0.0.1', port: '7000' }, backends: [{ host: 'a', port: '65535' }] })
  )
  t.equal(config.listeners[0]!.listen.port, 7000)
  t.equal(config.listeners[0]!.backends[0]!.port, 65535)
  t.equal(validateConfig(one({ backends: [{ host: 'a', port: '1' }] })).listeners[0]!.backends[0]!.port, 1)
})

t.test('every option given explicitly, durations and sizes as text', async (t) => {
  const config = validateConfig({
    listeners: [
      {
        name: 'web',
        listen: '127.0.0.1:7000',
        backends: [
          { name: 'a', host: '127.0.0.1', port: 7101, weight: 5, maxConnections: 100 },
          '127.0.0.1:7102',
        ],
        balance: 'least-connections',
        maxConnections: 10,
        backlog: 128,
        connectTimeout: '500ms',
        clientTimeout: '2s',
        serverTimeout: '10m',
        retries: 0,
        maxPendingBytes: '64KiB',
        passive: { failures: 1, cooldown: '1.5s' },
      },
    ],
    maxConnections: 1000,
    shutdownGrace: '1h',
    log: { level: 'debug', pretty: true },
  })
  const l = config.listeners[0]!
  t.equal(l.name, 'web')
  t.strictSame(l.backends[0], { name: 'a', host: '127.0.0.1', port: 7101, weight: 5, maxConnections: 100 })
  t.strictSame(l.backends[1], { host: '127.0.0.1', port: 7102, weight: 1, maxConnections: 0 })
  t.equal(l.balance, 'least-connections')
  t.equal(l.maxConnections, 10)
  t.equal(l.backlog, 128)
  t.equal(l.connectTimeout, 500)
  t.equal(l.clientTimeout, 2000)
  t.equal(l.serverTimeout, 600_000)
  t.equal(l.retries, 0)
  t.equal(l.maxPendingBytes, 65536)
  t.strictSame(l.passive, { failures: 1, cooldown: 1500, maxCooldown: 300_000, maxEjectPercent: 50 })
  t.equal(config.maxConnections, 1000)
  t.equal(config.shutdownGrace, 3_600_000)
  t.strictSame(config.log, { level: 'debug', pretty: true })
})

t.test('durations and sizes as plain numbers; 0 disables timeouts', async (t) => {
  const config = validateConfig(
    one({ connectTimeout: 250, clientTimeout: 0, serverTimeout: '0', maxPendingBytes: 0 })
  )
  const l = config.listeners[0]!
  t.equal(l.connectTimeout, 250)
  t.equal(l.clientTimeout, 0)
  t.equal(l.serverTimeout, 0)
  t.equal(l.maxPendingBytes, 0)
  t.equal(validateConfig(one({ maxPendingBytes: '1MiB' })).listeners[0]!.maxPendingBytes, 1024 * 1024)
  t.equal(validateConfig(one({ maxPendingBytes: '16kb' })).listeners[0]!.maxPendingBytes, 16_000)
})

t.test('every balancing algorithm and log level is accepted', async (t) => {
  for (const balance of [
    'round-robin',
    'least-connections',
    'random',
    'power-of-two',
    'source-hash',
    'first',
  ]) {
    t.equal(validateConfig(one({ balance })).listeners[0]!.balance, balance)
  }
  for (const level of ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']) {
    t.equal(validateConfig(one({}, { log: { level } })).log.level, level)
  }
})

t.test('error: bad backend port names the field path and the value', async (t) => {
  rejects(t, one({ backends: ['127.0.0.1:7101', '127.0.0.1:80a'] }), [
    `listeners[0].backends[1].port: ${PORT}, got "80a"`,
  ])
  rejects(t, one({ backends: [{ host: 'a', port: 0 }] }), [`listeners[0].backends[0].port: ${PORT}, got 0`])
  rejects(t, one({ backends: [{ host: 'a', port: 65536 }] }), [
    `listeners[0].backends[0].port: ${PORT}, got 65536`,
  ])
  rejects(t, one({ backends: [{ host: 'a', port: 1.5 }] }), [
    `listeners[0].backends[0].port: ${PORT}, got 1.5`,
  ])
  rejects(t, one({ backends: [{ host: 'a', port: '-1' }] }), [
    `listeners[0].backends[0].port: ${PORT}, got "-1"`,
  ])
  rejects(t, one({ backends: ['a:'] }), [`listeners[0].backends[0].port: ${PORT}, got ""`])
  rejects(t, one({ backends: [{ host: 'a' }] }), [`listeners[0].backends[0].port: ${PORT}`])
  rejects(t, one({ backends: ['no-port'] }), [`listeners[0].backends[0].port: ${PORT}`])
  rejects(t, one({ backends: ['a:0'] }), [`listeners[0].backends[0].port: ${PORT}, got 0`])
})

t.test('error: bad listen address', async (t) => {
  rejects(t, one({ listen: '127.0.0.1:x' }), [`listeners[0].listen.port: ${LISTEN_PORT}, got "x"`])
  rejects(t, one({ listen: '127.0.0.1:70000' }), [`listeners[0].listen.port: ${LISTEN_PORT}, got 70000`])
  rejects(t, one({ listen: 'localhost' }), [`listeners[0].listen.port: ${LISTEN_PORT}`])
  rejects(t, one({ listen: 7000 }), ['listeners[0].listen: expected "host:port" or { host, port }, got 7000'])
  rejects(t, one({ listen: undefined }), ['listeners[0].listen: expected "host:port" or { host, port }'])
})

t.test('error: bad host', async (t) => {
  rejects(t, one({ backends: [{ host: '', port: 80 }] }), [
    'listeners[0].backends[0].host: expected a host name or IP address, got ""',
  ])
  rejects(t, one({ backends: [{ host: 5, port: 80 }] }), [
    'listeners[0].backends[0].host: expected a host name or IP address, got 5',
  ])
  rejects(t, one({ backends: [{ port: 80 }] }), [
    'listeners[0].backends[0].host: expected a host name or IP address',
  ])
  rejects(t, one({ backends: [5] }), [
    'listeners[0].backends[0]: expected "host:port" or { host, port }, got 5',
  ])
  rejects(t, one({ listen: { host: 5, port: 1 } }), [
    'listeners[0].listen.host: expected a host name or IP address, got 5',
  ])
})

t.test('error: bad weight', async (t) => {
  const W = 'expected an integer from 1 to 1000'
  rejects(t, one({ backends: [{ host: 'a', port: 1, weight: 0 }] }), [
    `listeners[0].backends[0].weight: ${W}, got 0`,
  ])
  rejects(t, one({ backends: [{ host: 'a', port: 1, weight: 1001 }] }), [
    `listeners[0].backends[0].weight: ${W}, got 1001`,
  ])
  rejects(t, one({ backends: [{ host: 'a', port: 1, weight: 1.5 }] }), [
    `listeners[0].backends[0].weight: ${W}, got 1.5`,
  ])
  rejects(t, one({ backends: [{ host: 'a', port: 1, weight: 'heavy' }] }), [
    `listeners[0].backends[0].weight: ${W}, got "heavy"`,
  ])
})

t.test('error: bad enum lists the allowed values', async (t) => {
  rejects(t, one({ balance: 'roundrobin' }), [
    `listeners[0].balance: expected one of ${ALGOS}, got "roundrobin"`,
  ])
  rejects(t, one({}, { log: { level: 'verbose' } }), [`log.level: expected one of ${LEVELS}, got "verbose"`])
  // Long values are cut short in the message.
  rejects(t, one({ balance: 'x'.repeat(100) }), [
    `listeners[0].balance: expected one of ${ALGOS}, got "${'x'.repeat(56)}...`,
  ])
})

t.test('error: bad duration', async (t) => {
  const D = 'expected a duration such as 500ms, 2s or 10m'
  rejects(t, one({ connectTimeout: '5 sec' }), [`listeners[0].connectTimeout: ${D}, got "5 sec"`])
  rejects(t, one({ serverTimeout: true }), [`listeners[0].serverTimeout: ${D}, got true`])
  rejects(t, one({ passive: { cooldown: 'soon' } }), [`listeners[0].passive.cooldown: ${D}, got "soon"`])
  rejects(t, one({}, { shutdownGrace: '1x' }), [`shutdownGrace: ${D}, got "1x"`])
  rejects(t, one({ clientTimeout: -1 }), [
    'listeners[0].clientTimeout: expected a duration of 0 or more, got -1',
  ])
  rejects(t, one({ connectTimeout: '-1s' }), [`listeners[0].connectTimeout: ${D}, got "-1s"`])
})

/** `input` with `value` set at a dotted path (`listeners.0.pool.maxAge`), the objects on the way made. */
function withPath(input: unknown, path: string, value: unknown): unknown {
  const root = structuredClone(input) as Record<string, unknown>
  const keys = path.split('.')
  let node = root
  for (const k of keys.slice(0, -1)) node = (node[k] ??= {}) as Record<string, unknown>
  node[keys.at(-1)!] = value
  return root
}

/** Every duration field: each must refuse what a Node timer cannot hold (it would fire after 1 ms). */
const DURATION_FIELDS: [path: string, shown: string][] = [
  'connectTimeout',
  'clientTimeout',
  'serverTimeout',
  'responseTimeout',
  'slowStart',
  'pool.maxAge',
  'healthCheck.interval',
  'healthCheck.timeout',
  'passive.cooldown',
  'passive.maxCooldown',
].map((f): [string, string] => [`listeners.0.${f}`, `listeners[0].${f}`])
DURATION_FIELDS.push(['shutdownGrace', 'shutdownGrace'])

const TIMER_MAX = 2 ** 31 - 1
const TOO_LONG = 'expected a duration of at most 24d20h31m23.647s (2147483647 ms)'
// The check interval is jittered by up to +10% before it is set: the interval itself must stay 10% under.
const INTERVAL_MAX = Math.floor(TIMER_MAX / 1.1)
const INTERVAL_TOO_LONG = `expected a duration of at most 22d14h17m37.86s (${INTERVAL_MAX} ms)`

t.test('error: a duration a timer cannot hold is refused, in every duration field', async (t) => {
  for (const [path, shown] of DURATION_FIELDS) {
    const interval = path.endsWith('healthCheck.interval')
    const max = interval ? INTERVAL_MAX : TIMER_MAX
    const msg = interval ? INTERVAL_TOO_LONG : TOO_LONG
    for (const [value, got] of [
      ['600h', '"600h"'],
      ['99999999999999999999999h', '"99999999999999999999999h"'],
      [`${'9'.repeat(400)}ms`, `"${'9'.repeat(56)}...`], // Infinity once parsed
      [max + 1, String(max + 1)],
      [2 ** 31, String(2 ** 31)],
      [1e300, '1e+300'],
      [Infinity, 'Infinity'],
    ] as const) {
      rejects(t, withPath(one(), path, value), [`${shown}: ${msg}, got ${got}`])
    }
    rejects(t, withPath(one(), path, NaN), [
      `${shown}: expected a duration such as 500ms, 2s or 10m, got NaN`,
    ])
    rejects(t, withPath(one(), path, -Infinity), [
      `${shown}: expected a duration such as 500ms, 2s or 10m, got -Infinity`,
    ])
    // The longest that fits is accepted, as a number and as text.
    for (const ok of [max, `${max}ms`]) {
      const config = validateConfig(withPath(one(), path, ok)) as unknown as Record<string, unknown>
      const got = path.split('.').reduce<unknown>((n, k) => (n as Record<string, unknown>)[k], config)
      t.equal(got, max, `${shown}: ${String(ok)} accepted`)
    }
  }
  t.equal(validateConfig(one({ responseTimeout: '596h' })).listeners[0]!.responseTimeout, 596 * 3_600_000)
})

t.test('admin.hosts: names and addresses, no ports, no patterns', async (t) => {
  const hosts = ['baton.internal', 'Admin.Example.', '10.0.0.5', '::1', '[2001:db8::1]', 'a_b.example']
  t.strictSame(validateConfig(one({}, { admin: { hosts } })).admin, { hosts })
  t.strictSame(validateConfig(one()).admin, {}, 'absent by default')
  const H = 'expected a host name or IP address without a port, such as baton.internal'
  rejects(t, one({}, { admin: { hosts: ['ok.example', 'evil.example:80'] } }), [
    `admin.hosts[1]: ${H}, got "evil.example:80"`,
  ])
  for (const bad of [
    '',
    'http://x.example',
    'a b',
    '*.example.com',
    '-x.example',
    'x..example',
    'x'.repeat(64),
  ])
    rejects(t, one({}, { admin: { hosts: [bad] } }), [
      `admin.hosts[0]: ${H}, got ${JSON.stringify(bad).length > 60 ? `${JSON.stringify(bad).slice(0, 57)}...` : JSON.stringify(bad)}`,
    ])
  rejects(t, one({}, { admin: { hosts: 'baton.internal' } }), [
    'admin.hosts: expected array, got "baton.internal"',
  ])
  rejects(t, one({}, { admin: { hosts: [5] } }), [`admin.hosts[0]: ${H}, got 5`])
})

t.test('error: bad size', async (t) => {
  const S = 'expected a size such as 65536, 64KiB or 1MiB'
  rejects(t, one({ maxPendingBytes: '64 zb' }), [`listeners[0].maxPendingBytes: ${S}, got "64 zb"`])
  rejects(t, one({ maxPendingBytes: 1.5 }), [`listeners[0].maxPendingBytes: ${S}, got 1.5`])
  rejects(t, one({ maxPendingBytes: false }), [`listeners[0].maxPendingBytes: ${S}, got false`])
  rejects(t, one({ maxPendingBytes: -1 }), [
    'listeners[0].maxPendingBytes: expected a size of 0 or more, got -1',
  ])
})

t.test('error: missing or empty listeners', async (t) => {
  rejects(t, {}, ['listeners: required, expected array'])
  rejects(t, { listeners: [] }, ['listeners: expected at least one listener'])
  rejects(t, { listeners: { listen: 'a:1', backends: ['a:1'] } }, [
    'listeners: expected array, got an object',
  ])
  rejects(t, 5, ['(top level): expected object, got 5'])
  rejects(t, null, ['(top level): expected object, got null'])
  rejects(t, undefined, ['(top level): required, expected object'])
})

t.test('error: missing or empty backends', async (t) => {
  rejects(t, one({ backends: [] }), ['listeners[0].backends: expected at least one backend'])
  // Optional since `discover` may find them: absent reads as none.
  rejects(t, one({ backends: undefined }), ['listeners[0].backends: expected at least one backend'])
  rejects(t, one({ backends: '127.0.0.1:80' }), ['listeners[0].backends: expected array, got "127.0.0.1:80"'])
})

t.test('error: wrong type of section', async (t) => {
  rejects(t, one({}, { log: 'debug' }), ['log: expected object, got "debug"'])
  rejects(t, one({ passive: null }), ['listeners[0].passive: expected object, got null'])
  rejects(t, one({}, { log: { pretty: 'yes' } }), ['log.pretty: expected boolean, got "yes"'])
  rejects(t, one({ retries: 'x' }), ['listeners[0].retries: expected an integer from 0 to 100, got "x"'])
})

t.test('error: integer limits name the field and the value', async (t) => {
  // The wording of these comes from zod's defaults; check what must be there: path and value.
  const cases: [Record<string, unknown>, Record<string, unknown>, RegExp][] = [
    [{ maxConnections: -1 }, {}, /^listeners\[0\]\.maxConnections: .*0.*, got -1$/],
    [{ backlog: 0 }, {}, /^listeners\[0\]\.backlog: .*1.*, got 0$/],
    [{ retries: 101 }, {}, /^listeners\[0\]\.retries: .*100.*, got 101$/],
    [{ retries: -1 }, {}, /^listeners\[0\]\.retries: .*0.*, got -1$/],
    [{ passive: { failures: 0 } }, {}, /^listeners\[0\]\.passive\.failures: .*1.*, got 0$/],
    [
      { backends: [{ host: 'a', port: 1, maxConnections: -1 }] },
      {},
      /^listeners\[0\]\.backends\[0\]\.maxConnections: .*, got -1$/,
    ],
    [{}, { maxConnections: 1.5 }, /^maxConnections: .*, got 1\.5$/],
    [{}, { maxConnections: -1 }, /^maxConnections: .*, got -1$/],
    [{ name: '' }, {}, /^listeners\[0\]\.name: .*, got ""$/],
  ]
  for (const [listener, top, re] of cases) {
    const err = configError(t, one(listener, top))
    t.equal(err.issues.length, 1)
    t.match(err.issues[0], re)
    t.notMatch(err.issues[0], /Too (small|big)|expected int\b/, `plain wording: ${err.issues[0]}`)
  }
})

t.test('unknown keys: did-you-mean hint at every level', async (t) => {
  rejects(t, one({ backends: [{ host: 'a', port: 1, wieght: 2 }] }), [
    'listeners[0].backends[0].wieght: unknown option (did you mean "weight"?)',
  ])
  rejects(t, one({ balanse: 'first' }), ['listeners[0].balanse: unknown option (did you mean "balance"?)'])
  rejects(t, one({ passive: { failurs: 2 } }), [
    'listeners[0].passive.failurs: unknown option (did you mean "failures"?)',
  ])
  rejects(t, one({ passive: { coldown: '1s' } }), [
    'listeners[0].passive.coldown: unknown option (did you mean "cooldown"?)',
  ])
  rejects(t, { ...(one() as object), listners: [] }, ['listners: unknown option (did you mean "listeners"?)'])
  rejects(t, one({}, { shutdownGrase: '1s' }), [
    'shutdownGrase: unknown option (did you mean "shutdownGrace"?)',
  ])
  rejects(t, one({}, { log: { levl: 'info' } }), ['log.levl: unknown option (did you mean "level"?)'])
  rejects(t, one({ listen: { host: 'a', port: 1, prot: 2 } }), [
    'listeners[0].listen.prot: unknown option (did you mean "port"?)',
  ])
  // Case slips are typos too.
  rejects(t, one({ backends: [{ host: 'a', port: 1, maxconnections: 2 }] }), [
    'listeners[0].backends[0].maxconnections: unknown option (did you mean "maxConnections"?)',
  ])
  rejects(t, one({ connecttimeout: '1s' }), [
    'listeners[0].connecttimeout: unknown option (did you mean "connectTimeout"?)',
  ])
  // The hint names only keys valid at that level: "weight" is a backend option only.
  rejects(t, one({}, { wieght: 1 }), ['wieght: unknown option'])
  rejects(t, one({ wieght: 1 }), ['listeners[0].wieght: unknown option'])
  rejects(t, one({ passive: { wieght: 1 } }), ['listeners[0].passive.wieght: unknown option'])
})

t.test('unknown keys: no hint when nothing is close', async (t) => {
  rejects(t, one({ zzzzzzzz: 1 }), ['listeners[0].zzzzzzzz: unknown option'])
  rejects(t, one({}, { frobnicate: true }), ['frobnicate: unknown option'])
  rejects(t, one({ backends: [{ host: 'a', port: 1, address: 'x' }] }), [
    'listeners[0].backends[0].address: unknown option',
  ])
  rejects(t, one({ passive: { enabled: true } }), ['listeners[0].passive.enabled: unknown option'])
})

t.test('several problems at once give several lines', async (t) => {
  const err = configError(t, {
    listeners: [
      {
        listen: '127.0.0.1:x',
        backends: ['127.0.0.1:7101', '127.0.0.1:80a'],
        balance: 'roundrobin',
        connectTimeout: '5 sec',
      },
      { listen: ':7001', backends: [] },
    ],
    shutdownGrace: 'never',
    log: { level: 'loud' },
  })
  t.strictSame(err.issues, [
    `listeners[0].listen.port: ${LISTEN_PORT}, got "x"`,
    `listeners[0].backends[1].port: ${PORT}, got "80a"`,
    `listeners[0].balance: expected one of ${ALGOS}, got "roundrobin"`,
    'listeners[0].connectTimeout: expected a duration such as 500ms, 2s or 10m, got "5 sec"',
    'listeners[1].backends: expected at least one backend',
    'shutdownGrace: expected a duration such as 500ms, 2s or 10m, got "never"',
    `log.level: expected one of ${LEVELS}, got "loud"`,
  ])
  t.equal(err.message.split('\n').length, 7)
})

t.test('several unknown keys in one object: one line each', async (t) => {
  const err = configError(
    t,
    one({ backends: [{ host: 'a', port: 1, wieght: 1, adress: 'x' }], balanse: 'first' })
  )
  const expected = [
    'listeners[0].backends[0].wieght: unknown option (did you mean "weight"?)',
    'listeners[0].backends[0].adress: unknown option',
    'listeners[0].balanse: unknown option (did you mean "balance"?)',
  ]
  t.strictSame(err.message.split('\n'), expected, 'the message has one line per unknown key')
  t.strictSame(err.issues, expected, 'issues has one entry per unknown key')
})

// Found by tests/fuzz/config.test.ts: YAML's `? ` made the whole mapping a key, and a key with a
// newline in it printed as several lines, the first of them just `{`, none naming the field.
t.test('an odd key is quoted: every problem stays one line that names it', async (t) => {
  const key = '{\n  listeners:\n    [ { listen: 127.0.0.1:7000 } ]\n}'
  rejects(t, { [key]: null }, [
    'listeners: required, expected array',
    `[${JSON.stringify(key)}]: unknown option`,
  ])
  rejects(t, one({}, { '': 1 }), ['[""]: unknown option'])
  rejects(t, one({ 'listen ': 1 }), ['listeners[0]["listen "]: unknown option (did you mean "listen"?)'])
  rejects(t, one({ backends: [{ host: 'a', port: 1, 'a\nb': 2 }] }), [
    'listeners[0].backends[0]["a\\nb"]: unknown option',
  ])
})

t.test('what the runtime would refuse is refused here (what `--check` reports)', async (t) => {
  const SCHEME = 'expected a host name or IP address without a scheme (not a URL such as "redis://host")'
  rejects(t, one({ backends: ['redis://127.0.0.1'] }), [
    `listeners[0].backends[0]: ${SCHEME}, got "redis://127.0.0.1"`,
  ])
  rejects(t, one({ backends: ['http://127.0.0.1:80'] }), [
    `listeners[0].backends[0]: ${SCHEME}, got "http://127.0.0.1:80"`,
  ])
  rejects(t, one({ backends: [{ host: 'redis://127.0.0.1', port: 6379 }] }), [
    `listeners[0].backends[0].host: ${SCHEME}, got "redis://127.0.0.1"`,
  ])
  rejects(t, one({ listen: 'tcp://127.0.0.1:7000' }), [
    `listeners[0].listen: ${SCHEME}, got "tcp://127.0.0.1:7000"`,
  ])
  rejects(t, one({ healthCheck: { type: 'http', path: 'healthz' } }), [
    'listeners[0].healthCheck.path: expected a path that starts with "/", such as /healthz, got "healthz"',
  ])
  rejects(t, one({ backends: ['127.0.0.1:7101', { host: '127.0.0.1', port: 7101, weight: 2 }] }), [
    'listeners[0].backends[1]: backend name "127.0.0.1:7101" is already used by backends[0]; give each backend its own name',
  ])
  rejects(
    t,
    one({
      backends: [
        { name: 'a', host: '::1', port: 1 },
        { host: '::1', port: 2 },
        { name: 'a', host: 'x', port: 3 },
      ],
    }),
    [
      'listeners[0].backends[2].name: backend name "a" is already used by backends[0]; give each backend its own name',
    ]
  )
  rejects(t, one({ backends: [{ host: '::1', port: 1 }, '[::1]:1'] }), [
    'listeners[0].backends[1]: backend name "[::1]:1" is already used by backends[0]; give each backend its own name',
  ])
  const two = (a: unknown, b: unknown) => ({
    listeners: [
      { listen: a, backends: ['127.0.0.1:7101'] },
      { name: 'second', listen: b, backends: ['127.0.0.1:7101'] },
    ],
  })
  rejects(t, two('127.0.0.1:7000', '127.0.0.1:7000'), [
    'listeners[1].listen: 127.0.0.1:7000 is already taken by listeners[0] (127.0.0.1:7000); each listener needs its own address',
  ])
  rejects(t, two('[::]:7000', '127.0.0.1:7000'), [
    'listeners[1].listen: 127.0.0.1:7000 is already taken by listeners[0] ([::]:7000); each listener needs its own address',
  ])
  rejects(
    t,
    {
      listeners: [
        { name: 'web', listen: '127.0.0.1:7000', backends: ['127.0.0.1:7101'] },
        { name: 'web', listen: '127.0.0.1:7001', backends: ['127.0.0.1:7101'] },
      ],
    },
    ['listeners[1].name: listener name "web" is already used by listeners[0]']
  )
  rejects(t, one({}, { admin: { listen: '10.0.0.1:9000' } }), [
    'admin.listen: the admin server refuses to bind 10.0.0.1 without a token: bind 127.0.0.1 (or ::1, localhost), or set admin.tokenFile, --admin-token-file or BATON_ADMIN_TOKEN',
  ])
  rejects(t, one({}, { admin: { token: 'long-enough', tokenFile: '/etc/baton/token' } }), [
    'admin.tokenFile: set token or tokenFile, not both',
  ])

  // And what stays accepted.
  t.doesNotThrow(
    () => validateConfig(two('127.0.0.1:0', '127.0.0.1:0')),
    'two port-0 listeners: two free ports'
  )
  t.doesNotThrow(() => validateConfig(two('127.0.0.1:7000', '127.0.0.2:7000')), 'one port, two addresses')
  t.doesNotThrow(() => validateConfig(two('127.0.0.1:7000', '127.0.0.1:7001')))
  t.doesNotThrow(() => validateConfig(one({ backends: ['127.0.0.1:7101', '127.0.0.1:7102'] })))
  t.doesNotThrow(() =>
    validateConfig(one({}, { admin: { listen: '10.0.0.1:9000', tokenFile: '/etc/baton/token' } }))
  )
  t.doesNotThrow(() => validateConfig(one({}, { admin: { listen: 'localhost:9000' } })))
  t.equal(validateConfig(one({ healthCheck: { type: 'http' } })).listeners[0]!.healthCheck.path, '/')
  t.equal(validateConfig(one()).log.access, undefined, 'the library leaves the access log off')
})
