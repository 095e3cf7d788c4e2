/**
 * `npm run demo`: in-flight failover, live. Three small HTTP backends on loopback (ephemeral ports),
 * Baton in front of them with `protocol: http1`, then a scripted client that GETs a 4 MiB file over
 * one keep-alive connection. Half-way through the answer the serving backend crashes (its listener
 * closed, its connections destroyed); Baton re-sends the GET elsewhere with `Range`/`If-Range` and
 * passes on the rest; the client gets every byte over the connection it had, checks the sha256, and
 * sends a second request on that same connection. Then the round-robin is the user's to try.
 *
 *   npm run demo -- [--port N] [--no-script]   run it (Ctrl-C stops everything)
 *   npm run demo -- --client [--port N]         the same client, against a demo already running
 *
 * Only the public API (lib/index.ts) is used; Baton's log lines reach the screen through a pino
 * logger of the demo's own, so the `failover` line is printed the moment Baton logs it.
 */
import { createHash } from 'node:crypto'
import { accessSync, constants } from 'node:fs'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { delimiter, join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { pino, type Logger } from 'pino'
import { createBalancer, ListenError, type Balancer, type SessionCloseEvent } from './index.js'

const HOST = '127.0.0.1'
const DEFAULT_PORT = 7000
const FILE_PATH = '/file.bin'
const FILE_BYTES = 4 * 1024 * 1024
/** The backends send the file 64 KiB at a time, 20 ms apart (~1.3 s in all): slow enough to watch. */
const PIECE = 64 * 1024
const PACE_MS = 20
/** A backend crashed by `?crash` (not the script's) is started again after this long. */
const RESTART_MS = 1500
const MiB = 1024 * 1024

const USAGE = `Usage: npm run demo -- [options]      (or: node dist/demo.js [options])

Starts three demo HTTP backends on loopback, Baton in front of them on 127.0.0.1:PORT
(protocol http1, round-robin), and shows a backend dying half-way through a 4 MiB response while
the client keeps its connection and gets every byte. Ctrl-C stops everything.

Options:
  --port N      port Baton listens on (default 7000, or BATON_DEMO_PORT; 0 picks a free one)
  --no-script   skip the scripted failover; just run Baton and the backends
  --client      run the demo's client against a demo already running on --port: six requests
                on new connections (round-robin), then a failover it triggers with ?crash
  -h, --help    this text
`

// ---------------------------------------------------------------------------------------------------
// The file: deterministic bytes (xorshift32), so any process can rebuild it and know its sha256.

function makeFile(): { body: Buffer; sha256: string; etag: string } {
  const words = new Uint32Array(FILE_BYTES / 4)
  let x = 0x2545f491
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    words[i] = x >>> 0
  }
  const body = Buffer.from(words.buffer)
  const sha256 = createHash('sha256').update(body).digest('hex')
  // A strong validator (no W/): what lets Baton fetch only the rest with Range/If-Range.
  return { body, sha256, etag: `"${sha256.slice(0, 16)}"` }
}

const mib = (n: number): string => `${(n / MiB).toFixed(1)} MiB`
const say = (who: string, text: string): void => {
  process.stdout.write(`${who.padEnd(10)} ${text}\n`)
}

// ---------------------------------------------------------------------------------------------------
// The demo backends.

interface Crash {
  /** Body bytes sent (and handed to the kernel) when the backend crashes. */
  at: number
  /** Start the backend again after RESTART_MS. */
  restart: boolean
}

interface Fleet {
  file: ReturnType<typeof makeFile>
  backends: DemoBackend[]
  /** The script's one-shot: the next whole-file GET crashes its backend half-way. */
  armed: boolean
}

/**
 * One backend: `GET /` names it, `GET /file.bin` sends the file (Range `bytes=N-` honoured when
 * If-Range matches), paced. A whole-file GET crashes the backend half-way when the script armed it or
 * the query says `?crash`, unless a backend is already down (so a re-sent GET never crashes a second).
 */
class DemoBackend {
  port = 0
  down = false
  private server: http.Server | undefined
  private readonly sockets = new Set<Socket>()

  constructor(
    readonly name: string,
    private readonly fleet: Fleet
  ) {}

  async start(): Promise<void> {
    const server = http.createServer((req, res) => this.serve(req, res))
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket)
      socket.once('close', () => this.sockets.delete(socket))
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.port, HOST, () => {
        server.off('error', reject)
        resolve()
      })
    })
    this.port = (server.address() as AddressInfo).port
    this.server = server
    this.down = false
  }

  /** What a crash does to the outside: the port refuses, every connection ends where it is. */
  crash(): number {
    this.down = true
    this.server?.close()
    this.server = undefined
    const n = this.sockets.size
    for (const s of this.sockets) s.destroy()
    return n
  }

  stop(): void {
    this.crash()
  }

  private serve(req: IncomingMessage, res: ServerResponse): void {
    res.setHeader('X-Backend', this.name)
    const url = new URL(req.url ?? '/', `http://${HOST}`)
    if (url.pathname === '/') {
      const body = `Hello from ${this.name} (port ${this.port}), through Baton.\n`
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) })
      res.end(req.method === 'HEAD' ? undefined : body)
      return
    }
    if (url.pathname !== FILE_PATH || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'Content-Type': 'text/plain', 'Content-Length': 10 })
      res.end(req.method === 'HEAD' ? undefined : 'not found\n')
      return
    }
    const { body, etag } = this.fleet.file
    const headers = {
      'Content-Type': 'application/octet-stream',
      ETag: etag,
      'Accept-Ranges': 'bytes',
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')
    const from = range !== null && (req.headers['if-range'] ?? etag) === etag ? Number(range[1]) : 0
    if (range !== null && from > 0 && from < body.length) {
      say(
        this.name,
        `GET ${req.url} with Range: ${req.headers.range}, If-Range: ${req.headers['if-range'] ?? '-'}` +
          ` → 206, the last ${mib(body.length - from)}`
      )
      res.writeHead(206, {
        ...headers,
        'Content-Range': `bytes ${from}-${body.length - 1}/${body.length}`,
        'Content-Length': body.length - from,
      })
    } else {
      res.writeHead(200, { ...headers, 'Content-Length': body.length })
    }
    if (req.method === 'HEAD') return void res.end()
    const crash =
      from === 0 &&
      (this.fleet.armed || url.searchParams.has('crash')) &&
      !this.fleet.backends.some((b) => b.down)
    if (from === 0) {
      const down = this.fleet.backends.find((b) => b.down)
      const note = crash
        ? ' (will crash half-way)'
        : url.searchParams.has('crash') && down !== undefined
          ? ` (no crash: ${down.name} is still down)`
          : ''
      say(this.name, `GET ${req.url} → 200, ${mib(body.length)}${note}`)
    }
    let crashAt: Crash | undefined
    if (crash) {
      // The script restarts the backend itself once it is done; a crash asked for with ?crash
      // restarts on a timer, so that the round-robin has its three backends again.
      crashAt = { at: body.length / 2, restart: !this.fleet.armed }
      this.fleet.armed = false
    }
    void this.send(res, from, crashAt)
  }

  /** The body from `from`, a piece every PACE_MS, with backpressure; the crash, if asked for. */
  private async send(res: ServerResponse, from: number, crash: Crash | undefined): Promise<void> {
    const { body } = this.fleet.file
    const at = crash?.at ?? Infinity
    for (let i = from; i < body.length;) {
      if (res.destroyed) return
      const end = Math.min(body.length, i + PIECE, at)
      const piece = body.subarray(i, end)
      i = end
      if (crash !== undefined && i >= crash.at) {
        // Let this piece reach the kernel first, so that the crash comes exactly `crash.at` bytes in.
        await new Promise<void>((resolve) => res.write(piece, () => resolve()))
        const n = this.crash()
        say(
          this.name,
          `CRASH ${mib(i)} into the response: listener closed, ${n} connection${n === 1 ? '' : 's'} destroyed`
        )
        if (crash.restart) setTimeout(() => void this.restart(), RESTART_MS)
        return
      }
      if (!res.write(piece)) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            res.off('drain', done)
            res.off('close', done)
            resolve()
          }
          res.on('drain', done).on('close', done)
        })
      }
      await delay(PACE_MS)
    }
    if (!res.destroyed) res.end()
  }

  async restart(): Promise<void> {
    try {
      await this.start()
      say(this.name, `restarted on ${HOST}:${this.port}`)
    } catch (err) {
      say(this.name, `could not restart on ${HOST}:${this.port}: ${(err as Error).message}`)
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// The client: one keep-alive connection, the file, then a second request on the same connection.

interface Got {
  status: number
  backend: string
  body: Buffer
  socket: Socket
}

function get(
  agent: http.Agent,
  port: number,
  path: string,
  hooks: { onSocket?: (s: Socket) => void; onBytes?: (n: number) => void } = {}
): Promise<Got> {
  const { onSocket, onBytes } = hooks
  return new Promise((resolve, reject) => {
    const req = http.get({ host: HOST, port, path, agent }, (res) => {
      const socket = res.socket // detached once the response ends and the agent takes it back
      const parts: Buffer[] = []
      let n = 0
      res.on('data', (chunk: Buffer) => {
        parts.push(chunk)
        n += chunk.length
        onBytes?.(n)
      })
      res.once('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          backend: String(res.headers['x-backend'] ?? '?'),
          body: Buffer.concat(parts),
          socket,
        })
      )
      res.once('error', reject)
      res.once('aborted', () => reject(new Error(`the connection closed after ${n} bytes of the body`)))
    })
    if (onSocket !== undefined) req.once('socket', onSocket)
    req.once('error', reject)
    req.setTimeout(30_000, () => req.destroy(new Error('no answer within 30 s')))
  })
}

/**
 * The failover, seen from the client. `crashQuery`: ask for the crash with `?crash` (the --client
 * mode; the script arms its own backends instead). Resolves true when every check held.
 */
async function failoverClient(
  port: number,
  file: ReturnType<typeof makeFile>,
  crashQuery: boolean
): Promise<boolean> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  // Every connection the client opens, and how many of them closed: the point is one and none.
  const sockets = new Set<Socket>()
  let closes = 0
  const onSocket = (s: Socket): void => {
    if (sockets.has(s)) return
    sockets.add(s)
    s.once('close', () => closes++)
  }
  let next = MiB
  try {
    const path = crashQuery ? `${FILE_PATH}?crash` : FILE_PATH
    say(
      'client',
      `GET ${path} (${mib(FILE_BYTES)}) through Baton on ${HOST}:${port}, one keep-alive connection`
    )
    const got = await get(agent, port, path, {
      onSocket,
      onBytes: (n) => {
        while (n >= next) {
          say('client', `${mib(next)} of ${mib(FILE_BYTES)} received`)
          next += MiB
        }
      },
    })
    const s = got.socket
    const conn = `${s.localAddress}:${s.localPort} → ${HOST}:${port}`
    const sha = createHash('sha256').update(got.body).digest('hex')
    const ok = got.status === 200 && got.body.length === FILE_BYTES && sha === file.sha256
    const same = sockets.size === 1 && closes === 0 && !s.destroyed
    if (ok && same) {
      say(
        'client',
        `${got.body.length} of ${FILE_BYTES} bytes: every byte, sha256 ok, same connection (${conn}, never closed)`
      )
    } else {
      say(
        'client',
        `FAILED: status ${got.status}, ${got.body.length} of ${FILE_BYTES} bytes, sha256 ${sha === file.sha256 ? 'ok' : 'differs'}, ` +
          `connection ${same ? 'kept' : 'closed'}`
      )
      return false
    }
    const second = await get(agent, port, '/', { onSocket })
    const again = second.socket === s && sockets.size === 1 && closes === 0
    say(
      'client',
      `second request on the same connection: GET / → ${second.status} from ${second.backend}: ` +
        `"${second.body.toString().trim()}"${again ? '' : ' (FAILED: on a new connection)'}`
    )
    return again && second.status === 200
  } catch (err) {
    say('client', `FAILED: ${(err as Error).message}`)
    return false
  } finally {
    agent.destroy()
  }
}

/** `--client`: round-robin over new connections, then the failover, against a running demo. */
async function clientMode(port: number): Promise<number> {
  const file = makeFile()
  // Six, not three: a backend that was skipped (crashed, or avoided by a failover) resumes where it
  // left off in the smooth round-robin, so three picks in a row may name one backend twice.
  say('client', `six requests on new connections to ${HOST}:${port}:`)
  for (let i = 0; i < 6; i++) {
    const agent = new http.Agent({ keepAlive: false })
    try {
      const got = await get(agent, port, '/')
      say('client', `  GET / → ${got.status} "${got.body.toString().trim()}"`)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      process.stderr.write(
        code === 'ECONNREFUSED'
          ? `demo: nothing listens on ${HOST}:${port}; start \`npm run demo\` first, or pass its --port\n`
          : `demo: ${(err as Error).message}\n`
      )
      return 1
    } finally {
      agent.destroy()
    }
  }
  return (await failoverClient(port, file, true)) ? 0 : 1
}

// ---------------------------------------------------------------------------------------------------
// Baton, and what it says.

/** Baton's log lines as they are written: the failover ones spelled out, warnings and errors as is. */
function batonLogger(): Logger {
  return pino(
    { level: 'info' },
    {
      write(line: string): void {
        let e: Record<string, unknown>
        try {
          e = JSON.parse(line) as Record<string, unknown>
        } catch {
          return
        }
        if (e.msg === 'failover') {
          say(
            'baton',
            `failover: session ${e.session} ${e.from} → ${e.to} over a ${e.connection} connection, ` +
              `${e.requests} request${e.requests === 1 ? '' : 's'} re-sent (${e.bytes} B), ${Number(e.ms).toFixed(2)} ms`
          )
        } else if (e.msg === 'server connection failed') {
          say('baton', `session ${e.session} lost ${e.backend} (${e.failure}: ${e.err})`)
        } else if (
          e.msg !== 'listening' &&
          (typeof e.level !== 'number' || e.level >= 40 || e.msg === 'backend is up again')
        ) {
          const { level: _l, time: _t, pid: _p, hostname: _h, msg, ...rest } = e
          say('baton', `${String(msg)} ${JSON.stringify(rest)}`)
        }
      },
    }
  )
}

function onPath(command: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue
    try {
      accessSync(join(dir, command), constants.X_OK)
      return true
    } catch {
      // not here
    }
  }
  return false
}

function suggestions(port: number): string {
  const url = `http://${HOST}:${port}`
  const lines = [
    '',
    'Try it yourself, in another terminal (each finished session prints a line here):',
    '',
    `  npm run demo -- --client${port === DEFAULT_PORT ? '' : ` --port ${port}`}`,
    '      six requests on new connections (round-robin), then a failover it triggers',
    `  node -e "fetch('${url}/').then(r => r.text()).then(console.log)"`,
    '      one request: the answer names its backend',
    `  node -e "fetch('${url}${FILE_PATH}?crash').then(r => r.arrayBuffer()).then(b => console.log(b.byteLength))"`,
    `      ?crash: the backend serving it crashes half-way; the client still gets all ${FILE_BYTES} bytes`,
  ]
  if (onPath('curl')) {
    lines.push(
      `  curl ${url}/`,
      `  curl -so /dev/null -w '%{size_download} bytes\\n' '${url}${FILE_PATH}?crash'`
    )
  }
  lines.push('', 'Ctrl-C stops everything.', '')
  return lines.join('\n')
}

async function runDemo(port: number, script: boolean): Promise<number> {
  const fleet: Fleet = { file: makeFile(), backends: [], armed: false }
  fleet.backends = [1, 2, 3].map((i) => new DemoBackend(`backend-${i}`, fleet))
  try {
    for (const b of fleet.backends) await b.start()
  } catch (err) {
    process.stderr.write(`demo: cannot start the demo backends: ${(err as Error).message}\n`)
    for (const b of fleet.backends) b.stop()
    return 2
  }
  const balancer: Balancer = createBalancer(
    {
      listeners: [
        {
          name: 'demo',
          listen: { host: HOST, port },
          balance: 'round-robin',
          protocol: 'http1',
          backends: fleet.backends.map((b) => ({ name: b.name, host: HOST, port: b.port })),
        },
      ],
    },
    { logger: batonLogger() }
  )
  try {
    await balancer.listen()
  } catch (err) {
    for (const b of fleet.backends) b.stop()
    const inUse = err instanceof ListenError && (err.cause as NodeJS.ErrnoException).code === 'EADDRINUSE'
    process.stderr.write(
      inUse
        ? `demo: ${HOST}:${port} is already in use; pick another port: npm run demo -- --port ${port === 7000 ? 7100 : port + 1}\n`
        : `demo: ${(err as Error).message}\n`
    )
    return 2
  }
  const bound = balancer.address('demo').port

  balancer.on('sessionClose', (e: SessionCloseEvent) => {
    say(
      'baton',
      `session ${e.id} from ${e.client} closed: ${e.backends.join(' → ') || 'no backend'}, ` +
        `${e.bytesFromClient} B in, ${e.bytesToClient} B out, ${e.durationMs} ms, ${e.outcome}`
    )
  })

  let stopping = false
  const stop = (): void => {
    if (stopping) process.exit(1)
    stopping = true
    process.stdout.write('\nstopping…\n')
    void balancer.close(1000).then(() => {
      for (const b of fleet.backends) b.stop()
      process.stdout.write('stopped.\n')
      process.exit(0)
    })
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)

  process.stdout.write(
    [
      '',
      `Baton is listening on ${HOST}:${bound} (protocol http1, round-robin) over three demo backends:`,
      ...fleet.backends.map((b) => `  ${b.name}  ${HOST}:${b.port}`),
      '',
      '',
    ].join('\n')
  )
  if (script) {
    process.stdout.write('The scripted failover: a backend dies half-way through a response.\n\n')
    fleet.armed = true
    const ok = await failoverClient(bound, fleet.file, false)
    if (stopping) return -1
    // The client has hung up: let its session's closing line come before the summary.
    if (balancer.counters().active > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 2000)
        balancer.once('sessionClose', () => resolve(void clearTimeout(timer)))
      })
    }
    const c = balancer.counters()
    say(
      'baton',
      `counters: failovers ${c.failovers}, verified resumes ${c.verifiedResumes}, ` +
        `replayed requests ${c.replayedRequests}, unrecoverable ${c.unrecoverable}`
    )
    for (const b of fleet.backends) if (b.down) await b.restart()
    if (!ok) process.stdout.write('\nThe scripted failover did not go as it should: see the lines above.\n')
  }
  process.stdout.write(suggestions(bound))
  return -1
}

// ---------------------------------------------------------------------------------------------------

function parsePort(text: string, from: string): number {
  const n = /^\d{1,5}$/.test(text) ? Number(text) : NaN
  if (!(n >= 0 && n <= 65535)) throw new Error(`${from}: expected a port from 0 to 65535, got "${text}"`)
  return n
}

function parse(argv: string[]): { port: number; script: boolean; client: boolean; help: boolean } {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string' },
      'no-script': { type: 'boolean' },
      client: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  })
  const env = process.env.BATON_DEMO_PORT
  const port =
    values.port !== undefined
      ? parsePort(values.port, '--port')
      : env !== undefined && env !== ''
        ? parsePort(env, 'BATON_DEMO_PORT')
        : DEFAULT_PORT
  return {
    port,
    script: values['no-script'] !== true,
    client: values.client === true,
    help: values.help === true,
  }
}

async function main(argv: string[]): Promise<number> {
  let options: ReturnType<typeof parse>
  try {
    options = parse(argv)
  } catch (err) {
    process.stderr.write(`demo: ${(err as Error).message}; see --help\n`)
    return 2
  }
  if (options.help) {
    process.stdout.write(USAGE)
    return 0
  }
  if (options.client) return clientMode(options.port)
  return runDemo(options.port, options.script)
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code)
  },
  (err: unknown) => {
    process.stderr.write(`demo: internal error: ${(err as Error).stack ?? String(err)}\n`)
    process.exit(1)
  }
)
