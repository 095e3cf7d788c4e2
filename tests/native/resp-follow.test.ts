/**
 * Framed sessions on the native plane (`attach(..., { resp })`; native/plane.c, "Framed sessions:
 * resp on the plane"), on four real loopback sockets: a client pair and a server pair, the plane
 * between their near ends, the test writing and reading at the far ends. Followed, with no hand-off
 * and the stats answered after each exchange: every RESP2 reply type (simple string, error,
 * integer, bulk, null bulk, flat arrays, the empty and the null array), pipelining (sixteen
 * commands and replies in one write each, then in other splits, replies a byte at a time), a
 * command whose bulk strings are split across writes, lower-case names. Handed off
 * (`unfollowed`), the plane having sent only the valid prefix it followed (up to the LF that ends a
 * special command's name) and `detach` giving the rest back as unsent: SELECT, MULTI, SUBSCRIBE,
 * BLPOP, CLIENT, AUTH, an inline command, `*0`; RESP3 replies, a nested array, a reply with no
 * command in flight, the second of two pipelined replies. History restarts at each clean point.
 * Every server FIN, server reset and client FIN hands off; a reply past the 64 KiB history bound
 * hands off (`history`) with what reached the client, what was not sent and what is still unread
 * adding up; `maxBulkBytes` bounds a bulk string both ways. After each detach the descriptors are
 * the test's: what the far end got is proven whole by a marker written through them. Skipped when
 * the addon is not built.
 */
import t, { type Test } from 'tap'
import { until, within } from '../helpers/wait.js'
import {
  Far,
  MARK,
  addsUp,
  b,
  endsHandOff,
  exchange,
  framedSession,
  markThrough,
  noHandoff,
  pass,
  txt,
  type Framed,
} from './helpers/framed.js'
import { skip } from './helpers/native-proxy.js'

/** The plane's default bound (native/plane.c, js_attach): no bulk string in these tests comes near it. */
const DEFAULT_MAX_BULK = 512 * 1024 * 1024

/** A command as a RESP multibulk array of bulk strings. */
function cmd(...args: string[]): string {
  return `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a, 'latin1')}\r\n${a}\r\n`).join('')
}

const GET = cmd('GET', 'a')
const X = '$1\r\nx\r\n'

/** A framed session attached with `resp` (helpers/framed.ts). */
function framed(t: Test, maxBulkBytes = DEFAULT_MAX_BULK): Promise<Framed> {
  return framedSession(t, { resp: { maxBulkBytes } })
}

/** `text` cut into pieces of `size` bytes (the last one shorter). */
function pieces(text: string, size: number): string[] {
  const out: string[] = []
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size))
  return out
}

t.test('every RESP2 reply type passes both ways byte-exact, answered after each', { skip }, async (t) => {
  const s = await framed(t)
  await pass(t, s.client, s.server, [GET], 'GET a')
  t.match(
    s.plane.stats(s.handle),
    { answered: false, unansweredBytes: 1 },
    'GET in flight: one pending command'
  )
  await pass(t, s.server, s.client, [X], 'a bulk reply')
  t.match(
    s.plane.stats(s.handle),
    {
      answered: true,
      unansweredBytes: 0,
      handing: false,
      bytesFromClient: GET.length,
      bytesToServer: GET.length,
      bytesFromServer: X.length,
      bytesToClient: X.length,
    },
    'after GET: answered, and the byte counts'
  )
  await exchange(t, s, cmd('SET', 'a', '1'), '+OK\r\n', 'SET: a simple string')
  await exchange(t, s, cmd('INCR', 'n'), ':5\r\n', 'INCR: an integer')
  await exchange(t, s, cmd('GET', 'missing'), '$-1\r\n', 'GET: a null bulk')
  await exchange(t, s, cmd('LPUSH', 'a', 'v'), '-ERR wrong\r\n', 'an error')
  await exchange(
    t,
    s,
    cmd('MGET', 'a', 'b'),
    '*2\r\n$1\r\na\r\n$-1\r\n',
    'MGET: an array of a bulk and a null'
  )
  await exchange(t, s, cmd('LRANGE', 'l', '0', '-1'), '*0\r\n', 'LRANGE: an empty array')
  await exchange(t, s, cmd('LRANGE', 'l', '0', '-1'), '*-1\r\n', 'a null array')
  await exchange(t, s, cmd('SET', 'e', ''), '+OK\r\n', 'SET of an empty value ($0)')
  await exchange(t, s, cmd('GET', 'e'), '$0\r\n\r\n', 'GET: an empty bulk')
  await exchange(
    t,
    s,
    cmd('HGETALL', 'h'),
    '*4\r\n+f\r\n:1\r\n-E x\r\n$2\r\nab\r\n',
    'an array of every flat type'
  )
  await exchange(t, s, GET, X, 'a further exchange')
  noHandoff(t, s)
})

t.test('pipelined: sixteen SETs in one write, sixteen +OK in one, then other splits', { skip }, async (t) => {
  const s = await framed(t)
  const sets = Array.from({ length: 16 }, (_, i) => cmd('SET', `key:${i}`, `value-${i}`)).join('')
  const oks = '+OK\r\n'.repeat(16)

  await pass(t, s.client, s.server, [sets], 'sixteen SETs in one write')
  t.match(s.plane.stats(s.handle), { answered: false, unansweredBytes: 16 }, 'sixteen pending commands')
  await pass(t, s.server, s.client, [oks], 'sixteen +OK in one write')
  t.match(s.plane.stats(s.handle), { answered: true, unansweredBytes: 0, handing: false }, 'all answered')

  // Commands cut every 13 bytes (across counts, lengths and data); the first three replies a byte
  // at a time, the rest in one write.
  await pass(t, s.client, s.server, pieces(sets, 13), 'sixteen SETs in 13-byte writes')
  t.match(s.plane.stats(s.handle), { unansweredBytes: 16 }, 'sixteen pending commands again')
  await pass(t, s.server, s.client, pieces('+OK\r\n'.repeat(3), 1), 'three replies a byte at a time')
  t.match(s.plane.stats(s.handle), { answered: false, unansweredBytes: 13 }, 'thirteen still pending')
  await pass(t, s.server, s.client, ['+OK\r\n'.repeat(13)], 'the other thirteen in one write')
  t.match(s.plane.stats(s.handle), { answered: true, unansweredBytes: 0, handing: false }, 'all answered')

  // Replies of mixed types cut every 7 bytes, across reply boundaries.
  const gets = Array.from({ length: 16 }, (_, i) => cmd('GET', `key:${i}`)).join('')
  const kinds = (i: number): string =>
    ['$-1\r\n', `$${`value-${i}`.length}\r\nvalue-${i}\r\n`, `:${i}\r\n`, '*1\r\n$1\r\nv\r\n'][i % 4] ?? ''
  const replies = Array.from({ length: 16 }, (_, i) => kinds(i)).join('')
  await exchange(t, s, [gets], pieces(replies, 7), 'sixteen GETs, their replies in 7-byte writes')
  await exchange(t, s, GET, X, 'a further exchange')
  noHandoff(t, s)
})

t.test('a command whose bulk strings are split across client writes passes', { skip }, async (t) => {
  const s = await framed(t)
  await exchange(
    t,
    s,
    ['*3\r\n$3\r\n', 'SE', 'T\r\n$1\r\nk\r\n$5\r\nhel', 'lo\r\n'],
    '+OK\r\n',
    'SET: the name and the value split'
  )
  await exchange(
    t,
    s,
    ['*', '2\r', '\n$', '3', '\r\n', 'G', 'ET\r', '\n', '$1\r\nk\r', '\n'],
    '$5\r\nhello\r\n',
    'GET cut at every kind of boundary'
  )
  await exchange(t, s, pieces(cmd('SET', 'k', 'abcdefghijklmnop'), 1), '+OK\r\n', 'SET a byte at a time')
  await exchange(t, s, GET, ['$1', '\r', '\nx', '\r', '\n'], 'a bulk reply split at every boundary')
  await exchange(t, s, GET, X, 'a further exchange')
  noHandoff(t, s)
})

t.test('lower-case command names pass', { skip }, async (t) => {
  const s = await framed(t)
  await exchange(t, s, cmd('get', 'a'), X, 'get')
  await exchange(t, s, cmd('set', 'a', 'b'), '+OK\r\n', 'set')
  await exchange(t, s, cmd('IncrBy', 'n', '2'), ':7\r\n', 'IncrBy')
  await exchange(t, s, GET, X, 'a further exchange')
  noHandoff(t, s)
})

/**
 * Commands the plane does not follow, each alone on a new session, and what of each it sends
 * first: the valid prefix it followed (for a special command, up to the LF that ends its name).
 */
const UNFOLLOWED_COMMANDS: Array<{ name: string; command: string; sent: string }> = [
  { name: 'SELECT 2', command: cmd('SELECT', '2'), sent: '*2\r\n$6\r\nSELECT\r' },
  { name: 'MULTI', command: cmd('MULTI'), sent: '*1\r\n$5\r\nMULTI\r' },
  { name: 'SUBSCRIBE ch', command: cmd('SUBSCRIBE', 'ch'), sent: '*2\r\n$9\r\nSUBSCRIBE\r' },
  { name: 'BLPOP k 0', command: cmd('BLPOP', 'k', '0'), sent: '*3\r\n$5\r\nBLPOP\r' },
  { name: 'CLIENT SETNAME x', command: cmd('CLIENT', 'SETNAME', 'x'), sent: '*3\r\n$6\r\nCLIENT\r' },
  { name: 'AUTH pw', command: cmd('AUTH', 'pw'), sent: '*2\r\n$4\r\nAUTH\r' },
  { name: 'select (lower case)', command: cmd('select', '1'), sent: '*2\r\n$6\r\nselect\r' },
  { name: 'an inline command', command: 'PING\r\n', sent: '' },
  { name: '*0', command: '*0\r\n', sent: '*0' },
]

t.test(
  'unfollowed commands hand off; the server gets only the prefix the plane followed',
  { skip },
  async (t) => {
    for (const { name, command, sent } of UNFOLLOWED_COMMANDS) {
      await t.test(name, async (t) => {
        t.ok(command.startsWith(sent), 'the expected prefix is one of the command')
        const s = await framed(t)
        s.client.socket.write(b(command))
        const e = await s.handoff()
        t.match(e, { reason: 'unfollowed', errno: 0, code: '' }, 'handoff: unfollowed')
        t.match(
          e.stats,
          { handing: true, bytesFromClient: command.length, bytesToServer: sent.length },
          'read whole, only the followed prefix sent'
        )
        const d = s.detach()
        t.ok(d.clientFd >= 0 && d.serverFd >= 0, 'both descriptors')
        t.equal(txt(d.clientHistory), command, 'client history: the command')
        t.equal(txt(d.clientUnsent), command.slice(sent.length), 'client unsent: the command past the prefix')
        t.same([d.serverHistory, d.serverUnsent], [undefined, undefined], 'nothing from the server')
        await markThrough(t, s.adopt(d.serverFd), s.server, sent, sent === '' ? 'nothing' : 'the prefix')
        addsUp(t, s.server, 0, d.clientUnsent, command, 'the command')
        t.same(s.session.types(), ['handoff'], 'the handoff and nothing else')
      })
    }
  }
)

/** Replies (to a GET) the plane does not follow, how they are written, and what of them it sends first. */
const UNFOLLOWED_REPLIES: Array<{ name: string; writes: string[]; sent: string }> = [
  { name: 'a RESP3 map', writes: ['%1\r\n+a\r\n:1\r\n'], sent: '' },
  { name: 'a RESP3 null', writes: ['_\r\n'], sent: '' },
  { name: 'a nested array', writes: ['*1\r\n*1\r\n:1\r\n'], sent: '*1\r\n' },
  {
    name: 'a nested array, the outer header alone first',
    writes: ['*1\r\n', '*1\r\n:1\r\n'],
    sent: '*1\r\n',
  },
  { name: 'a RESP3 element inside an array', writes: ['*2\r\n:1\r\n#t\r\n'], sent: '*2\r\n:1\r\n' },
  { name: 'a bare LF ending a line', writes: ['+OK\n'], sent: '+OK' },
]

t.test('unfollowed replies hand off; the client gets only what the plane followed', { skip }, async (t) => {
  for (const { name, writes, sent } of UNFOLLOWED_REPLIES) {
    await t.test(name, async (t) => {
      const reply = writes.join('')
      t.ok(reply.startsWith(sent), 'the expected prefix is one of the reply')
      const s = await framed(t)
      await pass(t, s.client, s.server, [GET], 'the command')
      // Each write but the last is followed whole: the client has it before the next.
      let want = 0
      for (const w of writes.slice(0, -1)) {
        want += w.length
        s.server.socket.write(b(w))
        await s.client.got(want, 'a followed write')
      }
      s.server.socket.write(b(writes.at(-1) ?? ''))
      const e = await s.handoff()
      t.match(e, { reason: 'unfollowed', errno: 0, code: '' }, 'handoff: unfollowed')
      t.match(
        e.stats,
        { bytesFromServer: reply.length, bytesToClient: sent.length },
        'the reply read, only the followed part sent'
      )
      const d = s.detach()
      t.ok(d.clientFd >= 0 && d.serverFd >= 0, 'both descriptors')
      t.equal(txt(d.serverHistory), reply, 'server history: the reply')
      t.equal(txt(d.serverUnsent), reply.slice(sent.length), 'server unsent: the part not sent')
      t.equal(txt(d.clientHistory), GET, 'client history: the command it answers (not at a clean point)')
      t.equal(d.clientUnsent, undefined, 'the command was sent whole')
      await markThrough(t, s.adopt(d.clientFd), s.client, sent, sent === '' ? 'nothing' : 'the followed part')
      addsUp(t, s.client, 0, d.serverUnsent, reply, 'the reply')
      t.same(s.session.types(), ['handoff'], 'the handoff and nothing else')
    })
  }

  await t.test('the second of two pipelined replies: history reaches back to the first', async (t) => {
    const s = await framed(t)
    const second = cmd('GET', 'b')
    await pass(t, s.client, s.server, [GET + second], 'two commands')
    const reply = X + '%0\r\n'
    s.server.socket.write(b(reply))
    const e = await s.handoff()
    t.match(e, { reason: 'unfollowed', errno: 0 }, 'handoff: unfollowed')
    const d = s.detach()
    t.equal(txt(d.serverHistory), reply, 'server history: both replies (one command still in flight)')
    t.equal(txt(d.serverUnsent), '%0\r\n', 'server unsent: the second reply')
    t.equal(txt(d.clientHistory), GET + second, 'client history: both commands')
    t.equal(d.clientUnsent, undefined, 'both were sent')
    await markThrough(t, s.adopt(d.clientFd), s.client, X, 'the first reply')
    addsUp(t, s.client, 0, d.serverUnsent, reply, 'both replies')
  })
})

t.test('a reply with no command in flight hands off before any of it is sent', { skip }, async (t) => {
  await t.test('first on a new session', async (t) => {
    const s = await framed(t)
    s.server.socket.write(b('+OK\r\n'))
    const e = await s.handoff()
    t.match(e, { reason: 'unfollowed', errno: 0, code: '' }, 'handoff: unfollowed')
    t.match(e.stats, { bytesFromServer: 5, bytesToClient: 0 }, 'read, not sent')
    const d = s.detach()
    t.equal(txt(d.serverHistory), '+OK\r\n', 'server history: the unasked reply')
    t.equal(txt(d.serverUnsent), '+OK\r\n', 'server unsent: all of it')
    t.same([d.clientHistory, d.clientUnsent], [undefined, undefined], 'nothing from the client')
    await markThrough(t, s.adopt(d.clientFd), s.client, '', 'nothing')
    addsUp(t, s.client, 0, d.serverUnsent, '+OK\r\n', 'the unasked reply')
  })

  await t.test('after a followed exchange', async (t) => {
    const s = await framed(t)
    await exchange(t, s, GET, X, 'a followed exchange')
    const push = '*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n'
    s.server.socket.write(b(push))
    const e = await s.handoff()
    t.match(e, { reason: 'unfollowed', errno: 0 }, 'handoff: unfollowed')
    const d = s.detach()
    t.equal(
      txt(d.serverHistory),
      push,
      'server history: the push alone (the exchange ended at a clean point)'
    )
    t.equal(txt(d.serverUnsent), push, 'server unsent: all of it')
    t.same([d.clientHistory, d.clientUnsent], [undefined, undefined], 'no client history: at a clean point')
    await markThrough(t, s.adopt(d.clientFd), s.client, X, 'the first reply only')
    addsUp(t, s.client, X.length, d.serverUnsent, push, 'the push')
  })
})

t.test('history restarts at a clean point', { skip }, async (t) => {
  await t.test('a SELECT after a GET exchange: the history is the SELECT only', async (t) => {
    const s = await framed(t)
    await exchange(t, s, GET, X, 'a followed exchange')
    const select = cmd('SELECT', '1')
    const sent = '*2\r\n$6\r\nSELECT\r'
    s.client.socket.write(b(select))
    const e = await s.handoff()
    t.match(e, { reason: 'unfollowed', errno: 0 }, 'handoff: unfollowed')
    const d = s.detach()
    t.equal(txt(d.clientHistory), select, 'client history: the SELECT only')
    t.equal(txt(d.clientUnsent), select.slice(sent.length), 'client unsent: the SELECT past its name')
    t.same(
      [d.serverHistory, d.serverUnsent],
      [undefined, undefined],
      'no server history: the reply ended at a clean point'
    )
    await markThrough(t, s.adopt(d.serverFd), s.server, GET + sent, 'the GET and the prefix of the SELECT')
    addsUp(t, s.server, GET.length, d.clientUnsent, select, 'the SELECT')
  })

  await t.test('a clean point inside a server read: the history starts after it', async (t) => {
    const s = await framed(t)
    await pass(t, s.client, s.server, [GET], 'the command')
    s.server.socket.write(b(X + '+OK\r\n'))
    const e = await s.handoff()
    t.match(e, { reason: 'unfollowed', errno: 0 }, 'handoff: unfollowed')
    t.match(
      e.stats,
      { bytesFromServer: X.length + 5, bytesToClient: X.length },
      'the reply sent, the rest not'
    )
    const d = s.detach()
    t.equal(txt(d.serverHistory), '+OK\r\n', 'server history: only what followed the clean point')
    t.equal(txt(d.serverUnsent), '+OK\r\n', 'server unsent: the same')
    t.same(
      [d.clientHistory, d.clientUnsent],
      [undefined, undefined],
      'no client history: the GET was answered'
    )
    await markThrough(t, s.adopt(d.clientFd), s.client, X, 'the reply only')
  })
})

t.test('every EOF and server error hands off', { skip }, async (t) => {
  await endsHandOff(t, framed, GET, X)

  await t.test('a server FIN with a command in flight: server-eof, the command in history', async (t) => {
    const s = await framed(t)
    await exchange(t, s, GET, X, 'a followed exchange')
    const incr = cmd('INCR', 'n')
    await pass(t, s.client, s.server, [incr], 'a second command')
    s.server.socket.end()
    const e = await s.handoff()
    t.match(e, { reason: 'server-eof', errno: 0, code: '' }, 'handoff: server-eof')
    t.match(e.stats, { answered: false, unansweredBytes: 1 }, 'one command unanswered')
    const d = s.detach()
    t.ok(d.clientFd >= 0 && d.serverFd >= 0, 'both descriptors')
    t.equal(txt(d.clientHistory), incr, 'client history: the command in flight (to re-send)')
    t.equal(d.clientUnsent, undefined, 'it had been sent')
    t.same([d.serverHistory, d.serverUnsent], [undefined, undefined], 'nothing from the server')
  })

  await t.test('a client FIN on an idle session: client-eof, the descriptors closed', async (t) => {
    const s = await framed(t)
    s.client.socket.end()
    const e = await s.handoff()
    t.match(e, { reason: 'client-eof', errno: 0, code: '' }, 'handoff: client-eof')
    const d = s.detach()
    t.ok(d.clientFd >= 0 && d.serverFd >= 0, 'both descriptors')
    t.same(
      [d.clientHistory, d.clientUnsent, d.serverHistory, d.serverUnsent],
      [undefined, undefined, undefined, undefined],
      'no history, nothing unsent'
    )
    // Closing them is the caller's: the far ends see their connections end.
    s.adopt(d.clientFd).destroy()
    s.adopt(d.serverFd).destroy()
    await until(() => s.client.ended && s.server.ended, 'both far ends see their connection end')
    t.pass('both far ends closed')
  })
})

t.test('a reply past the history bound hands off (history) and adds up', { skip }, async (t) => {
  const s = await framed(t)
  await pass(t, s.client, s.server, [GET], 'the command')
  const size = 100_000
  const body = Buffer.alloc(size)
  for (let i = 0; i < size; i++) body[i] = 97 + (i % 26)
  const reply = Buffer.concat([b(`$${size}\r\n`), body, b('\r\n')])
  s.server.socket.write(reply)
  const e = await s.handoff()
  t.match(e, { reason: 'history', errno: 0, code: '' }, 'handoff: history, not out of memory')
  const d = s.detach()
  const history = d.serverHistory ?? Buffer.alloc(0)
  const unsent = d.serverUnsent ?? Buffer.alloc(0)
  t.ok(history.length > 65536, `server history past 64 KiB (${history.length} bytes)`)
  t.ok(history.length < reply.length, 'not the whole reply: the plane stopped reading')
  t.equal(e.stats.bytesFromServer, history.length, 'the history is all the plane read')
  t.ok(history.equals(reply.subarray(0, history.length)), 'server history: the reply from its start')
  t.ok(unsent.length > 0, `something unsent (${unsent.length} bytes)`)
  t.ok(unsent.equals(history.subarray(history.length - unsent.length)), "server unsent: the history's tail")
  t.equal(txt(d.clientHistory), GET, 'client history: the command')
  t.equal(d.clientUnsent, undefined, 'the command was sent whole')
  const sent = history.length - unsent.length
  t.ok(sent <= 65536, `what was sent (${sent} bytes) is within the bound`)
  t.equal(e.stats.bytesToClient, sent, 'the stats count what was sent')
  // What reached the client: exactly the part sent, then the mark.
  s.adopt(d.clientFd).write(MARK)
  await s.client.got(sent + MARK.length, 'the part sent and the mark')
  t.equal(s.client.length, sent + MARK.length, `the client got ${sent} bytes of the reply, then the mark`)
  t.ok(s.client.bytes().equals(Buffer.concat([reply.subarray(0, sent), b(MARK)])), 'exactly the sent part')
  // What the plane did not read is still in the server descriptor.
  const rest = new Far(s.adopt(d.serverFd), 'the adopted server descriptor')
  await rest.got(reply.length - history.length, 'the rest of the reply')
  t.equal(
    s.client.length - MARK.length + unsent.length + rest.length,
    reply.length,
    'client bytes + unsent + unread = the whole reply'
  )
  t.ok(
    Buffer.concat([s.client.bytes().subarray(0, sent), unsent, rest.bytes()]).equals(reply),
    'and in order they are the reply'
  )
})

t.test('maxBulkBytes bounds a bulk string', { skip }, async (t) => {
  await t.test('in a command', async (t) => {
    const s = await framed(t, 10)
    await exchange(t, s, cmd('SET', 'k', '0123456789'), '+OK\r\n', 'a 10-byte value')
    const long = cmd('SET', 'k', 'x'.repeat(20))
    // The plane stops at the digit that takes the length past the bound, as the JavaScript scanner does.
    const sent = '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2'
    t.ok(long.startsWith(sent), 'the expected prefix is one of the command')
    s.client.socket.write(b(long))
    const e = await s.handoff()
    t.match(e, { reason: 'unfollowed', errno: 0 }, 'handoff: unfollowed')
    const d = s.detach()
    t.equal(txt(d.clientHistory), long, 'client history: the long SET')
    t.equal(txt(d.clientUnsent), long.slice(sent.length), 'client unsent: from the digit past the bound on')
    await markThrough(
      t,
      s.adopt(d.serverFd),
      s.server,
      cmd('SET', 'k', '0123456789') + sent,
      'the short SET and the prefix'
    )
    addsUp(t, s.server, cmd('SET', 'k', '0123456789').length, d.clientUnsent, long, 'the long SET')
  })

  await t.test('in a reply', async (t) => {
    const s = await framed(t, 10)
    await exchange(t, s, GET, '$10\r\n0123456789\r\n', 'a 10-byte reply')
    await pass(t, s.client, s.server, [GET], 'the command')
    const long = `$20\r\n${'y'.repeat(20)}\r\n`
    s.server.socket.write(b(long))
    const e = await s.handoff()
    t.match(e, { reason: 'unfollowed', errno: 0 }, 'handoff: unfollowed')
    const d = s.detach()
    t.equal(txt(d.serverHistory), long, 'server history: the long reply')
    t.equal(txt(d.serverUnsent), long.slice(2), 'server unsent: from the digit past the bound on')
    t.equal(txt(d.clientHistory), GET, 'client history: the command')
    const before = '$10\r\n0123456789\r\n'
    await markThrough(t, s.adopt(d.clientFd), s.client, before + '$2', 'the short reply and the prefix')
    addsUp(t, s.client, before.length, d.serverUnsent, long, 'the long reply')
  })
})
