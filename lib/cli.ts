#!/usr/bin/env node
/**
 * The `baton` command. Bad input (flags, config file, an address that cannot be bound) prints one
 * line per problem, no stack trace, and exits with status 2. SIGINT/SIGTERM stop accepting, give live
 * sessions `shutdownGrace` to finish, and exit 0. SIGHUP (and `POST /api/reload`) re-reads the config
 * file and applies it without dropping a live session; an invalid one is refused, and says why.
 * What each signal does is lib/fleet/signals.ts, shared with the `--workers` primary.
 *
 * SIGUSR2 starts a successor (the same command line, run again: a new binary on disk) and hands it
 * the listening sockets; once it accepts, this process drains as on SIGTERM (lib/fleet/upgrade.ts).
 * Sockets passed by systemd (`LISTEN_FDS`) are taken instead of binding (lib/fleet/inherit.ts), and
 * under `Type=notify` the service manager is told READY/RELOADING/STOPPING (lib/fleet/notify.ts).
 *
 * `--workers N` (or `workers:` in the file; `auto` is one per core) with N > 1 runs a primary and N
 * worker processes instead (lib/cluster/primary.ts); N = 1, the default, is the single process below.
 * node:cluster starts each worker by running this file again: it then takes its configuration from
 * the primary, not from the command line.
 */
import cluster from 'node:cluster'
import { readFileSync } from 'node:fs'
import { Balancer } from './balancer.js'
import { startPrimary, workerCount } from './cluster/primary.js'
import { runWorker } from './cluster/worker.js'
import { showConfig } from './config/show.js'
import { validateConfig } from './config/validate.js'
import { resolveNativeThreads } from './native/data-plane.js'
import { parseCommand, USAGE } from './cli/args.js'
import { startAdmin, type AdminServer } from './admin/server.js'
import { BatonError } from './errors.js'
import type { Logger } from 'pino'
import { Inherited, takeInheritedHandles, takeInheritedSockets } from './fleet/inherit.js'
import { sdNotify } from './fleet/notify.js'
import { ignoreSigusr1, ProcessSignals, sayIfRefused } from './fleet/signals.js'
import { announceUpgraded } from './fleet/upgrade.js'

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string
  }
  return pkg.version
}

/** The logger SIGUSR1 reports to, once there is one. */
let signalLog: Logger | undefined
/** The single process's admin server, which takes the token a reload re-read. */
let runningAdmin: AdminServer | undefined

async function main(argv: readonly string[]): Promise<number> {
  ignoreSigusr1(() => signalLog)
  if (cluster.isWorker) {
    runWorker()
    return -1
  }
  let balancer: Balancer
  let admin: AdminServer | undefined
  let listening: Balancer | undefined
  let inherited: Inherited | undefined
  let signals: ProcessSignals | undefined
  let fromFile = false
  try {
    const command = parseCommand(argv)
    if (command.kind === 'help') {
      process.stdout.write(USAGE)
      return 0
    }
    if (command.kind === 'version') {
      process.stdout.write(`baton ${version()}\n`)
      return 0
    }
    balancer = new Balancer(validateConfig(command.config))
    signalLog = balancer.log
    if (command.check) {
      // Printed resolved: `dataPlane` is the plane each listener will run (auto → native or js),
      // `nativeThreads` the plane threads this process will run (auto → a number).
      const resolved = {
        ...balancer.config,
        nativeThreads: resolveNativeThreads(balancer.config),
        listeners: balancer.config.listeners.map((l, i) => ({
          ...l,
          dataPlane: balancer.frontends[i]!.plane,
        })),
      }
      // YAML, durations as written, the admin token hidden (lib/config/show.ts).
      const shown = showConfig(resolved, command.config, command.tokenSource)
      process.stdout.write(`${shown}configuration OK (${command.source})\n`)
      return 0
    }
    fromFile = command.source !== 'command line'
    const workers = workerCount(balancer.config.workers)
    // A --workers primary must not accept: it takes the passed sockets as bare handles for its
    // workers (lib/cluster/sockets.ts); one process listens on them at once.
    const taken = workers > 1 ? takeInheritedHandles() : takeInheritedSockets()
    for (const r of taken.refused)
      balancer.log.warn({ fd: r.fd, name: r.name, reason: r.reason }, 'passed descriptor ignored')
    inherited = new Inherited(taken.sockets)
    if (workers > 1) {
      await startPrimary(balancer.config, {
        workers,
        logger: balancer.log,
        inherited,
        argv,
        ...(fromFile ? { reread: () => rereadConfig(argv) } : {}),
      })
      announceUpgraded(balancer.log)
      void sdNotify(balancer.log, 'READY=1', { mainPid: true, status: 'accepting' })
      return -1
    }
    await balancer.listen(inherited)
    listening = balancer
    const a = balancer.config.admin
    if (a.listen !== undefined) {
      const b = balancer
      const handed = inherited.take('admin', a.listen.host, a.listen.port)
      admin = await startAdmin(b, {
        ...(handed !== undefined ? { inherited: handed } : {}),
        ready: () => !(signals?.stopping ?? false),
        host: a.listen.host,
        port: a.listen.port,
        ...(a.token !== undefined ? { token: a.token } : {}),
        ...(a.hosts !== undefined ? { hosts: a.hosts } : {}),
        log: b.log.child({ component: 'admin' }),
        ...(fromFile ? { reload: () => reload(b, argv) } : {}),
      })
      runningAdmin = admin
    }
  } catch (err) {
    if (err instanceof BatonError) {
      process.stderr.write(`baton: ${err.message.split('\n').join('\nbaton: ')}\n`)
      // The listeners may already be bound (the admin server failed): close them, or they keep the process up.
      await listening?.close(0)
      inherited?.closeRest()
      return 2
    }
    throw err
  }
  inherited.closeRest(balancer.log)
  void balancer.probeBackends()
  announceUpgraded(balancer.log)
  void sdNotify(balancer.log, 'READY=1', { mainPid: true, status: 'accepting' })
  const b = balancer
  signals = new ProcessSignals({
    log: b.log,
    drain: (signal, successorPid) => {
      b.log.info({ signal, graceMs: b.config.shutdownGrace, successorPid }, 'stopping')
      void Promise.all([admin?.close(), b.close()]).then(() => {
        b.log.flush()
        process.exit(0)
      })
    },
    ...(fromFile ? { reload: () => reload(b, argv) } : {}),
    upgrade: {
      argv,
      sockets: () => [
        ...b.frontends.flatMap((l) => {
          const server = l.listenSocket
          return server === undefined ? [] : [{ name: l.name, server }]
        }),
        ...(admin !== undefined ? [{ name: 'admin', server: admin.server }] : []),
      ],
    },
  })
  signals.install()
  return -1
}

/** The configuration input of the same command line, the config file read again. */
function rereadConfig(argv: readonly string[]): Record<string, unknown> {
  const command = parseCommand(argv)
  if (command.kind !== 'run') throw new Error('not a run command')
  return command.config
}

/** Re-read the same command line (and so the config file) and apply it. */
async function reload(balancer: Balancer, argv: readonly string[]): Promise<unknown> {
  return sayIfRefused(balancer.log, async () => {
    const result = await balancer.reload(rereadConfig(argv))
    // The token file and BATON_ADMIN_TOKEN were read again with the config.
    runningAdmin?.setToken(balancer.config.admin.token)
    return result
  })
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code
  },
  (err: unknown) => {
    process.stderr.write(`baton: internal error: ${(err as Error).stack ?? String(err)}\n`)
    process.exitCode = 1
  }
)
