/**
 * Who may do what on the admin server. Pure functions, tested without sockets.
 *
 * The policy:
 *  - Without a token the server only binds loopback (startAdmin refuses anything else).
 *  - With a token, every non-GET request needs `Authorization: Bearer <token>`. GET (metrics,
 *    status page, read-only API) is open to peers on loopback and needs the token from anywhere
 *    else: a Prometheus on the same host scrapes without credentials, while a server bound to
 *    0.0.0.0 does not show backend addresses and sessions to the network.
 *  - Browsers: a non-GET request whose `Origin` is not the server's own is refused (a page on
 *    another site cannot POST a backend into maintenance through a user's browser).
 *  - DNS rebinding: a page on evil.example whose name is made to resolve to this server reaches it
 *    with the page's own origin, so `Origin` matches `Host`, but `Host` still says evil.example.
 *    Every request, with a token or without, must carry a `Host` that names this server: a
 *    loopback name or address, the address the request came in on, the configured listen host, or
 *    a name of `admin.hosts` (hostChecker). A token does not stand in for this: a browser (or an
 *    extension) that holds one would otherwise lend it to any page.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import net from 'node:net'

/** 127.0.0.0/8, ::1, `localhost` and IPv4-mapped forms of 127/8. */
export function isLoopback(host: string): boolean {
  let h = host.toLowerCase()
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1)
  if (h === 'localhost' || h.endsWith('.localhost')) return true
  if (h.startsWith('::ffff:')) h = h.slice(7)
  if (net.isIPv4(h)) return h.startsWith('127.')
  if (net.isIPv6(h)) return LOOPBACK6.check(h, 'ipv6') // any spelling of ::1
  return false
}

const LOOPBACK6 = new net.BlockList()
LOOPBACK6.addAddress('::1', 'ipv6')

/** A token checker that compares in constant time (both sides hashed, so lengths never leak). */
export function tokenChecker(token: string): (authorization: string | undefined) => boolean {
  const want = createHash('sha256').update(token).digest()
  return (authorization) => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')
    if (m === null) return false
    return timingSafeEqual(createHash('sha256').update(m[1]!).digest(), want)
  }
}

/** The host part of a `Host` header (`127.0.0.1:9000`, `[::1]:9000`, `localhost`). */
export function hostOfHeader(host: string): string {
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1)
  const colon = host.lastIndexOf(':')
  return colon === -1 ? host : host.slice(0, colon)
}

/**
 * A host as written in `Host` (port removed) or in the config, in one spelling for comparing:
 * lower case, no brackets, no trailing dot, IPv4-mapped IPv6 as IPv4, IPv6 in canonical form.
 */
export function canonicalHost(host: string): string {
  let h = host.toLowerCase()
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1)
  if (h.endsWith('.')) h = h.slice(0, -1)
  if (h.startsWith('::ffff:') && net.isIPv4(h.slice(7))) return h.slice(7)
  if (net.isIPv6(h)) return new URL(`http://[${h}]/`).hostname.slice(1, -1)
  return h
}

/** 0.0.0.0 and :: are where a server listens, never a name a client may give it. */
const UNSPECIFIED = new Set(['0.0.0.0', '::'])

/**
 * Whether a `Host` header names this server (see the policy above): loopback, the local address of
 * the connection (for a server bound to 0.0.0.0, the address the client reached it on), or one of
 * `names` (the listen host and `admin.hosts`). An absent or empty `Host` names nothing.
 */
export function hostChecker(
  names: readonly string[]
): (hostHeader: string | undefined, localAddress: string | undefined) => boolean {
  const allowed = new Set(names.map(canonicalHost).filter((h) => h !== '' && !UNSPECIFIED.has(h)))
  return (hostHeader, localAddress) => {
    const h = canonicalHost(hostOfHeader(hostHeader ?? ''))
    if (h === '' || UNSPECIFIED.has(h)) return false
    return (
      isLoopback(h) || allowed.has(h) || (localAddress !== undefined && h === canonicalHost(localAddress))
    )
  }
}

/** False when a browser sent `Origin` for another site than the `Host` it talks to. */
export function sameOrigin(origin: string | undefined, host: string | undefined): boolean {
  if (origin === undefined) return true // not a browser, or a same-origin GET
  try {
    return new URL(origin).host === host
  } catch {
    return false
  }
}
