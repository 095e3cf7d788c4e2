/**
 * pino, JSON on stdout; human-readable through pino-pretty when stdout is a terminal or when asked.
 */
import { pino, type Logger } from 'pino'

export interface LogOptions {
  level: string
  /** Undefined: pretty when stdout is a terminal. */
  pretty?: boolean | undefined
}

export function createLogger(options: LogOptions): Logger {
  const pretty = options.pretty ?? process.stdout.isTTY === true
  if (!pretty) return pino({ level: options.level, base: { pid: process.pid } })
  return pino({
    level: options.level,
    transport: {
      target: 'pino-pretty',
      options: { colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l' },
    },
  })
}
