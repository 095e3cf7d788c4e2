import { randomBytes } from 'node:crypto'
import t, { type Test } from 'tap'
import { parseClientHello, type HelloResult } from '../../lib/tls/client-hello.js'
import { nodeHello, refragment } from './helpers/capture.js'

/** A ClientHello built from parts, for the cases no real client sends. */
function build(o: { exts?: Buffer[]; version?: number; sid?: number; suites?: number; comp?: number; type?: number } = {}): Buffer {
  const exts = Buffer.concat(o.exts ?? [])
  const sid = o.sid ?? 32
  const suites = o.suites ?? 4
  const comp = o.comp ?? 1
  const body = Buffer.concat([
    u16(o.version ?? 0x0303),
    Buffer.alloc(32, 7),
    Buffer.from([sid]),
    Buffer.alloc(Math.max(0, Math.min(sid, 32)), 1),
    u16(suites),
    Buffer.alloc(suites, 0x13),
    Buffer.from([comp]),
    Buffer.alloc(comp, 0),
    o.exts === undefined ? Buffer.alloc(0) : Buffer.concat([u16(exts.length), exts]),
  ])
  const hs = Buffer.concat([Buffer.from([o.type ?? 1]), u24(body.length), body])
  return records(hs)
}

function records(hs: Buffer, size = 16384): Buffer {
  const out: Buffer[] = []
  for (let i = 0; i < hs.length; i += size) {
    const frag = hs.subarray(i, i + size)
    out.push(Buffer.from([0x16, 0x03, 0x01]), u16(frag.length), frag)
  }
  return Buffer.concat(out)
}

const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff])
const u24 = (n: number): Buffer => Buffer.from([n >> 16, (n >> 8) & 0xff, n & 0xff])
const ext = (type: number, data: Buffer): Buffer => Buffer.concat([u16(type), u16(data.length), data])
function sni(...names: string[]): Buffer {
  const list = Buffer.concat(names.map((n) => Buffer.concat([Buffer.from([0]), u16(n.length), Buffer.from(n, 'latin1')])))
  return ext(0, Buffer.concat([u16(list.length), list]))
}
function alpn(...protos: string[]): Buffer {
  const list = Buffer.concat(protos.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p)])))
  return ext(16, Buffer.concat([u16(list.length), list]))
}

function kind(r: HelloResult): string {
  return r.kind === 'malformed' ? `malformed: ${r.reason}` : r.kind
}

/** Every proper prefix says `more` (and asks for more than it has); the whole says `hello`. */
function everyPrefix(t: Test, hello: Buffer, max?: number): void {
  let bad = 0
  for (let i = 0; i < hello.length; i++) {
    const r = parseClientHello(hello.subarray(0, i), max)
    if (r.kind !== 'more' || r.need <= i || r.need > hello.length) {
      if (bad++ < 3) t.fail(`prefix of ${i}/${hello.length} bytes: ${kind(r)}`)
    }
  }
  t.equal(bad, 0, `all ${hello.length} proper prefixes ask for more`)
}


t.test("Node's tls.connect: server name and ALPN, split at every byte", async (t) => {
  const hello = await nodeHello({ servername: 'Api.Example.com', ALPNProtocols: ['h2', 'http/1.1'] })
  const r = parseClientHello(hello)
  t.equal(r.kind, 'hello')
  if (r.kind !== 'hello') return
  t.equal(r.serverName, 'api.example.com', 'lower case')
  t.same(r.alpn, ['h2', 'http/1.1'])
  t.equal(r.bytes, hello.length)
  t.equal(r.version, 0x0303)
  everyPrefix(t, hello)
  const more = parseClientHello(Buffer.concat([hello, Buffer.from('early data')]))
  t.equal(more.kind === 'hello' && more.bytes, hello.length, 'bytes after the hello records are not its own')
})

t.test("Node's tls.connect to an address: no server name, no ALPN", async (t) => {
  const hello = await nodeHello({})
  const r = parseClientHello(hello)
  t.equal(r.kind, 'hello')
  if (r.kind !== 'hello') return
  t.equal(r.serverName, undefined, 'Node sends no SNI for an IP address')
  t.same(r.alpn, [])
})

t.test('a real hello across many records (re-framed), split at every byte', async (t) => {
  const hello = await nodeHello({ servername: 'db.internal', ALPNProtocols: ['postgresql'] })
  for (const size of [1, 2, 7, 100]) {
    const many = refragment(hello, size)
    const r = parseClientHello(many, 64 * 1024)
    t.equal(r.kind === 'hello' && `${r.serverName} ${r.alpn.join(',')} ${r.bytes}`, `db.internal postgresql ${many.length}`, `records of ${size} bytes`)
  }
  everyPrefix(t, refragment(hello, 100))
  // 1-byte records: 6 bytes per hello byte.
  const bound = hello.length * 4
  t.equal(parseClientHello(refragment(hello, 2), bound).kind, 'hello', `${hello.length}-byte hello in 2-byte records fits ${bound}`)
  t.equal(parseClientHello(refragment(hello, 1), bound).kind, 'too-large', 'record headers count against maxBytes')
})

t.test('not TLS: decided from the first bytes', async (t) => {
  t.equal(parseClientHello(Buffer.from('GET / HTTP/1.1\r\n')).kind, 'not-tls')
  t.equal(parseClientHello(Buffer.from([0x80, 0x2e, 0x01])).kind, 'not-tls', 'an SSLv2-style hello')
  t.equal(parseClientHello(Buffer.from([0x16, 0x02])).kind, 'not-tls')
  t.equal(parseClientHello(Buffer.from([0x16, 0x03, 0x09])).kind, 'not-tls')
  t.equal(parseClientHello(Buffer.from([0x17, 0x03, 0x03, 0, 1, 0])).kind, 'not-tls', 'application data first')
  t.same(parseClientHello(Buffer.alloc(0)), { kind: 'more', need: 5 })
  t.same(parseClientHello(Buffer.from([0x16])), { kind: 'more', need: 5 })
})

t.test('built hellos: names, ALPN, no extensions', async (t) => {
  const r = parseClientHello(build({ exts: [sni('WWW.Example.COM.'), alpn('http/1.1')] }))
  t.same(r.kind === 'hello' && [r.serverName, r.alpn], ['www.example.com', ['http/1.1']], 'trailing dot dropped')
  const none = parseClientHello(build())
  t.same(none.kind === 'hello' && [none.serverName, none.alpn], [undefined, []], 'a hello with no extensions block')
  const empty = parseClientHello(build({ exts: [ext(0, Buffer.alloc(0))] }))
  t.equal(empty.kind === 'hello' && empty.serverName, undefined, 'an empty server_name extension names nothing')
  const other = Buffer.concat([Buffer.from([1]), u16(3), Buffer.from('abc')])
  const skip = parseClientHello(build({ exts: [ext(0, Buffer.concat([u16(other.length + 8), other, Buffer.from([0]), u16(5), Buffer.from('a.b.c')]))] }))
  t.equal(skip.kind === 'hello' && skip.serverName, 'a.b.c', 'unknown name types are skipped')
})

t.test('malformed hellos are refused with a reason', async (t) => {
  const cases: [string, Buffer][] = [
    ['a ServerHello', build({ type: 2 })],
    ['an empty record', Buffer.from([0x16, 0x03, 0x01, 0, 0])],
    ['a record over 2^14', Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), u16(16385), Buffer.alloc(16385)])],
    ['a bad legacy_version', build({ version: 0x0200 })],
    ['a session id over 32', build({ sid: 33 })],
    ['an odd cipher_suites length', build({ suites: 3 })],
    ['no compression method', build({ comp: 0 })],
    ['two server_name extensions', build({ exts: [sni('a.example'), sni('b.example')] })],
    ['two host_name entries', build({ exts: [sni('a.example', 'b.example')] })],
    ['a NUL in the name', build({ exts: [sni('a\0.example')] })],
    ['an empty label', build({ exts: [sni('a..example')] })],
    ['a non-ASCII name', build({ exts: [sni('caf\u00e9.example')] })],
    ['an empty ALPN name', build({ exts: [alpn('h2', '')] })],
    ['an empty ALPN list', build({ exts: [ext(16, u16(0))] })],
  ]
  for (const [what, bytes] of cases) {
    const r = parseClientHello(bytes, 64 * 1024)
    t.equal(r.kind, 'malformed', `${what}: ${kind(r)}`)
  }
  const good = build({ exts: [sni('a.example')] })
  // Extensions length one more than what follows.
  const longer = Buffer.from(good)
  const extAt = good.length - sni('a.example').length - 2
  longer.writeUInt16BE(longer.readUInt16BE(extAt) + 1, extAt)
  t.equal(parseClientHello(longer).kind, 'malformed', 'extensions length past the hello')
  // The handshake message ends before its last record does.
  const tail = Buffer.from(good)
  tail.writeUInt16BE(tail.readUInt16BE(3) + 1, 3)
  t.equal(parseClientHello(Buffer.concat([tail, Buffer.from([0])])).kind, 'malformed', 'bytes after the hello in its record')
  // An alert record between two records of the hello.
  const two = refragment(good, 20)
  const cut = 5 + 20
  const alert = Buffer.from([0x15, 0x03, 0x03, 0, 2, 2, 40])
  const mixed = Buffer.concat([two.subarray(0, cut), alert, two.subarray(cut)])
  t.equal(parseClientHello(mixed).kind, 'malformed', 'a non-handshake record inside the hello')
  t.equal(parseClientHello(mixed.subarray(0, cut + 1)).kind, 'malformed', '... seen from its first byte')
})

t.test('size bound: known as early as the lengths say it', async (t) => {
  const big = build({ exts: [sni('big.example'), ext(21, Buffer.alloc(20_000))] })
  t.equal(parseClientHello(big).kind, 'too-large', 'a 20 KB hello against the 16 KiB default')
  const r = parseClientHello(big, 32 * 1024)
  t.equal(r.kind === 'hello' && r.serverName, 'big.example', 'read whole under a larger bound')
  t.equal(parseClientHello(big.subarray(0, 5)).kind, 'too-large', 'a first record of 2^14 cannot fit: refused from its header')
  // Small records: the handshake header's 24-bit length is already too much.
  const hs = big.subarray(5)
  const framed = Buffer.concat([Buffer.from([0x16, 3, 1]), u16(100), hs.subarray(0, 100)])
  t.equal(parseClientHello(framed.subarray(0, 9)).kind, 'too-large', 'refused from 9 bytes')
  t.equal(parseClientHello(framed.subarray(0, 8)).kind, 'more', 'not before the length is whole')
  const small = build({ exts: [sni('a.example')] })
  t.equal(parseClientHello(small, small.length).kind, 'hello', 'exactly at the bound')
  t.equal(parseClientHello(small, small.length - 1).kind, 'too-large', 'one byte past it')
})

t.test('random corruption never throws and never reads past the bound', async (t) => {
  const hello = await nodeHello({ servername: 'fuzz.example', ALPNProtocols: ['h2'] })
  const kinds = new Map<string, number>()
  for (let i = 0; i < 3000; i++) {
    const b = Buffer.from(hello)
    const flips = 1 + (i % 4)
    const rnd = randomBytes(flips * 3)
    for (let j = 0; j < flips; j++) b[rnd.readUInt16BE(j * 3) % b.length] = rnd[j * 3 + 2]!
    const cut = i % 7 === 0 ? b.subarray(0, rnd.readUInt16BE(0) % b.length) : b
    const r = parseClientHello(cut, 1024)
    kinds.set(r.kind, (kinds.get(r.kind) ?? 0) + 1)
    if (r.kind === 'hello' && r.bytes > cut.length) t.fail('a hello longer than its input')
  }
  t.ok((kinds.get('malformed') ?? 0) > 0 && (kinds.get('hello') ?? 0) > 0, `results: ${JSON.stringify([...kinds])}`)
})
