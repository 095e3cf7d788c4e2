/** The admin access rules as pure functions. */
import t from 'tap'
import { hostChecker, hostOfHeader, isLoopback, sameOrigin, tokenChecker } from '../../lib/admin/access.js'

t.test('isLoopback', async (t) => {
  for (const h of [
    '127.0.0.1',
    '127.9.9.9',
    '::1',
    '[::1]',
    '0:0:0:0:0:0:0:1',
    'localhost',
    'LOCALHOST',
    '::ffff:127.0.0.1',
  ])
    t.ok(isLoopback(h), h)
  for (const h of [
    '0.0.0.0',
    '::',
    '10.0.0.1',
    '128.0.0.1',
    '::2',
    '::ffff:10.0.0.1',
    'example.com',
    'localhost.example.com',
    '',
  ])
    t.notOk(isLoopback(h), h)
})

t.test('tokenChecker', async (t) => {
  const ok = tokenChecker('abc')
  t.ok(ok('Bearer abc'))
  t.ok(ok('bearer abc'))
  t.notOk(ok('Bearer abcd'))
  t.notOk(ok('Bearer '))
  t.notOk(ok('abc'))
  t.notOk(ok('Basic abc'))
  t.notOk(ok(undefined))
})

t.test('hostOfHeader and sameOrigin', async (t) => {
  t.equal(hostOfHeader('127.0.0.1:9000'), '127.0.0.1')
  t.equal(hostOfHeader('[::1]:9000'), '[::1]')
  t.equal(hostOfHeader('localhost'), 'localhost')
  t.ok(sameOrigin(undefined, '127.0.0.1:9000'))
  t.ok(sameOrigin('http://127.0.0.1:9000', '127.0.0.1:9000'))
  t.notOk(sameOrigin('http://evil.example', '127.0.0.1:9000'))
  t.notOk(sameOrigin('null', '127.0.0.1:9000'))
})

t.test(
  'hostChecker: loopback, the address the request came in on, the listen host, admin.hosts',
  async (t) => {
    const plain = hostChecker([])
    for (const h of [
      '127.0.0.1:9000',
      'localhost',
      'LocalHost.:9000',
      'a.localhost',
      '[::1]:9000',
      '[0:0::1]',
    ])
      t.ok(plain(h, '127.0.0.1'), `loopback: ${h}`)
    for (const h of ['evil.example', 'evil.example:9000', '192.0.2.1', '0.0.0.0:9000', '[::]', '', undefined])
      t.notOk(plain(h, '127.0.0.1'), `refused: ${String(h)}`)
    // Bound to 0.0.0.0 (with a token): the address a client reached it on is its own.
    t.ok(plain('10.1.2.3:9000', '10.1.2.3'), 'the local address of the connection')
    t.ok(plain('10.1.2.3', '::ffff:10.1.2.3'), 'an IPv4-mapped local address')
    t.ok(plain('[2001:db8::1]:9000', '2001:db8::1'), 'an IPv6 local address')
    t.ok(plain('[2001:db8:0:0::1]', '2001:db8::1'), 'in any spelling')
    t.notOk(plain('10.1.2.4', '10.1.2.3'), 'another address')
    const named = hostChecker(['0.0.0.0', 'admin.internal', 'Baton.Example.', '10.9.9.9', '[2001:db8::7]'])
    for (const h of [
      'admin.internal',
      'ADMIN.internal.:9000',
      'baton.example',
      '10.9.9.9:80',
      '[2001:db8::7]:1',
    ])
      t.ok(named(h, '127.0.0.1'), `listed: ${h}`)
    for (const h of ['0.0.0.0', 'x.admin.internal', 'admin.internal.evil.example', 'evil.example'])
      t.notOk(named(h, '127.0.0.1'), `not listed: ${h}`)
  }
)
