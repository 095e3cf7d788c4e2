#!/usr/bin/env node
/**
 * bench/chaos.mjs — a chaos soak (issue 10 §4). Baton runs in front of four kinds of backend under
 * steady load while backends are killed, stopped, slowed, reset mid-response and drained at random,
 * and every response the checking clients get is compared byte for byte with what it must be. Two
 * questions: does a client ever see a fault Baton claims to hide, and do Baton's memory and
 * descriptors stay put?
 *
 *   npm run chaos -- [--duration 10m] [--seed N] [--quick] [--max-fd-growth 50] [--max-rss-growth 128]
 *                    [--dist DIR]
 *
 * Baton (dist/cli.js, one process, a JSON config written to the run's directory) with four
 * listeners of three backends each, health checks every second, passive health as configured by
 * default, `responseTimeout: 2s` on every listener, `replay: safe`:
 *
 *   listener  protocol          backends                          load
 *   http      http1             nginx, `master_process off`       wrk -t1 -c8 (/k1.bin, keep-alive) and the
 *                               (one pid is one server), warm      http checker: GETs of 18 files of 0 B to
 *                               pool 2                            1 MiB, pipelined 1–2 deep
 *   redis     resp              redis-server, each loading the    redis-benchmark -t set,get -P 8 -c 8, one run
 *                               same RDB of known keys at start   after another, and the redis checker:
 *                                                                 SET k v, GET k, sometimes GET of a value of
 *                                                                 up to 256 KiB, pipelined
 *   echo      opaque            a Node echo server (this file,    the echo checker: messages of 1 B to 1 KiB,
 *                               --role=echo)                      each echoed whole before the next
 *   frames    length-prefixed   a Node frame server (this file,   the frame checker: 4-byte big-endian length
 *             (4-byte BE)       --role=frames), warm pool 2       + body, 1–3 requests pipelined, answers of
 *                                                                 0 B to 1 MiB
 *
 * Every byte a checker expects is derived from its request: the files, the Redis values, the echo
 * messages and the frame answers are slices of one pseudo-random 3 MiB block that every process
 * computes from the same constant. A checker connection sends a batch, reads until every response of
 * the batch is in and equal, then sends the next; after a seeded number of batches it closes and
 * opens a new connection. Any other outcome is a client-visible error, counted by cause: `reset`
 * (ECONNRESET/EPIPE with a batch pending), `closed` / `closed-mid-response` (the connection ended
 * with a batch pending, before / after part of an answer), `closed-idle` / `reset-idle` (between
 * batches, not by the client), `mismatch` (a byte differs), `status` / `bad-head` (http),
 * `extra-bytes`, `unsolicited-bytes`, `timeout` (no whole answer in 30 s), `connect` (Baton refused).
 * wrk's socket errors and non-2xx answers, and every redis-benchmark run that exits non-zero, hangs
 * or prints an error line, are client-visible errors too.
 *
 * Faults, one at a time per listener (the four listeners' faults overlap one another), each on a
 * backend drawn at random, after a gap of 1–4 s (0.3–1.2 s with --quick); kinds are dealt from a
 * shuffled deck so that every kind comes up as often as the others:
 *
 *   kill           SIGKILL, down 0.3–3 s, started again on the same port
 *   stop           SIGSTOP for 3–6 s (past responseTimeout), then SIGCONT: a hang
 *   slow           SIGSTOP/SIGCONT bursts for 3–8 s: stopped 50–500 ms (under responseTimeout),
 *                  running 50–300 ms
 *   drain          POST /api/backends/NAME/drain, 2–6 s, POST …/ready
 *   maint-restart  POST …/maint, wait (up to 15 s) for its active sessions to reach 0, SIGTERM, down
 *                  0.2–1.5 s, start again, POST …/ready (skipped, and said, when it never idles)
 *   reset-before   (echo, frames) for 1.5–3 s the server resets 1–4 connections on a request
 *                  instead of answering it
 *   reset-mid      (echo, frames) the same, after writing part of the answer (1 byte to all but one)
 *
 * What Baton claims to hide, and so what may not show as a client-visible error (README, "In-flight
 * failover"): every fault above on http1 (GET is safe to re-send; a body cut part-way is resumed
 * verified), resp (SET and GET are in SAFE_COMMANDS; the backends hold the same keys, as replicas
 * would, so a replayed GET finds its value) and length-prefixed (cut answers are resumed verified);
 * on opaque, everything but `reset-mid`: opaque cannot tell an answer cut part-way from a whole one,
 * so the reset goes on to the client (README, "What each protocol can promise"). Errors on the echo
 * listener from the start of a `reset-mid` until 2 s after its end are counted "not claimed"; every
 * other error counts against Baton. A stop is hidden only because responseTimeout is set and the
 * requests are replayable; a stop that lands after the first byte of an answer is not a timeout
 * (the answer has started) and only delays it until SIGCONT, within the checkers' 30 s.
 *
 * Baton's VmRSS (/proc/PID/status) and open descriptors (/proc/PID/fd) are sampled every second:
 * `start` once every backend is up and before any load, `peak` the largest sample, `end` after the
 * load has stopped, Baton has no live session, and 5 s of idleness. Bounds: end fds ≤ start + 50
 * (--max-fd-growth), end RSS ≤ start + 128 MiB (--max-rss-growth; V8's heap grows under load and
 * does not give all of it back, a leak over a 10-minute soak is far larger). Failovers and the other
 * counters come from Baton's /metrics at the end.
 *
 * Prints: requests per protocol, faults by kind, client-visible errors by cause (claimed or not),
 * Baton's counters per listener, RSS and descriptors at start, peak and end. Writes the same, with
 * every fault (time, listener, backend, parameters), every error (time, cause, detail, the faults
 * around it), the RSS/fd series and the Baton config, to bench/out/chaos-<ts>[-quick].json; every
 * process's log is in bench/out/chaos-<ts>/. Exit 1 on a claimed client-visible error, a bound
 * exceeded, a backend or Baton dying on its own, or a protocol that served no request; 2 on bad
 * flags. --quick: 60 s (unless --duration says otherwise), shorter faults, a smoke run.
 * --dist DIR: soak another build of Baton (default ./dist; `npm run chaos` builds it first). The
 * JSON records the build's hash and, for ./dist, the commit and the number of uncommitted lib/ files
 * at start.
 * The same --seed gives the same faults, in the same order, with the same parameters, on the same
 * backends (when they start depends on how long the ones before took).
 *
 * Every process started (backends, Baton, load tools) is stopped by pid at the end, also on error,
 * SIGINT and SIGTERM; the Node backends also exit when this process is gone. Only 127.0.0.1 is used;
 * every port comes from binding port 0.
 */
import { spawnSync } from 'node:child_process'
import { createHash, randomBytes, randomInt } from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  HOST,
  MiB,
  UsageError,
  distInfo,
  freePort,
  gitInfo,
  machineInfo,
  noop,
  now,
  parseArgs,
  parseDuration,
  parseIntFlag,
  processManager,
  roleArgs,
  sleep,
  table,
  timestamp,
  vmRssKiB,
  waitListening,
  waitPort,
} from './lib/harness.mjs'
import {
  fdLimits,
  findBins,
  parseRedisBenchmark,
  parseWrk,
  redisBenchmarkArgs,
  startNginxHttp,
  startRedis,
  versions,
  wrkArgs,
} from './lib/peers.mjs'

const SELF = fileURLToPath(import.meta.url)
const BENCH_DIR = path.dirname(SELF)
const ROOT = path.dirname(BENCH_DIR)
const OUT_DIR = path.join(BENCH_DIR, 'out')
const TAG = 'bench/chaos'

// ---------------------------------------------------------------------------------------------
// Seeded randomness

/** mulberry32: small, fast, and the same sequence for the same seed on every run. */
class Rng {
  constructor(seed) {
    this.s = seed >>> 0
  }
  next() {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0)
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  /** An integer in [lo, hi]. */
  int(lo, hi) {
    return lo + Math.floor(this.next() * (hi - lo + 1))
  }
  /** An integer in [range[0], range[1]]. */
  in(range) {
    return this.int(range[0], range[1])
  }
  pick(a) {
    return a[Math.floor(this.next() * a.length)]
  }
  chance(p) {
    return this.next() < p
  }
  shuffled(a) {
    const out = [...a]
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(0, i)
      ;[out[i], out[j]] = [out[j], out[i]]
    }
    return out
  }
}

/** An independent seed for one stream of choices (`label`) of a run seeded `seed`. */
const subSeed = (seed, label) => createHash('sha256').update(`${seed}/${label}`).digest().readUInt32BE(0)

// ---------------------------------------------------------------------------------------------
// Known bytes: what every server sends and every checker expects, derived, never stored

const POOL_BYTES = 3 * MiB
let pool
/** The same 3 MiB in every process: xorshift32 from a fixed constant (not the run's seed). */
function knownPool() {
  if (pool !== undefined) return pool
  pool = Buffer.allocUnsafe(POOL_BYTES)
  let x = 0x2545f491
  for (let i = 0; i < POOL_BYTES; i += 4) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    pool.writeUInt32LE(x >>> 0, i)
  }
  return pool
}

/** `length` known bytes for `offset` (any non-negative integer; lengths up to 2 MiB). */
function known(offset, length) {
  const p = knownPool()
  const o = offset % (p.length - length + 1)
  return p.subarray(o, o + length)
}

const CRLF = Buffer.from('\r\n')
const u32 = (n) => {
  const b = Buffer.allocUnsafe(4)
  b.writeUInt32BE(n, 0)
  return b
}

/** nginx: files c0.bin … c17.bin; the checker takes the first 12 (≤ 16 KiB) 85% of the time. */
const HTTP_SIZES = [
  0, 1, 100, 512, 1000, 1024, 2048, 4000, 4096, 8192, 10_000, 16_384, 65_535, 65_536, 100_000, 262_144,
  500_000, 1_048_576,
]
const HTTP_SMALL = 12
const HTTP_FILES = HTTP_SIZES.map((size, i) => ({ name: `c${i}.bin`, body: known(i * 104_729, size) }))
/** One mtime for every copy of every file, so that the three nginx give the same ETag and Last-Modified. */
const FILE_MTIME = new Date('2026-01-01T00:00:00Z')

/** Redis: keys every backend loads from the same RDB at start; SET only ever writes these values. */
const REDIS_SMALL = Array.from({ length: 256 }, (_, j) => ({
  key: Buffer.from(`chaos:k:${j}`),
  value: known(j * 7_919 + 1, 1 + ((j * 37) % 2000)),
}))
const REDIS_BIG = [3000, 10_000, 40_000, 65_536, 100_000, 131_072, 200_000, 262_144].map((size, i) => ({
  key: Buffer.from(`chaos:big:${i}`),
  value: known(i * 611_953 + 3, size),
}))

function respCommand(...args) {
  const parts = [Buffer.from(`*${args.length}\r\n`)]
  for (const a of args) {
    const b = typeof a === 'string' ? Buffer.from(a) : a
    parts.push(Buffer.from(`$${b.length}\r\n`), b, CRLF)
  }
  return Buffer.concat(parts)
}
const respBulk = (v) => [Buffer.from(`$${v.length}\r\n`), v, CRLF]
const RESP_OK = Buffer.from('+OK\r\n')

/** Frames: a request body is [u32 answer size][u32 answer offset][padding]; the answer is known(offset, size). */
const PING_FRAME_HEX = '0000000450494e47' // "PING": the health check, answered "PONG"

// ---------------------------------------------------------------------------------------------
// The Node backends (children of this file, started and killed like any other program)

/** Exit when the process that started us is gone (SIGKILLed before it could stop us). */
function exitWithParent() {
  const parent = process.ppid
  setInterval(() => {
    if (process.ppid !== parent) process.exit(0)
  }, 1000).unref()
}

/**
 * Armed by the parent (it writes { mode: 'before' | 'mid' | 'off', count, seed } to the control
 * file, then sends SIGUSR2): the next `count` answers are cut. `take(len)` says how many bytes of an
 * answer of `len` bytes to send before the reset, or undefined to send all of it. Each cut is
 * counted in `<ctl>.done`, which the parent reads.
 */
function cutter(ctl) {
  let arm = { mode: 'off', count: 0 }
  let rng = new Rng(1)
  let cuts = 0
  process.on('SIGUSR2', () => {
    try {
      arm = JSON.parse(fs.readFileSync(ctl, 'utf8'))
      rng = new Rng(arm.seed ?? 1)
    } catch (err) {
      console.error(`cannot read ${ctl}: ${err.message}`)
    }
  })
  return {
    take(len) {
      if (arm.mode === 'off' || arm.count <= 0) return undefined
      arm.count--
      fs.writeFileSync(`${ctl}.done`, String(++cuts))
      return arm.mode === 'before' || len <= 1 ? 0 : rng.int(1, len - 1)
    },
  }
}

/**
 * Send `bytes` (maybe none), then reset the connection (RST). Not at once: `resetAndDestroy()` in
 * the same tick as a write, or in its callback, closes with a FIN on Node 20 (the peer sees a clean
 * end); 50 ms later it is an RST.
 */
const RESET_DELAY_MS = 50
function cutAndReset(socket, bytes) {
  const reset = () => {
    if (!socket.destroyed) socket.resetAndDestroy()
  }
  if (bytes.length === 0) return reset()
  socket.write(bytes)
  setTimeout(reset, RESET_DELAY_MS)
}

function serve(args, onConnection) {
  exitWithParent()
  const srv = net.createServer({ noDelay: true }, onConnection)
  srv.listen(Number(args.port), HOST, () => console.log(`${args.role} listening on ${HOST}:${args.port}`))
}

function serveEcho(args) {
  const cut = cutter(args.ctl)
  const ping = Buffer.from('ping')
  serve(args, (socket) => {
    let dead = false
    socket.on('data', (chunk) => {
      if (dead) return
      const n = chunk.equals(ping) ? undefined : cut.take(chunk.length)
      if (n !== undefined) {
        dead = true
        cutAndReset(socket, chunk.subarray(0, n))
        return
      }
      socket.write(chunk)
    })
    socket.on('error', noop)
  })
}

function serveFrames(args) {
  const cut = cutter(args.ctl)
  const pong = Buffer.concat([u32(4), Buffer.from('PONG')])
  serve(args, (socket) => {
    let buffered = Buffer.alloc(0)
    let dead = false
    socket.on('data', (chunk) => {
      if (dead) return
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk])
      socket.cork()
      while (buffered.length >= 4) {
        const len = buffered.readUInt32BE(0)
        if (buffered.length < 4 + len) break
        const body = buffered.subarray(4, 4 + len)
        buffered = buffered.subarray(4 + len)
        if (len === 4 && body.toString('latin1') === 'PING') {
          socket.write(pong)
          continue
        }
        if (len < 8) continue // not one of ours
        const size = body.readUInt32BE(0)
        const answer = known(body.readUInt32BE(4), size)
        const n = cut.take(4 + size)
        if (n !== undefined) {
          dead = true
          socket.uncork()
          cutAndReset(socket, Buffer.concat([u32(size), answer]).subarray(0, n))
          return
        }
        socket.write(u32(size))
        socket.write(answer)
      }
      socket.uncork()
    })
    socket.on('error', noop)
  })
}

// ---------------------------------------------------------------------------------------------
// Checking clients

const MORE = 0
const DONE = 1
const fail = (cause, detail) => ({ cause, detail })

function firstDiff(a, b) {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i
  return n
}

const excerpt = (b, at) => JSON.stringify(b.subarray(at, at + 40).toString('latin1'))

/** Expects exactly the concatenation of `parts`, and not a byte more. */
class ExactVerifier {
  constructor(parts) {
    this.parts = parts
    this.i = 0
    this.off = 0
    this.seen = 0
    this.total = parts.reduce((s, p) => s + p.length, 0)
    while (this.parts[this.i]?.length === 0) this.i++
  }
  push(chunk) {
    let at = 0
    while (at < chunk.length) {
      const part = this.parts[this.i]
      if (part === undefined)
        return fail('extra-bytes', `${chunk.length - at} bytes after ${this.total}: ${excerpt(chunk, at)}`)
      const n = Math.min(chunk.length - at, part.length - this.off)
      const got = chunk.subarray(at, at + n)
      const want = part.subarray(this.off, this.off + n)
      if (!got.equals(want)) {
        const d = firstDiff(got, want)
        return fail('mismatch', `byte ${this.seen + d} of ${this.total}: got ${excerpt(got, d)}`)
      }
      at += n
      this.off += n
      this.seen += n
      if (this.off === part.length) {
        this.i++
        this.off = 0
        while (this.parts[this.i]?.length === 0) this.i++
      }
    }
    return this.i >= this.parts.length ? DONE : MORE
  }
}

/** Expects one `200` per body, in order, each with `Content-Length` and exactly that body. */
class HttpVerifier {
  constructor(bodies) {
    this.bodies = bodies
    this.i = 0
    this.head = undefined // bytes of a head not yet whole
    this.body = undefined // the body being read, once its head is in
    this.off = 0
  }
  push(chunk) {
    let rest = chunk
    while (rest.length > 0) {
      if (this.i >= this.bodies.length)
        return fail('extra-bytes', `${rest.length} bytes: ${excerpt(rest, 0)}`)
      if (this.body === undefined) {
        const buf = this.head === undefined ? rest : Buffer.concat([this.head, rest])
        const end = buf.indexOf('\r\n\r\n')
        if (end < 0) {
          if (buf.length > 16_384) return fail('bad-head', `no end of head in ${buf.length} bytes`)
          this.head = buf
          return MORE
        }
        this.head = undefined
        const head = buf.subarray(0, end).toString('latin1')
        rest = buf.subarray(end + 4)
        const status = /^HTTP\/1\.1 (\d{3}) /.exec(head)
        if (status === null) return fail('bad-head', JSON.stringify(head.slice(0, 60)))
        if (status[1] !== '200') return fail('status', head.split('\r\n')[0])
        const cl = /\r\ncontent-length:[ \t]*(\d+)[ \t]*(?:\r\n|$)/i.exec(head)
        if (cl === null) return fail('bad-head', `no Content-Length: ${JSON.stringify(head.slice(0, 200))}`)
        const want = this.bodies[this.i]
        if (Number(cl[1]) !== want.length)
          return fail('mismatch', `Content-Length ${cl[1]}, expected ${want.length}`)
        this.body = want
        this.off = 0
      }
      const n = Math.min(rest.length, this.body.length - this.off)
      const got = rest.subarray(0, n)
      const want = this.body.subarray(this.off, this.off + n)
      if (!got.equals(want)) {
        const d = firstDiff(got, want)
        return fail('mismatch', `body byte ${this.off + d} of ${this.body.length}: got ${excerpt(got, d)}`)
      }
      this.off += n
      rest = rest.subarray(n)
      if (this.off === this.body.length) {
        this.body = undefined
        this.i++
      }
    }
    return this.i >= this.bodies.length ? DONE : MORE
  }
}

/** How one checker's batches look: `make(rng)` → { bytes, verifier, count }. */
const BATCHES = {
  http(rng) {
    const depth = rng.chance(0.2) ? 2 : 1
    const files = []
    for (let k = 0; k < depth; k++)
      files.push(
        HTTP_FILES[rng.chance(0.85) ? rng.int(0, HTTP_SMALL - 1) : rng.int(HTTP_SMALL, HTTP_FILES.length - 1)]
      )
    return {
      bytes: Buffer.from(files.map((f) => `GET /${f.name} HTTP/1.1\r\nHost: chaos\r\n\r\n`).join('')),
      verifier: new HttpVerifier(files.map((f) => f.body)),
      count: depth,
    }
  },
  redis(rng) {
    const small = rng.pick(REDIS_SMALL)
    const cmds = [respCommand('SET', small.key, small.value), respCommand('GET', small.key)]
    const parts = [RESP_OK, ...respBulk(small.value)]
    if (rng.chance(0.3)) {
      const big = rng.pick(REDIS_BIG)
      cmds.push(respCommand('GET', big.key))
      parts.push(...respBulk(big.value))
    }
    return { bytes: Buffer.concat(cmds), verifier: new ExactVerifier(parts), count: cmds.length }
  },
  echo(rng) {
    const msg = known(rng.int(0, 1e9), rng.int(1, 1024))
    return { bytes: msg, verifier: new ExactVerifier([msg]), count: 1 }
  },
  frames(rng) {
    const depth = rng.int(1, 3)
    const reqs = []
    const parts = []
    for (let k = 0; k < depth; k++) {
      const r = rng.next()
      const size = r < 0.8 ? rng.int(0, 2048) : r < 0.97 ? rng.int(2049, 65_536) : rng.int(65_537, MiB)
      const offset = rng.int(0, 1e9)
      const pad = known(offset * 3, rng.int(0, 256))
      reqs.push(u32(8 + pad.length), u32(size), u32(offset), pad)
      parts.push(u32(size), known(offset, size))
    }
    return { bytes: Buffer.concat(reqs), verifier: new ExactVerifier(parts), count: depth }
  },
}

const errCause = (err) =>
  err.code === 'ECONNRESET' || err.code === 'EPIPE' ? 'reset' : `error-${err.code ?? err.message}`

/** One client connection: one batch in flight at a time; a close or reset between batches is kept for the next. */
class CheckedConnection {
  constructor(socket, timeoutMs) {
    this.socket = socket
    this.timeoutMs = timeoutMs
    this.pending = null
    this.idleError = null
    this.err = null
    this.ending = false
    this.closed = new Promise((resolve) => socket.once('close', resolve))
    socket.on('data', (chunk) => {
      const p = this.pending
      if (p === null) {
        this.idleError ??= fail(
          'unsolicited-bytes',
          `${chunk.length} bytes between batches: ${excerpt(chunk, 0)}`
        )
        return
      }
      p.got += chunk.length
      const r = p.verifier.push(chunk)
      if (r === MORE) return
      this.settle(r === DONE ? null : r)
    })
    socket.on('error', (err) => (this.err = err))
    socket.once('close', () => {
      const p = this.pending
      if (p !== null) {
        const what = this.err ? errCause(this.err) : p.got > 0 ? 'closed-mid-response' : 'closed'
        this.settle(fail(what, `${p.got} bytes of the answer in`))
      } else if (!this.ending) {
        this.idleError ??= fail(this.err ? `${errCause(this.err)}-idle` : 'closed-idle', 'between batches')
      }
    })
  }

  /** Resolves null once the batch's answers are in and verified, or the error. */
  exchange(batch) {
    if (this.idleError !== null) return Promise.resolve(this.idleError)
    if (this.socket.destroyed) return Promise.resolve(fail('closed-idle', 'between batches'))
    return new Promise((resolve) => {
      this.pending = {
        verifier: batch.verifier,
        got: 0,
        resolve,
        timer: setTimeout(
          () =>
            this.settle(fail('timeout', `${this.pending.got} bytes of the answer in ${this.timeoutMs} ms`)),
          this.timeoutMs
        ),
      }
      this.socket.write(batch.bytes)
    })
  }

  settle(err) {
    const p = this.pending
    if (p === null) return
    this.pending = null
    clearTimeout(p.timer)
    p.resolve(err)
  }

  /** The client's own close: FIN, and wait (bounded) for Baton to close too. */
  async end() {
    this.ending = true
    this.socket.end()
    const t = setTimeout(() => this.socket.destroy(), 5000)
    await this.closed
    clearTimeout(t)
  }
}

/**
 * A checking client: `conns` closed loops on `port`, each sending batches of `BATCHES[kind]` and
 * verifying every byte of the answers; after 1..perConn batches (seeded) it closes and reconnects.
 * After an error the connection is dropped and a new one opened 100 ms later.
 */
class Checker {
  constructor(ctx, kind, port, { conns, perConn, timeoutMs }) {
    this.ctx = ctx
    this.kind = kind
    this.port = port
    this.conns = conns
    this.perConn = perConn
    this.timeoutMs = timeoutMs
    this.requests = 0
    this.batches = 0
    this.connections = 0
    this.errors = []
    this.stopping = false
    this.loops = []
  }

  start() {
    for (let i = 0; i < this.conns; i++)
      this.loops.push(this.loop(new Rng(subSeed(this.ctx.seed, `checker/${this.kind}/${i}`))))
  }

  async stop() {
    this.stopping = true
    await Promise.all(this.loops)
  }

  error(e) {
    this.errors.push({ t: this.ctx.elapsed(), client: `${this.kind} checker`, listener: this.kind, ...e })
  }

  connect() {
    return new Promise((resolve) => {
      const socket = net.connect({ host: HOST, port: this.port, noDelay: true })
      socket.once('connect', () => {
        socket.off('error', onError)
        resolve(socket)
      })
      const onError = (err) => {
        this.error(fail('connect', err.code ?? err.message))
        socket.destroy()
        resolve(null)
      }
      socket.once('error', onError)
    })
  }

  async loop(rng) {
    while (!this.stopping) {
      const socket = await this.connect()
      if (socket === null) {
        await sleep(200)
        continue
      }
      this.connections++
      const c = new CheckedConnection(socket, this.timeoutMs)
      const n = rng.int(1, this.perConn)
      let err = null
      for (let k = 0; k < n && !this.stopping && err === null; k++) {
        const batch = BATCHES[this.kind](rng)
        err = await c.exchange(batch)
        if (err === null) {
          this.requests += batch.count
          this.batches++
        }
      }
      err ??= c.idleError
      if (err === null) {
        await c.end()
        continue
      }
      this.error(err)
      socket.destroy()
      await sleep(100)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backends and Baton

const LISTENERS = ['http', 'redis', 'echo', 'frames']
const PROTOCOL = { http: 'http1', redis: 'resp', echo: 'opaque', frames: 'length-prefixed' }
const SERVER = { http: 'nginx', redis: 'redis', echo: 'echo', frames: 'frames' }

/** Faults per listener. */
const FAULT_KINDS = {
  http: ['kill', 'stop', 'slow', 'drain', 'maint-restart'],
  redis: ['kill', 'stop', 'slow', 'drain', 'maint-restart'],
  echo: ['kill', 'stop', 'slow', 'drain', 'maint-restart', 'reset-before', 'reset-mid'],
  frames: ['kill', 'stop', 'slow', 'drain', 'maint-restart', 'reset-before', 'reset-mid'],
}

/** Faults Baton does not claim to hide, per listener, and why. */
const NOT_CLAIMED = {
  echo: {
    'reset-mid':
      'opaque cannot tell an answer cut part-way from a whole one; the backend still accepts, so the close goes on to the client',
  },
}
/** Errors this long after a not-claimed fault ends are still put down to it. */
const NOT_CLAIMED_GRACE_MS = 2000

const RESPONSE_TIMEOUT = '2s'

function batonConfig(ctx) {
  const common = { responseTimeout: RESPONSE_TIMEOUT, replay: 'safe' }
  const check = { interval: '1s', rise: 2, fall: 3 }
  const extra = {
    http: { healthCheck: { type: 'http', path: '/k1.bin', ...check }, pool: { idle: 2 } },
    redis: { healthCheck: { type: 'redis', ...check } },
    echo: { healthCheck: { type: 'send-expect', send: 'ping', expect: 'ping', ...check } },
    frames: {
      framing: { lengthBytes: 4 },
      healthCheck: { type: 'send-expect', sendHex: PING_FRAME_HEX, expect: 'PONG', ...check },
      pool: { idle: 2 },
    },
  }
  return {
    listeners: LISTENERS.map((l) => ({
      name: l,
      listen: `${HOST}:${ctx.ports[l]}`,
      protocol: PROTOCOL[l],
      backends: ctx.backends[l].map((b) => ({ name: b.name, host: HOST, port: b.port })),
      ...common,
      ...extra[l],
    })),
    admin: { listen: `${HOST}:${ctx.adminPort}`, token: ctx.token },
    log: { level: 'info' },
  }
}

/** Write the files nginx serves into `root`, each with the same mtime. */
function writeHttpFiles(root) {
  fs.mkdirSync(root, { recursive: true })
  for (const f of HTTP_FILES) fs.writeFileSync(path.join(root, f.name), f.body)
  touchHttpFiles(root)
}
function touchHttpFiles(root) {
  for (const name of fs.readdirSync(root)) fs.utimesSync(path.join(root, name), FILE_MTIME, FILE_MTIME)
}

/** An RDB holding every known key: written once by a redis-server of its own, loaded by every backend. */
async function makeRedisDataset(ctx) {
  const dir = path.join(ctx.dir, 'redis-seed')
  fs.mkdirSync(dir, { recursive: true })
  const { port, child } = await startRedis(ctx.pm, ctx.bins, undefined, [
    '--dir',
    dir,
    '--dbfilename',
    'chaos.rdb',
  ])
  const cmds = [...REDIS_SMALL, ...REDIS_BIG].map(({ key, value }) => respCommand('SET', key, value))
  cmds.push(respCommand('SAVE'))
  const want = Buffer.concat(cmds.map(() => RESP_OK))
  const got = await new Promise((resolve, reject) => {
    const s = net.connect(port, HOST)
    const chunks = []
    let n = 0
    s.on('data', (c) => {
      chunks.push(c)
      if ((n += c.length) >= want.length) {
        s.destroy()
        resolve(Buffer.concat(chunks))
      }
    })
    s.on('error', reject)
    s.write(Buffer.concat(cmds))
  })
  if (!got.equals(want)) throw new Error(`loading the Redis dataset: unexpected replies ${excerpt(got, 0)}`)
  await ctx.pm.stop(child)
  return path.join(dir, 'chaos.rdb')
}

function makeBackend(ctx, listener, i, port) {
  const b = {
    listener,
    name: `${SERVER[listener]}-${i + 1}`,
    port,
    dir: path.join(ctx.dir, `${SERVER[listener]}-${i + 1}`),
    child: undefined,
    expectExit: false,
    starts: 0,
    unexpectedExits: 0,
  }
  b.ctl = path.join(b.dir, 'ctl.json')
  fs.mkdirSync(b.dir, { recursive: true })
  if (listener === 'http') writeHttpFiles(path.join(b.dir, 'www'))
  if (listener === 'redis') fs.copyFileSync(ctx.rdb, path.join(b.dir, 'chaos.rdb'))

  b.start = async () => {
    b.expectExit = false
    b.starts++
    fs.rmSync(`${b.ctl}.done`, { force: true }) // a new process counts its cuts from 0
    if (listener === 'http') {
      b.child = (await startNginxHttp(ctx.pm, ctx.bins, b.dir, port)).child
      touchHttpFiles(path.join(b.dir, 'www')) // startNginxHttp wrote k1.bin again
    } else if (listener === 'redis') {
      b.child = (
        await startRedis(ctx.pm, ctx.bins, port, ['--dir', b.dir, '--dbfilename', 'chaos.rdb'])
      ).child
    } else {
      const child = ctx.pm.start(b.name, process.execPath, [
        SELF,
        `--role=${listener}`,
        `--port=${port}`,
        `--ctl=${b.ctl}`,
      ])
      await waitPort(port, 10_000, child)
      b.child = child
    }
    const child = b.child
    child.exited.then(() => {
      if (b.expectExit || ctx.stopping || b.child !== child) return
      b.unexpectedExits++
      ctx.problem(`${b.name} exited on its own (${child.signalCode ?? child.exitCode}); see ${child.logFile}`)
      sleep(1000).then(() =>
        ctx.stopping || b.child !== child
          ? undefined
          : b.start().catch((err) => ctx.problem(`restarting ${b.name}: ${err.message}`))
      )
    })
  }
  b.signal = (sig) => {
    try {
      process.kill(b.child.pid, sig)
    } catch {
      /* gone */
    }
  }
  return b
}

/** The admin API: `method path` with the token; JSON back (or text for /metrics). */
async function admin(ctx, method, route) {
  const res = await fetch(`http://${HOST}:${ctx.adminPort}${route}`, {
    method,
    headers: { authorization: `Bearer ${ctx.token}` },
    signal: AbortSignal.timeout(10_000),
  })
  const text = await res.text()
  if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${text.slice(0, 200)}`)
  return route === '/metrics' ? text : JSON.parse(text)
}

/** Prometheus text → [{ name, labels, value }]. */
function parseMetrics(text) {
  const out = []
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null) continue
    const labels = {}
    for (const [, k, v] of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v
    out.push({ name: m[1], labels, value: Number(m[3]) })
  }
  return out
}

const LISTENER_METRICS = [
  'sessions_total',
  'failovers_total',
  'replayed_requests_total',
  'verified_resumes_total',
  'resume_mismatches_total',
  'response_timeouts_total',
  'migrations_total',
  'unrecoverable_total',
  'connect_errors_total',
  'no_backend_total',
  'framing_errors_total',
  'local_errors_total',
]

/** Per listener: Baton's counters, hand-offs by kind, backend ejections, live sessions. */
function listenerCounters(samples) {
  const out = {}
  for (const l of LISTENERS) {
    const sum = (name, extra = {}) =>
      samples
        .filter(
          (s) =>
            s.name === name &&
            s.labels.listener === l &&
            Object.entries(extra).every(([k, v]) => s.labels[k] === v)
        )
        .reduce((a, s) => a + s.value, 0)
    const c = {}
    for (const m of LISTENER_METRICS) c[m.replace(/_total$/, '')] = sum(`baton_${m}`)
    c.handoffs_pooled = sum('baton_handoffs_total', { connection: 'pooled' })
    c.handoffs_new = sum('baton_handoffs_total', { connection: 'new' })
    c.ejections = sum('baton_backend_ejections_total')
    c.server_failures = sum('baton_backend_server_failures_total')
    c.active = sum('baton_sessions_active')
    out[l] = c
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Faults

const TIMING = {
  soak: {
    gap: [1000, 4000],
    killDown: [300, 3000],
    stop: [3000, 6000],
    slow: [3000, 8000],
    slowStop: [50, 500],
    slowRun: [50, 300],
    drain: [2000, 6000],
    restartDown: [200, 1500],
    idleWait: 15_000,
    armed: [1500, 3000],
    cuts: [1, 4],
    warmup: 10_000,
  },
  quick: {
    gap: [300, 1200],
    killDown: [200, 1000],
    stop: [2500, 3500],
    slow: [1000, 2500],
    slowStop: [50, 400],
    slowRun: [50, 200],
    drain: [800, 2000],
    restartDown: [100, 500],
    idleWait: 8000,
    armed: [800, 1500],
    cuts: [1, 3],
    warmup: 3000,
  },
}

/**
 * Each kind: `draw(rng, timing)` takes every random value the fault needs up front (so that a seed
 * fixes them whatever the timing), `longest(p)` bounds how long it runs, `run(ctx, b, p, rec)` does
 * it and leaves the backend as it found it (running, ready).
 */
const FAULTS = {
  kill: {
    draw: (rng, T) => ({ downMs: rng.in(T.killDown) }),
    longest: (p) => p.downMs + 3000,
    async run(ctx, b, p) {
      b.expectExit = true
      b.signal('SIGKILL')
      await b.child.exited
      await sleep(p.downMs)
      await b.start()
    },
  },
  stop: {
    draw: (rng, T) => ({ stopMs: rng.in(T.stop) }),
    longest: (p) => p.stopMs,
    async run(ctx, b, p) {
      b.signal('SIGSTOP')
      try {
        await sleep(p.stopMs)
      } finally {
        b.signal('SIGCONT')
      }
    },
  },
  slow: {
    draw(rng, T) {
      const bursts = []
      const total = rng.in(T.slow)
      for (let t = 0; t < total;) {
        const burst = [rng.in(T.slowStop), rng.in(T.slowRun)]
        bursts.push(burst)
        t += burst[0] + burst[1]
      }
      return { bursts }
    },
    longest: (p) => p.bursts.reduce((s, [a, b]) => s + a + b, 0),
    async run(ctx, b, p) {
      for (const [stopMs, runMs] of p.bursts) {
        b.signal('SIGSTOP')
        try {
          await sleep(stopMs)
        } finally {
          b.signal('SIGCONT')
        }
        await sleep(runMs)
      }
    },
  },
  drain: {
    draw: (rng, T) => ({ holdMs: rng.in(T.drain) }),
    longest: (p) => p.holdMs + 1000,
    async run(ctx, b, p) {
      await admin(ctx, 'POST', `/api/backends/${b.name}/drain`)
      try {
        await sleep(p.holdMs)
      } finally {
        await admin(ctx, 'POST', `/api/backends/${b.name}/ready`)
      }
    },
  },
  'maint-restart': {
    draw: (rng, T) => ({ waitMs: T.idleWait, downMs: rng.in(T.restartDown) }),
    longest: (p) => p.waitMs + p.downMs + 3000,
    async run(ctx, b, p, rec) {
      await admin(ctx, 'POST', `/api/backends/${b.name}/maint`)
      try {
        const until = now() + p.waitMs
        let active
        for (;;) {
          active = (await admin(ctx, 'GET', '/api/backends')).find(
            (x) => x.listener === b.listener && x.name === b.name
          )?.active
          if (active === 0 || now() > until) break
          await sleep(200)
        }
        rec.idleAfterMs = Math.round(p.waitMs - (until - now()))
        if (active !== 0) {
          rec.note = `still ${active} active sessions after ${p.waitMs} ms: not restarted`
          return
        }
        b.expectExit = true
        await ctx.pm.stop(b.child, { sig: 'SIGTERM', graceMs: 5000 })
        await sleep(p.downMs)
        await b.start()
      } finally {
        await admin(ctx, 'POST', `/api/backends/${b.name}/ready`)
      }
    },
  },
  'reset-before': cutFault('before'),
  'reset-mid': cutFault('mid'),
}

function cutFault(mode) {
  return {
    draw: (rng, T) => ({ armedMs: rng.in(T.armed), count: rng.in(T.cuts), seed: rng.int(0, 2 ** 31) }),
    longest: (p) => p.armedMs + 500,
    async run(ctx, b, p, rec) {
      const done = () => {
        try {
          return Number(fs.readFileSync(`${b.ctl}.done`, 'utf8')) || 0
        } catch {
          return 0
        }
      }
      const before = done()
      const arm = (a) => {
        fs.writeFileSync(b.ctl, JSON.stringify(a))
        b.signal('SIGUSR2')
      }
      arm({ mode, count: p.count, seed: p.seed })
      try {
        await sleep(p.armedMs)
      } finally {
        arm({ mode: 'off', count: 0 })
        await sleep(50)
        rec.cuts = Math.max(0, done() - before) // a restart since (none here) would reset the file's count
      }
    },
  }
}

/** One listener's faults, one at a time, until `untilMs` (relative to the load's start). */
async function faultLoop(ctx, listener, T, untilMs) {
  const rng = new Rng(subSeed(ctx.seed, `faults/${listener}`))
  const deck = []
  for (;;) {
    const gap = rng.in(T.gap)
    if (deck.length === 0) deck.push(...rng.shuffled(FAULT_KINDS[listener]))
    const kind = deck.pop()
    const b = rng.pick(ctx.backends[listener])
    const params = FAULTS[kind].draw(rng, T)
    await sleep(gap)
    if (ctx.stopping || ctx.elapsed() * 1000 >= untilMs) return
    if (ctx.elapsed() * 1000 + FAULTS[kind].longest(params) > untilMs) continue // too long for the time left
    const claimed = NOT_CLAIMED[listener]?.[kind] === undefined
    const rec = { t: ctx.elapsed(), listener, backend: b.name, kind, claimed, params }
    ctx.faults.push(rec)
    ctx.log(
      `${pad(rec.t)}  ${listener.padEnd(6)}  ${b.name.padEnd(8)}  ${kind}${claimed ? '' : ' (not claimed)'}  ${describeParams(params)}`
    )
    try {
      await FAULTS[kind].run(ctx, b, params, rec)
    } catch (err) {
      rec.error = err.message
      ctx.problem(`fault ${kind} on ${b.name} at ${rec.t.toFixed(1)} s: ${err.message}`)
    }
    rec.end = ctx.elapsed()
    if (rec.note) ctx.log(`${pad(rec.end)}  ${listener.padEnd(6)}  ${b.name.padEnd(8)}  ${rec.note}`)
  }
}

function describeParams(p) {
  if (p.bursts) return `${p.bursts.length} bursts, ${p.bursts.reduce((s, [a]) => s + a, 0)} ms stopped`
  return Object.entries(p)
    .filter(([k]) => k !== 'seed')
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')
}

const pad = (t) => `${t.toFixed(1).padStart(6)}s`

// ---------------------------------------------------------------------------------------------
// Load tools

async function runWrk(ctx, port, loadMs, conns) {
  const r = await ctx.pm.run(
    ctx.bins.wrk,
    wrkArgs(port, { threads: 1, conns, durationS: Math.round(loadMs / 1000), timeoutS: 10 }),
    {
      timeoutMs: loadMs + 60_000,
    }
  )
  const w = parseWrk(r.stdout)
  return {
    command: r.command,
    code: r.code,
    timedOut: r.timedOut,
    ...w,
    stderr: r.stderr.trim().slice(0, 500),
  }
}

/** redis-benchmark runs one after the other until `loadMs` has passed; each run's exit and error lines. */
async function redisBenchmarkLoop(ctx, port, loadMs, n) {
  const runs = []
  const args = redisBenchmarkArgs(port, { tests: 'set,get', n, conns: 8, pipeline: 8 })
  while (ctx.elapsed() * 1000 < loadMs && !ctx.stopping) {
    const t = ctx.elapsed()
    const r = await ctx.pm.run(ctx.bins.redisBenchmark, args, { timeoutMs: 120_000 })
    const parsed = parseRedisBenchmark(r.stdout, r.stderr)
    const ok =
      r.code === 0 && !r.timedOut && parsed.errorLines.length === 0 && parsed.tests.SET && parsed.tests.GET
    runs.push({
      t,
      end: ctx.elapsed(),
      code: r.code,
      signal: r.signal,
      timedOut: r.timedOut,
      ok: Boolean(ok),
      requests: ok ? 2 * n : 0,
      rps: Object.fromEntries(Object.entries(parsed.tests).map(([k, v]) => [k, Math.round(v.rps)])),
      errorLines: parsed.errorLines.slice(0, 5),
    })
    if (!ok)
      ctx.log(
        `${pad(t)}  redis-benchmark run failed: exit ${r.code}${r.timedOut ? ' (timed out)' : ''} ${parsed.errorLines.slice(0, 2).join(' | ')}`
      )
  }
  return { command: [ctx.bins.redisBenchmark, ...args].join(' '), runs }
}

// ---------------------------------------------------------------------------------------------
// Baton's memory and descriptors

/** VmRSS and open descriptors of `pid`, every second: the first sample, the peak, a series every 5 s. */
class ResourceMonitor {
  constructor(pid, elapsed) {
    this.pid = pid
    this.elapsed = elapsed
    this.series = []
    this.peak = { rssKiB: 0, fds: 0 }
  }
  sample() {
    let fds = 0
    try {
      fds = fs.readdirSync(`/proc/${this.pid}/fd`).length
    } catch {
      /* gone */
    }
    const s = { t: this.elapsed(), rssKiB: vmRssKiB(this.pid), fds }
    this.peak.rssKiB = Math.max(this.peak.rssKiB, s.rssKiB)
    this.peak.fds = Math.max(this.peak.fds, s.fds)
    const last = this.series.at(-1)
    if (last === undefined || s.t - last.t >= 5) this.series.push(s)
    return s
  }
  /** Sample every second, calling `tick(sample)` each time, until stop(). */
  run(tick) {
    this.timer = setInterval(() => tick(this.sample()), 1000)
  }
  stop() {
    clearInterval(this.timer)
    const s = this.sample()
    if (this.series.at(-1) !== s) this.series.push(s)
    return s
  }
}

/**
 * Baton's warnings and errors (pino JSON lines, level 40 and up) from its log, grouped by listener,
 * message and reason: what the load tools' bare error counts do not say.
 */
function batonWarnings(logFile) {
  const groups = new Map()
  let text = ''
  try {
    text = fs.readFileSync(logFile, 'utf8')
  } catch {
    return []
  }
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue
    let e
    try {
      e = JSON.parse(line)
    } catch {
      continue
    }
    if (!(e.level >= 40 || e.level === 'warn' || e.level === 'error' || e.level === 'fatal')) continue
    const key = `${e.listener ?? ''}|${e.msg}|${e.reason ?? ''}`
    const g = groups.get(key) ?? {
      listener: e.listener,
      msg: e.msg,
      reason: e.reason,
      count: 0,
      first: e.time,
    }
    g.count++
    groups.set(key, g)
  }
  return [...groups.values()].map((g) => ({ ...g, first: new Date(g.first).toISOString() }))
}

// ---------------------------------------------------------------------------------------------
// The run

const USAGE =
  'usage: node bench/chaos.mjs [--duration 10m] [--seed N] [--quick] [--max-fd-growth 50] ' +
  '[--max-rss-growth 128] [--dist DIR]'

function parseFlags(argv) {
  const flags = parseArgs(
    argv,
    ['duration', 'seed', 'max-fd-growth', 'max-rss-growth', 'dist'],
    ['quick', 'help']
  )
  const quick = flags.quick === true
  const int = (name, fallback, min, max) =>
    flags[name] === undefined ? fallback : parseIntFlag(flags[name], name, min, max)
  const opts = {
    help: flags.help === true,
    quick,
    loadMs: parseDuration(flags.duration ?? (quick ? '1m' : '10m')),
    seed: int('seed', randomInt(0, 2 ** 31), 0, 2 ** 32 - 1),
    maxFdGrowth: int('max-fd-growth', 50, 0, 1e6),
    maxRssGrowthMiB: int('max-rss-growth', 128, 0, 1e6),
    dist: path.resolve(flags.dist ?? path.join(ROOT, 'dist')),
  }
  if (opts.loadMs < 20_000) throw new UsageError('--duration: at least 20s')
  return opts
}

/** Every backend running, Baton started with its config and every backend checked up. */
async function setUp(ctx, distDir) {
  const cli = path.join(distDir, 'cli.js')
  if (!fs.existsSync(cli)) throw new Error(`no ${cli}: npm run build first`)
  // dist/ changes under concurrent work: record what is measured before anything starts.
  ctx.dist = distInfo(distDir)
  ctx.git = distDir === path.join(ROOT, 'dist') ? gitInfo(ROOT) : undefined // built from elsewhere
  ctx.rdb = await makeRedisDataset(ctx)
  for (const l of LISTENERS) {
    ctx.backends[l] = []
    for (let i = 0; i < 3; i++) ctx.backends[l].push(makeBackend(ctx, l, i, await freePort()))
  }
  await Promise.all(LISTENERS.flatMap((l) => ctx.backends[l].map((b) => b.start())))
  for (const l of LISTENERS) ctx.ports[l] = await freePort()
  ctx.adminPort = await freePort()

  ctx.config = batonConfig(ctx)
  const configFile = path.join(ctx.dir, 'baton.json')
  fs.writeFileSync(configFile, JSON.stringify(ctx.config, null, 2))
  const check = spawnSync(process.execPath, [cli, '--config', configFile, '--check'], {
    encoding: 'utf8',
    timeout: 30_000,
  })
  if (check.status !== 0) throw new Error(`baton --check refused the config:\n${check.stdout}${check.stderr}`)
  const [pre, ...preArgs] = fdLimits(ctx.bins).prefix
  const argv = [cli, '--config', configFile]
  const baton =
    pre === undefined
      ? ctx.pm.start('baton', process.execPath, argv, { cwd: ROOT })
      : ctx.pm.start('baton', pre, [...preArgs, process.execPath, ...argv], { cwd: ROOT })
  for (const l of LISTENERS) await waitListening(ctx.ports[l], 15_000, baton)
  await waitListening(ctx.adminPort, 15_000, baton)
  baton.exited.then(() => {
    if (!ctx.stopping) ctx.fatal(`Baton exited (${baton.signalCode ?? baton.exitCode}); see ${baton.logFile}`)
  })
  ctx.baton = baton

  const by = now() + 30_000
  for (;;) {
    const down = (await admin(ctx, 'GET', '/api/backends')).filter((b) => b.health !== 'up')
    if (down.length === 0) break
    if (now() > by) throw new Error(`backends not up after 30 s: ${down.map((b) => b.name).join(', ')}`)
    await sleep(250)
  }
  await sleep(2000) // the warm pools fill
}

/** The load for `opts.loadMs`, faults from T.warmup until 3 s before its end. */
async function soak(ctx, opts, T, monitor) {
  const checkerOpts = { conns: opts.quick ? 3 : 4, perConn: 300, timeoutMs: 30_000 }
  const checkers = Object.fromEntries(
    LISTENERS.map((l) => [l, new Checker(ctx, l, ctx.ports[l], checkerOpts)])
  )
  for (const c of Object.values(checkers)) c.start()
  const wrkDone = runWrk(ctx, ctx.ports.http, opts.loadMs, 8)
  const benchDone = redisBenchmarkLoop(ctx, ctx.ports.redis, opts.loadMs, opts.quick ? 50_000 : 200_000)
  let lastStatus = 0
  monitor.run((s) => {
    if (s.t - lastStatus < (opts.quick ? 10 : 30)) return
    lastStatus = s.t
    const checked = LISTENERS.map((l) => `${l} ${checkers[l].requests}`).join(', ')
    const errors = LISTENERS.reduce((a, l) => a + checkers[l].errors.length, 0)
    ctx.log(
      `${pad(s.t)}  checked ${checked}; checker errors ${errors}; faults ${ctx.faults.length}; ` +
        `Baton RSS ${(s.rssKiB / 1024).toFixed(0)} MiB, ${s.fds} fds`
    )
  })
  await sleep(T.warmup)
  await Promise.all(LISTENERS.map((l) => faultLoop(ctx, l, T, opts.loadMs - 3000)))
  const left = opts.loadMs - ctx.elapsed() * 1000
  if (left > 0) await sleep(left)
  await Promise.all(Object.values(checkers).map((c) => c.stop()))
  const wrk = await wrkDone
  const bench = await benchDone
  ctx.log(`${pad(ctx.elapsed())}  load stopped`)
  return { checkers, wrk, bench }
}

/** Once Baton has no live session (30 s at most) and `idleMs` more: the counters, backends and last sample. */
async function settle(ctx, monitor, idleMs) {
  const by = now() + 30_000
  for (;;) {
    const counters = listenerCounters(parseMetrics(await admin(ctx, 'GET', '/metrics')))
    const active = LISTENERS.reduce((a, l) => a + counters[l].active, 0)
    if (active === 0) break
    if (now() > by) {
      ctx.problem(`Baton still has ${active} live sessions 30 s after the load stopped`)
      break
    }
    await sleep(250)
  }
  await sleep(idleMs)
  const end = monitor.stop()
  const counters = listenerCounters(parseMetrics(await admin(ctx, 'GET', '/metrics')))
  const backends = await admin(ctx, 'GET', '/api/backends')
  return { end, counters, backends }
}

/** Each checker error: claimed (counts against Baton) or in the window of a fault not claimed; the faults around it. */
function classify(errors, faults) {
  for (const e of errors) {
    const near = (f, before, after) =>
      f.listener === e.listener && e.t >= f.t - before && e.t <= (f.end ?? Infinity) + after
    const excuse = faults.find((f) => !f.claimed && near(f, 0, NOT_CLAIMED_GRACE_MS / 1000))
    e.claimed = excuse === undefined
    if (excuse !== undefined)
      e.notClaimedBecause = `${excuse.kind} on ${excuse.backend} at ${excuse.t.toFixed(1)} s`
    e.faultsAround = faults
      .filter((f) => near(f, 1, 5))
      .map((f) => `${f.kind} ${f.backend} ${f.t.toFixed(1)}–${f.end?.toFixed(1)} s`)
  }
}

/** Client-visible errors by client and cause, the load tools' included. */
function errorsByCause(errors, wrk, bench) {
  const rows = new Map()
  const add = (client, cause, claimed, n = 1) => {
    const k = `${client}|${cause}`
    if (!rows.has(k)) rows.set(k, { client, cause, claimed: 0, notClaimed: 0 })
    rows.get(k)[claimed ? 'claimed' : 'notClaimed'] += n
  }
  for (const e of errors) add(e.client, e.cause, e.claimed)
  for (const [k, v] of Object.entries({ ...wrk.errors, non2xx: wrk.non2xx }))
    if (v > 0) add('wrk', k, true, v)
  for (const r of bench.runs)
    if (!r.ok)
      add(
        'redis-benchmark',
        r.timedOut ? 'hung' : `exit ${r.code}${r.errorLines.length ? ', error lines' : ''}`,
        true
      )
  return [...rows.values()]
}

function judge(ctx, opts, { checkers, wrk, bench }, start, end) {
  const problems = [...ctx.problems]
  const claimed = LISTENERS.flatMap((l) => checkers[l].errors).filter((e) => e.claimed)
  if (claimed.length > 0)
    problems.push(`${claimed.length} client-visible error(s) of the checkers for faults Baton claims to hide`)
  if (wrk.requests === undefined) problems.push(`wrk produced no result (exit ${wrk.code}): ${wrk.stderr}`)
  else if (wrk.socketErrors + wrk.non2xx > 0)
    problems.push(
      `wrk: ${wrk.socketErrors} socket errors (${JSON.stringify(wrk.errors)}), ${wrk.non2xx} non-2xx`
    )
  const failed = bench.runs.filter((r) => !r.ok).length
  if (failed > 0) problems.push(`redis-benchmark: ${failed} of ${bench.runs.length} runs failed`)
  for (const l of LISTENERS)
    if (checkers[l].requests === 0) problems.push(`the ${l} checker got no answer at all`)
  if (end.fds > start.fds + opts.maxFdGrowth)
    problems.push(`descriptors grew from ${start.fds} to ${end.fds} (bound: start + ${opts.maxFdGrowth})`)
  if (end.rssKiB > start.rssKiB + opts.maxRssGrowthMiB * 1024)
    problems.push(
      `RSS grew from ${mib(start.rssKiB)} to ${mib(end.rssKiB)} MiB (bound: start + ${opts.maxRssGrowthMiB} MiB)`
    )
  return problems
}

const mib = (kib) => (kib / 1024).toFixed(1)

function buildReport(ctx, opts, T, load, settled, start, monitor, problems) {
  const { checkers, wrk, bench } = load
  const errors = LISTENERS.flatMap((l) => checkers[l].errors)
  const benchRequests = bench.runs.reduce((a, r) => a + r.requests, 0)
  const faultsByKind = {}
  for (const f of ctx.faults) {
    faultsByKind[f.kind] ??= Object.fromEntries(LISTENERS.map((l) => [l, 0]))
    faultsByKind[f.kind][f.listener]++
  }
  return {
    command: `npm run chaos -- --duration ${fmtDuration(opts.loadMs)} --seed ${opts.seed}${opts.quick ? ' --quick' : ''}`,
    seed: opts.seed,
    quick: opts.quick,
    loadSeconds: opts.loadMs / 1000,
    startedAt: ctx.startedAt,
    machine: machineInfo(),
    versions: versions(ctx.bins),
    dist: ctx.dist,
    git: ctx.git,
    bounds: { fdGrowth: opts.maxFdGrowth, rssGrowthMiB: opts.maxRssGrowthMiB },
    timing: T,
    notClaimed: NOT_CLAIMED,
    batonConfig: { ...ctx.config, admin: { ...ctx.config.admin, token: '(random)' } },
    requests: {
      http1: { wrk: wrk.requests ?? 0, checker: checkers.http.requests },
      resp: { 'redis-benchmark': benchRequests, checker: checkers.redis.requests },
      opaque: { checker: checkers.echo.requests },
      'length-prefixed': { checker: checkers.frames.requests },
    },
    wrk,
    redisBenchmark: {
      command: bench.command,
      runs: bench.runs.length,
      failed: bench.runs.filter((r) => !r.ok).length,
      requests: benchRequests,
      everyRun: bench.runs,
    },
    checkers: Object.fromEntries(
      LISTENERS.map((l) => {
        const c = checkers[l]
        return [
          l,
          { requests: c.requests, batches: c.batches, connections: c.connections, errors: c.errors.length },
        ]
      })
    ),
    faultsByKind,
    faults: ctx.faults,
    errorsByCause: errorsByCause(errors, wrk, bench),
    errors: errors.slice(0, 500),
    baton: {
      counters: settled.counters,
      backendsAtEnd: settled.backends,
      rssKiB: { start: start.rssKiB, peak: monitor.peak.rssKiB, end: settled.end.rssKiB },
      fds: { start: start.fds, peak: monitor.peak.fds, end: settled.end.fds },
      series: monitor.series,
    },
    batonWarnings: batonWarnings(ctx.baton.logFile),
    backendStarts: Object.fromEntries(
      LISTENERS.flatMap((l) =>
        ctx.backends[l].map((b) => [b.name, { starts: b.starts, unexpectedExits: b.unexpectedExits }])
      )
    ),
    commands: ctx.pm.commands,
    problems,
  }
}

function printReport(r) {
  const n = (v) => (v ?? 0).toLocaleString('en-US')
  const { checkers, wrk, redisBenchmark: rb } = r
  console.log(`\n${r.command}\n`)
  console.log(
    table([
      ['protocol', 'load tool', 'requests', 'checker (verified)', 'checker errors'],
      ['http1', 'wrk', n(wrk.requests), n(checkers.http.requests), n(checkers.http.errors)],
      [
        'resp',
        `redis-benchmark ×${rb.runs}`,
        n(rb.requests),
        n(checkers.redis.requests),
        n(checkers.redis.errors),
      ],
      ['opaque', '—', '—', n(checkers.echo.requests), n(checkers.echo.errors)],
      ['length-prefixed', '—', '—', n(checkers.frames.requests), n(checkers.frames.errors)],
    ])
  )
  console.log(
    `wrk: ${wrk.socketErrors ?? '?'} socket errors, ${wrk.non2xx ?? '?'} non-2xx; ` +
      `redis-benchmark: ${rb.failed} of ${rb.runs} runs failed`
  )
  console.log(`\nfaults: ${r.faults.length}`)
  const kinds = Object.entries(r.faultsByKind)
  console.log(
    table(
      [
        ['kind', ...LISTENERS, 'total'],
        ...kinds.map(([k, v]) => [
          k,
          ...LISTENERS.map((l) => v[l]),
          Object.values(v).reduce((a, b) => a + b, 0),
        ]),
      ],
      1
    )
  )
  console.log('\nclient-visible errors by cause:')
  const rows = r.errorsByCause
  console.log(
    rows.length === 0
      ? '  none'
      : table([
          ['client', 'cause', 'claimed', 'not claimed'],
          ...rows.map((x) => [x.client, x.cause, x.claimed, x.notClaimed]),
        ])
  )
  for (const e of r.errors.filter((x) => x.claimed).slice(0, 10))
    console.log(
      `  ${pad(e.t)}  ${e.client}: ${e.cause} (${e.detail}); faults around: ${e.faultsAround.join('; ') || 'none'}`
    )
  console.log('\nBaton, from /metrics:')
  const keys = [
    'failovers',
    'replayed_requests',
    'handoffs_pooled',
    'handoffs_new',
    'verified_resumes',
    'resume_mismatches',
    'response_timeouts',
    'migrations',
    'unrecoverable',
    'ejections',
  ]
  const c = r.baton.counters
  console.log(table([['listener', ...keys], ...LISTENERS.map((l) => [l, ...keys.map((k) => n(c[l][k]))])], 1))
  if (r.batonWarnings.length > 0) {
    console.log("\nBaton's warnings (its log, level warn and up):")
    const w = r.batonWarnings.map((x) => [
      x.listener ?? '',
      `${x.msg}${x.reason ? `: ${x.reason}` : ''}`,
      x.count,
    ])
    console.log(table([['listener', 'message', 'count'], ...w], 2))
  }
  const { rssKiB, fds } = r.baton
  console.log(
    `\nBaton RSS MiB start / peak / end: ${mib(rssKiB.start)} / ${mib(rssKiB.peak)} / ${mib(rssKiB.end)}; ` +
      `fds: ${fds.start} / ${fds.peak} / ${fds.end}`
  )
}

async function main() {
  let opts
  try {
    opts = parseFlags(process.argv.slice(2))
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    console.error(`${TAG}: ${err.message}\n${USAGE}`)
    return 2
  }
  if (opts.help) {
    console.log(USAGE)
    return 0
  }
  const T = opts.quick ? TIMING.quick : TIMING.soak
  const ts = timestamp()
  const name = `chaos-${ts}${opts.quick ? '-quick' : ''}`
  const dir = path.join(OUT_DIR, name)
  fs.mkdirSync(dir, { recursive: true })
  const pm = processManager(TAG, dir)
  pm.installHandlers() // every process started is killed on exit, SIGINT, SIGTERM
  const fatal = (msg) => {
    console.error(`${TAG}: ${msg}`)
    process.exit(1)
  }
  process.on('uncaughtException', (err) => fatal(err?.stack ?? String(err)))
  process.on('unhandledRejection', (err) => fatal(err?.stack ?? String(err)))
  setTimeout(
    () => fatal('watchdog: still running 10 minutes after the load should have ended'),
    opts.loadMs + 600_000
  ).unref()

  const bins = findBins()
  const missing = ['nginx', 'redisServer', 'redisBenchmark', 'wrk'].filter((k) => bins[k] === undefined)
  if (missing.length > 0) fatal(`not installed: ${missing.join(', ')} (bench/setup.sh installs them)`)

  let t0 = now()
  const ctx = {
    pm,
    bins,
    dir,
    seed: opts.seed,
    token: randomBytes(12).toString('hex'),
    stopping: false,
    faults: [],
    problems: [],
    backends: {},
    ports: {},
    fatal,
    elapsed: () => (now() - t0) / 1000,
    log: (line) => console.log(line),
    problem: (msg) => {
      ctx.problems.push(msg)
      console.log(`  problem: ${msg}`)
    },
  }
  console.log(
    `${TAG}: seed ${opts.seed}, load ${opts.loadMs / 1000} s${opts.quick ? ' (quick)' : ''}; logs in ${path.relative(ROOT, dir)}/`
  )
  await setUp(ctx, opts.dist)

  const monitor = new ResourceMonitor(ctx.baton.pid, ctx.elapsed)
  t0 = now()
  ctx.startedAt = new Date().toISOString()
  const start = monitor.sample()
  console.log(`Baton pid ${ctx.baton.pid}: RSS ${mib(start.rssKiB)} MiB, ${start.fds} fds before the load`)
  const load = await soak(ctx, opts, T, monitor)
  const settled = await settle(ctx, monitor, opts.quick ? 2000 : 5000)
  ctx.stopping = true
  for (const l of LISTENERS) for (const b of ctx.backends[l]) b.signal('SIGCONT')
  await pm.stopAll()

  classify(
    LISTENERS.flatMap((l) => load.checkers[l].errors),
    ctx.faults
  )
  const problems = judge(ctx, opts, load, start, settled.end)
  const report = buildReport(ctx, opts, T, load, settled, start, monitor, problems)
  printReport(report)
  const file = path.join(OUT_DIR, `${name}.json`)
  fs.writeFileSync(file, JSON.stringify(report, null, 2) + '\n')
  console.log(`\nJSON: ${path.relative(process.cwd(), file)}`)
  if (problems.length === 0) {
    console.log(
      'OK: no client-visible error for a fault Baton claims to hide; descriptors and RSS within bounds'
    )
    return 0
  }
  console.error(`\n${problems.length} problem(s):\n  ${problems.join('\n  ')}`)
  return 1
}

function fmtDuration(ms) {
  return ms % 60_000 === 0 ? `${ms / 60_000}m` : ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`
}

const role = roleArgs()
if (role !== undefined) {
  if (role.role === 'echo') serveEcho(role)
  else if (role.role === 'frames') serveFrames(role)
  else throw new Error(`unknown role ${role.role}`)
} else {
  process.exit(await main())
}
