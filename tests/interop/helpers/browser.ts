/**
 * playwright-core, loaded on demand. It is not a devDependency (it and the profiler were most of a
 * 385 MB `npm install`): `npm run setup:extras` installs it, and a test that needs it skips (fails
 * under CI) with that advice when it is missing. The few types used are declared here, so the
 * project type-checks without the package.
 */
import { createRequire } from 'node:module'

export interface Dialog {
  message(): string
  accept(text?: string): Promise<void>
}

export interface Page {
  goto(url: string, options?: { waitUntil?: 'load' }): Promise<{ status(): number } | null>
  title(): Promise<string>
  textContent(selector: string): Promise<string | null>
  click(selector: string): Promise<void>
  evaluate<R>(fn: () => R): Promise<R>
  evaluate<R, A>(fn: (arg: A) => R, arg: A): Promise<R>
  waitForFunction<A>(
    fn: (arg: A) => unknown,
    arg: A,
    options?: { timeout?: number; polling?: number }
  ): Promise<unknown>
  setDefaultTimeout(ms: number): void
  screenshot(options?: { fullPage?: boolean }): Promise<Buffer>
  on(event: 'console', fn: (m: { type(): string; text(): string }) => void): void
  on(event: 'pageerror', fn: (err: Error) => void): void
  on(event: 'requestfailed', fn: (r: { url(): string; failure(): { errorText: string } | null }) => void): void
  on(event: 'response', fn: (r: { url(): string; status(): number }) => void): void
  on(event: 'dialog', fn: (d: Dialog) => void): void
}

export interface Browser {
  newPage(options?: { viewport?: { width: number; height: number } }): Promise<Page>
  close(): Promise<void>
}

export interface Chromium {
  launch(options: { executablePath: string; args: string[]; timeout: number }): Promise<Browser>
}

export const MISSING_PLAYWRIGHT =
  'playwright-core is not installed: run `npm run setup:extras` (the browser driver is not a devDependency)'

/** Playwright's Chromium driver, or undefined when playwright-core is not installed. */
export function loadChromium(): Chromium | undefined {
  try {
    return (createRequire(import.meta.url)('playwright-core') as { chromium: Chromium }).chromium
  } catch {
    return undefined
  }
}
