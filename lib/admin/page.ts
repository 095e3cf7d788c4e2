/**
 * The status page at `GET /`, after HAProxy's stats page: one table per listener with its backends,
 * their state colour-coded and how long they have been in it, sessions and their rate over the last
 * minute (from the History samples), bytes each way, the last health check and its duration, and
 * buttons that set the admin state (ready, drain, maint) through the admin API, so with the API's
 * token and Origin rules. The header has the version and export links (backends as CSV or JSON, the
 * history, /metrics); the uptime is in the refreshed part. Self-contained (inline CSS and JS, nothing
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
import { uncreditedBytes } from '../table.js'
import { backendJson, type BackendJson } from './api.js'
import { failoversPerInterval, sessionRate, type History, type HistorySample } from './history.js'
import { VERSION } from './process-metrics.js'

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

/** `ms` as an age: `12 s`, `3 min 4 s`, `2 h 5 min`, `3 d 4 h`. */
export function formatAge(ms: number): string {
  const sec = Math.max(0, Math.floor(ms / 1000))
  if (sec < 60) return `${sec} s`
  const min = Math.floor(sec / 60)
  if (min < 60) return `${min} min ${sec % 60} s`
  const h = Math.floor(min / 60)
  if (h < 48) return `${h} h ${min % 60} min`
  return `${Math.floor(h / 24)} d ${h % 24} h`
}

/** Bytes in binary units: `512 B`, `1.5 KiB`, `20.0 MiB`. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`
}

/** The last check as a cell: `ok 1.2 ms`, `failed 3.0 ms` (the reason in its title), or `–`. */
function checkCell(b: BackendJson): string {
  const c = b.check
  if (c === undefined) return '<span class="none" title="no active health checks">–</span>'
  const counts = `${c.passed} passed, ${c.failed} failed`
  if (c.last === undefined) return `<span class="none" title="${counts}">not yet</span>`
  const ms = `${c.last.ms < 10 ? c.last.ms.toFixed(1) : Math.round(c.last.ms)} ms`
  const why = c.last.ok ? counts : `${c.last.reason ?? 'failed'} · ${counts}`
  return `<span class="check ${c.last.ok ? 'pass' : 'fail'}" title="${escapeHtml(why)}">${c.last.ok ? 'ok' : 'failed'} ${ms}</span>`
}

const ACTIONS: readonly BackendJson['admin'][] = ['ready', 'drain', 'maint']

/** Buttons for the admin states other than the current one (the page's script posts them). */
function actionsCell(b: BackendJson): string {
  const name = escapeHtml(`${b.listener}/${b.name}`)
  return ACTIONS.map(
    (state) =>
      `<button type="button" data-backend="${name}" data-state="${state}"${state === b.admin ? ' disabled' : ''}>${state}</button>`
  ).join('')
}

function backendRow(b: BackendJson, rate: number | undefined, now: number): string {
  const s = stateOf(b)
  const cells = [
    b.role === 'backup' ? `${escapeHtml(b.name)} <small>backup</small>` : escapeHtml(b.name),
    escapeHtml(b.address),
    `<span class="state ${s.cls}">${s.text}</span>`,
    `<span title="${escapeHtml(new Date(b.stateSince).toISOString())}">${formatAge(now - b.stateSince)}</span>`,
    escapeHtml(b.weight),
    escapeHtml(b.active),
    escapeHtml(b.sessions),
    rate === undefined ? '–' : `${rate < 10 ? rate.toFixed(2) : Math.round(rate)}/s`,
    `<span title="${b.bytes.sent} bytes">${formatBytes(b.bytes.sent)}</span>`,
    `<span title="${b.bytes.received} bytes">${formatBytes(b.bytes.received)}</span>`,
    checkCell(b),
    escapeHtml(b.failures.connectErrors),
    escapeHtml(b.failures.serverFailures),
    escapeHtml(b.failures.consecutive),
    actionsCell(b),
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
  const now = Date.now()
  const live = uncreditedBytes(balancer.table.values())
  const sections = balancer.frontends.map((l) => {
    const a = l.address()
    const c = l.counters
    const samples = history?.of(l.name) ?? []
    const rows = l.backends
      .map((b) => backendRow(backendJson(l, b, live.get(b)), sessionRate(samples, b.name), now))
      .join('\n')
    const chart =
      history === undefined
        ? ''
        : `\n${renderChart(l.name, history.of(l.name), history.intervalMs, history.capacity)}`
    return `<section>
<h2>${escapeHtml(l.name)} <small>${escapeHtml(formatAddress(a))} · ${escapeHtml(l.config.balance)} · <span class="plane" title="data plane">${escapeHtml(l.plane)} plane</span></small></h2>
<p class="sum">active <b>${l.active}</b> · accepted <b>${c.accepted}</b> · rejected <b>${c.rejected}</b> · failovers <b>${c.failovers}</b> · replayed <b>${c.replayedRequests}</b> · unrecoverable <b>${c.unrecoverable}</b></p>${chart}
<table>
<thead><tr><th>backend</th><th>address</th><th>state</th><th title="time in the current state">for</th><th>weight</th><th>active</th><th>sessions</th><th title="sessions per second over the last minute">rate</th><th title="bytes from clients, sent on to the backend">sent</th><th title="bytes from the backend, written to clients">received</th><th title="last active health check and its duration">check</th><th title="connects that failed">conn err</th><th title="open server connections that failed">srv fail</th><th title="failures in a row">row</th><th>set</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>
</section>`
  })
  return `<main>
<p class="meta">up ${formatAge(process.uptime() * 1000)} · ${balancer.table.size} sessions alive · updated ${escapeHtml(new Date(now).toISOString())}</p>
${sections.join('\n')}
</main>`
}

const STYLE = `
body { font: 13px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 18px; margin: 0 0 .3em; } h2 { font-size: 15px; margin: 1.2em 0 .3em; }
small, .meta { color: #777; font-weight: normal; } .sum { margin: .2em 0 .5em; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #ccc; padding: 3px 5px; text-align: right; }
th { background: #eee; } td:first-child, td:nth-child(2), td:nth-child(3) { text-align: left; }
tr.ok td { background: #e6f6e6; } tr.warn td { background: #fff0d9; } tr.bad td { background: #fbe3e3; }
.state { font-weight: bold; } .ok .state { color: #187a18; } .warn .state { color: #b86b00; } .bad .state { color: #b21c1c; }
.chart { display: block; margin: .2em 0 .6em; font-size: 11px; }
.chart text { fill: #777; } .chart .plot { fill: #fff; stroke: #ccc; }
.chart path.active { fill: none; stroke: #2563c9; stroke-width: 1.5; stroke-linejoin: round; }
.chart circle.active { fill: #2563c9; } .chart text.active { fill: #2563c9; }
.chart rect.fo { fill: #8e44ad; opacity: .75; } .chart text.fo { fill: #8e44ad; }
.check { white-space: nowrap; } .check.pass { color: #187a18; } .check.fail { color: #b21c1c; font-weight: bold; } .none { color: #999; }
td:last-child { white-space: nowrap; } button { font: 11px system-ui, sans-serif; margin: 0 1px; padding: 1px 3px; }
.export { margin: 0 0 .3em; color: #777; } #said { min-height: 1.2em; margin: 0; color: #187a18; } #said.bad { color: #b21c1c; }
`

// Re-fetch the page and swap <main>; a failed fetch leaves the last view and says so. The buttons
// POST to the admin API like any other client: the browser sends Origin (the API refuses another
// site's), and where the server has a token a 401 asks for it once, kept for the tab's life only.
const SCRIPT = `
const TOKEN_KEY = 'baton-admin-token'
async function refresh() {
  try {
    const res = await fetch(location.pathname, { cache: 'no-store' })
    if (!res.ok) throw new Error(res.status)
    const doc = new DOMParser().parseFromString(await res.text(), 'text/html')
    document.querySelector('main').replaceWith(doc.querySelector('main'))
  } catch (err) {
    document.querySelector('.meta').textContent = 'refresh failed: ' + err.message
  }
}
setInterval(refresh, 2000)
function say(text, bad) {
  const el = document.getElementById('said')
  el.textContent = text
  el.className = bad ? 'bad' : ''
}
function post(url) {
  const headers = {}
  const token = sessionStorage.getItem(TOKEN_KEY)
  if (token) headers.authorization = 'Bearer ' + token
  return fetch(url, { method: 'POST', headers, cache: 'no-store' })
}
document.addEventListener('click', async (ev) => {
  const button = ev.target.closest('button[data-state]')
  if (!button) return
  const { backend, state } = button.dataset
  const url = '/api/backends/' + backend.split('/').map(encodeURIComponent).join('/') + '/' + state
  button.disabled = true
  try {
    let res = await post(url)
    if (res.status === 401) {
      const token = prompt('Admin token (Authorization: Bearer) for ' + location.host)
      if (!token) throw new Error('no token given')
      sessionStorage.setItem(TOKEN_KEY, token)
      res = await post(url)
      if (res.status === 401) sessionStorage.removeItem(TOKEN_KEY)
    }
    if (!res.ok) throw new Error((await res.json().catch(() => ({}))).error || 'HTTP ' + res.status)
    say(backend + ' set to ' + state)
    await refresh()
  } catch (err) {
    say(backend + ': ' + state + ' failed: ' + err.message, true)
    button.disabled = false
  }
})
`

export interface PageOptions {
  /** The server has a token: say that the buttons will ask for it. */
  token?: boolean
}

export function renderPage(balancer: Balancer, history?: History, options: PageOptions = {}): string {
  const note = options.token === true ? ' · the buttons ask for the admin token' : ''
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
<h1>Baton <small class="version">${escapeHtml(VERSION)} · Node.js ${escapeHtml(process.version)} · pid ${process.pid}</small></h1>
<p class="export">export: <a href="api/backends.csv" download>backends (CSV)</a> · <a href="api/backends">backends (JSON)</a> · <a href="api/history">history (JSON)</a> · <a href="metrics">metrics</a>${note}</p>
<p id="said" role="status"></p>
${renderMain(balancer, history)}
<script>${SCRIPT}</script>
</body>
</html>
`
}
