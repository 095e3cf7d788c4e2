/**
 * The status page at `GET /`, after HAProxy's stats page: one table per listener with its backends,
 * their state colour-coded, sessions and failovers. Self-contained (inline CSS and JS, nothing
 * fetched from elsewhere). The page is rendered here, on the server, in one place; its script
 * re-fetches `/` every 2 s and swaps the `<main>` element, so there is no second renderer in JS and
 * the page still works (without refreshing) when scripts are off.
 *
 * Each listener also gets a small inline SVG chart of its last minutes from the History sampler
 * (history.ts): live sessions as a line, failovers per sampling interval as bars. It is drawn here
 * with the rest, so the same swap of `<main>` keeps it current (the raw samples are at
 * `GET /api/history` for anything else that wants them). The empty `data:` icon keeps browsers from
 * asking for `/favicon.ico`, a 404 on every visit otherwise.
 */
import { formatAddress } from '../address.js'
import type { Balancer } from '../balancer.js'
import { backendJson, type BackendJson } from './api.js'
import { failoversPerInterval, type History, type HistorySample } from './history.js'

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
}

export function escapeHtml(s: string | number): string {
  return String(s).replace(/[&<>"']/g, (c) => ESCAPES[c]!)
}

/** `up`/`ready` green, `drain` orange, `down`/`maint` red; admin state wins over health. */
function stateOf(b: BackendJson): { text: string; cls: string } {
  if (b.admin === 'maint') return { text: 'MAINT', cls: 'bad' }
  if (b.admin === 'drain') return { text: b.health === 'up' ? 'DRAIN' : 'DRAIN (down)', cls: 'warn' }
  return b.health === 'up' ? { text: 'UP', cls: 'ok' } : { text: 'DOWN', cls: 'bad' }
}

function backendRow(b: BackendJson): string {
  const s = stateOf(b)
  const cells = [
    b.role === 'backup' ? `${escapeHtml(b.name)} <small>backup</small>` : escapeHtml(b.name),
    escapeHtml(b.address),
    `<span class="state ${s.cls}">${s.text}</span>`,
    escapeHtml(b.weight),
    escapeHtml(b.active),
    escapeHtml(b.sessions),
    escapeHtml(b.pool),
    escapeHtml(b.failures.connectErrors),
    escapeHtml(b.failures.serverFailures),
    escapeHtml(b.failures.consecutive),
  ]
  return `<tr class="${s.cls}">${cells.map((c) => `<td>${c}</td>`).join('')}</tr>`
}

// The chart's frame, in SVG user units: a legend line above the plot, time labels below it.
const CHART = { width: 480, height: 112, left: 4, right: 4, top: 18, bottom: 18 }

/** `ms` as a short span for an axis label: `200 ms`, `5 s`, `10 min`, `2 h`. */
export function formatSpan(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`
  if (ms < 120_000) return `${Math.round(ms / 1000)} s`
  if (ms < 2 * 3_600_000) return `${Math.round(ms / 60_000)} min`
  return `${Math.round(ms / 3_600_000)} h`
}

const num = (n: number): string => String(Math.round(n * 10) / 10)

/**
 * One listener's recent history as an inline SVG: live sessions as a line (scaled to their maximum
 * over the window), failovers per interval as bars (scaled to theirs), each maximum in the legend.
 * The x axis is the ring's whole span ending at the newest sample, so the line grows in from the
 * right while the ring fills.
 *
 *   active sessions · max 12                 failovers per 5 s · max 3
 *   +--------------------------------------------------------------+
 *   |                                   ___/\___        _/\___      |
 *   |                          ________/        \______/       \    |
 *   |                                       #                 #    |
 *   +--------------------------------------------------------------+
 *   -10 min                                                     now
 */
export function renderChart(
  name: string,
  samples: readonly HistorySample[],
  intervalMs: number,
  capacity: number
): string {
  const { width, height, left, right, top, bottom } = CHART
  const plotW = width - left - right
  const plotH = height - top - bottom
  const span = Math.max(intervalMs, (capacity - 1) * intervalMs)
  const label = `${name}: live sessions and failovers per ${formatSpan(intervalMs)}, last ${formatSpan(span)}`
  const last = samples[samples.length - 1]
  const failovers = failoversPerInterval(samples)
  const maxActive = Math.max(0, ...samples.map((s) => s.active))
  const maxFailovers = Math.max(0, ...failovers)
  const x = (t: number): number => left + plotW * Math.max(0, 1 - (last!.t - t) / span)
  const y = (v: number, max: number): number => top + plotH * (1 - v / Math.max(1, max))

  const parts = [`<rect class="plot" x="${left}" y="${top}" width="${plotW}" height="${plotH}"/>`]
  if (last === undefined) {
    parts.push(
      `<text class="none" x="${width / 2}" y="${top + plotH / 2 + 4}" text-anchor="middle">no samples yet</text>`
    )
  } else {
    const barW = Math.max(1, plotW / capacity)
    samples.forEach((s, i) => {
      const n = failovers[i]!
      if (n === 0) return
      const h = plotH * (n / maxFailovers)
      parts.push(
        `<rect class="fo" x="${num(Math.max(left, x(s.t) - barW))}" y="${num(top + plotH - h)}" width="${num(barW)}" height="${num(h)}"><title>${n} failover${n === 1 ? '' : 's'}</title></rect>`
      )
    })
    const d = samples.map((s, i) => `${i === 0 ? 'M' : 'L'}${num(x(s.t))},${num(y(s.active, maxActive))}`)
    parts.push(`<path class="active" d="${d.join(' ')}"/>`)
    parts.push(
      `<circle class="active" cx="${num(x(last.t))}" cy="${num(y(last.active, maxActive))}" r="2.5"/>`
    )
  }
  parts.push(
    `<text class="active" x="${left}" y="${top - 6}">active sessions · max ${maxActive}</text>`,
    `<text class="fo" x="${width - right}" y="${top - 6}" text-anchor="end">failovers per ${formatSpan(intervalMs)} · max ${maxFailovers}</text>`,
    `<text x="${left}" y="${height - 5}">−${formatSpan(span)}</text>`,
    `<text x="${width - right}" y="${height - 5}" text-anchor="end">now</text>`
  )
  return `<svg class="chart" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${escapeHtml(label)}">
<title>${escapeHtml(label)}</title>
${parts.join('\n')}
</svg>`
}

export function renderMain(balancer: Balancer, history?: History): string {
  const sections = balancer.frontends.map((l) => {
    const a = l.address()
    const c = l.counters
    const rows = l.backends.map((b) => backendRow(backendJson(l, b))).join('\n')
    const chart =
      history === undefined
        ? ''
        : `\n${renderChart(l.name, history.of(l.name), history.intervalMs, history.capacity)}`
    return `<section>
<h2>${escapeHtml(l.name)} <small>${escapeHtml(formatAddress(a))} · ${escapeHtml(l.config.balance)} · <span class="plane" title="data plane">${escapeHtml(l.plane)} plane</span></small></h2>
<p class="sum">active <b>${l.active}</b> · accepted <b>${c.accepted}</b> · rejected <b>${c.rejected}</b> · failovers <b>${c.failovers}</b> · replayed <b>${c.replayedRequests}</b> · unrecoverable <b>${c.unrecoverable}</b></p>${chart}
<table>
<thead><tr><th>backend</th><th>address</th><th>state</th><th>weight</th><th>active</th><th>sessions</th><th>pool</th><th>connect err</th><th>server fail</th><th>in a row</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>
</section>`
  })
  return `<main>
<p class="meta">${balancer.table.size} sessions alive · updated ${escapeHtml(new Date().toISOString())}</p>
${sections.join('\n')}
</main>`
}

const STYLE = `
body { font: 13px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 18px; margin: 0 0 .3em; } h2 { font-size: 15px; margin: 1.2em 0 .3em; }
small, .meta { color: #777; font-weight: normal; } .sum { margin: .2em 0 .5em; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #eee; } td:first-child, td:nth-child(2), td:nth-child(3) { text-align: left; }
tr.ok td { background: #e6f6e6; } tr.warn td { background: #fff0d9; } tr.bad td { background: #fbe3e3; }
.state { font-weight: bold; } .ok .state { color: #187a18; } .warn .state { color: #b86b00; } .bad .state { color: #b21c1c; }
.chart { display: block; margin: .2em 0 .6em; font-size: 11px; }
.chart text { fill: #777; } .chart .plot { fill: #fff; stroke: #ccc; }
.chart path.active { fill: none; stroke: #2563c9; stroke-width: 1.5; stroke-linejoin: round; }
.chart circle.active { fill: #2563c9; } .chart text.active { fill: #2563c9; }
.chart rect.fo { fill: #8e44ad; opacity: .75; } .chart text.fo { fill: #8e44ad; }
`

// Re-fetch the page and swap <main>; a failed fetch leaves the last view and says so.
const SCRIPT = `
setInterval(async () => {
  try {
    const res = await fetch(location.pathname, { cache: 'no-store' })
    if (!res.ok) throw new Error(res.status)
    const doc = new DOMParser().parseFromString(await res.text(), 'text/html')
    document.querySelector('main').replaceWith(doc.querySelector('main'))
  } catch (err) {
    document.querySelector('.meta').textContent = 'refresh failed: ' + err.message
  }
}, 2000)
`

export function renderPage(balancer: Balancer, history?: History): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Baton status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<h1>Baton</h1>
${renderMain(balancer, history)}
<script>${SCRIPT}</script>
</body>
</html>
`
}
