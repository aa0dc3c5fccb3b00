/**
 * One HTTP attempt of `pile run`, with its typed errors and the error policy that retries them.
 *
 * An attempt sends the request, reads the whole body and classifies the answer: 2xx succeeds; 429 is
 * `RateLimited` (its `retryAfter` makes the executor wait at least that long and pause the key); 5xx is
 * `ServerError`; any other status is `HttpStatus` (recorded, not retried). A timeout (`Timeout`) and a failed
 * connection (`Transport`) are retried too.
 */
import * as ErrorPolicy from "@pile/executor/ErrorPolicy"
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as HttpClient from "effect/http/HttpClient"
import type * as HttpClientError from "effect/http/HttpClientError"
import * as HttpClientRequest from "effect/http/HttpClientRequest"
import * as Schedule from "effect/Schedule"
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

/** 429: retried after at least `retryAfter` ms; the executor pauses the request's key for that long. */
export class RateLimited extends Data.TaggedError("RateLimited")<Answered & { readonly retryAfter: number }> {
  override get message(): string {
    return `HTTP 429 Too Many Requests (retry after ${Math.round(this.retryAfter)} ms)`
  }
}

/** 5xx: retried; a `Retry-After` header is honoured (and pauses the key) when present. */
export class ServerError extends Data.TaggedError("ServerError")<Answered & { readonly retryAfter?: number }> {
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

export type RequestError = RateLimited | ServerError | HttpStatus | Timeout | Transport | InvalidInput

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

/** A 429 without a retry-after header still pauses the key for this long. */
export const defaultRetryAfter = 1000

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

/** Observes every answer of every attempt (for the 429 and 5xx counters). */
export type OnStatus = (status: number) => void

/**
 * One attempt: sends `request`, reads the whole response within `timeoutMs`, and classifies it.
 * Follows up to 10 redirects.
 */
export const send = (
  request: Input.Request,
  timeoutMs: number,
  onStatus: OnStatus
): Effect.Effect<Response, RequestError, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const client = HttpClient.followRedirects(yield* HttpClient.HttpClient, 10)
    const started = yield* Clock.currentTimeMillis
    const response = yield* client.execute(toHttpRequest(request))
    const text = yield* response.text
    const now = yield* Clock.currentTimeMillis
    const status = response.status
    onStatus(status)
    const answered = { status, latencyMs: now - started, body: parseBody(text) }
    if (status >= 200 && status < 300) return answered
    if (status === 429) {
      return yield* new RateLimited({
        ...answered,
        retryAfter: retryAfterOf(response.headers, now) ?? defaultRetryAfter
      })
    }
    if (status >= 500) {
      const retryAfter = retryAfterOf(response.headers, now)
      return yield* new ServerError(retryAfter === undefined ? answered : { ...answered, retryAfter })
    }
    return yield* new HttpStatus(answered)
  }).pipe(
    Effect.catchTag("HttpClientError", (error) => Effect.fail(new Transport({ detail: describeTransport(error) }))),
    Effect.timeoutOrElse({
      duration: Duration.millis(timeoutMs),
      orElse: () => Effect.fail(new Timeout({ timeoutMs }))
    }),
    // No trace headers are added to the user's requests, and no spans are kept per request.
    Effect.provideService(HttpClient.TracerDisabledWhen, () => true)
  )
