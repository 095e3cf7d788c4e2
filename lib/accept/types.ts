/**
 * Accept stages: what runs between `accept()` and a session's first backend pick (Envoy's listener
 * filters, HAProxy's `tcp-request connection` / `tcp-request content` rules).
 *
 *   accept ──► listener limits ──► [stage 1] ──► [stage 2] ──► … ──► new Session(ctx) ──► pick(ctx)
 *                                     │ refuse(reason): counted per reason, logged ≤ 1/s, client closed
 *
 * The interface, for whoever adds a stage (see lib/accept/index.ts for the registry):
 *
 * - A stage is an object with a `name` and `run(ctx)`. `run` returns `undefined` to pass the client
 *   on, or a reason (a short kebab-case string such as `deny-list`, `proxy-missing`) to refuse it:
 *   the client is closed, `baton_refused_connections_total{listener,reason}` counts it and one
 *   warning per reason per second is logged. `run` may return a promise (a stage that waits for
 *   bytes); a stage that decides at once should return synchronously (no promise, no tick).
 * - Reading the first bytes: `await ctx.more()` reads once more from the client into `ctx.head`
 *   (the bytes read and not consumed, oldest first) and says how that went: `data`, `end` (FIN,
 *   reset or error), `timeout` (the pipeline's deadline, `readTimeout` of the slowest stage, passed)
 *   or `full` (`head` holds the largest `maxBytes` of the stages). A stage that only peeks (a TLS
 *   ClientHello) leaves `head` as it is; one that strips a header (PROXY) calls `ctx.consume(n)`.
 *   Whatever is left in `head` goes to the session before anything read later, so no byte is lost
 *   or read twice, and the framer, replay buffer and splice see the stream as if nothing ran.
 * - Annotating: `clientAddress` / `clientPort` (the real client, e.g. from a PROXY header: the
 *   session's address everywhere: logs, table, source-hash, access rules), `localAddress` /
 *   `localPort` (where the client connected to), `serverName`, `alpn`, `group` (the backend group
 *   to pick from: a key the listener resolves), `tags` (anything else), `proxy` (the PROXY header
 *   received, passed on to backends by `sendProxy`).
 * - `closed(ctx)`, optional: the session (or the refused client) is gone; undo per-client state
 *   (a per-source count). Called once for every context that `run` passed, never for a refused one.
 * - The session keeps its context (`session.accept`), and every pick takes it, the first and every
 *   failover's: source-hash hashes `clientAddress`, a group stays the group.
 *
 * A listener with no stage has no pipeline at all: its accept path is the one it always was.
 */
import type { Socket } from 'node:net'
import type { ProxyHeader } from './proxy/types.js'

/** What a stage returns: `undefined` (go on) or the reason the client is refused. */
export type StageVerdict = string | undefined

/** How a read for more bytes ended. */
export type MoreResult = 'data' | 'end' | 'timeout' | 'full'

export interface AcceptContext {
  readonly socket: Socket
  /** The client's address and port as the session knows them (rewritten by a PROXY header). */
  clientAddress: string
  clientPort: number
  /** Where the client connected to (rewritten by a PROXY header). */
  localAddress: string
  localPort: number
  /** Bytes read from the client and not consumed, oldest first; the session gets them first. */
  head: Buffer[] | undefined
  /** Bytes in `head`. */
  headBytes: number
  /** TLS server name (SNI) from the ClientHello. */
  serverName?: string
  /** TLS ALPN protocols offered, in the client's order. */
  alpn?: string[]
  /** Backend group to pick from (undefined: the listener's backends). */
  group?: string
  /** Anything else a stage wants to say about the client. */
  tags?: Record<string, string>
  /** The PROXY protocol header received from a trusted upstream. */
  proxy?: ProxyHeader
  /** Read from the client once more (see the header comment). */
  more(): Promise<MoreResult>
  /** Drop the first `n` bytes of `head` (a header a stage has parsed). */
  consume(n: number): void
  /** `head` as one buffer (joined once; later calls return the same buffer until `head` changes). */
  peek(): Buffer
}

export interface AcceptStage {
  /** For logs and tests. */
  readonly name: string
  /** Longest wait for bytes this stage asks for (ms); the pipeline's deadline is the largest. */
  readonly readTimeout?: number
  /** Most bytes this stage may need in `head`; reading pauses at the largest. */
  readonly maxBytes?: number
  run(ctx: AcceptContext): StageVerdict | Promise<StageVerdict>
  /** The session of a context this stage passed has closed. */
  closed?(ctx: AcceptContext): void
}
