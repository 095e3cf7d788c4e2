/** The admin access rules as pure functions. */
import t from 'tap'
import { hostOfHeader, isLoopback, sameOrigin, tokenChecker } from '../../lib/admin/access.js'

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
