/**
 * Real nginx backends for interop tests. Each runs as one process (`daemon off; master_process
 * off;`) with a generated minimal config in a temp prefix of its own, so one pid is one server and a
 * SIGKILL of that pid is a crashed backend. Files served come from a shared document root.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { hasCommand, killPeer, spawnPeer, type Peer } from './process.js'
import { freePort, untilListening } from './socat.js'

export interface NginxServer extends Peer {
  readonly host: string
  readonly port: number
  /** The temp prefix (config, pid file, temp dirs); removed by `removeNginxPrefix`. */
  readonly prefix: string
}

export interface ServedFile {
  /** URL path, such as `/small.bin`. */
  readonly path: string
  readonly size: number
  readonly sha256: string
}

export interface DocRoot {
  readonly dir: string
  readonly files: Record<'small' | 'big' | 'huge', ServedFile>
  remove(): void
}

/** True when nginx is on PATH (`nginx -v` exits 0). */
export function hasNginx(): boolean {
  return hasCommand('nginx', ['-v'])
}

export function sha256(data: Buffer | Buffer[]): string {
  const h = createHash('sha256')
  for (const b of Array.isArray(data) ? data : [data]) h.update(b)
  return h.digest('hex')
}

/** A temp directory with `small.bin` (1 KiB), `big.bin` (8 MiB) and `huge.bin` (32 MiB) of random bytes. */
export function makeDocRoot(): DocRoot {
  const dir = mkdtempSync(path.join(tmpdir(), 'baton-nginx-www-'))
  const file = (name: string, size: number): ServedFile => {
    const data = randomBytes(size)
    writeFileSync(path.join(dir, name), data)
    return { path: `/${name}`, size, sha256: sha256(data) }
  }
  return {
    dir,
    files: {
      small: file('small.bin', 1024),
      big: file('big.bin', 8 * 1024 * 1024),
      // More than every socket buffer between nginx and the client holds: a frozen nginx has surely
      // not sent all of it.
      huge: file('huge.bin', 32 * 1024 * 1024),
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  }
}

/**
 * Start one nginx serving `root` on a free port of `host`, resolved once it accepts connections.
 * Retries on another port if the chosen one was taken meanwhile.
 */
export async function startNginx(
  root: string,
  options: { host?: string; name?: string; timeoutMs?: number } = {}
): Promise<NginxServer> {
  const host = options.host ?? '127.0.0.1'
  const timeoutMs = options.timeoutMs ?? 5000
  let lastError: Error | undefined
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort(host)
    const prefix = mkdtempSync(path.join(tmpdir(), 'baton-nginx-'))
    const conf = path.join(prefix, 'nginx.conf')
    writeFileSync(
      conf,
      [
        'worker_processes 1;',
        'error_log stderr;',
        `pid ${path.join(prefix, 'nginx.pid')};`,
        'events {}',
        'http {',
        '  access_log off;',
        `  client_body_temp_path ${path.join(prefix, 'client_body')};`,
        `  proxy_temp_path ${path.join(prefix, 'proxy')};`,
        `  fastcgi_temp_path ${path.join(prefix, 'fastcgi')};`,
        `  uwsgi_temp_path ${path.join(prefix, 'uwsgi')};`,
        `  scgi_temp_path ${path.join(prefix, 'scgi')};`,
        `  server { listen ${host}:${port}; root ${root}; keepalive_requests 100000; autoindex on; }`,
        '}',
        '',
      ].join('\n')
    )
    // `-e stderr`: the error log nginx opens before reading the config (else /var/log/nginx/error.log).
    const peer = spawnPeer(options.name ?? `nginx:${port}`, 'nginx', [
      '-e',
      'stderr',
      '-c',
      conf,
      '-p',
      prefix,
      '-g',
      'daemon off; master_process off;',
    ])
    const server: NginxServer = Object.assign(peer, { host, port, prefix })
    try {
      await untilListening(peer.exited, 'nginx', () => peer.stderr().trim(), host, port, timeoutMs)
      return server
    } catch (err) {
      lastError = err as Error
    }
    killPeer(server)
    await peer.exited
    removeNginxPrefix(server)
  }
  throw lastError ?? new Error('nginx did not start')
}

export function removeNginxPrefix(server: NginxServer): void {
  rmSync(server.prefix, { recursive: true, force: true })
}

export interface ParsedResponse {
  status: number
  /** Header names in lower case. */
  headers: Record<string, string>
  /** The head's bytes (status line through the empty line). */
  headBytes: number
  bodyBytes: number
  sha256: string
}

/**
 * Parses the responses of one HTTP/1.1 connection as they arrive: Content-Length and chunked
 * bodies, none for 1xx, 204, 304 and answers to HEAD (say which requests were HEAD with
 * `expect()`, in order). Bodies are hashed (de-chunked), never kept. `feed()` throws on anything it
 * cannot parse.
 */
export class ResponseReader {
  readonly responses: ParsedResponse[] = []
  /** Every byte fed so far. */
  received = 0
  /** Per response to come, oldest first: whether its request was HEAD. */
  private readonly heads: boolean[] = []
  /** Bytes of the current line (head, chunk size, trailer), gathered across chunks. */
  private line: Buffer[] = []
  private lineLen = 0
  private state: 'head' | 'body' | 'size' | 'data' | 'data-crlf' | 'trailer' = 'head'
  private current: { status: number; headers: Record<string, string>; headBytes: number } | undefined
  private remaining = 0
  private bodyBytes = 0
  private hash = createHash('sha256')

  /** Register the requests written, in order (`true` for a HEAD). */
  expect(...head: boolean[]): void {
    this.heads.push(...head)
  }

  /** The head of the response being read, once whole. */
  get open(): { status: number; headers: Record<string, string>; bodyBytes: number } | undefined {
    return this.current === undefined ? undefined : { ...this.current, bodyBytes: this.bodyBytes }
  }

  feed(chunk: Buffer): void {
    this.received += chunk.length
    let i = 0
    while (i < chunk.length) {
      if (this.state === 'body' || this.state === 'data') {
        const take = Math.min(this.remaining, chunk.length - i)
        this.hash.update(chunk.subarray(i, i + take))
        this.remaining -= take
        this.bodyBytes += take
        i += take
        if (this.remaining > 0) continue
        if (this.state === 'body') this.complete()
        else this.state = 'data-crlf'
        continue
      }
      // Line states: gather up to the delimiter (CRLFCRLF for a head, CRLF otherwise).
      const delim = this.state === 'head' ? '\r\n\r\n' : '\r\n'
      const piece = chunk.subarray(i)
      const joined = this.lineLen === 0 ? piece : Buffer.concat([...this.line, piece])
      const end = joined.indexOf(delim, Math.max(0, this.lineLen - delim.length + 1))
      if (end < 0) {
        this.line.push(piece)
        this.lineLen += piece.length
        if (this.lineLen > 64 * 1024) throw new Error(`${this.state} line over 64 KiB`)
        return
      }
      const used = end + delim.length
      i += used - this.lineLen
      this.line = []
      this.lineLen = 0
      const text = joined.subarray(0, end).toString('latin1')
      if (this.state === 'head') this.headDone(text, used)
      else if (this.state === 'size') {
        const m = /^([0-9a-fA-F]+)(;.*)?$/.exec(text)
        if (m === null) throw new Error(`bad chunk-size line ${JSON.stringify(text)}`)
        this.remaining = parseInt(m[1]!, 16)
        this.state = this.remaining === 0 ? 'trailer' : 'data'
      } else if (this.state === 'data-crlf') {
        if (text !== '') throw new Error('chunk data not followed by CRLF')
        this.state = 'size'
      } else if (text === '') {
        this.complete() // the empty line that ends the trailer section
      }
    }
  }

  private headDone(text: string, headBytes: number): void {
    const lines = text.split('\r\n')
    const m = /^HTTP\/1\.[01] (\d{3}) /.exec(lines[0] ?? '')
    if (m === null) throw new Error(`bad status line ${JSON.stringify(lines[0])}`)
    const status = Number(m[1])
    const headers: Record<string, string> = {}
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':')
      if (colon <= 0) throw new Error(`bad header line ${JSON.stringify(line)}`)
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
    }
    this.current = { status, headers, headBytes }
    this.bodyBytes = 0
    this.hash = createHash('sha256')
    if (status < 200) {
      this.current = undefined // interim: answers nothing
      return
    }
    const head = this.heads.shift() ?? false
    const length = headers['content-length']
    if (head || status === 204 || status === 304) return this.complete()
    if (/(^|,)\s*chunked\s*$/i.test(headers['transfer-encoding'] ?? '')) {
      this.state = 'size'
    } else if (length !== undefined && /^\d+$/.test(length)) {
      this.remaining = Number(length)
      this.state = 'body'
      if (this.remaining === 0) this.complete()
    } else {
      throw new Error(`response body delimited by close: ${lines.join(' | ')}`)
    }
  }

  private complete(): void {
    this.responses.push({ ...this.current!, bodyBytes: this.bodyBytes, sha256: this.hash.digest('hex') })
    this.current = undefined
    this.state = 'head'
  }
}

export interface RawRequest {
  method?: string
  path: string
  headers?: Record<string, string>
}

/**
 * One raw HTTP/1.1 client connection: requests are written as given (several at once is
 * pipelining) and the responses parsed by a `ResponseReader`. `onData` hooks run after each chunk
 * is parsed (to act part-way through a response).
 */
export class HttpConnection {
  readonly reader = new ResponseReader()
  error: Error | undefined
  closed = false
  private readonly hooks: ((conn: HttpConnection) => void)[] = []
  private waiters: { n: number; resolve: () => void; reject: (err: Error) => void }[] = []

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      try {
        this.reader.feed(chunk)
      } catch (err) {
        this.fail(err as Error)
        socket.destroy()
        return
      }
      for (const hook of this.hooks) hook(this)
      this.settle()
    })
    socket.on('error', (err) => (this.error ??= err))
    socket.once('close', () => {
      this.closed = true
      this.fail(
        new Error(`connection closed after ${this.reader.received} B (${this.error?.message ?? 'no error'})`)
      )
    })
  }

  /** Connect to `host:port` (bounded). */
  static async open(port: number, host = '127.0.0.1', timeoutMs = 5000): Promise<HttpConnection> {
    const socket = net.connect({ host, port })
    const conn = new HttpConnection(socket)
    let timer: NodeJS.Timeout | undefined
    try {
      await new Promise<void>((resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`connect to ${host}:${port} timed out`)), timeoutMs)
        socket.once('connect', resolve)
        socket.once('close', () => reject(new Error(`closed before connecting (${conn.error?.message})`)))
      })
    } catch (err) {
      socket.destroy()
      throw err
    } finally {
      clearTimeout(timer)
    }
    return conn
  }

  get localPort(): number | undefined {
    return this.socket.localPort
  }

  onData(hook: (conn: HttpConnection) => void): void {
    this.hooks.push(hook)
  }

  /** Write every request in one go. */
  send(requests: readonly RawRequest[], host = '127.0.0.1'): void {
    let text = ''
    for (const r of requests) {
      const method = r.method ?? 'GET'
      this.reader.expect(method === 'HEAD')
      text += `${method} ${r.path} HTTP/1.1\r\nHost: ${host}\r\n`
      for (const [k, v] of Object.entries(r.headers ?? {})) text += `${k}: ${v}\r\n`
      text += '\r\n'
    }
    this.socket.write(text)
  }

  /** Resolves once `n` responses in all are whole; rejects on a close, a parse error or the time. */
  responses(n: number, timeoutMs = 15_000): Promise<ParsedResponse[]> {
    return new Promise<ParsedResponse[]>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${this.reader.responses.length} of ${n} responses within ${timeoutMs} ms`)),
        timeoutMs
      )
      this.waiters.push({
        n,
        resolve: () => {
          clearTimeout(timer)
          resolve(this.reader.responses.slice(0, n))
        },
        reject: (err) => {
          clearTimeout(timer)
          reject(err)
        },
      })
      if (this.closed) this.fail(new Error('connection closed'))
      this.settle()
    })
  }

  destroy(): void {
    this.socket.destroy()
  }

  private settle(): void {
    const done = this.waiters.filter((w) => this.reader.responses.length >= w.n)
    this.waiters = this.waiters.filter((w) => this.reader.responses.length < w.n)
    for (const w of done) w.resolve()
  }

  private fail(err: Error): void {
    const waiters = this.waiters
    this.waiters = []
    for (const w of waiters) w.reject(err)
  }
}
