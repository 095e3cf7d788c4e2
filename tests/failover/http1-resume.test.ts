/**
 * http1: a response body cut part-way is resumed from another backend when the replacement is the
 * same representation (status, length, ETag…): its own head, whose Date differs, stands in for the
 * one the client already has, the body bytes the client has are checked, and only the rest is sent.
 */
import { createHash, randomBytes } from 'node:crypto'
import net from 'node:net'
import t, { type Test } from 'tap'
import { createBalancer } from '../../lib/index.js'

const BODY = randomBytes(256 * 1024)

function head(date: string, etag = '"v1"'): string {
  return (
    `HTTP/1.1 200 OK\r\nDate: ${date}\r\nServer: test\r\nContent-Type: application/octet-stream\r\n` +
    `Content-Length: ${BODY.length}\r\nETag: ${etag}\r\n\r\n`
  )
}

/** A server that answers each GET with `head` and the body, or cuts it after `cutAt` body bytes. */
async function server(date: string, opts: { cutAt?: number; etag?: string } = {}): Promise<net.Server> {
  const srv = net.createServer((s) => {
    s.on('error', () => {})
    s.once('data', () => {
      if (opts.cutAt !== undefined) {
        s.write(head(date, opts.etag) + '')
        s.write(BODY.subarray(0, opts.cutAt), () => setImmediate(() => s.resetAndDestroy()))
      } else {
        s.write(head(date, opts.etag))
        s.end(BODY)
      }
    })
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  return srv
}

async function fetchThrough(port: number): Promise<{ data: Buffer; error?: Error }> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    let error: Error | undefined
    const timer = setTimeout(() => c.destroy(new Error('timeout')), 5000)
    c.on('data', (d: Buffer) => chunks.push(d))
    c.on('error', (e) => (error = e))
    c.on('close', () => {
      clearTimeout(timer)
      resolve({ data: Buffer.concat(chunks), error })
    })
    c.write('GET /file HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  })
}

for (const [name, etagB, resumes] of [
  ['same representation, different Date: resumed', '"v1"', true],
  ['different ETag: not the same representation, client closed', '"v2"', false],
] as const) {
  t.test(name, async (t) => {
    const a = await server('Mon, 01 Jan 2026 00:00:00 GMT', { cutAt: 100_000 })
    const b = await server('Mon, 01 Jan 2026 00:00:07 GMT', { etag: etagB })
    t.teardown(() => {
      a.close()
      b.close()
    })
    const balancer = createBalancer({
      listeners: [
        {
          listen: '127.0.0.1:0',
          protocol: 'http1',
          balance: 'first',
          backends: [a, b].map((s) => `127.0.0.1:${(s.address() as net.AddressInfo).port}`),
        },
      ],
      log: { level: 'silent' },
    })
    await balancer.listen()
    t.teardown(() => balancer.close(0))
    const { data } = await fetchThrough(balancer.address().port)
    const expectedHead = Buffer.from(head('Mon, 01 Jan 2026 00:00:00 GMT'))
    t.ok(data.subarray(0, expectedHead.length).equals(expectedHead), 'the first head, once')
    const c = balancer.counters()
    if (resumes) {
      t.equal(data.length, expectedHead.length + BODY.length, 'head and whole body, nothing twice')
      const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')
      t.equal(sha(data.subarray(expectedHead.length)), sha(BODY), 'the body, byte for byte')
      t.equal(c.verifiedResumes, 1)
      t.equal(c.unrecoverable, 0)
    } else {
      t.ok(data.length < expectedHead.length + BODY.length, 'the client did not get a whole response')
      t.ok(
        BODY.subarray(0, data.length - expectedHead.length).equals(data.subarray(expectedHead.length)),
        'only correct bytes'
      )
      t.equal(c.resumeMismatches, 1)
      t.equal(c.unrecoverable, 1)
    }
  })
}

// ---------------------------------------------------------------------------------------------
// Chunked bodies resume on the decoded body; Range/If-Range fetches only the rest; a head that
// spans reads is held back until whole.

const DATE_A = 'Mon, 01 Jan 2026 00:00:00 GMT'
const DATE_B = 'Mon, 01 Jan 2026 00:00:07 GMT'

/** `BODY` chunked in pieces of `size` bytes, with an optional trailer section. */
function chunked(size: number, trailer = ''): Buffer {
  const parts: Buffer[] = []
  for (let i = 0; i < BODY.length; i += size) {
    const piece = BODY.subarray(i, i + size)
    parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n'))
  }
  parts.push(Buffer.from(`0\r\n${trailer}\r\n`))
  return Buffer.concat(parts)
}

function chunkedHead(date: string): string {
  return `HTTP/1.1 200 OK\r\nDate: ${date}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n`
}

/** Strict chunked decoding of what the client got after the head; throws on any framing fault. */
function dechunk(raw: Buffer): { body: Buffer; trailer: string } {
  const parts: Buffer[] = []
  let i = 0
  for (let n = 0; n < 100_000; n++) {
    const lf = raw.indexOf('\r\n', i)
    if (lf < 0) throw new Error(`no chunk-size line at ${i}`)
    const line = raw.toString('latin1', i, lf)
    if (!/^[0-9a-f]+$/i.test(line)) throw new Error(`bad chunk-size line ${JSON.stringify(line)} at ${i}`)
    const size = parseInt(line, 16)
    i = lf + 2
    if (size === 0) {
      const end = raw.indexOf('\r\n\r\n', i - 2)
      return { body: Buffer.concat(parts), trailer: raw.toString('latin1', i, end + 2) }
    }
    parts.push(raw.subarray(i, i + size))
    if (raw.toString('latin1', i + size, i + size + 2) !== '\r\n')
      throw new Error(`no CRLF after data at ${i + size}`)
    i += size + 2
  }
  throw new Error('too many chunks')
}

interface Behaviour {
  /** What to send for a request (its head as text); `cut` resets the connection after it. */
  (request: string): { data: Buffer; cut: boolean; slowSplit?: number }
}

/** A server that answers the first request on each connection as `behave` says. */
async function scripted(
  behave: Behaviour
): Promise<{ server: net.Server; requests: string[]; sent: number[] }> {
  const requests: string[] = []
  const sent: number[] = []
  const server = net.createServer((s) => {
    s.on('error', () => {})
    let got = ''
    const onData = (d: Buffer): void => {
      got += d.toString('latin1')
      if (!got.includes('\r\n\r\n')) return
      s.off('data', onData)
      requests.push(got)
      const { data, cut, slowSplit } = behave(got)
      sent.push(data.length)
      const finish = (rest: Buffer): void => {
        if (cut) s.write(rest, () => setImmediate(() => s.resetAndDestroy()))
        else s.end(rest)
      }
      if (slowSplit === undefined) return finish(data)
      // A slow server: the head in two writes, some time apart.
      s.write(data.subarray(0, slowSplit))
      setTimeout(() => finish(data.subarray(slowSplit)), 30)
    }
    s.on('data', onData)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { server, requests, sent }
}

async function through(
  t: Test,
  backends: net.Server[],
  request = 'GET /file HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
): Promise<{ data: Buffer; counters: ReturnType<ReturnType<typeof createBalancer>['counters']> }> {
  t.teardown(() => {
    for (const b of backends) b.close()
  })
  const balancer = createBalancer({
    listeners: [
      {
        listen: '127.0.0.1:0',
        protocol: 'http1',
        balance: 'first',
        backends: backends.map((s) => `127.0.0.1:${(s.address() as net.AddressInfo).port}`),
      },
    ],
    log: { level: 'silent' },
  })
  await balancer.listen()
  t.teardown(() => balancer.close(0))
  const data = await new Promise<Buffer>((resolve) => {
    const c = net.connect(balancer.address().port, '127.0.0.1')
    const chunks: Buffer[] = []
    const timer = setTimeout(() => c.destroy(), 5000)
    c.on('data', (d: Buffer) => chunks.push(d))
    c.on('error', () => {})
    c.on('close', () => {
      clearTimeout(timer)
      resolve(Buffer.concat(chunks))
    })
    c.write(request)
  })
  return { data, counters: balancer.counters() }
}

const RAW_A = chunked(1000, 'X-Checksum: abc\r\n')
const RAW_B = chunked(777, 'X-Checksum: abc\r\n')
/** Raw offset in RAW_A where the data of chunk `k` starts. */
const dataStart = (k: number): number => k * (1000 + 3 + 2 + 2) + 3 + 2

for (const [name, cutAt] of [
  ['in the middle of chunk data', dataStart(40) + 321],
  ['at a chunk boundary', dataStart(40) - 5],
  ['after the data, before its CRLF', dataStart(40) + 1000],
  ['between the CR and the LF after the data', dataStart(40) + 1001],
] as const) {
  t.test(`chunked, cut ${name}: resumed on the decoded body, re-chunked`, async (t) => {
    const a = await scripted(() => ({
      data: Buffer.concat([Buffer.from(chunkedHead(DATE_A)), RAW_A.subarray(0, cutAt)]),
      cut: true,
    }))
    const b = await scripted(() => ({
      data: Buffer.concat([Buffer.from(chunkedHead(DATE_B)), RAW_B]),
      cut: false,
    }))
    const { data, counters } = await through(t, [a.server, b.server])
    const headA = Buffer.from(chunkedHead(DATE_A))
    t.ok(data.subarray(0, headA.length).equals(headA), "the first server's head, once")
    t.ok(
      data.subarray(headA.length, headA.length + cutAt).equals(RAW_A.subarray(0, cutAt)),
      'what A sent, unchanged'
    )
    const decoded = dechunk(data.subarray(headA.length))
    t.ok(decoded.body.equals(BODY), 'the whole body, decoded, byte for byte')
    t.equal(decoded.trailer, 'X-Checksum: abc\r\n', "the replacement's trailer section")
    t.equal(counters.verifiedResumes, 1)
    t.equal(counters.unrecoverable, 0)
  })
}

t.test(
  'chunked, cut inside a chunk-size line: not resumable, the client gets only correct bytes',
  async (t) => {
    const cutAt = dataStart(40) - 3 // "3e8\r\n": two digits in
    const a = await scripted(() => ({
      data: Buffer.concat([Buffer.from(chunkedHead(DATE_A)), RAW_A.subarray(0, cutAt)]),
      cut: true,
    }))
    const b = await scripted(() => ({
      data: Buffer.concat([Buffer.from(chunkedHead(DATE_B)), RAW_B]),
      cut: false,
    }))
    const { data, counters } = await through(t, [a.server, b.server])
    const expected = Buffer.concat([Buffer.from(chunkedHead(DATE_A)), RAW_A.subarray(0, cutAt)])
    t.ok(data.equals(expected), 'exactly what A sent, then the close')
    t.equal(counters.unrecoverable, 1)
    t.equal(b.requests.length, 0, 'nothing was re-sent')
  }
)

t.test('chunked, replacement with a different body: client closed, nothing wrong forwarded', async (t) => {
  const cutAt = dataStart(40) + 321
  const other = Buffer.from(RAW_B)
  other[dataStart(3) + 1] ^= 0xff // a data byte early in B's body differs (RAW_B chunk 3 is data)
  const a = await scripted(() => ({
    data: Buffer.concat([Buffer.from(chunkedHead(DATE_A)), RAW_A.subarray(0, cutAt)]),
    cut: true,
  }))
  const b = await scripted(() => ({
    data: Buffer.concat([Buffer.from(chunkedHead(DATE_B)), other]),
    cut: false,
  }))
  const { data, counters } = await through(t, [a.server, b.server])
  const headA = Buffer.from(chunkedHead(DATE_A))
  t.equal(data.length, headA.length + cutAt, 'nothing after what A sent')
  t.equal(counters.resumeMismatches, 1)
  t.equal(counters.unrecoverable, 1)
})

function rangedHead(date: string, etag: string): string {
  return (
    `HTTP/1.1 200 OK\r\nDate: ${date}\r\nContent-Type: application/octet-stream\r\n` +
    `Content-Length: ${BODY.length}\r\nETag: ${etag}\r\nAccept-Ranges: bytes\r\n\r\n`
  )
}

/** Answers a `Range: bytes=N-` with If-Range matching `etag` with a 206 of the rest; else a 200. */
function rangeServer(etag: string, opts: { honour: boolean; replyEtag?: string }): Behaviour {
  return (request) => {
    const range = /\r\nrange: bytes=(\d+)-\r\n/i.exec(request)
    const ifRange = /\r\nif-range: (.*)\r\n/i.exec(request)
    if (opts.honour && range !== null && ifRange?.[1] === etag) {
      const from = Number(range[1])
      const rest = BODY.subarray(from)
      const head =
        `HTTP/1.1 206 Partial Content\r\nDate: ${DATE_B}\r\nContent-Type: application/octet-stream\r\n` +
        `Content-Length: ${rest.length}\r\nContent-Range: bytes ${from}-${BODY.length - 1}/${BODY.length}\r\n` +
        `ETag: ${opts.replyEtag ?? etag}\r\nAccept-Ranges: bytes\r\n\r\n`
      return { data: Buffer.concat([Buffer.from(head), rest]), cut: false }
    }
    return { data: Buffer.concat([Buffer.from(rangedHead(DATE_B, etag)), BODY]), cut: false }
  }
}

t.test('Range/If-Range: a strong ETag and Accept-Ranges fetch only the rest', async (t) => {
  const cutAt = 100_000
  const a = await scripted(() => ({
    data: Buffer.concat([Buffer.from(rangedHead(DATE_A, '"v1"')), BODY.subarray(0, cutAt)]),
    cut: true,
  }))
  const b = await scripted(rangeServer('"v1"', { honour: true }))
  const { data, counters } = await through(t, [a.server, b.server])
  const headA = Buffer.from(rangedHead(DATE_A, '"v1"'))
  t.equal(data.length, headA.length + BODY.length, 'one head and the whole body')
  t.ok(data.subarray(0, headA.length).equals(headA), "the first server's head")
  t.ok(data.subarray(headA.length).equals(BODY), 'the body, byte for byte')
  t.match(
    b.requests[0],
    /\r\nRange: bytes=100000-\r\nIf-Range: "v1"\r\n\r\n$/,
    'the re-sent GET asks for the rest'
  )
  t.match(
    b.requests[0],
    /^GET \/file HTTP\/1.1\r\nHost: x\r\nConnection: close\r\n/,
    'the rest of the request unchanged'
  )
  t.ok(b.sent[0]! < BODY.length - cutAt + 400, 'the replacement sent only the rest')
  t.equal(counters.verifiedResumes, 1)
  t.equal(counters.unrecoverable, 0)
})

t.test('Range/If-Range ignored by the replacement (a 200): verified as usual', async (t) => {
  const a = await scripted(() => ({
    data: Buffer.concat([Buffer.from(rangedHead(DATE_A, '"v1"')), BODY.subarray(0, 100_000)]),
    cut: true,
  }))
  const b = await scripted(rangeServer('"v1"', { honour: false }))
  const { data, counters } = await through(t, [a.server, b.server])
  const headA = Buffer.from(rangedHead(DATE_A, '"v1"'))
  t.ok(data.subarray(headA.length).equals(BODY), 'the body, byte for byte')
  t.equal(data.length, headA.length + BODY.length)
  t.equal(counters.verifiedResumes, 1)
})

t.test('Range: a 206 of another representation closes the client', async (t) => {
  const a = await scripted(() => ({
    data: Buffer.concat([Buffer.from(rangedHead(DATE_A, '"v1"')), BODY.subarray(0, 100_000)]),
    cut: true,
  }))
  const b = await scripted(rangeServer('"v1"', { honour: true, replyEtag: '"v2"' }))
  const { data, counters } = await through(t, [a.server, b.server])
  t.equal(data.length, Buffer.byteLength(rangedHead(DATE_A, '"v1"')) + 100_000, 'nothing after what A sent')
  t.equal(counters.unrecoverable, 1)
})

t.test('a weak ETag: no Range, the whole response is verified', async (t) => {
  const a = await scripted(() => ({
    data: Buffer.concat([Buffer.from(rangedHead(DATE_A, 'W/"v1"')), BODY.subarray(0, 100_000)]),
    cut: true,
  }))
  const b = await scripted(rangeServer('W/"v1"', { honour: true }))
  const { data, counters } = await through(t, [a.server, b.server])
  t.notMatch(b.requests[0], /range/i, 'no Range asked for')
  t.ok(data.subarray(Buffer.byteLength(rangedHead(DATE_A, 'W/"v1"'))).equals(BODY), 'the body, byte for byte')
  t.equal(counters.verifiedResumes, 1)
})

t.test('a head cut part-way never reaches the client: the replacement answers whole', async (t) => {
  const headA = Buffer.from(head(DATE_A))
  const a = await scripted(() => ({ data: headA.subarray(0, 40), cut: true }))
  const b = await scripted(() => ({ data: Buffer.concat([Buffer.from(head(DATE_B)), BODY]), cut: false }))
  const { data, counters } = await through(t, [a.server, b.server])
  t.ok(data.equals(Buffer.concat([Buffer.from(head(DATE_B)), BODY])), "only the replacement's response")
  t.equal(counters.failovers, 1)
  t.equal(counters.verifiedResumes, 0, 'nothing to resume')
})

t.test('a head that spans reads, then a cut body: resumed with a different Date', async (t) => {
  const headA = Buffer.from(head(DATE_A))
  const a = await scripted(() => ({
    data: Buffer.concat([headA, BODY.subarray(0, 100_000)]),
    cut: true,
    slowSplit: 30,
  }))
  const b = await scripted(() => ({ data: Buffer.concat([Buffer.from(head(DATE_B)), BODY]), cut: false }))
  const { data, counters } = await through(t, [a.server, b.server])
  t.ok(data.subarray(0, headA.length).equals(headA), "the first server's head")
  t.ok(data.subarray(headA.length).equals(BODY), 'the body, byte for byte')
  t.equal(counters.verifiedResumes, 1)
  t.equal(counters.unrecoverable, 0)
})
