/**
 * Active health checks, one per protocol. Each takes a target and a timeout and resolves to
 * `{ ok, reason }`: it never throws, never outlives its timeout (connect and exchange together),
 * and always destroys its socket. The options of `sendExpectCheck` and `httpCheck` are validated
 * when the check is built, so a bad config fails at start, not at the first probe.
 *
 *   tcp          the connect succeeds
 *   send-expect  write bytes (or nothing, for servers that speak first), read until `expect` matches
 *   http         HTTP/1.1 GET with `Connection: close`; the status must fall in `expectStatus`
 *   redis        `PING` answered by `+PONG` (HAProxy's `option redis-check`)
 */
import net from 'node:net'

export interface CheckTarget {
  readonly host: string
  readonly port: number
  /** A unix-domain socket's path (host and port then unused). */
  readonly path?: string | undefined
}

export interface CheckResult {
  ok: boolean
  /** Why it failed (or, for a success, what was seen); for logs, not for branching. */
  reason?: string
}

export type CheckFn = (target: CheckTarget, timeoutMs: number, signal?: AbortSignal) => Promise<CheckResult>

export type CheckSpec =
  | { type: 'tcp' }
  | { type: 'send-expect'; send?: string; sendHex?: string; expect: string; expectRegex?: boolean }
  | { type: 'http'; path: string; expectStatus?: [number, number]; host?: string }
  | { type: 'redis' }
  /** A protocol's own check (lib/protocols/), by its name. */
  | { type: 'custom'; name: string; check: CheckFn }

/** A check stops reading past this many bytes: an answer that long is not the one expected. */
const MAX_READ = 16 * 1024

/**
 * Judges the bytes read so far: a result ends the check, `undefined` reads on. `ended` is true once
 * the server has closed its side, when no more bytes will come.
 */
export type Judge = (data: Buffer, ended: boolean) => CheckResult | undefined

/**
 * The one I/O shell every check shares (the protocols' own too, lib/protocols/): connect,
 * optionally write, feed what is read to `judge`, settle once, and clean up on every path (result,
 * error, close, timeout, abort).
 */
export function probe(
  target: CheckTarget,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  send: Buffer | undefined,
  judge: Judge | undefined
): Promise<CheckResult> {
  return new Promise<CheckResult>((resolve) => {
    if (signal?.aborted) return resolve({ ok: false, reason: 'aborted' })
    let settled = false
    // Health checks are not the forwarding path: a small concatenated buffer keeps judges simple.
    let data: Buffer = Buffer.alloc(0)
    const socket = net.connect({ host: target.host, port: target.port, path: target.path })

    const finish = (result: CheckResult): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      socket.destroy()
      resolve(result)
    }
    const onAbort = (): void => finish({ ok: false, reason: 'aborted' })
    const timer = setTimeout(() => finish({ ok: false, reason: `timeout after ${timeoutMs} ms` }), timeoutMs)
    timer.unref()
    signal?.addEventListener('abort', onAbort, { once: true })

    // A late error after `finish` (destroy can still surface one) must not become an uncaught one.
    socket.on('error', (err: NodeJS.ErrnoException) => finish({ ok: false, reason: err.code ?? err.message }))
    socket.on('close', () => finish({ ok: false, reason: 'connection closed before a response' }))
    socket.once('connect', () => {
      if (judge === undefined) return finish({ ok: true })
      if (send !== undefined && send.length > 0) socket.write(send)
    })
    socket.on('data', (chunk: Buffer) => {
      data = data.length === 0 ? chunk : Buffer.concat([data, chunk])
      const result = judge?.(data, false)
      if (result !== undefined) return finish(result)
      if (data.length >= MAX_READ) finish({ ok: false, reason: `no expected response in ${MAX_READ} bytes` })
    })
    socket.on('end', () =>
      finish(judge?.(data, true) ?? { ok: false, reason: 'connection closed before a response' })
    )
  })
}

/** Up when a TCP connection is accepted. */
export const tcpCheck: CheckFn = (target, timeoutMs, signal) =>
  probe(target, timeoutMs, signal, undefined, undefined)

export interface SendExpectOptions {
  /** Text to write once connected (UTF-8). */
  send?: string
  /** Bytes to write once connected, as hex (`"0d0a"`); exclusive with `send`. */
  sendHex?: string
  /** A substring, or a pattern tested on the response decoded as UTF-8. */
  expect: string | RegExp
}

/** Up when the response contains `expect` before the server closes or the timeout. */
export function sendExpectCheck(options: SendExpectOptions): CheckFn {
  const { send, sendHex, expect } = options
  if (send !== undefined && sendHex !== undefined)
    throw new TypeError('send-expect: give send or sendHex, not both')
  if (sendHex !== undefined && !/^(?:[0-9a-fA-F]{2})*$/.test(sendHex)) {
    throw new TypeError(`send-expect: sendHex must be an even number of hex digits, got "${sendHex}"`)
  }
  if (typeof expect === 'string' && expect.length === 0)
    throw new TypeError('send-expect: expect must not be empty')
  const bytes =
    sendHex !== undefined ? Buffer.from(sendHex, 'hex') : send !== undefined ? Buffer.from(send) : undefined
  const needle = typeof expect === 'string' ? Buffer.from(expect) : undefined
  // A global or sticky regex keeps `lastIndex` between tests; a private copy without those flags does not.
  const pattern =
    expect instanceof RegExp ? new RegExp(expect.source, expect.flags.replace(/[gy]/g, '')) : undefined

  const judge: Judge = (data, ended) => {
    const hit = needle !== undefined ? data.includes(needle) : pattern!.test(data.toString('utf8'))
    if (hit) return { ok: true }
    return ended ? { ok: false, reason: `closed without ${describe(expect)}: ${excerpt(data)}` } : undefined
  }
  return (target, timeoutMs, signal) => probe(target, timeoutMs, signal, bytes, judge)
}

export interface HttpCheckOptions {
  /** Request target, starting with `/`. */
  path: string
  /** Inclusive status range that counts as up; default [200, 399] like HAProxy's `option httpchk`. */
  expectStatus?: readonly [number, number]
  /** `Host` header; default the target's `host:port`. */
  host?: string
}

const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?: |\r?$)/

/** Up when an HTTP/1.1 GET of `path` answers with a status in `expectStatus`. */
export function httpCheck(options: HttpCheckOptions): CheckFn {
  const { path, host } = options
  const [min, max] = options.expectStatus ?? [200, 399]
  // CR or LF in a header value would let a config inject headers or a second request.
  if (!path.startsWith('/') || /[\s]/.test(path))
    throw new TypeError(`http check: path must start with / and hold no whitespace, got "${path}"`)
  if (host !== undefined && /[\r\n]/.test(host))
    throw new TypeError('http check: host must not contain CR or LF')
  if (!(Number.isInteger(min) && Number.isInteger(max) && 100 <= min && min <= max && max <= 599)) {
    throw new TypeError(`http check: expectStatus must be [min, max] within 100..599, got [${min}, ${max}]`)
  }

  const judge: Judge = (data, ended) => {
    const eol = data.indexOf('\n')
    if (eol < 0) return ended ? { ok: false, reason: `no status line: ${excerpt(data)}` } : undefined
    const line = data.subarray(0, eol).toString('latin1')
    const match = STATUS_LINE.exec(line)
    if (match === null) return { ok: false, reason: `bad status line: ${excerpt(data.subarray(0, eol))}` }
    const status = Number(match[1])
    return status >= min && status <= max
      ? { ok: true, reason: `status ${status}` }
      : { ok: false, reason: `status ${status}` }
  }
  return (target, timeoutMs, signal) => {
    const request = Buffer.from(
      `GET ${path} HTTP/1.1\r\nHost: ${host ?? hostHeader(target)}\r\nUser-Agent: baton-health-check\r\n` +
        'Accept: */*\r\nConnection: close\r\n\r\n',
      'latin1'
    )
    return probe(target, timeoutMs, signal, request, judge)
  }
}

const PING = Buffer.from('PING\r\n')

/** Up when `PING` is answered by `+PONG`; an error reply (`-ERR`, `-NOAUTH`, `-LOADING`) is down. */
export const redisCheck: CheckFn = (target, timeoutMs, signal) =>
  probe(target, timeoutMs, signal, PING, (data, ended) => {
    const eol = data.indexOf('\r\n')
    if (eol < 0) return ended ? { ok: false, reason: `no reply line: ${excerpt(data)}` } : undefined
    const line = data.subarray(0, eol)
    return line.toString('latin1') === '+PONG'
      ? { ok: true }
      : { ok: false, reason: `reply ${excerpt(line)}` }
  })

/** Build the check a spec describes; throws a TypeError on invalid options (validate once, at start). */
export function checkOf(spec: CheckSpec): CheckFn {
  switch (spec.type) {
    case 'tcp':
      return tcpCheck
    case 'redis':
      return redisCheck
    case 'custom':
      return spec.check
    case 'send-expect':
      return sendExpectCheck({
        send: spec.send,
        sendHex: spec.sendHex,
        expect: spec.expectRegex === true ? new RegExp(spec.expect) : spec.expect,
      })
    case 'http':
      return httpCheck({ path: spec.path, expectStatus: spec.expectStatus, host: spec.host })
  }
}

/** Run one check described by `spec`. Invalid options resolve to a failure rather than throw. */
export function runCheck(
  spec: CheckSpec,
  target: CheckTarget,
  timeoutMs: number,
  signal?: AbortSignal
): Promise<CheckResult> {
  let check: CheckFn
  try {
    check = checkOf(spec)
  } catch (err) {
    return Promise.resolve({ ok: false, reason: (err as Error).message })
  }
  return check(target, timeoutMs, signal)
}

function hostHeader(target: CheckTarget): string {
  if (target.path !== undefined) return 'localhost' // as curl --unix-socket sends it
  const host = net.isIPv6(target.host) ? `[${target.host}]` : target.host
  return target.port === 80 ? host : `${host}:${target.port}`
}

function describe(expect: string | RegExp): string {
  return typeof expect === 'string' ? JSON.stringify(expect) : String(expect)
}

/** The first bytes of a response, printable, for a log line. */
export function excerpt(data: Buffer): string {
  const text = data
    .subarray(0, 64)
    .toString('latin1')
    .replace(/[^\x20-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
  return data.length > 64 ? `"${text}…"` : `"${text}"`
}
