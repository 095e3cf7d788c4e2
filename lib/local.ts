/**
 * Errors that are Baton's own, not a backend's: the process ran out of descriptors, buffers or
 * local ports. They never count against a backend's passive health (a healthy backend must not be
 * ejected because this process is short of file descriptors); they are counted as `localErrors`,
 * and while they happen the listeners shed new clients for a moment (`LocalPressure`), as
 * libuv-based servers and HAProxy (maxconn derived from `ulimit -n`) do.
 */
import { readFileSync } from 'node:fs'

const LOCAL_CODES = new Set(['EMFILE', 'ENFILE', 'ENOBUFS', 'ENOMEM', 'EADDRNOTAVAIL'])

/** True for an error caused by this process's own limits. */
export function isLocalError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  return code !== undefined && LOCAL_CODES.has(code)
}

/** How long new clients are shed after a local error. */
export const SHED_MS = 250

/**
 * The soft `RLIMIT_NOFILE` of this process (Linux: /proc/self/limits), or undefined where it cannot
 * be read or is unlimited. Node has no getrlimit().
 */
export function openFileLimit(): number | undefined {
  try {
    const text = readFileSync('/proc/self/limits', 'latin1')
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(text)
    if (m === null || m[1] === 'unlimited') return undefined
    return Number(m[1])
  } catch {
    return undefined
  }
}

/**
 * The most sessions the descriptor limit allows: each session holds two descriptors (client and
 * server) and briefly a third (a connect replacing a failed one, the backend check); 64 are kept
 * for listeners, health checks, pools, the admin server and logs.
 */
export function sessionsForLimit(nofile: number | undefined): number {
  if (nofile === undefined) return 0
  return Math.max(16, Math.floor((nofile - 64) / 2))
}
