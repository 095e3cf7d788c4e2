/**
 * lib/fleet/signals.ts in this process: signals are events on `process`, so `process.emit` reaches
 * the handlers without a real signal. `process.exit` is stubbed (the second-signal case), and every
 * handler the module adds is removed again afterwards. Without NOTIFY_SOCKET sdNotify sends nothing.
 * The same code with real signals, real processes and a real notify socket: tests/cli.test.ts,
 * tests/workers.test.ts, tests/interop/sd-notify.test.ts and tests/interop/upgrade.test.ts.
 */
import { pino } from 'pino'
import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import { ProcessSignals, sayIfRefused, type SignalOptions } from '../../lib/fleet/signals.js'

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGUSR2'] as const

/** A logger whose lines land in `lines` (msg only). */
function recordingLog(): { log: pino.Logger; lines: { level: number; msg: string }[] } {
  const lines: { level: number; msg: string }[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l))
      done()
    },
  })
  return { log: pino({ level: 'debug' }, sink), lines }
}

/** Install ProcessSignals for one test; its handlers and the process.exit stub go at the end. */
function installed(t: Test, options: Omit<SignalOptions, 'log'>) {
  delete process.env.NOTIFY_SOCKET
  const { log, lines } = recordingLog()
  const before = new Map(SIGNALS.map((s) => [s, new Set(process.listeners(s))]))
  const exits: number[] = []
  const realExit = process.exit
  // Like the real one, it does not return: what follows exit() in the handler must not run.
  process.exit = ((code?: number) => {
    exits.push(code ?? 0)
    throw new Error(`process.exit(${code})`)
  }) as typeof process.exit
  t.teardown(() => {
    process.exit = realExit
    for (const s of SIGNALS)
      for (const l of process.listeners(s)) if (!before.get(s)!.has(l)) process.off(s, l)
  })
  const signals = new ProcessSignals({ log, ...options })
  signals.install()
  /** The log lines so far, once pino has written them. */
  const said = async (): Promise<string[]> => {
    await new Promise((r) => setImmediate(r))
    return lines.map((l) => l.msg)
  }
  return { signals, exits, said }
}

t.test('SIGTERM drains once; a second signal kills and exits 1', async (t) => {
  const drained: [string, number | undefined][] = []
  let killed = 0
  const { signals, exits, said } = installed(t, {
    drain: (signal, pid) => drained.push([signal, pid]),
    kill: () => killed++,
    upgrade: { unavailable: 'no upgrade here' },
  })
  t.notOk(signals.stopping)
  process.emit('SIGTERM')
  t.same(drained, [['SIGTERM', undefined]])
  t.ok(signals.stopping, 'stopping from the first signal on')
  t.same(exits, [], 'no exit yet: drain exits when done')
  t.throws(() => process.emit('SIGINT'), { message: 'process.exit(1)' })
  t.same(drained, [['SIGTERM', undefined]], 'not drained twice')
  t.equal(killed, 1, 'kill before exiting')
  t.same(exits, [1])
  t.ok((await said()).includes('second signal, exiting now'))
})

t.test('SIGHUP: reload when there is a file', async (t) => {
  let reloads = 0
  let reloaded!: () => void
  const done = new Promise<void>((resolve) => (reloaded = resolve))
  installed(t, {
    drain: () => {},
    reload: async () => {
      reloads++
      reloaded()
    },
    upgrade: { unavailable: 'no upgrade here' },
  })
  process.emit('SIGHUP')
  await done
  t.equal(reloads, 1)
})

t.test('SIGHUP without a file: a warning, no reload', async (t) => {
  const { said } = installed(t, { drain: () => {}, upgrade: { unavailable: 'no upgrade here' } })
  process.emit('SIGHUP')
  t.ok((await said()).includes('SIGHUP: nothing to reload without --config'))
})

t.test('SIGUSR2 where nothing can be handed over: the reason, logged', async (t) => {
  const none = installed(t, { drain: () => {}, upgrade: { unavailable: 'no upgrade here' } })
  process.emit('SIGUSR2')
  t.ok((await none.said()).includes('no upgrade here'))
})

t.test('SIGUSR2 while stopping: no successor started', async (t) => {
  let asked = 0
  const { said } = installed(t, {
    drain: () => {},
    upgrade: {
      argv: [],
      sockets: () => {
        asked++
        return []
      },
    },
  })
  process.emit('SIGTERM')
  process.emit('SIGUSR2')
  t.ok((await said()).includes('SIGUSR2: stopping already, no upgrade'))
  t.equal(asked, 0, 'the sockets were never gathered: no upgrade began')
})

t.test('sayIfRefused: a refused reload is logged and rejected with the same error', async (t) => {
  const { log, lines } = recordingLog()
  t.equal(await sayIfRefused(log, async () => 'applied'), 'applied')
  const err = new Error('bad file')
  await t.rejects(
    sayIfRefused(log, async () => {
      throw err
    }),
    err
  )
  await new Promise((r) => setImmediate(r))
  t.same(
    lines.map((l) => l.msg),
    ['reload refused, the running configuration stays']
  )
})
