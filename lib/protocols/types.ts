/**
 * The one interface every protocol implements (DESIGN.md: "Framer"; STYLE.md: "a folder each").
 * A protocol module is a plain object in `lib/protocols/<name>/index.ts`; the registry
 * (`./index.ts`) lists them, and its keys feed the config schema, `--protocol` and its help text,
 * and the health check types, as `ALGORITHMS` does for balancing. The session, the replayer and
 * the listener ask the module, never a protocol's name.
 */
import type { z } from 'zod'
import type { FramerFactory } from '../framing/types.js'
import type { CheckFn } from '../health/checks.js'
import type { ResumeFactory } from '../replay/resume.js'

/** What a module reads from its listener's (validated) config. */
export interface ProtocolListener {
  readonly replay: { readonly mode: 'safe' | 'all' | 'none' }
  readonly [key: string]: unknown
}

export interface ProtocolModule {
  /** `--protocol` and `protocol:` value. */
  readonly name: string
  /** One line for `--help` and the README. */
  readonly summary: string
  /**
   * The listener config key that holds this protocol's options, and their schema (each option
   * with its default). Absent for a protocol with no options.
   */
  readonly optionsKey?: string
  readonly options?: z.ZodType
  /**
   * The framer factory for a listener (options validated by the schema; anything else a module
   * checks throws `ConfigError`). Undefined: the session needs no framer and takes the plain
   * splice path (opaque with `replay: none`).
   */
  framer(listener: ProtocolListener): FramerFactory | undefined
  /**
   * How a response cut part-way is resumed on another backend (lib/replay/resume.ts), made once per
   * session with replay on: `byteResume` (lib/replay/byte-resume.ts, the verified skip-and-compare)
   * for any framer that delimits its responses, or the protocol's own (http1: a new head, `Range`).
   * Absent: no response can be resumed (opaque: the close may delimit a response), a failure
   * mid-response closes the client.
   */
  readonly resume?: ResumeFactory
  /** The protocol's own active health check, offered as `healthCheck.type: <name>`. */
  readonly healthCheck?: { readonly name: string; readonly check: CheckFn }
  readonly defaults: {
    /**
     * The client speaks first and sends requests: `requestTimeout` applies, and a new client must
     * send its first byte within `firstByteTimeout` (default 10 s; off where the server may greet).
     */
    readonly requests: boolean
    /** Live sessions when their backend goes down / drains (`migrate` needs clean boundaries). */
    readonly onDown: 'migrate' | 'keep'
    readonly onDrain: 'migrate' | 'finish'
  }
  /** The native splice plane can carry it (it moves bytes and parses none, or follows them: below). */
  readonly native: boolean
  /**
   * The plane follows this protocol's boundaries itself and hands a session to JavaScript whenever
   * it cannot (docs/native-plane.md, "http1 on the plane"): the options its attach takes.
   */
  readonly nativeFraming?:
    | { readonly http1: { readonly maxHeadBytes: number } }
    | { readonly resp: { readonly maxBulkBytes: number } }
}
