/**
 * The PROXY protocol, versions 1 and 2 (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt):
 * a strict, bounded parser for the header a trusted upstream puts before the client's bytes, and
 * the encoder of the header Baton puts before them towards a backend.
 *
 *   v1: "PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\n"          text, one line, 107 bytes at most
 *   v2: \r\n\r\n\0\r\nQUIT\n | ver/cmd | fam/proto | len (BE16) | addresses | TLVs    binary
 *
 * Strict: v1 needs canonical IPv4/IPv6 text of the family it names and decimal ports without
 * leading zeros; v2 needs version 2, a known command, family and stream protocol (UNSPEC allowed),
 * an address block as long as its family's and TLVs that fill the rest exactly. Bounded: a v1 line
 * past 107 bytes or a v2 header past MAX_V2_BYTES is refused, whatever follows.
 * TLVs are kept as received (not interpreted) so that they can be passed on; CRC32C is not checked
 * (and dropped when the header is re-encoded, since it would no longer match).
 */
import { isIPv4, isIPv6 } from 'node:net'
import type { ProxyHeader } from './types.js'

export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
const V1_PREFIX = Buffer.from('PROXY ')
/** The longest v1 line, CRLF included (the specification's bound). */
export const MAX_V1_BYTES = 107
/** The longest v2 header accepted: 16 fixed bytes and 16 KiB of addresses and TLVs (HAProxy's buffer). */
export const MAX_V2_BYTES = 16 + 16 * 1024

export const PP2_TYPE_CRC32C = 0x03

export type ParseResult =
  | { ok: true; header: ProxyHeader; length: number }
  /** More bytes are needed to decide. */
  | { ok: false; incomplete: true }
  /** Not a PROXY header (no signature). */
  | { ok: false; incomplete: false; error: 'missing' }
  /** A PROXY signature with a header that breaks the specification or the bound. */
  | { ok: false; incomplete: false; error: 'invalid' | 'too-long'; detail: string }

const INCOMPLETE: ParseResult = { ok: false, incomplete: true }
const MISSING: ParseResult = { ok: false, incomplete: false, error: 'missing' }

function invalid(detail: string): ParseResult {
  return { ok: false, incomplete: false, error: 'invalid', detail }
}

/** Whether `buf` (possibly short) starts as `sig` does. */
function startsLike(buf: Buffer, sig: Buffer): 'yes' | 'maybe' | 'no' {
  const n = Math.min(buf.length, sig.length)
  for (let i = 0; i < n; i++) if (buf[i] !== sig[i]) return 'no'
  return buf.length >= sig.length ? 'yes' : 'maybe'
}

/** Parse a PROXY header at the start of `buf`. */
export function parseProxy(buf: Buffer): ParseResult {
  if (buf.length === 0) return INCOMPLETE
  const v2 = startsLike(buf, V2_SIGNATURE)
  if (v2 === 'yes') return parseV2(buf)
  if (v2 === 'maybe') return INCOMPLETE
  const v1 = startsLike(buf, V1_PREFIX)
  if (v1 === 'yes') return parseV1(buf)
  if (v1 === 'maybe') return INCOMPLETE
  return MISSING
}

/** Whether `buf` could be the start of a PROXY header (either version): for untrusted clients. */
export function looksLikeProxy(buf: Buffer): boolean {
  return startsLike(buf, V2_SIGNATURE) !== 'no' || startsLike(buf, V1_PREFIX) !== 'no'
}

const PORT = /^(0|[1-9][0-9]{0,4})$/

function parseV1(buf: Buffer): ParseResult {
  const limit = Math.min(buf.length, MAX_V1_BYTES)
  let cr = -1
  for (let i = V1_PREFIX.length; i < limit; i++) {
    const c = buf[i]!
    if (c === 0x0d) {
      cr = i
      break
    }
    // Printable US-ASCII only: no NUL, no LF alone, nothing binary.
    if (c < 0x20 || c > 0x7e) return invalid('a byte that is not printable text in the v1 line')
  }
  if (cr < 0) {
    if (buf.length >= MAX_V1_BYTES)
      return { ok: false, incomplete: false, error: 'too-long', detail: `no CRLF within ${MAX_V1_BYTES} bytes` }
    return INCOMPLETE
  }
  if (cr + 1 >= buf.length) return INCOMPLETE
  if (buf[cr + 1] !== 0x0a) return invalid('CR not followed by LF')
  const length = cr + 2
  const line = buf.toString('latin1', V1_PREFIX.length, cr)
  const parts = line.split(' ')
  const family = parts[0]
  if (family === 'UNKNOWN') {
    // The rest of the line is ignored (the specification: the receiver must ignore it).
    return { ok: true, header: { version: 1, command: 'proxy', family: 'unknown' }, length }
  }
  if (family !== 'TCP4' && family !== 'TCP6') return invalid(`unknown v1 family ${JSON.stringify(family)}`)
  if (parts.length !== 5) return invalid('a v1 line needs family, two addresses and two ports, one space apart')
  const [, src, dst, sport, dport] = parts as [string, string, string, string, string]
  const isFamily = family === 'TCP4' ? isIPv4 : isIPv6
  if (!isFamily(src) || !isFamily(dst)) return invalid(`an address that is not ${family}`)
  if (!PORT.test(sport) || !PORT.test(dport) || Number(sport) > 65535 || Number(dport) > 65535)
    return invalid('a port that is not a decimal from 0 to 65535')
  return {
    ok: true,
    header: {
      version: 1,
      command: 'proxy',
      family: family === 'TCP4' ? 'tcp4' : 'tcp6',
      sourceAddress: src,
      sourcePort: Number(sport),
      destinationAddress: dst,
      destinationPort: Number(dport),
    },
    length,
  }
}

const ADDRESS_BYTES = { tcp4: 12, tcp6: 36, unix: 216, unknown: 0 } as const

function parseV2(buf: Buffer): ParseResult {
  if (buf.length < 16) return INCOMPLETE
  const verCmd = buf[12]!
  if (verCmd >> 4 !== 2) return invalid(`v2 version ${verCmd >> 4}`)
  const cmd = verCmd & 0x0f
  if (cmd > 1) return invalid(`v2 command ${cmd}`)
  const famProto = buf[13]!
  const fam = famProto >> 4
  const proto = famProto & 0x0f
  if (fam > 3) return invalid(`v2 address family ${fam}`)
  if (proto > 2) return invalid(`v2 transport protocol ${proto}`)
  const len = buf.readUInt16BE(14)
  const length = 16 + len
  if (length > MAX_V2_BYTES)
    return { ok: false, incomplete: false, error: 'too-long', detail: `a v2 header of ${length} bytes` }
  if (buf.length < length) return INCOMPLETE
  const command = cmd === 0 ? 'local' : 'proxy'
  // LOCAL: the upstream's own connection (a health check); the address block is to be skipped.
  if (command === 'proxy' && proto === 2) return invalid('a v2 header for a datagram (UDP) connection')
  const family = (['unknown', 'tcp4', 'tcp6', 'unix'] as const)[fam]!
  const need = command === 'local' ? 0 : ADDRESS_BYTES[family]
  if (len < need) return invalid(`a v2 ${family} address block of ${len} bytes`)
  const header: ProxyHeader = { version: 2, command, family: command === 'local' ? 'unknown' : family }
  const a = 16
  if (command === 'proxy') {
    if (family === 'tcp4') {
      header.sourceAddress = ipv4(buf, a)
      header.destinationAddress = ipv4(buf, a + 4)
      header.sourcePort = buf.readUInt16BE(a + 8)
      header.destinationPort = buf.readUInt16BE(a + 10)
    } else if (family === 'tcp6') {
      header.sourceAddress = ipv6(buf, a)
      header.destinationAddress = ipv6(buf, a + 16)
      header.sourcePort = buf.readUInt16BE(a + 32)
      header.destinationPort = buf.readUInt16BE(a + 34)
    } else if (family === 'unix') {
      header.sourceAddress = cString(buf, a, 108)
      header.destinationAddress = cString(buf, a + 108, 108)
    }
  }
  // TLVs follow the address block of the family the header names (LOCAL included).
  const tlvStart = a + (command === 'local' ? Math.min(ADDRESS_BYTES[family], len) : need)
  const tlvs: { type: number; value: Buffer }[] = []
  for (let p = tlvStart; p < length; ) {
    if (p + 3 > length) return invalid('a v2 TLV cut short')
    const type = buf[p]!
    const n = buf.readUInt16BE(p + 1)
    if (p + 3 + n > length) return invalid('a v2 TLV longer than the header')
    // Copied: the header's bytes are a view of the client's first read, which is kept otherwise.
    tlvs.push({ type, value: Buffer.from(buf.subarray(p + 3, p + 3 + n)) })
    p += 3 + n
  }
  if (tlvs.length > 0) header.tlvs = tlvs
  return { ok: true, header, length }
}

function ipv4(buf: Buffer, at: number): string {
  return `${buf[at]}.${buf[at + 1]}.${buf[at + 2]}.${buf[at + 3]}`
}

function ipv6(buf: Buffer, at: number): string {
  const groups: string[] = []
  for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(at + 2 * i).toString(16))
  return compressIPv6(groups)
}

/** RFC 5952 text: the longest run of two or more zero groups becomes `::`. */
function compressIPv6(groups: string[]): string {
  let best = -1
  let bestLen = 1
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === '0') j++
    if (j - i > bestLen) {
      best = i
      bestLen = j - i
    }
    i = j
  }
  if (best < 0) return groups.join(':')
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`
}

function cString(buf: Buffer, at: number, size: number): string {
  const end = buf.indexOf(0, at)
  return buf.toString('utf8', at, end < 0 || end > at + size ? at + size : end)
}

/** What Baton knows of a client, for the header it sends to a backend. */
export interface ProxyAddresses {
  sourceAddress: string
  sourcePort: number
  destinationAddress: string
  destinationPort: number
  /** TLVs received from the upstream, passed on in v2. */
  tlvs?: readonly { type: number; value: Buffer }[] | undefined
}

/** `::ffff:192.0.2.1` → `192.0.2.1`; anything else as it is. */
function unmapped(address: string): string {
  return address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address
}

/**
 * The family both addresses can be written in: TCP4 when both are IPv4 (or IPv4-mapped IPv6),
 * TCP6 when both are IPv6 or one is (the IPv4 one is then written mapped), unknown otherwise (a
 * Unix socket, an address Node did not give).
 */
function familyOf(a: ProxyAddresses): { family: 'tcp4' | 'tcp6' | 'unknown'; src: string; dst: string } {
  const src = unmapped(a.sourceAddress)
  const dst = unmapped(a.destinationAddress)
  if (isIPv4(src) && isIPv4(dst)) return { family: 'tcp4', src, dst }
  const v6 = (x: string): string | undefined => (isIPv6(x) ? x : isIPv4(x) ? `::ffff:${x}` : undefined)
  const s6 = v6(src)
  const d6 = v6(dst)
  if (s6 !== undefined && d6 !== undefined) return { family: 'tcp6', src: s6, dst: d6 }
  return { family: 'unknown', src, dst }
}

/** A v1 line for `a`. */
export function encodeV1(a: ProxyAddresses): Buffer {
  const f = familyOf(a)
  if (f.family === 'unknown') return Buffer.from('PROXY UNKNOWN\r\n', 'latin1')
  const tag = f.family === 'tcp4' ? 'TCP4' : 'TCP6'
  return Buffer.from(`PROXY ${tag} ${f.src} ${f.dst} ${a.sourcePort} ${a.destinationPort}\r\n`, 'latin1')
}

/** A v2 header for `a`, with its TLVs (CRC32C left out: it would not match the new header). */
export function encodeV2(a: ProxyAddresses): Buffer {
  const f = familyOf(a)
  const tlvs = (a.tlvs ?? []).filter((t) => t.type !== PP2_TYPE_CRC32C)
  let tlvBytes = 0
  for (const t of tlvs) tlvBytes += 3 + t.value.length
  const addrBytes = ADDRESS_BYTES[f.family]
  const out = Buffer.alloc(16 + addrBytes + tlvBytes)
  V2_SIGNATURE.copy(out, 0)
  out[12] = 0x21 // version 2, PROXY
  out[13] = f.family === 'tcp4' ? 0x11 : f.family === 'tcp6' ? 0x21 : 0x00
  out.writeUInt16BE(addrBytes + tlvBytes, 14)
  let p = 16
  if (f.family === 'tcp4') {
    writeIPv4(out, p, f.src)
    writeIPv4(out, p + 4, f.dst)
    out.writeUInt16BE(a.sourcePort, p + 8)
    out.writeUInt16BE(a.destinationPort, p + 10)
  } else if (f.family === 'tcp6') {
    writeIPv6(out, p, f.src)
    writeIPv6(out, p + 16, f.dst)
    out.writeUInt16BE(a.sourcePort, p + 32)
    out.writeUInt16BE(a.destinationPort, p + 34)
  }
  p += addrBytes
  for (const t of tlvs) {
    out[p] = t.type
    out.writeUInt16BE(t.value.length, p + 1)
    t.value.copy(out, p + 3)
    p += 3 + t.value.length
  }
  return out
}

function writeIPv4(out: Buffer, at: number, address: string): void {
  const parts = address.split('.')
  for (let i = 0; i < 4; i++) out[at + i] = Number(parts[i])
}

function writeIPv6(out: Buffer, at: number, address: string): void {
  let text = address
  // A dotted IPv4 tail (`::ffff:192.0.2.1`) becomes two groups.
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (dotted !== null) {
    const b = dotted[1]!.split('.').map(Number)
    text = `${text.slice(0, dotted.index)}${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`
  }
  const zone = text.indexOf('%')
  if (zone >= 0) text = text.slice(0, zone)
  const [left, right] = text.includes('::') ? text.split('::') : [text, undefined]
  const l = left === '' || left === undefined ? [] : left.split(':')
  const r = right === undefined || right === '' ? [] : right.split(':')
  const groups = right === undefined ? l : [...l, ...Array<string>(8 - l.length - r.length).fill('0'), ...r]
  for (let i = 0; i < 8; i++) out.writeUInt16BE(parseInt(groups[i] ?? '0', 16), at + 2 * i)
}
