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

export const USAGE = `Usage: baton --listen HOST:PORT --backend HOST:PORT[,weight=N][,maxconn=N][,backup] [--backend ...] [options]
       baton --config FILE [--log-level LEVEL] [--pretty]

A TCP (L4) load balancer that splices each client connection to a backend.

Options:
  -c, --config FILE        YAML or JSON config file (see README: "Configuration file")
  -l, --listen HOST:PORT   address to accept on (":7000" means every interface, "[::1]:7000" IPv6,
                           "unix:/run/baton.sock" a unix-domain socket)
  -b, --backend SPEC       HOST:PORT, [V6]:PORT or unix:/PATH, optionally ",weight=N", ",maxconn=N",
                           ",name=NAME" and ",backup" (used only while no other is usable); repeat
      --balance NAME       round-robin (default), least-connections, random, power-of-two,
                           source-hash, first
      --protocol NAME      opaque (default), length-prefixed, http1 or resp: how requests and responses are
                           delimited, which decides what can be re-sent when a backend fails
      --replay MODE        safe (default), all, none
      --response-timeout D a request with no response byte within D fails over (default off)
      --pool-idle N        idle connections kept ready per backend for hand-offs (default 0)
      --health-check KIND  active checks: tcp, http:/PATH, redis (default none)
      --check-interval D   time between health checks (default 2s)
      --admin HOST:PORT    admin server: status page, /api, /metrics (loopback)
      --connect-timeout D  backend connect timeout, e.g. 500ms, 5s (default 5s)
      --retries N          other backends to try when a connect fails (default 3)
      --max-connections N  most sessions at once, 0 = no limit (default 0)
      --workers N|auto     processes that accept and splice: 1 (default) is one process; N > 1 or
                           auto (one per core) add a primary for checks, admin and reloads
      --log-level LEVEL    trace, debug, info (default), warn, error, fatal, silent
      --pretty             human-readable logs (default when stdout is a terminal)
      --check              validate the configuration, print it resolved, and exit
  -h, --help               this text
  -v, --version            the version
`

export type Command =
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'run'; config: Record<string, unknown>; check: boolean; source: string }

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  listen: { type: 'string', short: 'l' },
  backend: { type: 'string', short: 'b', multiple: true },
  balance: { type: 'string' },
  'connect-timeout': { type: 'string' },
  protocol: { type: 'string' },
  'health-check': { type: 'string' },
  'check-interval': { type: 'string' },
  admin: { type: 'string' },
  replay: { type: 'string' },
  'response-timeout': { type: 'string' },
  'pool-idle': { type: 'string' },
  retries: { type: 'string' },
  'max-connections': { type: 'string' },
  workers: { type: 'string' },
  'log-level': { type: 'string' },
  pretty: { type: 'boolean' },
  check: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const

export function parseCommand(argv: readonly string[], readFile = readConfigFile): Command {
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
      'balance',
      'connect-timeout',
      'protocol',
      'replay',
      'response-timeout',
      'pool-idle',
      'health-check',
      'check-interval',
      'retries',
      'max-connections',
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
    if (values.backend === undefined)
      throw new ConfigError(['--backend: at least one is required; see --help'])
    const listener: Record<string, unknown> = {
      listen: values.listen,
      backends: values.backend.map((spec, i) => parseBackendFlag(spec, i)),
    }
    if (values.balance !== undefined) listener.balance = values.balance
    if (values['connect-timeout'] !== undefined) listener.connectTimeout = values['connect-timeout']
    if (values.protocol !== undefined) listener.protocol = values.protocol
    if (values.replay !== undefined) listener.replay = values.replay
    if (values['response-timeout'] !== undefined) listener.responseTimeout = values['response-timeout']
    if (values['pool-idle'] !== undefined)
      listener.pool = { idle: integerFlag('pool-idle', values['pool-idle']) }
    if (values['health-check'] !== undefined || values['check-interval'] !== undefined) {
      listener.healthCheck = healthCheckFlag(values['health-check'] ?? 'tcp', values['check-interval'])
    }
    if (values.retries !== undefined) listener.retries = integerFlag('retries', values.retries)
    config = { listeners: [listener] }
    if (values['max-connections'] !== undefined) {
      config.maxConnections = integerFlag('max-connections', values['max-connections'])
    }
    source = 'command line'
  }
  // Like --admin and --log-level, --workers may also override a config file.
  if (values.workers !== undefined) config.workers = values.workers
  if (values.admin !== undefined) {
    config.admin = { ...((config.admin as Record<string, unknown> | undefined) ?? {}), listen: values.admin }
  }
  if (values['log-level'] !== undefined || values.pretty !== undefined) {
    const log = { ...((config.log as Record<string, unknown> | undefined) ?? {}) }
    if (values['log-level'] !== undefined) log.level = values['log-level']
    if (values.pretty !== undefined) log.pretty = values.pretty
    config.log = log
  }
  return { kind: 'run', config, check: values.check === true, source }
}

/**
 * `HOST:PORT[,weight=N][,maxconn=N][,name=NAME][,backup]`, as nginx's `server` line and HAProxy's
 * options; `[V6]:PORT` and `unix:/PATH` too (a path with a comma needs the config file).
 */
export function parseBackendFlag(spec: string, index: number): Record<string, unknown> {
  const [address, ...params] = spec.split(',')
  const backend: Record<string, unknown> = { address }
  const i = address!.lastIndexOf(':')
  if (address!.startsWith('unix:')) {
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
        `--backend ${spec}: unknown parameter "${key}"${near !== undefined ? ` (did you mean "${near}"?)` : ''}; expected weight=N, maxconn=N, name=NAME or backup`,
      ])
    }
    if (field === 'backup') {
      if (eq >= 0) throw new ConfigError([`--backend ${spec}: backup takes no value`])
      backend.backup = true
      continue
    }
    backend[field] = field === 'name' ? value : /^\d+$/.test(value) ? Number(value) : value
  }
  void index
  return backend
}

/** `tcp`, `redis`, `http:/PATH` (or `http` for `/`). */
function healthCheckFlag(kind: string, interval: string | undefined): Record<string, unknown> {
  const check: Record<string, unknown> = {}
  if (kind === 'tcp' || kind === 'redis' || kind === 'none') check.type = kind
  else if (kind === 'http' || kind.startsWith('http:')) {
    check.type = 'http'
    check.path = kind.length > 5 ? kind.slice(5) : '/'
  } else {
    throw new ConfigError([`--health-check: expected tcp, http:/PATH or redis, got "${kind}"`])
  }
  if (interval !== undefined) check.interval = interval
  return check
}

const BACKEND_PARAMS: Record<string, string> = {
  weight: 'weight',
  maxconn: 'maxConnections',
  name: 'name',
  backup: 'backup',
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
