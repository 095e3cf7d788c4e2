/**
 * Address lists (`acceptProxy.from`, `allow`, `deny`): CIDR text parsed once, at `--check`, and
 * looked up through Node's `net.BlockList` at accept. A bare address is a /32 (IPv4) or /128
 * (IPv6). An IPv4 list entry also matches the IPv4-mapped IPv6 form a dual-stack listener gives
 * (`::ffff:192.0.2.1`), as BlockList does.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net'

export interface Cidr {
  address: string
  prefix: number
  family: 'ipv4' | 'ipv6'
}

/** `10.0.0.0/8`, `::1`, `2001:db8::/32` → its parts; a message when it is not one. */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf('/')
  const address = slash < 0 ? text : text.slice(0, slash)
  const family = isIPv4(address) ? 'ipv4' : isIPv6(address) && !address.includes('%') ? 'ipv6' : undefined
  if (family === undefined) return 'expected an IP address or CIDR such as 10.0.0.0/8 or 2001:db8::/32'
  const max = family === 'ipv4' ? 32 : 128
  if (slash < 0) return { address, prefix: max, family }
  const p = text.slice(slash + 1)
  if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > max)
    return `expected a prefix length from 0 to ${max} after "/"`
  return { address, prefix: Number(p), family }
}

/** A BlockList of `cidrs` (already validated by the schema). */
export function blockListOf(cidrs: readonly string[]): BlockList {
  const list = new BlockList()
  for (const text of cidrs) {
    const c = parseCidr(text)
    if (typeof c === 'string') throw new Error(`${c}, got ${JSON.stringify(text)}`)
    list.addSubnet(c.address, c.prefix, c.family)
  }
  return list
}

/** Whether `address` (as a socket or a PROXY header gives it) is in `list`. */
export function inList(list: BlockList, address: string): boolean {
  if (isIPv4(address)) return list.check(address, 'ipv4')
  if (isIPv6(address)) return list.check(address, 'ipv6')
  return false // a Unix socket peer, or no address: in no IP list
}
