/**
 * `pile` on a cluster: the HTTP request as a `@pile/cluster` task, the runner that `pile worker --cluster`
 * runs, and the Pile that `pile run --cluster` reads.
 *
 * A line travels as a small wire form (what a worker needs to send it); the producer keeps the parsed line
 * itself until its outcome comes back, so records are written exactly as on one machine. Limits, retries
 * and timeouts are the workers': each runs the requests through its own executor.
 */
import { Cluster, Task } from "@pile/cluster"
import * as Executor from "@pile/executor/Executor"
import type * as Outcome from "@pile/executor/Outcome"
import * as RateLimit from "@pile/executor/RateLimit"
import * as Cause from "effect/Cause"
import type { Sharding } from "effect/cluster"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as HttpClient from "effect/http/HttpClient"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Input from "../Input.ts"
import { hidePassword } from "./credentials.ts"
import { anchorAtDeparture } from "./departure.ts"
import * as Http from "./http.ts"

const WireLine = Schema.Union([
  Schema.Struct({
    _tag: Schema.Literal("Request"),
    key: Schema.String,
    url: Schema.String,
    method: Schema.String,
    headers: Schema.Record(Schema.String, Schema.String),
    /** The body as JSON text (a string body is a JSON string). */
    body: Schema.optional(Schema.String),
    tokens: Schema.optional(Schema.Number)
  }),
  Schema.Struct({ _tag: Schema.Literal("Invalid"), key: Schema.String, message: Schema.String })
])
type WireLine = typeof WireLine.Type

const WireResponse = Schema.Struct({ status: Schema.Number, latencyMs: Schema.Number, body: Schema.Json })

const WireError = Schema.Struct({
  _tag: Schema.Literals([
    "RateLimited",
    "ServerError",
    "HttpStatus",
    "BodyTooLarge",
    "Timeout",
    "Transport",
    "InvalidInput"
  ]),
  status: Schema.optional(Schema.Number),
  latencyMs: Schema.optional(Schema.Number),
  body: Schema.optional(Schema.Json),
  retryAfter: Schema.optional(Schema.Number),
  asked: Schema.optional(Schema.Number),
  sentAt: Schema.optional(Schema.Number),
  maxBytes: Schema.optional(Schema.Number),
  announced: Schema.optional(Schema.Number),
  timeoutMs: Schema.optional(Schema.Number),
  detail: Schema.optional(Schema.String)
})
type WireError = typeof WireError.Type

/** One request of `pile run`, as a cluster task: its id is the line's id. */
export const HttpRequest = Task.make("pile/http", {
  input: WireLine,
  success: WireResponse,
  error: WireError,
  id: (line) => line.key
})

const toWire = (line: Input.Line): WireLine =>
  line._tag === "Invalid"
    ? { _tag: "Invalid", key: line.key, message: line.message }
    : {
      _tag: "Request",
      key: line.key,
      url: line.url,
      method: line.method,
      headers: line.headers,
      ...(line.body === undefined ? {} : { body: JSON.stringify(line.body) }),
      ...(line.tokens === undefined ? {} : { tokens: line.tokens })
    }

const fromWire = (line: Extract<WireLine, { _tag: "Request" }>): Input.Request => ({
  _tag: "Request",
  line: 0,
  id: line.key,
  key: line.key,
  url: line.url,
  method: line.method as Input.Request["method"],
  headers: line.headers,
  body: line.body === undefined ? undefined : JSON.parse(line.body),
  tokens: line.tokens,
  estimated: false,
  metadata: undefined
})

const errorToWire = (error: Http.RequestError): WireError => {
  switch (error._tag) {
    case "RateLimited":
      return {
        _tag: error._tag,
        status: error.status,
        latencyMs: error.latencyMs,
        body: error.body as Schema.Json,
        sentAt: error.sentAt,
        ...(error.retryAfter === undefined ? {} : { retryAfter: error.retryAfter }),
        ...(error.asked === undefined ? {} : { asked: error.asked })
      }
    case "ServerError":
      return {
        _tag: error._tag,
        status: error.status,
        latencyMs: error.latencyMs,
        body: error.body as Schema.Json,
        ...(error.retryAfter === undefined ? {} : { retryAfter: error.retryAfter }),
        ...(error.asked === undefined ? {} : { asked: error.asked })
      }
    case "BodyTooLarge":
      return {
        _tag: error._tag,
        status: error.status,
        latencyMs: error.latencyMs,
        maxBytes: error.maxBytes,
        ...(error.announced === undefined ? {} : { announced: error.announced })
      }
    case "HttpStatus":
      return { _tag: error._tag, status: error.status, latencyMs: error.latencyMs, body: error.body as Schema.Json }
    case "Timeout":
      return { _tag: error._tag, timeoutMs: error.timeoutMs }
    case "Transport":
    case "InvalidInput":
      return { _tag: error._tag, detail: error.detail }
  }
}

/** The wait a 429 or 5xx carried, as the error classes hold it (absent when the server asked for none). */
const waitOf = (error: WireError) => ({
  ...(error.retryAfter === undefined ? {} : { retryAfter: error.retryAfter }),
  ...(error.asked === undefined ? {} : { asked: error.asked })
})

const errorFromWire = (error: WireError): Http.RequestError => {
  const answered = { status: error.status ?? 0, latencyMs: error.latencyMs ?? 0, body: error.body }
  switch (error._tag) {
    case "RateLimited":
      return new Http.RateLimited({ ...answered, ...waitOf(error), sentAt: error.sentAt ?? 0 })
    case "ServerError":
      return new Http.ServerError({ ...answered, ...waitOf(error) })
    case "BodyTooLarge":
      return new Http.BodyTooLarge({
        status: answered.status,
        latencyMs: answered.latencyMs,
        maxBytes: error.maxBytes ?? 0,
        announced: error.announced
      })
    case "HttpStatus":
      return new Http.HttpStatus(answered)
    case "Timeout":
      return new Http.Timeout({ timeoutMs: error.timeoutMs ?? 0 })
    case "Transport":
      return new Http.Transport({ detail: error.detail ?? "" })
    case "InvalidInput":
      return new Http.InvalidInput({ detail: error.detail ?? "" })
  }
}

/** What a worker is given. */
export interface WorkerOptions {
  readonly url: string
  readonly host: string
  readonly port: number
  readonly concurrency: number
  readonly limits: ReadonlyArray<RateLimit.Limit>
  readonly store: RateLimit.RateLimitStore | undefined
  readonly retries: number
  readonly timeoutMs: number
  /** Bytes of a response body kept at most (`--max-body`); a larger body is `BodyTooLarge`. */
  readonly maxBody: number
  /** The longest wait a 429 or 5xx may impose (`--max-retry-after`). */
  readonly maxRetryAfterMs: number
  readonly graceMs: number
  /** When set, every request carries the header `x-pile-worker: <name>`. */
  readonly name: string | undefined
}

/**
 * A runner of `HttpRequest`: its executor (this worker's concurrency, limits, retries) and its place in the
 * cluster. Closing its scope hands its shards over, after the requests in flight finish (within the grace).
 */
export const worker = (options: WorkerOptions): Layer.Layer<never, unknown, HttpClient.HttpClient> => {
  const tokenLimits = options.limits.some((limit) => (limit.budget ?? "requests") === "tokens")
  const attempt = (line: WireLine): Effect.Effect<Http.Response, WireError, HttpClient.HttpClient> => {
    if (line._tag === "Invalid") return Effect.fail({ _tag: "InvalidInput", detail: line.message })
    const request = fromWire(line)
    const sent = options.name === undefined
      ? request
      : { ...request, headers: { ...request.headers, "x-pile-worker": options.name } }
    return Http.send(sent, {
      timeoutMs: options.timeoutMs,
      maxBody: options.maxBody,
      maxRetryAfter: options.maxRetryAfterMs,
      onAnswer: () => {}
    }).pipe(Effect.mapError(errorToWire))
  }
  // The executor's store, kept so that admissions can be anchored at the requests' departures.
  const store = options.store ?? RateLimit.memoryStore()
  return Task.toLayer(HttpRequest, (line) => attempt(line) as Effect.Effect<any, WireError, HttpClient.HttpClient>, {
    key: (line) => line._tag === "Request" ? new URL(line.url).host : undefined,
    cost: (line) =>
      line._tag === "Invalid"
        ? { requests: 0 }
        : tokenLimits
        ? { tokens: Math.max(1, Math.ceil(line.tokens ?? 1)) }
        : undefined
  }).pipe(
    Layer.provide(Executor.layer({
      name: "pile-worker",
      concurrency: options.concurrency,
      capacity: options.concurrency,
      limits: options.limits,
      store,
      policy: Http.policy(options.retries) as never,
      shutdown: { mode: "drain", grace: options.graceMs },
      finalizerTimeout: "5 seconds"
    })),
    Layer.provide(Cluster.layerPostgres({
      url: options.url,
      runner: { host: options.host, port: options.port },
      sharding: { entityTerminationTimeout: options.graceMs }
    })),
    // Built first and closed last: anchoring lasts while requests may leave.
    Layer.provide(Layer.effectDiscard(anchorAtDeparture(store)))
  )
}

const messageOf = (error: unknown): string => {
  const cause = (error as { readonly cause?: unknown }).cause
  if (cause instanceof Error && cause.message !== "") return cause.message
  return error instanceof Error ? error.message : String(error)
}

/**
 * Joins the cluster at `url` as a client (it owns no shards), for the scope. An unreachable Postgres fails
 * with a message for the user.
 */
export const connect = (url: string): Effect.Effect<Context.Context<Sharding.Sharding>, string, Scope.Scope> =>
  Layer.build(Cluster.layerPostgres({ url })).pipe(
    // Effect Cluster's storage layers turn a connection failure into a defect: both are the same setup error.
    Effect.catchCause((cause) =>
      Cause.hasInterruptsOnly(cause)
        ? Effect.failCause(cause as Cause.Cause<never>)
        : Effect.fail(`cannot use the cluster at ${hidePassword(url)}: ${messageOf(Cause.squash(cause))}`)
    )
  )

/**
 * The Pile of `pile run --cluster`: every line sent to the cluster as a message, each outcome with the parsed
 * line as its input once its reply is stored. Ids already answered come back at once.
 */
export const pile = <EX, RX>(
  cluster: Context.Context<Sharding.Sharding>,
  lines: Stream.Stream<Input.Line, EX, RX>
): Stream.Stream<Outcome.Outcome<Http.Response, Http.RequestError, Input.Line>, EX, RX> => {
  // The lines in flight, by id: at most Task.run's inFlight of them.
  const pending = new Map<string, Input.Line>()
  const wire = lines.pipe(Stream.map((line) => {
    pending.set(line.key, line)
    return toWire(line)
  }))
  return Task.run(HttpRequest, wire).pipe(
    Stream.map((outcome): Outcome.Outcome<Http.Response, Http.RequestError, Input.Line> => {
      const line = pending.get(outcome.input.key)!
      pending.delete(outcome.input.key)
      return {
        id: outcome.id,
        input: line,
        kind: outcome.kind,
        attempts: outcome.attempts,
        exit: Exit.mapError(outcome.exit, errorFromWire) as Exit.Exit<Http.Response, Http.RequestError>
      }
    }),
    Stream.provideContext(cluster)
  )
}
