/**
 * A strict, bounded reader of a TLS ClientHello (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2), for routing
 * without terminating TLS (nginx `ssl_preread`, HAProxy `req.ssl_sni`). Pure: it takes the client's
 * first bytes, as many as have arrived, and says one of
 *
 *   more       a prefix of a ClientHello: wait for more bytes (`need`: at least this many in all)
 *   not-tls    the first bytes cannot start a TLS handshake record (plain text, an SSLv2 hello)
 *   malformed  a TLS handshake record, but not a well-formed ClientHello (`reason` says where)
 *   too-large  the hello and its record headers would pass `maxBytes`
 *   hello      the whole ClientHello: its server name (SNI, lower case) and ALPN protocols
 *
 * A ClientHello may be split across several handshake records (a large one, post-quantum key
 * shares, or a client that fragments on purpose to evade middleboxes), and records across TCP
 * segments: the reader walks the records and joins their fragments.
 *
 *   |16 03 01 len|01 len24 | ver rand sid ciphers comp ext… |16 03 01 len| …ext|
 *    record hdr   handshake hdr                              next record
 *
 * Nothing here is trusted: every length is checked against what contains it, and the total against
 * `maxBytes` before waiting for bytes that would pass it.
 */

export const DEFAULT_MAX_HELLO_BYTES = 16 * 1024

const RECORD_HEADER = 5
const HANDSHAKE_HEADER = 4
/** RFC 8446 §5.1: a record's fragment is at most 2^14 bytes. */
const MAX_FRAGMENT = 16384
const CT_HANDSHAKE = 0x16
const HT_CLIENT_HELLO = 0x01
const EXT_SERVER_NAME = 0
const EXT_ALPN = 16

export interface ClientHello {
  readonly kind: 'hello'
  /** The `host_name` of the server_name extension, lower case, without a trailing dot; undefined when absent. */
  readonly serverName: string | undefined
  /** The ALPN protocols offered, in the client's order (empty when the extension is absent). */
  readonly alpn: readonly string[]
  /** `legacy_version` of the hello (0x0303 for TLS 1.2 and 1.3). */
  readonly version: number
  /** Bytes of input the hello's records take (a client may send more after them). */
  readonly bytes: number
}

export type HelloResult =
  | ClientHello
  | { readonly kind: 'more'; readonly need: number }
  | { readonly kind: 'not-tls' }
  | { readonly kind: 'malformed'; readonly reason: string }
  | { readonly kind: 'too-large' }

const NOT_TLS = { kind: 'not-tls' } as const
const TOO_LARGE = { kind: 'too-large' } as const

function malformed(reason: string): HelloResult {
  return { kind: 'malformed', reason }
}

/** Read the ClientHello at the start of `buf`, never looking past `maxBytes`. */
export function parseClientHello(buf: Buffer, maxBytes = DEFAULT_MAX_HELLO_BYTES): HelloResult {
  // The first record's header says at once whether this can be TLS at all.
  if (buf.length >= 1 && buf[0] !== CT_HANDSHAKE) return NOT_TLS
  if (buf.length >= 2 && buf[1] !== 0x03) return NOT_TLS
  if (buf.length >= 3 && buf[2]! > 0x04) return NOT_TLS
  // Join the handshake fragments of consecutive records until the hello is whole.
  const fragments: Buffer[] = []
  let have = 0
  /** The hello's handshake message length (header included), once its header is read. */
  let want = -1
  let at = 0
  for (;;) {
    if (buf.length < at + RECORD_HEADER) {
      if (at + RECORD_HEADER > maxBytes) return TOO_LARGE
      if (at > 0 && buf.length > at && buf[at] !== CT_HANDSHAKE)
        return malformed('a record other than handshake inside the ClientHello')
      return { kind: 'more', need: at + RECORD_HEADER }
    }
    if (buf[at] !== CT_HANDSHAKE) return malformed('a record other than handshake inside the ClientHello')
    if (buf[at + 1] !== 0x03 || buf[at + 2]! > 0x04) return malformed('record version is not TLS')
    const len = buf.readUInt16BE(at + 3)
    if (len === 0) return malformed('empty handshake record')
    if (len > MAX_FRAGMENT) return malformed('record longer than 2^14 bytes')
    const end = at + RECORD_HEADER + len
    if (end > maxBytes) return TOO_LARGE
    if (buf.length < end) {
      // Read the handshake header as soon as it is here: a wrong type or a length past the bound
      // is known before the rest of the record arrives.
      const early = headerOf(fragments, have, buf.subarray(at + RECORD_HEADER, buf.length))
      if (early !== undefined && want < 0) {
        if (early.type !== HT_CLIENT_HELLO) return malformed('first handshake message is not a ClientHello')
        if (early.total > maxBytes) return TOO_LARGE
      }
      return { kind: 'more', need: end }
    }
    const fragment = buf.subarray(at + RECORD_HEADER, end)
    fragments.push(fragment)
    have += fragment.length
    at = end
    if (want < 0) {
      const h = headerOf(fragments, have, undefined)
      if (h !== undefined) {
        if (h.type !== HT_CLIENT_HELLO) return malformed('first handshake message is not a ClientHello')
        if (h.total > maxBytes) return TOO_LARGE
        want = h.total
      }
    }
    if (want >= 0 && have >= want) {
      // Nothing but the hello may come before the server's answer (RFC 8446 §4.1.2).
      if (have > want) return malformed('bytes after the ClientHello in its last record')
      const message = fragments.length === 1 ? fragments[0]! : Buffer.concat(fragments, have)
      return readHello(message.subarray(HANDSHAKE_HEADER), at)
    }
  }
}

/** The handshake header (type, 24-bit length) from the fragments so far, when 4 bytes are there. */
function headerOf(
  fragments: readonly Buffer[],
  have: number,
  partial: Buffer | undefined
): { type: number; total: number } | undefined {
  if (have + (partial?.length ?? 0) < HANDSHAKE_HEADER) return undefined
  const head = Buffer.concat(partial === undefined ? fragments : [...fragments, partial]).subarray(0, 4)
  return { type: head[0]!, total: HANDSHAKE_HEADER + head.readUIntBE(1, 3) }
}

/** Parse a ClientHello body (after the handshake header), every length checked. */
function readHello(body: Buffer, bytes: number): HelloResult {
  const r = new Reader(body)
  const version = r.u16()
  if (version === undefined || version >> 8 !== 0x03) return malformed('legacy_version is not TLS')
  if (!r.skip(32)) return malformed('truncated random')
  const sid = r.u8()
  if (sid === undefined || sid > 32 || !r.skip(sid)) return malformed('bad legacy_session_id')
  const suites = r.u16()
  if (suites === undefined || suites < 2 || suites % 2 !== 0 || !r.skip(suites))
    return malformed('bad cipher_suites')
  const comp = r.u8()
  if (comp === undefined || comp < 1 || !r.skip(comp)) return malformed('bad legacy_compression_methods')
  let serverName: string | undefined
  let alpn: string[] = []
  if (r.left === 0) return { kind: 'hello', serverName, alpn, version, bytes } // no extensions (TLS 1.0 era)
  const extLen = r.u16()
  if (extLen === undefined || extLen !== r.left) return malformed('extensions length does not match the hello')
  const seen = new Set<number>()
  while (r.left > 0) {
    const type = r.u16()
    const len = r.u16()
    if (type === undefined || len === undefined || len > r.left) return malformed('truncated extension')
    if (seen.has(type)) return malformed(`extension ${type} appears twice`)
    seen.add(type)
    const data = r.take(len)!
    if (type === EXT_SERVER_NAME) {
      const name = readServerName(data)
      if (typeof name === 'object') return name
      serverName = name
    } else if (type === EXT_ALPN) {
      const list = readAlpn(data)
      if (!Array.isArray(list)) return list as HelloResult
      alpn = list
    }
  }
  return { kind: 'hello', serverName, alpn, version, bytes }
}

/** A host name as SNI may carry it: LDH labels (and `_`), no empty label (RFC 6066 §3). */
const HOST = /^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*$/

/** server_name (RFC 6066 §3): one `host_name` entry at most; an empty extension (a server's echo) has none. */
function readServerName(data: Buffer): string | undefined | HelloResult {
  if (data.length === 0) return undefined
  const r = new Reader(data)
  const listLen = r.u16()
  if (listLen === undefined || listLen !== r.left || listLen === 0) return malformed('bad server_name list')
  let name: string | undefined
  while (r.left > 0) {
    const type = r.u8()
    const len = r.u16()
    if (type === undefined || len === undefined || len > r.left) return malformed('truncated server_name entry')
    const raw = r.take(len)!
    if (type !== 0) continue // unknown name types are skipped, as OpenSSL does
    if (name !== undefined) return malformed('two host_name entries')
    if (len === 0 || len > 255) return malformed('bad host_name length')
    let text = raw.toString('latin1').toLowerCase()
    if (text.endsWith('.')) text = text.slice(0, -1)
    if (!HOST.test(text)) return malformed('host_name is not a DNS name')
    name = text
  }
  return name
}

/** application_layer_protocol_negotiation (RFC 7301 §3.1): a non-empty list of non-empty names. */
function readAlpn(data: Buffer): string[] | HelloResult {
  const r = new Reader(data)
  const listLen = r.u16()
  if (listLen === undefined || listLen !== r.left || listLen < 2) return malformed('bad ALPN list')
  const out: string[] = []
  while (r.left > 0) {
    const len = r.u8()
    if (len === undefined || len === 0 || len > r.left) return malformed('bad ALPN protocol name')
    out.push(r.take(len)!.toString('latin1'))
  }
  return out
}

/** A bounds-checked cursor: every read returns undefined rather than running past the end. */
class Reader {
  private at = 0
  constructor(private readonly b: Buffer) {}
  get left(): number {
    return this.b.length - this.at
  }
  u8(): number | undefined {
    if (this.left < 1) return undefined
    return this.b[this.at++]
  }
  u16(): number | undefined {
    if (this.left < 2) return undefined
    const v = this.b.readUInt16BE(this.at)
    this.at += 2
    return v
  }
  skip(n: number): boolean {
    if (this.left < n) return false
    this.at += n
    return true
  }
  take(n: number): Buffer | undefined {
    if (this.left < n) return undefined
    const v = this.b.subarray(this.at, this.at + n)
    this.at += n
    return v
  }
}
