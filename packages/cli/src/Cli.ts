/**
 * The `pile` command line, built with Effect's CLI module: `pile run` (a JSONL batch of HTTP requests under
 * rate limits) and `pile demo` (the same against an embedded mock API). `main` is the whole program, ready
 * for `NodeRuntime.runMain`.
 *
 * Exit codes: 0 every request succeeded; 1 some requests failed, or input lines were invalid or duplicated;
 * 2 usage or setup error (bad flag, missing input, unwritable or existing output, Redis unreachable):
 * nothing was sent; 3 the run stopped on an error after it started (the output stays consistent: resume
 * it); 130 stopped by Ctrl-C or SIGTERM (resume it).
 *
 * @since 0.1.0
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Argument from "effect/cli/Argument"
import * as CliConfig from "effect/cli/CliConfig"
import * as CliError from "effect/cli/CliError"
import * as CliOutput from "effect/cli/CliOutput"
import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import * as GlobalFlag from "effect/cli/GlobalFlag"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Runtime from "effect/Runtime"
import * as Stdio from "effect/Stdio"
import { createRequire } from "node:module"
import { limitsOf, parseDuration, parseShard, parseSize } from "./internal/flags.ts"
import { causeMessage, redisStore, redisUrl } from "./internal/redis.ts"
import * as Report from "./internal/report.ts"
import * as Tokenizer from "./internal/tokenizer.ts"
import * as Worker from "./internal/worker.ts"
import * as Run from "./Run.ts"

/**
 * The version `pile --version` prints.
 *
 * **When to use**
 *
 * To report which `pile` produced a result.
 *
 * **Details**
 *
 * The `version` of the `@pile/cli` package, read from its `package.json` (which a release bumps).
 *
 * **Gotchas**
 *
 * None.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import { Cli } from "@pile/cli"
 *
 * assert.match(Cli.version, /^\d+\.\d+\.\d+/)
 * ```
 *
 * @category constants
 * @since 0.1.0
 */
export const version: string = (createRequire(import.meta.url)("../package.json") as { readonly version: string })
  .version

/**
 * The failure that ends `main` with a given process exit code (other than 0). It carries Effect's
 * `Runtime.errorExitCode`, so `NodeRuntime.runMain` exits with `code`, and is marked as already reported.
 *
 * **When to use**
 *
 * Match it when you run `main` yourself instead of through `NodeRuntime.runMain`.
 *
 * **Details**
 *
 * `code` is one of the exit codes listed in this module's description.
 *
 * **Gotchas**
 *
 * The message for the user has already been printed when this fails `main`.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import { Runtime } from "effect"
 * import { Cli } from "@pile/cli"
 *
 * const error = new Cli.ExitCode({ code: 3 })
 * assert.equal(Runtime.getErrorExitCode(error), 3) // what NodeRuntime.runMain exits with
 * assert.equal(Runtime.getErrorReported(error), false) // and it does not log it again
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class ExitCode extends Data.TaggedError("ExitCode")<{ readonly code: number }> {
  override readonly [Runtime.errorReported] = false
  override get [Runtime.errorExitCode](): number {
    return this.code
  }
  override get message(): string {
    return `exit code ${this.code}`
  }
}

const usage = (command: string, message: string) =>
  Effect.andThen(
    Effect.sync(() => process.stderr.write(`pile ${command}: ${message}\n`)),
    Effect.fail(new ExitCode({ code: 2 }))
  )

const fromResult = <A>(command: string, result: Result.Result<A, string>) =>
  Result.isSuccess(result) ? Effect.succeed(result.success) : usage(command, result.failure)

const exitWith = (code: number) => code === 0 ? Effect.void : Effect.fail(new ExitCode({ code }))

const print = (summary: Run.Summary, flags: { readonly quiet: boolean; readonly json: boolean }) =>
  Effect.sync(() => {
    if (flags.json) process.stdout.write(Report.json(summary))
    else if (!flags.quiet) process.stdout.write(Report.table(summary))
    // An error that stopped the run is said on stderr too, whatever the summary's format.
    if (summary.error !== undefined) process.stderr.write(`pile run: ${summary.error}\n`)
  })

const runFlags = {
  input: Argument.String("input").pipe(
    Argument.withDescription("The JSONL file of requests, one JSON object per line (- for standard input)")
  ),
  out: Flag.String("out").pipe(
    Flag.withAlias("o"),
    Flag.withMetavar("file"),
    Flag.withDescription("Where to write one JSON record per finished request (JSONL)")
  ),
  concurrency: Flag.Int("concurrency").pipe(
    Flag.withAlias("c"),
    Flag.withDefault(16),
    Flag.withDescription("Requests in flight at most (default: 16)")
  ),
  rate: Flag.String("rate").pipe(
    Flag.withMetavar("n/unit"),
    Flag.atLeast(0),
    Flag.withDescription("A request limit, e.g. 100/s, 5000/min, 20000/h; repeat it for several")
  ),
  burst: Flag.Int("burst").pipe(
    Flag.optional,
    Flag.withDescription(
      "Space requests evenly, allowing n back to back (1: evenly spaced), for leaky-bucket servers " +
        "(default: none, exact sliding windows)"
    )
  ),
  rpm: Flag.Int("rpm").pipe(Flag.optional, Flag.withDescription("Requests per minute (same as --rate n/min)")),
  tpm: Flag.Int("tpm").pipe(
    Flag.optional,
    Flag.withDescription("Tokens per minute: each line's tokens, or an estimate for chat-completion bodies")
  ),
  tokenizer: Flag.Literals("tokenizer", Tokenizer.names).pipe(
    Flag.withDefault("estimate"),
    Flag.withDescription(
      "How --tpm estimates a line without tokens: estimate (4 characters per token), o200k or cl100k " +
        "(needs the optional package gpt-tokenizer) (default: estimate)"
    )
  ),
  retries: Flag.Int("retries").pipe(
    Flag.withDefault(5),
    Flag.withDescription("Retries per request for 429, 5xx, timeouts and connection errors (default: 5)")
  ),
  maxRetryAfter: Flag.String("max-retry-after").pipe(
    Flag.withDefault("5m"),
    Flag.withMetavar("duration"),
    Flag.withDescription("The longest a 429's Retry-After (or x-ratelimit-reset-*) may make a host wait (default: 5m)")
  ),
  adaptive: Flag.Boolean("adaptive").pipe(
    Flag.withDefault(true),
    Flag.withDescription(
      "Lower a host's rate after a 429 that says no wait, and recover it step by step (default: on; --no-adaptive)"
    )
  ),
  maxBody: Flag.String("max-body").pipe(
    Flag.withDefault("16MB"),
    Flag.withMetavar("size"),
    Flag.withDescription(
      "Largest response body kept: 512KB, 16MB, 1GB; a larger one is a BodyTooLarge error (default: 16MB)"
    )
  ),
  timeout: Flag.String("timeout").pipe(
    Flag.withDefault("60s"),
    Flag.withMetavar("duration"),
    Flag.withDescription("Per attempt, until the whole response is read: 500ms, 30s, 2m (default: 60s)")
  ),
  grace: Flag.String("grace").pipe(
    Flag.withDefault("30s"),
    Flag.withMetavar("duration"),
    Flag.withDescription("After Ctrl-C, how long requests in flight may take to finish (default: 30s)")
  ),
  resume: Flag.Boolean("resume").pipe(
    Flag.withDefault(false),
    Flag.withDescription(
      "Continue an interrupted run: skip the ids that already have a record in --out (the same input and --shard)"
    )
  ),
  overwrite: Flag.Boolean("overwrite").pipe(
    Flag.withDefault(false),
    Flag.withDescription("Replace --out if it already has records")
  ),
  redis: Flag.String("redis").pipe(
    Flag.optional,
    Flag.withMetavar("url"),
    Flag.withDescription("Share the rate limits with every pile using this Redis, e.g. redis://host:6379")
  ),
  redisPrefix: Flag.String("redis-prefix").pipe(
    Flag.withDefault("pile:rl:"),
    Flag.withDescription(
      "Prefix of the Redis keys: processes share limits only with the same prefix (default: pile:rl:)"
    )
  ),
  shard: Flag.String("shard").pipe(
    Flag.optional,
    Flag.withMetavar("i/n"),
    Flag.withDescription("Take only the ids of shard i of n (1 <= i <= n), by a stable hash of the id")
  ),
  metrics: Flag.Int("metrics").pipe(
    Flag.optional,
    Flag.withMetavar("port"),
    Flag.withDescription(
      "Serve the executor's Prometheus metrics on http://127.0.0.1:<port>/metrics while the run lasts"
    )
  ),
  quiet: Flag.Boolean("quiet").pipe(
    Flag.withAlias("q"),
    Flag.withDefault(false),
    Flag.withDescription("No progress and no summary table (errors and warnings are still printed)")
  ),
  json: Flag.Boolean("json").pipe(
    Flag.withDefault(false),
    Flag.withDescription("Print the summary as one JSON object on stdout instead of the table")
  ),
  cluster: Flag.String("cluster").pipe(
    Flag.optional,
    Flag.withMetavar("postgres-url"),
    Flag.withDescription("Send the requests to the pile workers of this cluster (see pile worker) instead of here")
  )
} as const

/**
 * `pile run <input> --out <file>`: sends every request of a JSONL file under rate limits and writes one
 * record per finished request.
 *
 * **When to use**
 *
 * Mount it in your own command tree, or run it through `main`.
 *
 * **Details**
 *
 * Flags are converted to `Run.Options`: each `--rate n/unit` and `--rpm n` is a request limit over that
 * window (exact sliding window; with `--burst b`, GCRA spacing with `b` back to back), `--tpm n` a token
 * limit per minute. `--redis` keeps those budgets in Redis, shared by every process with the same limits and
 * `--redis-prefix`. The summary goes to stdout (a table, or JSON with `--json`), progress to stderr.
 *
 * **Gotchas**
 *
 * Without `--resume` or `--overwrite`, an output that already has records is refused (exit 2) rather than
 * mixed with a new run.
 *
 * **Example**
 *
 * ```ts
 * // compile only: mounting the command does not run it
 * import { Command } from "effect/cli"
 * import { Cli } from "@pile/cli"
 *
 * export const tool = Command.make("tool").pipe(Command.withSubcommands([Cli.run]))
 * ```
 *
 * @category commands
 * @since 0.1.0
 */
export const run = Command.make("run", runFlags, (flags) =>
  Effect.gen(function*() {
    const limits = yield* fromResult("run", limitsOf(flags))
    const timeout = yield* fromResult("run", parseDuration("--timeout", flags.timeout))
    const grace = yield* fromResult("run", parseDuration("--grace", flags.grace))
    const maxRetryAfter = yield* fromResult("run", parseDuration("--max-retry-after", flags.maxRetryAfter))
    const maxBody = yield* fromResult("run", parseSize("--max-body", flags.maxBody))
    const countTokens = yield* Tokenizer.load(flags.tokenizer).pipe(Effect.catch((message) => usage("run", message)))
    const shard = Option.isSome(flags.shard) ? yield* fromResult("run", parseShard(flags.shard.value)) : undefined
    if (flags.concurrency < 1) return yield* usage("run", `--concurrency must be >= 1, got ${flags.concurrency}`)
    if (flags.retries < 0) return yield* usage("run", `--retries must be >= 0, got ${flags.retries}`)
    if (Option.isSome(flags.metrics) && !(flags.metrics.value >= 0 && flags.metrics.value <= 65535)) {
      return yield* usage("run", `--metrics must be a port 0..65535 (0: any free port), got ${flags.metrics.value}`)
    }
    const store = Option.isSome(flags.redis)
      ? yield* redisStore(yield* fromResult("run", redisUrl(flags.redis.value)), flags.redisPrefix, (m) =>
        usage("run", m))
      : undefined
    const summary = yield* Run.run({
      input: flags.input,
      output: flags.out,
      concurrency: flags.concurrency,
      limits,
      retries: flags.retries,
      timeout,
      maxBody,
      maxRetryAfter,
      adaptive: flags.adaptive,
      metricsPort: Option.getOrUndefined(flags.metrics),
      countTokens,
      grace,
      resume: flags.resume,
      overwrite: flags.overwrite,
      shard,
      store,
      cluster: Option.getOrUndefined(flags.cluster),
      progress: flags.quiet ? "none" : "auto",
      signals: true,
      onSummary: (summary) =>
        print(summary, flags)
    }).pipe(Effect.catchTag("RunError", (error) =>
      usage("run", error.message)))
    return yield* exitWith(summary.exitCode)
  }).pipe(Effect.scoped)).pipe(
    Command.withDescription(
      "Send every request of a JSONL file under rate limits, with retries, and write one JSON record per " +
        "finished request to --out, as they complete. Resumable after a crash with --resume."
    ),
    Command.withExamples([
      { command: "pile run requests.jsonl --out results.jsonl --rpm 500 --tpm 90000", description: "An LLM batch" },
      { command: "pile run requests.jsonl --out results.jsonl --resume", description: "Finish an interrupted run" },
      {
        command: "pile run requests.jsonl --out part1.jsonl --shard 1/2 --redis redis://10.0.0.5:6379 --rate 100/s",
        description: "One of two machines sharing one limit"
      }
    ])
  )

/**
 * `pile demo`: starts an embedded mock API with its own RPM and TPM limits, latency jitter and a few 500s,
 * generates a batch of chat-like requests, runs them with limits just under the server's, and prints the
 * summary next to the server's own counters.
 *
 * **When to use**
 *
 * To see `pile` work end to end in under a minute, with nothing to set up (`pnpm demo`).
 *
 * **Details**
 *
 * The input and the output are written to a temporary directory (or `--out`), and their paths printed. The
 * demo exits 0 when every request has a record and the server answered no 429 that pile did not count.
 *
 * **Gotchas**
 *
 * `--out` is overwritten.
 *
 * **Example**
 *
 * ```ts
 * // compile only: mounting the command does not run it
 * import { Command } from "effect/cli"
 * import { Cli } from "@pile/cli"
 *
 * export const tool = Command.make("tool").pipe(Command.withSubcommands([Cli.demo]))
 * ```
 *
 * @category commands
 * @since 0.1.0
 */
export const demo = Command.make("demo", {
  requests: Flag.Int("requests").pipe(
    Flag.withDefault(300),
    Flag.withDescription("How many chat-completion requests to send")
  ),
  out: Flag.String("out").pipe(Flag.withAlias("o"), Flag.optional, Flag.withDescription("Where to write the results")),
  concurrency: Flag.Int("concurrency").pipe(Flag.withAlias("c"), Flag.withDefault(16)),
  quiet: Flag.Boolean("quiet").pipe(Flag.withAlias("q"), Flag.withDefault(false)),
  json: Flag.Boolean("json").pipe(Flag.withDefault(false))
}, (flags) =>
  Effect.gen(function*() {
    if (flags.requests < 1) return yield* usage("demo", `--requests must be >= 1, got ${flags.requests}`)
    if (flags.concurrency < 1) return yield* usage("demo", `--concurrency must be >= 1, got ${flags.concurrency}`)
    // Loaded on demand, with the HTTP server it needs.
    const Demo = yield* Effect.promise(() => import("./internal/demo.ts"))
    const code = yield* Demo.demo({
      requests: flags.requests,
      out: Option.getOrUndefined(flags.out),
      concurrency: flags.concurrency,
      quiet: flags.quiet,
      json: flags.json
    }).pipe(
      Effect.catchTag("RunError", (error) => usage("demo", error.message)),
      Effect.catchTags({
        PlatformError: (error) => usage("demo", `cannot prepare the demo files: ${error.message}`),
        ServeError: (error) => usage("demo", `cannot start the mock API: ${causeMessage(error)}`)
      })
    )
    return yield* exitWith(code)
  })).pipe(
    Command.withDescription(
      "Run a batch against an embedded mock API that enforces its own RPM and TPM, and print the summary"
    )
  )

/**
 * The root command, `pile`, with its subcommands `run`, `demo` and `worker`.
 *
 * **When to use**
 *
 * To run the command line with your own services (tests, another runtime); otherwise use `main`.
 *
 * **Details**
 *
 * Built with `effect/cli`: `--help` and `--version` are built in.
 *
 * **Gotchas**
 *
 * Running it needs the `Command.Environment` services and an `HttpClient`.
 *
 * **Example**
 *
 * ```ts
 * // compile only: running it needs the Node services and sends requests
 * import { Command } from "effect/cli"
 * import { Cli } from "@pile/cli"
 *
 * export const program = Command.runWith(Cli.command, { version: Cli.version })(["run", "in.jsonl", "--out", "out.jsonl"])
 * ```
 *
 * @category commands
 * @since 0.1.0
 */
export const command = Command.make("pile").pipe(
  Command.withDescription("Run batches of HTTP requests under rate limits, resumably"),
  Command.withSubcommands([run, demo, Worker.make((code) => new ExitCode({ code }))])
)

/**
 * The boolean flags of `pile run` and `pile worker` (and `--no-adaptive`): they take no separate value. A flag
 * added to the commands must join it: `blackbox-flags.test.ts` reads the boolean flags from `pile run --help`.
 */
const booleanFlags = new Set(["--adaptive", "--no-adaptive", "--json", "--overwrite", "--quiet", "--resume"])

/**
 * Joins an argument that starts with a minus and a digit to the long flag before it (`--timeout -1s` is read
 * as `--timeout=-1s`), so that the flag's own parser says what is allowed. Effect's lexer reads `-1s` as the
 * short flags `-1` and `-s` and reports a missing value and two unknown flags; pile has no flag named by a
 * digit, so such an argument is never a flag. Not after a boolean flag, which takes no value: an input file
 * named `-1.jsonl` after `--quiet` stays what it is. Plain negative numbers (`-3`) are values already, and
 * arguments after `--` are left as they are.
 */
const joinNegativeValues = (args: ReadonlyArray<string>): Array<string> => {
  const out: Array<string> = []
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === "--") return out.concat(args.slice(i))
    const previous = out.at(-1)
    if (
      previous !== undefined && /^--[^=]+$/.test(previous) && !booleanFlags.has(previous) && /^-\d/.test(arg) &&
      !/^-(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/.test(arg)
    ) {
      out[out.length - 1] = `${previous}=${arg}`
    } else out.push(arg)
  }
  return out
}

/** Usage errors as two short lines on stderr, not the whole help. */
const presenter: CliOutput.Presenter = {
  present: (event) =>
    Effect.gen(function*() {
      const formatter = yield* CliOutput.Formatter
      switch (event._tag) {
        case "Help":
          return process.stdout.write(formatter.formatHelpDoc(event.helpDoc) + "\n")
        case "Version":
          return process.stdout.write(formatter.formatVersion(event.name, event.version) + "\n")
        case "InvalidInvocation": {
          const command = event.commandPath.join(" ")
          const messages = event.errors.map((error) => error.message.split("\n")[0]).join("; ")
          return process.stderr.write(`${command}: ${messages}\nRun "${command} --help" for usage.\n`)
        }
      }
    }).pipe(Effect.asVoid)
}

/**
 * The whole `pile` program: parses `process.argv`, runs the command, and fails with `ExitCode` for every
 * exit code but 0.
 *
 * **When to use**
 *
 * `bin.ts` runs it with `NodeRuntime.runMain(Cli.main)`.
 *
 * **Details**
 *
 * Provides the Node services (file system, stdio, terminal) and the undici HTTP client. Usage errors print
 * one line and a pointer to `--help`, and exit 2.
 *
 * **Gotchas**
 *
 * Reads the arguments from `process.argv`.
 *
 * **Example**
 *
 * ```ts
 * // compile only: it reads process.argv and exits the process
 * import { NodeRuntime } from "@effect/platform-node"
 * import { Cli } from "@pile/cli"
 *
 * NodeRuntime.runMain(Cli.main)
 * ```
 *
 * @category running
 * @since 0.1.0
 */
export const main: Effect.Effect<void, ExitCode> = Stdio.Stdio.use(({ args }) =>
  Effect.flatMap(args, (args) => Command.runWith(command, { version })(joinNegativeValues(args)))
).pipe(
  Effect.catchIf(CliError.isCliError, () => Effect.fail(new ExitCode({ code: 2 }))),
  Effect.provide(Layer.mergeAll(
    NodeServices.layer,
    NodeHttpClient.layerUndici,
    CliConfig.layer({ builtIns: [GlobalFlag.Help, GlobalFlag.Version] }),
    CliOutput.layerPresenter(presenter)
  ))
)
