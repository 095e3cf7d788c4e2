/**
 * Real peer processes for interop tests (nginx, redis-server, wrk, redis-benchmark, redis-cli),
 * each spawned `detached` so that it leads its own process group: `kill(-pid)` takes it and any
 * child it made down at once. Every peer still alive when the test process exits is SIGKILLed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { within } from '../../helpers/wait.js'

export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

export interface Peer {
  readonly name: string
  /** Pid of the spawned process, also its process group id. */
  readonly pid: number
  readonly child: ChildProcess
  /** Resolves when the process has exited (after `killPeer`, or on its own). Never rejects. */
  readonly exited: Promise<Exit>
  /** What the process wrote so far (each kept up to 1 MiB). */
  stdout(): string
  stderr(): string
}

/** True when `command args` runs and exits 0 (a binary on PATH that answers `--version`). */
export function hasCommand(command: string, args: readonly string[] = ['--version']): boolean {
  const r = spawnSync(command, args, { stdio: 'ignore', timeout: 5000 })
  return r.error === undefined && r.status === 0
}

/** True when `command` is an executable on PATH (for tools whose `--version` exits non-zero, as wrk's). */
export function onPath(command: string): boolean {
  const r = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', command], { stdio: 'ignore', timeout: 5000 })
  return r.error === undefined && r.status === 0
}

const live = new Set<Peer>()
let exitHookInstalled = false
const KEEP = 1024 * 1024

/** Spawn `command args` in a process group of its own, recording its output. */
export function spawnPeer(
  name: string,
  command: string,
  args: readonly string[],
  options: { cwd?: string } = {}
): Peer {
  const child = spawn(command, args, {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
  })
  let out = ''
  let err = ''
  child.stdout?.setEncoding('utf8')
  child.stderr?.setEncoding('utf8')
  child.stdout?.on('data', (s: string) => {
    if (out.length < KEEP) out += s
  })
  child.stderr?.on('data', (s: string) => {
    if (err.length < KEEP) err += s
  })
  const exited = new Promise<Exit>((resolve) => {
    // 'close' (not 'exit'): stdout and stderr are fully read by then.
    child.once('close', (code, signal) => resolve({ code, signal }))
    child.once('error', (e) => {
      err += `\nspawn error: ${e.message}`
      resolve({ code: null, signal: null })
    })
  })
  if (child.pid === undefined) {
    throw new Error(`${name}: ${command} could not be spawned (is it on PATH?)`)
  }
  const peer: Peer = { name, pid: child.pid, child, exited, stdout: () => out, stderr: () => err }
  live.add(peer)
  void exited.then(() => live.delete(peer))
  if (!exitHookInstalled) {
    exitHookInstalled = true
    // Last resort: never leave a peer behind, even when a test forgets its teardown.
    process.once('exit', () => {
      for (const p of live) killPeer(p)
    })
  }
  return peer
}

/** Signal a peer's whole process group; SIGKILL by default (a crash: no goodbye). Safe to repeat. */
export function killPeer(peer: Peer, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(-peer.pid, signal)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err
  }
}

/** Kill the group and wait (bounded) for the process to be gone. */
export async function stopPeer(peer: Peer, timeoutMs = 5000): Promise<Exit> {
  killPeer(peer)
  return within(peer.exited, `${peer.name} (pid ${peer.pid}) exit after SIGKILL`, timeoutMs)
}

/** Every peer in `peers` SIGKILLed and waited for; errors are ignored (for teardown). */
export async function stopAll(peers: Iterable<Peer>): Promise<void> {
  const all = [...peers]
  for (const p of all) killPeer(p)
  await Promise.all(all.map((p) => stopPeer(p).catch(() => undefined)))
}

/**
 * Wait for a peer that is expected to finish by itself (wrk, redis-benchmark): its exit, or after
 * `timeoutMs` a SIGKILL and a rejection that quotes its output.
 */
export async function finished(peer: Peer, timeoutMs: number): Promise<Exit> {
  try {
    return await within(peer.exited, `${peer.name} (pid ${peer.pid}) finishing`, timeoutMs)
  } catch (err) {
    killPeer(peer)
    const tail = (s: string): string => s.slice(-2000).trim()
    throw new Error(
      `${(err as Error).message}; killed. stdout: ${tail(peer.stdout())} stderr: ${tail(peer.stderr())}`
    )
  }
}

/**
 * Resolves once `peer`'s stdout matches `pattern` (checked on each chunk), rejects if the peer
 * exits first or after `timeoutMs`.
 */
export function stdoutMatches(peer: Peer, pattern: RegExp, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const check = (): void => {
      if (!pattern.test(peer.stdout())) return
      done()
      resolve()
    }
    const timer = setTimeout(() => {
      done()
      reject(
        new Error(`${peer.name}: stdout did not match ${pattern} within ${timeoutMs} ms: ${peer.stdout()}`)
      )
    }, timeoutMs)
    const onExit = (e: Exit): void => {
      if (pattern.test(peer.stdout())) return
      done()
      reject(
        new Error(
          `${peer.name} exited (code ${e.code}, signal ${e.signal}) before stdout matched ${pattern}: ` +
            `${peer.stdout()} ${peer.stderr()}`
        )
      )
    }
    let over = false
    const done = (): void => {
      over = true
      clearTimeout(timer)
      peer.child.stdout?.off('data', onData)
    }
    const onData = (): void => {
      // Our own 'data' listener (spawnPeer's) ran first: peer.stdout() includes this chunk.
      if (!over) check()
    }
    peer.child.stdout?.on('data', onData)
    void peer.exited.then((e) => {
      if (!over) onExit(e)
    })
    check()
  })
}
