/**
 * The accept-stage seam (lib/accept/): stages run between accept and the first backend pick, may
 * read and hold the first bytes (which the session then gets, in order, none lost or repeated),
 * annotate the client, or refuse it with a counted reason. Stages are put on a real listener here;
 * the stages of the config (PROXY, access rules) have tests of their own.
 */
import net, { type Socket } from 'node:net'
import t from 'tap'
import { createMetrics } from '../../lib/admin/metrics.js'
import { Pipeline, type AcceptContext, type AcceptStage, type PipelineHost } from '../../lib/accept/index.js'
import type { Balancer } from '../../lib/balancer.js'
import { oneListener, scope } from '../helpers/balancer.js'
import { pattern } from '../helpers/clients.js'
import { echoServer, HOST, sha256 } from '../helpers/servers.js'
import { once, until, within } from '../helpers/wait.js'

/** Put `stages` on the first listener of `balancer`, as its config would. */
function withStages(balancer: Balancer, stages: AcceptStage[]): void {
  const l = balancer.frontends[0]!
  ;(l as unknown as { pipeline: Pipeline }).pipeline = new Pipeline(stages, l)
}

/** Waits for a 4-byte prefix, strips it, and says the client is 127.9.9.9:4242. */
const stripPrefix: AcceptStage = {
  name: 'strip',
  readTimeout: 2000,
  async run(ctx: AcceptContext) {
    while (ctx.headBytes < 4) {
      const r = await ctx.more()
      if (r !== 'data') return `strip-${r}`
    }
    if (ctx.peek().subarray(0, 4).toString() !== 'HDR!') return 'strip-bad'
    ctx.consume(4)
    ctx.clientAddress = '127.9.9.9'
    ctx.clientPort = 4242
    ctx.tags = { seen: 'yes' }
    return undefined
  },
}

t.test('a stage strips a prefix and rewrites the client: the backend gets the rest, the table the address', async (t) => {
  const s = scope(t)
  const backend = await s.server(echoServer())
  const { balancer, port } = await s.balancer(oneListener([backend]))
  withStages(balancer, [stripPrefix])
  const c = await s.connect(port)
  // In two writes, the prefix split across them: the stage must wait for the rest.
  c.socket.write('HD')
  await until(() => balancer.frontends[0]!.active === 1, 'client in the pipeline')
  c.socket.write('R!hello')
  t.equal((await c.read(5)).toString(), 'hello', 'the bytes after the prefix, once')
  const [entry] = balancer.table.snapshot()
  t.equal(entry?.client, '127.9.9.9:4242', 'the table shows the address the stage set')
  const session = [...balancer.table.values()][0] as unknown as { accept: AcceptContext; remoteAddress: string }
  t.equal(session.remoteAddress, '127.9.9.9', 'source-hash and access rules read it too')
  t.same(session.accept.tags, { seen: 'yes' }, 'the context stays with the session')
  c.socket.write('more')
  t.equal((await c.read(4)).toString(), 'more', 'later bytes follow as usual')
})

t.test('bytes read while a stage waits all reach the backend in order (100 KiB in one write)', async (t) => {
  const s = scope(t)
  const backend = await s.server(echoServer())
  const { balancer, port } = await s.balancer(oneListener([backend]))
  withStages(balancer, [stripPrefix])
  const c = await s.connect(port, { allowHalfOpen: true })
  const body = pattern(100 * 1024, 7)
  c.socket.end(Buffer.concat([Buffer.from('HDR!'), body]))
  const got = await c.readAll()
  t.equal(got.length, body.length, 'every byte')
  t.equal(sha256(got), sha256(body), 'in order')
})

t.test('a FIN that arrives while the stage waits reaches the backend after the held bytes', async (t) => {
  const s = scope(t)
  const backend = await s.server(echoServer())
  const { balancer, port } = await s.balancer(oneListener([backend]))
  let seenEnd = false
  withStages(balancer, [
    {
      name: 'wait-for-fin',
      async run(ctx) {
        for (let i = 0; i < 100; i++) {
          const r = await ctx.more()
          if (r === 'end') {
            seenEnd = true
            return undefined
          }
          if (r !== 'data') return 'unexpected'
        }
        return 'too-many-reads'
      },
    },
  ])
  const c = await s.connect(port, { allowHalfOpen: true })
  c.socket.end('abc')
  t.equal((await c.readAll()).toString(), 'abc', 'echoed, then the backend ended (it saw the FIN)')
  t.ok(seenEnd, 'the stage saw the FIN')
  t.ok(c.ended, 'the client got a FIN')
})

t.test('a refusal closes the client and is counted per reason, in /metrics too', async (t) => {
  const s = scope(t)
  const backend = await s.server(echoServer())
  const { balancer, port } = await s.balancer(oneListener([backend]))
  withStages(balancer, [{ name: 'deny', run: () => 'test-deny' }])
  for (let i = 0; i < 3; i++) {
    const c = s.client(port)
    await within(c.closed, 'refused client closed')
  }
  const l = balancer.frontends[0]!
  t.equal(l.counters.refused, 3, 'counted')
  t.equal(l.refusals.counts.get('test-deny'), 3, 'per reason')
  t.equal(l.active, 0, 'not left active')
  t.equal(backend.accepted, 0, 'no backend was picked')
  const text = await createMetrics(balancer).metrics()
  t.match(text, /baton_refused_connections_total\{listener="[^"]+",reason="test-deny"\} 3/, 'exposed')
})

t.test('a stage waiting for bytes gets "timeout" at the deadline', async (t) => {
  const s = scope(t)
  const backend = await s.server(echoServer())
  const { balancer, port } = await s.balancer(oneListener([backend]))
  withStages(balancer, [{ ...stripPrefix, readTimeout: 150 }])
  const started = Date.now()
  const c = s.client(port)
  await within(c.closed, 'silent client closed')
  t.ok(Date.now() - started >= 140, 'not before the deadline')
  t.equal(balancer.frontends[0]!.refusals.counts.get('strip-timeout'), 1, 'counted as the stage said')
})

t.test('a client that resets mid-stage is not a refusal and leaves nothing behind', async (t) => {
  const s = scope(t)
  const backend = await s.server(echoServer())
  const { balancer, port } = await s.balancer(oneListener([backend]))
  const closedCtx: AcceptContext[] = []
  let seen: AcceptContext | undefined
  withStages(balancer, [
    { name: 'count', run: (ctx) => void (seen = ctx), closed: (ctx) => void closedCtx.push(ctx) },
    stripPrefix,
  ])
  const c = await s.connect(port)
  c.socket.write('H')
  const l = balancer.frontends[0]!
  // The byte is read first: a reset with a write still queued can go out as a FIN.
  await until(() => seen?.headBytes === 1, 'the first byte held')
  c.socket.resetAndDestroy()
  await until(() => l.active === 0, 'gone')
  t.equal(l.counters.refused, 0, 'not a refusal ')
  t.equal(closedCtx.length, 1, 'the stage that passed it was told it is gone')
})

t.test('synchronous stages decide in the accept callback: no promise, no tick', async (t) => {
  const calls: string[] = []
  const host: PipelineHost = {
    admitted: () => void calls.push('admitted'),
    refused: (_ctx, reason) => void calls.push(`refused:${reason}`),
    abandoned: () => void calls.push('abandoned'),
  }
  const pass = new Pipeline([{ name: 'a', run: () => undefined }, { name: 'b', run: () => undefined }], host)
  const deny = new Pipeline([{ name: 'a', run: () => undefined }, { name: 'b', run: () => 'nope' }], host)
  const sockets: Socket[] = []
  let i = 0
  const server = net.createServer((socket) => {
    sockets.push(socket)
    ;(i++ === 0 ? pass : deny).start(socket)
    calls.push('returned')
  })
  server.listen(0, HOST)
  await once(server, 'listening')
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    server.close()
  })
  const { port } = server.address() as net.AddressInfo
  for (let k = 0; k < 2; k++) {
    const c = net.connect(port, HOST)
    c.on('error', () => {})
    t.teardown(() => c.destroy())
    await once(server, 'connection')
  }
  t.same(calls, ['admitted', 'returned', 'refused:nope', 'returned'], 'decided before start() returned')
})
