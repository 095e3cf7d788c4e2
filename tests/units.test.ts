import t from 'tap'
import { parseDuration, parseSize, splitHostPort } from '../lib/units.js'

t.test('parseDuration: valid inputs', async (t) => {
  const cases: [string, number][] = [
    ['0', 0],
    ['250', 250],
    ['500ms', 500],
    ['0ms', 0],
    ['2s', 2000],
    ['1.5s', 1500],
    ['10m', 600_000],
    ['1.5m', 90_000],
    ['1h', 3_600_000],
    ['0.5h', 1_800_000],
    ['2 s', 2000],
    ['  30s  ', 30_000],
    ['1.25s', 1250],
  ]
  for (const [text, ms] of cases) t.equal(parseDuration(text), ms, JSON.stringify(text))
})

t.test('parseDuration: invalid inputs', async (t) => {
  for (const text of [
    '',
    '   ',
    's',
    'ms',
    '-1',
    '-1s',
    '+1s',
    '.5s',
    '1.s',
    '1e3',
    '5 sec',
    '1d',
    '1x',
    '2S',
    '1 h 30m',
    '1h30m',
    'abc',
    '0x10',
  ]) {
    t.equal(parseDuration(text), undefined, JSON.stringify(text))
  }
})

t.test('parseSize: valid inputs', async (t) => {
  const cases: [string, number][] = [
    ['0', 0],
    ['65536', 65536],
    ['10b', 10],
    ['10B', 10],
    ['1k', 1024],
    ['1K', 1024],
    ['64KiB', 65536],
    ['64kib', 65536],
    ['16kb', 16_000],
    ['16KB', 16_000],
    ['1m', 1024 ** 2],
    ['1MiB', 1024 ** 2],
    ['10MB', 10_000_000],
    ['10 MB', 10_000_000],
    ['1g', 1024 ** 3],
    ['2GiB', 2 * 1024 ** 3],
    ['1gb', 1_000_000_000],
    ['1.5k', 1536],
    ['0.5MiB', 512 * 1024],
    [' 4KiB ', 4096],
  ]
  for (const [text, bytes] of cases) t.equal(parseSize(text), bytes, JSON.stringify(text))
})

t.test('parseSize: invalid inputs', async (t) => {
  for (const text of [
    '',
    ' ',
    'KiB',
    '-1',
    '-1KiB',
    '.5k',
    '1tb',
    '1TiB',
    '64 zb',
    '1e6',
    '1 KiB 2',
    '1kibi',
    'ten',
  ]) {
    t.equal(parseSize(text), undefined, JSON.stringify(text))
  }
})

t.test('splitHostPort: host:port, [v6]:port and :port', async (t) => {
  t.same(splitHostPort('127.0.0.1:7000'), { host: '127.0.0.1', port: '7000' })
  t.same(splitHostPort('localhost:80'), { host: 'localhost', port: '80' })
  t.same(splitHostPort('example.com:443'), { host: 'example.com', port: '443' })
  t.same(splitHostPort(':7000'), { host: '', port: '7000' })
  t.same(splitHostPort('[::1]:7000'), { host: '::1', port: '7000' })
  t.same(splitHostPort('[fe80::1%eth0]:22'), { host: 'fe80::1%eth0', port: '22' })
  // The port stays text: the schema judges it, so bad ports get a good message there.
  t.same(splitHostPort('host:80a'), { host: 'host', port: '80a' })
  t.same(splitHostPort('host:'), { host: 'host', port: '' })
  t.same(splitHostPort('[::1]:'), { host: '::1', port: '' })
  t.same(splitHostPort('[::1]:x'), { host: '::1', port: 'x' })
  // More than one colon without brackets is an IPv6 address, not host:port.
  t.equal(splitHostPort('a:b:8080'), undefined)
})

t.test('splitHostPort: no port separator gives undefined', async (t) => {
  t.equal(splitHostPort(''), undefined)
  t.equal(splitHostPort('localhost'), undefined)
  t.equal(splitHostPort('127.0.0.1'), undefined)
  t.equal(splitHostPort('7000'), undefined)
})

t.test('splitHostPort: bare IPv6 and unclosed brackets', async (t) => {
  // Known gap in lib/units.ts: a bare IPv6 address is split at its last colon, so "::1" reads as
  // host ":" port "1" and "[::1]" as host "[:" port "1]", instead of being refused.
  t.equal(splitHostPort('::1'), undefined)
  t.equal(splitHostPort('[::1]'), undefined)
})
