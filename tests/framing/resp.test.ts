import t from 'tap'
import { ConfigError } from '../../lib/errors.js'
import { resp, SAFE_COMMANDS, splitInline } from '../../lib/framing/resp.js'
import type { Framer, FramerExtras, FramingError } from '../../lib/framing/types.js'
import { cut } from './helpers/frames.js'
import { cmd, everyReply, inline, reply as r } from './helpers/resp.js'
import { retained } from '../fuzz/helpers/fuzz.js'

type RespFramer = Framer & FramerExtras

function make(options?: Parameters<typeof resp>[0]): { framer: RespFramer; answered: number[] } {
  const answered: number[] = []
  const framer = resp(options)({ answered: (upTo) => answered.push(upTo) })
  return { framer, answered }
}

const ends = (...reqs: Buffer[]): number[] => {
  let at = 0
  return reqs.map((q) => (at += q.length))
}

/** Feed `data` to the framer one byte at a time; the first error, if any. */
function bytewise(feed: (chunk: Buffer) => FramingError | undefined, data: Buffer): FramingError | undefined {
  for (let k = 0; k < data.length; k++) {
    const error = feed(data.subarray(k, k + 1))
    if (error !== undefined) return error
  }
  return undefined
}

t.test('every reply type answers one request, whole, cut anywhere and byte by byte', async (t) => {
  for (const { name, data } of everyReply()) {
    const plans: Buffer[][] = [[data], Array.from(data, (_, k) => data.subarray(k, k + 1))]
    for (let p = 1; p < data.length; p++) plans.push(cut(data, [p]))
    const failures: string[] = []
    for (const chunks of plans) {
      const { framer, answered } = make()
      const req = cmd('GET', 'k')
      framer.request(req)
      for (const [k, chunk] of chunks.entries()) {
        const error = framer.response(chunk)
        const last = k === chunks.length - 1
        if (error !== undefined) failures.push(`${chunks.length} chunks: ${error.message}`)
        else if (framer.responseOpen === last) failures.push(`${chunks.length} chunks: responseOpen at ${k}`)
        else if (!last && answered.length > 0)
          failures.push(`${chunks.length} chunks: answered early at ${k}`)
      }
      if (answered.join() !== `${req.length}` || framer.pending() !== 0 || !framer.atBoundary()) {
        failures.push(`${chunks.length} chunks: answered ${answered}, pending ${framer.pending()}`)
      }
    }
    t.same(failures, [], name)
  }
})

t.test('pipelining: replies answer the requests in order, at their exact end offsets', async (t) => {
  const reqs = [
    cmd('SET', 'a', '1'),
    inline('GET a'),
    cmd('MGET', 'a', 'b'),
    inline('PING', true),
    cmd('HGETALL', 'h'),
  ]
  const { framer, answered } = make()
  t.equal(framer.request(Buffer.concat(reqs)), undefined)
  t.equal(framer.pending(), 5)
  const replies = [
    r.simple('OK'),
    r.bulk('1'),
    r.array([r.bulk('1'), r.bulk(null)]),
    r.simple('PONG'),
    r.map([[r.bulk('f'), r.bulk('v')]]),
  ]
  const all = Buffer.concat(replies)
  // Cut the replies at odd places: every reply's end answers exactly one request.
  t.equal(framer.response(all.subarray(0, 7)), undefined)
  t.same(answered, ends(...reqs).slice(0, 1))
  t.equal(framer.response(all.subarray(7, 30)), undefined)
  t.equal(framer.response(all.subarray(30)), undefined)
  t.same(answered, ends(...reqs))
  t.equal(framer.pending(), 0)
  t.ok(framer.atBoundary())
})

t.test('inline commands: CRLF or LF, quoting as Redis splits it, empty lines get no reply', async (t) => {
  t.same(splitInline(Buffer.from('set  "a b" \'c\\\'d\' "\\x41\\n"'))?.map(String), [
    'set',
    'a b',
    "c'd",
    'A\n',
  ])
  t.equal(splitInline(Buffer.from('get "a"b')), undefined, 'a closing quote must end the word')
  t.equal(splitInline(Buffer.from('get "a')), undefined, 'unbalanced')

  const { framer, answered } = make()
  const reqs = [inline(''), inline('GET a', true), inline('   '), inline('INCR n')]
  framer.request(reqs[0]!)
  t.same(answered, [2], 'an empty line with nothing pending is released at once')
  t.equal(framer.pending(), 0)
  framer.request(Buffer.concat(reqs.slice(1)))
  t.equal(framer.pending(), 2, 'the blank line rides with the GET before it')
  t.notOk(framer.pendingSafe(), 'INCR is not safe')
  framer.response(r.bulk('1'))
  t.same(answered, [2, 2 + 6 + 5], 'GET and the blank line after it answered together')
  framer.response(r.int(1))
  t.same(answered.at(-1), ends(...reqs).at(-1))
  t.ok(framer.atBoundary())

  const empty = make()
  empty.framer.request(Buffer.from('*0\r\n*-1\r\n'))
  t.same(empty.answered, [4, 9], '*0 and *-1 get no reply')
})

t.test('a push answers nothing; responseOpen while it is open; attributes belong to the reply', async (t) => {
  const { framer, answered } = make()
  const push = r.push([r.bulk('invalidate'), r.array([r.bulk('k')])])
  t.equal(framer.response(push), undefined, 'a push with nothing pending is fine')
  t.same(answered, [])
  const req = cmd('GET', 'k')
  framer.request(req)
  t.equal(framer.response(push.subarray(0, 5)), undefined)
  t.ok(framer.responseOpen, 'open while the push is')
  t.equal(framer.openStart, 0)
  t.equal(framer.response(push.subarray(5)), undefined)
  t.notOk(framer.responseOpen)
  t.equal(framer.pending(), 1, 'still waiting for the reply')
  const attr = r.attribute([[r.simple('ttl'), r.int(5)]], r.bulk('v'))
  const attrOnly = attr.subarray(0, attr.length - r.bulk('v').length)
  t.equal(framer.response(Buffer.concat([r.simple('x').subarray(0, 0), attrOnly])), undefined)
  t.ok(framer.responseOpen, 'an attribute does not complete the reply')
  t.same(answered, [])
  t.equal(framer.response(Buffer.concat([push.subarray(0, 0), r.bulk('v'), push.subarray(0, 3)])), undefined)
  t.same(answered, [req.length])
  t.ok(framer.responseOpen, 'a push began after the reply')
  t.equal(framer.openStart, r.bulk('v').length)
  t.equal(framer.response(push.subarray(3)), undefined)
  t.ok(framer.atBoundary())
})

t.test('a reply with no request pending is malformed', async (t) => {
  const { framer } = make()
  framer.request(cmd('PING').subarray(0, 5))
  const error = framer.response(r.simple('PONG'))
  t.equal(error?.code, 'ERR_BATON_FRAME_MALFORMED')
  t.match(error?.message, /reply at offset 0: a reply without a request/)
  t.equal(framer.request(cmd('PING')), error, 'the framer stays failed')
})

t.test('every command in SAFE_COMMANDS is safe to re-send', async (t) => {
  for (const entry of SAFE_COMMANDS) {
    const { framer } = make()
    framer.request(cmd(...entry.split(' '), 'key', '1', 'member'))
    t.ok(framer.pendingSafe(), entry)
    const lower = make()
    lower.framer.request(inline(`${entry.toLowerCase()} key 1 member`))
    t.ok(lower.framer.pendingSafe(), `${entry} (inline, lower case)`)
  }
})

const UNSAFE = [
  'INCR',
  'INCRBY',
  'INCRBYFLOAT',
  'DECR',
  'DECRBY',
  'APPEND',
  'LPUSH',
  'RPUSH',
  'LPOP',
  'RPOP',
  'SPOP',
  'LMOVE',
  'RPOPLPUSH',
  'XADD',
  'HINCRBY',
  'HINCRBYFLOAT',
  'ZINCRBY',
  'PUBLISH',
  'EVAL',
  'EVALSHA',
  'FCALL',
  'GETSET',
  'GETDEL',
  'LREM',
  'LTRIM',
  'LINSERT',
  'RENAME',
  'SORT',
  'BITFIELD',
  'FLUSHALL',
  'EXEC',
  'BLPOP',
  'XREADGROUP',
  'CLIENT KILL',
  'CLIENT PAUSE',
  'NOSUCHCOMMAND',
  'A'.repeat(40),
]

t.test('non-idempotent and unknown commands are not safe', async (t) => {
  for (const entry of UNSAFE) {
    t.notOk(SAFE_COMMANDS.has(entry), `${entry} is not in the table`)
    const { framer } = make()
    framer.request(cmd(...entry.split(' '), 'key', '1'))
    t.notOk(framer.pendingSafe(), entry)
  }
  for (const args of [
    ['ZADD', 'z', 'INCR', '1', 'm'],
    ['zadd', 'z', 'nx', 'ch', 'incr', '1', 'm'],
  ]) {
    const { framer } = make()
    framer.request(cmd(...args))
    t.notOk(framer.pendingSafe(), `${args.join(' ')}: ZADD INCR is ZINCRBY`)
  }
  const zadd = make()
  zadd.framer.request(cmd('ZADD', 'z', 'NX', '1', 'INCR'))
  t.ok(zadd.framer.pendingSafe(), 'INCR as a member is no option')
})

t.test('pendingSafe looks at every unanswered request; a partial one is never run, so safe', async (t) => {
  const { framer } = make()
  framer.request(Buffer.concat([cmd('GET', 'a'), cmd('INCR', 'n'), cmd('GET', 'b')]))
  t.notOk(framer.pendingSafe())
  framer.response(r.bulk('1'))
  t.notOk(framer.pendingSafe(), 'INCR still unanswered')
  framer.response(r.int(2))
  t.ok(framer.pendingSafe())
  const incr = cmd('INCR', 'n')
  framer.request(incr.subarray(0, incr.length - 1))
  t.ok(framer.pendingSafe(), 'INCR without its last byte has not run')
  framer.request(incr.subarray(incr.length - 1))
  t.notOk(framer.pendingSafe())
})

t.test('blocking commands: pendingBlocking while the oldest unanswered request blocks', async (t) => {
  const blocking = [
    ['BLPOP', 'l', '0'],
    ['BRPOP', 'l', '0'],
    ['BLMOVE', 'a', 'b', 'LEFT', 'RIGHT', '0'],
    ['BRPOPLPUSH', 'a', 'b', '0'],
    ['BZPOPMIN', 'z', '0'],
    ['BZPOPMAX', 'z', '0'],
    ['BLMPOP', '0', '1', 'l', 'LEFT'],
    ['BZMPOP', '0', '1', 'z', 'MIN'],
    ['XREAD', 'COUNT', '1', 'BLOCK', '0', 'STREAMS', 's', '$'],
    ['xreadgroup', 'GROUP', 'g', 'c', 'block', '100', 'STREAMS', 's', '>'],
    ['WAIT', '1', '0'],
    ['WAITAOF', '1', '0', '0'],
  ]
  for (const args of blocking) {
    const { framer } = make()
    framer.request(cmd(...args))
    t.ok(framer.pendingBlocking?.(), args.join(' '))
    const behind = make()
    behind.framer.request(Buffer.concat([cmd('GET', 'a'), cmd(...args)]))
    t.notOk(behind.framer.pendingBlocking?.(), `${args[0]} behind a GET`)
    behind.framer.response(r.bulk('x'))
    t.ok(behind.framer.pendingBlocking?.(), `${args[0]} once the GET is answered`)
  }
  for (const args of [
    ['XREAD', 'COUNT', '1', 'STREAMS', 's', 'BLOCK'],
    ['GET', 'k'],
    ['XREADGROUP', 'GROUP', 'g', 'c', 'STREAMS', 's', '>'],
  ]) {
    const { framer } = make()
    framer.request(cmd(...args))
    t.notOk(framer.pendingBlocking?.(), args.join(' '))
  }
  const inlineXread = make()
  inlineXread.framer.request(inline('xread block 0 streams s $'))
  t.ok(inlineXread.framer.pendingBlocking?.(), 'inline XREAD BLOCK')
})

t.test('prologue: state commands recorded once answered OK, replaced in place', async (t) => {
  const { framer } = make()
  t.equal(framer.prologue?.(), undefined, 'none yet')
  framer.request(Buffer.concat([cmd('AUTH', 'user', 'pw'), cmd('select', '2'), cmd('GET', 'k')]))
  t.equal(framer.prologue?.(), undefined, 'not before the replies')
  framer.response(r.simple('OK'))
  t.same(framer.prologue?.()?.requests, [cmd('AUTH', 'user', 'pw')])
  framer.response(Buffer.concat([r.simple('OK'), r.bulk('v')]))
  t.same(framer.prologue?.()?.requests, [cmd('AUTH', 'user', 'pw'), cmd('SELECT', '2')])

  framer.request(
    Buffer.concat([
      inline('HELLO 3'),
      cmd('CLIENT', 'SETNAME', 'app'),
      inline('READONLY'),
      cmd('SELECT', '5'),
      inline('AUTH "bad password"'),
    ])
  )
  framer.response(
    Buffer.concat([
      r.map([[r.bulk('proto'), r.int(3)]]),
      r.simple('OK'),
      r.simple('OK'),
      r.simple('OK'),
      r.error('WRONGPASS invalid username-password pair'),
    ])
  )
  t.same(
    framer.prologue?.()?.requests,
    [
      cmd('AUTH', 'user', 'pw'),
      cmd('SELECT', '5'),
      cmd('HELLO', '3'),
      cmd('CLIENT', 'SETNAME', 'app'),
      cmd('READONLY'),
    ],
    'a later SELECT replaces the earlier; a failed AUTH is not recorded; inline ones re-encoded'
  )
  framer.request(cmd('READWRITE'))
  framer.response(r.simple('OK'))
  t.same(framer.prologue?.()?.requests.length, 4, 'READWRITE cancels READONLY')
  t.notOk(framer.pinned)
  framer.request(cmd('RESET'))
  framer.response(r.simple('RESET'))
  t.equal(framer.prologue?.(), undefined, 'RESET forgets it all')
})

t.test('prologue: a failed state command is not recorded, a blob error either', async (t) => {
  const { framer } = make()
  framer.request(
    Buffer.concat([cmd('AUTH', 'wrong'), cmd('SELECT', '99'), cmd('HELLO', '3', 'AUTH', 'u', 'p')])
  )
  framer.response(Buffer.concat([r.error('WRONGPASS'), r.blobError('ERR DB index is out of range')]))
  framer.response(r.attribute([[r.simple('x'), r.int(1)]], r.error('NOAUTH')))
  t.equal(framer.prologue?.(), undefined)
  t.notOk(framer.pinned)
})

t.test('prologue: a state command too long to keep pins the session', async (t) => {
  const { framer } = make()
  framer.request(cmd('AUTH', 'x'.repeat(5000)))
  t.ok(framer.pinned)
  framer.response(r.simple('OK'))
  t.equal(framer.prologue?.(), undefined)
})

t.test('swallowReply: each type, cut anywhere, resumable; errors flagged; pushes skipped', async (t) => {
  for (const { name, data, error } of everyReply()) {
    const failures: string[] = []
    for (let p = 0; p <= data.length; p++) {
      const { framer } = make()
      const tail = Buffer.from('+NEXT\r\n')
      const first = framer.swallowReply!(data.subarray(0, p))
      const rest = Buffer.concat([data.subarray(p), tail])
      const second = framer.swallowReply!(rest)
      if ('code' in first || 'code' in second) {
        failures.push(`cut at ${p}: an error`)
        continue
      }
      const whole = p === data.length
      const want1 = whole ? { used: p, complete: true, error } : { used: p, complete: false, error: false }
      if (JSON.stringify(first) !== JSON.stringify(want1) && !(p === 0 && first.used === 0)) {
        failures.push(`cut at ${p}: first ${JSON.stringify(first)}`)
      }
      const want2 = whole
        ? { used: tail.length, complete: true, error: false }
        : { used: data.length - p, complete: true, error }
      if (JSON.stringify(second) !== JSON.stringify(want2)) {
        failures.push(`cut at ${p}: second ${JSON.stringify(second)}`)
      }
    }
    t.same(failures, [], name)
  }
  const { framer } = make()
  const push = r.push([r.bulk('message'), r.bulk('x')])
  t.same(framer.swallowReply!(Buffer.concat([push, r.simple('OK'), push])), {
    used: push.length + 5,
    complete: true,
    error: false,
  })
  t.equal((framer.swallowReply!(Buffer.from('?bad\r\n')) as FramingError).code, 'ERR_BATON_FRAME_MALFORMED')
})

t.test('MULTI pins the session, and it stays pinned', async (t) => {
  const { framer, answered } = make()
  framer.request(cmd('GET', 'a'))
  t.notOk(framer.pinned)
  const tx = [cmd('MULTI'), cmd('INCR', 'n'), cmd('SET', 'a', '1'), cmd('EXEC')]
  framer.request(Buffer.concat(tx))
  t.ok(framer.pinned)
  framer.response(
    Buffer.concat([
      r.bulk('x'),
      r.simple('OK'),
      r.simple('QUEUED'),
      r.simple('QUEUED'),
      r.array([r.int(1), r.simple('OK')]),
    ])
  )
  t.same(answered, ends(cmd('GET', 'a'), ...tx), 'replies still pair with requests')
  t.ok(framer.atBoundary())
  t.ok(framer.pinned, 'still pinned after EXEC')
  const watch = make()
  watch.framer.request(inline('WATCH k'))
  t.ok(watch.framer.pinned, 'WATCH begins a transaction too')
})

t.test('SUBSCRIBE: once its turn comes, everything passes through', async (t) => {
  for (const [name, sub] of [
    ['SUBSCRIBE', cmd('SUBSCRIBE', 'a', 'b')],
    ['psubscribe (inline)', inline('psubscribe news.*')],
    ['SSUBSCRIBE', cmd('SSUBSCRIBE', 's')],
    ['MONITOR', cmd('MONITOR')],
    ['CLIENT REPLY OFF', cmd('CLIENT', 'REPLY', 'OFF')],
  ] as const) {
    const { framer, answered } = make()
    const get = cmd('GET', 'k')
    framer.request(Buffer.concat([get, sub, cmd('PING').subarray(0, 3)]))
    t.ok(framer.pinned, `${name}: pinned as soon as it is sent`)
    t.equal(framer.pending(), 3, `${name}: the GET's reply is still to come`)
    framer.response(r.bulk('v').subarray(0, 2))
    t.equal(framer.pending(), 3)
    const total = get.length + sub.length + 3
    // The GET's reply, then (RESP2) subscribe confirmations: arrays no request matches.
    const confirm = r.array([r.bulk('subscribe'), r.bulk('a'), r.int(1)])
    t.equal(framer.response(Buffer.concat([r.bulk('v').subarray(2), confirm, confirm])), undefined, name)
    t.same(answered, [get.length, total], `${name}: the GET answered, then every client byte released`)
    t.equal(framer.pending(), 0)
    t.notOk(framer.responseOpen)
    t.notOk(framer.atBoundary(), `${name}: never at a boundary again`)
    t.equal(framer.request(cmd('PING').subarray(3)), undefined)
    t.same(answered.at(-1), total + cmd('PING').length - 3)
    t.equal(
      framer.response(Buffer.from('garbage that is no RESP')),
      undefined,
      `${name}: no framing any more`
    )
    t.equal(framer.pending(), 0)
  }
  const { framer, answered } = make()
  framer.request(cmd('SUBSCRIBE', 'a'))
  t.same(answered, [cmd('SUBSCRIBE', 'a').length], 'with nothing before it: pass-through at once')
  const reply = make()
  reply.framer.request(cmd('CLIENT', 'REPLY', 'ON'))
  t.notOk(reply.framer.pinned, 'CLIENT REPLY ON replies')
})

t.test('RESP3 SUBSCRIBE behind an open push: pass-through waits for the push to end', async (t) => {
  const { framer, answered } = make()
  const push = r.push([r.bulk('invalidate'), r.array([r.bulk('k')])])
  framer.response(push.subarray(0, 4))
  const sub = cmd('SUBSCRIBE', 'c')
  framer.request(sub)
  t.same(answered, [], 'the push is still open')
  t.equal(framer.pending(), 1)
  framer.response(push.subarray(4))
  t.same(answered, [sub.length])
  t.equal(framer.pending(), 0)
})

t.test('CLIENT TRACKING ON pins; replies still pair, invalidation pushes answer nothing', async (t) => {
  const { framer, answered } = make()
  const reqs = [inline('HELLO 3'), cmd('client', 'tracking', 'on'), cmd('GET', 'k')]
  framer.request(Buffer.concat(reqs))
  t.ok(framer.pinned)
  framer.response(
    Buffer.concat([
      r.map([[r.bulk('proto'), r.int(3)]]),
      r.simple('OK'),
      r.push([r.bulk('invalidate'), r.array([r.bulk('k')])]),
      r.bulk('v'),
    ])
  )
  t.same(answered, ends(...reqs))
  const off = make()
  off.framer.request(cmd('CLIENT', 'TRACKING', 'OFF'))
  t.notOk(off.framer.pinned, 'TRACKING OFF does not pin')
})

t.test('restartResponse: the reply parser starts over', async (t) => {
  const { framer, answered } = make()
  const reqs = [cmd('GET', 'a'), cmd('LRANGE', 'l', '0', '-1')]
  framer.request(Buffer.concat(reqs))
  framer.response(r.bulk('a'))
  const list = r.array([r.bulk('x'), r.map([[r.int(1), r.int(2)]])])
  framer.response(list.subarray(0, 12))
  t.ok(framer.responseOpen)
  framer.restartResponse()
  t.notOk(framer.responseOpen)
  t.equal(framer.pending(), 1)
  t.equal(framer.response(list), undefined, 'the replacement sends the reply whole')
  t.same(answered, ends(...reqs))
})

t.test('errors: sizes, depth, bad type bytes, bad lengths', async (t) => {
  const options = { maxBulkBytes: 16, maxInlineBytes: 20, maxDepth: 3 }
  const requestCases: [string, Buffer, string][] = [
    ['bulk over maxBulkBytes', cmd('SET', 'k', 'x'.repeat(17)), 'ERR_BATON_FRAME_TOO_LARGE'],
    [
      'bulk length checked before the body',
      Buffer.from('*2\r\n$3\r\nGET\r\n$99999'),
      'ERR_BATON_FRAME_TOO_LARGE',
    ],
    ['inline over maxInlineBytes', inline('GET ' + 'k'.repeat(17)), 'ERR_BATON_FRAME_TOO_LARGE'],
    ['inline with no end', Buffer.from('x'.repeat(21)), 'ERR_BATON_FRAME_TOO_LARGE'],
    ['non-numeric count', Buffer.from('*x\r\n'), 'ERR_BATON_FRAME_MALFORMED'],
    ['empty count', Buffer.from('*\r\n'), 'ERR_BATON_FRAME_MALFORMED'],
    ['expected $', Buffer.from('*1\r\n+GET\r\n'), 'ERR_BATON_FRAME_MALFORMED'],
    ['negative bulk length', Buffer.from('*1\r\n$-1\r\n'), 'ERR_BATON_FRAME_MALFORMED'],
    ['CR without LF', Buffer.from('*1\r\r'), 'ERR_BATON_FRAME_MALFORMED'],
    ['bulk not ended by CRLF', Buffer.from('*1\r\n$3\r\nGETX\r\n'), 'ERR_BATON_FRAME_MALFORMED'],
    ['count over 2^31-1', Buffer.from('*2147483648\r\n'), 'ERR_BATON_FRAME_MALFORMED'],
  ]
  for (const [name, data, code] of requestCases) {
    const whole = make(options).framer.request(data)
    t.equal(whole?.code, code, name)
    const framer = make(options).framer
    const split = bytewise((c) => framer.request(c), data)
    t.same(split, whole, `${name}: byte by byte, the same error`)
  }
  const deep = (n: number): Buffer => Buffer.concat([Buffer.from('*1\r\n'.repeat(n)), r.int(1)])
  const replyCases: [string, Buffer, string | undefined][] = [
    ['depth 3 is fine', deep(3), undefined],
    ['depth 4 is too deep', deep(4), 'ERR_BATON_FRAME_TOO_LARGE'],
    [
      'map depth counts too',
      r.map([[r.int(1), r.set([r.array([r.array([r.int(1)])])])]]),
      'ERR_BATON_FRAME_TOO_LARGE',
    ],
    ['bulk over maxBulkBytes', r.bulk('x'.repeat(17)), 'ERR_BATON_FRAME_TOO_LARGE'],
    ['blob error over maxBulkBytes', r.blobError('x'.repeat(17)), 'ERR_BATON_FRAME_TOO_LARGE'],
    ['line over maxInlineBytes', r.simple('x'.repeat(21)), 'ERR_BATON_FRAME_TOO_LARGE'],
    ['line of maxInlineBytes', r.simple('x'.repeat(20)), undefined],
    ['bad type byte', Buffer.from('?1\r\n'), 'ERR_BATON_FRAME_MALFORMED'],
    ['bad type byte nested', Buffer.from('*2\r\n:1\r\nX\r\n'), 'ERR_BATON_FRAME_MALFORMED'],
    ['non-numeric length', Buffer.from('$abc\r\n'), 'ERR_BATON_FRAME_MALFORMED'],
    ['null map', Buffer.from('%-1\r\n'), 'ERR_BATON_FRAME_MALFORMED'],
    ['-2 length', Buffer.from('*-2\r\n'), 'ERR_BATON_FRAME_MALFORMED'],
    ['line ended by LF alone', Buffer.from('+OK\n'), 'ERR_BATON_FRAME_MALFORMED'],
    ['bulk not ended by CRLF', Buffer.from('$2\r\nabc\r\n'), 'ERR_BATON_FRAME_MALFORMED'],
    ["'.' outside a streamed aggregate", Buffer.from('*1\r\n.\r\n'), 'ERR_BATON_FRAME_MALFORMED'],
    ["';' outside a streamed string", Buffer.from(';1\r\na\r\n'), 'ERR_BATON_FRAME_MALFORMED'],
    ['a value inside a streamed string', Buffer.from('$?\r\n+a\r\n'), 'ERR_BATON_FRAME_MALFORMED'],
  ]
  for (const [name, data, code] of replyCases) {
    const one = make(options)
    one.framer.request(cmd('GET', 'k'))
    const whole = one.framer.response(data)
    t.equal(whole?.code, code, name)
    if (code === undefined) t.same(one.answered, [cmd('GET', 'k').length], `${name}: answered`)
    const two = make(options)
    two.framer.request(cmd('GET', 'k'))
    t.same(
      bytewise((c) => two.framer.response(c), data),
      whole,
      `${name}: byte by byte, the same error`
    )
    if (code !== undefined) t.notOk(two.framer.responseOpen)
  }
})

t.test('options are validated once, when the factory is made', async (t) => {
  t.throws(() => resp({ maxBulkBytes: 0 }), ConfigError)
  t.throws(() => resp({ maxDepth: 1.5 }), /resp\.maxDepth: expected a positive integer/)
  t.throws(() => resp({ maxInlineBytes: -1 }), /resp\.maxInlineBytes/)
  const framer = resp()({ answered: () => {} })
  t.equal(framer.delimited, true)
  t.equal(framer.request(cmd('SET', 'k', Buffer.alloc(1 << 20))), undefined, '1 MiB is under the default')
})

// Found by tests/fuzz/resp.test.ts ("one very long message"): a state command keeps its arguments
// for the prologue, and each empty one cost an entry of `argEnds` but nothing of the 4 KiB budget,
// so `*10001 $4 AUTH` and 10000 `$0` arguments made the framer hold 145 KB, growing with every one.
t.test('a state command with thousands of empty arguments: bounded memory, the session pins', async (t) => {
  for (const name of ['AUTH', 'HELLO', 'SELECT', 'CLIENT']) {
    const { framer, answered } = make()
    const head = Buffer.from(`*10001\r\n$${name.length}\r\n${name}\r\n`)
    const args = Buffer.from('$0\r\n\r\n'.repeat(10000))
    t.equal(framer.request(head), undefined)
    t.equal(framer.request(args), undefined)
    t.ok(retained(framer).bytes < 16 * 1024, `${name}: ${retained(framer).bytes} bytes retained`)
    t.equal(framer.response(r.simple('OK')), undefined)
    t.same(answered, [head.length + args.length])
    if (name === 'CLIENT') {
      t.notOk(framer.pinned, 'CLIENT with an empty subcommand is no state: nothing to pin')
    } else {
      t.ok(framer.pinned, `${name}: too many arguments to keep for a prologue: pinned`)
    }
    t.equal(framer.prologue!(), undefined)
  }
  // A real one is still kept.
  const { framer } = make()
  framer.request(cmd('HELLO', '3', 'AUTH', 'u', 'p', 'SETNAME', 'n'))
  framer.response(r.map([]))
  t.same(framer.prologue!()?.requests, [cmd('HELLO', '3', 'AUTH', 'u', 'p', 'SETNAME', 'n')])
  t.notOk(framer.pinned)
})
