/**
 * The one schema for Baton's configuration. Every option and its default lives here; the README's
 * config reference is written from this file. Parsing resolves every default, so the rest of the code
 * reads plain numbers (milliseconds, bytes) and never re-checks.
 */
import { isIP } from 'node:net'
import { z } from 'zod'
import { ALGORITHMS } from '../balancing/types.js'
import { CHECKER_DEFAULTS } from '../health/checker.js'
import { DATA_PLANES, nativeRefusal } from '../native/data-plane.js'
import { UNIX_PREFIX, unixPathProblem } from '../address.js'
import { parseDuration, parseSize, splitHostPort } from '../units.js'

const PORT_MSG = 'expected an integer from 1 to 65535'

/** Accepts "8080" as well as 8080: ports often arrive as text from `host:port` strings and flags. */
const port = z.preprocess(
  (v) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v),
  z.int({ error: PORT_MSG }).min(1, { error: PORT_MSG }).max(65535, { error: PORT_MSG })
)

const LISTEN_PORT_MSG = 'expected an integer from 0 to 65535 (0: any free port)'
const listenPort = z.preprocess(
  (v) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v),
  z.int({ error: LISTEN_PORT_MSG }).min(0, { error: LISTEN_PORT_MSG }).max(65535, { error: LISTEN_PORT_MSG })
)

/** An integer in [min, max] (max optional); "12" is read as 12, like ports. */
function int(min: number, max?: number) {
  const msg =
    max === undefined ? `expected an integer of ${min} or more` : `expected an integer from ${min} to ${max}`
  const base = z.int({ error: msg }).min(min, { error: msg })
  return z.preprocess(
    (v) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v),
    max === undefined ? base : base.max(max, { error: msg })
  )
}

/** `{ host: '[::1]' }` is read as `::1`: the brackets belong to `[::1]:7000`, not to the address. */
const host = z.preprocess(
  (v) => (typeof v === 'string' && /^\[[^\]]*\]$/.test(v) ? v.slice(1, -1) : v),
  z
    .string({ error: 'expected a host name or IP address' })
    .min(1, { error: 'expected a host name or IP address' })
)

/** A unix-domain socket path: absolute, at most 107 bytes (lib/address.ts). */
const unixPath = z
  .string({ error: 'expected a socket path such as /run/app.sock' })
  .refine((p) => unixPathProblem(p) === undefined, {
    error: (issue) => unixPathProblem(issue.input as string),
  })

const MODE_MSG = 'expected an octal file mode as text, such as "660" or "0660"'
/** A listening socket's permissions, as chmod takes them; text, since YAML reads 0660 as the number 660. */
const socketMode = z
  .string({ error: MODE_MSG })
  .regex(/^0?[0-7]{3}$/, { error: MODE_MSG })
  .transform((m) => parseInt(m, 8))

const HOST_NAME_MSG = 'expected a host name or IP address without a port, such as baton.internal'
/** A DNS name: dot-separated labels of letters, digits, `-` and `_`, not starting or ending with `-`. */
const DNS_NAME =
  /^(?=.{1,254}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/i

/** A name alone, as a `Host` header gives it: a DNS name or an IP address (IPv6 with or without brackets). */
const hostName = z
  .string({ error: HOST_NAME_MSG })
  .refine((h) => DNS_NAME.test(h) || isIP(/^\[(.*)\]$/.exec(h)?.[1] ?? h) !== 0, { error: HOST_NAME_MSG })

/**
 * The longest delay a Node timer holds. `setTimeout`, `setInterval` and `socket.setTimeout` turn a
 * longer one into 1 ms with only a TimeoutOverflowWarning: `responseTimeout: 600h` would fail every
 * request at once. Every duration is refused past it (or past a lower `max` where the code adds to it).
 */
export const MAX_TIMER_MS = 2 ** 31 - 1

/** 2147483647 → `24d20h31m23.647s`, for messages. */
function spellDuration(ms: number): string {
  let out = ''
  let rest = ms
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
  ] as const) {
    const n = Math.floor(rest / size)
    if (n > 0) out += `${n}${unit}`
    rest -= n * size
  }
  return rest > 0 || out === '' ? `${out}${rest / 1000}s` : out
}

/**
 * A duration: milliseconds as a number, or text such as `500ms`, `2s`, `10m`. 0 disables. At most
 * `max`, checked here rather than after the number so that the message quotes the value as written
 * (`got "600h"`). Infinity is too long; NaN is left to z.number(), which refuses it.
 */
function duration(max = MAX_TIMER_MS) {
  const tooLong = `expected a duration of at most ${spellDuration(max)} (${max} ms)`
  return z.preprocess(
    (v, ctx) => {
      const ms = typeof v === 'string' ? (parseDuration(v) ?? v) : v
      if (typeof ms === 'number' && ms > max)
        ctx.addIssue({
          code: 'too_big',
          origin: 'number',
          maximum: max,
          inclusive: true,
          message: tooLong,
          input: v,
        })
      return ms
    },
    z
      .number({ error: 'expected a duration such as 500ms, 2s or 10m' })
      .min(0, { error: 'expected a duration of 0 or more' })
  )
}

/** Health checks run every `interval` plus up to 10% (checker.ts's jitter): that sum must fit a timer. */
const CHECK_INTERVAL_MAX = Math.floor(MAX_TIMER_MS / (1 + CHECKER_DEFAULTS.jitter))

/** A size: bytes as a number, or text such as `64KiB`, `1MiB`. */
const size = z.preprocess(
  (v) => (typeof v === 'string' ? (parseSize(v) ?? v) : v),
  z
    .int({ error: 'expected a size such as 65536, 64KiB or 1MiB' })
    .min(0, { error: 'expected a size of 0 or more' })
)

/** `"host:port"` is shorthand for `{ host, port }` (the admin server's address). */
function hostPort(v: unknown): unknown {
  if (typeof v !== 'string') return v
  const hp = splitHostPort(v)
  return hp ?? { host: v, port: undefined }
}

/**
 * Listeners and backends also take `"unix:/run/app.sock"` (nginx's spelling), shorthand for
 * `{ path: '/run/app.sock' }`: a unix-domain socket.
 */
function socketAddress(v: unknown): unknown {
  if (typeof v === 'string' && v.startsWith(UNIX_PREFIX)) return { path: v.slice(UNIX_PREFIX.length) }
  return hostPort(v)
}

/** Listen addresses also take `:port` (all interfaces, as HAProxy's `bind :port`). */
function listenAddress(v: unknown): unknown {
  const hp = socketAddress(v)
  if (typeof hp === 'object' && hp !== null && (hp as { host?: unknown }).host === '') {
    return { ...hp, host: '0.0.0.0' }
  }
  return hp
}

const ADDRESS_MSG = 'expected "host:port" or { host, port }'

/**
 * An address is `{ host, port }` or `{ path }` (unix), never both. The object schemas leave all three
 * optional so that zod still knows their keys (for "did you mean" hints); this says which are missing.
 */
function endpoint(portMsg: string) {
  return (a: { host?: string; port?: number; path?: string; mode?: number }, ctx: z.RefinementCtx): void => {
    if (a.path !== undefined) {
      for (const k of ['host', 'port'] as const) {
        if (a[k] !== undefined)
          ctx.addIssue({
            code: 'custom',
            path: [k],
            message: 'expected either host and port or a unix socket path, not both',
          })
      }
      return
    }
    if (a.mode !== undefined)
      ctx.addIssue({ code: 'custom', path: ['mode'], message: 'applies to a unix socket path only' })
    if (a.host === undefined)
      ctx.addIssue({ code: 'custom', path: ['host'], message: 'expected a host name or IP address' })
    if (a.port === undefined) {
      // "::1:7000" is itself a valid IPv6 address: only brackets can say where the port starts.
      const v6 = a.host !== undefined && a.host.includes(':')
      ctx.addIssue({
        code: 'custom',
        path: ['port'],
        message: v6 ? `${portMsg}; an IPv6 address takes its port after brackets, as [::1]:7000` : portMsg,
      })
    }
  }
}
const WORKERS_MSG = 'expected "auto" or an integer from 1 to 1024'

/**
 * Active health checks (HAProxy `check`): `tcp` (connect), `http` (GET a path, expect a status
 * range), `redis` (PING → PONG), `send-expect` (bytes out, a string or regular expression in).
 */
const healthCheckSchema = z.strictObject({
  type: z.enum(['none', 'tcp', 'http', 'redis', 'send-expect']).default('none'),
  /** http: the path to GET. */
  path: z.string().default('/'),
  /** http: accepted status range, inclusive. */
  expectStatus: z.tuple([int(100, 599), int(100, 599)]).default([200, 399]),
  /** send-expect: text to send, or `sendHex` for bytes. */
  send: z.string().optional(),
  sendHex: z
    .string()
    .regex(/^([0-9a-fA-F]{2})*$/, { error: 'expected hex bytes such as 50494e470d0a' })
    .optional(),
  /** send-expect: text expected in the reply (a regular expression with `expectRegex`). */
  expect: z.string().optional(),
  expectRegex: z.boolean().default(false),
  /** Time between checks (± 10% jitter). */
  interval: duration(CHECK_INTERVAL_MAX).default(2000),
  /** A check with no verdict within this time fails. Default: the interval. */
  timeout: duration().optional(),
  /** Consecutive successes for a down backend to come up, and failures for an up one to go down. */
  rise: int(1, 100).default(2),
  fall: int(1, 100).default(3),
})

export const backendSchema = z.preprocess(
  socketAddress,
  z
    .strictObject(
      {
        /** Name in logs, metrics and the API; defaults to `host:port`. */
        name: z
          .string({ error: 'expected a name' })
          .min(1, { error: 'expected a non-empty name' })
          .optional(),
        host: host.optional(),
        port: port.optional(),
        /** A unix-domain socket instead of host and port (`"unix:/run/app.sock"`). */
        path: unixPath.optional(),
        /** Relative share of new sessions (nginx `weight`, HAProxy `weight`). */
        weight: int(1, 1000).default(1),
        /** Most sessions at once on this backend; a full backend is skipped. 0 = no limit. */
        maxConnections: int(0).default(0),
        /**
         * Used only while no primary (non-backup) backend is usable: all down, ejected, drained or
         * full (HAProxy `backup`). Then the first usable backup takes everything, or all of them by
         * `balance` with the listener's `allBackups`.
         */
        // Absent means false (left unresolved, so `--check` prints backends as they were written).
        backup: z.boolean({ error: 'expected true or false' }).optional(),
      },
      { error: ADDRESS_MSG }
    )
    .superRefine(endpoint(PORT_MSG))
)

const listenerFields = z.strictObject({
  /** Name in logs and metrics; defaults to the listen address. */
  name: z.string({ error: 'expected a name' }).min(1, { error: 'expected a non-empty name' }).optional(),
  /**
   * Address to accept on: `host:port`, `[v6]:port`, `{ host, port }`, or a unix-domain socket
   * (`unix:/run/baton.sock` or `{ path, mode }`). A socket file left by a dead process is removed at
   * start, only if nothing accepts on it.
   */
  listen: z.preprocess(
    listenAddress,
    z
      .strictObject(
        {
          host: host.optional(),
          port: listenPort.optional(),
          path: unixPath.optional(),
          /** Permissions of the socket file (`"660"`); default: as the umask leaves them. */
          mode: socketMode.optional(),
        },
        { error: ADDRESS_MSG }
      )
      .superRefine(endpoint(LISTEN_PORT_MSG))
  ),
  backends: z.array(backendSchema).min(1, { error: 'expected at least one backend' }),
  /** How a backend is chosen for each new session. */
  balance: z.enum(ALGORITHMS).default('round-robin'),
  /**
   * With several `backup` backends: false (default) sends everything to the first usable one in
   * list order; true balances over every usable backup with `balance` (HAProxy `option allbackups`).
   */
  allBackups: z.boolean({ error: 'expected true or false' }).default(false),
  /** Most sessions at once on this listener. 0 = no limit (the global limit still applies). */
  maxConnections: int(0).default(0),
  /** Kernel accept queue length. */
  backlog: int(1).default(511),
  /** Time allowed for a backend's TCP connect before trying another (HAProxy `timeout connect`). */
  connectTimeout: duration().default(5000),
  /** Close a session idle this long while the client owes the next byte. 0 = never. */
  clientTimeout: duration().default(600_000),
  /** Close a session idle this long while the server owes the next byte (a request awaits). 0 = never. */
  serverTimeout: duration().default(600_000),
  /**
   * A whole request must arrive within this time of its first byte (HAProxy `timeout
   * http-request`): the head for http1 (answered `408`), the whole command or frame for resp and
   * length-prefixed. 0 = off. Not used by opaque, which has no requests.
   */
  requestTimeout: duration().default(10_000),
  /**
   * A new client must send its first byte within this time. Default: 10s for the client-first
   * protocols (http1, resp, length-prefixed); off for opaque, where the server may speak first.
   */
  firstByteTimeout: duration().optional(),
  /**
   * Once either side has half-closed (sent its FIN), the session may stay idle this long before it
   * is closed (HAProxy `timeout client-fin` / `server-fin`). 0 = only the idle bounds apply.
   */
  halfClosedTimeout: duration().default(30_000),
  /** Most sessions at once from one client address on this listener. 0 = no limit. */
  maxConnectionsPerSource: int(0).default(0),
  /** Further backends to try when a connect is refused, unreachable or times out. */
  retries: int(0, 100).default(3),
  /** Client bytes held while the server connection is being set up; past it, reading pauses. */
  maxPendingBytes: size.default(65536),
  /** How Baton finds request and response edges, which makes in-flight failover possible. */
  protocol: z.enum(['opaque', 'length-prefixed', 'http1', 'resp']).default('opaque'),
  /** Frame layout for `protocol: length-prefixed`: [lengthOffset bytes][length field][body]. */
  framing: z
    .strictObject({
      /** Size of the length field. */
      lengthBytes: z
        .union([z.literal(1), z.literal(2), z.literal(4), z.literal(8)], { error: 'expected 1, 2, 4 or 8' })
        .default(4),
      littleEndian: z.boolean().default(false),
      /** Whether the length counts the header (offset + length field) as well as the body. */
      lengthIncludesHeader: z.boolean().default(false),
      /** Bytes before the length field (a type or flags field), part of the header. */
      lengthOffset: int(0, 16).default(0),
      /** A frame over this size closes the session (logged and counted). */
      maxFrameBytes: size.default(16 * 1024 * 1024),
    })
    .prefault({}),
  /**
   * Re-sending requests that were in flight when a server failed. `safe` re-sends what the framer
   * knows to be safe (for opaque and length-prefixed, which know nothing of idempotency: every
   * request), `all` everything, `none` nothing (a failure mid-request closes the client).
   */
  replay: z.preprocess(
    (v) => (typeof v === 'string' ? { mode: v } : v),
    z
      .strictObject({
        mode: z.enum(['safe', 'all', 'none']).default('safe'),
        /** Unanswered request bytes held per session; past it the session is not replayable until it drains. */
        maxBytes: size.default(1024 * 1024),
        /** Times one request may be sent (the first time included) before the client is closed. */
        maxAttempts: int(1, 20).default(3),
      })
      .prefault({})
  ),
  /**
   * A request with no response byte within this time is a failure of that server: its connection
   * is destroyed and the request goes elsewhere. 0 = off.
   */
  responseTimeout: duration().default(0),
  /** Warm pool of established idle connections per backend, used for new sessions and hand-offs. */
  pool: z
    .strictObject({
      /** Idle connections kept ready per backend. 0 = no pool. */
      idle: int(0, 1000).default(0),
      /** A pooled connection older than this is closed and replaced. */
      maxAge: duration().default(60_000),
      /** Give a server connection back to the pool when its client leaves at a clean boundary (never for opaque). */
      reuse: z.boolean().default(false),
    })
    .prefault({}),
  /** Active health checks for every backend of this listener (off by default, as in HAProxy). */
  healthCheck: healthCheckSchema.prefault({}),
  /** After a backend comes back up, its weight ramps from 5% to full over this long (HAProxy `slowstart`). 0 = off. */
  slowStart: duration().default(0),
  /**
   * Passive marking: a backend failing `failures` times in a row (connects, resets, response
   * timeouts) is ejected for `cooldown`, times how often it was ejected lately, up to `maxCooldown`
   * (Envoy's outlier detection). Never more than `maxEjectPercent` of the backends at once (at least one).
   */
  passive: z
    .strictObject({
      failures: int(1).default(3),
      cooldown: duration().default(10_000),
      maxCooldown: duration().default(300_000),
      maxEjectPercent: int(1, 100).default(50),
    })
    .prefault({}),
  /**
   * What live sessions do when their backend goes down: `migrate` moves each to another backend at
   * its next clean boundary (between requests), unseen by the client; `keep` leaves them be.
   * Default: `migrate` with a framer that knows boundaries, `keep` for opaque.
   */
  onDown: z.enum(['migrate', 'keep']).optional(),
  /**
   * What live sessions do when their backend is set to drain or maint (API, or removed by a reload):
   * `migrate` as above, so a backend can be restarted with no client noticing; `finish` lets them
   * end where they are. Default: `migrate` with a framer that knows boundaries, `finish` for opaque.
   */
  onDrain: z.enum(['migrate', 'finish']).optional(),
  /**
   * Which data plane moves this listener's bytes (lib/native/data-plane.ts): `native` is the splice(2)
   * addon (opaque only; JavaScript leaves the byte path once both sockets are up), `js` the
   * JavaScript plane, `auto` native where the addon loaded, the protocol is opaque and the platform
   * is Linux. `native` where it cannot be had is an error that says why. `BATON_NATIVE=0` turns the
   * addon off for the whole process.
   */
  // Default `js` for now: on the native plane, an opaque listener lost 1 wrk connection in 1 of 3
  // runs of the failover bench (one of three nginx SIGKILLed; 0 on the JavaScript plane), and
  // zero broken connections is what Baton is for. `auto` opts in where the addon loaded.
  dataPlane: z.enum(DATA_PLANES).default('js'),
})

/** `dataPlane: native` is refused, with the reason, where the addon or the protocol rules it out. */
const listenerSchema = listenerFields.superRefine((l, ctx) => {
  if (l.backends.length > 0 && l.backends.every((b) => b.backup))
    ctx.addIssue({
      code: 'custom',
      path: ['backends'],
      message:
        'expected at least one backend that is not a backup (backups serve only while every other is out)',
    })
  if (l.dataPlane !== 'native') return
  const why = nativeRefusal(l)
  if (why !== undefined) ctx.addIssue({ code: 'custom', path: ['dataPlane'], message: why })
})

export const configSchema = z.strictObject({
  listeners: z.array(listenerSchema).min(1, { error: 'expected at least one listener' }),
  /** Most sessions at once over all listeners. 0 = no limit. */
  maxConnections: int(0).default(0),
  /** The admin HTTP server: status page, JSON API, Prometheus metrics. Off unless `listen` is set. */
  admin: z
    .strictObject({
      /** `host:port`; loopback unless a token is set. */
      listen: z
        .preprocess(hostPort, z.strictObject({ host, port: listenPort }, { error: ADDRESS_MSG }))
        .optional(),
      /** Bearer token every non-GET request must carry; required to bind beyond loopback. */
      token: z.string().min(8, { error: 'expected a token of at least 8 characters' }).optional(),
      /**
       * Names a request's `Host` may give besides loopback and the server's own address (a DNS name
       * it is reached by, behind a proxy or a port forward); any other `Host` is refused (DNS rebinding).
       */
      hosts: z.array(hostName).optional(),
    })
    .prefault({}),
  replay: z
    .strictObject({
      /** Replay bytes held over every session of the process; past it new bytes are not kept. */
      maxTotalBytes: size.default(256 * 1024 * 1024),
    })
    .prefault({}),
  /** On stop, how long live sessions get to finish before they are closed. */
  shutdownGrace: duration().default(30_000),
  /**
   * Processes that accept and splice (`--workers`): 1 is a single process; N > 1 or `auto` (one per
   * core) start a primary that runs health checks, the admin server and reloads, and N workers.
   * Absent means 1 (left unresolved so that a config without it reads back as it was written).
   * Read at start only: a reload that changes it is applied at the next restart.
   */
  workers: z
    .preprocess(
      (v) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v),
      z.union([z.literal('auto'), z.int().min(1, { error: WORKERS_MSG }).max(1024, { error: WORKERS_MSG })], {
        error: WORKERS_MSG,
      })
    )
    .optional(),
  log: z
    .strictObject({
      level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
      /** Human-readable lines instead of JSON. Default: when stdout is a terminal. */
      pretty: z.boolean().optional(),
    })
    .prefault({}),
})

/** What users write (every default optional). */
export type ConfigInput = z.input<typeof configSchema>
/** What the code reads (every default resolved). */
export type Config = z.output<typeof configSchema>
export type ListenerConfig = Config['listeners'][number]
export type BackendConfig = ListenerConfig['backends'][number]
