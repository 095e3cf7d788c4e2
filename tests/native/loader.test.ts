/**
 * The plane is optional: the loader says why it is not there instead of throwing, and the install
 * script never fails an install (it only fails `npm run build:native`, which asks for the build).
 * The install runs on a copy of binding.gyp and native/ in a temporary directory, so this file
 * never touches the build the other tests use.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { loadNativePlane, probeNativePlane } from '../../lib/native/plane.js'
import { ROOT } from '../helpers/cli.js'

t.test('the loader gives a reason instead of a plane', async (t) => {
  t.match(probeNativePlane({ platform: 'darwin' }), { plane: undefined, reason: /Linux-only.*darwin/ })
  t.match(probeNativePlane({ disabled: true }), { plane: undefined, reason: /BATON_NATIVE=0/ })
  t.match(probeNativePlane({ file: path.join(os.tmpdir(), 'no-such-baton-plane.node') }), {
    plane: undefined,
    reason: /not built.*npm run build:native/,
  })
  const junk = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'baton-native-')), 'junk.node')
  fs.writeFileSync(junk, 'not an ELF file')
  t.teardown(() => fs.rmSync(path.dirname(junk), { recursive: true, force: true }))
  t.match(probeNativePlane({ file: junk }), { plane: undefined, reason: /failed to load/ })
})

t.test('the loader loads the built addon once', { skip: loadNativePlane().reason ?? false }, async (t) => {
  const first = loadNativePlane()
  t.ok(first.plane, first.reason ?? 'loaded')
  t.equal(loadNativePlane(), first, 'the same answer every time')
  t.equal(probeNativePlane().plane, first.plane, 'one Plane per binding (a second would steal its callback)')
  t.equal(first.plane?.version, '5')
})

/** A scratch copy of what the install script needs; it builds into <dir>/build. */
function scratchPackage(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-install-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  fs.copyFileSync(path.join(ROOT, 'binding.gyp'), path.join(dir, 'binding.gyp'))
  fs.cpSync(path.join(ROOT, 'native'), path.join(dir, 'native'), { recursive: true })
  return dir
}

function install(dir: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [path.join(dir, 'native', 'install.mjs'), ...args], {
    cwd: dir,
    encoding: 'utf8',
    timeout: 240_000,
    env: { ...process.env, ...env },
  })
}

const linux = process.platform === 'linux' ? false : 'Linux only'

t.test('install: without a working compiler it prints one line and succeeds', { skip: linux }, async (t) => {
  const dir = scratchPackage(t)
  const run = install(dir, [], { CC: '/nonexistent/cc', CXX: '/nonexistent/c++' })
  t.equal(run.status, 0, 'npm install would go on')
  const lines = run.stdout.trim().split('\n')
  t.equal(lines.length, 1, 'one line')
  t.match(lines[0], /^baton: native splice plane not built \(.*\); the JavaScript data plane will be used$/)
  t.notOk(fs.existsSync(path.join(dir, 'build', 'Release', 'baton_plane.node')))
  t.ok(fs.existsSync(path.join(dir, 'build', 'native-build.log')), 'the compiler output is kept in a log')

  const strict = install(dir, ['--required'], { CC: '/nonexistent/cc', CXX: '/nonexistent/c++' })
  t.equal(strict.status, 1, 'npm run build:native does fail')
})

t.test('install: BATON_NATIVE=0 skips the build', { skip: linux }, async (t) => {
  const dir = scratchPackage(t)
  const run = install(dir, [], { BATON_NATIVE: '0' })
  t.equal(run.status, 0)
  t.match(run.stdout, /not built \(BATON_NATIVE=0\)/)
})

t.test('install: builds offline with the headers beside node', { skip: linux }, async (t) => {
  const dir = scratchPackage(t)
  // No npm_config_* from a surrounding npm run: the script must find node-gyp and the headers itself.
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('npm_')) env[k] = v
  const run = spawnSync(process.execPath, [path.join(dir, 'native', 'install.mjs'), '--required'], {
    cwd: dir,
    encoding: 'utf8',
    timeout: 240_000,
    env: { ...env, http_proxy: 'http://127.0.0.1:9', https_proxy: 'http://127.0.0.1:9' },
  })
  t.equal(run.status, 0, run.stderr || 'built')
  t.ok(fs.existsSync(path.join(dir, 'build', 'Release', 'baton_plane.node')), 'the addon is there')
})
