/**
 * resp listeners on the native plane (docs/native-plane.md, "resp on the plane"), through the
 * balancer, against a small RESP server: plain commands stay on the plane (the session is in the
 * link map); a SELECT takes the session to JavaScript, and when its backend then resets a command,
 * the replacement connection gets the SELECT first (the prologue) and then the re-sent command, so
 * the client reads the same database and sees no error. A reset on the plane itself (no state) is
 * re-sent the same way. Skipped when the addon is not built.
 */
import net from 'node:net'
import t, { type Test } from 'tap'
import { nativeSessions } from '../../lib/native/link.js'
import { scope } from '../helpers/balancer.js'
import { HOST } from '../helpers/servers.js'
import { within } from '../helpers/wait.js'
import { skip } from './helpers/native-proxy.js'

if (skip !== false) {
  t.plan(0, skip)
  process.exit(0)
}

/** Commands as a client would write them (multibulk). */
function cmd(...args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`
}

/**
 * A RESP server with databases: SELECT, SET, GET, PING. Each connection's commands are recorded
 * (upper-case name and arguments, joined by spaces). `cut(n)`: reset the connection instead of
 * answering its n-th command (counted over the server's life).
 */
async function redisish(
  name: string,
  cut?: (n: number) => boolean
): Promise<{ port: number; log: string[][]; close(): Promise<void> }> {
  const data = new Map<string, string>()
  const log: string[][] = []
  let n = 0
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    const seen: string[] = []
    log.push(seen)
    let db = '0'
    let buf = Buffer.alloc(0)
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      for (let guard = 0; guard < 1000; guard++) {
        const parsed = parse(buf)
        if (parsed === undefined) return
        buf = buf.subarray(parsed.used)
        const [verb = '', ...args] = parsed.args
        const upperVerb = verb.toUpperCase()
        seen.push([upperVerb, ...args].join(' '))
        if (cut?.(++n) === true) return socket.resetAndDestroy()
        if (upperVerb === 'SELECT') {
          db = args[0] ?? '0'
          socket.write('+OK\r\n')
        } else if (upperVerb === 'SET') {
          data.set(`${db}/${args[0]}`, args[1] ?? '')
          socket.write('+OK\r\n')
        } else if (upperVerb === 'GET') {
          const v = data.get(`${db}/${args[0]}`) ?? `${name}:${db}:none`
          socket.write(`$${Buffer.byteLength(v)}\r\n${v}\r\n`)
        } else {
          socket.write('+PONG\r\n')
        }
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    log,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}

/** One whole multibulk command at the start of `buf`, or undefined. */
function parse(buf: Buffer): { args: string[]; used: number } | undefined {
  const text = buf.toString('latin1')
  const lines = text.split('\r\n')
  if (lines.length < 2 || !lines[0]!.startsWith('*')) return undefined
  const count = Number(lines[0]!.slice(1))
  const args: string[] = []
  let used = lines[0]!.length + 2
  for (let k = 0; k < count; k++) {
    const header = lines[1 + 2 * k]
    const value = lines[2 + 2 * k]
    if (header === undefined || value === undefined || 3 + 2 * k > lines.length - 1) return undefined
    args.push(value)
    used += header.length + 2 + value.length + 2
  }
  return { args, used }
}

/** A client that writes a command and resolves with the next reply line (and bulk body). */
class RespClient {
  readonly socket: net.Socket
  private buffered = ''
  private waiter: (() => void) | undefined
  ended = false

  constructor(port: number) {
    this.socket = net.connect(port, HOST)
    this.socket.setEncoding('latin1')
    this.socket.on('data', (d: string) => {
      this.buffered += d
      this.waiter?.()
    })
    this.socket.on('end', () => {
      this.ended = true
      this.waiter?.()
    })
    this.socket.on('error', () => {})
  }

  async send(...args: string[]): Promise<string> {
    this.socket.write(cmd(...args))
    return within(
      new Promise<string>((resolve, reject) => {
        const check = (): void => {
          const end = this.buffered.indexOf('\r\n')
          if (end >= 0) {
            const line = this.buffered.slice(0, end)
            if (!line.startsWith('$')) {
              this.buffered = this.buffered.slice(end + 2)
              return resolve(line)
            }
            const length = Number(line.slice(1))
            if (this.buffered.length >= end + 2 + length + 2) {
              const body = this.buffered.slice(end + 2, end + 2 + length)
              this.buffered = this.buffered.slice(end + 2 + length + 2)
              return resolve(body)
            }
          }
          if (this.ended) reject(new Error('the connection ended'))
        }
        this.waiter = check
        check()
      }),
      `a reply to ${args[0]}`
    )
  }
}

/**
 * The balancer in front of `backends` (a resp listener on the native plane; `balance: first`, so
 * the first backend serves until it fails) and a client connected to it, closed when the test ends.
 */
async function front(t: Test, backends: readonly { port: number }[]): Promise<RespClient> {
  const { port } = await scope(t).balancer({
    listeners: [
      {
        listen: `${HOST}:0`,
        protocol: 'resp',
        dataPlane: 'native',
        balance: 'first',
        backends: backends.map((b) => `${HOST}:${b.port}`),
      },
    ],
  })
  const client = new RespClient(port)
  t.teardown(() => client.socket.destroy())
  return client
}

t.test('plain commands stay on the plane', async (t) => {
  const a = await redisish('a')
  t.teardown(() => a.close())
  const client = await front(t, [a])
  t.equal(await client.send('SET', 'k', 'v1'), '+OK', 'SET')
  t.equal(await client.send('GET', 'k'), 'v1', 'GET')
  t.equal(await client.send('PING'), '+PONG', 'PING')
  t.equal(nativeSessions(), 1, 'the session is still on the plane')
})

t.test('after a SELECT, a reset command goes to another backend with the SELECT first', async (t) => {
  // a resets its 4th command: SET, SELECT, SET, then the GET.
  const a = await redisish('a', (n) => n === 4)
  const b = await redisish('b')
  t.teardown(() => Promise.all([a.close(), b.close()]))
  const client = await front(t, [a, b])
  t.equal(await client.send('SET', 'k', 'db0'), '+OK', 'SET in db 0, on the plane')
  t.equal(nativeSessions(), 1, 'on the plane')
  t.equal(await client.send('SELECT', '1'), '+OK', 'SELECT 1')
  t.equal(nativeSessions(), 0, 'the SELECT took the session to JavaScript')
  t.equal(await client.send('SET', 'k', 'db1'), '+OK', 'SET in db 1')
  // b has no data: its answer names the database it was asked in.
  t.equal(await client.send('GET', 'k'), 'b:1:none', 'the reset GET answered by b, in db 1')
  t.same(b.log, [['SELECT 1', 'GET k']], 'b got the SELECT, then the GET')
  t.notOk(client.ended, 'the client got no FIN')
})

t.test('a command reset on the plane is re-sent to another backend', async (t) => {
  const a = await redisish('a', (n) => n === 2)
  const b = await redisish('b')
  t.teardown(() => Promise.all([a.close(), b.close()]))
  const client = await front(t, [a, b])
  t.equal(await client.send('PING'), '+PONG', 'PING from a')
  t.equal(await client.send('GET', 'x'), 'b:0:none', 'the reset GET answered by b')
  t.same(b.log, [['GET x']], 'b got the GET alone (no state to replay)')
  t.equal(await client.send('PING'), '+PONG', 'the session goes on')
})
