/**
 * One HTTP attempt of `pile run`, with its typed errors and the error policy that retries them.
 *
 * An attempt sends the request, reads the body (at most `maxBody` bytes, streamed) and classifies the answer:
 * 2xx succeeds; 429 is `RateLimited` (when the server said how long to wait, its `retryAfter` makes the
 * executor wait at least that long and pause the key); 5xx is `ServerError`; any other status is `HttpStatus`
 * (recorded, not retried); a body over the cap is `BodyTooLarge` (recorded, not retried). A timeout
 * (`Timeout`) and a failed connection (`Transport`) are retried too.
 */
import * as ErrorPolicy from "@pile/executor/ErrorPolicy"
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as HttpClient from "effect/http/HttpClient"
import type * as HttpClientError from "effect/http/HttpClientError"
import * as HttpClientRequest from "effect/http/HttpClientRequest"
import type * as HttpClientResponse from "effect/http/HttpClientResponse"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as NodeHttp from "node:http"
import type * as Input from "../Input.ts"
import type * as Output from "../Output.ts"

/** What a successful attempt returns. */
export interface Response {
  readonly status: number
  readonly latencyMs: number
  readonly body: unknown
}

interface Answered {
  readonly status: number
  readonly latencyMs: number
  readonly body: unknown
}

/**
 * 429: retried. With a wait the server asked for (`Retry-After`, `retry-after-ms`, or an exhausted
 * `x-ratelimit-remaining-*` with its `x-ratelimit-reset-*`), `retryAfter` is that wait, capped at
 * `--max-retry-after` (`asked` keeps what the server said): the executor pauses the request's key for that
 * long. Without one, `retryAfter` is absent: nothing pauses, and the key's adaptive rate slows down instead.
 */
export class RateLimited extends Data.TaggedError("RateLimited")<
  Answered & { readonly retryAfter?: number; readonly asked?: number; readonly sentAt: number }
> {
  override get message(): string {
    if (this.retryAfter === undefined) return "HTTP 429 Too Many Requests (the server said no wait)"
    const capped = this.asked !== undefined && this.asked > this.retryAfter
      ? `, capped by --max-retry-after: the server asked for ${Math.round(this.asked)} ms`
      : ""
    return `HTTP 429 Too Many Requests (retry after ${Math.round(this.retryAfter)} ms${capped})`
  }
}

/** 5xx: retried; a `Retry-After` header is honoured (capped, and it pauses the key) when present. */
export class ServerError extends Data.TaggedError("ServerError")<
  Answered & { readonly retryAfter?: number; readonly asked?: number }
> {
  override get message(): string {
    return `HTTP ${this.status}`
  }
}

/** Any other status that is not 2xx: recorded, never retried. */
export class HttpStatus extends Data.TaggedError("HttpStatus")<Answered> {
  override get message(): string {
    return `HTTP ${this.status}`
  }
}

/** The response body is larger than `--max-body`: its reading stopped there; recorded, never retried. */
export class BodyTooLarge extends Data.TaggedError("BodyTooLarge")<{
  readonly status: number
  readonly latencyMs: number
  readonly maxBytes: number
  /** The `content-length` the server announced, when it did. */
  readonly announced: number | undefined
}> {
  override get message(): string {
    return this.announced === undefined
      ? `the response body is larger than --max-body (${this.maxBytes} bytes): not kept`
      : `the response body (${this.announced} bytes) is larger than --max-body (${this.maxBytes} bytes): not kept`
  }
}

/** No complete response within the timeout: retried. */
export class Timeout extends Data.TaggedError("Timeout")<{ readonly timeoutMs: number }> {
  override get message(): string {
    return `no complete response within ${this.timeoutMs} ms`
  }
}

/** The request could not be sent or its response not read: retried. */
export class Transport extends Data.TaggedError("Transport")<{ readonly detail: string }> {
  override get message(): string {
    return this.detail
  }
}

/** An input line that is not a valid request: recorded without being sent. */
export class InvalidInput extends Data.TaggedError("InvalidInput")<{ readonly detail: string }> {
  override get message(): string {
    return this.detail
  }
}

export type RequestError =
  | RateLimited
  | ServerError
  | HttpStatus
  | BodyTooLarge
  | Timeout
  | Transport
  | InvalidInput

export const errorType = (error: RequestError): Output.ErrorType => error._tag

const isRetryable = (error: RequestError): boolean =>
  error._tag === "RateLimited" || error._tag === "ServerError" || error._tag === "Timeout" ||
  error._tag === "Transport"

/**
 * Retries retryable errors `retries` times on one schedule shared by every kind of error (so `--retries`
 * bounds the attempts of a request, whatever failed): exponential backoff from 500 ms, jittered, each delay
 * capped at 30 seconds, and never shorter than the error's `retryAfter`.
 */
export const policy = (retries: number): ErrorPolicy.ErrorPolicy<RequestError> =>
  retries <= 0 ? ErrorPolicy.record : ErrorPolicy.retry<RequestError>(
    Schedule.exponential("500 millis").pipe(
      Schedule.jittered,
      Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.seconds(30)))),
      Schedule.upTo({ times: retries })
    ),
    { while: isRetryable }
  )

/** Milliseconds to wait from `retry-after-ms` (OpenAI, Azure), or `retry-after` (seconds, or an HTTP date). */
export const retryAfterOf = (
  headers: Readonly<Record<string, string | undefined>>,
  now: number
): number | undefined => {
  const ms = headers["retry-after-ms"]
  if (ms !== undefined && ms.trim() !== "" && Number.isFinite(Number(ms)) && Number(ms) >= 0) return Number(ms)
  const value = headers["retry-after"]
  if (value === undefined || value.trim() === "") return undefined
  const seconds = Number(value)
  if (Number.isFinite(seconds)) return seconds >= 0 ? seconds * 1000 : undefined
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

const goUnits: Readonly<Record<string, number>> = { h: 3_600_000, m: 60_000, s: 1_000, ms: 1, us: 0.001, "µs": 0.001 }

/**
 * A reset time as LLM APIs write it: a Go duration (`6m0s`, `1.5s`, `20ms`) or a bare number of seconds;
 * milliseconds, or undefined when it is neither.
 */
export const resetMillisOf = (text: string): number | undefined => {
  const trimmed = text.trim()
  if (trimmed === "") return undefined
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed) * 1000
  const parts = /^(?:\d+(?:\.\d+)?(?:h|ms|m|s|us|µs))+$/.test(trimmed)
    ? trimmed.match(/\d+(?:\.\d+)?(?:h|ms|m|s|us|µs)/g)
    : null
  if (parts === null) return undefined
  let total = 0
  for (const part of parts) {
    const [, value, unit] = /^(\d+(?:\.\d+)?)(\D+)$/.exec(part)!
    total += Number(value) * goUnits[unit!]!
  }
  return total
}

/**
 * Milliseconds until an exhausted budget refills, from the rate-limit headers LLM APIs send with every
 * answer: the largest `x-ratelimit-reset-<budget>` among the budgets whose `x-ratelimit-remaining-<budget>`
 * is 0 (OpenAI: `requests`, `tokens`). Undefined when no budget is exhausted, or its reset is unreadable.
 */
export const exhaustedResetOf = (headers: Readonly<Record<string, string | undefined>>): number | undefined => {
  let wait: number | undefined
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith("x-ratelimit-remaining-") || value === undefined || Number(value) !== 0) continue
    const reset = headers[`x-ratelimit-reset-${name.slice("x-ratelimit-remaining-".length)}`]
    const millis = reset === undefined ? undefined : resetMillisOf(reset)
    if (millis !== undefined && (wait === undefined || millis > wait)) wait = millis
  }
  return wait
}

/** The wait a 429 asks for: `Retry-After` (or `retry-after-ms`) first, else an exhausted budget's reset. */
export const askedWaitOf = (headers: Readonly<Record<string, string | undefined>>, now: number): number | undefined =>
  retryAfterOf(headers, now) ?? exhaustedResetOf(headers)

const parseBody = (text: string): unknown => {
  if (text === "") return null
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

const describeTransport = (error: HttpClientError.HttpClientError): string => {
  const cause = (error.reason as { readonly cause?: unknown }).cause
  const inner = cause instanceof Error
    ? ((cause as { readonly cause?: unknown }).cause instanceof Error
      ? `${cause.message}: ${(cause as { readonly cause: Error }).cause.message}`
      : cause.message)
    : undefined
  return inner === undefined || inner === "" ? error.message : `${error.reason._tag}: ${inner}`
}

const toHttpRequest = (request: Input.Request): HttpClientRequest.HttpClientRequest => {
  let contentType: string | undefined
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(request.headers)) {
    if (name.toLowerCase() === "content-type") contentType = value
    else headers[name] = value
  }
  const base = HttpClientRequest.make(request.method)(request.url, { headers })
  if (request.body === undefined) return base
  return typeof request.body === "string"
    ? HttpClientRequest.bodyText(base, request.body, contentType ?? "text/plain; charset=utf-8")
    : HttpClientRequest.bodyText(base, JSON.stringify(request.body), contentType ?? "application/json")
}

/** What an attempt reports of every answer it got (for the counters, the adaptive rate and the progress). */
export interface Answer {
  readonly status: number
  readonly headers: Readonly<Record<string, string | undefined>>
  /** When the request was sent, and when its headers came back (ms, the executor's clock). */
  readonly sentAt: number
  readonly at: number
  /** The wait the server asked for, uncapped, when it asked for one. */
  readonly asked: number | undefined
}

/** How an attempt is sent and read. */
export interface SendOptions {
  readonly timeoutMs: number
  /** Bytes of body kept at most; a larger body is `BodyTooLarge`, and its reading stops there. */
  readonly maxBody: number
  /** The longest a 429 or 5xx may make the key wait, whatever the server asked. */
  readonly maxRetryAfter: number
  readonly onAnswer: (answer: Answer) => void
}

const decoder = new TextDecoder()

/** Reads at most `maxBody` bytes of the body, chunk by chunk; undefined when it is larger. */
const readBody = (
  response: HttpClientResponse.HttpClientResponse,
  maxBody: number
): Effect.Effect<string | undefined, HttpClientError.HttpClientError> => {
  const announced = Number(response.headers["content-length"])
  if (Number.isFinite(announced) && announced > maxBody) return Effect.succeed(undefined)
  const chunks: Array<Uint8Array> = []
  let size = 0
  let over = false
  return response.stream.pipe(
    Stream.takeWhile((chunk) => {
      size += chunk.length
      over = size > maxBody
      if (!over) chunks.push(chunk)
      return !over
    }),
    Stream.runDrain,
    Effect.map(() => {
      if (over) return undefined
      if (chunks.length === 1) return decoder.decode(chunks[0])
      const bytes = new Uint8Array(size)
      let offset = 0
      for (const chunk of chunks) {
        bytes.set(chunk, offset)
        offset += chunk.length
      }
      return decoder.decode(bytes)
    })
  )
}

/**
 * One attempt: sends `request`, reads the response (at most `maxBody` bytes) within `timeoutMs`, and
 * classifies it. Follows up to 10 redirects.
 */
export const send = (
  request: Input.Request,
  options: SendOptions
): Effect.Effect<Response, RequestError, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const client = HttpClient.followRedirects(yield* HttpClient.HttpClient, 10)
    const sentAt = yield* Clock.currentTimeMillis
    const response = yield* client.execute(toHttpRequest(request))
    const status = response.status
    const headersAt = yield* Clock.currentTimeMillis
    const asked = status === 429 || status >= 500 ? askedWaitOf(response.headers, headersAt) : undefined
    options.onAnswer({ status, headers: response.headers, sentAt, at: headersAt, asked })
    const text = yield* readBody(response, options.maxBody)
    const now = yield* Clock.currentTimeMillis
    const latencyMs = now - sentAt
    if (text === undefined) {
      const announced = Number(response.headers["content-length"])
      return yield* new BodyTooLarge({
        status,
        latencyMs,
        maxBytes: options.maxBody,
        announced: Number.isFinite(announced) ? announced : undefined
      })
    }
    const answered = { status, latencyMs, body: parseBody(text) }
    if (status >= 200 && status < 300) return answered
    const wait = asked === undefined ? {} : { retryAfter: Math.min(asked, options.maxRetryAfter), asked }
    if (status === 429) return yield* new RateLimited({ ...answered, ...wait, sentAt })
    if (status >= 500) return yield* new ServerError({ ...answered, ...wait })
    return yield* new HttpStatus(answered)
  }).pipe(
    Effect.catchTag("HttpClientError", (error) => Effect.fail(new Transport({ detail: describeTransport(error) }))),
    Effect.timeoutOrElse({
      duration: Duration.millis(options.timeoutMs),
      orElse: () => Effect.fail(new Timeout({ timeoutMs: options.timeoutMs }))
    }),
    // No trace headers are added to the user's requests, and no spans are kept per request.
    Effect.provideService(HttpClient.TracerDisabledWhen, () => true)
  )

/**
 * Sends one request to a throwaway server on 127.0.0.1 before the run, so that the first real requests do
 * not pay for what every first request pays (loading and compiling the HTTP client's code and its parser):
 * they leave when their admission says, instead of arriving late and then together with the next ones.
 * Bounded by one second; a failure is ignored (the run does not depend on it).
 */
export const warmUp: Effect.Effect<void, never, HttpClient.HttpClient> = Effect.gen(function*() {
  const server = yield* Effect.acquireRelease(
    Effect.callback<NodeHttp.Server>((resume) => {
      const server = NodeHttp.createServer((_, response) => response.end("ok"))
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.sync(() => {
        server.closeAllConnections()
        server.close()
      })
  )
  const address = server.address()
  const port = typeof address === "object" && address !== null ? address.port : 0
  const client = yield* HttpClient.HttpClient
  for (let i = 0; i < 2; i++) yield* Effect.flatMap(client.get(`http://127.0.0.1:${port}/`), (r) => r.text)
}).pipe(
  Effect.scoped,
  Effect.timeout(Duration.seconds(1)),
  Effect.ignore,
  Effect.provideService(HttpClient.TracerDisabledWhen, () => true)
)
