import t from 'tap'
import { validateConfig } from '../../lib/config/validate.js'
import { compileRoutes } from '../../lib/tls/routes.js'
import { TlsRouteStage, type HelloContext } from '../../lib/tls/stage.js'
import { nodeHello } from './helpers/capture.js'

t.test('routes: first match in order, exact and wildcard names, ALPN, default', async (t) => {
  const route = compileRoutes(
    [
      { serverName: ['api.example.com'], alpn: ['h2'], group: 'api-h2' },
      { serverName: ['api.example.com'], group: 'api' },
      { serverName: ['*.example.com'], group: 'wild' },
      { alpn: ['postgresql'], group: 'pg' },
    ],
    'fallback'
  )
  t.equal(route('api.example.com', ['h2', 'http/1.1']), 'api-h2', 'name and ALPN')
  t.equal(route('api.example.com', ['http/1.1']), 'api', 'name, other ALPN: the next route')
  t.equal(route('a.example.com', []), 'wild')
  t.equal(route('a.b.example.com', []), 'wild', 'a wildcard covers any depth')
  t.equal(route('example.com', []), 'fallback', 'but not the bare suffix')
  t.equal(route('badexample.com', []), 'fallback', 'nor a name that only ends in the same letters')
  t.equal(route(undefined, ['postgresql']), 'pg', 'ALPN alone, no server name')
  t.equal(route(undefined, []), 'fallback', 'nothing: the default')
  const upper = compileRoutes([{ serverName: ['API.Example.COM.'], group: 'x' }], 'd')
  t.equal(upper('api.example.com', []), 'x', 'configured names are compared in lower case without a trailing dot')
})

/** A context as the accept pipeline gives it, fed from a list of chunks (then `end`, or `timeout`). */
function fakeContext(chunks: Buffer[], after: 'end' | 'timeout' | 'full' = 'end'): HelloContext & { reads: number } {
  const head: Buffer[] = []
  const ctx = {
    reads: 0,
    serverName: undefined as string | undefined,
    alpn: undefined as string[] | undefined,
    group: undefined as string | undefined,
    more(): Promise<'data' | 'end' | 'timeout' | 'full'> {
      ctx.reads++
      const next = chunks.shift()
      if (next === undefined) return Promise.resolve(after)
      head.push(next)
      return Promise.resolve('data')
    },
    peek: () => Buffer.concat(head),
  }
  return ctx
}

function stage(tls: Record<string, unknown>): TlsRouteStage {
  const c = validateConfig({
    listeners: [
      {
        listen: '127.0.0.1:0',
        backends: [
          { host: '127.0.0.1', port: 1 },
          { host: '127.0.0.1', port: 2, group: 'api' },
        ],
        tls,
      },
    ],
  })
  return new TlsRouteStage(c.listeners[0]!.tls!)
}

t.test('stage: a real hello, in pieces, routes and annotates', async (t) => {
  const hello = await nodeHello({ servername: 'api.example.com', ALPNProtocols: ['h2'] })
  const s = stage({ routes: [{ serverName: 'api.example.com', group: 'api' }] })
  const pieces = [hello.subarray(0, 1), hello.subarray(1, 7), hello.subarray(7, 100), hello.subarray(100)]
  const ctx = fakeContext(pieces)
  t.equal(await s.run(ctx), undefined, 'passed')
  t.equal(ctx.group, 'api')
  t.equal(ctx.serverName, 'api.example.com')
  t.same(ctx.alpn, ['h2'])
  t.equal(ctx.reads, 4, 'read until the hello was whole, no further')
  const other = fakeContext([await nodeHello({ servername: 'www.example.com' })])
  t.equal(await s.run(other), undefined)
  t.equal(other.group, 'default', 'no route matched: defaultGroup')
})

t.test('stage: refusals', async (t) => {
  const hello = await nodeHello({ servername: 'api.example.com' })
  const s = stage({})
  t.equal(await s.run(fakeContext([hello.subarray(0, 50)], 'timeout')), 'tls-hello-timeout', 'half a hello, then the deadline')
  t.equal(await s.run(fakeContext([], 'timeout')), 'tls-hello-timeout', 'nothing at all')
  t.equal(await s.run(fakeContext([hello.subarray(0, 50)], 'end')), 'tls-no-hello', 'the client left mid-hello')
  t.equal(await s.run(fakeContext([Buffer.from('GET / HTTP/1.1\r\n')])), 'tls-not-tls')
  const bad = Buffer.from(hello)
  bad[5] = 2 // a ServerHello
  t.equal(await s.run(fakeContext([bad])), 'tls-malformed')
  const small = stage({ maxHelloBytes: 512 })
  const big = await nodeHello({ servername: 'api.example.com', ALPNProtocols: Array.from({ length: 40 }, (_, i) => `proto-${i}`) })
  t.ok(big.length > 512, `a ${big.length}-byte hello`)
  t.equal(await small.run(fakeContext([big])), 'tls-too-large')
  const lenient = stage({ nonTls: 'default', defaultGroup: 'api' })
  const plain = fakeContext([Buffer.from('GET / HTTP/1.1\r\n')])
  t.equal(await lenient.run(plain), undefined, 'nonTls: default passes plain text on')
  t.equal(plain.group, 'api')
})

t.test('config: groups, routes and their checks', async (t) => {
  const ok = validateConfig({
    listeners: [
      {
        listen: ':443',
        backends: ['127.0.0.1:1', { host: '127.0.0.1', port: 2, group: 'api' }],
        tls: { routes: [{ serverName: ['*.Example.com'], alpn: 'h2', group: 'api' }], helloTimeout: '2s', maxHelloBytes: '8KiB' },
      },
    ],
  }).listeners[0]!.tls!
  t.same(ok.routes[0], { serverName: ['*.example.com'], alpn: ['h2'], group: 'api' })
  t.equal(ok.helloTimeout, 2000)
  t.equal(ok.maxHelloBytes, 8192)
  t.equal(ok.nonTls, 'refuse')
  t.equal(ok.defaultGroup, 'default')
  const fails = (listener: Record<string, unknown>, re: RegExp, what: string): void => {
    t.throws(() => validateConfig({ listeners: [{ listen: ':443', ...listener }] }), re, what)
  }
  fails({ backends: [{ host: 'a', port: 1, group: 'x' }] }, /backends\[0\]\.group: backend groups need tls routing/, 'group without tls')
  fails({ backends: ['a:1'], tls: { routes: [{ serverName: 'a.example', group: 'nope' }] } }, /tls\.routes\[0\]\.group: no backend is in group "nope"/, 'a route to an empty group')
  fails({ backends: [{ host: 'a', port: 1, group: 'x' }], tls: {} }, /tls\.defaultGroup: no backend is in group "default"/, 'an empty default group')
  fails({ backends: ['a:1'], tls: { routes: [{ group: 'default' }] } }, /needs serverName, alpn or both/, 'a route that matches nothing in particular')
  fails({ backends: ['a:1'], tls: { routes: [{ serverName: 'a..b', group: 'default' }] } }, /serverName\[0\]: expected a server name/, 'a bad name')
  fails({ backends: ['a:1'], tls: { routes: [{ serverName: 'a.*.b', group: 'default' }] } }, /expected a server name/, 'a wildcard not at the start')
  fails({ backends: ['a:1'], tls: { maxHelloBytes: 100 } }, /maxHelloBytes: expected at least 512/, 'a tiny bound')
  fails({ backends: ['a:1'], tls: { nonTls: 'pass' } }, /nonTls/, 'nonTls')
  fails({ backends: ['a:1'], tls: { helloTimout: 1 } }, /did you mean "helloTimeout"/, 'a misspelt option gets a hint')
})
