#!/usr/bin/env node
/**
 * native/install.mjs — build the optional native splice plane (binding.gyp → build/Release/
 * baton_plane.node) with the node-gyp that ships inside npm, offline.
 *
 *   node native/install.mjs              npm's install script: never fails; one line if no build
 *   node native/install.mjs --required   npm run build:native: exit 1 (with the compiler output) on failure
 *
 * A root binding.gyp makes npm run `node-gyp rebuild` by default and fail the whole install when that
 * fails; package.json's explicit "install" script replaces that default with this file, so a machine
 * without a compiler still installs Baton and runs it on the JavaScript data plane.
 *
 * Offline: node-gyp downloads Node's headers unless it is told where they are. When npm did not say
 * (npm_config_nodedir), the headers next to the running node (<prefix>/include/node/node_api.h, as
 * Debian's nodejs and the official tarballs install them) are used. BATON_NATIVE=0 skips the build.
 * The full build output goes to build/native-build.log.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
const required = process.argv.includes('--required')
const LOG = path.join(ROOT, 'build', 'native-build.log')

function giveUp(reason, output = '') {
  if (required) {
    if (output) process.stderr.write(output)
    console.error(`baton: native splice plane not built: ${reason}`)
    process.exit(1)
  }
  console.log(`baton: native splice plane not built (${reason}); the JavaScript data plane will be used`)
  process.exit(0)
}

/** node-gyp's entry point: npm's own (npm_config_node_gyp in lifecycle scripts), else the one beside node. */
function findNodeGyp() {
  const prefix = path.dirname(path.dirname(process.execPath))
  const candidates = [
    process.env.npm_config_node_gyp,
    path.join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    path.join(prefix, 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    path.join(prefix, 'share', 'nodejs', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ]
  return candidates.find((c) => c !== undefined && c !== '' && fs.existsSync(c))
}

/** Where Node's headers are, so node-gyp does not download them. */
function nodeDir() {
  if (process.env.npm_config_nodedir) return undefined // node-gyp reads it itself
  const prefix = path.dirname(path.dirname(process.execPath))
  return fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? prefix : undefined
}

function main() {
  if (process.env.BATON_NATIVE === '0') giveUp('BATON_NATIVE=0')
  if (process.platform !== 'linux') giveUp(`splice(2) is Linux-only, this is ${process.platform}`)
  const gyp = findNodeGyp()
  if (gyp === undefined) giveUp('node-gyp not found (it ships with npm)')
  const dir = nodeDir()
  const args = [gyp, 'rebuild', '--loglevel=warn']
  if (dir !== undefined) args.push(`--nodedir=${dir}`)
  const run = spawnSync(process.execPath, args, {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 300_000,
    env: { ...process.env, npm_config_offline: 'true' },
  })
  const output = `${run.stdout ?? ''}${run.stderr ?? ''}`
  try {
    fs.mkdirSync(path.dirname(LOG), { recursive: true })
    fs.writeFileSync(LOG, `$ node ${args.join(' ')}\n${output}`)
  } catch {
    // no log is no reason to fail an install
  }
  if (run.error !== undefined) giveUp(`node-gyp did not run: ${run.error.message}`, output)
  if (run.status !== 0) {
    const first = output.split('\n').find((l) => /error|not found|No such file/i.test(l))
    giveUp(
      `node-gyp exited ${run.status}${first ? `: ${first.trim().slice(0, 160)}` : ''}; see build/native-build.log`,
      output
    )
  }
  if (!fs.existsSync(path.join(ROOT, 'build', 'Release', 'baton_plane.node')))
    giveUp('node-gyp succeeded but build/Release/baton_plane.node is missing', output)
  if (required) console.log('baton: native splice plane built (build/Release/baton_plane.node)')
}

main()
