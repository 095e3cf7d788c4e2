/**
 * Replacing the running Baton without refusing a connection (nginx's `USR2`, HAProxy's `-x`).
 *
 *   old process                              successor (the same command line, run again)
 *   SIGUSR2 ─► spawn, listening fds at 3.. ─► takes them (inherit.ts), as from systemd
 *              (LISTEN_FDS, LISTEN_FDNAMES,   binds what is new, starts the admin server
 *              LISTEN_PID) and an IPC channel
 *           ◄──────────────────────────────── `baton:upgraded` once it accepts
 *   stops accepting, drains its sessions
 *   for up to `shutdownGrace`, exits 0
 *
 * Both processes hold the same listening sockets while the old one drains: the kernel's accept
 * queue never closes, so no client is refused or reset. A successor that fails to start (bad
 * config, a crash, no `upgraded` within UPGRADE_MS) changes nothing: the old process keeps
 * accepting, and says why in its log.
 *
 * The command is re-run from its path, so a new `dist/` (or a new Node, via `process.execPath`)
 * on disk is what starts. The successor is spawned through `sh -c 'LISTEN_PID=$$ exec …'`, the
 * only way to give it its own pid in `LISTEN_PID` before it runs, as systemd's rules want.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import type { Logger } from 'pino'
import { encodeFdName, serverFd, type Adoptable } from './inherit.js'

/** How long a successor has to start listening before the upgrade is given up. */
export const UPGRADE_MS = 60_000

/** Set in the successor's environment to the old process's pid. */
export const UPGRADE_ENV = 'BATON_UPGRADE_FROM'

export interface HandedSocket {
  /** The listener's name (`admin` for the admin server); it goes in LISTEN_FDNAMES. */
  name: string
  server: Adoptable
}

export class Upgrader {
  private child: ChildProcess | undefined

  constructor(
    private readonly log: Logger,
    /** The command line of this process (without node and the script). */
    private readonly argv: readonly string[],
    /** The sockets to hand over, read at the time of the upgrade. */
    private readonly sockets: () => HandedSocket[],
    /** The successor accepts: stop accepting and drain. */
    private readonly handOver: (successorPid: number) => void,
    private readonly timeoutMs = UPGRADE_MS
  ) {}

  get running(): boolean {
    return this.child !== undefined
  }

  /** This process stops (SIGTERM) while a successor starts: the successor must not outlive it. */
  abort(): void {
    const child = this.child
    if (child === undefined) return
    this.child = undefined
    child.removeAllListeners('message')
    child.removeAllListeners('exit')
    child.kill('SIGKILL')
    this.log.warn({ successorPid: child.pid }, 'upgrade abandoned: this process is stopping')
  }

  /** Start a successor (SIGUSR2). Ignored, with a warning, while one is starting. */
  start(): void {
    if (this.child !== undefined) {
      this.log.warn({ successorPid: this.child.pid }, 'upgrade already under way')
      return
    }
    const handed: { name: string; fd: number }[] = []
    for (const s of this.sockets()) {
      const fd = serverFd(s.server)
      if (fd !== undefined) handed.push({ name: s.name, fd })
    }
    const script = process.argv[1]
    if (script === undefined) {
      this.log.error('upgrade: cannot tell which script to run again')
      return
    }
    const command = [process.execPath, ...process.execArgv, script, ...this.argv]
    let child: ChildProcess
    try {
      child = spawn('/bin/sh', ['-c', 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"', 'baton', ...command], {
        stdio: ['inherit', 'inherit', 'inherit', ...handed.map((h) => h.fd), 'ipc'],
        env: {
          ...process.env,
          LISTEN_FDS: String(handed.length),
          LISTEN_FDNAMES: handed.map((h) => encodeFdName(h.name)).join(':'),
          [UPGRADE_ENV]: String(process.pid),
        },
      })
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'upgrade: could not start a successor')
      return
    }
    this.child = child
    this.log.info(
      { successorPid: child.pid, sockets: handed.map((h) => h.name), command },
      'upgrade: successor started with the listening sockets'
    )
    const timer = setTimeout(
      () => fail(`it did not accept within ${this.timeoutMs} ms`, true),
      this.timeoutMs
    )
    const fail = (why: string, kill = false): void => {
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onExit)
      if (kill) child.kill('SIGKILL')
      this.child = undefined
      this.log.error({ successorPid: child.pid, reason: why }, 'upgrade failed: this process keeps accepting')
    }
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void =>
      fail(signal !== null ? `it was killed by ${signal}` : `it exited with code ${code}`)
    const onMessage = (msg: unknown): void => {
      if ((msg as { type?: unknown } | null)?.type !== 'baton:upgraded') return
      clearTimeout(timer)
      child.off('exit', onExit)
      child.off('message', onMessage)
      // The successor lives on by itself: no channel, not waited for.
      if (child.connected) child.disconnect()
      child.unref()
      this.log.info({ successorPid: child.pid }, 'upgrade: successor accepts; this process drains and exits')
      this.handOver(child.pid!)
    }
    child.on('message', onMessage)
    child.once('exit', onExit)
    child.on('error', (err) => fail(err.message))
  }
}

/** In a successor: tell the old process it accepts now (no-op when not started by an upgrade). */
export function announceUpgraded(log: Logger): void {
  const from = process.env[UPGRADE_ENV]
  delete process.env[UPGRADE_ENV]
  if (from === undefined || process.send === undefined) return
  process.send({ type: 'baton:upgraded', pid: process.pid }, undefined, {}, () => {
    if (process.connected) process.disconnect()
  })
  log.info({ from: Number(from) }, 'upgrade: accepting on the sockets handed over')
}
