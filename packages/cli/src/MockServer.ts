/**
 * An embedded mock API for `pile demo` and the tests: a real HTTP server on 127.0.0.1 that enforces its own
 * request and token rate limits (answering 429 with `Retry-After` when they are exceeded), adds latency
 * jitter, and fails a share of requests with 500.
 *
 * Routes:
 *
 * - `POST /v1/chat/completions`: a chat-completion look-alike. It charges the token estimate of
 *   `Input.estimateTokens` on arrival, answers with a `usage` whose `total_tokens` is the prompt plus a
 *   random completion (at most `max_tokens`), and corrects its token window to that usage.
 * - `GET /__stats`: the server's counters as JSON.
 * - Any other path, any method: echoes `{ method, path, query, body }`, shaped by query parameters:
 *   `status=404` answers that status; `delay=250` waits that many milliseconds; `fail=2` answers 500 to the
 *   first 2 requests for that exact URL; `throttle=2` answers 429 to the first 2 (with
 *   `retry-after-ms: retryAfterMs`, default 200; `retryAfterMs=none` sends no wait at all; `reset=300ms`
 *   sends `x-ratelimit-remaining-requests: 0` and `x-ratelimit-reset-requests: 300ms` instead);
 *   `size=1000000` answers a body of that many bytes, in 64 KiB chunks (`chunked=1`: without
 *   `content-length`).
 *
 * @since 0.1.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { ServeError } from "effect/http/HttpServerError"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Http from "node:http"
import * as Input from "./Input.ts"

/**
 * A limit of the mock API: at most `limit` units in any sliding window of length `window`.
 *
 * **When to use**
 *
 * In `Options.requests` and `Options.tokens`.
 *
 * **Details**
 *
 * Only admitted requests count; a request answered 429 does not.
 *
 * **Gotchas**
 *
 * Real APIs often enforce a per-minute limit over shorter windows (1,200 RPM as 20 per second): give the
 * window the server really uses.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import type { MockServer } from "@pile/cli"
 *
 * const twentyPerSecond: MockServer.Limit = { limit: 20, window: "1 second" }
 * assert.equal(twentyPerSecond.limit, 20)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Limit {
  readonly limit: number
  readonly window: Duration.Input
}

/**
 * Options of `make`; all optional.
 *
 * **When to use**
 *
 * To shape the mock API for a demo or a test.
 *
 * **Details**
 *
 * - `host` (default `"127.0.0.1"`) and `port` (default 0: a free port).
 * - `requests`, `tokens`: the limits enforced (none by default).
 * - `latency`: each chat completion takes a uniform random time in `[min, max]` ms (default 0 to 0).
 * - `errorRate`: the share of chat completions answered 500 (default 0).
 * - `seed`: makes latencies, errors and completions reproducible (default 1).
 * - `retryAfter`: whether a 429 for an exceeded limit says how long to wait (default `true`); `false`
 *   answers a bare 429, as nginx `limit_req` does.
 *
 * **Gotchas**
 *
 * Latency and errors apply to the chat route only; the echo route is shaped by its query parameters.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import type { MockServer } from "@pile/cli"
 *
 * const options: MockServer.Options = {
 *   requests: { limit: 20, window: "1 second" },
 *   tokens: { limit: 30_000, window: "10 seconds" },
 *   latency: { min: 20, max: 200 },
 *   errorRate: 0.03
 * }
 * assert.equal(options.errorRate, 0.03)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Options {
  readonly host?: string | undefined
  readonly port?: number | undefined
  readonly requests?: Limit | undefined
  readonly tokens?: Limit | undefined
  readonly latency?: { readonly min: number; readonly max: number } | undefined
  readonly errorRate?: number | undefined
  readonly seed?: number | undefined
  readonly retryAfter?: boolean | undefined
}

/**
 * The mock API's counters.
 *
 * **When to use**
 *
 * To check a client against the server's own view: `pile demo` prints them next to its summary.
 *
 * **Details**
 *
 * - `requests`: every request received (except `/__stats`).
 * - `rateLimited`: answered 429 because a limit was exceeded (or `throttle`).
 * - `serverErrors`: answered 500 (the error rate, `fail`) or a 5xx `status`.
 * - `tokens`: tokens charged, after the corrections to actual usage.
 * - `arrivals`: the arrival times (ms since the epoch) of the admitted requests, in order.
 *
 * **Gotchas**
 *
 * `arrivals` grows with every request: the mock is for demos and tests, not for long runs.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import type { MockServer } from "@pile/cli"
 *
 * const admitted = (stats: MockServer.Stats) => stats.requests - stats.rateLimited
 * assert.equal(admitted({ requests: 10, rateLimited: 3, serverErrors: 0, tokens: 0, arrivals: [] }), 7)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Stats {
  readonly requests: number
  readonly rateLimited: number
  readonly serverErrors: number
  readonly tokens: number
  readonly arrivals: ReadonlyArray<number>
}

/**
 * A running mock API.
 *
 * **When to use**
 *
 * Point `pile run` at `url`; read `stats` afterwards.
 *
 * **Details**
 *
 * `url` has no trailing slash, e.g. `http://127.0.0.1:40123`.
 *
 * **Gotchas**
 *
 * It lives as long as the scope given to `make`.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import { Effect } from "effect"
 * import type { MockServer } from "@pile/cli"
 *
 * const chatUrl = (server: MockServer.MockServer) => `${server.url}/v1/chat/completions`
 * const server: MockServer.MockServer = { url: "http://127.0.0.1:8080", stats: Effect.die("not started") }
 * assert.equal(chatUrl(server), "http://127.0.0.1:8080/v1/chat/completions")
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface MockServer {
  readonly url: string
  readonly stats: Effect.Effect<Stats>
}

interface Entry {
  readonly at: number
  amount: number
}

/** A sliding log: at most `limit` units in any window of `window` ms. */
class Window {
  private entries: Array<Entry> = []
  private used = 0
  readonly limit: number
  readonly window: number
  constructor(limit: Limit) {
    this.limit = limit.limit
    this.window = Duration.toMillis(Duration.fromInputUnsafe(limit.window))
  }
  private purge(now: number): void {
    let drop = 0
    while (drop < this.entries.length && this.entries[drop]!.at + this.window <= now) {
      this.used -= this.entries[drop]!.amount
      drop++
    }
    if (drop > 0) this.entries = this.entries.slice(drop)
  }
  /** Milliseconds until `amount` fits (0 when it fits now). */
  wait(amount: number, now: number): number {
    this.purge(now)
    if (this.used + amount <= this.limit) return 0
    let freed = 0
    for (const entry of this.entries) {
      freed += entry.amount
      if (this.used - freed + amount <= this.limit) return entry.at + this.window - now
    }
    return this.window
  }
  charge(amount: number, now: number): Entry {
    const entry = { at: now, amount }
    this.entries.push(entry)
    this.used += amount
    return entry
  }
  /** Corrects a charge still in the window to `amount`. */
  settle(entry: Entry, amount: number): void {
    if (!this.entries.includes(entry)) return
    this.used += amount - entry.amount
    entry.amount = amount
  }
}

/** mulberry32: a small seeded generator, so a demo run is reproducible. */
const random = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const words = ["the", "executor", "keeps", "every", "limit", "and", "retries", "what", "failed", "in", "order"]

/**
 * Starts the mock API in the current scope; closing the scope stops it.
 *
 * **When to use**
 *
 * `pile demo` runs against it; tests start it in-process and run `pile` child processes against it.
 *
 * **Details**
 *
 * Every admitted request is charged to `requests` (1) and, when it has a chat-like body, to `tokens` (its
 * `Input.estimateTokens`). A request that does not fit is answered 429 with `retry-after-ms` and
 * `retry-after` (whole seconds, rounded up) saying when it would have fitted; it is not charged.
 *
 * **Gotchas**
 *
 * The server's windows start at its first request: a client that bursts its whole budget at once is within
 * the server's limit only if it uses the same window length.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import { Effect } from "effect"
 * import { MockServer } from "@pile/cli"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const server = yield* MockServer.make({ requests: { limit: 1, window: "1 minute" } })
 *   const first = yield* Effect.promise(() => fetch(`${server.url}/hello?status=201`))
 *   const second = yield* Effect.promise(() => fetch(`${server.url}/hello`))
 *   return [first.status, second.status, second.headers.has("retry-after")]
 * }))
 * assert.deepEqual(await Effect.runPromise(program), [201, 429, true])
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const make = (
  options?: Options | undefined
): Effect.Effect<MockServer, ServeError, Scope.Scope> =>
  Effect.gen(function*() {
    const host = options?.host ?? "127.0.0.1"
    const requestWindow = options?.requests === undefined ? undefined : new Window(options.requests)
    const tokenWindow = options?.tokens === undefined ? undefined : new Window(options.tokens)
    const next = random(options?.seed ?? 1)
    const latency = options?.latency ?? { min: 0, max: 0 }
    const errorRate = options?.errorRate ?? 0
    const byUrl = new Map<string, number>()
    const counters = { requests: 0, rateLimited: 0, serverErrors: 0, tokens: 0 }
    const arrivals: Array<number> = []

    const tooMany = (waitMs: number | undefined, reason: string, headers?: Record<string, string>) => {
      counters.rateLimited++
      const ms = waitMs === undefined ? undefined : Math.max(1, Math.ceil(waitMs))
      return HttpServerResponse.jsonUnsafe(
        {
          error: {
            type: "rate_limit_exceeded",
            message: `mock: ${reason} limit exceeded${ms === undefined ? "" : `, retry in ${ms} ms`}`
          }
        },
        {
          status: 429,
          headers: headers ??
            (ms === undefined ? {} : { "retry-after-ms": String(ms), "retry-after": String(Math.ceil(ms / 1000)) })
        }
      )
    }
    const limitWait = (waitMs: number) => options?.retryAfter === false ? undefined : waitMs

    const app = Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const url = new URL(request.url, "http://mock")
      if (url.pathname === "/__stats") {
        return HttpServerResponse.jsonUnsafe({ ...counters, arrivals: arrivals.length })
      }
      counters.requests++
      const now = yield* Clock.currentTimeMillis
      const text = yield* Effect.orElseSucceed(request.text, () => "")
      let body: unknown = text
      try {
        body = text === "" ? undefined : JSON.parse(text)
      } catch {
        // not JSON: echoed as text
      }
      const isChat = url.pathname === "/v1/chat/completions"
      const estimate = Input.estimateTokens(body) ?? 0
      // Admission: both limits must fit, or the request is refused and not charged.
      const requestWait = requestWindow?.wait(1, now) ?? 0
      if (requestWait > 0) return tooMany(limitWait(requestWait), "request")
      const tokenWait = estimate > 0 ? tokenWindow?.wait(estimate, now) ?? 0 : 0
      if (tokenWait > 0) return tooMany(limitWait(tokenWait), "token")
      const seen = (byUrl.get(request.url) ?? 0) + 1
      byUrl.set(request.url, seen)
      const throttle = Number(url.searchParams.get("throttle") ?? 0)
      if (seen <= throttle) {
        const reset = url.searchParams.get("reset")
        if (reset !== null) {
          return tooMany(undefined, "throttle", {
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": reset
          })
        }
        const retryAfterMs = url.searchParams.get("retryAfterMs") ?? "200"
        return tooMany(retryAfterMs === "none" ? undefined : Number(retryAfterMs), "throttle")
      }
      requestWindow?.charge(1, now)
      const charged = estimate > 0 ? tokenWindow?.charge(estimate, now) : undefined
      counters.tokens += estimate
      arrivals.push(now)

      if (!isChat) {
        const delay = Number(url.searchParams.get("delay") ?? 0)
        if (delay > 0) yield* Effect.sleep(Duration.millis(delay))
        const fail = Number(url.searchParams.get("fail") ?? 0)
        const status = seen <= fail ? 500 : Number(url.searchParams.get("status") ?? 200)
        if (status >= 500) counters.serverErrors++
        const size = Number(url.searchParams.get("size") ?? 0)
        if (size > 0) {
          const chunk = new Uint8Array(64 * 1024).fill(120) // "x"
          const chunks = Math.ceil(size / chunk.length)
          const body = Stream.range(1, chunks).pipe(
            Stream.map((i) => i < chunks ? chunk : chunk.subarray(0, size - (chunks - 1) * chunk.length))
          )
          return HttpServerResponse.stream(body, {
            status,
            contentType: "text/plain",
            ...(url.searchParams.get("chunked") === "1" ? {} : { contentLength: size })
          })
        }
        return HttpServerResponse.jsonUnsafe(
          { method: request.method, path: url.pathname, query: Object.fromEntries(url.searchParams), body },
          { status }
        )
      }

      const wait = latency.min + next() * Math.max(0, latency.max - latency.min)
      if (wait > 0) yield* Effect.sleep(Duration.millis(wait))
      if (next() < errorRate) {
        counters.serverErrors++
        return HttpServerResponse.jsonUnsafe({ error: { type: "server_error", message: "mock: internal error" } }, {
          status: 500
        })
      }
      const fields = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>
      const maxTokens = typeof fields["max_tokens"] === "number" ? fields["max_tokens"] : 16
      const prompt = Input.estimateTokens({ ...fields, max_tokens: 0, max_completion_tokens: 0 }) ?? 0
      const completion = Math.max(1, Math.round(maxTokens * (0.3 + 0.7 * next())))
      const total = prompt + completion
      if (charged !== undefined) tokenWindow?.settle(charged, total)
      counters.tokens += total - estimate
      const content = Array.from({ length: Math.min(completion, 200) }, () => words[Math.floor(next() * words.length)])
        .join(" ")
      return HttpServerResponse.jsonUnsafe({
        id: `chatcmpl-mock-${counters.requests}`,
        object: "chat.completion",
        created: Math.floor(now / 1000),
        model: typeof fields["model"] === "string" ? fields["model"] : "mock",
        choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
        usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: total }
      })
    })

    const node = Http.createServer({ keepAliveTimeout: 5_000 })
    const server = yield* NodeHttpServer.make(() => node, { host, port: options?.port ?? 0 })
    yield* server.serve(app)
    // Registered last, so it runs first on close: drop open keep-alive connections instead of waiting for them.
    yield* Effect.addFinalizer(() => Effect.sync(() => node.closeAllConnections()))
    const address = node.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    return {
      url: `http://${host}:${port}`,
      stats: Effect.sync((): Stats => ({ ...counters, arrivals: arrivals.slice() }))
    }
  })
