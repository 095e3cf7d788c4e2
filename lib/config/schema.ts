/**
 * The one schema for Baton's configuration. Every option and its default lives here; the README's
 * config reference is written from this file. Parsing resolves every default, so the rest of the code
 * reads plain numbers (milliseconds, bytes) and never re-checks.
 */
import { isIP } from 'node:net'
import { z } from 'zod'
import { isLoopback } from '../admin/access.js'
import { ALGORITHMS } from '../balancing/types.js'
import { CHECKER_DEFAULTS } from '../health/checker.js'
import { DATA_PLANES, nativeRefusal } from '../native/data-plane.js'
import { MAX_PLANE_THREADS } from '../native/plane.js'
import { PROTOCOL_NAMES, PROTOCOL_OPTIONS, PROTOCOL_CHECKS } from '../protocols/index.js'
import { formatAddress, UNIX_PREFIX, unixPathProblem } from '../address.js'
import { parseDuration, parseSize, splitHostPort } from '../units.js'
import { SERVER_NAME_PATTERN } from '../tls/routes.js'
import { parseCidr } from '../accept/cidr.js'
import { int, size } from './fields.js'

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

/** `redis://`, `http://`…: a URL where a host is expected (it would be looked up as a host name). */
const SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i
const SCHEME_MSG = 'expected a host name or IP address without a scheme (not a URL such as "redis://host")'

/** `{ host: '[::1]' }` is read as `::1`: the brackets belong to `[::1]:7000`, not to the address. */
const host = z.preprocess(
  (v) => (typeof v === 'string' && /^\[[^\]]*\]$/.test(v) ? v.slice(1, -1) : v),
  z
    .string({ error: 'expected a host name or IP address' })
    .min(1, { error: 'expected a host name or IP address' })
    .refine((h) => !SCHEME.test(h), { error: SCHEME_MSG })
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
  const schema = z.preprocess(
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
  DURATIONS.add(schema)
  return schema
}

/** Every duration field's schema, so that `--check` (lib/config/show.ts) prints them as durations. */
export const DURATIONS = new WeakSet<object>()

/** Health checks run every `interval` plus up to 10% (checker.ts's jitter): that sum must fit a timer. */
const CHECK_INTERVAL_MAX = Math.floor(MAX_TIMER_MS / (1 + CHECKER_DEFAULTS.jitter))

/** `"host:port"` is shorthand for `{ host, port }`, for listeners and backends alike. */
function hostPort(v: unknown, ctx?: z.core.$RefinementCtx): unknown {
  if (typeof v !== 'string') return v
  // `redis://127.0.0.1:6379` would split into a host `redis` and a port `//127.0.0.1:6379`: say what it is.
  if (SCHEME.test(v) && ctx !== undefined) {
    ctx.addIssue({ code: 'custom', message: SCHEME_MSG, input: v })
    return v
  }
  const hp = splitHostPort(v)
  return hp ?? { host: v, port: undefined }
}

/**
 * Listeners and backends also take `"unix:/run/app.sock"` (nginx's spelling), shorthand for
 * `{ path: '/run/app.sock' }`: a unix-domain socket.
 */
function socketAddress(v: unknown, ctx?: z.core.$RefinementCtx): unknown {
  if (typeof v === 'string' && v.startsWith(UNIX_PREFIX)) return { path: v.slice(UNIX_PREFIX.length) }
  return hostPort(v, ctx)
}

/** Listen addresses also take `:port` (all interfaces, as HAProxy's `bind :port`). */
function listenAddress(v: unknown, ctx: z.core.$RefinementCtx): unknown {
  const hp = socketAddress(v, ctx)
  if (typeof hp === 'object' && hp !== null && (hp as { host?: unknown }).host === '') {
    return { ...hp, host: '0.0.0.0' }
  }
  return hp
}

const ADDRESS_MSG = 'expected "host:port" or { host, port }'

/** An IP address or CIDR block (`10.0.0.0/8`, `::1`), parsed here so that a typo fails `--check`. */
const cidr = z.string({ error: 'expected an IP address or CIDR such as 10.0.0.0/8' }).superRefine((v, ctx) => {
  const c = parseCidr(v)
  if (typeof c === 'string') ctx.addIssue({ code: 'custom', message: c, input: v })
})

/** The PROXY protocol version sent to backends (HAProxy `send-proxy` / `send-proxy-v2`). */
const sendProxy = z.enum(['v1', 'v2'])

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
const NATIVE_THREADS_MSG = `expected "auto" or an integer from 0 to ${MAX_PLANE_THREADS}`

/**
 * Active health checks (HAProxy `check`): `tcp` (connect), `http` (GET a path, expect a status
 * range), `send-expect` (bytes out, a string or regular expression in), and the protocols' own
 * (lib/protocols/): `redis` (PING → PONG), `memcached` (version → VERSION).
 */
const healthCheckSchema = z.strictObject({
  type: z.enum(['none', 'tcp', 'http', 'send-expect', ...PROTOCOL_CHECKS]).default('none'),
  /** http: the path to GET (origin form: it starts with `/`). */
  path: z
    .string()
    .refine((p) => p.startsWith('/'), { error: 'expected a path that starts with "/", such as /healthz' })
    .default('/'),
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

const GROUP_MSG = 'expected a group name: letters, digits, ".", "_" or "-"'
const groupName = z.string({ error: GROUP_MSG }).regex(/^[A-Za-z0-9._-]{1,64}$/, { error: GROUP_MSG })

/** One value or a list of them: `alpn: h2` reads as `alpn: [h2]`. */
function oneOrMany<T extends z.ZodType>(item: T) {
  return z.preprocess((v) => (Array.isArray(v) ? v : v === undefined ? v : [v]), z.array(item).min(1))
}

const SERVER_NAME_MSG = 'expected a server name such as api.example.com or *.example.com'
const serverName = z
  .string({ error: SERVER_NAME_MSG })
  .regex(SERVER_NAME_PATTERN, { error: SERVER_NAME_MSG })
  .transform((n) => n.toLowerCase().replace(/\.$/, ''))

/**
 * TLS passthrough with routing by the ClientHello's server name (SNI) and ALPN (lib/tls/): Baton
 * reads the hello without terminating TLS (nginx `ssl_preread`, HAProxy `req.ssl_sni`) and picks
 * the backend group of the first route that matches; the bytes go on untouched.
 */
const tlsSchema = z.strictObject({
  /** Tried in order; the first match wins. Each needs `serverName`, `alpn` or both. */
  routes: z
    .array(
      z
        .strictObject({
          /** Exact names and `*.suffix` wildcards (any depth below the suffix, not the suffix itself). */
          serverName: oneOrMany(serverName).optional(),
          /** Matches when the client offers any of these protocols (`h2`, `http/1.1`, `postgresql`…). */
          alpn: oneOrMany(z.string().min(1).max(255)).optional(),
          group: groupName,
        })
        .refine((r) => r.serverName !== undefined || r.alpn !== undefined, {
          error: 'a route needs serverName, alpn or both (what matches nothing else goes to defaultGroup)',
        })
    )
    .default([]),
  /** Where a hello that matches no route goes (also one without a server name). */
  defaultGroup: groupName.default('default'),
  /** A client must send its whole ClientHello within this time, or it is closed (counted). */
  helloTimeout: duration().default(5000),
  /** The hello and its record headers may take at most this many bytes; a larger one is refused. */
  maxHelloBytes: size.pipe(z.int().min(512, { error: 'expected at least 512 bytes' }).max(65536, { error: 'expected at most 64KiB' })).default(16384),
  /**
   * First bytes that are not TLS (plain text on the TLS port): `refuse` closes the client (counted),
   * `default` sends it to `defaultGroup` as nginx's `ssl_preread` does.
   */
  nonTls: z.enum(['refuse', 'default']).default('refuse'),
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
        /** The backend group it belongs to, for routing (`tls.routes`); absent: the group `default`. */
        group: groupName.optional(),
        /** PROXY protocol header to this backend; overrides the listener's `sendProxy` (`none`: not to this one). */
        sendProxy: z.enum(['v1', 'v2', 'none']).optional(),
      },
      { error: ADDRESS_MSG }
    )
    .superRefine(endpoint(PORT_MSG))
)

/** One `discover` entry: a name's A/AAAA records on `port`, or an SRV name. */
const discoverSchema = z
  .strictObject({
    /** A DNS name whose A and AAAA records are backends (with `port`). */
    name: hostName.optional(),
    /** An SRV name (`_service._proto.name`) whose targets are backends, on their ports, with their weights. */
    srv: z
      .string()
      .regex(DNS_NAME, { error: 'expected an SRV name such as _api._tcp.example.internal' })
      .optional(),
    /** With `name`: the backends' port. */
    port: port.optional(),
    /** Which address records to use. */
    family: z.enum(['any', 'ipv4', 'ipv6']).default('any'),
    /** With `name`: the weight of every address (an SRV record gives its own). */
    weight: int(1, 1000).default(1),
    /** Most sessions at once on each backend found. 0 = no limit. */
    maxConnections: int(0).default(0),
  })
  .superRefine((d, ctx) => {
    if ((d.name === undefined) === (d.srv === undefined))
      ctx.addIssue({ code: 'custom', path: [], message: 'expected either "name" (with "port") or "srv"' })
    else if (d.name !== undefined && d.port === undefined)
      ctx.addIssue({ code: 'custom', path: ['port'], message: 'expected the backends\' port with "name"' })
    else if (d.srv !== undefined && d.port !== undefined)
      ctx.addIssue({ code: 'custom', path: ['port'], message: 'SRV records give the port: remove "port"' })
  })

/** A DNS server for `dns.resolvers`: an IP address, optionally with a port (`[v6]:port` for IPv6). */
const resolverAddress = z.string().refine(
  (v) => {
    const hp = splitHostPort(v)
    if (hp === undefined) return isIP(v) !== 0
    return isIP(hp.host) !== 0 && /^\d+$/.test(hp.port) && Number(hp.port) >= 1 && Number(hp.port) <= 65535
  },
  { error: 'expected an IP address, optionally with a port: 10.0.0.2, 127.0.0.1:5353, [::1]:53' }
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
  /** At least one, unless `discover` finds them. */
  backends: z.array(backendSchema).default([]),
  /**
   * Backends found in DNS (lib/discovery/dns.ts), besides `backends`: `{ name, port }` for every
   * A/AAAA address of a name, `{ srv }` for every target of an SRV name. Looked up again at the
   * records' TTL, within `dns.minTtl` and `dns.maxTtl`.
   */
  discover: z.array(discoverSchema).optional(),
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
  backlog: int(1).default(4096),
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
  protocol: z.enum(PROTOCOL_NAMES).default('opaque'),
  /** Each protocol's own options, under its key (`framing` for length-prefixed): lib/protocols/. */
  ...PROTOCOL_OPTIONS,
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
   * addon (opaque, and http1 and resp, which it follows and hands to JavaScript whenever it cannot;
   * JavaScript leaves the byte path once both sockets are up), `js` the JavaScript plane, `auto`
   * native where the addon loaded, the protocol is one of those and the platform is Linux. `native` where it cannot be had is an error that says why. `BATON_NATIVE=0` turns the
   * addon off for the whole process.
   */
  // Default `auto` since the failover bench (one of three nginx SIGKILLed under wrk) gave 0 client
  // errors in 60 runs on the native plane (bench/native-failover.sh native 30, twice); `js` opts out.
  dataPlane: z.enum(DATA_PLANES).default('auto'),
  /**
   * On the native plane, the plane accepts new clients itself (no Node socket for them) where it
   * can: a TCP listener (an IP address bound by this process, or a bare TCP socket passed to it),
   * no accept stage, no `sendProxy` (docs/native-plane.md, "Accepts"). false: Node accepts, as on
   * the JavaScript plane.
   */
  nativeAccept: z.boolean().default(true),
  /** TLS passthrough with routing by SNI and ALPN to backend groups (see tlsSchema). */
  tls: tlsSchema.optional(),
  /**
   * Accept the PROXY protocol (v1 or v2) from these sources only (HAProxy `accept-proxy`, nginx
   * `listen … proxy_protocol` with `set_real_ip_from`); the address it carries is the client's
   * everywhere. A list is shorthand for `{ from }`. See lib/accept/proxy/stage.ts.
   */
  acceptProxy: z
    .preprocess(
      (v) => (Array.isArray(v) ? { from: v } : v),
      z.strictObject({
        from: z.array(cidr).min(1, { error: 'expected at least one trusted address or CIDR' }),
        /** A client from `from` without a header is refused. */
        required: z.boolean().default(true),
        /** The whole header must arrive within this time of accept. */
        timeout: duration()
          .refine((v) => v > 0, { error: 'expected a duration above 0' })
          .default(3000),
        /** Wait for the first bytes of other clients to refuse a PROXY header from them. Default: not for opaque. */
        checkUntrusted: z.boolean().optional(),
      })
    )
    .optional(),
  /** Send a PROXY protocol header to every backend (each may override), on every server connection. */
  sendProxy: sendProxy.optional(),
  /** Only clients in these addresses or CIDRs (the real client, after PROXY) may connect. */
  allow: z.array(cidr).optional(),
  /** Clients in these addresses or CIDRs are refused (checked before `allow`). */
  deny: z.array(cidr).optional(),
  /**
   * When every backend that could take a new client is full (`maxConnections`), hold it up to
   * `timeout` for a slot instead of closing it at once (HAProxy's queue and `timeout queue`). At
   * most `max` clients wait. Off unless set.
   */
  queue: z
    .strictObject({
      timeout: duration()
        .refine((v) => v > 0, { error: 'expected a duration above 0' })
        .default(5000),
      max: int(1).default(1000),
    })
    .optional(),
  /** Token-bucket rate limits on new sessions (HAProxy `rate-limit sessions`, `sc_conn_rate`). 0 = off. */
  rateLimit: z
    .strictObject({
      /** New sessions per second on this listener. */
      accept: int(0).default(0),
      /** Sessions let through at once before `accept` applies. Default: `accept`. */
      acceptBurst: int(1).optional(),
      /** New sessions per second from one client address. */
      perSource: int(0).default(0),
      /** Default: `perSource`. */
      perSourceBurst: int(1).optional(),
    })
    .optional(),
})

/**
 * `dataPlane: native` is refused, with the reason, where the addon or the protocol rules it out.
 * Two backends of one listener may not share a name: the API (`/api/backends/NAME/drain`), the
 * metrics and the logs name them.
 */
const listenerSchema = listenerFields.superRefine((l, ctx) => {
  if (l.backends.length === 0 && (l.discover ?? []).length === 0)
    ctx.addIssue({ code: 'custom', path: ['backends'], message: 'expected at least one backend' })
  const seen = new Map<string, number>()
  l.backends.forEach((b, i) => {
    const name = backendName(b)
    const first = seen.get(name)
    if (first === undefined) seen.set(name, i)
    else
      ctx.addIssue({
        code: 'custom',
        path: ['backends', i, ...(b.name !== undefined ? ['name'] : [])],
        message: `backend name "${name}" is already used by backends[${first}]; give each backend its own name`,
      })
  })
  groupIssues(l, ctx)
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

/** Backend groups: only with `tls` routing, and every group a route or the default names has a backend. */
function groupIssues(l: z.output<typeof listenerFields>, ctx: z.RefinementCtx): void {
  const groups = new Set(l.backends.map((b) => b.group ?? 'default'))
  if (l.tls === undefined) {
    l.backends.forEach((b, i) => {
      if (b.group !== undefined)
        ctx.addIssue({ code: 'custom', path: ['backends', i, 'group'], message: 'backend groups need tls routing on the listener' })
    })
    return
  }
  const need = (group: string, path: (string | number)[]): void => {
    if (!groups.has(group))
      ctx.addIssue({ code: 'custom', path, message: `no backend is in group "${group}"` })
  }
  l.tls.routes.forEach((r, i) => need(r.group, ['tls', 'routes', i, 'group']))
  need(l.tls.defaultGroup, ['tls', 'defaultGroup'])
}

/** A backend's name: its own, or its address (`host:port`, `[v6]:port`, `unix:/path`), as lib/backend.ts names it. */
function backendName(b: { name?: string | undefined; host?: string | undefined; port?: number | undefined; path?: string | undefined }): string {
  return b.name ?? formatAddress(b)
}

const WILDCARDS = new Set(['0.0.0.0', '::', '[::]'])

/**
 * What the runtime would refuse later, refused here so that `--check` says it: two listeners on one
 * address (the second bind fails with EADDRINUSE after the first logged "listening"; a wildcard
 * address takes its port on every address), two listeners with one name (reloads, metrics and logs
 * match listeners by name), and an admin server beyond loopback without a token.
 */
function refineConfig(
  c: {
    listeners: {
      name?: string | undefined
      listen: { host?: string | undefined; port?: number | undefined; path?: string | undefined }
    }[]
    admin: {
      listen?: { host: string; port: number } | undefined
      token?: string | undefined
      tokenFile?: string | undefined
    }
  },
  ctx: z.core.$RefinementCtx
): void {
  c.listeners.forEach((l, i) => {
    for (let j = 0; j < i; j++) {
      const o = c.listeners[j]!
      const a = l.listen
      const b = o.listen
      const clash =
        a.path !== undefined || b.path !== undefined
          ? a.path === b.path
          : a.port !== 0 &&
            a.port === b.port &&
            (a.host === b.host || WILDCARDS.has(a.host ?? '') || WILDCARDS.has(b.host ?? ''))
      if (clash) {
        ctx.addIssue({
          code: 'custom',
          path: ['listeners', i, 'listen'],
          message: `${formatAddress(a)} is already taken by listeners[${j}] (${formatAddress(b)}); each listener needs its own address`,
        })
        break
      }
    }
    const name = l.name ?? formatAddress(l.listen)
    const twin = c.listeners.findIndex((o, j) => j < i && (o.name ?? formatAddress(o.listen)) === name)
    if (twin >= 0 && (l.name !== undefined || l.listen.port !== 0))
      ctx.addIssue({
        code: 'custom',
        path: ['listeners', i, 'name'],
        message: `listener name "${name}" is already used by listeners[${twin}]`,
      })
  })
  const admin = c.admin
  if (admin.token !== undefined && admin.tokenFile !== undefined)
    ctx.addIssue({
      code: 'custom',
      path: ['admin', 'tokenFile'],
      message: 'set token or tokenFile, not both',
    })
  if (
    admin.listen !== undefined &&
    admin.token === undefined &&
    admin.tokenFile === undefined &&
    !isLoopback(admin.listen.host)
  )
    ctx.addIssue({
      code: 'custom',
      path: ['admin', 'listen'],
      message: `the admin server refuses to bind ${admin.listen.host} without a token: bind 127.0.0.1 (or ::1, localhost), or set admin.tokenFile, --admin-token-file or BATON_ADMIN_TOKEN`,
    })
}

/** DNS lookups of listeners' `discover` entries (lib/discovery/dns.ts). */
export const dnsSchema = z
    .strictObject({
      /** DNS servers to ask; default: the system's (/etc/resolv.conf). */
      resolvers: z.array(resolverAddress).min(1, { error: 'expected at least one resolver' }).optional(),
      /** Records are looked up again at their TTL, but never sooner than this (and after a failure, this long). */
      minTtl: duration().default(1000),
      /** …and never later than this. */
      maxTtl: duration().default(300_000),
      /** One try of one lookup gives up after this long. */
      timeout: duration().default(2000),
      /** Tries per resolver before a lookup fails. */
      tries: int(1, 10).default(2),
    })


const configFields = z.strictObject({
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
       * A file holding the token (read by the `baton` command at start and at each reload, trimmed;
       * refused when empty or readable by others). `--admin-token-file` and `BATON_ADMIN_TOKEN` win.
       */
      tokenFile: z.string().min(1, { error: 'expected a file path' }).optional(),
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
  /** DNS lookups of listeners' `discover` entries (lib/discovery/dns.ts); defaults when absent. */
  dns: dnsSchema.optional(),
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
  /**
   * Threads of the native splice plane that move the bytes of bulk sessions, each with its own
   * epoll loop (HAProxy's `nbthread`; small request/response stays on the main loop: docs/native-
   * plane.md, "Threads"). `auto` (default): the CPUs this process may use, shared out between
   * `workers` processes (at least 1 each). 0: every session on the main thread. A reload applies a
   * new value to sessions that go bulk from then on.
   */
  nativeThreads: z
    .preprocess(
      (v) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v),
      z.union(
        [
          z.literal('auto'),
          z.int().min(0, { error: NATIVE_THREADS_MSG }).max(MAX_PLANE_THREADS, { error: NATIVE_THREADS_MSG }),
        ],
        { error: NATIVE_THREADS_MSG }
      )
    )
    .default('auto'),
  log: z
    .strictObject({
      level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
      /** Human-readable lines instead of JSON. Default: when stdout is a terminal. */
      pretty: z.boolean().optional(),
      /**
       * One line per session at `info` when it ends (README "Access log"), as HAProxy's `option
       * tcplog`. Default: on for the `baton` command, off for the library (it has `sessionClose` events).
       */
      access: z.boolean().optional(),
    })
    .prefault({}),
})

export const configSchema = configFields.superRefine(refineConfig)

/** What users write (every default optional). */
export type ConfigInput = z.input<typeof configSchema>
/** What the code reads (every default resolved). */
export type Config = z.output<typeof configSchema>
export type ListenerConfig = Config['listeners'][number]
export type BackendConfig = ListenerConfig['backends'][number]
