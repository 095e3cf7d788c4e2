/**
 * The status page at `GET /`, after HAProxy's stats page: one table per listener with its backends,
 * their state colour-coded, sessions and failovers. Self-contained (inline CSS and JS, nothing
 * fetched from elsewhere). The page is rendered here, on the server, in one place; its script
 * re-fetches `/` every 2 s and swaps the `<main>` element, so there is no second renderer in JS and
 * the page still works (without refreshing) when scripts are off.
 */
import type { Balancer } from '../balancer.js'
import { backendJson, type BackendJson } from './api.js'

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
    escapeHtml(b.name),
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

export function renderMain(balancer: Balancer): string {
  const sections = balancer.frontends.map((l) => {
    const a = l.address()
    const c = l.counters
    const rows = l.backends.map((b) => backendRow(backendJson(l, b))).join('\n')
    return `<section>
<h2>${escapeHtml(l.name)} <small>${escapeHtml(`${a.host}:${a.port}`)} · ${escapeHtml(l.config.balance)}</small></h2>
<p class="sum">active <b>${l.active}</b> · accepted <b>${c.accepted}</b> · rejected <b>${c.rejected}</b> · failovers <b>${c.failovers}</b> · replayed <b>${c.replayedRequests}</b> · unrecoverable <b>${c.unrecoverable}</b></p>
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

export function renderPage(balancer: Balancer): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Baton status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>${STYLE}</style>
</head>
<body>
<h1>Baton</h1>
${renderMain(balancer)}
<script>${SCRIPT}</script>
</body>
</html>
`
}
