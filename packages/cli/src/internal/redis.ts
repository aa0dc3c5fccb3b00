/**
 * The Redis store behind `--redis`, for `pile run` and `pile worker` alike: the URL's check, the store, and
 * the one-line message of a connection problem (a setup error, exit code 2, never a stack trace).
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as References from "effect/References"
import * as Result from "effect/Result"
import { hidePassword } from "./credentials.ts"

/** The first useful line of an error: node-redis wraps the socket's error (or an AggregateError of them). */
export const causeMessage = (error: unknown): string => {
  const cause = (error as { readonly cause?: unknown }).cause
  if (cause instanceof AggregateError && cause.errors.length > 0) return String(cause.errors[0]?.message ?? cause)
  if (cause instanceof Error) return cause.message || cause.name
  return error instanceof Error ? error.message : String(error)
}

export const redisUrl = (url: string): Result.Result<string, string> => {
  const parsed = URL.canParse(url) ? new URL(url) : undefined
  return parsed !== undefined && (parsed.protocol === "redis:" || parsed.protocol === "rediss:")
    ? Result.succeed(url)
    : Result.fail(
      `--redis ${JSON.stringify(hidePassword(url))}: expected a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379`
    )
}

/** A Redis-backed store for the current scope; a connection problem goes to `fail` with its message. */
export const redisStore = <E>(url: string, prefix: string, fail: (message: string) => Effect.Effect<never, E>) =>
  Effect.gen(function*() {
    // Loaded on demand: the Redis client costs startup time to every run that does not use it.
    const [NodeRedis, Redis, RateLimitRedis] = yield* Effect.promise(() =>
      Promise.all([
        import("@effect/platform-node/NodeRedis"),
        import("effect/persistence/Redis"),
        import("@pile/executor/RateLimitRedis")
      ])
    )
    const context = yield* Layer.build(NodeRedis.layer({ url }))
    // Reserved up to 20 ms ahead, each request starts at its admitted time rather than a round trip later.
    const store = yield* RateLimitRedis.make({ prefix, lookahead: "20 millis" }).pipe(Effect.provideContext(context))
    // Fail now rather than with every request: the server must answer.
    yield* Effect.provideContext(Redis.Redis.use((redis) => redis.send("PING")), context)
    return store
  }).pipe(
    // node-redis reports connection errors as log warnings as well: the one-line error below says it.
    Effect.provideService(References.MinimumLogLevel, "None"),
    Effect.catch((error) => fail(`cannot use Redis at ${hidePassword(url)}: ${causeMessage(error)}`)),
    // The client throws on options it cannot use.
    Effect.catchDefect((defect) => fail(`cannot use Redis at ${hidePassword(url)}: ${causeMessage({ cause: defect })}`))
  )
