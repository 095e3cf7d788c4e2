/**
 * The data plane the tests run opaque, http1 and resp listeners on, from one parameter: `BATON_TEST_PLANE=js`
 * (the default) or `native` (`npm run test:native-plane`). Listener configs built through the
 * helpers (`startBalancer`, `scope().balancer`, `withPlane`) get `dataPlane` set to it wherever the
 * test did not choose one itself, on opaque, http1 and resp listeners (the protocols the plane carries);
 * listeners of the other parsing protocols stay on js whatever it says.
 *
 * On `native` without the addon, importing this module skips the whole file with the loader's
 * reason (a TAP `1..0 # SKIP`), so the native run passes cleanly where nothing could be built.
 */
import t from 'tap'
import { loadNativePlane } from '../../lib/native/plane.js'

export type TestPlane = 'js' | 'native'

function planeFromEnv(): TestPlane {
  const v = process.env.BATON_TEST_PLANE
  if (v === undefined || v === '' || v === 'js') return 'js'
  if (v === 'native') return 'native'
  throw new Error(`BATON_TEST_PLANE must be js or native, got ${JSON.stringify(v)}`)
}

export const TEST_PLANE: TestPlane = planeFromEnv()

if (TEST_PLANE === 'native') {
  const load = loadNativePlane()
  if (load.plane === undefined) {
    t.plan(0, `native plane unavailable: ${load.reason}`)
    process.exit(0)
  }
}

type Listenerish = { protocol?: unknown; dataPlane?: unknown }

/** The protocols the native plane carries (opaque) or follows (http1, resp; lib/protocols/types.ts). */
const ON_EITHER = new Set(['opaque', 'http1', 'resp'])

/** `config` with `dataPlane: TEST_PLANE` on each opaque listener that does not set one. */
export function withPlane<C extends { listeners?: readonly unknown[] }>(config: C): C {
  if (config.listeners === undefined) return config
  return {
    ...config,
    listeners: config.listeners.map((l) => {
      const x = l as Listenerish
      if (x.dataPlane !== undefined || (x.protocol !== undefined && !ON_EITHER.has(String(x.protocol))))
        return l
      return { ...x, dataPlane: TEST_PLANE }
    }),
  }
}
