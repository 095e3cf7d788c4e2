/**
 * The resolved data plane from the command line: `baton --check` prints it per listener, a
 * refused `dataPlane: native` exits 2 naming the loader's reason, and at start the `listening`
 * line carries it, with one info line when the addon is not there (BATON_NATIVE=0 here).
 */
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { parse as parseYaml } from 'yaml'
import { children, CLI, ensureBuilt, parseLog, ROOT } from '../helpers/cli.js'
import { skip } from './helpers/native-proxy.js'

t.before(() => ensureBuilt((text) => t.comment(text)))

interface Result {
  code: number | null
  stdout: string
  stderr: string
}

/** Run the CLI until it exits, or until `until(stdout)` holds (then SIGTERM and wait). */
function run(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  until?: (stdout: string) => boolean
): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    })
    children.add(child)
    let stdout = ''
    let stderr = ''
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`baton ${args.join(' ')}: no exit in time\n${stdout}\n${stderr}`))
    }, 20_000)
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      stdout += s
      if (until?.(stdout) === true) child.kill('SIGTERM')
    })
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s))
    child.once('close', (code) => {
      clearTimeout(timer)
      children.delete(child)
      resolve({ code, stdout, stderr })
    })
  })
}

function checked(r: Result): { name?: string; dataPlane: string }[] {
  const json = parseYaml(r.stdout.slice(0, r.stdout.lastIndexOf('configuration OK'))) as {
    listeners: { name?: string; dataPlane: string }[]
  }
  return json.listeners
}

t.test('--check prints the resolved plane of each listener', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'baton.json')
  writeFileSync(
    file,
    JSON.stringify({
      listeners: [
        { name: 'a', listen: '127.0.0.1:0', backends: ['127.0.0.1:1'], dataPlane: 'auto' },
        { name: 'b', listen: '127.0.0.1:0', backends: ['127.0.0.1:1'], protocol: 'memcached' },
        { name: 'c', listen: '127.0.0.1:0', backends: ['127.0.0.1:1'], dataPlane: 'js' },
      ],
    })
  )
  const off = await run(['--config', file, '--check'], { BATON_NATIVE: '0' })
  t.equal(off.code, 0, off.stderr)
  t.same(
    checked(off).map((l) => l.dataPlane),
    ['js', 'js', 'js'],
    'BATON_NATIVE=0: every listener on js'
  )
  if (skip === false) {
    const on = await run(['--config', file, '--check'])
    t.equal(on.code, 0, on.stderr)
    t.same(
      checked(on).map((l) => l.dataPlane),
      ['native', 'js', 'js'],
      'auto resolves to native for opaque'
    )
  }
})

t.test('dataPlane: native without the addon is a config error naming the reason', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'baton.json')
  writeFileSync(
    file,
    JSON.stringify({ listeners: [{ listen: '127.0.0.1:0', backends: ['127.0.0.1:1'], dataPlane: 'native' }] })
  )
  const r = await run(['--config', file, '--check'], { BATON_NATIVE: '0' })
  t.equal(r.code, 2)
  t.equal(r.stdout, '')
  t.match(
    r.stderr,
    /^baton: listeners\[0\]\.dataPlane: the native plane is not available: turned off with BATON_NATIVE=0\n$/
  )
})

t.test('at start: the listening line names the plane; one info line when the addon is off', async (t) => {
  const listening = (out: string): boolean => out.includes('"msg":"listening"')
  const parse = (out: string) =>
    out.split('\n').flatMap((l) => parseLog<{ msg: string; [k: string]: unknown }>(l) ?? [])
  const dir = t.testdir()
  const file = join(dir, 'auto.json')
  writeFileSync(
    file,
    JSON.stringify({ listeners: [{ listen: '127.0.0.1:0', backends: ['127.0.0.1:1'], dataPlane: 'auto' }] })
  )
  const off = await run(['--config', file], { BATON_NATIVE: '0' }, listening)
  const logs = parse(off.stdout)
  const said = logs.filter((l) => l.msg.startsWith('native data plane not available'))
  t.equal(said.length, 1, 'said once')
  t.equal(said[0]?.reason, 'turned off with BATON_NATIVE=0', 'with the reason')
  t.equal(logs.find((l) => l.msg === 'listening')?.dataPlane, 'js')
  // The default is auto: native where the addon loaded (the listening line says which).
  const byDefault = parse(
    (await run(['--listen', '127.0.0.1:0', '--backend', '127.0.0.1:1'], {}, listening)).stdout
  )
  t.equal(
    byDefault.find((l) => l.msg === 'listening')?.dataPlane,
    skip === false ? 'native' : 'js',
    'the default plane is auto: native where the addon loaded'
  )
  // --data-plane js: the JavaScript plane, and nothing is said of the addon.
  const js = parse(
    (
      await run(
        ['--listen', '127.0.0.1:0', '--backend', '127.0.0.1:1', '--data-plane', 'js'],
        { BATON_NATIVE: '0' },
        listening
      )
    ).stdout
  )
  t.equal(js.find((l) => l.msg === 'listening')?.dataPlane, 'js', '--data-plane js')
  t.notOk(
    js.some((l) => l.msg.startsWith('native data plane not available')),
    'nothing said for a js listener'
  )
  if (skip === false) {
    const onLogs = parse((await run(['--config', file], {}, listening)).stdout)
    t.equal(onLogs.find((l) => l.msg === 'listening')?.dataPlane, 'native')
    t.notOk(
      onLogs.some((l) => l.msg.startsWith('native data plane not available')),
      'nothing said when it is there'
    )
  }
})

t.test('--native-threads: --check prints the resolved count; bad values exit 2', async (t) => {
  const base = ['--listen', '127.0.0.1:0', '--backend', '127.0.0.1:1']
  const threadsOf = (r: Result): unknown =>
    (parseYaml(r.stdout.slice(0, r.stdout.lastIndexOf('configuration OK'))) as { nativeThreads: unknown })
      .nativeThreads
  const [three, zero, auto, bad, big] = await Promise.all([
    run([...base, '--native-threads', '3', '--check']),
    run([...base, '--native-threads', '0', '--check']),
    run([...base, '--check']),
    run([...base, '--native-threads', 'lots', '--check']),
    run([...base, '--native-threads', '65', '--check']),
  ])
  t.equal(threadsOf(three), 3, '--native-threads 3')
  t.equal(threadsOf(zero), 0, '--native-threads 0: the main thread')
  t.equal(threadsOf(auto), Math.min(64, availableParallelism()), 'auto: one per CPU, printed as a number')
  for (const r of [bad, big]) {
    t.equal(r.code, 2)
    t.match(r.stderr, /^baton: nativeThreads: expected "auto" or an integer from 0 to 64, got ("lots"|65)\n$/)
  }
  // A file may carry it; the flag wins, as --workers does.
  const dir = t.testdir()
  const file = join(dir, 'baton.json')
  writeFileSync(
    file,
    JSON.stringify({ nativeThreads: 1, listeners: [{ listen: '127.0.0.1:0', backends: ['127.0.0.1:1'] }] })
  )
  const [fromFile, flagWins] = await Promise.all([
    run(['--config', file, '--check']),
    run(['--config', file, '--native-threads', '2', '--check']),
  ])
  t.equal(threadsOf(fromFile), 1, 'from the file')
  t.equal(threadsOf(flagWins), 2, 'the flag over the file')
  if (skip === false) {
    const listening = (out: string): boolean => out.includes('"msg":"listening"')
    const r = await run([...base, '--native-threads', '2'], {}, listening)
    const line = r.stdout
      .split('\n')
      .flatMap((l) => parseLog<{ msg: string; [k: string]: unknown }>(l) ?? [])
      .find((l) => l.msg === 'listening')
    t.equal(line?.nativeThreads, 2, 'the listening line of a native listener names its threads')
  }
})
