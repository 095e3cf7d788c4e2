/**
 * sd_notify(3) for a `Type=notify` systemd unit: `READY=1` once listening, `RELOADING=1` then
 * `READY=1` around a reload, `STOPPING=1` on stop, `MAINPID=` from a successor after an upgrade.
 *
 * The protocol is one datagram on the unix socket named by `$NOTIFY_SOCKET`; Node has no unix
 * datagram sockets, so the message is sent by `systemd-notify`, which ships with systemd wherever
 * `$NOTIFY_SOCKET` can be set. Its datagrams come from its own pid, so the unit needs
 * `NotifyAccess=all` (examples/baton.service); since systemd 246 it waits for the manager to have
 * read the message (sd_notify_barrier), so the message is not lost when it exits; Baton asks that
 * for READY=1 only.
 * Without `$NOTIFY_SOCKET` nothing is done; without `systemd-notify` a warning is logged once.
 */
import { execFile } from 'node:child_process'
import type { Logger } from 'pino'

let warned = false

export type NotifyState = 'READY=1' | 'RELOADING=1' | 'STOPPING=1'

/**
 * Tell the service manager `state` (and `STATUS=status`). `mainPid`: also say that this process is
 * the service's main process now (after an upgrade the successor is). Resolves when sent (or not).
 */
export function sdNotify(
  log: Logger,
  state: NotifyState,
  options: { status?: string; mainPid?: boolean; env?: NodeJS.ProcessEnv; command?: string } = {}
): Promise<void> {
  const env = options.env ?? process.env
  if (env.NOTIFY_SOCKET === undefined || env.NOTIFY_SOCKET === '') return Promise.resolve()
  // Only READY=1 waits for the manager to have read it (a lost one fails the start); the others
  // must not hold up a reload or a stop by the barrier's 5 s when the reader does not answer it.
  const args = [
    ...(state === 'READY=1' ? [] : ['--no-block']),
    ...(options.mainPid === true ? [`--pid=${process.pid}`] : []),
    state,
  ]
  if (options.status !== undefined) args.push(`STATUS=${options.status}`)
  return new Promise((resolve) => {
    execFile(options.command ?? 'systemd-notify', args, { env, timeout: 10_000 }, (err) => {
      if (err !== null && !warned) {
        warned = true
        log.warn(
          { err: err.message, notifySocket: env.NOTIFY_SOCKET },
          'NOTIFY_SOCKET is set but systemd-notify failed: the service manager was not told'
        )
      }
      resolve()
    })
  })
}
