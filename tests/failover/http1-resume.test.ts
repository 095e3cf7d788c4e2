/**
 * http1: a response body cut part-way is resumed from another backend when the replacement is the
 * same representation (status, length, ETag…): its own head, whose Date differs, stands in for the
 * one the client already has, the body bytes the client has are checked, and only the rest is sent.
 */
import { createHash, randomBytes } from 'node:crypto'
import net from 'node:net'
import t from 'tap'
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
