/**
 * Interop failover: Baton (`protocol: opaque`) in front of three real socat echo servers
 * (`socat TCP-LISTEN:P,fork,reuseaddr,bind=127.0.0.1 PIPE`, each in its own process group). 30
 * clients do request/echo rounds, each request a distinct 1-4 KiB payload, waiting for the whole
 * echo before the next. Mid-load one socat process group is SIGKILLed (the listener and every
 * per-connection child): zero client errors, every echo checked byte for byte.
 *
 * Opaque semantics: a request whose echo has started arriving is answered. A socat child killed
 * while a request is unanswered (no echo byte yet) has its request replayed elsewhere. The kernel
 * closes a killed child's idle connection with a FIN, which reaches a session that is between
 * turns (echo received, next request not sent yet): Baton checks the backend, finds the port dead,
 * and keeps the client for its next request on another backend.
 */
import t from 'tap'
import type { SessionCloseEvent } from '../../lib/balancer.js'
import { oneListener, scope } from '../helpers/balancer.js'
import { pattern } from '../helpers/clients.js'
import { RecordingClient } from '../helpers/failover-servers.js'
import { collect, until, within } from '../helpers/wait.js'
import { hasSocat, killSocat, startSocatEcho, stopSocat, type SocatServer } from './helpers/socat.js'

const CLIENTS = 30
const ROUNDS = 60
/** Kill once this many rounds (of CLIENTS × ROUNDS) are done, and every client has had an echo. */
const KILL_AT = Math.floor((CLIENTS * ROUNDS) / 3)

t.test(
  `${CLIENTS} clients doing echo rounds through Baton (opaque); one of 3 socat servers SIGKILLed`,
  async (t) => {
    if (!hasSocat()) {
      const why = 'socat is not on PATH (apt-get install -y socat)'
      if (process.env.CI !== undefined) t.fail(why)
      else t.pass('socat interop', { skip: why })
      return
    }
    const s = scope(t)
    const servers: SocatServer[] = []
    t.teardown(async () => {
      for (const x of servers) killSocat(x)
      await Promise.all(servers.map((x) => stopSocat(x).catch(() => {})))
    })
    for (let i = 0; i < 3; i++) servers.push(await startSocatEcho())
    const endpoints = servers.map((x, i) => ({ name: `socat${i}`, host: x.host, port: x.port }))
    const victim = servers[1]!

    const { balancer, port } = await s.balancer(
      oneListener(
        endpoints.map((e) => ({ endpoint: { ...e, connections: 0, accepted: 0, close: async () => {} } })),
        { balance: 'round-robin', protocol: 'opaque', connectTimeout: '2s' }
      )
    )
    const allClosed = collect<SessionCloseEvent>(balancer, 'sessionClose', CLIENTS, 60_000)

    const clients = Array.from({ length: CLIENTS }, () => new RecordingClient(port))
    t.teardown(() => clients.forEach((c) => c.destroy()))
    await until(
      () => balancer.sessions().filter((x) => x.state === 'open').length === CLIENTS,
      `${CLIENTS} sessions open`
    )

    let done = 0
    let served = 0
    let killedAt: number | undefined
    let killed: Promise<unknown> | undefined
    const onRound = (round: number): void => {
      done++
      if (round === 0) served++
      if (killed === undefined && done >= KILL_AT && served === CLIENTS) {
        killedAt = done
        killSocat(victim, 'SIGKILL')
        killed = within(victim.exited, 'the killed socat exited')
      }
    }

    const failures: string[] = []
    const checked = await Promise.all(
      clients.map((client, id) =>
        echoRounds(client, id, onRound).catch((err: Error) => {
          failures.push(`client ${id}: ${err.message}`)
          return 0
        })
      )
    )
    t.ok(killed !== undefined, `socat ${victim.pid} was SIGKILLed after ${killedAt} rounds`)
    await killed
    const closes = await allClosed

    for (const f of failures.slice(0, 20)) t.comment(f)
    t.same(failures, [], 'zero client errors')
    t.equal(
      checked.reduce((a, b) => a + b, 0),
      CLIENTS * ROUNDS,
      'every echo was checked'
    )
    const outcomes = new Map<string, number>()
    for (const e of closes) outcomes.set(e.outcome, (outcomes.get(e.outcome) ?? 0) + 1)
    const c = balancer.counters()
    t.comment(
      `outcomes ${JSON.stringify(Object.fromEntries(outcomes))}; failovers ${c.failovers}, ` +
        `serverFailures ${c.serverFailures}, connectErrors ${c.connectErrors}, ` +
        `sessions that changed backend ${closes.filter((e) => e.backends.length > 1).length}`
    )
    t.equal(c.unrecoverable, 0, 'nothing unrecoverable')
    t.equal(c.active, 0)
  }
)

/** ROUNDS request/echo turns, each a distinct 1-4 KiB payload. Resolves with the rounds checked. */
async function echoRounds(
  client: RecordingClient,
  id: number,
  onRound: (round: number) => void
): Promise<number> {
  try {
    let offset = 0
    for (let r = 0; r < ROUNDS; r++) {
      const size = 1024 + ((id * 977 + r * 131) % 3073)
      const payload = pattern(size, id * 1000 + r + 1)
      client.write(payload)
      const all = await client.receivedAtLeast(offset + size, `client ${id} round ${r} echo`)
      if (client.error !== undefined) throw new Error(`round ${r}: client error ${client.error}`)
      if (client.received < offset + size) {
        throw new Error(
          `round ${r}: closed (FIN ${client.ended}) after ${client.received - offset}/${size} bytes`
        )
      }
      if (!all.subarray(offset, offset + size).equals(payload)) throw new Error(`round ${r}: echo differs`)
      offset += size
      onRound(r)
    }
    client.socket.end()
    await within(client.closed, `client ${id} close`)
    if (client.error !== undefined) throw new Error(`at close: client error ${client.error}`)
    if (client.received !== offset) throw new Error(`${client.received - offset} bytes more than sent`)
    return ROUNDS
  } finally {
    client.destroy()
  }
}
