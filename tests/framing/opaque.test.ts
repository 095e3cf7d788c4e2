import t from 'tap'
import { opaque } from '../../lib/framing/opaque.js'
import { recording } from './helpers/frames.js'

t.test('a request is the client bytes since the server last spoke', async (t) => {
  const { framer, answered } = recording(opaque)
  t.equal(framer.pending(), 0)
  t.ok(framer.atBoundary(), 'nothing sent yet')
  t.equal(framer.request(Buffer.from('GET ')), undefined)
  t.equal(framer.request(Buffer.from('/a\r\n')), undefined)
  t.equal(framer.pending(), 1, 'however many chunks, one turn is one request')
  t.notOk(framer.atBoundary())
  t.equal(framer.response(Buffer.from('H')), undefined)
  t.same(answered, [8], 'the first server byte answers everything seen')
  t.equal(framer.pending(), 0)
  t.ok(framer.atBoundary())
  framer.response(Buffer.from('TTP/1.1 200'))
  t.same(answered, [8], 'more server bytes answer nothing new')
  framer.request(Buffer.from('PING'))
  t.equal(framer.pending(), 1)
  framer.response(Buffer.from('PONG'))
  t.same(answered, [8, 12], 'offsets are absolute over the session')
})

t.test('a server that speaks first or unprompted answers nothing', async (t) => {
  const { framer, answered } = recording(opaque)
  t.equal(framer.response(Buffer.from('220 greetings\r\n')), undefined, 'a greeting is no framing error')
  t.same(answered, [])
  t.ok(framer.atBoundary())
  framer.request(Buffer.from('EHLO x\r\n'))
  framer.response(Buffer.from('250'))
  t.same(answered, [8])
})

t.test('client bytes that arrive while the server is speaking wait for its next word', async (t) => {
  const { framer, answered } = recording(opaque)
  framer.request(Buffer.from('abc'))
  framer.response(Buffer.from('1'))
  framer.request(Buffer.from('de'))
  t.equal(framer.pending(), 1)
  framer.response(Buffer.from('2'))
  t.same(answered, [3, 5])
  t.equal(framer.pending(), 0)
})

t.test('empty chunks, restartResponse and the fixed properties', async (t) => {
  const { framer, answered } = recording(opaque)
  framer.request(Buffer.alloc(0))
  t.ok(framer.atBoundary(), 'an empty chunk sends nothing')
  framer.request(Buffer.from('x'))
  framer.restartResponse()
  t.equal(framer.pending(), 1, 'a new server connection leaves the unanswered bytes unanswered')
  t.equal(framer.delimited, false, 'the close may delimit a response')
  t.equal(framer.responseOpen, false)
  t.equal(framer.openStart, -1)
  t.equal(framer.pendingSafe(), true)
  framer.response(Buffer.from('y'))
  t.same(answered, [1])
})
