/**
 * Routing by what a ClientHello says (nginx `ssl_preread` + `map`, HAProxy `use_backend … if
 * { req.ssl_sni … }`): a pure function from a server name and the ALPN protocols offered to a
 * backend group.
 *
 * - Routes are tried in the order written; the first that matches wins (HAProxy's `use_backend`
 *   rules), so a specific name goes before a wildcard that covers it.
 * - `serverName`: exact (`api.example.com`) or a wildcard `*.example.com`, which matches any name
 *   ending in `.example.com` at any depth (`a.example.com`, `a.b.example.com`) but not
 *   `example.com` itself (nginx's `*.example.com` in `map … hostnames`; a certificate's wildcard
 *   covers one label only, which is the backend's business). Compared in lower case, without a
 *   trailing dot. A hello with no server name matches no `serverName` route.
 * - `alpn`: the route matches when the client offers any of these protocols.
 * - A route with both matches only when both do.
 * - Nothing matched: the listener's `defaultGroup`.
 */

export interface RouteConfig {
  readonly serverName?: readonly string[]
  readonly alpn?: readonly string[]
  readonly group: string
}

interface Compiled {
  readonly exact: ReadonlySet<string> | undefined
  /** Suffixes with their leading dot (`.example.com`). */
  readonly suffixes: readonly string[] | undefined
  readonly alpn: ReadonlySet<string> | undefined
  readonly group: string
}

export type Router = (serverName: string | undefined, alpn: readonly string[]) => string

/** Compile routes once (at config time); the router allocates nothing per client. */
export function compileRoutes(routes: readonly RouteConfig[], defaultGroup: string): Router {
  const compiled: Compiled[] = routes.map((r) => {
    let exact: Set<string> | undefined
    let suffixes: string[] | undefined
    for (const raw of r.serverName ?? []) {
      const name = normalise(raw)
      if (name.startsWith('*.')) (suffixes ??= []).push(name.slice(1))
      else (exact ??= new Set()).add(name)
    }
    return {
      exact,
      suffixes,
      alpn: r.alpn === undefined || r.alpn.length === 0 ? undefined : new Set(r.alpn),
      group: r.group,
    }
  })
  return (serverName, alpn) => {
    for (const r of compiled) {
      if ((r.exact !== undefined || r.suffixes !== undefined) && !nameMatches(r, serverName)) continue
      if (r.alpn !== undefined && !alpn.some((p) => r.alpn!.has(p))) continue
      return r.group
    }
    return defaultGroup
  }
}

function nameMatches(r: Compiled, name: string | undefined): boolean {
  if (name === undefined) return false
  if (r.exact?.has(name) === true) return true
  if (r.suffixes !== undefined) {
    for (const s of r.suffixes) if (name.length > s.length && name.endsWith(s)) return true
  }
  return false
}

/** Lower case, no trailing dot: as client-hello.ts gives names. */
export function normalise(name: string): string {
  const n = name.toLowerCase()
  return n.endsWith('.') ? n.slice(0, -1) : n
}

/** `api.example.com` or `*.example.com` (letters, digits, `-`, `_`; no empty label). */
export const SERVER_NAME_PATTERN =
  /^(?:\*\.)?[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/i
