/**
 * Client-first stateful protocols (issue 13, item 3): told from the first bytes, and an opaque
 * session pinned once the server has answered the handshake (not before: the handshake itself may
 * still be re-sent). The first bytes are real: a hello and an HTTP/2 preface captured from Node's
 * own clients at test time, and a PostgreSQL startup as psql sends it.
 */
import http2 from 'node:http2'
import t from 'tap'
import { classifyFirstBytes } from '../../lib/framing/client-first.js'
import { opaque, OpaqueFramer } from '../../lib/framing/opaque.js'
import { captureHello, nodeHello } from '../tls/helpers/capture.js'
import { recording } from './helpers/frames.js'

/** Node's http2 client with prior knowledge: its preface and first SETTINGS, as sent. */
function h2Preface(): Promise<Buffer> {
  return captureHello((port) => {
    const session = http2.connect(`http://127.0.0.1:${port}`)
    session.on('error', () => {})
    return () => session.destroy()
  }, 24) // parseClientHello says not-tls at once: the first chunk is kept
}

/** PostgreSQL StartupMessage (protocol 3.0) as psql sends it: user, database, application name. */
function pgStartup(): Buffer {
  const params = Buffer.from('user\0baton\0database\0baton\0application_name\0psql\0\0', 'latin1')
  const b = Buffer.alloc(8 + params.length)
  b.writeUInt32BE(b.length, 0)
  b.writeUInt32BE(0x00030000, 4)
  params.copy(b, 8)
  return b
}
const PG_SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])

t.test('first bytes: TLS, HTTP/2, PostgreSQL, and the rest', async (t) => {
  const hello = await nodeHello({ servername: 'a.example' })
  const preface = await h2Preface()
  t.equal(preface.subarray(0, 24).toString('latin1'), 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', "Node's h2 client sends the preface")
  t.equal(classifyFirstBytes(hello), 'tls')
  t.equal(classifyFirstBytes(preface), 'h2')
  t.equal(classifyFirstBytes(pgStartup()), 'postgres')
  t.equal(classifyFirstBytes(PG_SSL_REQUEST), 'postgres', 'SSLRequest')
  for (const other of ['GET / HTTP/1.1\r\n', '*1\r\n$4\r\nPING\r\n', 'PRIVMSG #a :hi\r\n', 'POST / HTTP/1.1\r\n']) {
    t.equal(classifyFirstBytes(Buffer.from(other)), 'other', JSON.stringify(other))
  }
  t.equal(classifyFirstBytes(Buffer.from([0x16, 0x03, 0x01, 0, 5, 0x02])), 'other', 'a handshake record that is no ClientHello')
  t.equal(classifyFirstBytes(Buffer.from([0, 0, 0, 8, 0, 0, 0, 1])), 'other', 'a length-prefixed frame that is no startup')
  // Every prefix of each either says `more` or already knows.
  for (const [name, whole] of [['tls', hello], ['h2', preface], ['postgres', pgStartup()]] as const) {
    for (let i = 0; i < Math.min(whole.length, 24); i++) {
      const k = classifyFirstBytes(whole.subarray(0, i))
      if (k !== 'more' && k !== name) t.fail(`${name} prefix of ${i}: ${k}`)
    }
  }
})

t.test('opaque: pinned once the server answers a client-first handshake, not before', async (t) => {
  const hello = await nodeHello({ servername: 'a.example' })
  const preface = await h2Preface()
  for (const [name, first] of [['tls', hello], ['h2', preface], ['postgres', pgStartup()], ['postgres', PG_SSL_REQUEST]] as const) {
    for (const split of [1, 3, 7, first.length]) {
      const { framer, answered } = recording(opaque)
      for (let i = 0; i < first.length; i += split) framer.request(first.subarray(i, i + split))
      t.notOk(framer.pinned, `${name} in ${split}-byte pieces: not pinned before the answer (the handshake may be re-sent)`)
      t.equal(framer.pending(), 1)
      framer.response(Buffer.from([0x16]))
      t.ok(framer.pinned, `${name} in ${split}-byte pieces: pinned by the server's first byte`)
      t.equal((framer as OpaqueFramer).clientFirst, name)
      t.same(answered, [first.length])
    }
  }
})

t.test('opaque: other protocols stay replayable', async (t) => {
  for (const first of ['GET / HTTP/1.1\r\nHost: a\r\n\r\n', 'P', '\0\0']) {
    const { framer } = recording(opaque)
    framer.request(Buffer.from(first))
    framer.response(Buffer.from('ok'))
    t.notOk(framer.pinned, `${JSON.stringify(first)}: not pinned`)
    framer.request(Buffer.from([0x16, 0x03, 0x01, 0, 5, 1]))
    framer.response(Buffer.from('ok'))
    t.notOk(framer.pinned, 'a handshake-looking request later in the session is not a session start')
  }
})
