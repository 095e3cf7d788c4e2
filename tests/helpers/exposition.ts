/**
 * Reading /metrics as Prometheus does: the text goes through a real exposition-format parser
 * (`parse-prometheus-text-format`, a port of the Prometheus Python client's parser, output shaped
 * like prom2json's), then through the naming and histogram rules a scraper and a linter
 * (`promtool check metrics`) expect. `parse()` throws on any line the parser refuses; `lint()`
 * returns the problems found, one line each (an empty list when the text is clean).
 */
import { createRequire } from 'node:module'

export interface Family {
  name: string
  help: string
  type: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED'
  metrics: {
    value?: string
    labels?: Record<string, string>
    buckets?: Record<string, string>
    count?: string
    sum?: string
  }[]
}

export type Parser = (text: string) => Family[]

/**
 * The parser, or why it cannot be had. It is a dev dependency (package.json); loaded on demand so a
 * checkout that has not installed it yet gets a skip with the reason instead of a crash.
 */
export function loadParser(): { parse: Parser } | { missing: string } {
  try {
    const parse = createRequire(import.meta.url)('parse-prometheus-text-format') as Parser
    return { parse }
  } catch (err) {
    return {
      missing: `parse-prometheus-text-format is not installed (npm install; it is a devDependency): ${(err as Error).message.split('\n')[0]}`,
    }
  }
}

/** A value as Prometheus reads it (Go's ParseFloat): a number, or Inf and NaN in any case. */
function isFloat(v: string): boolean {
  return /^[+-]?(inf|nan)$/i.test(v) || !Number.isNaN(Number(v))
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/
/** Base units that must come last (before `_total` on a counter), as Prometheus's naming guide asks. */
const UNITS = ['seconds', 'bytes']

/**
 * prom-client's default metrics that are gauges named `_total` (counts of live handles, requests
 * and resources): not Baton's to rename, and every Node.js exporter has them under these names.
 */
const PROM_CLIENT_GAUGES = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
]

/** The problems of `text` beyond what the parser checks, with `families` its parse. */
export function lint(text: string, families: readonly Family[]): string[] {
  const problems: string[] = []
  const seen = new Set<string>()
  for (const f of families) {
    if (seen.has(f.name)) problems.push(`${f.name}: family appears twice`)
    seen.add(f.name)
    if (!NAME.test(f.name)) problems.push(`${f.name}: not a valid metric name`)
    if (f.type === 'UNTYPED') problems.push(`${f.name}: no # TYPE line`)
    if (f.help === '') problems.push(`${f.name}: no # HELP text`)
    if (f.type === 'COUNTER' && !f.name.endsWith('_total'))
      problems.push(`${f.name}: counter not ending in _total`)
    if (f.type !== 'COUNTER' && f.name.endsWith('_total') && !PROM_CLIENT_GAUGES.includes(f.name))
      problems.push(`${f.name}: a ${f.type} ending in _total`)
    const base = f.type === 'COUNTER' ? f.name.replace(/_total$/, '') : f.name
    for (const unit of UNITS) {
      const at = base.split('_').indexOf(unit)
      // `_info` and `_timestamp_seconds` are fine; a unit in the middle (`bytes_received`) is not.
      if (at !== -1 && at !== base.split('_').length - 1) problems.push(`${f.name}: unit "${unit}" not last`)
    }
    if (/_(ms|milliseconds|us|microseconds|kb|mb)(_total)?$/.test(f.name))
      problems.push(`${f.name}: not a base unit`)
    const series = new Set<string>()
    for (const m of f.metrics) {
      const labels = m.labels ?? {}
      for (const k of Object.keys(labels)) if (!LABEL.test(k)) problems.push(`${f.name}: bad label name ${k}`)
      const key = JSON.stringify(Object.entries(labels).sort())
      if (series.has(key)) problems.push(`${f.name}: series ${key} twice`)
      series.add(key)
      if (f.type === 'HISTOGRAM') {
        // The parser folds a histogram's labelled series into one; histogramProblems reads the lines.
      } else if (m.value === undefined || !isFloat(m.value)) {
        problems.push(`${f.name}${key}: value ${m.value}`)
      } else if (f.type === 'COUNTER' && Number(m.value) < 0) {
        problems.push(`${f.name}${key}: negative counter ${m.value}`)
      }
    }
  }
  // Every sample line belongs to a family declared before it (the parser files strays as UNTYPED).
  let declared = new Set<string>()
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) /.exec(line)
    if (type !== null) {
      declared = new Set([type[1]!, ...['_bucket', '_sum', '_count'].map((s) => type[1] + s)])
      continue
    }
    if (line === '' || line.startsWith('#')) continue
    const name = /^[^{ ]+/.exec(line)?.[0] ?? ''
    if (!declared.has(name)) problems.push(`sample outside its family: ${line}`)
  }
  return [...problems, ...histogramProblems(text, families)]
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/
const PAIR = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

/**
 * Each histogram series, read from the sample lines (the parser keeps no labels on histograms):
 * buckets in increasing `le`, counts never falling, a `+Inf` bucket equal to `_count`, a `_sum`.
 */
function histogramProblems(text: string, families: readonly Family[]): string[] {
  const problems: string[] = []
  const histograms = new Set(families.filter((f) => f.type === 'HISTOGRAM').map((f) => f.name))
  const series = new Map<string, { buckets: [number, number][]; count?: number; sum?: number }>()
  for (const line of text.split('\n')) {
    const m = SAMPLE.exec(line)
    if (m === null) continue
    const [, name, labelText = '', value] = m
    const part = /_(bucket|sum|count)$/.exec(name!)
    const family = part === null ? '' : name!.slice(0, -part[0].length)
    if (!histograms.has(family)) continue
    const labels = [...labelText.matchAll(PAIR)].map((p) => [p[1]!, p[2]!] as const)
    const le = labels.find(([k]) => k === 'le')?.[1]
    const key = `${family}{${labels
      .filter(([k]) => k !== 'le')
      .map(([k, v]) => `${k}="${v}"`)
      .sort()
      .join(',')}}`
    let s = series.get(key)
    if (s === undefined) series.set(key, (s = { buckets: [] }))
    if (part![1] === 'bucket') {
      if (le === undefined) problems.push(`${key}: a bucket without le`)
      else s.buckets.push([le === '+Inf' ? Infinity : Number(le), Number(value)])
    } else if (part![1] === 'sum') s.sum = Number(value)
    else s.count = Number(value)
  }
  for (const [key, s] of series) {
    for (let i = 1; i < s.buckets.length; i++) {
      if (!(s.buckets[i]![0] > s.buckets[i - 1]![0]))
        problems.push(`${key}: le not increasing at ${s.buckets[i]![0]}`)
      if (s.buckets[i]![1] < s.buckets[i - 1]![1])
        problems.push(`${key}: buckets not cumulative at le=${s.buckets[i]![0]}`)
    }
    const last = s.buckets[s.buckets.length - 1]
    if (last?.[0] !== Infinity) problems.push(`${key}: no +Inf bucket`)
    else if (last[1] !== s.count) problems.push(`${key}: +Inf ${last[1]} != _count ${s.count}`)
    if (s.sum === undefined || !Number.isFinite(s.sum)) problems.push(`${key}: _sum ${s.sum}`)
  }
  if (histograms.size > 0 && series.size === 0) problems.push('histograms declared, no series read')
  return problems
}

/** The series of histogram `name` read from the lines, as `{ labels without le: buckets }`. */
export function histogramBuckets(
  text: string,
  name: string,
  labels: Record<string, string>
): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    const m = SAMPLE.exec(line)
    if (m === null || m[1] !== `${name}_bucket`) continue
    const pairs = Object.fromEntries([...(m[2] ?? '').matchAll(PAIR)].map((p) => [p[1]!, p[2]!]))
    if (Object.entries(labels).every(([k, v]) => pairs[k] === v)) out.set(pairs.le!, Number(m[3]))
  }
  return out
}

/** The value of a family's series whose labels include `labels` (the first such), or undefined. */
export function valueOf(
  families: readonly Family[],
  name: string,
  labels: Record<string, string> = {}
): number | undefined {
  const f = families.find((x) => x.name === name)
  const m = f?.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v))
  return m === undefined ? undefined : Number(m.value ?? m.count)
}
