/**
 * Interop failover over RESP with redis-benchmark: Baton (`protocol: resp`, round-robin, a warm
 * pool of 2) in front of three real redis-server processes (independent caches: a GET may land on
 * a backend that never saw the SET and read nil, which redis-benchmark does not mind).
 * `redis-benchmark -t set,get -n 200000 -c 30 -q` (the `-P 16` run is in redis.test.ts); a quarter
 * into the SET run the redis-server with the most sessions is SIGKILLed. redis-benchmark must exit 0
 * and never print "Server closed the connection" (through HAProxy or nginx stream it aborts on
 * exactly that).
 *
 * Kept apart from redis.test.ts: without pipelining, 400,000 round trips through Baton take 30-40 s
 * on a two-core machine (about 11-15k requests/s), most of a test file's 60 s.
 */
import t from 'tap'
import { benchmarkWithKill, hasRedis } from './helpers/redis.js'

t.test('redis-benchmark through Baton (resp); one of 3 redis-server SIGKILLed mid-run', async (t) => {
  if (!hasRedis({ benchmark: true })) {
    const why =
      'redis-server, redis-cli or redis-benchmark is not on PATH (apt-get install -y redis-server redis-tools)'
    if (process.env.CI !== undefined) t.fail(why)
    else t.pass('redis-benchmark interop', { skip: why })
    return
  }
  t.test('(a) redis-benchmark -t set,get -n 200000 -c 30', (t) => benchmarkWithKill(t, 1, 50_000))
})
