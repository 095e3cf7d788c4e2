/**
 * `memcached` failover with small misbehaving memcached servers: a `VALUE` block cut part-way is
 * resumed verified from another backend (and the client is closed when the replacement's bytes
 * differ), safe requests in flight are re-sent, unsafe ones (incr, add, cas, append) are not, and
 * `quit` ends the client's connection as memcached would.
 */
import type { Socket } from 'node:net'
import t from 'tap'
import type { SessionCloseEvent } from '../../lib/balancer.js'
import { oneListener, scope } from '../helpers/balancer.js'
import { recordingClient, sameBytes } from '../helpers/failover-servers.js'
import { TestServer } from '../helpers/servers.js'
import { once, within } from '../helpers/wait.js'

interface FakeOptions {
  /** The values it holds. */
  store: Map<string, Buffer>
  /** Write only this many bytes of its first reply to a retrieval, then reset every connection. */
  cutAfter?: number
  /** Reset every connection on the first command of this name (or the nth command), before answering it. */
  dieOn?: string | number
}

/**
 * A memcached that speaks enough of the text protocol for these tests (get/gets, set/add/append,
 * cas, incr, delete, mn, version). Counts the commands it was sent; emits `cut` and `died`.
 */
class FakeMemcached extends TestServer {
  readonly commands: string[] = []
  private readonly options: FakeOptions
  private cut = false
  private died = false

  constructor(name: string, options: FakeOptions) {
    super(name, (socket) => this.serve(socket))
    this.options = options
  }

  resetAll(): void {
    for (const s of this.sockets) s.resetAndDestroy()
  }

  private serve(socket: Socket): void {
    socket.on('end', () => socket.end())
    let buf = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      for (;;) {
        const nl = buf.indexOf('\r\n')
        if (nl < 0) return
        const words = buf.subarray(0, nl).toString('latin1').split(' ')
        const name = words[0]!
        let used = nl + 2
        let data: Buffer | undefined
        if (['set', 'add', 'append', 'cas'].includes(name)) {
          const n = Number(words[4])
          if (buf.length < used + n + 2) return
          data = buf.subarray(used, used + n)
          used += n + 2
        }
        buf = buf.subarray(used)
        this.commands.push(name)
        const die = this.options.dieOn
        if ((die === name || die === this.commands.length) && !this.died) {
          this.died = true
          this.emit('died')
          return this.resetAll()
        }
        const reply = this.answer(name, words, data)
        if (reply === undefined) continue
        if ((name === 'get' || name === 'gets') && this.options.cutAfter !== undefined && !this.cut) {
          this.cut = true
          socket.write(reply.subarray(0, this.options.cutAfter))
          this.emit('cut')
          return
        }
        socket.write(reply)
      }
    })
  }

  private answer(name: string, words: string[], data: Buffer | undefined): Buffer | undefined {
    const store = this.options.store
    const noreply = words.at(-1) === 'noreply'
    switch (name) {
      case 'get':
      case 'gets': {
        const parts: Buffer[] = []
        for (const key of words.slice(1)) {
          const v = store.get(key)
          if (v === undefined) continue
          parts.push(
            Buffer.from(`VALUE ${key} 0 ${v.length}${name === 'gets' ? ' 1' : ''}\r\n`),
            v,
            Buffer.from('\r\n')
          )
        }
        parts.push(Buffer.from('END\r\n'))
        return Buffer.concat(parts)
      }
      case 'set':
        store.set(words[1]!, Buffer.from(data!))
        return noreply ? undefined : Buffer.from('STORED\r\n')
      case 'add':
      case 'append':
      case 'cas':
        return Buffer.from('NOT_STORED\r\n')
      case 'incr': {
        const n = Number(store.get(words[1]!)?.toString() ?? 'NaN') + Number(words[2])
        if (Number.isNaN(n)) return Buffer.from('NOT_FOUND\r\n')
        store.set(words[1]!, Buffer.from(String(n)))
        return Buffer.from(`${n}\r\n`)
      }
      case 'delete':
        return Buffer.from(store.delete(words[1]!) ? 'DELETED\r\n' : 'NOT_FOUND\r\n')
      case 'mn':
        return Buffer.from('MN\r\n')
      case 'version':
        return Buffer.from('VERSION 1.6.18\r\n')
      case 'quit':
        this.sockets.forEach((s) => s.end())
        return undefined
      default:
        return Buffer.from('ERROR\r\n')
    }
  }
}

const fake = (name: string, options: FakeOptions): Promise<FakeMemcached> =>
  new FakeMemcached(name, options).listen()

/** 20 KiB that are not all one byte, so a cut anywhere is checked against real content. */
const BIG = Buffer.from(Array.from({ length: 20 * 1024 }, (_, k) => (k * 7 + 3) % 251))
const replyOf = (entries: [string, Buffer][]): Buffer =>
  Buffer.concat([
    ...entries.flatMap(([k, v]) => [Buffer.from(`VALUE ${k} 0 ${v.length}\r\n`), v, Buffer.from('\r\n')]),
    Buffer.from('END\r\n'),
  ])

const LISTENER = { protocol: 'memcached' as const, balance: 'first' as const }

t.test('a VALUE block cut part-way is resumed from an identical replica, verified', async (t) => {
  for (const cut of [3, 200, 12_000]) {
    const s = scope(t)
    const store = (): Map<string, Buffer> =>
      new Map([
        ['small', Buffer.from('hello')],
        ['big', BIG],
      ])
    const a = await s.server(fake('a', { store: store(), cutAfter: cut }))
    const b = await s.server(fake('b', { store: store() }))
    const { balancer, port } = await s.balancer(
      oneListener([a, b], LISTENER, { log: { level: (process.env.DBG ?? 'silent') as 'silent' } })
    )
    const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
    const expected = replyOf([
      ['small', Buffer.from('hello')],
      ['big', BIG],
    ])
    const cutDone = once(a, 'cut')
    const client = recordingClient(t, port, Buffer.from('get small big\r\n'))
    await cutDone
    await client.receivedAtLeast(cut, `the first ${cut} bytes`)
    t.equal(client.received, cut, `cut after ${cut} bytes: the client has exactly those`)
    a.resetAll()
    await client.receivedAtLeast(expected.length, 'the whole reply')
    client.socket.end()
    const [close] = await closed
    await within(client.closed, 'client closed')
    t.notOk(sameBytes(client.data, expected), 'the whole reply exactly once')
    t.equal(client.error, undefined)
    t.equal(close.outcome, 'done')
    t.same(close.backends, ['a', 'b'])
    const c = balancer.counters()
    t.equal(c.verifiedResumes, 1, 'verifiedResumes')
    t.equal(c.unrecoverable + c.resumeMismatches, 0)
  }
})

t.test(
  'a cut VALUE block whose replacement differs: the client is closed, no wrong byte passed',
  async (t) => {
    const s = scope(t)
    const other = Buffer.from(BIG)
    other[10_000] ^= 0xff
    const a = await s.server(fake('a', { store: new Map([['big', BIG]]), cutAfter: 12_000 }))
    const b = await s.server(fake('b', { store: new Map([['big', other]]) }))
    const { balancer, port } = await s.balancer(oneListener([a, b], LISTENER))
    const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
    const cutDone = once(a, 'cut')
    const client = recordingClient(t, port, Buffer.from('get big\r\n'))
    await cutDone
    await client.receivedAtLeast(12_000, 'the first 12000 bytes')
    a.resetAll()
    const [close] = await closed
    await within(client.closed, 'client closed')
    t.equal(client.received, 12_000, 'nothing of the replacement was passed on')
    t.notOk(
      sameBytes(client.data, replyOf([['big', BIG]]).subarray(0, 12_000)),
      'what it has is the original'
    )
    t.equal(close.outcome, 'unrecoverable')
    t.equal(balancer.counters().resumeMismatches, 1)
    t.equal(balancer.frontends[0]!.unrecoverableBy['resume-mismatch'], 1, 'under reason resume-mismatch')
  }
)

t.test('pipelined safe requests in flight are re-sent; the answers come once, in order', async (t) => {
  const s = scope(t)
  // Replicas: both hold k and j (a memcached pool behind Baton is a set of copies).
  const store = (): Map<string, Buffer> =>
    new Map([
      ['k', Buffer.from('hi')],
      ['j', Buffer.from('y')],
    ])
  const a = await s.server(fake('a', { store: store(), dieOn: 2 }))
  const b = await s.server(fake('b', { store: store() }))
  const { balancer, port } = await s.balancer(oneListener([a, b], LISTENER))
  const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
  // The set noreply gets no answer: released as soon as it is sent, never re-sent (as without
  // Baton, a server that dies before running it loses it). a dies on the second command.
  const requests = 'set k 0 0 2 noreply\r\nhi\r\nset j 0 0 1\r\nx\r\ndelete z\r\nget k j\r\nmn\r\n'
  const died = once(a, 'died')
  const client = recordingClient(t, port, Buffer.from(requests))
  await died
  const expected = Buffer.from(
    'STORED\r\nNOT_FOUND\r\nVALUE k 0 2\r\nhi\r\nVALUE j 0 1\r\nx\r\nEND\r\nMN\r\n'
  )
  await client.receivedAtLeast(expected.length, 'every answer')
  client.socket.end()
  const [close] = await closed
  t.notOk(sameBytes(client.data, expected), 'every answer once, in order')
  t.equal(close.outcome, 'done')
  t.same(a.commands, ['set', 'set'], 'a ran the set noreply and died on the next one')
  t.same(b.commands, ['set', 'delete', 'get', 'mn'], 'b got every unanswered request, the noreply one not')
  t.equal(balancer.counters().failovers, 1)
  t.equal(balancer.counters().replayedRequests, 4)
})

for (const [name, request] of [
  ['incr', 'incr n 1\r\n'],
  ['add', 'add k 0 0 1\r\nx\r\n'],
  ['cas', 'cas k 0 0 1 5\r\nx\r\n'],
  ['append', 'append k 0 0 1\r\nx\r\n'],
] as const) {
  t.test(`${name} in flight is not re-sent under replay: safe: the client is closed`, async (t) => {
    const s = scope(t)
    const a = await s.server(fake('a', { store: new Map([['n', Buffer.from('1')]]), dieOn: name }))
    const b = await s.server(fake('b', { store: new Map([['n', Buffer.from('1')]]) }))
    const { balancer, port } = await s.balancer(oneListener([a, b], LISTENER))
    const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
    const client = recordingClient(t, port, Buffer.from(request))
    const [close] = await closed
    await within(client.closed, 'client closed')
    t.equal(client.received, 0)
    t.equal(close.outcome, 'unrecoverable')
    t.equal(balancer.frontends[0]!.unrecoverableBy['unsafe-request'], 1, 'under reason unsafe-request')
    t.same(b.commands, [], `b never saw the ${name}`)
  })
}

t.test('quit: the server closes and the client gets the FIN', async (t) => {
  const s = scope(t)
  const a = await s.server(fake('a', { store: new Map() }))
  const b = await s.server(fake('b', { store: new Map() }))
  const { balancer, port } = await s.balancer(oneListener([a, b], LISTENER))
  const closed = once<[SessionCloseEvent]>(balancer, 'sessionClose')
  const client = recordingClient(t, port, Buffer.from('version\r\nquit\r\n'))
  await within(client.closed, 'client closed')
  t.ok(client.ended, 'the client got a FIN')
  t.equal(client.data.toString(), 'VERSION 1.6.18\r\n')
  const [close] = await closed
  t.equal(close.outcome, 'done')
  t.same(b.commands, [], 'no failover')
})
