/**
 * `dataPlane: auto | js | native`: which plane a listener resolves to, the config check that
 * refuses `native` where it cannot be had (naming the loader's reason), and where the resolved
 * plane shows: `baton --check`, the listener snapshot (GET /api/listeners) and /metrics.
 */
import t from 'tap'
import { createMetrics } from '../../lib/admin/metrics.js'
import { renderMain } from '../../lib/admin/page.js'
import { createBalancer } from '../../lib/balancer.js'
import { validateConfig } from '../../lib/config/validate.js'
import { ConfigError } from '../../lib/errors.js'
import { applyNativeThreads, resolveDataPlane, resolveNativeThreads } from '../../lib/native/data-plane.js'
import { loadNativePlane, probeNativePlane } from '../../lib/native/plane.js'
import { skip } from './helpers/native-proxy.js'

const missing = probeNativePlane({ file: '/nonexistent/baton_plane.node' })
const loaded = loadNativePlane()

t.test('resolution: auto, js and native against the addon and the protocol', async (t) => {
  t.equal(missing.plane, undefined, 'a missing file does not load')
  t.same(resolveDataPlane({ dataPlane: 'js', protocol: 'opaque' }, loaded), {
    plane: 'js',
    native: undefined,
    reason: undefined,
  })
  for (const protocol of ['length-prefixed', 'memcached']) {
    t.equal(resolveDataPlane({ dataPlane: 'auto', protocol }, loaded).plane, 'js', `${protocol}: js`)
  }
  // http1 and resp are followed by the plane (it hands a session to JavaScript whenever it cannot).
  for (const protocol of ['http1', 'resp']) {
    t.equal(
      resolveDataPlane({ dataPlane: 'auto', protocol }, loaded).plane,
      loaded.plane !== undefined ? 'native' : 'js',
      `${protocol}: native where the addon loaded`
    )
  }
  const without = resolveDataPlane({ dataPlane: 'auto', protocol: 'opaque' }, missing)
  t.equal(without.plane, 'js', 'auto without the addon: js')
  t.equal(without.reason, missing.reason, 'with the loader’s reason')
  if (loaded.plane !== undefined) {
    const on = resolveDataPlane({ dataPlane: 'auto', protocol: 'opaque' }, loaded)
    t.equal(on.plane, 'native', 'auto with the addon, opaque: native')
    t.equal(on.native, loaded.plane)
  }
})

t.test('the config check: native for a parsing protocol is refused, saying why', async (t) => {
  const err = t.throws(() =>
    validateConfig({
      listeners: [
        { listen: '127.0.0.1:0', backends: ['127.0.0.1:1'], protocol: 'memcached', dataPlane: 'native' },
      ],
    })
  ) as ConfigError
  t.type(err, ConfigError)
  t.match(err.issues, [/^listeners\[0\]\.dataPlane: the native plane carries opaque, http1 and resp only; protocol memcached/])
  const typo = t.throws(() =>
    validateConfig({
      listeners: [{ listen: '127.0.0.1:0', backends: ['127.0.0.1:1'], dataPlane: 'fast' }],
    })
  ) as ConfigError
  t.match(typo.issues, [/^listeners\[0\]\.dataPlane: expected one of "auto", "js", "native"/])
})

t.test(
  'native where the addon is loaded: accepted, and shown by the snapshot, /metrics and the status page',
  { skip },
  async (t) => {
    const balancer = createBalancer({
      listeners: [
        { name: 'fast', listen: '127.0.0.1:0', backends: ['127.0.0.1:1'], dataPlane: 'native' },
        { name: 'parsed', listen: '127.0.0.1:0', backends: ['127.0.0.1:1'], protocol: 'memcached' },
        { name: 'forced', listen: '127.0.0.1:0', backends: ['127.0.0.1:1'], dataPlane: 'js' },
      ],
      log: { level: 'silent' },
    })
    t.same(
      balancer.listenerSnapshots().map((l) => [l.name, l.dataPlane]),
      [
        ['fast', 'native'],
        ['parsed', 'js'],
        ['forced', 'js'],
      ]
    )
    const text = await createMetrics(balancer).metrics()
    t.match(text, /baton_data_plane\{listener="fast",plane="native"\} 1/)
    t.match(text, /baton_data_plane\{listener="parsed",plane="js"\} 1/)
    t.match(text, /baton_data_plane\{listener="forced",plane="js"\} 1/)
    const page = renderMain(balancer)
    t.match(page, /<h2>fast <small>[^<]*<span class="plane" title="data plane">native plane<\/span>/)
    t.match(page, /<h2>parsed <small>[^<]*<span class="plane" title="data plane">js plane<\/span>/)
  }
)

t.test('nativeThreads: auto is the CPUs shared out between the workers; the schema bounds it', async (t) => {
  t.equal(resolveNativeThreads({ nativeThreads: 'auto' }, 8), 8, 'one process: every CPU')
  t.equal(resolveNativeThreads({ nativeThreads: 'auto', workers: 2 }, 8), 4, 'two workers: half each')
  t.equal(resolveNativeThreads({ nativeThreads: 'auto', workers: 3 }, 2), 1, 'at least one')
  t.equal(resolveNativeThreads({ nativeThreads: 'auto', workers: 'auto' }, 8), 1, 'a worker per CPU: one each')
  t.equal(resolveNativeThreads({ nativeThreads: 'auto' }, 500), 64, 'at most 64')
  t.equal(resolveNativeThreads({ nativeThreads: 0, workers: 4 }, 8), 0, 'a number is taken as it is')
  const base = { listeners: [{ listen: '127.0.0.1:7000', backends: ['127.0.0.1:7101'] }] }
  t.equal(validateConfig(base).nativeThreads, 'auto', 'default auto')
  t.equal(validateConfig({ ...base, nativeThreads: '3' }).nativeThreads, 3, '"3" reads as 3')
  for (const bad of [-1, 65, 1.5, 'many']) {
    const err = t.throws(() => validateConfig({ ...base, nativeThreads: bad })) as ConfigError
    t.match(err.message, /nativeThreads: expected "auto" or an integer from 0 to 64/, `${bad} refused`)
  }
  if (loaded.plane !== undefined) {
    const plane = loaded.plane
    const before = plane.poolStats().threads
    t.teardown(() => plane.configure({ threads: before }))
    t.equal(applyNativeThreads({ nativeThreads: 1 }, loaded), 1)
    t.equal(plane.poolStats().threads, 1, 'given to the plane')
  }
  t.equal(applyNativeThreads({ nativeThreads: 1 }, missing), undefined, 'nothing without the addon')
})
