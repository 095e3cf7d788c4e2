/**
 * The admin server: a small `node:http` server beside the data path, for metrics, a status page
 * and a JSON API that drains, parks or re-weights backends.
 *
 *   GET  /                                 status page (HTML, refreshes itself)
 *   GET  /metrics                          Prometheus text (prom-client, own registry)
 *   GET  /api/listeners                    listener snapshots with counters
 *   GET  /api/backends                     every backend of every listener
 *   GET  /api/backends.csv                 the same as CSV (the status page's export link)
 *   GET  /api/sessions?offset=&limit=      live sessions, paged (limit 1..1000, default 100)
 *   GET  /api/history                      per listener, the last minutes of sessions and failovers
 *   POST /api/backends/NAME/ready|drain|maint
 *   PUT  /api/backends/NAME/weight         body { "weight": 1..1000 }
 *   POST /api/reload                       re-read the config file (400 with the reason if invalid)
 *   GET  /healthz                          200 while the process answers (liveness)
 *   GET  /readyz                           200 while it takes new clients, else 503 (readiness)
 *
 * NAME is `listener/backend` or a backend name that only one listener has (URL-encoded either way).
 * Who may call what is in access.ts. Every request runs inside its own catch: a bug here answers
 * 500 and is logged, it never reaches the balancer's sockets. All reads happen at request time; the
 * data path does no work for the admin server.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import type { AdminState } from '../backend.js'
import type { Balancer } from '../balancer.js'
import { ConfigError, ListenError } from '../errors.js'
import { hostChecker, hostOfHeader, isLoopback, sameOrigin, tokenChecker } from './access.js'
import {
  ADMIN_STATES,
  allBackends,
  backendJson,
  backendsCsv,
  findBackend,
  HttpError,
  parseWeight,
  sessionPage,
  setAdmin,
} from './api.js'
import { History, type HistoryOptions } from './history.js'
import { createMetrics } from './metrics.js'
import { renderPage } from './page.js'
import { adoptHandle } from '../fleet/inherit.js'

export interface AdminOptions {
  host: string
  port: number
  /** Required to bind anything but loopback; then needed for every non-GET request. */
  token?: string
  /** Names besides loopback and the server's own address that a request's `Host` may give (access.ts). */
  hosts?: readonly string[]
  log: Logger
  /** Re-reads and applies the configuration (the CLI passes its SIGHUP handler); 501 without it. */
  reload?: () => Promise<unknown>
  /**
   * `--workers` primary: the balancer handed in is a view that serves no traffic. `metrics` gives the
   * Prometheus text to serve instead of the view's own registry (the workers' registries summed);
   * `refresh` runs before each GET other than /metrics and brings the view up to date from the
   * workers; `changed` runs after each POST or PUT that succeeded, to pass the change on to them.
   */
  cluster?: {
    metrics(): Promise<{ text: string; contentType: string }>
    refresh(url: URL): Promise<void>
    changed(): void
  }
  /** A listening socket passed to this process (systemd, an upgrade) to serve on instead of binding. */
  inherited?: import('../fleet/inherit.js').Adoptable
  /** `GET /readyz` answers 503 once this says false (the process is stopping or handing over). */
  ready?: () => boolean
  /** The status page's sampler: interval (default 5 s) and samples kept (default 120). */
  history?: Pick<HistoryOptions, 'intervalMs' | 'samples'>
}

export interface AdminServer {
  address(): { host: string; port: number }
  /** The listening server, for an upgrade to pass on (lib/fleet/upgrade.ts). */
  readonly server: http.Server
  close(): Promise<void>
  /**
   * Take a new token (a reload re-read the token file or the environment). Undefined removes it,
   * which a server bound beyond loopback refuses (it keeps the one it has, and says so). Throws
   * BatonError `ERR_BATON_ADMIN` for a token that cannot be sent in a header.
   */
  setToken(token: string | undefined): void
}

const MAX_BODY = 4096
/** Answered to anyone (no token, any peer, any Host): they say only whether Baton is up and ready. */
const PROBES = new Set(['/healthz', '/readyz'])
/** Paths answered without asking the workers first (`--workers`): probes must stay cheap. */
const NO_REFRESH = new Set(['/metrics', '/healthz', '/readyz'])
/** The admin server is for a handful of operators and one scraper. */
const MAX_CONNECTIONS = 64

type Handler = (req: IncomingMessage, res: ServerResponse, url: URL, name: string) => Promise<void> | void

/** Start the admin server. Rejects with BatonError `ERR_BATON_ADMIN` on bad options. */
export async function startAdmin(balancer: Balancer, options: AdminOptions): Promise<AdminServer> {
  const { host, port, log } = options
  let token = options.token
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new ConfigError(
      [`admin port must be an integer from 0 to 65535, got ${port}`],
      'ERR_BATON_ADMIN'
    )
  const checkToken = (t: string | undefined): void => {
    if (t !== undefined && !/^[\x21-\x7e]+$/.test(t))
      throw new ConfigError(
        ['admin token must be non-empty printable ASCII without spaces (it is sent as "Authorization: Bearer <token>")'],
        'ERR_BATON_ADMIN'
      )
  }
  checkToken(token)
  if (token === undefined && !isLoopback(host))
    throw new ConfigError(
      [`admin server refuses to bind ${host} without a token: bind 127.0.0.1 (or ::1, localhost), or set a token`],
      'ERR_BATON_ADMIN'
    )

  // A `--workers` primary serves its workers' registries summed (options.cluster), not one of its own.
  const registry = options.cluster === undefined ? createMetrics(balancer) : undefined
  let authorized = token === undefined ? () => false : tokenChecker(token)
  const namesThisServer = hostChecker([host, ...(options.hosts ?? [])])
  // Built here so bad history options are refused with the rest; sampling starts once listening.
  const history = new History(balancer, {
    ...options.history,
    onError: (err) => log.error({ err }, 'history sample failed'),
  })

  const read: Record<string, Handler> = {
    '/': (_req, res) =>
      send(res, 200, renderPage(balancer, history, { token: token !== undefined }), 'text/html; charset=utf-8'),
    '/metrics': async (_req, res) => {
      const m =
        options.cluster !== undefined
          ? await options.cluster.metrics()
          : { text: await registry!.metrics(), contentType: registry!.contentType }
      send(res, 200, m.text, m.contentType)
    },
    '/api/listeners': (_req, res) => json(res, 200, balancer.listenerSnapshots()),
    '/api/backends': (_req, res) => json(res, 200, allBackends(balancer)),
    '/api/backends.csv': (_req, res) =>
      send(res, 200, backendsCsv(balancer), 'text/csv; charset=utf-8; header=present', {
        'content-disposition': 'attachment; filename="baton-backends.csv"',
      }),
    '/api/sessions': (_req, res, url) => json(res, 200, sessionPage(balancer, url.searchParams)),
    '/api/history': (_req, res) => json(res, 200, history.toJSON()),
    // For probes (Kubernetes, load balancers, `systemctl`): liveness says the process answers;
    // readiness also that it takes new clients (503 while it stops or hands over to a successor).
    '/healthz': (_req, res) => send(res, 200, 'ok\n', 'text/plain; charset=utf-8'),
    '/readyz': (_req, res) => {
      const ready = options.ready?.() ?? balancer.frontends.some((l) => l.listening)
      send(res, ready ? 200 : 503, ready ? 'ready\n' : 'not ready\n', 'text/plain; charset=utf-8')
    },
  }

  const setState =
    (state: AdminState): Handler =>
    (_req, res, _url, name) => {
      const { listener, backend } = findBackend(balancer, name)
      const was = setAdmin(listener, backend, state)
      if (was !== state)
        log.info(
          { listener: listener.name, backend: backend.name, from: was, to: state },
          'backend admin state changed'
        )
      json(res, 200, backendJson(listener, backend))
    }

  const setWeight: Handler = async (req, res, _url, name) => {
    const { listener, backend } = findBackend(balancer, name)
    const weight = parseWeight(await readJson(req))
    const was = backend.weight
    backend.weight = weight
    if (was !== weight)
      log.info(
        { listener: listener.name, backend: backend.name, from: was, to: weight },
        'backend weight changed'
      )
    json(res, 200, backendJson(listener, backend))
  }

  /** Method table for a path, and the backend name for `/api/backends/NAME/ACTION`. */
  const route = (path: string): { methods: Record<string, Handler>; name: string } | undefined => {
    const get = read[path]
    if (get !== undefined) return { methods: { GET: get, HEAD: get }, name: '' }
    if (path === '/api/reload')
      return {
        methods: {
          POST: async (_req, res) => {
            if (options.reload === undefined) return json(res, 501, { error: 'reload needs a config file' })
            try {
              json(res, 200, await options.reload())
            } catch (err) {
              json(res, 400, { error: (err as Error).message })
            }
          },
        },
        name: '',
      }
    const m = /^\/api\/backends\/(.+)\/([^/]+)$/.exec(path)
    if (m === null) return undefined
    const name = m[1]!.split('/').map(decode).join('/')
    const action = m[2]!
    if ((ADMIN_STATES as readonly string[]).includes(action))
      return { methods: { POST: setState(action as AdminState) }, name }
    if (action === 'weight') return { methods: { PUT: setWeight }, name }
    return undefined
  }

  // Failed authentication is logged, at most once a second: a line says how many failures it stands
  // for (a password-guessing loop must not flood the log, nor go unseen).
  let lastAuthLog = 0
  let authUnlogged = 0
  const authFailed = (req: IncomingMessage, method: string, path: string): void => {
    authUnlogged++
    const now = Date.now()
    if (now - lastAuthLog < 1000) return
    lastAuthLog = now
    log.warn(
      {
        remote: `${req.socket.remoteAddress}:${req.socket.remotePort}`,
        method,
        path,
        credentials: req.headers.authorization === undefined ? 'missing' : 'wrong',
        failures: authUnlogged,
      },
      'admin authentication failed'
    )
    authUnlogged = 0
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let url: URL
    try {
      url = new URL(`http://admin.invalid${req.url ?? '/'}`) // origin-form only: `//x` is a path, not a host
    } catch {
      throw new HttpError(400, 'bad request target')
    }
    const method = req.method ?? 'GET'
    const readOnly = method === 'GET' || method === 'HEAD'
    // Probes (kubelet, a cloud load balancer) come from the network, with no token and any Host:
    // like HAProxy's `monitor-uri` they are answered before the access checks. They tell nothing
    // but "ok" or "ready".
    if (readOnly && PROBES.has(url.pathname)) return read[url.pathname]!(req, res, url, '')
    const hostHeader = req.headers.host ?? ''
    // DNS rebinding (access.ts): checked first, and whatever credentials the request carries.
    if (!namesThisServer(hostHeader, req.socket.localAddress))
      throw new HttpError(
        403,
        `host "${hostOfHeader(hostHeader)}" is not a name of this server (loopback, its address, or admin.hosts)`
      )
    const withToken = authorized(req.headers.authorization)
    const loopbackPeer = isLoopback(req.socket.remoteAddress ?? '')

    if (token !== undefined && !withToken && !(readOnly && loopbackPeer)) {
      authFailed(req, method, url.pathname)
      throw new HttpError(401, 'missing or wrong bearer token', {
        'www-authenticate': 'Bearer realm="baton"',
      })
    }
    if (!withToken && !loopbackPeer) throw new HttpError(403, 'not a loopback peer')
    if (!readOnly && !sameOrigin(req.headers.origin, hostHeader))
      throw new HttpError(403, 'cross-origin request refused')

    const r = route(url.pathname)
    if (r === undefined) throw new HttpError(404, `no route ${url.pathname}`)
    const handler = r.methods[method]
    if (handler === undefined)
      throw new HttpError(405, `${method} not allowed on ${url.pathname}`, {
        allow: Object.keys(r.methods).join(', '),
      })
    if (readOnly && !NO_REFRESH.has(url.pathname)) await options.cluster?.refresh(url)
    await handler(req, res, url, r.name)
    if (!readOnly) options.cluster?.changed()
  }

  const server = http.createServer(
    { headersTimeout: 5_000, requestTimeout: 10_000, keepAliveTimeout: 5_000 },
    (req, res) => {
      req.on('error', ignore) // an aborted upload; the response side reports nothing either
      handle(req, res).catch((err: unknown) => fail(res, err, log))
    }
  )
  server.maxConnections = MAX_CONNECTIONS

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void =>
      reject(new ListenError('admin', `${host}:${port}`, err))
    server.once('error', onError)
    const listening = (): void => {
      server.off('error', onError)
      server.on('error', (err) => log.error({ err }, 'admin server error'))
      resolve()
    }
    if (options.inherited !== undefined) {
      adoptHandle(server, options.inherited)
      server.once('listening', listening)
    } else {
      server.listen({ host, port }, listening)
    }
  })
  const address = (): { host: string; port: number } => {
    const a = server.address()
    return a === null || typeof a === 'string' ? { host, port } : { host: a.address, port: a.port }
  }
  const bound = address()
  log.info({ address: `${bound.host}:${bound.port}`, token: token !== undefined }, 'admin server listening')
  history.start()

  let closing: Promise<void> | undefined
  return {
    address,
    server,
    close() {
      history.stop()
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
        // Admin requests are short and idempotent to retry: do not wait for keep-alive clients.
        server.closeAllConnections()
      })
      return closing
    },
    setToken(next) {
      if (next === token) return
      checkToken(next)
      if (next === undefined && !isLoopback(host)) {
        log.warn(
          { address: `${host}:${port}` },
          'admin token removed from the configuration: kept, the server is bound beyond loopback'
        )
        return
      }
      token = next
      authorized = next === undefined ? () => false : tokenChecker(next)
      log.info(
        { token: next !== undefined },
        next !== undefined ? 'admin token changed' : 'admin token removed'
      )
    },
  }
}

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment)
  } catch {
    throw new HttpError(400, `bad percent-encoding in "${segment}"`)
  }
}

/**
 * The JSON body, at most MAX_BODY bytes. A larger body is drained (not stored) before the 413, so
 * the answer can still be written on the connection.
 */
async function readJson(req: IncomingMessage): Promise<unknown> {
  if (Number(req.headers['content-length'] ?? 0) > MAX_BODY)
    throw new HttpError(413, `body larger than ${MAX_BODY} bytes`)
  const chunks: Buffer[] = []
  let size = 0
  await new Promise<void>((resolve, reject) => {
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size <= MAX_BODY) chunks.push(chunk)
    })
    req.once('end', resolve)
    req.once('error', reject)
  })
  if (size > MAX_BODY) throw new HttpError(413, `body larger than ${MAX_BODY} bytes`)
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown
  } catch {
    throw new HttpError(400, 'body: expected JSON')
  }
}

function send(
  res: ServerResponse,
  status: number,
  body: string,
  type: string,
  headers: Record<string, string> = {}
): void {
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...headers,
  })
  res.end(body)
}

function json(res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>): void {
  send(res, status, `${JSON.stringify(body)}\n`, 'application/json; charset=utf-8', headers)
}

function fail(res: ServerResponse, err: unknown, log: Logger): void {
  try {
    if (res.headersSent) {
      res.destroy()
      return
    }
    if (err instanceof HttpError) {
      json(res, err.status, { error: err.message }, err.headers)
      // A body we refused to read keeps the connection busy: do not reuse it.
      if (err.status === 413) res.shouldKeepAlive = false
      return
    }
    log.error({ err }, 'admin request failed')
    json(res, 500, { error: 'internal error' })
  } catch {
    res.destroy()
  }
}

function ignore(): void {}
