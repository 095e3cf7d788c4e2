#!/usr/bin/env node
/**
 * The `baton` command. Bad input (flags, config file, an address that cannot be bound) prints one
 * line per problem, no stack trace, and exits with status 2. SIGINT/SIGTERM stop accepting, give live
 * sessions `shutdownGrace` to finish, and exit 0.
 */
import { readFileSync } from 'node:fs'
import { Balancer } from './balancer.js'
import { validateConfig } from './config/validate.js'
import { parseCommand, USAGE } from './cli/args.js'
import { BatonError } from './errors.js'

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string
  }
  return pkg.version
}

async function main(argv: readonly string[]): Promise<number> {
  let balancer: Balancer
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
    if (command.check) {
      process.stdout.write(
        `${JSON.stringify(balancer.config, null, 2)}\nconfiguration OK (${command.source})\n`
      )
      return 0
    }
    await balancer.listen()
  } catch (err) {
    if (err instanceof BatonError) {
      process.stderr.write(`baton: ${err.message.split('\n').join('\nbaton: ')}\n`)
      return 2
    }
    throw err
  }
  void balancer.probeBackends()
  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) {
      balancer.log.warn({ signal }, 'second signal, exiting now')
      process.exit(1)
    }
    stopping = true
    balancer.log.info({ signal, graceMs: balancer.config.shutdownGrace }, 'stopping')
    void balancer.close().then(() => {
      balancer.log.flush()
      process.exit(0)
    })
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  return -1
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
