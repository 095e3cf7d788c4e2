/**
 * The deployment kit: examples/k8s/ and the Dockerfile, checked for what matters where no cluster
 * or container engine runs: the ConfigMap is the config and passes `baton --check`; probes ask real
 * admin paths on the admin port; container ports are the listener's and the admin server's;
 * terminationGracePeriodSeconds outlasts preStop plus shutdownGrace; the Services target named
 * ports that exist; the admin token comes from the Secret; the image runs as non-root, stops with
 * SIGTERM and checks /readyz. Where the `kubernetes-models` package can be imported, each object is
 * also validated against the Kubernetes OpenAPI schemas it ships.
 */
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { parse, parseAllDocuments } from 'yaml'
import { validateConfig } from '../../lib/config/validate.js'
import { CLI, ensureBuilt, ROOT } from '../helpers/cli.js'

const K8S = join(ROOT, 'examples', 'k8s')
type Obj = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any

function docs(file: string): Obj[] {
  return parseAllDocuments(readFileSync(join(K8S, file), 'utf8')).map((d) => d.toJS() as Obj)
}

const [configMap] = docs('configmap.yaml')
const [deployment] = docs('deployment.yaml')
const [secret] = docs('secret.yaml')
const services = docs('service.yaml')
const text = configMap!.data['baton.yaml'] as string
// The admin token comes from BATON_ADMIN_TOKEN (the Secret) at run time; --check needs one too.
const config = validateConfig(withToken(parse(text)))

function withToken(c: Obj): Obj {
  return { ...c, admin: { ...c.admin, token: 'from-the-secret' } }
}
const pod = deployment!.spec.template.spec
const container = pod.containers[0]
const portOf = (name: string): number => container.ports.find((p: Obj) => p.name === name)?.containerPort

t.test('the ConfigMap holds examples/k8s/baton.yaml, which passes baton --check', async (t) => {
  t.same(
    parse(text),
    parse(readFileSync(join(K8S, 'baton.yaml'), 'utf8')),
    'same config as the image default'
  )
  ensureBuilt((c) => t.comment(c))
  // As the Deployment runs it: the token from the Secret, through BATON_ADMIN_TOKEN.
  const r = spawnSync(process.execPath, [CLI, '--check', '--config', join(K8S, 'baton.yaml')], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, BATON_ADMIN_TOKEN: 'from-the-secret' },
  })
  t.equal(r.status, 0, `baton --check exits 0 (${r.stderr.trim()})`)
  t.match(r.stdout, /configuration OK/)
})

t.test('ports, probes and grace period agree with the config', async (t) => {
  t.equal(portOf('web'), config.listeners[0]!.listen.port, 'container port "web" is the listener port')
  t.equal(portOf('admin'), config.admin.listen!.port, 'container port "admin" is the admin port')
  t.same(container.readinessProbe.httpGet, { path: '/readyz', port: 'admin' })
  t.same(container.livenessProbe.httpGet, { path: '/healthz', port: 'admin' })
  const preStop = container.lifecycle.preStop.exec.command as string[]
  t.equal(preStop[0], 'sleep', 'preStop waits for the endpoint removal to spread')
  const sleep = Number(preStop[1])
  t.ok(
    pod.terminationGracePeriodSeconds > sleep + config.shutdownGrace / 1000,
    `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} > preStop ${sleep} s + shutdownGrace ${config.shutdownGrace / 1000} s`
  )
  t.same(container.args, ['--config', '/etc/baton/baton.yaml'])
  const mount = container.volumeMounts.find((m: Obj) => m.mountPath === '/etc/baton')
  const volume = pod.volumes.find((v: Obj) => v.name === mount.name)
  t.equal(volume.configMap.name, configMap!.metadata.name, 'the config volume is the ConfigMap')
  const token = container.env.find((e: Obj) => e.name === 'BATON_ADMIN_TOKEN').valueFrom.secretKeyRef
  t.equal(token.name, secret!.metadata.name, 'the admin token comes from the Secret')
  t.ok(secret!.stringData[token.key].length >= 8, 'a token the admin server accepts (8+ characters)')
  t.equal(pod.securityContext.runAsNonRoot, true)
  for (const s of services) {
    for (const p of s.spec.ports)
      t.ok(portOf(p.targetPort) !== undefined, `Service ${s.metadata.name} targets port "${p.targetPort}"`)
    t.same(
      s.spec.selector,
      deployment!.spec.template.metadata.labels,
      `Service ${s.metadata.name} selects the pods`
    )
  }
})

t.test('Dockerfile: Node 20, multi-stage, non-root, SIGTERM, health check on /readyz', async (t) => {
  const df = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
  const from = [...df.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]!)
  t.ok(from.length >= 2, 'multi-stage')
  t.ok(
    from.every((f) => /^node:20[-.]/.test(f)),
    `Node 20 images: ${from.join(', ')}`
  )
  t.match(df, /^USER node$/m, 'runs as the unprivileged "node" user')
  t.match(df, /^STOPSIGNAL SIGTERM$/m)
  t.match(
    df,
    new RegExp(`^HEALTHCHECK [\\s\\S]*http://127\\.0\\.0\\.1:${config.admin.listen!.port}/readyz`, 'm')
  )
  t.match(df, new RegExp(`^EXPOSE ${portOf('web')} ${portOf('admin')}$`, 'm'))
  t.match(df, /^COPY examples\/k8s\/baton\.yaml \/etc\/baton\/baton\.yaml$/m)
})

t.test('Kubernetes schemas (kubernetes-models, from `npm run setup:extras`)', async (t) => {
  let load: (path: string) => Promise<Obj>
  try {
    await import('kubernetes-models/v1/ConfigMap' as string)
    load = (path) => import(path) as Promise<Obj>
  } catch {
    // CI installs it (.ci/run runs setup:extras): there a missing package is a failure, not a skip.
    if (process.env.CI) t.fail('kubernetes-models is not installed: run npm run setup:extras')
    else t.pass('schema validation', { skip: 'kubernetes-models is not installed (npm run setup:extras)' })
    return
  }
  const modelOf = async (o: Obj) => {
    const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion]
    const mod = await load(`kubernetes-models/${group ? `${group}/` : ''}${version}/${o.kind}`)
    return mod[o.kind]
  }
  for (const o of [configMap!, deployment!, secret!, ...services]) {
    const Model = await modelOf(o)
    t.doesNotThrow(() => new Model(o).validate(), `${o.kind} ${o.metadata.name} is valid`)
  }
  // The check can fail: a probe port of the wrong type and a replica count that is text.
  const broken = structuredClone(deployment!)
  broken.spec.replicas = 'two'
  broken.spec.template.spec.containers[0].readinessProbe.httpGet.port = { name: 'admin' }
  const Model = await modelOf(broken)
  t.throws(() => new Model(broken).validate(), 'a broken Deployment is refused')
})

t.test(
  "examples/systemd: the config passes baton --check and names the socket unit's listener",
  async (t) => {
    const dir = join(ROOT, 'examples', 'systemd')
    ensureBuilt((c) => t.comment(c))
    const r = spawnSync(process.execPath, [CLI, '--check', '--config', join(dir, 'baton.yaml')], {
      encoding: 'utf8',
      timeout: 60_000,
    })
    t.equal(r.status, 0, `baton --check exits 0 (${r.stderr.trim()})`)
    const sd = validateConfig(parse(readFileSync(join(dir, 'baton.yaml'), 'utf8')))
    const socket = readFileSync(join(dir, 'baton.socket'), 'utf8')
    const service = readFileSync(join(dir, 'baton.service'), 'utf8')
    const fdName = /^FileDescriptorName=(\S+)$/m.exec(socket)?.[1]
    t.ok(
      sd.listeners.some((l) => l.name === fdName),
      `a listener is named "${fdName}", the socket's FileDescriptorName`
    )
    const stop = Number(/^TimeoutStopSec=(\d+)s$/m.exec(service)?.[1])
    t.ok(
      stop > sd.shutdownGrace / 1000,
      `TimeoutStopSec ${stop} s > shutdownGrace ${sd.shutdownGrace / 1000} s`
    )
    t.match(service, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m)
    t.match(service, /^Type=notify$/m)
    t.match(service, /^NotifyAccess=all$/m, 'systemd-notify sends from its own pid')
  }
)
