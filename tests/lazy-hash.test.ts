import { createHash, randomBytes } from 'node:crypto'
import t from 'tap'
import { KEEP_BYTES, LazyHash } from '../lib/replay/lazy-hash.js'

const sha1 = (...parts: Buffer[]): string => createHash('sha1').update(Buffer.concat(parts)).digest('hex')

t.test('the digest is the SHA-1 of every byte, below and past the bytes kept unhashed', async (t) => {
  for (const sizes of [
    [],
    [1],
    [100, 200],
    [KEEP_BYTES],
    [KEEP_BYTES, 1],
    [40_000, 40_000, 40_000],
    [300_000],
  ]) {
    const parts = sizes.map((n) => randomBytes(n))
    const h = new LazyHash()
    for (const p of parts) h.update(p)
    t.equal(
      h.bytes,
      sizes.reduce((a, b) => a + b, 0),
      `count for ${sizes}`
    )
    t.equal(h.digest().toString('hex'), sha1(...parts), `digest for ${sizes}`)
  }
})

t.test('the hash runs on after a digest, and reset starts again', async (t) => {
  const a = randomBytes(1000)
  const b = randomBytes(100_000)
  const h = new LazyHash()
  h.update(a)
  t.equal(h.digest().toString('hex'), sha1(a))
  h.update(b)
  t.equal(h.digest().toString('hex'), sha1(a, b), 'a then b')
  h.reset()
  t.equal(h.bytes, 0)
  h.update(b)
  t.equal(h.digest().toString('hex'), sha1(b), 'only b after the reset')
})
