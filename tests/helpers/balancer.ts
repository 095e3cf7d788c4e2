/**
 * Starting Baton for a test, and a scope that tears everything down in a safe order whatever the
 * test did: clients first, then backends (which ends any session a misbehaving backend kept
 * alive), then the balancers.
 */
import type { Socket } from 'node:net'
import { createBalancer, type Balancer, type BalancerOptions } from '../../lib/balancer.js'
import type { ConfigInput } from '../../lib/config/schema.js'
import { Client } from './clients.js'
import { withPlane } from './plane.js'
import { HOST, type Endpoint } from './servers.js'
import { settlesWithin } from './wait.js'

export interface RunningBalancer {
  balancer: Balancer
  host: string
  /** Port of the first listener. */
  port: number
}

type ListenerInput = ConfigInput['listeners'][number]
type TopInput = Omit<ConfigInput, 'listeners'>

/** A backend entry: an endpoint (named after it), optionally with more backend options. */
export type BackendSpec =
  Endpoint | { endpoint: Endpoint; maxConnections?: number; weight?: number; name?: string; backup?: boolean }

export function backendsOf(specs: readonly BackendSpec[]): unknown[] {
  return specs.map((spec) => {
    const { endpoint, ...rest } = 'endpoint' in spec ? spec : { endpoint: spec }
    const address =
      endpoint.path !== undefined ? { path: endpoint.path } : { host: endpoint.host, port: endpoint.port }
    return { name: endpoint.name, ...address, ...rest }
  })
}

/** One listener on 127.0.0.1:0 in front of `backends`; logging off unless `top.log` says otherwise. */
export function oneListener(
  backends: readonly BackendSpec[],
  listener: Omit<ListenerInput, 'listen' | 'backends'> = {},
  top: TopInput = {}
): ConfigInput {
  return {
    log: { level: 'silent' },
    ...top,
    listeners: [{ listen: { host: HOST, port: 0 }, backends: backendsOf(backends), ...listener }],
  }
}

/**
 * Build and bind a balancer; `port` is the first listener's. Opaque listeners run on the test
 * plane (BATON_TEST_PLANE, see plane.ts) unless the config chooses.
 */
export async function startBalancer(
  config: ConfigInput,
  options?: BalancerOptions
): Promise<RunningBalancer> {
  const balancer = createBalancer(withPlane({ log: { level: 'silent' }, ...config }), options)
  await balancer.listen()
  const { host, port } = balancer.address(0)
  return { balancer, host, port }
}

/** What a scope needs of a tap test. */
export interface Teardown {
  teardown(fn: () => unknown): void
}

export interface Scope {
  /** Keep `server` (or what the promise gives) for teardown. */
  server<T extends Endpoint>(server: T | Promise<T>): Promise<T>
  balancer(config: ConfigInput, options?: BalancerOptions): Promise<RunningBalancer>
  /** A client kept for teardown, not yet connected (see `Client.connected()`). */
  client(port: number, options?: { allowHalfOpen?: boolean }): Client
  /** A client kept for teardown, connected. */
  connect(port: number, options?: { allowHalfOpen?: boolean }): Promise<Client>
}

/**
 * Everything made through the scope is closed when the test ends. A balancer whose `close(0)` has
 * not finished after 3 s has its sessions' sockets destroyed, so a lib bug fails the test instead
 * of leaving the file hanging.
 */
export function scope(t: Teardown): Scope {
  const clients: Client[] = []
  const servers: Endpoint[] = []
  const balancers: Balancer[] = []
  t.teardown(async () => {
    for (const c of clients) c.destroy()
    await Promise.all(servers.map((s) => s.close()))
    await Promise.all(balancers.map((b) => closeHard(b)))
  })
  return {
    async server(server) {
      const s = await server
      servers.push(s)
      return s
    },
    async balancer(config, options) {
      const running = await startBalancer(config, options)
      balancers.push(running.balancer)
      return running
    },
    client(port, options) {
      const c = new Client(port, options)
      clients.push(c)
      return c
    },
    connect(port, options) {
      const c = new Client(port, options)
      clients.push(c)
      return c.connected()
    },
  }
}

/** `close(0)`, and if that does not finish, destroy what is left so the process can exit. */
export async function closeHard(balancer: Balancer, waitMs = 3000): Promise<boolean> {
  const closing = balancer.close(0)
  if (await settlesWithin(closing, waitMs)) return true
  for (const e of [...balancer.table.values()]) {
    e.client.destroy()
    ;(e.server as Socket | undefined)?.destroy()
  }
  for (const l of balancer.frontends) l.stopAccepting()
  await settlesWithin(closing, waitMs)
  return false
}
