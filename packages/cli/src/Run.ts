/**
 * The batch job behind `pile run`: read a JSONL file of HTTP requests as a stream, send them through one
 * executor under rate limits with retries, write one record per finished request as it completes, and
 * return a summary. Resumable (`resume`), shardable (`shard`), and stoppable in two steps by signals.
 *
 * @since 0.1.0
 */
import * as Executor from "@pile/executor/Executor"
import * as ExecutorError from "@pile/executor/ExecutorError"
import type * as Outcome from "@pile/executor/Outcome"
import * as RateLimit from "@pile/executor/RateLimit"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import type * as Sharding from "effect/cluster/Sharding"
import type * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FileSystem from "effect/FileSystem"
import type * as HttpClient from "effect/http/HttpClient"
import * as Option from "effect/Option"
import type * as PlatformError from "effect/PlatformError"
import * as Queue from "effect/Queue"
import * as Stdio from "effect/Stdio"
import * as Stream from "effect/Stream"
import * as Input from "./Input.ts"
import { anchorAtDeparture } from "./internal/departure.ts"
import * as Fingerprint from "./internal/fingerprint.ts"
import { formatDuration } from "./internal/flags.ts"
import * as Http from "./internal/http.ts"
import * as Metrics from "./internal/metrics.ts"
import { type Mode, Reporter } from "./internal/progress.ts"
import * as Output from "./Output.ts"

/**
 * Options of `run`. Only `input` and `output` are required.
 *
 * **When to use**
 *
 * Build it from flags (as `pile run` does) or by hand to run a batch from your own program.
 *
 * **Details**
 *
 * - `input`: a JSONL file, or `"-"` for standard input (then the total is unknown).
 * - `output`: the JSONL file of records; appended to with `resume`, replaced with `overwrite`, and otherwise
 *   it must not exist or be empty.
 * - `concurrency`: requests in flight at most (default 16). At most as many more wait, admitted, for a rate
 *   budget; the input is read no faster than that.
 * - `limits`: rate limits of `@pile/executor` (`RateLimit.Limit`); a limit with `budget: "tokens"` counts
 *   each request's `tokens` (or estimate), settled with the response's `usage.total_tokens`. They apply to
 *   all requests together.
 * - `retries`: retries per request for 429, 5xx, timeouts and connection failures (default 5).
 * - `timeout`: per attempt, from sending to the end of the response body (default 60 seconds).
 * - `maxBody`: bytes of a response body kept at most (default 16 MiB); a larger body is not kept: the
 *   record says `BodyTooLarge`, and its reading stops there (never retried).
 * - `maxRetryAfter`: the longest wait a 429 or 5xx can impose (default 5 minutes): a longer `Retry-After`
 *   (or `x-ratelimit-reset-*`) is capped to it.
 * - `countTokens`: a tokenizer's count for the token estimate of chat-like bodies (see
 *   `Input.estimateTokens`); without it, 4 characters per token.
 * - `metricsPort`: serve the executor's Prometheus metrics on `http://127.0.0.1:<port>/metrics` while the
 *   run lasts (0: a free port, said on stderr); a port that cannot be used is an `InvalidOption`.
 * - `adaptive`: learn from 429s that say no wait (default `true`): each request limit gets a per-host copy
 *   with a `RateLimit.adaptive` rate, lowered after such a 429 and recovered step by step.
 * - `shard`: keep only the ids of shard `index` of `count` (see `Input.shardOf`).
 * - `store`: where rate budgets are kept: in memory by default, Redis to share them between processes.
 * - `progress`: `"auto"` (a bar on a terminal, lines otherwise), `"bar"`, `"lines"` or `"none"`;
 *   `progressInterval` sets the period of the lines (default 5 seconds).
 * - `signals`: handle SIGINT and SIGTERM: the first drains (no more input; requests in flight may finish
 *   within `grace`, default 30 seconds), the second cancels what is left.
 * - `onSummary`: runs with the summary before `run` returns (with `signals`, where no signal can interrupt
 *   it: this is how `pile` prints its summary after Ctrl-C).
 *
 * **Gotchas**
 *
 * With `signals: true` the run cannot be interrupted from outside once it has started: the signals are how
 * it stops (this is what lets `pile` finish its output and summary after Ctrl-C).
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import type { Run } from "@pile/cli"
 *
 * const options: Run.Options = {
 *   input: "requests.jsonl",
 *   output: "results.jsonl",
 *   concurrency: 32,
 *   limits: [{ limit: 500, window: "1 minute" }, { budget: "tokens", limit: 90_000, window: "1 minute" }],
 *   resume: true
 * }
 * assert.equal(options.limits?.length, 2)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Options {
  readonly input: string
  readonly output: string
  readonly concurrency?: number | undefined
  readonly limits?: ReadonlyArray<RateLimit.Limit> | undefined
  readonly retries?: number | undefined
  readonly timeout?: Duration.Input | undefined
  readonly maxBody?: number | undefined
  readonly maxRetryAfter?: Duration.Input | undefined
  readonly adaptive?: boolean | undefined
  readonly metricsPort?: number | undefined
  readonly countTokens?: Input.CountTokens | undefined
  readonly grace?: Duration.Input | undefined
  readonly resume?: boolean | undefined
  readonly overwrite?: boolean | undefined
  readonly shard?: { readonly index: number; readonly count: number } | undefined
  readonly store?: RateLimit.RateLimitStore | undefined
  /**
   * A cluster's Postgres URL: the requests go to its `pile worker`s, whose limits, retries and timeouts
   * apply, instead of being sent from here. A run sent again (even without `resume`) gets the stored
   * results of the ids the cluster already finished.
   */
  readonly cluster?: string | undefined
  readonly progress?: "auto" | Mode | undefined
  readonly progressInterval?: Duration.Input | undefined
  readonly signals?: boolean | undefined
  readonly onSummary?: ((summary: Summary) => Effect.Effect<void>) | undefined
}

/**
 * What a run did. The counts add up: `ok + failed` records were written by this run, and with a known
 * `total`, `total = ok + failed + duplicates + remaining`.
 *
 * **When to use**
 *
 * Print it (`pile run` renders it as a table, or as JSON with `--json`), or assert on it in a program.
 *
 * **Details**
 *
 * - `total`: lines this run had to process (after `resume` and `shard`), when known (not for stdin).
 * - `ok`, `failed`: records written by this run; `failed` includes `invalid` input lines and requests over
 *   the token budget (`tooManyTokens`).
 * - `duplicates`: lines skipped because their id appeared on an earlier line.
 * - `remaining`: lines left undone (after a Ctrl-C or an error): `resume` does them.
 * - `resumed`: what the output already held when the run started.
 * - `retried`: requests that needed more than one attempt; `retries`: extra attempts in all; `attempts`:
 *   attempts sent in all.
 * - `rateLimited`: 429 answers seen (retried ones included); `serverErrors`: 5xx answers seen; `pauses`:
 *   times a Retry-After paused the requests of a host (a 429 on a request's last attempt too: no retry follows,
 *   but the other requests to the host wait).
 * - `throughput`: per second over `elapsedMs`: finished `requests`, `attempts`, and the tightest request
 *   `limit`.
 * - `tokens`: with a token budget or token usage in the responses: `used` (sum of `usage.total_tokens`), per
 *   minute, and the tightest token limit per minute.
 * - `limits`: each rate limit (`limit` units of `budget` per `windowMs`) with `used` (attempts for requests,
 *   `usage.total_tokens` for tokens), `windows` (the windows the run started: `ceil(elapsedMs / windowMs)`)
 *   and `perWindow` (`used / windows`): how close the run came to the limit. Counting every started window,
 *   a run that started with a full window reads at most 100% for a sliding window.
 * - `latency`: of the last attempt of each answered request, in milliseconds.
 * - `failures`: the records of this run that are not ok, by error type (`HttpStatus`, `RateLimited`...).
 * - `cancelled`: requests stopped by a signal before they finished (no record: `resume` sends them again);
 *   `cancelledBy`: `"signal"` (a second one) or `"grace"` (the grace after the first ran out).
 * - `slowedDown`: the hosts whose adaptive rate was lowered after 429s without a wait, with the share of the
 *   configured rate in force at the end.
 * - `stopped`: `"completed"`, `"drained"` (one signal, and every admitted request finished within the grace),
 *   `"cancelled"` (a second signal, or the grace ran out: `cancelled` says how many) or `"failed"` (`error`
 *   says why).
 * - `exitCode`: 0 when every request succeeded (including those already in the output); 1 when some failed,
 *   or lines were invalid or duplicated; 3 when the run stopped on an error; 130 after a signal.
 *
 * **Gotchas**
 *
 * `remaining` is `undefined` when `total` is.
 *
 * **Example**
 *
 * ```ts
 * // compile only: a Summary comes from a whole run (see `run` for one that runs)
 * import type { Run } from "@pile/cli"
 *
 * export const accountedFor = (s: Run.Summary): boolean =>
 *   s.total === undefined || s.ok + s.failed + s.duplicates + (s.remaining ?? 0) === s.total
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Summary {
  readonly input: string
  readonly output: string
  readonly total: number | undefined
  readonly ok: number
  readonly failed: number
  readonly invalid: number
  readonly tooManyTokens: number
  readonly duplicates: number
  readonly remaining: number | undefined
  readonly resumed: { readonly done: number; readonly ok: number; readonly failed: number } | undefined
  readonly retried: number
  readonly retries: number
  readonly attempts: number
  readonly rateLimited: number
  readonly serverErrors: number
  readonly pauses: number
  readonly elapsedMs: number
  readonly throughput: { readonly requests: number; readonly attempts: number; readonly limit: number | undefined }
  readonly tokens:
    | { readonly used: number; readonly perMinute: number; readonly limitPerMinute: number | undefined }
    | undefined
  readonly limits: ReadonlyArray<
    {
      readonly budget: string
      readonly limit: number
      readonly windowMs: number
      readonly used: number
      readonly windows: number
      readonly perWindow: number
    }
  >
  readonly latency:
    | { readonly p50: number; readonly p95: number; readonly p99: number; readonly max: number }
    | undefined
  readonly failures: Readonly<Partial<Record<Output.ErrorType, number>>>
  readonly cancelled: number
  readonly cancelledBy: "signal" | "grace" | undefined
  readonly slowedDown: ReadonlyArray<{ readonly host: string; readonly slowDowns: number; readonly factor: number }>
  readonly stopped: "completed" | "drained" | "cancelled" | "failed"
  readonly error: string | undefined
  readonly exitCode: 0 | 1 | 3 | 130
}

/**
 * Why a run could not start. Nothing was sent and the output was not changed (`pile` exits with code 2).
 *
 * **When to use**
 *
 * Catch it around `run` to report a setup problem: `Effect.catchTag("RunError", (e) => ...)`.
 *
 * **Details**
 *
 * `reason` is one of `"InputNotFound"`, `"InputUnreadable"`, `"OutputExists"` (it has records and neither
 * `resume` nor `overwrite` was given), `"OutputUnwritable"` (including an output that is not a regular file),
 * `"SameFile"` (input and output are one file), `"InputChanged"` (`resume` with another input or shard than
 * the output was started with) or `"InvalidOption"`; `message` is one line for the user.
 *
 * **Gotchas**
 *
 * Errors after the start (the input cannot be read any more, the output cannot be written) are not
 * `RunError`s: the run stops, and its summary says `stopped: "failed"` with the `error`.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import { NodeHttpClient, NodeServices } from "@effect/platform-node"
 * import { Effect, Layer } from "effect"
 * import { Run } from "@pile/cli"
 *
 * const program = Run.run({ input: "no-such-file.jsonl", output: "results.jsonl" }).pipe(
 *   Effect.flip,
 *   Effect.provide(Layer.mergeAll(NodeServices.layer, NodeHttpClient.layerUndici))
 * )
 * const error = await Effect.runPromise(program)
 * assert.equal(error.reason, "InputNotFound")
 * assert.equal(error.message, "input file not found: no-such-file.jsonl")
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class RunError extends Data.TaggedError("RunError")<{
  readonly reason:
    | "InputNotFound"
    | "InputUnreadable"
    | "OutputExists"
    | "OutputUnwritable"
    | "SameFile"
    | "InputChanged"
    | "InvalidOption"
    | "ClusterUnavailable"
  readonly detail: string
}> {
  override get message(): string {
    return this.detail
  }
}

class InputFailed extends Data.TaggedError("InputFailed")<{ readonly detail: string }> {}
class OutputFailed extends Data.TaggedError("OutputFailed")<{ readonly detail: string }> {}

const describe = (error: PlatformError.PlatformError): string => {
  const reason = error.reason
  if (reason._tag === "NotFound") return "no such file or directory"
  if (reason._tag === "PermissionDenied") return "permission denied"
  // The system's own words (e.g. "ENOSPC: no space left on device, write") say more than the wrapper.
  const cause = (reason as { readonly cause?: unknown }).cause
  if (cause instanceof Error && cause.message !== "") return cause.message
  return reason.description ?? reason.message
}

/** Mutable counters of one run, written by the writer and the request fibers. */
class Tally {
  total: number | undefined = undefined
  ok = 0
  failed = 0
  invalid = 0
  tooManyTokens = 0
  duplicates = 0
  retried = 0
  attempts = 0
  rateLimited = 0
  serverErrors = 0
  tokensUsed = 0
  sawUsage = false
  cancelled = 0
  readonly failures: Partial<Record<Output.ErrorType, number>> = {}
  readonly latencies: Array<number> = []
}

const usageOf = (body: unknown): number | undefined => {
  if (typeof body !== "object" || body === null) return undefined
  const usage = (body as { readonly usage?: unknown }).usage
  if (typeof usage !== "object" || usage === null) return undefined
  const total = (usage as { readonly total_tokens?: unknown }).total_tokens
  return typeof total === "number" && Number.isFinite(total) && total >= 0 ? total : undefined
}

const after = (message: string, attempts: number) => attempts > 1 ? `${message} (after ${attempts} attempts)` : message

/** The record of a finished request, or undefined when it is not finished for good (stopped by a signal). */
const toRecord = (
  outcome: Outcome.Outcome<Http.Response, Http.RequestError, Input.Line>
): Output.Record | undefined => {
  const line = outcome.input
  const base = { id: line.id, line: line.line }
  const metadata = line.metadata === undefined ? {} : { metadata: line.metadata }
  const exit = outcome.exit
  switch (outcome.kind) {
    case "success": {
      if (exit._tag !== "Success") return undefined
      const response = exit.value
      return {
        ...base,
        ok: true,
        status: response.status,
        attempts: outcome.attempts,
        latencyMs: response.latencyMs,
        body: response.body,
        ...metadata
      }
    }
    case "failure": {
      if (exit._tag !== "Failure") return undefined
      const found = Cause.findErrorOption(exit.cause)
      if (found._tag === "None") return undefined
      const error = found.value
      if (error._tag === "InvalidInput") {
        return {
          ...base,
          ok: false,
          status: null,
          attempts: 0,
          latencyMs: null,
          error: { type: "InvalidInput", message: error.message },
          ...metadata
        }
      }
      const answered = "status" in error
      return {
        ...base,
        ok: false,
        status: answered ? error.status : null,
        attempts: outcome.attempts,
        latencyMs: answered ? error.latencyMs : null,
        ...("body" in error ? { body: error.body } : {}),
        error: { type: Http.errorType(error), message: after(error.message, outcome.attempts) },
        ...metadata
      }
    }
    case "rejected": {
      const reason = outcome.rejection?.reason
      const message = reason?._tag === "CostOverLimit" && line._tag === "Request"
        ? `needs ${reason.cost} tokens${
          line.estimated ? " (estimated)" : ""
        }, more than the token budget allows at once (${reason.capacity}): it was not sent`
        : (outcome.rejection?.message ?? "rejected by the executor")
      return {
        ...base,
        ok: false,
        status: null,
        attempts: 0,
        latencyMs: null,
        error: { type: "TooManyTokens", message },
        ...metadata
      }
    }
    case "defect": {
      const message = exit._tag === "Failure" ? Cause.pretty(exit.cause).split("\n")[0]! : "unknown defect"
      return {
        ...base,
        ok: false,
        status: null,
        attempts: outcome.attempts,
        latencyMs: null,
        error: { type: "Defect", message },
        ...metadata
      }
    }
    default:
      // interrupted or cancelled by a signal: not final, so `resume` sends it again.
      return undefined
  }
}

/** A request's key: its host, so a 429's Retry-After pauses the requests to that host. */
const hostOf = (url: string): string => new URL(url).host

const percentile = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!

const perSecond = (limit: RateLimit.Limit): number => limit.limit / (Duration.toMillis(limit.window) / 1000)

const positiveInteger = (name: string, value: number | undefined, fallback: number, min: number) =>
  value === undefined
    ? Effect.succeed(fallback)
    : Number.isInteger(value) && value >= min
    ? Effect.succeed(value)
    : Effect.fail(
      new RunError({ reason: "InvalidOption", detail: `${name} must be an integer >= ${min}, got ${value}` })
    )

const millisOf = (name: string, value: Duration.Input | undefined, fallback: number) => {
  if (value === undefined) return Effect.succeed(fallback)
  const decoded = Duration.fromInput(value)
  return Option.isSome(decoded) && Duration.toMillis(decoded.value) > 0
    ? Effect.succeed(Duration.toMillis(decoded.value))
    : Effect.fail(new RunError({ reason: "InvalidOption", detail: `${name} must be a duration > 0` }))
}

/** A response body larger than this is not kept (`maxBody`'s default): 16 MiB. */
const defaultMaxBody = 16 * 1024 * 1024
/** The largest `maxBody`: a JavaScript string holds at most 2^29 - 24 characters. */
const maxBodyLimit = 512 * 1024 * 1024 - 1024

interface Prepared {
  readonly options: Options
  readonly executor: Executor.Executor<Http.Response, Http.RequestError>
  /** The adaptive rate of the per-host copies of the request limits, when there are any. */
  readonly adaptive: RateLimit.AdaptiveRate | undefined
  readonly store: RateLimit.RateLimitStore
  readonly timeoutMs: number
  readonly maxBody: number
  readonly maxRetryAfterMs: number
  readonly graceMs: number
  readonly intervalMs: number
  readonly mode: Mode
  readonly scan: Output.ScanResult | undefined
  readonly file: FileSystem.File
  /** With `cluster`: this process's place in the cluster (a client), for the run's scope. */
  readonly cluster: Context.Context<Sharding.Sharding> | undefined
}

/** Checks everything that can be checked before sending anything, and opens the output. */
const prepare = (options: Options) =>
  Effect.gen(function*() {
    const concurrency = yield* positiveInteger("concurrency", options.concurrency, 16, 1)
    const retries = yield* positiveInteger("retries", options.retries, 5, 0)
    const timeoutMs = yield* millisOf("timeout", options.timeout, 60_000)
    const graceMs = yield* millisOf("grace", options.grace, 30_000)
    const intervalMs = yield* millisOf("progressInterval", options.progressInterval, 5_000)
    const maxRetryAfterMs = yield* millisOf("maxRetryAfter", options.maxRetryAfter, 300_000)
    const maxBody = yield* positiveInteger("maxBody", options.maxBody, defaultMaxBody, 1)
    if (maxBody > maxBodyLimit) {
      return yield* new RunError({
        reason: "InvalidOption",
        detail: `maxBody must be at most ${maxBodyLimit} bytes (a JavaScript string cannot hold more), got ${maxBody}`
      })
    }
    // Each request limit gets a per-host copy whose rate learns from the 429s of that host (the overall
    // limits stay as given): the copy binds only once the host's rate was lowered.
    const requestLimits = (options.limits ?? []).filter((limit) => (limit.budget ?? "requests") === "requests")
    const adaptive = options.adaptive === false || requestLimits.length === 0
      ? undefined
      : RateLimit.adaptive()
    // The executor's store, kept so that admissions can be anchored at the requests' departures.
    const store = options.store ?? RateLimit.memoryStore()
    const limits = adaptive === undefined
      ? options.limits
      : [...options.limits ?? [], ...requestLimits.map((limit) => Object.assign({}, limit, { perKey: true, adaptive }))]
    if (options.resume === true && options.overwrite === true) {
      return yield* new RunError({ reason: "InvalidOption", detail: "resume and overwrite cannot be used together" })
    }
    // The executor checks the limits: made first, a bad limit fails before any file is touched. Its scope
    // is the run's: closing it shuts the executor down (by then every task has its outcome).
    const executor = yield* Executor.make<Http.Response, Http.RequestError>({
      name: "pile",
      concurrency,
      // Admitted but not started: at most as many as run. The input is read no faster than that.
      capacity: concurrency,
      limits,
      store,
      policy: Http.policy(retries),
      shutdown: { mode: "cancel", grace: 0 },
      finalizerTimeout: "5 seconds"
    }).pipe(
      Effect.mapError((error) => new RunError({ reason: "InvalidOption", detail: error.message }))
    )
    if (options.metricsPort !== undefined) {
      const url = yield* Metrics.serve(options.metricsPort).pipe(
        Effect.mapError((message) =>
          new RunError({
            reason: "InvalidOption",
            detail: `cannot serve the metrics on 127.0.0.1:${options.metricsPort}: ${message}`
          })
        )
      )
      process.stderr.write(`pile: metrics at ${url}\n`)
    }
    const fs = yield* FileSystem.FileSystem
    const { input, output } = options
    if (input !== "-") {
      const info = yield* fs.stat(input).pipe(
        Effect.mapError((error) =>
          error.reason._tag === "NotFound"
            ? new RunError({ reason: "InputNotFound", detail: `input file not found: ${input}` })
            : new RunError({ reason: "InputUnreadable", detail: `cannot read the input ${input}: ${describe(error)}` })
        )
      )
      if (info.type !== "File") {
        return yield* new RunError({ reason: "InputUnreadable", detail: `the input ${input} is not a file` })
      }
      yield* fs.access(input, { readable: true }).pipe(
        Effect.mapError((error) =>
          new RunError({ reason: "InputUnreadable", detail: `cannot read the input ${input}: ${describe(error)}` })
        )
      )
    }
    const existing = yield* Effect.option(fs.stat(output))
    if (Option.isSome(existing) && existing.value.type !== "File") {
      return yield* new RunError({
        reason: "OutputUnwritable",
        detail: `the output ${output} is not a regular file`
      })
    }
    if (Option.isSome(existing) && input !== "-") {
      const [a, b] = yield* Effect.all([fs.realPath(input), fs.realPath(output)]).pipe(
        Effect.orElseSucceed(() => ["", "-"] as const)
      )
      if (a === b) {
        return yield* new RunError({
          reason: "SameFile",
          detail: `the input and the output are the same file: ${output}`
        })
      }
    }
    const unwritable = (error: PlatformError.PlatformError) =>
      new RunError({ reason: "OutputUnwritable", detail: `cannot write the output ${output}: ${describe(error)}` })
    const fingerprint = yield* Fingerprint.make(fs, input, options.shard).pipe(
      Effect.mapError((error) =>
        new RunError({ reason: "InputUnreadable", detail: `cannot read the input ${input}: ${describe(error)}` })
      )
    )
    let scan: Output.ScanResult | undefined
    let keepSidecar = false
    if (Option.isSome(existing) && Number(existing.value.size) > 0) {
      if (options.resume === true) {
        const before = yield* Fingerprint.read(fs, output)
        if (before !== undefined) {
          const why = yield* Fingerprint.mismatch(fs, before, fingerprint).pipe(Effect.orElseSucceed(() => undefined))
          if (why !== undefined) {
            return yield* new RunError({
              reason: "InputChanged",
              detail: `cannot resume ${output}: ${why}. Resume with the same input and --shard, or use --overwrite ` +
                `to start over`
            })
          }
          keepSidecar = true
        }
        scan = yield* Output.scan(fs.stream(output)).pipe(Effect.mapError(unwritable))
        if (scan.tail === "torn") yield* fs.truncate(output, scan.validBytes).pipe(Effect.mapError(unwritable))
      } else if (options.overwrite !== true) {
        return yield* new RunError({
          reason: "OutputExists",
          detail: `the output ${output} already has results: use --resume to continue it, or --overwrite to replace it`
        })
      }
    }
    const cluster = options.cluster === undefined ?
      undefined :
      yield* Effect.tryPromise({
        try: () => import("./internal/cluster.ts"),
        // @pile/cluster is an optional peer of the CLI: only --cluster needs it (with its Postgres driver).
        catch: (cause) => `--cluster needs the package @pile/cluster (npm install --global @pile/cluster): ${cause}`
      }).pipe(
        Effect.flatMap((Cluster) => Cluster.connect(options.cluster!)),
        Effect.mapError((detail) => new RunError({ reason: "ClusterUnavailable", detail }))
      )
    const file = yield* fs.open(output, { flag: options.overwrite === true ? "w" : "a" }).pipe(
      Effect.mapError(unwritable)
    )
    // A file that opens but cannot be written (a /proc file, a full or read-only device) fails here, before
    // anything is sent: an empty write reaches the file system all the same.
    yield* file.write(new Uint8Array(0)).pipe(Effect.mapError(unwritable))
    if (!keepSidecar) yield* Fingerprint.write(fs, output, fingerprint).pipe(Effect.mapError(unwritable))
    if (scan?.tail === "unterminated") {
      yield* file.writeAll(new TextEncoder().encode("\n")).pipe(Effect.mapError(unwritable))
    }
    const progress = options.progress ?? "auto"
    const mode: Mode = progress === "auto" ? (process.stderr.isTTY === true ? "bar" : "lines") : progress
    return {
      options,
      executor,
      adaptive,
      store,
      timeoutMs,
      maxBody,
      maxRetryAfterMs,
      graceMs,
      intervalMs,
      mode,
      scan,
      file,
      cluster
    } satisfies Prepared
  })

/** Lines this run has to process, counted in a second pass over the input (in the background). */
const countRemaining = (prepared: Prepared, fs: FileSystem.FileSystem) => {
  const { shard } = prepared.options
  const done = prepared.scan?.done
  return Stream.runFold(
    Input.numbered(fs.stream(prepared.options.input, { chunkSize: 256 * 1024 })),
    () => 0,
    (n, [text, line]) => {
      if (shard === undefined && done === undefined) return n + 1
      const key = Input.keyOf(text, line)
      if (shard !== undefined && Input.shardOf(key, shard.count) !== shard.index) return n
      return done?.has(key) === true ? n : n + 1
    }
  )
}

const execute = (prepared: Prepared) =>
  Effect.gen(function*() {
    const { options, file } = prepared
    const fs = yield* FileSystem.FileSystem
    const stdio = yield* Stdio.Stdio
    const reporter = new Reporter(prepared.mode)
    const tally = new Tally()
    const limits = options.limits ?? []
    const tokenLimits = limits.filter((limit) => (limit.budget ?? "requests") === "tokens")
    const requestLimits = limits.filter((limit) => (limit.budget ?? "requests") === "requests")
    const start = yield* Clock.currentTimeMillis
    reporter.start(start)
    const state: {
      signal: string | undefined
      phase: "running" | "draining" | "cancelling"
    } = { signal: undefined, phase: "running" }

    const executor = prepared.executor

    if (options.signals === true) {
      const signals = yield* Queue.unbounded<string>()
      const onSignal = (signal: string) => {
        Queue.offerUnsafe(signals, signal)
      }
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          process.on("SIGINT", onSignal)
          process.on("SIGTERM", onSignal)
        }),
        () =>
          Effect.sync(() => {
            process.off("SIGINT", onSignal)
            process.off("SIGTERM", onSignal)
          })
      )
      yield* Effect.forkScoped(Effect.gen(function*() {
        const first = yield* Queue.take(signals)
        state.signal = first
        state.phase = "draining"
        const stats = yield* executor.stats
        const admitted = stats.running + stats.waiting + stats.queued
        reporter.log(
          `pile: ${first}: draining: reading no more input; waiting up to ${
            formatDuration(prepared.graceMs)
          } for the ${admitted} request(s) admitted (${stats.running} running). Press Ctrl-C again to cancel them.`,
          { always: true }
        )
        yield* Effect.forkScoped(executor.shutdown({ mode: "drain", grace: Duration.millis(prepared.graceMs) }))
        yield* Queue.take(signals)
        state.phase = "cancelling"
        reporter.log("pile: cancelling: requests in flight get no record; --resume sends them again.", {
          always: true
        })
        yield* Effect.orDie(executor.shutdown({ mode: "cancel" }))
      }))
    }

    const counting = options.input === "-" ? undefined : yield* Effect.forkScoped(
      countRemaining(prepared, fs).pipe(
        Effect.tap((n) => Effect.sync(() => (tally.total = n))),
        Effect.ignore
      )
    )

    // Progress: the executor's own snapshots (running, waiting, retries), with this run's counts.
    const progress = prepared.mode === "none" ? undefined : yield* Effect.forkScoped(
      executor.progress({ interval: Duration.millis(prepared.mode === "bar" ? 150 : prepared.intervalMs) }).pipe(
        Stream.drop(1), // the first snapshot comes at once, before anything happened
        Stream.runForEach((snapshot) =>
          Effect.sync(() =>
            reporter.update({
              total: tally.total,
              done: tally.ok + tally.failed + tally.duplicates,
              ok: tally.ok,
              failed: tally.failed,
              running: snapshot.running,
              waiting: snapshot.waiting + snapshot.queued,
              rateLimited: tally.rateLimited,
              retries: snapshot.retries,
              slowed: adaptive === undefined
                ? []
                : adaptive.snapshotAt(snapshot.at).filter((key) => key.factor < 1)
                  .map((key) => ({ host: key.key, factor: key.factor })),
              now: snapshot.at
            })
          )
        )
      )
    )

    // The input: parsed lines of this shard, not done before, each id once.
    const done = prepared.scan?.done
    const shard = options.shard
    const seen = new Set<string>()
    const source = options.input === "-" ? stdio.stdin : fs.stream(options.input, { chunkSize: 64 * 1024 })
    const inputs = Input.lines(source, { countTokens: options.countTokens }).pipe(
      Stream.mapError((error) =>
        new InputFailed({ detail: `reading the input ${options.input} failed: ${describe(error)}` })
      ),
      Stream.filter((line) => {
        if (shard !== undefined && Input.shardOf(line.key, shard.count) !== shard.index) return false
        if (done !== undefined && done.has(line.key)) return false
        if (seen.has(line.key)) {
          tally.duplicates++
          if (tally.duplicates <= 20) {
            reporter.log(
              `pile: line ${line.line}: id ${JSON.stringify(line.id)} was already used on an earlier line: skipped${
                tally.duplicates === 20 ? " (further duplicates are counted, not shown)" : ""
              }`,
              { always: true }
            )
          }
          return false
        }
        seen.add(line.key)
        return true
      })
    )

    // What the answers say about each host: the counters, the adaptive rate, and why a host waits.
    const adaptive = prepared.adaptive
    const onAnswer = (host: string) => (answer: Http.Answer): void => {
      const { status, asked } = answer
      if (status === 429) tally.rateLimited++
      else if (status >= 500) tally.serverErrors++
      if (status === 429 || status >= 500) {
        if (asked !== undefined) {
          const until = answer.at + Math.min(asked, prepared.maxRetryAfterMs)
          const capped = asked > prepared.maxRetryAfterMs ? ` (asked ${formatDuration(asked)}, capped)` : ""
          reporter.hold(host, until, `${status === 429 ? "429" : status} said wait${capped}`)
        } else if (status === 429 && adaptive !== undefined) {
          adaptive.slowDownAt(host, answer.at, answer.sentAt)
        }
      } else if (status >= 200 && status < 300 && adaptive !== undefined) {
        // A success that says a budget is spent: wait for its reset before the next request to that host.
        const reset = Http.exhaustedResetOf(answer.headers)
        if (reset !== undefined && reset > 0) {
          const until = answer.at + Math.min(reset, prepared.maxRetryAfterMs)
          adaptive.holdAt(host, until, "x-ratelimit-remaining 0")
          reporter.hold(host, until, "x-ratelimit-remaining 0")
        }
      }
    }
    const sendOptions = (host: string): Http.SendOptions => ({
      timeoutMs: prepared.timeoutMs,
      maxBody: prepared.maxBody,
      maxRetryAfter: prepared.maxRetryAfterMs,
      onAnswer: onAnswer(host)
    })
    // The HTTP client's first request is slow (code to load and compile): pay for it before the first admission.
    yield* Http.warmUp
    yield* anchorAtDeparture(prepared.store)
    const attempt = (line: Input.Line): Effect.Effect<Http.Response, Http.RequestError, HttpClient.HttpClient> =>
      line._tag === "Invalid"
        ? Effect.fail(new Http.InvalidInput({ detail: line.message }))
        : Effect.andThen(
          Effect.sync(() => tally.attempts++),
          Http.send(line, sendOptions(hostOf(line.url)))
        )

    const pile = prepared.cluster !== undefined
      // On the cluster, the local executor runs nothing: its shutdown (by a signal) ends the wait for replies.
      ? (yield* Effect.promise(() => import("./internal/cluster.ts"))).pile(prepared.cluster, inputs).pipe(
        Stream.interruptWhen(Stream.runDrain(executor.pile))
      )
      : executor.run(inputs, attempt, {
        key: (line) => line._tag === "Request" ? hostOf(line.url) : undefined,
        cost: (line) =>
          line._tag === "Invalid"
            ? { requests: 0 }
            : tokenLimits.length > 0
            ? { tokens: Math.max(1, Math.ceil(line.tokens ?? 1)) }
            : undefined,
        ...(tokenLimits.length === 0 ? {} : {
          settle: (exit: Exit.Exit<Http.Response, Http.RequestError>) => {
            const body = Exit.isSuccess(exit)
              ? exit.value.body
              : Option.getOrUndefined(
                Option.map(Cause.findErrorOption(exit.cause), (e) => "body" in e ? e.body : undefined)
              )
            const used = usageOf(body)
            return used === undefined ? undefined : { tokens: used }
          }
        })
      })

    const encoder = new TextEncoder()
    /** Counts a record, once it is written. */
    const count = (record: Output.Record): void => {
      if (record.ok) tally.ok++
      else tally.failed++
      if (record.error !== undefined) {
        tally.failures[record.error.type] = (tally.failures[record.error.type] ?? 0) + 1
      }
      if (record.error?.type === "InvalidInput") tally.invalid++
      if (record.error?.type === "TooManyTokens") tally.tooManyTokens++
      if (record.attempts > 1) tally.retried++
      if (record.latencyMs !== null) tally.latencies.push(record.latencyMs)
      const used = record.ok ? usageOf(record.body) : undefined
      if (used !== undefined) {
        tally.tokensUsed += used
        tally.sawUsage = true
      }
    }
    const write = (outcomes: ReadonlyArray<Outcome.Outcome<Http.Response, Http.RequestError, Input.Line>>) => {
      const records: Array<Output.Record> = []
      let text = ""
      for (const outcome of outcomes) {
        const record = toRecord(outcome)
        if (record === undefined) {
          // Stopped by a signal (the second one, or the grace ran out): it gets no record.
          if (outcome.kind === "cancelled" || outcome.kind === "interrupted") tally.cancelled++
          continue
        }
        records.push(record)
        text += Output.encode(record)
      }
      return text === ""
        ? Effect.void
        : file.writeAll(encoder.encode(text)).pipe(
          Effect.mapError((error) =>
            new OutputFailed({ detail: `writing the output ${options.output} failed: ${describe(error)}` })
          ),
          Effect.andThen(Effect.sync(() => records.forEach(count)))
        )
    }

    const result = yield* Effect.exit(Stream.runForEachArray(pile, write))
    let error: string | undefined
    if (result._tag === "Failure") {
      const found = Cause.findErrorOption(result.cause)
      if (found._tag === "Some") {
        const e = found.value
        // Closed: a signal shut the executor down before the whole input was read; that is a drain, not an error.
        if (!(ExecutorError.isExecutorError(e) && e.reason._tag === "Closed" && state.signal !== undefined)) {
          error = e._tag === "InputFailed" || e._tag === "OutputFailed" ? e.detail : e.message
        }
      } else if (!Cause.hasInterruptsOnly(result.cause)) {
        error = Cause.pretty(result.cause).split("\n")[0]
      }
    }
    yield* Effect.orDie(executor.shutdown({ mode: "cancel" }))
    // No progress after this point: the summary follows.
    if (progress !== undefined) yield* Fiber.interrupt(progress)
    reporter.clear()
    if (error === undefined && state.signal === undefined) {
      // The whole input was read: every line is accounted for, whatever the counting pass got to.
      tally.total = tally.ok + tally.failed + tally.duplicates
    } else if (tally.total === undefined && counting !== undefined) {
      yield* Fiber.await(counting).pipe(Effect.timeoutOption(Duration.seconds(2)))
    }

    const stats = yield* executor.stats
    const end = yield* Clock.currentTimeMillis
    const elapsedMs = Math.max(1, end - start)
    const seconds = elapsedMs / 1000
    const sorted = tally.latencies.slice().sort((a, b) => a - b)
    const sent = tally.ok + tally.failed - tally.invalid - tally.tooManyTokens
    const requestLimit = requestLimits.length === 0 ? undefined : Math.min(...requestLimits.map(perSecond))
    const tokenLimit = tokenLimits.length === 0 ? undefined : Math.min(...tokenLimits.map(perSecond)) * 60
    const scan = prepared.scan
    const failedBefore = scan?.failed ?? 0
    const stopped = error !== undefined
      ? "failed"
      : state.signal === undefined
      ? "completed"
      : state.phase === "cancelling" || tally.cancelled > 0
      ? "cancelled"
      : "drained"
    const exitCode = state.signal !== undefined
      ? 130
      : error !== undefined
      ? 3
      : tally.failed > 0 || tally.duplicates > 0 || failedBefore > 0
      ? 1
      : 0
    const summary: Summary = {
      input: options.input,
      output: options.output,
      total: tally.total,
      ok: tally.ok,
      failed: tally.failed,
      invalid: tally.invalid,
      tooManyTokens: tally.tooManyTokens,
      duplicates: tally.duplicates,
      remaining: tally.total === undefined
        ? undefined
        : Math.max(0, tally.total - tally.ok - tally.failed - tally.duplicates),
      resumed: scan === undefined ? undefined : { done: scan.done.size, ok: scan.ok, failed: scan.failed },
      retried: tally.retried,
      retries: stats.retries,
      attempts: tally.attempts,
      rateLimited: tally.rateLimited,
      serverErrors: tally.serverErrors,
      pauses: stats.pauses,
      elapsedMs,
      throughput: { requests: sent / seconds, attempts: tally.attempts / seconds, limit: requestLimit },
      limits: limits.map((limit) => {
        const budget = limit.budget ?? "requests"
        const windowMs = Duration.toMillis(limit.window)
        const units = budget === "requests" ? tally.attempts : budget === "tokens" ? tally.tokensUsed : 0
        const windows = Math.max(1, Math.ceil(elapsedMs / windowMs))
        return { budget, limit: limit.limit, windowMs, used: units, windows, perWindow: units / windows }
      }),
      tokens: tokenLimit === undefined && !tally.sawUsage
        ? undefined
        : { used: tally.tokensUsed, perMinute: (tally.tokensUsed / seconds) * 60, limitPerMinute: tokenLimit },
      latency: sorted.length === 0 ? undefined : {
        p50: percentile(sorted, 50),
        p95: percentile(sorted, 95),
        p99: percentile(sorted, 99),
        max: sorted[sorted.length - 1]!
      },
      failures: { ...tally.failures },
      cancelled: tally.cancelled,
      cancelledBy: stopped !== "cancelled" ? undefined : state.phase === "cancelling" ? "signal" : "grace",
      slowedDown: adaptive === undefined ? [] : adaptive.snapshotAt(yield* Clock.currentTimeMillis)
        .filter((key) => key.slowDowns > 0)
        .map((key) => ({ host: key.key, slowDowns: key.slowDowns, factor: key.factor })),
      stopped,
      error,
      exitCode
    }
    if (options.onSummary !== undefined) yield* options.onSummary(summary)
    return summary
  })

/**
 * Runs a batch: reads `options.input`, sends every request under the limits, writes one record per finished
 * request to `options.output` as it completes, and returns the `Summary`.
 *
 * **When to use**
 *
 * This is `pile run` without the command line: call it from a program, or from a test, with the services
 * of `@effect/platform-node` (`NodeServices.layer` and `NodeHttpClient.layerUndici`).
 *
 * **Details**
 *
 * - The input is read as a stream and parsed line by line; the executor's bounded queue pushes back on the
 *   reader, so memory does not grow with the file (only the set of ids seen does).
 * - Each request is one task of one `@pile/executor` executor (`Executor.run`): its key is the URL's host,
 *   its cost one request plus its tokens when a token budget is set; 429 and 5xx answers, timeouts and
 *   connection failures are retried through the executor's error policy with exponential backoff, and a
 *   `Retry-After` makes the retry wait at least that long and pauses every request to that host.
 * - Records are appended in completion order, each batch of completions in one write, as they arrive: a
 *   crash loses at most the records being written, and `resume` tolerates the torn line it may leave.
 * - With `resume`, ids that have a record are skipped; the others run.
 *
 * **Gotchas**
 *
 * A request stopped by a signal may have reached the server; it gets no record, so a resumed run sends it
 * again. Every other request is written exactly once.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
 * import { tmpdir } from "node:os"
 * import { join } from "node:path"
 * import { NodeHttpClient, NodeServices } from "@effect/platform-node"
 * import { Effect, Layer } from "effect"
 * import { MockServer, Run } from "@pile/cli"
 *
 * const dir = mkdtempSync(join(tmpdir(), "pile-"))
 * const [input, output] = [join(dir, "requests.jsonl"), join(dir, "results.jsonl")]
 * const program = Effect.gen(function*() {
 *   const api = yield* MockServer.make()
 *   writeFileSync(input, `{"id":"a","url":"${api.url}/hello"}\n{"id":"b","url":"${api.url}/gone?status=404"}\n`)
 *   return yield* Run.run({ input, output, limits: [{ limit: 10, window: "1 second" }], progress: "none" })
 * }).pipe(Effect.scoped, Effect.provide(Layer.mergeAll(NodeServices.layer, NodeHttpClient.layerUndici)))
 *
 * const summary = await Effect.runPromise(program)
 * assert.deepEqual([summary.ok, summary.failed, summary.exitCode], [1, 1, 1])
 * assert.equal(readFileSync(output, "utf8").trim().split("\n").length, 2)
 * ```
 *
 * @category running
 * @since 0.1.0
 */
export const run = (
  options: Options
): Effect.Effect<Summary, RunError, FileSystem.FileSystem | HttpClient.HttpClient | Stdio.Stdio> =>
  Effect.scoped(Effect.gen(function*() {
    const prepared = yield* prepare(options)
    const body = execute(prepared)
    return yield* (options.signals === true ? Effect.uninterruptible(body) : body)
  }))
