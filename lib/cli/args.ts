/**
 * Command-line flags → a config input for the one schema. The simple-case flags are a stable
 * interface other tools rely on; keep their names and meaning:
 *
 *   baton --listen 127.0.0.1:7000 --backend 127.0.0.1:7101 --backend 127.0.0.1:7102,weight=2 \
 *         --balance round-robin --log-level info
 *
 * Everything else lives in the config file (`--config baton.yaml`).
 */
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs'
import { parseArgs } from 'node:util'
import { parse as parseYaml } from 'yaml'
import { ConfigError } from '../errors.js'
import { closest } from '../config/validate.js'
import { PROTOCOL_CHECKS, PROTOCOL_HELP } from '../protocols/index.js'

export const USAGE = `Usage: baton --listen HOST:PORT --backend HOST:PORT[,weight=N][,maxconn=N][,backup] [--backend ...] [options]
       baton --config FILE [--log-level LEVEL] [--pretty]

A TCP (L4) load balancer that splices each client connection to a backend.

Options:
  -c, --config FILE        YAML or JSON config file (see README: "Configuration file")
  -l, --listen HOST:PORT   address to accept on (":7000" means every interface, "[::1]:7000" IPv6,
                           "unix:/run/baton.sock" a unix-domain socket)
  -b, --backend SPEC       HOST:PORT, [V6]:PORT or unix:/PATH, optionally ",weight=N", ",maxconn=N",
                           ",name=NAME", ",group=NAME", ",send-proxy=V" and ",backup" (used only while
                           no other is usable); repeat
      --discover SPEC      backends from DNS: NAME:PORT (its A/AAAA records) or srv:NAME (SRV); repeatable
      --resolver IP[:PORT] DNS server for --discover (default: the system's); repeatable
      --balance NAME       round-robin (default), least-connections, random, power-of-two,
                           source-hash, first
      --protocol NAME      how requests and responses are delimited, which decides what can be
                           re-sent when a backend fails: ${PROTOCOL_HELP} (default opaque)
      --replay MODE        safe (default), all, none
      --data-plane P       auto (default: the native splice plane where it can run), js, native
      --response-timeout D a request with no response byte within D fails over (default off)
      --pool-idle N        idle connections kept ready per backend for hand-offs (default 0)
      --health-check KIND  active checks: tcp, http:/PATH, ${PROTOCOL_CHECKS.join(', ')} (default none)
      --check-interval D   time between health checks (default 2s)
      --tls-route M=GROUP  TLS passthrough: send clients whose ClientHello matches M to the backends
                           of GROUP; M is a server name (api.example.com), a wildcard (*.example.com)
                           or alpn:PROTO; repeat, first match wins; the rest go to group "default"
      --hello-timeout D    TLS: close a client with no whole ClientHello within D (default 5s)
      --admin HOST:PORT    admin server: status page, /api, /metrics (loopback)
      --admin-token-file F the admin bearer token, read from file F (trimmed; not world-readable);
                           BATON_ADMIN_TOKEN in the environment is the other way to give it
      --connect-timeout D  backend connect timeout, e.g. 500ms, 5s (default 5s)
      --retries N          other backends to try when a connect fails (default 3)
      --max-connections N  most sessions at once, 0 = no limit (default 0)
      --accept-proxy CIDRS read a PROXY protocol header (v1/v2) from these sources only (comma-separated
                           or repeated); their header's address is the client's
      --send-proxy V       send a PROXY protocol header (v1 or v2) to every backend (per backend:
                           --backend HOST:PORT,send-proxy=v2)
      --allow CIDRS        only clients from these addresses (comma-separated or repeated)
      --deny CIDRS         refuse clients from these addresses
      --max-connections-per-source N   most live sessions from one client address (default 0: off)
      --rate-limit N       new sessions per second on the listener (default 0: off)
      --rate-limit-per-source N        new sessions per second from one client address (default 0: off)
      --workers N|auto     processes that accept and splice: 1 (default) is one process; N > 1 or
                           auto (one per core) add a primary for checks, admin and reloads
      --native-threads N|auto  threads of the native splice plane per process (HAProxy's nbthread):
                           auto (default) is the cores shared out between the workers, 0 the main
                           thread
      --log-level LEVEL    trace, debug, info (default), warn, error, fatal, silent
      --pretty             human-readable logs (default when stdout is a terminal)
      --no-access-log      no line per session (the access log is on by default; see README);
                           --access-log turns it on over a file's log.access: false
      --check              validate the configuration, print it resolved (YAML, token hidden), exit
  -h, --help               this text
  -v, --version            the version
`

export type Command =
  | { kind: 'help' }
  | { kind: 'version' }
  | {
      kind: 'run'
      config: Record<string, unknown>
      check: boolean
      source: string
      /** Where the admin token came from (`--admin-token-file PATH`…), for `--check`; never the token. */
      tokenSource?: string
    }

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  listen: { type: 'string', short: 'l' },
  backend: { type: 'string', short: 'b', multiple: true },
  discover: { type: 'string', multiple: true },
  resolver: { type: 'string', multiple: true },
  balance: { type: 'string' },
  'connect-timeout': { type: 'string' },
  protocol: { type: 'string' },
  'data-plane': { type: 'string' },
  'health-check': { type: 'string' },
  'check-interval': { type: 'string' },
  admin: { type: 'string' },
  'admin-token-file': { type: 'string' },
  'access-log': { type: 'boolean' },
  'no-access-log': { type: 'boolean' },
  replay: { type: 'string' },
  'response-timeout': { type: 'string' },
  'pool-idle': { type: 'string' },
  'tls-route': { type: 'string', multiple: true },
  'hello-timeout': { type: 'string' },
  retries: { type: 'string' },
  'max-connections': { type: 'string' },
  'accept-proxy': { type: 'string', multiple: true },
  'send-proxy': { type: 'string' },
  allow: { type: 'string', multiple: true },
  deny: { type: 'string', multiple: true },
  'max-connections-per-source': { type: 'string' },
  'rate-limit': { type: 'string' },
  'rate-limit-per-source': { type: 'string' },
  workers: { type: 'string' },
  'native-threads': { type: 'string' },
  'log-level': { type: 'string' },
  pretty: { type: 'boolean' },
  check: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const

export function parseCommand(
  argv: readonly string[],
  readFile = readConfigFile,
  env: NodeJS.ProcessEnv = process.env
): Command {
  let values
  try {
    ;({ values } = parseArgs({ args: [...argv], options: OPTIONS, strict: true, allowPositionals: false }))
  } catch (err) {
    throw new ConfigError([usageMessage(err as Error)])
  }
  if (values.help === true) return { kind: 'help' }
  if (values.version === true) return { kind: 'version' }

  let config: Record<string, unknown>
  let source: string
  if (values.config !== undefined) {
    const simple = [
      'listen',
      'backend',
      'discover',
      'resolver',
      'balance',
      'connect-timeout',
      'protocol',
      'data-plane',
      'replay',
      'response-timeout',
      'pool-idle',
      'health-check',
      'check-interval',
      'retries',
      'max-connections',
      'tls-route',
      'hello-timeout',
      'accept-proxy',
      'send-proxy',
      'allow',
      'deny',
      'max-connections-per-source',
      'rate-limit',
      'rate-limit-per-source',
    ] as const
    const both = simple.filter((k) => values[k] !== undefined)
    if (both.length > 0) {
      throw new ConfigError([`--${both[0]}: cannot be combined with --config; put it in the config file`])
    }
    config = readFile(values.config)
    source = values.config
  } else {
    if (values.listen === undefined)
      throw new ConfigError(['--listen: required (or use --config FILE); see --help'])
    if (values.backend === undefined && values.discover === undefined)
      throw new ConfigError(['--backend: at least one is required (or --discover); see --help'])
    const listener: Record<string, unknown> = {
      listen: values.listen,
      backends: (values.backend ?? []).map((spec, i) => parseBackendFlag(spec, i)),
    }
    if (values.discover !== undefined) listener.discover = values.discover.map(parseDiscoverFlag)
    if (values.balance !== undefined) listener.balance = values.balance
    if (values['connect-timeout'] !== undefined) listener.connectTimeout = values['connect-timeout']
    if (values.protocol !== undefined) listener.protocol = values.protocol
    if (values['data-plane'] !== undefined) listener.dataPlane = values['data-plane']
    if (values.replay !== undefined) listener.replay = values.replay
    if (values['response-timeout'] !== undefined) listener.responseTimeout = values['response-timeout']
    if (values['pool-idle'] !== undefined)
      listener.pool = { idle: integerFlag('pool-idle', values['pool-idle']) }
    if (values['health-check'] !== undefined || values['check-interval'] !== undefined) {
      listener.healthCheck = healthCheckFlag(values['health-check'] ?? 'tcp', values['check-interval'])
    }
    if (values.retries !== undefined) listener.retries = integerFlag('retries', values.retries)
    acceptFlags(listener, values)
    if (values['tls-route'] !== undefined || values['hello-timeout'] !== undefined) {
      const tls: Record<string, unknown> = { routes: (values['tls-route'] ?? []).map(tlsRouteFlag) }
      if (values['hello-timeout'] !== undefined) tls.helloTimeout = values['hello-timeout']
      listener.tls = tls
    }
    config = { listeners: [listener] }
    if (values.resolver !== undefined) config.dns = { resolvers: values.resolver }
    if (values['max-connections'] !== undefined) {
      config.maxConnections = integerFlag('max-connections', values['max-connections'])
    }
    source = 'command line'
  }
  // Like --admin and --log-level, --workers and --native-threads may also override a config file.
  if (values.workers !== undefined) config.workers = values.workers
  if (values['native-threads'] !== undefined) config.nativeThreads = values['native-threads']
  if (values.admin !== undefined) {
    config.admin = { ...((config.admin as Record<string, unknown> | undefined) ?? {}), listen: values.admin }
  }
  if (values['access-log'] === true && values['no-access-log'] === true)
    throw new ConfigError(['--access-log and --no-access-log: choose one'])
  {
    // The access log is on for the command unless the file or a flag says otherwise (HAProxy's
    // `option tcplog` in every example config); the library's default is off.
    const log = { ...((config.log as Record<string, unknown> | undefined) ?? {}) }
    if (values['log-level'] !== undefined) log.level = values['log-level']
    if (values.pretty !== undefined) log.pretty = values.pretty
    if (values['access-log'] === true) log.access = true
    if (values['no-access-log'] === true) log.access = false
    log.access ??= true
    config.log = log
  }
  const tokenSource = resolveAdminToken(config, values['admin-token-file'], env)
  return {
    kind: 'run',
    config,
    check: values.check === true,
    source,
    ...(tokenSource !== undefined ? { tokenSource } : {}),
  }
}

/**
 * The admin token, from (first found) `--admin-token-file`, `BATON_ADMIN_TOKEN`, `admin.tokenFile`
 * or `admin.token`, put in `admin.token` (and `admin.tokenFile` removed) so that the schema and the
 * admin server see one token. Read here, so once at start and again at each reload (which parses the
 * command line again). Returns where it came from.
 */
function resolveAdminToken(
  config: Record<string, unknown>,
  flagFile: string | undefined,
  env: NodeJS.ProcessEnv
): string | undefined {
  const admin = config.admin
  if (admin !== undefined && (typeof admin !== 'object' || admin === null || Array.isArray(admin))) return
  const a = { ...((admin as Record<string, unknown> | undefined) ?? {}) }
  if (a.token !== undefined && a.tokenFile !== undefined)
    throw new ConfigError(['admin: set token or tokenFile, not both'])
  const envToken = env.BATON_ADMIN_TOKEN
  let source: string | undefined
  if (flagFile !== undefined) {
    a.token = readTokenFile(flagFile, '--admin-token-file')
    source = `--admin-token-file ${flagFile}`
  } else if (envToken !== undefined) {
    const token = envToken.trim()
    if (token === '') throw new ConfigError(['BATON_ADMIN_TOKEN: set but empty; unset it or give a token'])
    a.token = token
    source = 'BATON_ADMIN_TOKEN'
  } else if (typeof a.tokenFile === 'string' && a.tokenFile !== '') {
    a.token = readTokenFile(a.tokenFile, 'admin.tokenFile')
    source = `admin.tokenFile ${a.tokenFile}`
  } else if (a.token !== undefined) {
    source = 'admin.token'
  }
  if (source === undefined) return undefined
  if (a.tokenFile !== undefined && typeof a.tokenFile === 'string') delete a.tokenFile
  config.admin = a
  return source
}

/** A token file is one line; past this it is a mistake. */
const MAX_TOKEN_BYTES = 4096

/**
 * The token in `path`, trimmed. Refused when it is not a regular file, is empty, is larger than
 * 4 KiB, or can be read by other users (mode `o+r`: like ssh with a private key, a secret anyone on
 * the box can read is not one; `chmod 600`, or `640` with a group for Baton).
 */
export function readTokenFile(path: string, what: string): string {
  const refuse = (why: string): never => {
    throw new ConfigError([`${what} ${path}: ${why}`])
  }
  let fd: number
  try {
    fd = openSync(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0))
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    return refuse(
      e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message
    )
  }
  try {
    const st = fstatSync(fd)
    if (!st.isFile()) refuse(`not a regular file (${fileKind(st)})`)
    if ((st.mode & 0o004) !== 0)
      refuse(`readable by every user (mode ${(st.mode & 0o777).toString(8)}); chmod 600 (or 640) it`)
    if (st.size > MAX_TOKEN_BYTES) refuse(`larger than ${MAX_TOKEN_BYTES} bytes: not a token`)
    const buf = Buffer.alloc(MAX_TOKEN_BYTES + 1)
    const n = readSync(fd, buf, 0, buf.length, null)
    const token = buf.toString('utf8', 0, n).trim()
    if (token === '') refuse('empty')
    return token
  } catch (err) {
    if (err instanceof ConfigError) throw err
    return refuse((err as Error).message)
  } finally {
    closeSync(fd)
  }
}

/**
 * `HOST:PORT[,weight=N][,maxconn=N][,name=NAME][,backup]`, as nginx's `server` line and HAProxy's
 * options; `[V6]:PORT` and `unix:/PATH` too (a path with a comma needs the config file).
 */
export function parseBackendFlag(spec: string, index: number): Record<string, unknown> {
  const [address, ...params] = spec.split(',')
  const backend: Record<string, unknown> = { address }
  const i = address!.lastIndexOf(':')
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(address!)) {
    // `redis://127.0.0.1:6379` would be read as a host `redis`: say what it is.
    throw new ConfigError([
      `--backend ${spec}: expected a host name or IP address without a scheme (not a URL such as "redis://host")`,
    ])
  } else if (address!.startsWith('unix:')) {
    backend.path = address!.slice('unix:'.length) // the schema judges the path
  } else if (address!.startsWith('[')) {
    const m = /^\[([^\]]+)\]:(.*)$/.exec(address!)
    if (m === null) throw new ConfigError([`--backend ${spec}: expected HOST:PORT`])
    backend.host = m[1]
    backend.port = m[2]
  } else if (i > 0 && address!.indexOf(':') !== i) {
    // "::1:7000" is itself a valid IPv6 address: only brackets say where the port starts.
    throw new ConfigError([`--backend ${spec}: an IPv6 address takes its port after brackets, as [::1]:7000`])
  } else if (i > 0) {
    backend.host = address!.slice(0, i)
    backend.port = address!.slice(i + 1)
  } else {
    throw new ConfigError([
      `--backend ${spec}: expected HOST:PORT, [V6]:PORT or unix:/PATH, e.g. 127.0.0.1:7101`,
    ])
  }
  delete backend.address
  for (const p of params) {
    const eq = p.indexOf('=')
    const key = eq < 0 ? p : p.slice(0, eq)
    const value = eq < 0 ? '' : p.slice(eq + 1)
    const field = BACKEND_PARAMS[key]
    if (field === undefined) {
      const near = closest(key, Object.keys(BACKEND_PARAMS))
      throw new ConfigError([
        `--backend ${spec}: unknown parameter "${key}"${near !== undefined ? ` (did you mean "${near}"?)` : ''}; expected weight=N, maxconn=N, name=NAME, group=NAME, send-proxy=v1|v2|none or backup`,
      ])
    }
    if (field === 'backup') {
      if (eq >= 0) throw new ConfigError([`--backend ${spec}: backup takes no value`])
      backend.backup = true
      continue
    }
    backend[field] = field === 'name' || field === 'group' ? value : /^\d+$/.test(value) ? Number(value) : value
  }
  void index
  return backend
}

/** `api.example.com=GROUP`, `*.example.com=GROUP` or `alpn:h2=GROUP` (the schema checks the parts). */
function tlsRouteFlag(spec: string): Record<string, unknown> {
  const eq = spec.lastIndexOf('=')
  if (eq <= 0 || eq === spec.length - 1)
    throw new ConfigError([`--tls-route ${spec}: expected NAME=GROUP, *.SUFFIX=GROUP or alpn:PROTO=GROUP`])
  const match = spec.slice(0, eq)
  const group = spec.slice(eq + 1)
  return match.startsWith('alpn:') ? { alpn: match.slice(5), group } : { serverName: match, group }
}

/** `srv:NAME` (an SRV name) or `NAME:PORT` (a name's A/AAAA records on that port). */
export function parseDiscoverFlag(spec: string): Record<string, unknown> {
  if (spec.startsWith('srv:')) return { srv: spec.slice(4) }
  const hp = /^(.+):(\d+)$/.exec(spec)
  if (hp === null) throw new ConfigError([`--discover ${spec}: expected NAME:PORT or srv:NAME`])
  return { name: hp[1], port: Number(hp[2]) }
}

/** `tcp`, `http:/PATH` (or `http` for `/`), or a protocol's own check (`redis`, `memcached`). */
function healthCheckFlag(kind: string, interval: string | undefined): Record<string, unknown> {
  const check: Record<string, unknown> = {}
  if (kind === 'tcp' || kind === 'none' || (PROTOCOL_CHECKS as readonly string[]).includes(kind))
    check.type = kind
  else if (kind === 'http' || kind.startsWith('http:')) {
    check.type = 'http'
    check.path = kind.length > 5 ? kind.slice(5) : '/'
  } else {
    throw new ConfigError([
      `--health-check: expected tcp, http:/PATH or ${PROTOCOL_CHECKS.join(', ')}, got "${kind}"`,
    ])
  }
  if (interval !== undefined) check.interval = interval
  return check
}

const BACKEND_PARAMS: Record<string, string> = {
  weight: 'weight',
  maxconn: 'maxConnections',
  name: 'name',
  group: 'group',
  backup: 'backup',
  'send-proxy': 'sendProxy',
}

/** The accept-stage flags (lib/accept/): PROXY protocol, access rules, limits. CIDRs are checked by the schema. */
function acceptFlags(
  listener: Record<string, unknown>,
  v: {
    'accept-proxy'?: string[] | undefined
    'send-proxy'?: string | undefined
    allow?: string[] | undefined
    deny?: string[] | undefined
    'max-connections-per-source'?: string | undefined
    'rate-limit'?: string | undefined
    'rate-limit-per-source'?: string | undefined
  }
): void {
  const list = (xs: string[]): string[] => xs.flatMap((x) => x.split(',')).map((x) => x.trim())
  if (v['accept-proxy'] !== undefined) listener.acceptProxy = { from: list(v['accept-proxy']) }
  if (v['send-proxy'] !== undefined) listener.sendProxy = v['send-proxy']
  if (v.allow !== undefined) listener.allow = list(v.allow)
  if (v.deny !== undefined) listener.deny = list(v.deny)
  if (v['max-connections-per-source'] !== undefined)
    listener.maxConnectionsPerSource = integerFlag('max-connections-per-source', v['max-connections-per-source'])
  const rate: Record<string, number> = {}
  if (v['rate-limit'] !== undefined) rate.accept = integerFlag('rate-limit', v['rate-limit'])
  if (v['rate-limit-per-source'] !== undefined)
    rate.perSource = integerFlag('rate-limit-per-source', v['rate-limit-per-source'])
  if (Object.keys(rate).length > 0) listener.rateLimit = rate
}

function integerFlag(name: string, value: string): number {
  if (!/^\d+$/.test(value)) throw new ConfigError([`--${name}: expected a whole number, got "${value}"`])
  return Number(value)
}

function usageMessage(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code
  const m = /Unknown option '(--?[^']+)'/.exec(err.message)
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && m !== null) {
    const flag = m[1]!.replace(/^-+/, '')
    const near = closest(flag, Object.keys(OPTIONS))
    return `${m[1]}: unknown option${near !== undefined ? ` (did you mean "--${near}"?)` : ''}; see --help`
  }
  return `${err.message.split('\n')[0]}; see --help`
}

/** A config file is a few KiB; past this it is a mistake (a log, an image, /dev/zero), not a config. */
export const MAX_CONFIG_BYTES = 1024 * 1024

/** Read a YAML or JSON config file (JSON is YAML, so one parser serves both). */
export function readConfigFile(path: string): Record<string, unknown> {
  const text = readBounded(path)
  let data: unknown
  try {
    data = parseYaml(text, { prettyErrors: true })
  } catch (err) {
    throw new ConfigError([`${path}: not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}`])
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new ConfigError([`${path}: expected a mapping with "listeners" at the top`])
  }
  return data as Record<string, unknown>
}

/**
 * The file's text, refused unless it is a regular file of at most MAX_CONFIG_BYTES. Opened
 * non-blocking, so a FIFO does not wait for a writer; judged by fstat of what was opened (no race
 * with a rename); and read for at most one byte past the bound, in case it grows meanwhile.
 */
function readBounded(path: string): string {
  const refuse = (why: string): never => {
    throw new ConfigError([`--config ${path}: ${why}`])
  }
  let fd: number
  try {
    fd = openSync(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0))
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    return refuse(e.code === 'ENOENT' ? 'no such file' : e.message)
  }
  try {
    const st = fstatSync(fd)
    if (!st.isFile()) refuse(`not a regular file (${fileKind(st)})`)
    if (st.size > MAX_CONFIG_BYTES) refuse(`larger than 1 MiB (${st.size} bytes)`)
    const buf = Buffer.allocUnsafe(MAX_CONFIG_BYTES + 1)
    let n = 0
    while (n < buf.length) {
      const got = readSync(fd, buf, n, buf.length - n, null)
      if (got === 0) break
      n += got
    }
    if (n > MAX_CONFIG_BYTES) refuse('larger than 1 MiB')
    return buf.toString('utf8', 0, n)
  } catch (err) {
    if (err instanceof ConfigError) throw err
    return refuse((err as Error).message)
  } finally {
    closeSync(fd)
  }
}

function fileKind(st: Stats): string {
  if (st.isDirectory()) return 'a directory'
  if (st.isFIFO()) return 'a FIFO'
  if (st.isCharacterDevice()) return 'a character device'
  if (st.isBlockDevice()) return 'a block device'
  if (st.isSocket()) return 'a socket'
  return 'not a file nor a directory'
}
