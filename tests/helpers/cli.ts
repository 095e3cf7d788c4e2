/**
 * For tests that run the built CLI (`dist/cli.js`) as a child process: build it first when a source
 * is newer, kill every child when the test file exits, and read its JSON log lines.
 */
import { execFileSync, type ChildProcess } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const CLI = join(ROOT, 'dist', 'cli.js')

function newestMtime(dir: string): number {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(path))
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs)
  }
  return newest
}

/**
 * Build `dist/` when `lib/` has a newer source. tsc still emits on type errors: then testing goes on
 * with what was built, and `comment` says why. Throws only when there is no `dist/cli.js` at all.
 */
export function ensureBuilt(comment: (text: string) => void): void {
  if (existsSync(CLI) && statSync(CLI).mtimeMs >= newestMtime(join(ROOT, 'lib'))) return
  try {
    execFileSync(
      process.execPath,
      [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'],
      {
        cwd: ROOT,
        stdio: 'pipe',
        timeout: 120_000,
      }
    )
  } catch (err) {
    const out =
      String((err as { stdout?: Buffer }).stdout ?? '') + String((err as { stderr?: Buffer }).stderr ?? '')
    if (!existsSync(CLI)) throw new Error(`build failed and there is no dist/cli.js:\n${out}`)
    comment(`tsc -p tsconfig.json reported errors; testing the emitted dist/ anyway:\n${out}`)
  }
}

/** Every child started by a test file, so none outlives it even when it times out or crashes. */
export const children = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL')
})

/** A pino JSON log line, or undefined for anything else. */
export function parseLog<L extends { msg: string }>(line: string): L | undefined {
  try {
    const v = JSON.parse(line) as unknown
    return typeof v === 'object' && v !== null && typeof (v as L).msg === 'string' ? (v as L) : undefined
  } catch {
    return undefined
  }
}
