/**
 * pino, JSON on stdout; human-readable through pino-pretty when stdout is a terminal or when asked.
 *
 * JSON lines carry an ISO 8601 time (`"time":"2026-11-27T17:06:37.123Z"`) and the level as text
 * (`"level":"info"`), so that `jq`, Loki and most log shippers read them without a mapping; pino's
 * defaults (epoch milliseconds, numeric levels) are what pino-pretty still gets in pretty mode.
 */
import { pino, type Logger, type LoggerOptions } from 'pino'

export interface LogOptions {
  level: string
  /** Undefined: pretty when stdout is a terminal. */
  pretty?: boolean | undefined
}

/** The JSON options: ISO time and text levels (exported for embedders who build their own pino). */
export const JSON_LOG_OPTIONS: Pick<LoggerOptions, 'timestamp' | 'formatters'> = {
  timestamp: pino.stdTimeFunctions.isoTime,
  formatters: { level: (label) => ({ level: label }) },
}

export function createLogger(options: LogOptions): Logger {
  const pretty = options.pretty ?? process.stdout.isTTY === true
  if (!pretty) return pino({ level: options.level, base: { pid: process.pid }, ...JSON_LOG_OPTIONS })
  return pino({
    level: options.level,
    transport: {
      target: 'pino-pretty',
      options: { colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l' },
    },
  })
}
