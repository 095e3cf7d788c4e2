/**
 * The listening sockets of a `--workers` primary. node:cluster binds a worker's listener in the
 * primary and keeps the handle to itself; to hand its sockets to a successor (SIGUSR2) and to serve
 * sockets passed by systemd, the primary holds them instead:
 *
 *   - each listener's socket is an inherited descriptor (LISTEN_FDS, matched by name or address as
 *     in one process) or bound here, as a bare handle that accepts nothing in the primary;
 *   - each worker is sent every handle over IPC (`worker.send(msg, handle)`, before its `init`)
 *     and listens on it with `net.Server.listen(handle)`, which a worker does in place (node:net
 *     never asks the primary for a handle it is given). Every worker then accepts on the same
 *     socket and the kernel gives each connection to one of them: node:cluster's SCHED_NONE.
 *   - `listen({ fd })` in a worker is no way in: node:cluster resolves the descriptor in the
 *     primary and hides the handle there, so the primary could not pass it on.
 *
 * NODE_CLUSTER_SCHED_POLICY=rr (the primary accepts every connection and passes it on) keeps the
 * node:cluster way: the primary holds no socket, and neither an upgrade nor socket activation is
 * possible (both are refused, and say why).
 *
 * A unix-domain listener, and one a reload adds, is bound by node:cluster as before (it is not
 * handed to a successor, whose own bind then fails: the upgrade fails and the old process stays);
 * the socket of one a reload removes is closed here, so that no client waits on a socket nobody
 * accepts on.
 */
import { lookup } from 'node:dns/promises'
import net from 'node:net'
import type { Logger } from 'pino'
import { formatAddress } from '../address.js'
import { ListenError } from '../errors.js'
import { bindHandle, type Adoptable, type Inherited, type NativeHandle } from '../fleet/inherit.js'
import type { Listener } from '../listener.js'

export class PrimarySockets {
  /** By listener name; `listener` is the view's Listener it was opened for (a reload that changes the address makes a new one). */
  private readonly held = new Map<string, { handle: NativeHandle; inherited: boolean; listener: Listener }>()

  constructor(private readonly log: Logger) {}

  /** Take or bind the socket of every listener; on failure, close what was opened and throw. */
  async open(listeners: readonly Listener[], inherited: Inherited | undefined): Promise<void> {
    try {
      for (const l of listeners) {
        const { host, port, path } = l.config.listen
        // A unix-domain socket stays node:cluster's: a worker can listen in place on a TCP handle
        // only (net.Server.listen takes any other handle by its descriptor, which node:cluster
        // then looks up in the primary).
        if (path !== undefined) continue
        const passed = inherited?.take(l.name, host ?? '', port ?? 0) as Adoptable | undefined
        if (passed !== undefined && passed instanceof net.Server)
          throw new Error('an inherited socket of a --workers primary must be a bare handle')
        if (passed !== undefined) {
          this.held.set(l.name, { handle: passed, inherited: true, listener: l })
          continue
        }
        let ip = host
        if (host !== undefined && net.isIP(host) === 0) ip = (await lookup(host)).address
        try {
          const handle = bindHandle({
            ...(ip !== undefined ? { host: ip } : {}),
            ...(port !== undefined ? { port } : {}),
          })
          this.held.set(l.name, { handle, inherited: false, listener: l })
        } catch (err) {
          throw new ListenError(l.name, formatAddress(l.config.listen), err as NodeJS.ErrnoException)
        }
      }
    } catch (err) {
      this.close()
      throw err
    }
    for (const [name, h] of this.held)
      if (h.inherited) this.log.info({ listener: name, fd: h.handle.fd }, 'listener takes a passed socket')
  }

  get names(): string[] {
    return [...this.held.keys()]
  }

  /** Every socket, to send to a worker or hand to a successor. */
  entries(): { name: string; handle: NativeHandle; inherited: boolean }[] {
    return [...this.held].map(([name, h]) => ({ name, handle: h.handle, inherited: h.inherited }))
  }

  /** After a reload: close the sockets of listeners that are gone or moved to another address. */
  prune(listeners: readonly Listener[]): void {
    const keep = new Set(listeners)
    for (const [name, h] of this.held) {
      if (keep.has(h.listener)) continue
      h.handle.close()
      this.held.delete(name)
      this.log.info({ listener: name }, 'listener removed or moved: its old socket is closed')
    }
  }

  close(): void {
    for (const h of this.held.values()) h.handle.close()
    this.held.clear()
  }
}
