/**
 * Framed sessions on the native plane, on four real loopback sockets, for the tests of what the
 * plane follows and hands off (http1-follow, resp-follow): a client pair and a server pair, the
 * plane between their near ends, the test writing and reading at the far ends; after a detach the
 * descriptors are the test's, and a marker written through them proves what the far end got whole.
 */
import fs from 'node:fs'
import net, { type Socket } from 'node:net'
import type { Test } from 'tap'
import type {
  AttachOptions,
  Detached,
  NativePlane,
  PlaneEvent,
  PlaneHandle,
} from '../../../lib/native/plane.js'
import { HOST } from '../../helpers/servers.js'
import { once, until, within } from '../../helpers/wait.js'
import { ProxiedSession, thePlane } from './native-proxy.js'

export type Handoff = Extract<PlaneEvent, { type: 'handoff' }>
export type Framing = Required<Pick<AttachOptions, 'http1'>> | Required<Pick<AttachOptions, 'resp'>>

/** Written through a detached descriptor: what the far end got before it is all the plane sent. */
export const MARK = '<detached>'

/** A far end: everything it reads, in order, and how its connection ended. */
export class Far {
  private readonly chunks: Buffer[] = []
  length = 0
  ended = false
  error: string | undefined

  constructor(
    readonly socket: Socket,
    readonly name: string
  ) {
    socket.setNoDelay(true)
    socket.on('data', (c: Buffer) => {
      this.chunks.push(c)
      this.length += c.length
    })
    socket.on('end', () => (this.ended = true))
    socket.on('error', (err: NodeJS.ErrnoException) => (this.error = err.code ?? err.message))
    socket.resume()
  }

  /** Every byte read so far, as latin1 text (each byte one character). */
  text(from = 0): string {
    return Buffer.concat(this.chunks).subarray(from).toString('latin1')
  }

  /** Every byte read so far. */
  bytes(): Buffer {
    return Buffer.concat(this.chunks)
  }

  /** Resolves once `n` bytes in all have been read (bounded). */
  async got(n: number, what: string): Promise<void> {
    await until(() => this.length >= n, `${this.name} got ${what} (${n} bytes; has ${this.length})`)
  }
}

/** Two connected sockets on 127.0.0.1: the one accepted (paused: Node reads nothing) and the one that connected. */
export async function pair(): Promise<{ accepted: Socket; connected: Socket }> {
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true })
  server.listen({ host: HOST, port: 0 })
  await within(once(server, 'listening'), 'pair listening')
  const port = (server.address() as net.AddressInfo).port
  const accepting = once<[Socket]>(server, 'connection')
  const connected = net.connect({ host: HOST, port, allowHalfOpen: true })
  connected.on('error', () => undefined)
  await within(once(connected, 'connect'), 'pair connect')
  const [accepted] = await within(accepting, 'pair accept')
  accepted.on('error', () => undefined)
  server.close()
  return { accepted, connected }
}

export interface Framed {
  plane: NativePlane
  handle: PlaneHandle
  session: ProxiedSession
  /** The client's far end (the test's client) and the server's far end (the test's backend). */
  client: Far
  server: Far
  /** What the protocol calls a request and its answer, for the assertions' words. */
  words: readonly [string, string]
  /** The session's next `handoff` event (bounded). */
  handoff(): Promise<Handoff>
  /** `plane.detach`; the descriptors are closed when the test ends unless adopted. */
  detach(): Detached
  /** A detached descriptor as a Node socket (destroyed when the test ends). */
  adopt(fd: number): Socket
}

/**
 * A framed session: a client pair (the client connects to a front, the plane gets the accepted
 * end) and a server pair (the plane gets the connecting end, the backend's accepted end is the
 * test's), attached with `framing` (`{ http1 }` or `{ resp }`). Closed (or its detached descriptors
 * closed) when the test ends.
 */
export async function framedSession(t: Test, framing: Framing): Promise<Framed> {
  const plane = thePlane()
  const front = await pair()
  const back = await pair()
  const session = new ProxiedSession()
  const handle = plane.attach(front.accepted, back.connected, session.record, framing)
  session.handle = handle
  const client = new Far(front.connected, 'the client')
  const server = new Far(back.accepted, 'the server')
  let detached = false
  const owned = new Set<number>()
  t.teardown(() => {
    if (!detached) plane.close(handle)
    for (const fd of owned) fs.closeSync(fd)
    client.socket.destroy()
    server.socket.destroy()
  })
  return {
    plane,
    handle,
    session,
    client,
    server,
    words: 'http1' in framing ? ['request', 'response'] : ['command', 'reply'],
    handoff: () => session.next('handoff'),
    detach() {
      detached = true
      const d = plane.detach(handle)
      for (const fd of [d.clientFd, d.serverFd]) if (fd >= 0) owned.add(fd)
      return d
    },
    adopt(fd: number) {
      if (!owned.delete(fd)) throw new Error(`descriptor ${fd} is not a detached one still held`)
      const socket = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true })
      socket.on('error', () => undefined)
      t.teardown(() => socket.destroy())
      return socket
    },
  }
}

export function parts(p: string | string[]): string[] {
  return typeof p === 'string' ? [p] : p
}

/**
 * `parts` written by `from`, one write each, each read by `to` before the next is written (so each
 * is its own read on the plane): `to` then holds them, exactly, from where it was.
 */
export async function pass(t: Test, from: Far, to: Far, p: string[], what: string): Promise<void> {
  const start = to.length
  let want = start
  for (const [i, part] of p.entries()) {
    want += Buffer.byteLength(part, 'latin1')
    from.socket.write(Buffer.from(part, 'latin1'))
    await to.got(want, `${what}, part ${i + 1} of ${p.length}`)
  }
  t.equal(to.text(start), p.join(''), `${to.name} got ${what}, exactly`)
}

/**
 * One exchange the plane follows: the request (command) reaches the server whole, the response
 * (reply) the client, and the session is at a clean point again: nothing pending, not handing off.
 */
export async function exchange(
  t: Test,
  s: Framed,
  request: string | string[],
  response: string | string[],
  what: string
): Promise<void> {
  const [ask, answer] = s.words
  await pass(t, s.client, s.server, parts(request), `${what}: the ${ask}`)
  await pass(t, s.server, s.client, parts(response), `${what}: the ${answer}`)
  t.match(
    s.plane.stats(s.handle),
    { answered: true, unansweredBytes: 0, handing: false, closed: false },
    `${what}: answered, nothing pending, still on the plane`
  )
}

/** No event at all so far (a hand-off would have stopped the exchanges that came after it). */
export function noHandoff(t: Test, s: Framed): void {
  t.same(s.session.types(), [], 'no hand-off, no event')
  t.equal(s.plane.stats(s.handle)?.handing, false, 'still moving bytes itself')
}

/** `text` as a Buffer (latin1), to compare with detach's. */
export function b(text: string): Buffer {
  return Buffer.from(text, 'latin1')
}

/** A buffer detach gave, as latin1 text (undefined stays undefined: detach gives no empty Buffer). */
export function txt(buf: Buffer | undefined): string | undefined {
  return buf === undefined ? undefined : buf.toString('latin1')
}

/**
 * Through a detached descriptor, `MARK`: the far end then holds `before` and the mark, exactly —
 * the plane sent nothing more than `before` (bytes it sent would have come ahead of the mark).
 */
export async function markThrough(
  t: Test,
  socket: Socket,
  far: Far,
  before: string,
  what: string
): Promise<void> {
  socket.write(MARK)
  await far.got(Buffer.byteLength(before, 'latin1') + MARK.length, `${what} and the mark`)
  t.equal(far.text(), before + MARK, `${far.name} got ${what}, then only the mark`)
}

/**
 * What a far end received since `from` (its count before the unfollowed bytes, the mark excluded)
 * followed by what detach says was not sent on: exactly `since`, the bytes written since the clean
 * point.
 */
export function addsUp(
  t: Test,
  far: Far,
  from: number,
  unsent: Buffer | undefined,
  since: string,
  what: string
): void {
  const received = far.text(from).slice(0, -MARK.length)
  t.equal(
    received + (txt(unsent) ?? ''),
    since,
    `${what}: received by ${far.name} + unsent = the bytes since the clean point`
  )
}

/**
 * The hand-offs every framed protocol shares, as subtests of `t`: a server FIN between exchanges
 * (server-eof, at a clean point, the FIN left for the descriptor's new owner), a server reset with a
 * request in flight (server-error, the request kept to re-send), and a client FIN with a request in
 * flight (client-eof, the answer still reaching the client through the adopted descriptor).
 * `request` and `response` are one exchange the plane follows.
 */
export async function endsHandOff(
  t: Test,
  open: (t: Test) => Promise<Framed>,
  request: string,
  response: string
): Promise<void> {
  await t.test('a server FIN between exchanges: server-eof', async (t) => {
    const s = await open(t)
    await exchange(t, s, request, response, 'a followed exchange')
    s.server.socket.end()
    const e = await s.handoff()
    t.match(e, { reason: 'server-eof', errno: 0, code: '' }, 'handoff: server-eof')
    const d = s.detach()
    t.ok(d.clientFd >= 0, `client descriptor ${d.clientFd}`)
    t.ok(d.serverFd >= 0, `server descriptor ${d.serverFd}`)
    t.same(
      [d.clientHistory, d.clientUnsent, d.serverHistory, d.serverUnsent],
      [undefined, undefined, undefined, undefined],
      'no history, nothing unsent: a clean point'
    )
    t.notOk(s.client.ended, 'the FIN was not passed to the client')
    // The FIN is still there for the new owner of the server descriptor to read.
    const server = new Far(s.adopt(d.serverFd), 'the adopted server descriptor')
    await until(() => server.ended, 'the adopted server descriptor reads the FIN')
    t.equal(server.length, 0, 'and no bytes before it')
  })

  await t.test('a server reset with a request in flight: server-error ECONNRESET', async (t) => {
    const s = await open(t)
    const [ask] = s.words
    await pass(t, s.client, s.server, [request], `the ${ask}`)
    s.server.socket.resetAndDestroy()
    const e = await s.handoff()
    t.match(e, { reason: 'server-error', code: 'ECONNRESET' }, 'handoff: server-error')
    t.not(e.errno, 0, `errno ${e.errno}`)
    const d = s.detach()
    t.ok(d.clientFd >= 0, `client descriptor ${d.clientFd}`)
    t.ok(d.serverFd >= 0, `server descriptor ${d.serverFd}`)
    t.equal(txt(d.clientHistory), request, `client history: the ${ask} in flight (to re-send)`)
    t.equal(d.clientUnsent, undefined, 'it had been sent')
    t.same([d.serverHistory, d.serverUnsent], [undefined, undefined], 'nothing from the server')
    await markThrough(t, s.adopt(d.clientFd), s.client, '', 'nothing')
  })

  await t.test('a client FIN with a request in flight: client-eof', async (t) => {
    const s = await open(t)
    const [ask, answer] = s.words
    await exchange(t, s, request, response, 'a followed exchange')
    await pass(t, s.client, s.server, [request], `a second ${ask}`)
    s.client.socket.end()
    const e = await s.handoff()
    t.match(e, { reason: 'client-eof', errno: 0, code: '' }, 'handoff: client-eof')
    const d = s.detach()
    t.ok(d.clientFd >= 0, `client descriptor ${d.clientFd}`)
    t.ok(d.serverFd >= 0, `server descriptor ${d.serverFd}`)
    t.equal(txt(d.clientHistory), request, `client history: the second ${ask} only`)
    t.equal(d.clientUnsent, undefined, 'it had been sent')
    t.notOk(s.server.ended, 'the FIN was not passed to the server')
    // The half-closed client still gets its answer through the detached descriptors.
    const client = s.adopt(d.clientFd)
    client.write(response)
    await s.client.got(response.length * 2, 'the answer after its FIN')
    t.equal(
      s.client.text(),
      response + response,
      `both ${answer}s, the second through the adopted descriptor`
    )
  })
}
