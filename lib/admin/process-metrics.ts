/**
 * The process's own metrics, apart from any listener: prom-client's default metrics (CPU, memory,
 * file descriptors, event loop lag, heap, GC; `process_*` and `nodejs_*`) and `baton_build_info`.
 *
 * They live in one registry per process, made on first use and shared by every registry that
 * createMetrics builds (prom-client's `Registry.merge` registers the same metric objects in a new
 * registry, it copies nothing). `collectDefaultMetrics` starts an event-loop delay monitor and a GC
 * observer each time it is called, and stops neither, so calling it once per admin server (tests
 * start dozens in one process) would pile them up. Nothing starts until something asks for metrics:
 * a process without an admin server pays nothing, and a `--workers` worker only from the primary's
 * first scrape.
 *
 * With `--workers` the primary adds its own process registry to the workers' in prom-client's
 * aggregation, so `process_resident_memory_bytes`, `process_cpu_seconds_total` and the like are the
 * sums over the primary and every worker. Each default metric carries prom-client's own aggregator:
 * sums for the most, the average for event-loop lag, `first` for `nodejs_version_info`, and
 * `process_start_time_seconds` omitted (the primary serves its own, the start of the service).
 */
import { readFileSync } from 'node:fs'
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client'
import { loadNativePlane } from '../native/plane.js'

let shared: Registry | undefined

/** The package version, read once from package.json (two folders up from lib/admin or dist/admin). */
export const VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version?: unknown
    }
    return typeof pkg.version === 'string' ? pkg.version : 'unknown'
  } catch {
    return 'unknown'
  }
})()

/** The planes this build can run: `native` when the splice addon loaded (js is always there), else `js`. */
export function availablePlane(): 'native' | 'js' {
  return loadNativePlane().plane !== undefined ? 'native' : 'js'
}

/** This process's default metrics and `baton_build_info`, made on the first call. */
export function processRegistry(): Registry {
  if (shared !== undefined) return shared
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const info = new Gauge<'version' | 'node' | 'data_plane'>({
    name: 'baton_build_info',
    help: 'Always 1: the Baton version, the Node.js version, and the best data plane this build can run (native when the splice addon loaded, else js).',
    labelNames: ['version', 'node', 'data_plane'],
    registers: [registry],
    aggregator: 'first',
  })
  info.set({ version: VERSION, node: process.version, data_plane: availablePlane() }, 1)
  shared = registry
  return registry
}
