/**
 * Interop failover over RESP: Baton (`protocol: resp`, round-robin, a warm pool of 2) in front of
 * three real redis-server processes, independent caches (a key set through Baton lands on one of
 * them). In each part one redis-server is SIGKILLed mid-load:
 *
 * (a) redis-benchmark -t set,get -n 200000 -c 30 -P 16 (the unpipelined run, which needs most of a
 *     file's 60 s by itself, is in redis-benchmark.test.ts): it exits 0, never sees "Server closed
 *     the connection";
 * (b) ioredis, set up so that any connection error surfaces (no retries, no offline queue), after
 *     SELECT 1 and CLIENT SETNAME: SET/GET loops with no error event and no rejected command; the
 *     key read lives in db 1 of every backend (and a different value in db 0), so reading it right
 *     after the failover proves the prologue (SELECT, SETNAME) was replayed on the new connection;
 * (c) redis-cli SUBSCRIBE through Baton gets what is published on the backend it landed on, and
 *     only that (a subscription pins the session to its backend);
 * (c2), (d) when the backend of a pinned session dies with nothing pending
 *     (a subscriber; an open MULTI), the client is closed as a plain proxy would close it;
 * (c3) a SUBSCRIBE that comes before the server connection is up (no warm
 *     pool) still reaches the server.
 */
import { Redis } from 'ioredis'
import t from 'tap'
import { until, within } from '../helpers/wait.js'
import { killPeer, spawnPeer, stdoutMatches, stopPeer } from './helpers/process.js'
import { benchmarkWithKill, countersLine, hasRedis, redisCli, redisRig } from './helpers/redis.js'

const HOST = '127.0.0.1'

t.test('Baton (resp) in front of 3 redis-server; one SIGKILLed mid-load', async (t) => {
  if (!hasRedis({ benchmark: true })) {
    const why =
      'redis-server, redis-cli or redis-benchmark is not on PATH (apt-get install -y redis-server redis-tools)'
    if (process.env.CI !== undefined) t.fail(why)
    else t.pass('redis interop', { skip: why })
    return
  }

  t.test('(a) redis-benchmark -t set,get -n 200000 -c 30 -P 16', (t) => benchmarkWithKill(t, 16, 25_000))

  t.test('(b) ioredis after SELECT 1 + CLIENT SETNAME: no error while its backend dies', async (t) => {
    const r = await redisRig(t)
    // The same key on every backend: "v" in db 1, a decoy in db 0 (what a lost SELECT would read).
    for (const s of r.servers) {
      t.equal(
        await redisCli(s.port, ['-n', '0', 'SET', 'k', 'WRONG-db0']),
        'OK',
        `${s.name}: db 0 k=WRONG-db0`
      )
      t.equal(await redisCli(s.port, ['-n', '1', 'SET', 'k', 'v']), 'OK', `${s.name}: db 1 k=v`)
    }

    const errors: string[] = []
    const client = new Redis({
      port: r.port,
      host: HOST,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      retryStrategy: () => null,
      lazyConnect: true,
    })
    client.on('error', (err: Error) => errors.push(`error event: ${err.message}`))
    client.on('close', () => errors.push('connection closed'))
    t.teardown(() => client.disconnect())
    await within(client.connect(), 'ioredis connect through Baton')
    t.equal(await client.select(1), 'OK', 'SELECT 1')
    t.equal(await client.client('SETNAME', 'baton-interop'), 'OK', 'CLIENT SETNAME')
    t.equal(await client.get('k'), 'v', 'GET k in db 1 before the kill')

    const [session] = r.balancer.sessions()
    const victim = r.serverOf(session?.backend)
    t.ok(victim !== undefined && r.balancer.sessions().length === 1, `one session, on ${session?.backend}`)
    if (victim === undefined || session === undefined) return

    const LOOPS = 20
    const ROUNDS = 150
    const KILL_AT = 1000
    let done = 0
    let killed = false
    let afterKill = 0
    const loop = async (id: number): Promise<void> => {
      for (let n = 0; n < ROUNDS; n++) {
        const value = `value-${id}-${n}`
        try {
          const set = await client.set(`tmp:${id}`, value)
          if (set !== 'OK') errors.push(`loop ${id} round ${n}: SET replied ${String(set)}`)
          const get = await client.get('k')
          if (get !== 'v') errors.push(`loop ${id} round ${n}: GET k replied ${String(get)} (not db 1's "v")`)
        } catch (err) {
          errors.push(`loop ${id} round ${n}: rejected: ${(err as Error).message}`)
          return
        }
        done += 2
        if (killed) afterKill += 2
        if (!killed && done >= KILL_AT) {
          // The other loops' commands are in flight on the victim right now.
          killed = true
          killPeer(victim)
        }
      }
    }
    await within(Promise.all(Array.from({ length: LOOPS }, (_, id) => loop(id))), 'the SET/GET loops', 30_000)
    await within(victim.exited, 'the killed redis-server exiting')
    t.ok(killed, `${victim.name} (pid ${victim.pid}) SIGKILLed after ${KILL_AT} commands`)
    t.ok(afterKill >= 1000, `${afterKill} commands answered after the kill`)
    // Right after the failover, on the new backend: still db 1, still named.
    t.equal(await client.get('k'), 'v', 'GET k still reads db 1 after the failover (SELECT replayed)')
    t.equal(
      await client.client('GETNAME'),
      'baton-interop',
      'CLIENT GETNAME after the failover (SETNAME replayed)'
    )
    for (const e of errors.slice(0, 20)) t.comment(e)
    t.same(errors, [], 'no error events, no rejected commands, every reply as expected')

    const [now] = r.balancer.sessions()
    t.equal(now?.id, session.id, 'the same session (connection table entry)')
    t.not(now?.backend, victim.name, `the session moved off the victim (now ${now?.backend})`)
    t.same(now?.backends.slice(0, 1), [victim.name], `backend history ${now?.backends.join(' -> ')}`)
    t.comment(countersLine(r.balancer))
    const c = r.balancer.counters()
    t.equal(c.unrecoverable, 0, 'nothing unrecoverable')
    t.ok(c.failovers >= 1, 'at least one failover')
    await client.quit()
  })

  t.test('(c) redis-cli SUBSCRIBE through Baton gets what its backend publishes', async (t) => {
    const r = await redisRig(t)
    const sub = spawnPeer('redis-cli SUBSCRIBE', 'redis-cli', [
      '-h',
      HOST,
      '-p',
      String(r.port),
      'SUBSCRIBE',
      'ch',
    ])
    t.teardown(() => stopPeer(sub).catch(() => {}))
    // Not a terminal: redis-cli prints each reply element on a line of its own.
    await stdoutMatches(sub, /subscribe\s+ch\s+1/, 10_000)
    const [session] = r.balancer.sessions()
    const landed = r.serverOf(session?.backend)
    t.ok(landed !== undefined, `the subscriber landed on ${session?.backend}`)
    if (landed === undefined) return

    const receivers: number[] = []
    for (const [i, s] of r.servers.entries()) {
      receivers.push(Number(await redisCli(s.port, ['PUBLISH', 'ch', `hello-${i}`])))
    }
    const mine = r.servers.indexOf(landed)
    t.same(
      receivers,
      r.servers.map((_, i) => (i === mine ? 1 : 0)),
      'PUBLISH reached a subscriber only on the backend it landed on'
    )
    await stdoutMatches(sub, new RegExp(`message\\s+ch\\s+hello-${mine}`), 5000)
    t.pass(`the subscriber printed hello-${mine}`)
    // Once more, to see the subscription goes on.
    t.equal(await redisCli(landed.port, ['PUBLISH', 'ch', 'again']), '1', 'PUBLISH again: one receiver')
    await stdoutMatches(sub, /message\s+ch\s+again/, 5000)
    const got = [...sub.stdout().matchAll(/message\s+ch\s+(\S+)/g)].map((m) => m[1])
    t.same(got, [`hello-${mine}`, 'again'], 'exactly the messages of its own backend')
    t.equal(r.balancer.counters().framingErrors, 0, 'no framing errors')
  })

  // A pinned session with nothing pending is not "between requests": its server state (the
  // subscriptions, an open MULTI) is gone with its server, so the client is closed. (Once a bug:
  // the FIN was hidden.)

  t.test('(c2) a subscriber whose backend dies is closed, not left subscribed to nothing', async (t) => {
    const r = await redisRig(t)
    const sub = spawnPeer('redis-cli SUBSCRIBE', 'redis-cli', [
      '-h',
      HOST,
      '-p',
      String(r.port),
      'SUBSCRIBE',
      'ch',
    ])
    t.teardown(() => stopPeer(sub).catch(() => {}))
    await stdoutMatches(sub, /subscribe\s+ch\s+1/, 10_000)
    const landed = r.serverOf(r.balancer.sessions()[0]?.backend)
    t.ok(landed !== undefined, `the subscriber landed on ${landed?.name}`)
    if (landed === undefined) return
    killPeer(landed)
    await within(landed.exited, 'the killed redis-server exiting')
    // As through a plain proxy: the connection ends, redis-cli reports it and exits.
    const exit = await within(sub.exited, 'redis-cli exiting once its backend is gone', 3000).catch(
      () => undefined
    )
    t.ok(exit !== undefined, `redis-cli exited (${JSON.stringify(exit)})`)
    const gone = await until(() => r.balancer.sessions().length === 0, 'the session closing', {
      timeoutMs: 3000,
    }).then(
      () => true,
      () => false
    )
    t.ok(gone, 'no session left')
  })

  t.test('(d) an open MULTI whose backend dies: nothing of the transaction runs outside it', async (t) => {
    const r = await redisRig(t)
    const events: string[] = []
    const client = new Redis({
      port: r.port,
      host: HOST,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      retryStrategy: () => null,
      lazyConnect: true,
    })
    client.on('error', (err: Error) => events.push(`error: ${err.message}`))
    client.on('close', () => events.push('close'))
    t.teardown(() => client.disconnect())
    await within(client.connect(), 'ioredis connect through Baton')
    t.equal(await client.call('MULTI'), 'OK', 'MULTI')
    t.equal(await client.call('SET', 'a', '1'), 'QUEUED', 'SET a queued')
    const landed = r.serverOf(r.balancer.sessions()[0]?.backend)!
    killPeer(landed)
    await within(landed.exited, 'the killed redis-server exiting')
    // The client must learn that its transaction is gone: its connection closes, as through a
    // plain proxy. What must never happen: SET b running at once on another backend, outside any
    // transaction, and EXEC failing with "EXEC without MULTI".
    const reply = await within(
      client.call('SET', 'b', '2').then(
        (v) => `replied ${String(v)}`,
        (err: Error) => `rejected: ${err.message}`
      ),
      'SET b after the kill'
    )
    t.match(reply, /^rejected/, `SET b after the kill is not run (${reply})`)
    for (const s of r.servers) {
      if (s === landed) continue
      t.equal(await redisCli(s.port, ['GET', 'b']), '', `${s.name}: b was never set`)
    }
    t.ok(events.includes('close'), `the client saw its connection close (${events.join('; ')})`)
  })

  // A SUBSCRIBE (or MONITOR) read while the server connection is still being set up must still be
  // written (once a bug: pass-through bytes were released from the replay buffer before the write).

  t.test('(c3) SUBSCRIBE as the first request on a new (not pooled) server connection', async (t) => {
    const r = await redisRig(t, { poolIdle: 0 })
    const sub = spawnPeer('redis-cli SUBSCRIBE', 'redis-cli', [
      '-h',
      HOST,
      '-p',
      String(r.port),
      'SUBSCRIBE',
      'ch',
    ])
    t.teardown(() => stopPeer(sub).catch(() => {}))
    const subscribed = await stdoutMatches(sub, /subscribe\s+ch\s+1/, 3000).then(
      () => true,
      () => false
    )
    t.ok(subscribed, 'the subscription was confirmed')
    const [session] = r.balancer.sessions()
    t.comment(
      `session ${JSON.stringify({ state: session?.state, backend: session?.backend, in: session?.bytesFromClient, out: session?.bytesToClient })}`
    )
  })
})
