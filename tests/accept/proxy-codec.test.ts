/**
 * The PROXY protocol codec (lib/accept/proxy/codec.ts): strict and bounded parsing of v1 and v2,
 * the encoder, and properties over random headers and random bytes (fast-check).
 */
import fc from 'fast-check'
import t from 'tap'
import {
  encodeV1,
  encodeV2,
  looksLikeProxy,
  MAX_V1_BYTES,
  MAX_V2_BYTES,
  parseProxy,
  V2_SIGNATURE,
} from '../../lib/accept/proxy/codec.js'

const line = (s: string): Buffer => Buffer.from(s, 'latin1')

function v2(verCmd: number, famProto: number, body: Buffer): Buffer {
  const head = Buffer.alloc(16)
  V2_SIGNATURE.copy(head)
  head[12] = verCmd
  head[13] = famProto
  head.writeUInt16BE(body.length, 14)
  return Buffer.concat([head, body])
}

t.test('v1: TCP4, TCP6 and UNKNOWN, with the bytes after the line left alone', async (t) => {
  const r = parseProxy(line('PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET /'))
  t.ok(r.ok)
  if (!r.ok) return
  t.equal(r.length, 45)
  t.match(r.header, {
    version: 1,
    family: 'tcp4',
    sourceAddress: '192.0.2.1',
    sourcePort: 56324,
    destinationAddress: '198.51.100.2',
    destinationPort: 443,
  })
  const six = parseProxy(line('PROXY TCP6 2001:db8::1 ::1 1 65535\r\n'))
  t.ok(six.ok && six.header.family === 'tcp6' && six.header.sourceAddress === '2001:db8::1')
  const unknown = parseProxy(line('PROXY UNKNOWN whatever follows\r\nx'))
  t.ok(unknown.ok && unknown.header.family === 'unknown' && unknown.length === 32)
})

t.test('v1: strict', async (t) => {
  const bad = [
    'PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\n', // LF without CR
    'PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\rx', // CR without LF
    'PROXY TCP5 192.0.2.1 198.51.100.2 1 2\r\n',
    'PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n', // wrong family
    'PROXY TCP6 192.0.2.1 ::1 1 2\r\n',
    'PROXY TCP4 192.0.2.1 198.51.100.2 65536 2\r\n',
    'PROXY TCP4 192.0.2.1 198.51.100.2 01 2\r\n', // leading zero
    'PROXY TCP4 192.0.2.1 198.51.100.2 1 -2\r\n',
    'PROXY TCP4 192.0.2.1  198.51.100.2 1 2\r\n', // two spaces
    'PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n',
    'PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n',
    'PROXY TCP4 192.0.2.1 198.51.100.2 1 2\x00\r\n',
  ]
  for (const b of bad) {
    const r = parseProxy(line(b))
    t.ok(!r.ok && !r.incomplete && r.error === 'invalid', JSON.stringify(b))
  }
  const long = parseProxy(line(`PROXY UNKNOWN ${'x'.repeat(200)}`))
  t.ok(!long.ok && !long.incomplete && long.error === 'too-long', 'no CRLF within 107 bytes')
  const exactly = `PROXY UNKNOWN ${'x'.repeat(MAX_V1_BYTES - 16)}\r\n`
  t.equal(exactly.length, MAX_V1_BYTES)
  t.ok(parseProxy(line(exactly)).ok, 'a 107-byte line is accepted')
  const missing = parseProxy(line('GET / HTTP/1.1\r\n'))
  t.ok(!missing.ok && !missing.incomplete && missing.error === 'missing', 'no signature: missing')
})

t.test('v2: IPv4, IPv6, Unix, LOCAL, TLVs', async (t) => {
  const a4 = Buffer.from([192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0x01, 0xbb])
  const tlv = Buffer.from([0x01, 0x00, 0x02, 0x68, 0x32, 0xe0, 0x00, 0x00]) // ALPN "h2", an empty custom one
  const r = parseProxy(Buffer.concat([v2(0x21, 0x11, Buffer.concat([a4, tlv])), Buffer.from('rest')]))
  t.ok(r.ok)
  if (!r.ok) return
  t.equal(r.length, 16 + 12 + 8)
  t.match(r.header, {
    version: 2,
    command: 'proxy',
    family: 'tcp4',
    sourceAddress: '192.0.2.1',
    sourcePort: 56324,
    destinationAddress: '198.51.100.2',
    destinationPort: 443,
  })
  t.same(
    r.header.tlvs?.map((x) => [x.type, x.value.toString()]),
    [
      [1, 'h2'],
      [0xe0, ''],
    ]
  )
  const a6 = Buffer.alloc(36)
  a6[15] = 1 // ::1
  a6.writeUInt16BE(0x2001, 16)
  a6.writeUInt16BE(0x0db8, 18)
  a6[35] = 80
  const six = parseProxy(v2(0x21, 0x21, a6))
  t.ok(six.ok && six.header.sourceAddress === '::1' && six.header.destinationAddress === '2001:db8::')
  const unix = Buffer.alloc(216)
  unix.write('/run/a.sock', 0)
  const u = parseProxy(v2(0x21, 0x31, unix))
  t.ok(u.ok && u.header.family === 'unix' && u.header.sourceAddress === '/run/a.sock')
  const local = parseProxy(v2(0x20, 0x00, Buffer.alloc(0)))
  t.ok(local.ok && local.header.command === 'local' && local.length === 16, 'LOCAL with no addresses')
  const localAddr = parseProxy(v2(0x20, 0x11, a4))
  t.ok(localAddr.ok && localAddr.header.sourceAddress === undefined, 'LOCAL: the address block is skipped')
})

t.test('v2: strict and bounded', async (t) => {
  const a4 = Buffer.alloc(12)
  const cases: [string, Buffer][] = [
    ['version 1', v2(0x11, 0x11, a4)],
    ['command 2', v2(0x22, 0x11, a4)],
    ['family 4', v2(0x21, 0x41, a4)],
    ['protocol 3', v2(0x21, 0x13, a4)],
    ['UDP', v2(0x21, 0x12, a4)],
    ['address block short', v2(0x21, 0x11, Buffer.alloc(11))],
    ['TLV cut short', v2(0x21, 0x11, Buffer.concat([a4, Buffer.from([1, 0])]))],
    ['TLV longer than the header', v2(0x21, 0x11, Buffer.concat([a4, Buffer.from([1, 0, 9, 1])]))],
  ]
  for (const [what, b] of cases) {
    const r = parseProxy(b)
    t.ok(!r.ok && !r.incomplete && r.error === 'invalid', what)
  }
  const big = Buffer.alloc(16)
  V2_SIGNATURE.copy(big)
  big[12] = 0x21
  big[13] = 0x11
  big.writeUInt16BE(MAX_V2_BYTES, 14)
  const r = parseProxy(big)
  t.ok(!r.ok && !r.incomplete && r.error === 'too-long', 'refused from the length field, before the bytes come')
})

t.test('encode → parse round trips (and IPv4-mapped addresses are written as TCP4)', async (t) => {
  const one = parseProxy(
    encodeV1({ sourceAddress: '::ffff:127.0.0.1', sourcePort: 5, destinationAddress: '127.0.0.2', destinationPort: 6 })
  )
  t.ok(one.ok && one.header.family === 'tcp4' && one.header.sourceAddress === '127.0.0.1')
  const mixed = parseProxy(
    encodeV2({ sourceAddress: '2001:db8::5', sourcePort: 5, destinationAddress: '127.0.0.2', destinationPort: 6 })
  )
  t.ok(mixed.ok && mixed.header.family === 'tcp6' && mixed.header.destinationAddress === '::ffff:7f00:2')
  const unix = parseProxy(encodeV1({ sourceAddress: '', sourcePort: 0, destinationAddress: '', destinationPort: 0 }))
  t.ok(unix.ok && unix.header.family === 'unknown', 'no address: UNKNOWN')
  const crc = parseProxy(
    encodeV2({
      sourceAddress: '127.0.0.1',
      sourcePort: 1,
      destinationAddress: '127.0.0.1',
      destinationPort: 2,
      tlvs: [
        { type: 3, value: Buffer.alloc(4) },
        { type: 0xe1, value: Buffer.from('kept') },
      ],
    })
  )
  t.same(crc.ok && crc.header.tlvs?.map((x) => x.type), [0xe1], 'CRC32C dropped, the rest passed on')

  const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join('.'))
  const ipv6 = fc.ipV6()
  const port = fc.nat(65535)
  const tlvs = fc.array(
    fc.record({ type: fc.integer({ min: 0, max: 255 }).filter((x) => x !== 3), value: fc.uint8Array({ maxLength: 40 }) }),
    { maxLength: 4 }
  )
  fc.assert(
    fc.property(
      fc.oneof(fc.tuple(ipv4, ipv4), fc.tuple(ipv6, ipv6)),
      port,
      port,
      tlvs,
      fc.boolean(),
      ([src, dst], sp, dp, tl, useV1) => {
        const a = {
          sourceAddress: src,
          sourcePort: sp,
          destinationAddress: dst,
          destinationPort: dp,
          tlvs: tl.map((x) => ({ type: x.type, value: Buffer.from(x.value) })),
        }
        const bytes = useV1 ? encodeV1(a) : encodeV2(a)
        const r = parseProxy(Buffer.concat([bytes, Buffer.from('after')]))
        if (!r.ok || r.length !== bytes.length) return false
        // Every strict prefix is incomplete, never an error: a header split across reads is waited for.
        for (let i = 0; i < bytes.length; i++) {
          const p = parseProxy(bytes.subarray(0, i))
          if (p.ok || !p.incomplete) return false
        }
        // The addresses come back as the same address (text forms may differ: `::` compression).
        const same4or6 = (x: string, y: string): boolean => encodeV2({ ...a, sourceAddress: x, destinationAddress: x, tlvs: [] }).equals(encodeV2({ ...a, sourceAddress: y, destinationAddress: y, tlvs: [] }))
        if (!same4or6(r.header.sourceAddress!, src) || !same4or6(r.header.destinationAddress!, dst)) return false
        if (r.header.sourcePort !== sp || r.header.destinationPort !== dp) return false
        if (!useV1) {
          const got = (r.header.tlvs ?? []).map((x) => `${x.type}:${x.value.toString('hex')}`)
          const want = a.tlvs.map((x) => `${x.type}:${x.value.toString('hex')}`)
          if (got.join() !== want.join()) return false
        }
        return true
      }
    ),
    { numRuns: 300 }
  )
  t.pass('300 random headers round-trip')
})

t.test('random bytes: never a throw, never a header longer than the bound, never past the input', async (t) => {
  const prefixed = fc.oneof(
    fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
    fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.concat([line('PROXY '), Buffer.from(b)])),
    fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.concat([V2_SIGNATURE, Buffer.from(b)]))
  )
  fc.assert(
    fc.property(prefixed, (buf) => {
      const r = parseProxy(buf)
      if (r.ok) return r.length <= buf.length && r.length <= (r.header.version === 1 ? MAX_V1_BYTES : MAX_V2_BYTES)
      if (r.incomplete) return buf.length < MAX_V2_BYTES && looksLikeProxy(buf)
      return true
    }),
    { numRuns: 2000 }
  )
  t.pass('2000 random inputs')
})
