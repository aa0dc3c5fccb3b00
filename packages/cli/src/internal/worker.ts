/**
 * `pile worker --cluster <postgres-url>`: one runner of a `pile` cluster. It takes its share of the shards,
 * sends the requests of the messages it owns under its own limits, and runs until Ctrl-C or SIGTERM; then it
 * stops taking messages, lets the requests in flight finish (within `--grace`), and hands its shards over.
 */
import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import { hidePassword } from "./credentials.ts"
import { limitsOf, parseDuration } from "./flags.ts"
import { causeMessage, redisStore, redisUrl } from "./redis.ts"

/** Prints the message, then fails with the command line's exit code 2 (a usage or setup error). */
const usageWith = <E>(exit: (code: number) => E) => (message: string) =>
  Effect.andThen(
    Effect.sync(() => process.stderr.write(`pile worker: ${message}\n`)),
    Effect.fail(exit(2))
  )

const postgresUrl = (url: string): Result.Result<string, string> => {
  const parsed = URL.canParse(url) ? new URL(url) : undefined
  return parsed !== undefined && (parsed.protocol === "postgres:" || parsed.protocol === "postgresql:")
    ? Result.succeed(url)
    : Result.fail(
      `--cluster ${JSON.stringify(hidePassword(url))}: expected a postgres:// URL, e.g. postgres://user@host:5432/db`
    )
}

/** The `pile worker` command, failing with `exit(code)` for a non-zero exit code. */
export const make = <E>(exit: (code: number) => E) =>
  Command.make("worker", {
    cluster: Flag.String("cluster").pipe(
      Flag.withMetavar("postgres-url"),
      Flag.withDescription("The cluster's Postgres, e.g. postgres://user@10.0.0.5:5432/pile")
    ),
    host: Flag.String("host").pipe(
      Flag.withDefault("127.0.0.1"),
      Flag.withDescription("The address the other workers reach this one at")
    ),
    port: Flag.Int("port").pipe(
      Flag.withDefault(34431),
      Flag.withDescription("The port this worker listens on for the other workers")
    ),
    concurrency: Flag.Int("concurrency").pipe(
      Flag.withAlias("c"),
      Flag.withDefault(16),
      Flag.withDescription("Requests in flight at most, on this worker")
    ),
    rate: Flag.String("rate").pipe(
      Flag.withMetavar("n/unit"),
      Flag.atLeast(0),
      Flag.withDescription("A request limit, e.g. 100/s (per worker, or shared with --redis)")
    ),
    burst: Flag.Int("burst").pipe(Flag.optional, Flag.withDescription("Space requests evenly, n back to back")),
    rpm: Flag.Int("rpm").pipe(Flag.optional, Flag.withDescription("Requests per minute (same as --rate n/min)")),
    tpm: Flag.Int("tpm").pipe(Flag.optional, Flag.withDescription("Tokens per minute")),
    retries: Flag.Int("retries").pipe(
      Flag.withDefault(5),
      Flag.withDescription("Retries per request for 429, 5xx, timeouts and connection errors")
    ),
    timeout: Flag.String("timeout").pipe(
      Flag.withDefault("60s"),
      Flag.withMetavar("duration"),
      Flag.withDescription("Per attempt, until the whole response is read")
    ),
    grace: Flag.String("grace").pipe(
      Flag.withDefault("30s"),
      Flag.withMetavar("duration"),
      Flag.withDescription("After Ctrl-C, how long requests in flight may take to finish")
    ),
    redis: Flag.String("redis").pipe(
      Flag.optional,
      Flag.withMetavar("url"),
      Flag.withDescription("Share the rate limits with every worker using this Redis")
    ),
    redisPrefix: Flag.String("redis-prefix").pipe(
      Flag.withDefault("pile:rl:"),
      Flag.withDescription("Prefix of the Redis keys")
    ),
    name: Flag.String("name").pipe(
      Flag.optional,
      Flag.withDescription("Send the header x-pile-worker: <name> with every request (to tell workers apart)")
    )
  }, (flags) =>
    Effect.gen(function*() {
      const usage = usageWith(exit)
      const fromResult = <A>(result: Result.Result<A, string>) =>
        Result.isSuccess(result) ? Effect.succeed(result.success) : usage(result.failure)
      const url = yield* fromResult(postgresUrl(flags.cluster))
      const limits = yield* fromResult(limitsOf(flags))
      const timeoutMs = yield* fromResult(parseDuration("--timeout", flags.timeout))
      const graceMs = yield* fromResult(parseDuration("--grace", flags.grace))
      if (flags.concurrency < 1) return yield* usage(`--concurrency must be >= 1, got ${flags.concurrency}`)
      if (flags.retries < 0) return yield* usage(`--retries must be >= 0, got ${flags.retries}`)
      if (!(flags.port >= 1 && flags.port <= 65535)) return yield* usage(`--port must be 1..65535, got ${flags.port}`)
      const store = Option.isSome(flags.redis)
        ? yield* redisStore(
          yield* Effect.fromResult(redisUrl(flags.redis.value)).pipe(Effect.catch(usage)),
          flags.redisPrefix,
          usage
        )
        : undefined
      // @pile/cluster is an optional peer of the CLI: only the cluster needs it (with its Postgres driver).
      const Cluster = yield* Effect.tryPromise({
        try: () => import("./cluster.ts"),
        catch: (cause) => `pile worker needs the package @pile/cluster (npm install --global @pile/cluster): ${cause}`
      }).pipe(Effect.catch((detail) => usage(detail)))
      const runner = Cluster.worker({
        url,
        host: flags.host,
        port: flags.port,
        concurrency: flags.concurrency,
        limits,
        store,
        retries: flags.retries,
        timeoutMs,
        // pile run's defaults for --max-body and --max-retry-after (16 MiB, 5 minutes).
        maxBody: 16 * 1024 * 1024,
        maxRetryAfterMs: 300_000,
        graceMs,
        name: Option.getOrUndefined(flags.name)
      })
      const where = `${flags.host}:${flags.port}`
      yield* Effect.sync(() => process.stderr.write(`pile worker: ${where}: joining the cluster\n`))
      yield* Layer.build(runner).pipe(
        Effect.catch((error) => usage(`cannot run on the cluster at ${hidePassword(url)}: ${causeMessage(error)}`)),
        // Effect Cluster's storage layers turn a connection failure into a defect: the same setup error.
        Effect.catchDefect((defect) =>
          usage(`cannot run on the cluster at ${hidePassword(url)}: ${causeMessage({ cause: defect })}`)
        )
      )
      yield* Effect.sync(() => process.stderr.write(`pile worker: ${where}: ready (Ctrl-C to leave)\n`))
      // Until Ctrl-C or SIGTERM, which close the scope: the shards are handed over after a drain.
      return yield* Effect.never
    }).pipe(Effect.scoped)).pipe(
      Command.withDescription(
        "Run requests for a pile cluster until Ctrl-C: take a share of the messages that `pile run --cluster` " +
          "sends to the Postgres at --cluster, under this worker's limits (shared with --redis)"
      )
    )
