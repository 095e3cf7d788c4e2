/**
 * examples/systemd/: `systemd-analyze verify` on baton.service and baton.socket (skipped, with the
 * reason, where systemd-analyze is missing). verify refuses an ExecStart whose binary does not
 * exist, so the units are checked from a copy whose `/usr/local/bin/baton` is a shim that runs
 * this checkout's `dist/cli.js`; nothing else is changed.
 */
import { spawnSync } from 'node:child_process'
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { CLI, ROOT } from '../helpers/cli.js'
import { onPath } from './helpers/process.js'

const DIR = join(ROOT, 'examples', 'systemd')

t.test('systemd-analyze verify accepts baton.service and baton.socket', async (t) => {
  if (!onPath('systemd-analyze')) {
    const why = 'systemd-analyze is not on PATH (apt-get install -y systemd)'
    if (process.env.CI !== undefined) t.fail(why)
    else t.pass('systemd-analyze verify', { skip: why })
    return
  }
  const dir = mkdtempSync(join(tmpdir(), 'baton-systemd-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const shim = join(dir, 'baton')
  writeFileSync(shim, `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`)
  chmodSync(shim, 0o755)
  const service = readFileSync(join(DIR, 'baton.service'), 'utf8')
  t.match(service, /^ExecStart=\/usr\/local\/bin\/baton /m)
  writeFileSync(join(dir, 'baton.service'), service.replaceAll('/usr/local/bin/baton', shim))
  writeFileSync(join(dir, 'baton.socket'), readFileSync(join(DIR, 'baton.socket'), 'utf8'))
  const r = spawnSync('systemd-analyze', ['verify', join(dir, 'baton.service'), join(dir, 'baton.socket')], {
    encoding: 'utf8',
    timeout: 60_000,
  })
  t.equal(r.status, 0, `systemd-analyze verify exits 0 (stderr: ${r.stderr.trim()})`)
  t.equal(r.stderr.trim(), '', 'and warns about nothing')

  const security = spawnSync('systemd-analyze', ['security', '--offline=true', join(dir, 'baton.service')], {
    encoding: 'utf8',
    timeout: 60_000,
  })
  const m = /Overall exposure level for baton\.service: ([\d.]+)/.exec(security.stdout)
  if (m === null) t.comment(`systemd-analyze security --offline gave no figure: ${security.stderr.trim()}`)
  else t.ok(Number(m[1]) <= 3, `systemd-analyze security: exposure ${m[1]} (at most 3, "OK")`)
})
