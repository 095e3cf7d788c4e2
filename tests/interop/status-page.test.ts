/**
 * Interop: the admin status page in a real browser. Debian's Chromium (/usr/bin/chromium, driven
 * by playwright-core, which `npm run setup:extras` installs; never a downloaded browser) opens `GET /` of an admin server in front of a
 * balancer with three in-process echo backends. The page must show every backend UP in green, then,
 * refreshing by itself, one drained through the API in orange and one whose server was killed
 * DOWN in red, and a history chart with a drawn line. A screenshot is decoded and must not be
 * blank: many colours, and the row colours of all three states present.
 *
 * Set BATON_SCREENSHOT_DIR to keep the screenshot; otherwise it is written to a temporary
 * directory that is removed when the test passes (and kept, with its path printed, when it fails).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { pino } from 'pino'
import t from 'tap'
import { startAdmin } from '../../lib/admin/server.js'
import { backendsOf, scope } from '../helpers/balancer.js'
import type { Client } from '../helpers/clients.js'
import { echoServer, HOST, TestServer } from '../helpers/servers.js'
import { collect, within } from '../helpers/wait.js'
import { loadChromium, MISSING_PLAYWRIGHT, type Browser, type Page } from './helpers/browser.js'
import { countColour, decodePng, distinctColours } from './helpers/png.js'

const CHROMIUM = '/usr/bin/chromium'
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]
/** For anything the browser does; the page refreshes every 2 s and health checks run every 100 ms. */
const BROWSER_MS = 15_000
/** History samples every 200 ms, so the chart has points within a second or two. */
const HISTORY_MS = 200

/** The page's row colours (page.ts STYLE), as the browser reports a computed colour. */
const ROW = { ok: '#e6f6e6', warn: '#fff0d9', bad: '#fbe3e3' }
const rgb = (hex: string): string => {
  const n = Number.parseInt(hex.slice(1), 16)
  return `rgb(${n >> 16}, ${(n >> 8) & 0xff}, ${n & 0xff})`
}

const log = pino({ level: 'silent' })
const TOKEN = 'status-page-test-token'
const AUTH = { authorization: `Bearer ${TOKEN}` }

// The callbacks given to page.evaluate() and page.waitForFunction() run in the page, not in Node.
// These are the few DOM names they use: the project's tsconfig has no DOM lib, and adding it would
// retype Node's globals (timers, fetch) for every file.
interface DomElement {
  readonly textContent: string | null
  readonly className: string
  readonly classList: { contains(name: string): boolean }
  querySelector(selector: string): DomElement | null
  querySelectorAll(selector: string): Iterable<DomElement>
  getAttribute(name: string): string | null
  getBoundingClientRect(): { width: number; height: number }
}
declare const document: DomElement
declare function getComputedStyle(element: DomElement): { backgroundColor: string }

/** The state text, row class and first cell's background of a backend's row. */
function rowOf(page: Page, name: string): Promise<{ cls: string; state: string; background: string } | null> {
  return page.evaluate((name) => {
    for (const tr of document.querySelectorAll('main tbody tr')) {
      const cell = tr.querySelector('td')
      if (cell?.textContent !== name) continue
      return {
        cls: tr.className,
        state: tr.querySelector('.state')?.textContent ?? '',
        background: getComputedStyle(cell).backgroundColor,
      }
    }
    return null
  }, name)
}

/** The text of every cell of a backend's row. */
function cellsOf(page: Page, name: string): Promise<string[] | null> {
  return page.evaluate((name) => {
    for (const tr of document.querySelectorAll('main tbody tr')) {
      if (tr.querySelector('td')?.textContent !== name) continue
      return [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')
    }
    return null
  }, name)
}

/** Wait until the page, refreshing by itself, shows backend `name` with row class `cls`. */
async function waitForRow(page: Page, name: string, cls: string): Promise<void> {
  await page.waitForFunction(
    ([name, cls]) =>
      [...document.querySelectorAll('main tbody tr')].some(
        (tr) => tr.querySelector('td')?.textContent === name && tr.classList.contains(cls!)
      ),
    [name, cls],
    { timeout: BROWSER_MS, polling: 100 }
  )
}

t.test('the status page in headless Chromium', async (t) => {
  if (!existsSync(CHROMIUM)) {
    const why = `${CHROMIUM} is missing (apt-get install -y chromium)`
    if (process.env.CI !== undefined) t.fail(why)
    else t.pass('status page in Chromium', { skip: why })
    return
  }
  const chromium = loadChromium()
  if (chromium === undefined) {
    if (process.env.CI !== undefined) t.fail(MISSING_PLAYWRIGHT)
    else t.pass('status page in Chromium', { skip: MISSING_PLAYWRIGHT })
    return
  }

  const s = scope(t)
  const alpha = await s.server(echoServer('alpha'))
  const bravo = await s.server(echoServer('bravo'))
  // An echo server that can be told to read and not answer, so requests are in flight when it dies.
  let holding = false
  const charlie = await s.server(
    new TestServer('charlie', (socket) => {
      socket.on('data', (chunk: Buffer) => {
        if (!holding) socket.write(chunk)
        else charlie.emit('held')
      })
    }).listen()
  )
  const { balancer, port } = await s.balancer({
    log: { level: 'silent' },
    listeners: [
      {
        name: 'web',
        listen: { host: HOST, port: 0 },
        balance: 'round-robin',
        backends: backendsOf([alpha, bravo, charlie]),
        healthCheck: { type: 'tcp', interval: 100, timeout: 500, rise: 1, fall: 1 },
        connectTimeout: 1000,
      },
    ],
  })
  // With a token: GETs from loopback need none, the page's buttons (POSTs) do.
  const admin = await startAdmin(balancer, {
    host: HOST,
    port: 0,
    log,
    token: TOKEN,
    history: { intervalMs: HISTORY_MS },
  })
  t.teardown(() => admin.close())
  const base = `http://${HOST}:${admin.address().port}`

  // Six sessions, two on each backend (round robin), kept open so the chart has a level to draw.
  const clients: Client[] = []
  for (let i = 0; i < 6; i++) {
    const c = await s.connect(port)
    const data = Buffer.from(`client ${i}\n`)
    t.same(await c.roundTrip(data), data, `client ${i} echoed`)
    clients.push(c)
  }

  let browser: Browser | undefined
  t.teardown(async () => {
    await within(browser?.close() ?? Promise.resolve(), 'browser close', BROWSER_MS).catch(() => {})
  })
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: BROWSER_MS })
  const page = await browser.newPage({ viewport: { width: 1024, height: 640 } })
  page.setDefaultTimeout(BROWSER_MS)

  // Everything that goes wrong in the page, from its first request to the screenshot.
  const problems: string[] = []
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`)
  })
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`))
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`))
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`)
  })

  const res = await page.goto(`${base}/`, { waitUntil: 'load' })
  t.equal(res?.status(), 200, 'GET / answers 200')
  t.equal(await page.title(), 'Baton status')
  t.match(await page.textContent('h1'), /^Baton \d/)
  t.match(
    await page.textContent('main h2'),
    /^web 127\.0\.0\.1:\d+ · round-robin · js plane$/,
    'the listener heading names its data plane (js by default)'
  )

  for (const name of ['alpha', 'bravo', 'charlie']) {
    t.same(
      await rowOf(page, name),
      { cls: 'ok', state: 'UP', background: rgb(ROW.ok) },
      `${name} UP in green`
    )
  }
  t.match(await page.textContent('h1 .version'), /^\d+\.\d+\.\d+\S* · Node\.js v\d+\S* · pid \d+$/, 'version')
  t.match(await page.textContent('main .meta'), /^up \d+ (s|min)/, 'uptime')
  t.match(await page.textContent('.export'), /the buttons ask for the admin token/)
  // Each backend took two sessions and echoed 9 bytes each way for each ("client N\n").
  await page.waitForFunction(
    () =>
      [...document.querySelectorAll('main tbody tr')].every((tr) =>
        /^ok \d/.test([...tr.querySelectorAll('td')][10]?.textContent ?? '')
      ),
    undefined,
    { timeout: BROWSER_MS, polling: 100 }
  )
  const cells = await cellsOf(page, 'alpha')
  t.match(cells, [
    'alpha',
    /^127\.0\.0\.1:\d+$/,
    'UP',
    /^\d+ s$/,
    '1',
    '2',
    '2',
    /^(–|\d+(\.\d+)?\/s)$/,
    '18 B',
    '18 B',
    /^ok \d+(\.\d)? ms$/,
    '0',
    '0',
    '0',
    'readydrainmaint',
  ])

  // Drain bravo through the API; the page must show it on one of its own refreshes.
  const drained = await within(
    fetch(`${base}/api/backends/bravo/drain`, {
      method: 'POST',
      headers: AUTH,
      signal: AbortSignal.timeout(BROWSER_MS),
    }),
    'POST drain'
  )
  t.equal(drained.status, 200, 'drain accepted')
  await waitForRow(page, 'bravo', 'warn')
  t.same(
    await rowOf(page, 'bravo'),
    { cls: 'warn', state: 'DRAIN', background: rgb(ROW.warn) },
    'bravo DRAIN in orange'
  )

  // Every client sends again; charlie reads its two requests and holds them. Then it is killed (its
  // listener and connections): those two fail over to alpha (bravo is draining), unseen by the
  // clients, and the health check marks charlie down.
  holding = true
  const held = collect(charlie, 'held', 2)
  const again = clients.map((c, i) => c.roundTrip(Buffer.from(`again ${i}\n`)))
  await held
  await charlie.close()
  for (const [i, echo] of (await Promise.all(again)).entries())
    t.same(echo, Buffer.from(`again ${i}\n`), `client ${i} echoed again`)
  t.equal(balancer.frontends[0]!.counters.failovers, 2, 'two sessions failed over')
  await waitForRow(page, 'charlie', 'bad')
  t.same(
    await rowOf(page, 'charlie'),
    { cls: 'bad', state: 'DOWN', background: rgb(ROW.bad) },
    'charlie DOWN in red'
  )
  t.same(await rowOf(page, 'alpha'), { cls: 'ok', state: 'UP', background: rgb(ROW.ok) }, 'alpha still UP')

  // The chart: a line through several samples and the failovers' bar (new ones on each refresh).
  await page.waitForFunction(
    () =>
      (document.querySelector('svg.chart path.active')?.getAttribute('d')?.split('L').length ?? 0) >= 6 &&
      document.querySelector('svg.chart rect.fo') !== null,
    undefined,
    { timeout: BROWSER_MS, polling: 100 }
  )
  const chart = await page.evaluate(() => {
    const svg = document.querySelector('svg.chart')!
    const box = svg.querySelector('path.active')!.getBoundingClientRect()
    return {
      label: svg.getAttribute('aria-label'),
      points: svg.querySelector('path.active')!.getAttribute('d')!.split(' ').length,
      drawn: box.width > 0,
      bars: [...svg.querySelectorAll('rect.fo')].map((r) => r.textContent),
      legend: [...svg.querySelectorAll('text')].map((x) => x.textContent),
    }
  })
  t.match(chart.label, /^web: live sessions and failovers per 200 ms, last 24 s$/)
  t.ok(chart.points >= 6, `the line has ${chart.points} points`)
  t.ok(chart.drawn, 'the line has a size on screen')
  // Both failovers follow charlie's death at once; a sample may still fall between them.
  const perBar = chart.bars.map((b) => Number(/^(\d+) failovers?$/.exec(b ?? '')?.[1]))
  t.equal(
    perBar.reduce((a, b) => a + b, 0),
    2,
    `failover bars ${JSON.stringify(chart.bars)} add up to the two failovers`
  )
  t.same(chart.legend, [
    'active sessions · max 6',
    `failovers per 200 ms · max ${Math.max(...perBar)}`,
    '−24 s',
    'now',
  ])

  const history = (await (
    await within(
      fetch(`${base}/api/history`, { signal: AbortSignal.timeout(BROWSER_MS) }),
      'GET /api/history'
    )
  ).json()) as { listeners: { listener: string; samples: { active: number }[] }[] }
  t.equal(history.listeners[0]?.listener, 'web')
  t.ok(
    history.listeners[0]!.samples.some((x) => x.active === 6),
    'the history saw the open sessions'
  )

  // The screenshot: decoded, it must show a rendered page, not a blank or half-painted one.
  const png = await page.screenshot({ fullPage: true })
  const keep = process.env.BATON_SCREENSHOT_DIR
  const dir = keep ?? mkdtempSync(path.join(tmpdir(), 'baton-status-'))
  const file = path.join(dir, 'status-page.png')
  writeFileSync(file, png)
  t.teardown(() => {
    if (keep === undefined && t.passing()) rmSync(dir, { recursive: true, force: true })
    else t.comment(`screenshot: ${file}`)
  })
  const image = decodePng(png)
  t.equal(image.width, 1024, 'screenshot width')
  t.ok(image.height >= 640, 'screenshot height')
  const colours = distinctColours(image)
  t.ok(colours >= 50, `${colours} distinct colours (text is anti-aliased; a blank page has one)`)
  for (const [cls, colour] of Object.entries(ROW)) {
    const n = countColour(image, colour)
    t.ok(n >= 500, `${n} pixels of the ${cls} row colour ${colour}`)
  }
  t.ok(countColour(image, '#2563c9', 40) >= 20, 'the chart line is painted')
  t.ok(countColour(image, '#a97bc4', 40) >= 4, 'the failover bar is painted')

  // The export link: CSV with a header line and a row per backend.
  const csvHref = await page.evaluate(() => document.querySelector('.export a')?.getAttribute('href') ?? null)
  t.equal(csvHref, 'api/backends.csv')
  const csv = await (
    await within(fetch(`${base}/${csvHref}`, { signal: AbortSignal.timeout(BROWSER_MS) }), 'GET csv')
  ).text()
  t.match(csv.split('\r\n')[0], /^listener,backend,address,health,admin,/)
  t.equal(csv.split('\r\n').filter((l) => l.startsWith('web,')).length, 3, 'three backends in the CSV')

  // The buttons: bravo (draining) back to ready. The server has a token, so the first POST gets a
  // 401 and the page asks for the token (a prompt), then sends it. A wrong token is refused first.
  const answers = ['wrong-token', TOKEN]
  const asked: string[] = []
  page.on('dialog', (d) => {
    asked.push(d.message())
    void d.accept(answers.shift() ?? '')
  })
  await page.click('button[data-backend="web/bravo"][data-state="ready"]')
  await page.waitForFunction(() => document.querySelector('#said')?.textContent !== '', undefined, {
    timeout: BROWSER_MS,
  })
  t.match(await page.textContent('#said'), /^web\/bravo: ready failed: missing or wrong bearer token$/)
  t.equal(balancer.frontends[0]!.backends[1]!.admin, 'drain', 'a wrong token changes nothing')
  await page.click('button[data-backend="web/bravo"][data-state="ready"]')
  await waitForRow(page, 'bravo', 'ok')
  t.equal(await page.textContent('#said'), 'web/bravo set to ready')
  t.equal(balancer.frontends[0]!.backends[1]!.admin, 'ready', 'the button set bravo ready')
  t.equal(asked.length, 2, 'the token was asked for on each 401')
  t.match(asked[0], /^Admin token/)
  // Once given, the token is kept for the tab: the next button needs no prompt.
  await page.click('button[data-backend="web/bravo"][data-state="maint"]')
  await waitForRow(page, 'bravo', 'bad')
  t.equal(balancer.frontends[0]!.backends[1]!.admin, 'maint')
  t.equal(asked.length, 2, 'no third prompt')
  // 401s seen by the page are the expected ones above; anything else is a problem.
  const unexpected = problems.filter(
    (p) => !/^(HTTP 401|console error: Failed to load resource.*401)/.test(p)
  )
  t.same(unexpected, [], 'no console errors, page errors or failed requests besides the 401s')
  t.equal(
    problems.filter((p) => p.startsWith('HTTP 401')).length,
    3, // no token, the wrong one (then dropped), no token again before the right one

    `two 401 answers: ${JSON.stringify(problems)}`
  )
  problems.length = 0

  t.same(problems, [], 'no console errors, page errors or failed requests')
  for (const c of clients) c.destroy()
})
