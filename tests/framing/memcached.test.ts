/**
 * The memcached framer's rules one by one (the conformance suite covers every cut of random
 * streams): where `noreply` counts, what is safe to re-send, quiet meta commands and `mn`, what pins
 * a session, `quit`, the reply shapes of `stats`, and the limits.
 */
import t from 'tap'
import { memcached } from '../../lib/protocols/memcached/framer.js'
import type { Framer, FramerExtras } from '../../lib/framing/types.js'

const b = (s: string): Buffer => Buffer.from(s, 'latin1')

function framer(options?: Parameters<typeof memcached>[0]): { f: Framer & FramerExtras; answered: number[] } {
  const answered: number[] = []
  const f = memcached(options)({ answered: (upTo) => answered.push(upTo) })
  return { f, answered }
}

t.test('noreply counts only where memcached reads it', async (t) => {
  const { f, answered } = framer()
  f.request(b('set k 0 0 1 noreply\r\nx\r\n'))
  t.same(answered, [24], 'set … noreply: no reply, released at once while nothing is pending')
  f.request(b('delete noreply\r\n'))
  t.equal(f.pending(), 1, '`delete noreply` deletes the key "noreply" and is answered')
  f.request(b('delete k 0 noreply\r\n'))
  t.equal(f.pending(), 1, 'delete k 0 noreply: no reply, released with the request before it')
  f.request(b('set k 0 0 1 7 noreply\r\n'))
  t.equal(f.pending(), 2, 'a set with too many words is answered ERROR (and reads no data)')
  f.response(b('DELETED\r\n'))
  t.same(answered, [24, 60], 'the reply releases the silent request after it too')
  f.response(b('ERROR\r\n'))
  t.equal(f.pending(), 0)
  t.ok(f.atBoundary())
})

t.test('what may be re-sent under replay: safe', async (t) => {
  const cases: [string, boolean][] = [
    ['get a b c\r\n', true],
    ['gets a\r\n', true],
    ['gat 10 a\r\n', true],
    ['set k 0 0 1\r\nx\r\n', true],
    ['replace k 0 0 1\r\nx\r\n', true],
    ['delete k\r\n', true],
    ['touch k 10\r\n', true],
    ['add k 0 0 1\r\nx\r\n', false],
    ['append k 0 0 1\r\nx\r\n', false],
    ['prepend k 0 0 1\r\nx\r\n', false],
    ['cas k 0 0 1 99\r\nx\r\n', false],
    ['incr k 1\r\n', false],
    ['decr k 1\r\n', false],
    ['mg k v t\r\n', true],
    ['ms k 1 T30\r\nx\r\n', true],
    ['ms k 1 MR\r\nx\r\n', true],
    ['ms k 1 ME\r\nx\r\n', false],
    ['ms k 1 Ma\r\nx\r\n', false],
    ['ms k 1 C12\r\nx\r\n', false],
    ['md k\r\n', true],
    ['md k C12\r\n', false],
    ['ma k\r\n', false],
    ['flush_all\r\n', false],
    ['version\r\n', true],
    ['bogus\r\n', false],
  ]
  for (const [request, safe] of cases) {
    const { f } = framer()
    t.equal(f.request(b(request)), undefined)
    t.equal(f.pending(), 1, `${JSON.stringify(request)} is whole`)
    t.equal(f.pendingSafe(), safe, `${JSON.stringify(request)}: ${safe ? 'safe' : 'not safe'}`)
  }
  const { f } = framer()
  f.request(b('set k 0 0 5\r\nab'))
  t.ok(f.pendingSafe(), 'a partial request is safe: memcached has not run it')
})

t.test('a retrieval reply is open until END; its VALUE blocks may hold CRLF and END', async (t) => {
  const { f, answered } = framer()
  f.request(b('get a b\r\n'))
  f.response(b('VALUE a 0 7\r\nEND\r\n\r\n\r\n'))
  t.ok(f.responseOpen, 'after a VALUE block, still open')
  t.same(answered, [])
  f.response(b('VALUE b 1 0\r\n\r\nEN'))
  t.ok(f.responseOpen)
  f.response(b('D\r\n'))
  t.notOk(f.responseOpen)
  t.same(answered, [9])
})

t.test('quiet meta commands and the mn that ends their run answer together', async (t) => {
  const { f, answered } = framer()
  f.request(b('mg a v q\r\nmg b v q\r\nms c 1 q\r\nx\r\nmn\r\n'))
  t.equal(f.pending(), 4)
  f.response(b('VA 1\r\nA\r\n'))
  t.ok(f.responseOpen, 'a hit for one of them: the run is answered in part')
  t.same(answered, [])
  f.response(b('NS\r\n'))
  t.ok(f.responseOpen)
  f.response(b('MN\r\n'))
  t.same(answered, [37], 'MN answers the whole run')
  t.equal(f.pending(), 0)
  t.ok(f.atBoundary())
  t.notOk(f.pinned)
})

t.test('a quiet run not ended by mn, watch and lru_crawler mgdump pin the session', async (t) => {
  for (const tail of ['get x\r\n', 'watch\r\n', 'lru_crawler mgdump all\r\n']) {
    const { f, answered } = framer()
    f.request(b(`mg a v q\r\n${tail}`))
    t.ok(f.pinned, `${JSON.stringify(tail)}: pinned`)
    t.equal(f.pending(), 0, 'every byte passes through')
    t.equal(answered.at(-1), 10 + tail.length)
    t.equal(f.response(b('anything at all\r\nEN\r\n')), undefined, 'server bytes are not framed')
    t.notOk(f.atBoundary(), 'and there is no clean boundary any more')
  }
})

t.test('quit: no reply, and the FIN that follows goes on to the client', async (t) => {
  const { f, answered } = framer()
  t.notOk(f.closeAfter)
  f.request(b('quit\r\n'))
  t.same(answered, [6])
  t.ok(f.closeAfter)
})

t.test('stats: a list until END, except stats reset and stats detail on|off', async (t) => {
  const { f, answered } = framer()
  f.request(b('stats\r\nstats reset\r\nstats detail on\r\nstats detail dump\r\nstats items\r\n'))
  f.response(b('STAT pid 1\r\nSTAT uptime 2\r\n'))
  t.same(answered, [])
  f.response(b('END\r\nRESET\r\nOK\r\nPREFIX a get 1\r\nEND\r\nSERVER_ERROR x\r\n'))
  t.same(answered, [7, 20, 37, 56, 69], 'an error line ends a list')
  t.equal(f.pending(), 0)
})

t.test('errors: binary protocol, lines and values over the limits, replies without requests', async (t) => {
  let { f } = framer()
  t.equal(f.request(Buffer.from([0x80, 1, 0, 0]))?.code, 'ERR_BATON_FRAME_MALFORMED', 'binary protocol')
  ;({ f } = framer())
  t.equal(f.request(b(`delete ${'k'.repeat(2100)}\r\n`))?.code, 'ERR_BATON_FRAME_TOO_LARGE', 'a 2 KiB delete')
  ;({ f } = framer())
  t.equal(f.request(b(`get ${'k '.repeat(5000)}\r\n`)), undefined, 'a 10 KiB multi-get is fine')
  t.equal(f.request(b(`get ${'k'.repeat(70_000)}`))?.code, 'ERR_BATON_FRAME_TOO_LARGE', 'over maxLineBytes')
  ;({ f } = framer({ maxValueBytes: 100 }))
  t.equal(f.request(b('set k 0 0 101\r\n'))?.code, 'ERR_BATON_FRAME_TOO_LARGE', 'a value over maxValueBytes')
  ;({ f } = framer())
  t.equal(f.response(b('STORED\r\n'))?.code, 'ERR_BATON_FRAME_MALFORMED', 'a reply without a request')
  ;({ f } = framer())
  f.request(b('get a\r\n'))
  t.equal(
    f.response(b('VALUE a 0 x\r\n'))?.code,
    'ERR_BATON_FRAME_MALFORMED',
    'a VALUE line without a length'
  )
  t.throws(() => memcached({ maxLineBytes: 0 }), { code: 'ERR_BATON_CONFIG' })
})

t.test('a length that is not a number: memcached reads no data block, nor does the framer', async (t) => {
  const { f, answered } = framer()
  f.request(b('set k 0 0 -1\r\nhello\r\n'))
  t.equal(f.pending(), 2, 'the line, then "hello" as a command (memcached answers both ERROR)')
  f.response(b('CLIENT_ERROR bad command line format\r\nERROR\r\n'))
  t.same(answered, [14, 21])
})
