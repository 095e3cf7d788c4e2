/**
 * http1 listeners on the native plane (docs/native-plane.md, "http1 on the plane"), through the
 * balancer: plain keep-alive exchanges stay on the plane (the session is in the link map); what the
 * plane does not follow (a chunked upload) and every server FIN or reset takes the session to
 * JavaScript mid-conversation, where it goes on: the response arrives, the next request is served,
 * a reset request is re-sent to another backend, a keep-alive FIN between requests is hidden, and
 * the session's byte counts add the plane's to the sockets'. Skipped when the addon is not built.
 */
import http from 'node:http'
import net from 'node:net'
import t, { type Test } from 'tap'
import type { SessionCloseEvent } from '../../lib/index.js'
import { nativeSessions } from '../../lib/native/link.js'
import { sentSplit } from '../../lib/session.js'
import { scope, type RunningBalancer } from '../helpers/balancer.js'
import { HOST } from '../helpers/servers.js'
import { once, until, within } from '../helpers/wait.js'
import { skip } from './helpers/native-proxy.js'

if (skip !== false) {
  t.plan(0, skip)
  process.exit(0)
}

/**
 * A Node HTTP server: GET answers `hello from NAME`, POST answers how many body bytes came.
 * `onRequest` may act on the socket first (return true: it answered or cut the request itself).
 */
async function backend(
  name: string,
  onRequest?: (n: number, req: http.IncomingMessage, res: http.ServerResponse) => boolean
): Promise<{ port: number; requests: () => number; close(): Promise<void> }> {
  let n = 0
  const server = http.createServer((req, res) => {
    n++
    if (onRequest?.(n, req, res) === true) return
    if (req.method === 'POST') {
      let got = 0
      req.on('data', (d: Buffer) => (got += d.length))
      req.on('end', () => res.end(`got ${got}`))
      return
    }
    req.resume()
    res.end(`hello from ${name}`)
  })
  server.keepAliveTimeout = 30_000
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    requests: () => n,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/** A raw keep-alive client: writes a request, resolves with the next whole response (by Content-Length). */
class RawClient {
  readonly socket: net.Socket
  private buffered = Buffer.alloc(0)
  private waiter: (() => void) | undefined
  ended = false

  constructor(port: number) {
    this.socket = net.connect(port, HOST)
    this.socket.on('data', (d: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, d])
      this.waiter?.()
    })
    this.socket.on('end', () => {
      this.ended = true
      this.waiter?.()
    })
    this.socket.on('error', () => {})
  }

  /** Send `request` (raw bytes), resolve with the response's status line and body. */
  async exchange(request: string | Buffer): Promise<{ status: string; body: string }> {
    this.socket.write(request)
    return within(
      new Promise((resolve, reject) => {
        const check = (): void => {
          const end = this.buffered.indexOf('\r\n\r\n')
          if (end >= 0) {
            const head = this.buffered.toString('latin1', 0, end)
            const m = /\r\ncontent-length: *(\d+)/i.exec(head)
            const length = m === null ? 0 : Number(m[1])
            if (this.buffered.length >= end + 4 + length) {
              const body = this.buffered.toString('latin1', end + 4, end + 4 + length)
              this.buffered = this.buffered.subarray(end + 4 + length)
              this.waiter = undefined
              return resolve({ status: head.split('\r\n')[0]!, body })
            }
          }
          if (this.ended) reject(new Error(`the connection ended (${this.buffered.length} bytes pending)`))
        }
        this.waiter = check
        check()
      }),
      'a response'
    )
  }
}

/**
 * The balancer in front of `backends` (an http1 listener on the native plane; `balance: first`, so
 * the first backend serves until it fails) and a raw client connected to it, both closed when the
 * test ends.
 */
async function front(
  t: Test,
  backends: readonly { port: number }[],
  listener: { nativeAccept?: boolean } = {}
): Promise<{ balancer: RunningBalancer['balancer']; client: RawClient }> {
  const { balancer, port } = await scope(t).balancer({
    listeners: [
      {
        listen: `${HOST}:0`,
        protocol: 'http1',
        dataPlane: 'native',
        balance: 'first',
        backends: backends.map((b) => `${HOST}:${b.port}`),
        ...listener,
      },
    ],
  })
  const client = new RawClient(port)
  t.teardown(() => client.socket.destroy())
  return { balancer, client }
}

const GET = 'GET /x HTTP/1.1\r\nHost: test\r\n\r\n'
const CHUNKED_POST =
  'POST /up HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n'

t.test('plain keep-alive exchanges stay on the plane', async (t) => {
  const a = await backend('a')
  t.teardown(() => a.close())
  const { balancer, client } = await front(t, [a])
  for (let i = 0; i < 3; i++) {
    const r = await client.exchange(GET)
    t.equal(r.body, 'hello from a', `exchange ${i + 1} answered`)
  }
  t.equal(nativeSessions(), 1, 'the session is still on the plane after three exchanges')
  t.equal(balancer.frontends[0]!.counters.planeHandoffs, 0, 'no hand-off counted')
  const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
  client.socket.end()
  const [e] = await within(closed, 'the session closes')
  t.equal(e.outcome, 'done', 'ends as done')
  t.equal(e.bytesFromClient, GET.length * 3, 'every client byte counted')
})

t.test('a chunked upload takes the session to JavaScript, where it goes on', async (t) => {
  const a = await backend('a')
  t.teardown(() => a.close())
  const { balancer, client } = await front(t, [a])
  t.equal((await client.exchange(GET)).body, 'hello from a', 'a GET on the plane')
  t.equal(nativeSessions(), 1, 'on the plane')
  t.equal((await client.exchange(CHUNKED_POST)).body, 'got 6', 'the chunked upload is answered')
  t.equal(nativeSessions(), 0, 'the session left the plane')
  t.equal(balancer.frontends[0]!.counters.planeHandoffs, 1, 'one hand-off counted')
  t.equal((await client.exchange(GET)).body, 'hello from a', 'the next GET is served by JavaScript')
  t.equal(a.requests(), 3, 'the backend saw each request once')
  const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
  client.socket.end()
  const [e] = await within(closed, 'the session closes')
  t.equal(e.outcome, 'done', 'ends as done')
  t.equal(e.bytesFromClient, client.socket.bytesWritten, "client bytes: the plane's and the socket's")
  t.equal(e.bytesToClient, client.socket.bytesRead, 'bytes to the client likewise')
})

t.test('a backend that resets a request: re-sent to another, the client sees nothing', async (t) => {
  // The first backend answers one request, then resets the connection on the second.
  const a = await backend('a', (n, req) => {
    if (n < 2) return false
    req.socket.resetAndDestroy()
    return true
  })
  const b = await backend('b')
  t.teardown(() => Promise.all([a.close(), b.close()]))
  const { client } = await front(t, [a, b])
  t.equal((await client.exchange(GET)).body, 'hello from a', 'the first GET from a')
  t.equal((await client.exchange(GET)).body, 'hello from b', 'the reset GET answered by b')
  t.equal((await client.exchange(GET)).body, 'hello from b', 'and the session goes on')
  t.notOk(client.ended, 'the client got no FIN')
})

t.test("a server's keep-alive FIN between requests is hidden", async (t) => {
  // Closes each connection after its first response, as a keep-alive timeout would.
  const a = await backend('a', (_n, req, res) => {
    req.resume()
    res.setHeader('Content-Length', 7)
    res.end('hello a', () => setImmediate(() => req.socket.end()))
    return true
  })
  t.teardown(() => a.close())
  const { client } = await front(t, [a])
  t.equal((await client.exchange(GET)).body, 'hello a', 'the first GET')
  await until(() => nativeSessions() === 0, 'the FIN takes the session to JavaScript')
  t.equal((await client.exchange(GET)).body, 'hello a', 'the next GET opens a new server connection')
  t.notOk(client.ended, 'the client got no FIN')
})

t.test('a first request the plane does not follow, read by Node while connecting, is served', async (t) => {
  // Node accepts (nativeAccept: false), so the request read while the server connects reaches the
  // plane as the attach's head: its hand-off must be delivered with nothing else moving.
  const a = await backend('a')
  t.teardown(() => a.close())
  const { client } = await front(t, [a], { nativeAccept: false })
  t.equal((await client.exchange(CHUNKED_POST)).body, 'got 6', 'the chunked upload is answered')
  t.equal((await client.exchange(GET)).body, 'hello from a', 'and the next GET')
})

t.test('sentSplit: what the replayer follows, writes as it is, or feeds for real', async (t) => {
  const b = (s: string): Buffer => Buffer.from(s)
  const text = (x: Buffer | undefined): string | undefined => x?.toString()
  const split = (h?: string, u?: string): Record<string, string | undefined> => {
    const r = sentSplit(h === undefined ? undefined : b(h), u === undefined ? undefined : b(u))
    return { done: text(r.done), raw: text(r.raw), real: text(r.real) }
  }
  t.same(split('abcdef', undefined), { done: 'abcdef', raw: undefined, real: undefined }, 'all sent')
  t.same(split('abcdef', 'def'), { done: 'abc', raw: undefined, real: 'def' }, 'an unsent tail')
  t.same(split('abc', 'abc'), { done: undefined, raw: undefined, real: 'abc' }, 'nothing sent')
  // Unsent bytes that reach back past the clean point: a response over, not yet taken by the client.
  t.same(split('de', 'xyzde'), { done: undefined, raw: 'xyz', real: 'de' }, 'past the clean point')
  t.same(split(undefined, 'xyz'), { done: undefined, raw: 'xyz', real: undefined }, 'no history')
  t.same(split(undefined, undefined), { done: undefined, raw: undefined, real: undefined }, 'nothing')
})
