/**
 * The access log (README "Access log"): one `info` line per session when it ends, with its
 * termination code. One test per code, each with a real misbehaving server or client; the pure
 * code table (lib/access-log.ts) is checked alone as well, for the codes no socket can provoke
 * on demand (R: out of descriptors). Opaque listeners run on BATON_TEST_PLANE (helpers/plane.ts).
 */
import { EventEmitter } from 'node:events'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import type { SessionCloseEvent } from '../lib/balancer.js'
import { terminationCode } from '../lib/access-log.js'
import { JSON_LOG_OPTIONS } from '../lib/log.js'
import { oneListener, scope, type BackendSpec } from './helpers/balancer.js'
import { pattern } from './helpers/clients.js'
import { TEST_PLANE } from './helpers/plane.js'
import {
  blackholeServer,
  echoServer,
  hangServer,
  refusedPort,
  resetServer,
  type Endpoint,
} from './helpers/servers.js'
import { once, within } from './helpers/wait.js'

interface AccessLine {
  level: string
  time: string
  msg: string
  listener: string
  session: number
  client: string
  backends: string[]
  termination: string
  connectMs: number
  ttfbMs: number
  durationMs: number
  bytesFromClient: number
  bytesToClient: number
  retries: number
  failovers: number
  outcome: string
  endedBy: string
  err?: string
}

/** A pino destination that keeps every JSON line and says when one arrives. */
class Captured extends EventEmitter {
  readonly lines: Record<string, unknown>[] = []
  write(text: string): void {
    for (const l of text.split('\n')) {
      if (l === '') continue
      const line = JSON.parse(l) as Record<string, unknown>
      this.lines.push(line)
      this.emit('line', line)
    }
  }

  get access(): AccessLine[] {
    return this.lines.filter((l) => l.msg === 'access') as unknown as AccessLine[]
  }

  /** The first access line (already written or still to come). */
  async nextAccess(): Promise<AccessLine> {
    const seen = this.access[0]
    if (seen !== undefined) return seen
    const [line] = await once<[AccessLine]>(this, 'line', { filter: (l) => l.msg === 'access' })
    return line
  }
}

type ListenerOptions = Parameters<typeof oneListener>[1]

/** A balancer with the access log on, its lines captured. */
async function withAccessLog(
  s: ReturnType<typeof scope>,
  backends: BackendSpec[],
  listener: ListenerOptions = {},
  access = true
) {
  const out = new Captured()
  const logger = pino({ level: 'info', ...JSON_LOG_OPTIONS }, out)
  const running = await s.balancer(oneListener(backends, listener, { log: { level: 'info', access } }), {
    logger,
  })
  return { ...running, out }
}

function common(t: Test, line: AccessLine, backends: Endpoint[]): void {
  t.equal(line.level, 'info', 'at info')
  t.match(line.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'an ISO time')
  t.match(line.client, /^127\.0\.0\.1:\d+$/, 'the client address')
  t.match(line.listener, /^127\.0\.0\.1:0$/, 'the listener')
  t.strictSame(
    line.backends,
    backends.map((b) => b.name),
    'the backends in order'
  )
  t.type(line.durationMs, 'number')
  t.ok(line.durationMs >= 0)
}

t.test('-- a normal end: every field', async (t) => {
  const s = scope(t)
  const echo = await s.server(echoServer())
  const { port, out } = await withAccessLog(s, [echo])
  const client = await s.connect(port)
  const data = pattern(1000)
  t.ok((await client.roundTrip(data)).equals(data))
  client.socket.end()
  await within(client.closed, 'client closed')
  const line = await out.nextAccess()
  common(t, line, [echo])
  t.equal(line.termination, '--')
  t.equal(line.outcome, 'done')
  t.equal(line.endedBy, 'client', 'the client ended the conversation')
  t.equal(line.bytesFromClient, 1000)
  t.equal(line.bytesToClient, 1000)
  t.equal(line.retries, 0)
  t.equal(line.failovers, 0)
  t.ok(line.connectMs >= 0 && line.connectMs <= line.durationMs, `connect time ${line.connectMs} ms`)
  if (TEST_PLANE === 'native') t.equal(line.ttfbMs, -1, 'the native plane reports no first byte')
  else
    t.ok(line.ttfbMs >= line.connectMs && line.ttfbMs <= line.durationMs, `first byte at ${line.ttfbMs} ms`)
  t.equal(line.err, undefined)
})

t.test('CC: the client leaves while Baton is still connecting', async (t) => {
  const s = scope(t)
  const hole = await s.server(blackholeServer())
  const { balancer, port, out } = await withAccessLog(s, [hole], { connectTimeout: 10_000 })
  const opened = once(balancer, 'sessionOpen')
  const client = await s.connect(port)
  await opened
  // A reset: a FIN alone leaves a half-open session waiting for its connect (allowHalfOpen).
  client.socket.resetAndDestroy()
  const line = await out.nextAccess()
  common(t, line, [hole])
  t.equal(line.termination, 'CC')
  t.equal(line.connectMs, -1, 'never connected')
  t.equal(line.ttfbMs, -1, 'no server byte')
})

t.test('SC: every connect refused, with the retries counted', async (t) => {
  const s = scope(t)
  const refused = await refusedPort()
  const { port, out } = await withAccessLog(s, [refused], { retries: 2 })
  const client = await s.connect(port)
  await within(client.closed, 'client closed')
  const line = await out.nextAccess()
  common(t, line, [refused])
  t.equal(line.termination, 'SC')
  t.equal(line.outcome, 'connect-failed')
  t.equal(line.retries, 2, 'the first connect and two retries')
  t.equal(line.connectMs, -1)
  t.match(line.err, /ECONNREFUSED/)
})

t.test('sC: the connect times out', async (t) => {
  const s = scope(t)
  const hole = await s.server(blackholeServer())
  const { port, out } = await withAccessLog(s, [hole], { connectTimeout: 150, retries: 0 })
  const client = await s.connect(port)
  await within(client.closed, 'client closed')
  const line = await out.nextAccess()
  common(t, line, [hole])
  t.equal(line.termination, 'sC')
  t.equal(line.outcome, 'connect-failed')
})

t.test('SH: the server resets after reading the request, before any answer', async (t) => {
  const s = scope(t)
  const reset = await s.server(resetServer({ afterRead: 1 }))
  const { port, out } = await withAccessLog(s, [reset], { replay: 'none' })
  const client = await s.connect(port)
  client.socket.write('request')
  await within(client.closed, 'client closed')
  const line = await out.nextAccess()
  common(t, line, [reset])
  t.equal(line.termination, 'SH')
  t.equal(line.endedBy, 'server')
  t.ok(line.connectMs >= 0)
  t.equal(line.ttfbMs, -1)
})

t.test('SD: the server resets after it has answered part', async (t) => {
  const s = scope(t)
  const greeting = Buffer.from('hello\n')
  const reset = await s.server(resetServer({ greeting }))
  const { port, out } = await withAccessLog(s, [reset], { replay: 'none' })
  const client = await s.connect(port)
  t.ok((await client.read(greeting.length)).equals(greeting))
  reset.resetAll()
  await within(client.closed, 'client closed')
  const line = await out.nextAccess()
  common(t, line, [reset])
  t.equal(line.termination, 'SD')
  t.equal(line.bytesToClient, greeting.length)
  t.ok(TEST_PLANE === 'native' ? line.ttfbMs === -1 : line.ttfbMs >= 0, `first byte: ${line.ttfbMs}`)
})

t.test('sH: the server hangs on a request (serverTimeout)', async (t) => {
  const s = scope(t)
  const hang = await s.server(hangServer())
  const { port, out } = await withAccessLog(s, [hang], { clientTimeout: 0, serverTimeout: 150 })
  const client = await s.connect(port)
  client.socket.write('anyone there?')
  await within(client.closed, 'client closed')
  const line = await out.nextAccess()
  common(t, line, [hang])
  t.equal(line.termination, 'sH')
  t.equal(line.outcome, 'server-timeout')
})

t.test('cR: the client never says anything (firstByteTimeout)', async (t) => {
  const s = scope(t)
  const hang = await s.server(hangServer())
  const { port, out } = await withAccessLog(s, [hang], { firstByteTimeout: 150 })
  const client = await s.connect(port)
  await within(client.closed, 'client closed')
  const line = await out.nextAccess()
  common(t, line, [hang])
  t.equal(line.termination, 'cR')
  t.equal(line.endedBy, 'client')
})

t.test('cD: the client goes idle after an exchange (clientTimeout)', async (t) => {
  const s = scope(t)
  const echo = await s.server(echoServer())
  const { port, out } = await withAccessLog(s, [echo], { clientTimeout: 150, serverTimeout: 0 })
  const client = await s.connect(port)
  const data = pattern(10)
  t.ok((await client.roundTrip(data)).equals(data))
  await within(client.closed, 'client closed')
  const line = await out.nextAccess()
  common(t, line, [echo])
  t.equal(line.termination, 'cD')
  t.equal(line.outcome, 'client-timeout')
})

t.test('CD: the client resets after an exchange', async (t) => {
  const s = scope(t)
  const echo = await s.server(echoServer())
  const { port, out } = await withAccessLog(s, [echo])
  const client = await s.connect(port)
  const data = pattern(10)
  t.ok((await client.roundTrip(data)).equals(data))
  client.socket.resetAndDestroy()
  const line = await out.nextAccess()
  common(t, line, [echo])
  t.equal(line.termination, 'CD')
  t.equal(line.outcome, 'client-error')
})

t.test('PD: a frame the framer refuses, after an exchange', async (t) => {
  const s = scope(t)
  const echo = await s.server(echoServer())
  const { port, out } = await withAccessLog(s, [echo], {
    protocol: 'length-prefixed',
    framing: { maxFrameBytes: 16 },
  })
  const client = await s.connect(port)
  const frame = Buffer.from([0, 0, 0, 2, 0x68, 0x69])
  t.ok((await client.roundTrip(frame)).equals(frame), 'a frame within the bound goes through')
  const header = Buffer.alloc(4)
  header.writeUInt32BE(1 << 20)
  client.socket.write(header)
  await within(client.closed, 'client closed')
  const line = await out.nextAccess()
  common(t, line, [echo])
  t.equal(line.termination, 'PD')
  t.equal(line.outcome, 'framing-error')
  t.equal(line.endedBy, 'client', 'the client sent it')
})

t.test('KD: shutdown ends a live session', async (t) => {
  const s = scope(t)
  const echo = await s.server(echoServer())
  const { balancer, port, out } = await withAccessLog(s, [echo])
  const client = await s.connect(port)
  const data = pattern(10)
  t.ok((await client.roundTrip(data)).equals(data))
  await within(balancer.close(0), 'balancer closed')
  const line = await out.nextAccess()
  common(t, line, [echo])
  t.equal(line.termination, 'KD')
  t.equal(line.endedBy, 'local')
})

t.test('a failover: both backends in order, the failover counted, a normal end', async (t) => {
  const s = scope(t)
  const reset = await s.server(resetServer({ afterRead: 1 }, 'dies'))
  const echo = await s.server(echoServer('lives'))
  const { port, out } = await withAccessLog(s, [reset, echo], { balance: 'first' })
  const client = await s.connect(port)
  const data = pattern(100)
  t.ok((await client.roundTrip(data)).equals(data), 'the request answered by the second backend')
  client.socket.end()
  await within(client.closed, 'client closed')
  const line = await out.nextAccess()
  common(t, line, [reset, echo])
  t.equal(line.termination, '--')
  t.equal(line.failovers, 1)
  t.equal(line.retries, 0)
})

t.test('a retry: a refused backend, then one that answers', async (t) => {
  const s = scope(t)
  const refused = await refusedPort('refuses')
  const echo = await s.server(echoServer('answers'))
  const { port, out } = await withAccessLog(s, [refused, echo], { balance: 'first' })
  const client = await s.connect(port)
  const data = pattern(100)
  t.ok((await client.roundTrip(data)).equals(data))
  client.socket.end()
  await within(client.closed, 'client closed')
  const line = await out.nextAccess()
  common(t, line, [refused, echo])
  t.equal(line.termination, '--')
  t.equal(line.retries, 1)
  t.equal(line.failovers, 0)
})

t.test('off: no access line', async (t) => {
  const s = scope(t)
  const echo = await s.server(echoServer())
  const { balancer, port, out } = await withAccessLog(s, [echo], {}, false)
  const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
  const client = await s.connect(port)
  const data = pattern(10)
  t.ok((await client.roundTrip(data)).equals(data))
  client.socket.end()
  const [event] = await closed
  t.equal(out.access.length, 0, 'nothing logged for the session')
  t.equal(event.termination, '--', 'the library has the code in its sessionClose event')
})

t.test('the code table alone (R: out of resources, and the rest)', async (t) => {
  const base = { error: undefined, connectedAt: 0, bytesFromClient: 0, bytesToClient: 0 }
  t.equal(terminationCode({ ...base, outcome: 'local-error' }), 'RC')
  t.equal(terminationCode({ ...base, outcome: 'no-backend' }), 'SC')
  t.equal(terminationCode({ ...base, outcome: 'done', connectedAt: 1 }), '--')
  t.equal(
    terminationCode({ ...base, outcome: 'client-incomplete', connectedAt: 1, bytesFromClient: 5 }),
    'cH'
  )
  t.equal(terminationCode({ ...base, outcome: 'unrecoverable', connectedAt: 1, bytesToClient: 5 }), 'SD')
  t.equal(terminationCode({ ...base, outcome: 'shutdown', connectedAt: 1 }), 'KR')
})
