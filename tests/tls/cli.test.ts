/** The TLS routing flags: --tls-route, --hello-timeout and --backend …,group=NAME, through the schema (what --check runs). */
import t from 'tap'
import { parseCommand } from '../../lib/cli/args.js'
import { validateConfig } from '../../lib/config/validate.js'
import { ConfigError } from '../../lib/errors.js'

function resolve(argv: string[]) {
  const cmd = parseCommand(argv)
  if (cmd.kind !== 'run') throw new Error('not a run')
  return validateConfig(cmd.config).listeners[0]!
}

function errorOf(argv: string[]): string {
  try {
    resolve(argv)
  } catch (err) {
    if (err instanceof ConfigError) return err.message
    throw err
  }
  return 'no error'
}

t.test('flags build groups and routes', async (t) => {
  const l = resolve([
    '--listen', ':443',
    '--backend', '127.0.0.1:8443',
    '--backend', '127.0.0.1:9443,group=api,weight=2',
    '--tls-route', 'api.example.com=api',
    '--tls-route', '*.API.example.com=api',
    '--tls-route', 'alpn:h2=api',
    '--hello-timeout', '2s',
  ])
  t.same(l.backends.map((b) => b.group), [undefined, 'api'])
  t.equal(l.backends[1]!.weight, 2)
  t.same(l.tls!.routes, [
    { serverName: ['api.example.com'], group: 'api' },
    { serverName: ['*.api.example.com'], group: 'api' },
    { alpn: ['h2'], group: 'api' },
  ])
  t.equal(l.tls!.helloTimeout, 2000)
  t.equal(l.tls!.defaultGroup, 'default')
  const plain = resolve(['--listen', ':443', '--backend', '127.0.0.1:8443', '--hello-timeout', '1s'])
  t.same(plain.tls!.routes, [], '--hello-timeout alone: passthrough with no routes, every hello to default')
})

t.test('bad flags say which and why', async (t) => {
  t.match(errorOf(['--listen', ':443', '--backend', 'a:1', '--tls-route', 'api.example.com']), /--tls-route api.example.com: expected NAME=GROUP/)
  t.match(errorOf(['--listen', ':443', '--backend', 'a:1', '--tls-route', 'api.example.com=api']), /tls\.routes\[0\]\.group: no backend is in group "api"/)
  t.match(errorOf(['--listen', ':443', '--backend', 'a:1,group=api']), /backends\[0\]\.group: backend groups need tls routing/)
  t.match(errorOf(['--listen', ':443', '--backend', 'a:1', '--tls-route', 'a b=default']), /serverName\[0\]: expected a server name/)
  t.match(errorOf(['--listen', ':443', '--backend', 'a:1', '--hello-timeout', 'soon']), /tls\.helloTimeout: expected a duration/)
  t.throws(() => parseCommand(['--config', 'x.yaml', '--tls-route', 'a=b'], () => ({})), /--tls-route: cannot be combined with --config/)
})
