/**
 * Client-first stateful protocols, told from the client's first bytes (issue 13, item 3).
 *
 * Opaque replay re-sends the client's bytes since the server last spoke. That is right for
 * request/response protocols, but not once a handshake has set up state on one server: after a TLS
 * handshake (keys), an HTTP/2 preface (a connection with its SETTINGS and stream ids) or a
 * PostgreSQL startup (an authenticated backend process), the client's next bytes mean nothing to a
 * server that never saw the handshake. These protocols start with fixed bytes, so the opaque framer
 * looks at the first few and pins the session once the server has answered (its ServerHello, its
 * SETTINGS, its authentication request): exactly as a server greeting pins it. Before that first
 * answer byte, the handshake itself may still be re-sent to another server.
 *
 *   tls       16 03 0v len len 01          a handshake record carrying a ClientHello
 *   h2        PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n   (RFC 9113 §3.4, prior knowledge)
 *   postgres  int32 length, int32 code      StartupMessage (3.0), SSLRequest, GSSENCRequest
 *
 * A false match only costs replay after the server's first answer, never correctness.
 */

export type ClientFirst = 'tls' | 'h2' | 'postgres'

/** What the first bytes say: a handshake protocol, none (`other`), or not enough bytes yet (`more`). */
export type FirstBytes = ClientFirst | 'other' | 'more'

/** The most bytes `classifyFirstBytes` ever needs (the HTTP/2 preface). */
export const FIRST_BYTES_MAX = 24

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')

/** PostgreSQL's first-message codes (protocol 3.0, and the requests that precede a startup). */
const PG_PROTOCOL_3 = 0x00030000
const PG_SSL_REQUEST = 80877103
const PG_GSSENC_REQUEST = 80877104
/** A StartupMessage longer than this is not one (the server's own limit is 10000). */
const PG_MAX_STARTUP = 10000

/** Classify the client's first bytes (`buf` holds them from the session's first byte on). */
export function classifyFirstBytes(buf: Buffer): FirstBytes {
  if (buf.length === 0) return 'more'
  const b0 = buf[0]!
  if (b0 === 0x16) return tls(buf)
  if (b0 === 0x50) return h2(buf) // 'P'
  if (b0 === 0x00) return postgres(buf)
  return 'other'
}

function tls(buf: Buffer): FirstBytes {
  if (buf.length < 6) return prefixOk(buf) ? 'more' : 'other'
  return prefixOk(buf) && buf[5] === 0x01 ? 'tls' : 'other'
}

/** 16 03 00..04, then a record length of 1..2^14 (+ what a short buffer allows). */
function prefixOk(buf: Buffer): boolean {
  if (buf.length >= 2 && buf[1] !== 0x03) return false
  if (buf.length >= 3 && buf[2]! > 0x04) return false
  if (buf.length >= 5) {
    const len = buf.readUInt16BE(3)
    if (len === 0 || len > 16384) return false
  }
  return true
}

function h2(buf: Buffer): FirstBytes {
  const n = Math.min(buf.length, H2_PREFACE.length)
  if (buf.compare(H2_PREFACE, 0, n, 0, n) !== 0) return 'other'
  return n === H2_PREFACE.length ? 'h2' : 'more'
}

function postgres(buf: Buffer): FirstBytes {
  // The length's top byte is 0 for any real startup; wait for the length and the code.
  if (buf.length < 8) return 'more'
  const len = buf.readUInt32BE(0)
  const code = buf.readUInt32BE(4)
  if ((code === PG_SSL_REQUEST || code === PG_GSSENC_REQUEST) && len === 8) return 'postgres'
  if (code === PG_PROTOCOL_3 && len > 8 && len <= PG_MAX_STARTUP) return 'postgres'
  return 'other'
}
