/**
 * The memcached health check: `version` answered by `VERSION <x>` (what mcrouter and twemproxy
 * send to see a server is alive). An error line (`SERVER_ERROR …`) or anything else is down.
 */
import { excerpt, probe, type CheckFn } from '../../health/checks.js'

const VERSION = Buffer.from('version\r\n')

export const memcachedCheck: CheckFn = (target, timeoutMs, signal) =>
  probe(target, timeoutMs, signal, VERSION, (data, ended) => {
    const eol = data.indexOf('\r\n')
    if (eol < 0) return ended ? { ok: false, reason: `no reply line: ${excerpt(data)}` } : undefined
    const line = data.subarray(0, eol)
    return line.subarray(0, 8).toString('latin1') === 'VERSION '
      ? { ok: true, reason: line.toString('latin1') }
      : { ok: false, reason: `reply ${excerpt(line)}` }
  })
