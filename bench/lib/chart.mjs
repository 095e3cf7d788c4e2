/**
 * bench/lib/chart.mjs — a grouped bar chart as hand-written SVG: one group per scenario, one bar per
 * series (balancer), each the series' figure relative to a reference series (HAProxy = 1.0), with a
 * dashed line at 1.0 and the value written on every bar. Bars past the top of the scale are cut at
 * it, marked with a zigzag, and still labelled with their value.
 *
 *   renderGroupedBars({ title, subtitle, series: [{ key, label, color }],
 *                       groups: [{ label, note, values: { [seriesKey]: ratio | null } }],
 *                       counts?: { title, note, groups: [{ label, note, values: { [seriesKey]: n } }] },
 *                       watermark?: string }) → string
 *
 * `counts` adds a second panel under the first, on its own scale of plain counts from 0 (failover:
 * client connections broken per balancer, where 0 is the point and a ratio to HAProxy means
 * nothing). A count of 0 gets a short mark on the axis so that it reads as measured, not missing.
 * `watermark` is written large and faint across the whole chart (quick runs).
 */

const esc = (s) =>
  String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c])

/** 0.873 → "0.87", 12.4 → "12", 1.5 → "1.50". */
const fmt = (v) => (v >= 10 ? v.toFixed(0) : v.toFixed(2))

export function renderGroupedBars({
  title,
  subtitle,
  series,
  groups,
  referenceLabel = 'reference = 1.0',
  counts,
  watermark,
}) {
  // Wide enough that every bar is at least 21 px (its value label fits above it), 1100 px at least.
  const W = Math.max(1100, 88 + groups.length * (series.length * 26 + 16))
  // Legend entries, wrapped onto as many lines as the width needs, the reference line's entry last.
  const legend = []
  let lx = 64
  let line = 0
  for (const s of [...series, { label: referenceLabel, reference: true }]) {
    const w = (s.reference ? 30 : 19) + s.label.length * 7
    if (lx + w > W - 24 && lx > 64) {
      lx = 64
      line++
    }
    legend.push({ ...s, x: lx, y: 62 + line * 20 })
    lx += w + 11
  }
  const COUNTS_H = counts !== undefined && counts.groups.length > 0 ? 250 : 0
  const H = 640 + line * 20 + COUNTS_H
  const margin = { top: 96 + line * 20, right: 24, bottom: 92 + COUNTS_H, left: 64 }
  const plotW = W - margin.left - margin.right
  const plotH = H - margin.top - margin.bottom
  const all = groups.flatMap((g) => Object.values(g.values)).filter((v) => Number.isFinite(v))
  // A linear scale from 0 to a round top between 1.5 and 3: beyond that one outlier (a direct
  // connection, say) would flatten every other bar.
  const top = Math.min(3, Math.max(1.5, Math.ceil(Math.max(1, ...all) * 2) / 2))
  const y = (v) => margin.top + plotH - (Math.min(v, top) / top) * plotH
  const groupW = plotW / groups.length
  const gap = 5
  const barW = Math.min(30, (groupW - 16) / series.length - gap)

  const out = []
  /** Value labels, drawn last: over the reference line, with a white halo. */
  const labels = []
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
      `font-family="Helvetica, Arial, sans-serif" font-size="12">`
  )
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`)
  out.push(
    `<text x="${margin.left}" y="28" font-size="18" font-weight="bold" fill="#111">${esc(title)}</text>`
  )
  if (subtitle) out.push(`<text x="${margin.left}" y="48" fill="#555">${esc(subtitle)}</text>`)

  for (const e of legend) {
    if (e.reference) {
      out.push(
        `<line x1="${e.x}" y1="${e.y + 7}" x2="${e.x + 24}" y2="${e.y + 7}" stroke="#b91c1c" stroke-width="1.5" stroke-dasharray="6 4"/>`
      )
      out.push(`<text x="${e.x + 30}" y="${e.y + 12}" fill="#b91c1c">${esc(e.label)}</text>`)
    } else {
      out.push(`<rect x="${e.x}" y="${e.y}" width="14" height="14" fill="${e.color}"/>`)
      out.push(`<text x="${e.x + 19}" y="${e.y + 12}" fill="#222">${esc(e.label)}</text>`)
    }
  }

  // Grid and axis
  for (let t = 0; t <= top + 1e-9; t += 0.5) {
    const ty = y(t)
    out.push(
      `<line x1="${margin.left}" y1="${ty}" x2="${W - margin.right}" y2="${ty}" stroke="#e5e7eb" stroke-width="1"/>`
    )
    out.push(
      `<text x="${margin.left - 8}" y="${ty + 4}" text-anchor="end" fill="#444">${t.toFixed(1)}</text>`
    )
  }
  out.push(
    `<text transform="translate(18 ${margin.top + plotH / 2}) rotate(-90)" text-anchor="middle" fill="#444">` +
      `${esc(referenceLabel)}</text>`
  )
  out.push(
    `<line x1="${margin.left}" y1="${margin.top + plotH}" x2="${W - margin.right}" y2="${margin.top + plotH}" stroke="#333"/>`
  )

  // Bars
  groups.forEach((g, gi) => {
    const present = series.filter((s) => Number.isFinite(g.values[s.key]))
    const gx = margin.left + gi * groupW
    const start = gx + (groupW - present.length * (barW + gap) + gap) / 2
    present.forEach((s, i) => {
      const v = g.values[s.key]
      const bx = start + i * (barW + gap)
      const by = y(v)
      const bh = margin.top + plotH - by
      out.push(
        `<rect x="${bx.toFixed(1)}" y="${by.toFixed(1)}" width="${barW.toFixed(1)}" height="${bh.toFixed(1)}" fill="${s.color}"><title>${esc(`${s.label} — ${g.label}: ${fmt(v)}`)}</title></rect>`
      )
      if (v > top) {
        // cut mark: a white zigzag across the bar near its top
        const zy = by + 10
        const pts = [0, 0.25, 0.5, 0.75, 1].map(
          (f, k) => `${(bx + f * barW).toFixed(1)},${zy + (k % 2 ? -4 : 4)}`
        )
        out.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="#fff" stroke-width="3"/>`)
      }
      labels.push(
        `<text x="${(bx + barW / 2).toFixed(1)}" y="${(by - 4).toFixed(1)}" text-anchor="middle" font-size="10" fill="#111" stroke="#fff" stroke-width="3" paint-order="stroke">${fmt(v)}</text>`
      )
    })
    const cx = gx + groupW / 2
    out.push(
      `<text x="${cx}" y="${margin.top + plotH + 20}" text-anchor="middle" font-weight="bold" fill="#111">${esc(g.label)}</text>`
    )
    if (g.note)
      out.push(
        `<text x="${cx}" y="${margin.top + plotH + 36}" text-anchor="middle" fill="#666" font-size="11">${esc(g.note)}</text>`
      )
    if (gi > 0)
      out.push(`<line x1="${gx}" y1="${margin.top}" x2="${gx}" y2="${margin.top + plotH}" stroke="#f1f1f1"/>`)
  })

  // The reference line over the bars, the value labels over it.
  out.push(
    `<line x1="${margin.left}" y1="${y(1)}" x2="${W - margin.right}" y2="${y(1)}" stroke="#b91c1c" stroke-width="1.5" stroke-dasharray="6 4"/>`
  )
  out.push(...labels)
  out.push(
    `<text x="${margin.left}" y="${margin.top + plotH + 66}" fill="#666" font-size="11">Each bar: the figure divided by ` +
      `the reference's, from the same run; bars past ${top.toFixed(1)} are cut (zigzag) and keep their value on top.</text>`
  )
  if (COUNTS_H > 0) out.push(...countPanel(counts, series, { x: margin.left, y: H - COUNTS_H, w: plotW }))
  if (watermark)
    out.push(
      `<text x="${W / 2}" y="${H / 2}" text-anchor="middle" font-size="${Math.round(W / 26)}" font-weight="bold" ` +
        `fill="#dc2626" fill-opacity="0.13" transform="rotate(-18 ${W / 2} ${H / 2})">${esc(watermark)}</text>`
    )
  out.push('</svg>')
  return out.join('\n') + '\n'
}

/**
 * The counts panel: its title, a 0..top scale of whole numbers, one group per scenario with a bar
 * per series, the count on every bar (a mark on the axis for 0).
 */
function countPanel(counts, series, { x, y, w }) {
  const out = []
  const top = 44
  const plotH = 140
  const base = y + top + plotH
  const all = counts.groups.flatMap((g) => Object.values(g.values)).filter((v) => Number.isFinite(v))
  const max = Math.max(1, ...all)
  const step = max <= 5 ? 1 : max <= 10 ? 2 : max <= 25 ? 5 : Math.ceil(max / 50) * 10
  const scaleTop = Math.ceil(max / step) * step
  const yv = (v) => base - (v / scaleTop) * plotH
  out.push(
    `<text x="${x}" y="${y + 4}" font-size="14" font-weight="bold" fill="#111">${esc(counts.title)}</text>`
  )
  if (counts.note)
    out.push(`<text x="${x}" y="${y + 20}" fill="#555" font-size="11">${esc(counts.note)}</text>`)
  for (let t = 0; t <= scaleTop; t += step) {
    out.push(`<line x1="${x}" y1="${yv(t)}" x2="${x + w}" y2="${yv(t)}" stroke="#e5e7eb"/>`)
    out.push(`<text x="${x - 8}" y="${yv(t) + 4}" text-anchor="end" fill="#444">${t}</text>`)
  }
  out.push(`<line x1="${x}" y1="${base}" x2="${x + w}" y2="${base}" stroke="#333"/>`)
  const groupW = w / counts.groups.length
  const gap = 5
  const barW = Math.min(30, (groupW - 16) / series.length - gap)
  counts.groups.forEach((g, gi) => {
    const present = series.filter((s) => Number.isFinite(g.values[s.key]))
    const gx = x + gi * groupW
    const start = gx + (groupW - present.length * (barW + gap) + gap) / 2
    present.forEach((s, i) => {
      const v = g.values[s.key]
      const bx = start + i * (barW + gap)
      const by = yv(v)
      if (v > 0)
        out.push(
          `<rect x="${bx.toFixed(1)}" y="${by.toFixed(1)}" width="${barW.toFixed(1)}" height="${(base - by).toFixed(1)}" fill="${s.color}"><title>${esc(`${s.label} — ${g.label}: ${v}`)}</title></rect>`
        )
      else
        out.push(
          `<rect x="${bx.toFixed(1)}" y="${(base - 3).toFixed(1)}" width="${barW.toFixed(1)}" height="3" fill="${s.color}"><title>${esc(`${s.label} — ${g.label}: 0`)}</title></rect>`
        )
      out.push(
        `<text x="${(bx + barW / 2).toFixed(1)}" y="${(by - 6).toFixed(1)}" text-anchor="middle" font-size="11" font-weight="bold" fill="${v === 0 ? '#15803d' : '#111'}">${v}</text>`
      )
    })
    const cx = gx + groupW / 2
    out.push(
      `<text x="${cx}" y="${base + 20}" text-anchor="middle" font-weight="bold" fill="#111">${esc(g.label)}</text>`
    )
    if (g.note)
      out.push(
        `<text x="${cx}" y="${base + 36}" text-anchor="middle" fill="#666" font-size="11">${esc(g.note)}</text>`
      )
  })
  return out
}
