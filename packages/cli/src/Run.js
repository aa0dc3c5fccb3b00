/**
 * The batch job behind `pile run`: read a JSONL file of HTTP requests as a stream, send them through one
 * executor under rate limits with retries, write one record per finished request as it completes, and
 * return a summary. Resumable (`resume`), shardable (`shard`), and stoppable in two steps by signals.
 *
 * @since 0.1.0
 */
import * as Executor from "@pile/executor/Executor";
import * as ExecutorError from "@pile/executor/ExecutorError";
import * as Cause from "effect/Cause";
import * as Clock from "effect/Clock";
import * as Data from "effect/Data";
import * as Duration from "effect/Duration";
import * as Effect from "effect/Effect";
import * as Exit from "effect/Exit";
import * as Fiber from "effect/Fiber";
import * as FileSystem from "effect/FileSystem";
import * as Option from "effect/Option";
import * as Queue from "effect/Queue";
import * as Stdio from "effect/Stdio";
import * as Stream from "effect/Stream";
import * as Input from "./Input.js";
import { formatDuration } from "./internal/flags.js";
import * as Http from "./internal/http.js";
import { Reporter } from "./internal/progress.js";
import * as Output from "./Output.js";
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
 * `resume` nor `overwrite` was given), `"OutputUnwritable"`, `"SameFile"` (input and output are one file) or
 * `"InvalidOption"`; `message` is one line for the user.
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
export class RunError extends Data.TaggedError("RunError") {
    get message() {
        return this.detail;
    }
}
class InputFailed extends Data.TaggedError("InputFailed") {
}
class OutputFailed extends Data.TaggedError("OutputFailed") {
}
const describe = (error) => {
    const reason = error.reason;
    if (reason._tag === "NotFound")
        return "no such file or directory";
    if (reason._tag === "PermissionDenied")
        return "permission denied";
    return reason.description ?? reason.message;
};
/** Mutable counters of one run, written by the writer and the request fibers. */
class Tally {
    total = undefined;
    ok = 0;
    failed = 0;
    invalid = 0;
    tooManyTokens = 0;
    duplicates = 0;
    retried = 0;
    attempts = 0;
    rateLimited = 0;
    serverErrors = 0;
    tokensUsed = 0;
    sawUsage = false;
    latencies = [];
}
const usageOf = (body) => {
    if (typeof body !== "object" || body === null)
        return undefined;
    const usage = body.usage;
    if (typeof usage !== "object" || usage === null)
        return undefined;
    const total = usage.total_tokens;
    return typeof total === "number" && Number.isFinite(total) && total >= 0 ? total : undefined;
};
const after = (message, attempts) => attempts > 1 ? `${message} (after ${attempts} attempts)` : message;
/** The record of a finished request, or undefined when it is not finished for good (stopped by a signal). */
const toRecord = (outcome) => {
    const line = outcome.input;
    const base = { id: line.id, line: line.line };
    const metadata = line.metadata === undefined ? {} : { metadata: line.metadata };
    const exit = outcome.exit;
    switch (outcome.kind) {
        case "success": {
            if (exit._tag !== "Success")
                return undefined;
            const response = exit.value;
            return {
                ...base,
                ok: true,
                status: response.status,
                attempts: outcome.attempts,
                latencyMs: response.latencyMs,
                body: response.body,
                ...metadata
            };
        }
        case "failure": {
            if (exit._tag !== "Failure")
                return undefined;
            const found = Cause.findErrorOption(exit.cause);
            if (found._tag === "None")
                return undefined;
            const error = found.value;
            if (error._tag === "InvalidInput") {
                return {
                    ...base,
                    ok: false,
                    status: null,
                    attempts: 0,
                    latencyMs: null,
                    error: { type: "InvalidInput", message: error.message },
                    ...metadata
                };
            }
            const answered = "status" in error;
            return {
                ...base,
                ok: false,
                status: answered ? error.status : null,
                attempts: outcome.attempts,
                latencyMs: answered ? error.latencyMs : null,
                ...(answered ? { body: error.body } : {}),
                error: { type: Http.errorType(error), message: after(error.message, outcome.attempts) },
                ...metadata
            };
        }
        case "rejected": {
            const reason = outcome.rejection?.reason;
            const message = reason?._tag === "CostOverLimit" && line._tag === "Request"
                ? `needs ${reason.cost} tokens${line.estimated ? " (estimated)" : ""}, more than the token budget allows at once (${reason.capacity}): it was not sent`
                : (outcome.rejection?.message ?? "rejected by the executor");
            return {
                ...base,
                ok: false,
                status: null,
                attempts: 0,
                latencyMs: null,
                error: { type: "TooManyTokens", message },
                ...metadata
            };
        }
        case "defect": {
            const message = exit._tag === "Failure" ? Cause.pretty(exit.cause).split("\n")[0] : "unknown defect";
            return {
                ...base,
                ok: false,
                status: null,
                attempts: outcome.attempts,
                latencyMs: null,
                error: { type: "Defect", message },
                ...metadata
            };
        }
        default:
            // interrupted or cancelled by a signal: not final, so `resume` sends it again.
            return undefined;
    }
};
/** A request's key: its host, so a 429's Retry-After pauses the requests to that host. */
const hostOf = (url) => new URL(url).host;
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
const perSecond = (limit) => limit.limit / (Duration.toMillis(limit.window) / 1000);
const positiveInteger = (name, value, fallback, min) => value === undefined
    ? Effect.succeed(fallback)
    : Number.isInteger(value) && value >= min
        ? Effect.succeed(value)
        : Effect.fail(new RunError({ reason: "InvalidOption", detail: `${name} must be an integer >= ${min}, got ${value}` }));
const millisOf = (name, value, fallback) => {
    if (value === undefined)
        return Effect.succeed(fallback);
    const decoded = Duration.fromInput(value);
    return Option.isSome(decoded) && Duration.toMillis(decoded.value) > 0
        ? Effect.succeed(Duration.toMillis(decoded.value))
        : Effect.fail(new RunError({ reason: "InvalidOption", detail: `${name} must be a duration > 0` }));
};
/** Checks everything that can be checked before sending anything, and opens the output. */
const prepare = (options) => Effect.gen(function* () {
    const concurrency = yield* positiveInteger("concurrency", options.concurrency, 16, 1);
    const retries = yield* positiveInteger("retries", options.retries, 5, 0);
    const timeoutMs = yield* millisOf("timeout", options.timeout, 60_000);
    const graceMs = yield* millisOf("grace", options.grace, 30_000);
    const intervalMs = yield* millisOf("progressInterval", options.progressInterval, 5_000);
    if (options.resume === true && options.overwrite === true) {
        return yield* new RunError({ reason: "InvalidOption", detail: "resume and overwrite cannot be used together" });
    }
    const fs = yield* FileSystem.FileSystem;
    const { input, output } = options;
    if (input !== "-") {
        const info = yield* fs.stat(input).pipe(Effect.mapError((error) => error.reason._tag === "NotFound"
            ? new RunError({ reason: "InputNotFound", detail: `input file not found: ${input}` })
            : new RunError({ reason: "InputUnreadable", detail: `cannot read the input ${input}: ${describe(error)}` })));
        if (info.type !== "File") {
            return yield* new RunError({ reason: "InputUnreadable", detail: `the input ${input} is not a file` });
        }
        yield* fs.access(input, { readable: true }).pipe(Effect.mapError((error) => new RunError({ reason: "InputUnreadable", detail: `cannot read the input ${input}: ${describe(error)}` })));
    }
    const existing = yield* Effect.option(fs.stat(output));
    if (Option.isSome(existing) && input !== "-") {
        const [a, b] = yield* Effect.all([fs.realPath(input), fs.realPath(output)]).pipe(Effect.orElseSucceed(() => ["", "-"]));
        if (a === b) {
            return yield* new RunError({
                reason: "SameFile",
                detail: `the input and the output are the same file: ${output}`
            });
        }
    }
    const unwritable = (error) => new RunError({ reason: "OutputUnwritable", detail: `cannot write the output ${output}: ${describe(error)}` });
    let scan;
    if (Option.isSome(existing) && existing.value.type === "File" && Number(existing.value.size) > 0) {
        if (options.resume === true) {
            scan = yield* Output.scan(fs.stream(output)).pipe(Effect.mapError(unwritable));
            if (scan.tail === "torn")
                yield* fs.truncate(output, scan.validBytes).pipe(Effect.mapError(unwritable));
        }
        else if (options.overwrite !== true) {
            return yield* new RunError({
                reason: "OutputExists",
                detail: `the output ${output} already has results: use --resume to continue it, or --overwrite to replace it`
            });
        }
    }
    const file = yield* fs.open(output, { flag: options.overwrite === true ? "w" : "a" }).pipe(Effect.mapError(unwritable));
    if (scan?.tail === "unterminated") {
        yield* file.writeAll(new TextEncoder().encode("\n")).pipe(Effect.mapError(unwritable));
    }
    const progress = options.progress ?? "auto";
    const mode = progress === "auto" ? (process.stderr.isTTY === true ? "bar" : "lines") : progress;
    return { options, concurrency, retries, timeoutMs, graceMs, intervalMs, mode, scan, file };
});
/** Lines this run has to process, counted in a second pass over the input (in the background). */
const countRemaining = (prepared, fs) => {
    const { shard } = prepared.options;
    const done = prepared.scan?.done;
    return Stream.runFold(Input.numbered(fs.stream(prepared.options.input, { chunkSize: 256 * 1024 })), () => 0, (n, [text, line]) => {
        if (shard === undefined && done === undefined)
            return n + 1;
        const key = Input.keyOf(text, line);
        if (shard !== undefined && Input.shardOf(key, shard.count) !== shard.index)
            return n;
        return done?.has(key) === true ? n : n + 1;
    });
};
const execute = (prepared) => Effect.gen(function* () {
    const { options, file } = prepared;
    const fs = yield* FileSystem.FileSystem;
    const stdio = yield* Stdio.Stdio;
    const reporter = new Reporter(prepared.mode);
    const tally = new Tally();
    const limits = options.limits ?? [];
    const tokenLimits = limits.filter((limit) => (limit.budget ?? "requests") === "tokens");
    const requestLimits = limits.filter((limit) => (limit.budget ?? "requests") === "requests");
    const start = yield* Clock.currentTimeMillis;
    reporter.start(start);
    const state = { signal: undefined, phase: "running" };
    const executor = yield* Executor.make({
        name: "pile",
        concurrency: prepared.concurrency,
        capacity: prepared.concurrency,
        limits,
        ...(options.store === undefined ? {} : { store: options.store }),
        policy: Http.policy(prepared.retries),
        shutdown: { mode: "cancel", grace: 0 },
        finalizerTimeout: "5 seconds"
    }).pipe(Effect.mapError((error) => new RunError({ reason: "InvalidOption", detail: error.message })));
    if (options.signals === true) {
        const signals = yield* Queue.unbounded();
        const onSignal = (signal) => {
            Queue.offerUnsafe(signals, signal);
        };
        yield* Effect.acquireRelease(Effect.sync(() => {
            process.on("SIGINT", onSignal);
            process.on("SIGTERM", onSignal);
        }), () => Effect.sync(() => {
            process.off("SIGINT", onSignal);
            process.off("SIGTERM", onSignal);
        }));
        yield* Effect.forkScoped(Effect.gen(function* () {
            const first = yield* Queue.take(signals);
            state.signal = first;
            state.phase = "draining";
            const stats = yield* executor.stats;
            const admitted = stats.running + stats.waiting + stats.queued;
            reporter.log(`pile: ${first}: draining: reading no more input; waiting up to ${formatDuration(prepared.graceMs)} for the ${admitted} request(s) admitted (${stats.running} running). Press Ctrl-C again to cancel them.`, { always: true });
            yield* Effect.forkScoped(executor.shutdown({ mode: "drain", grace: Duration.millis(prepared.graceMs) }));
            yield* Queue.take(signals);
            state.phase = "cancelling";
            reporter.log("pile: cancelling: requests in flight get no record; --resume sends them again.", {
                always: true
            });
            yield* executor.shutdown({ mode: "cancel" });
        }));
    }
    const counting = options.input === "-" ? undefined : yield* Effect.forkScoped(countRemaining(prepared, fs).pipe(Effect.tap((n) => Effect.sync(() => (tally.total = n))), Effect.ignore));
    const snapshot = Effect.gen(function* () {
        const stats = yield* executor.stats;
        const now = yield* Clock.currentTimeMillis;
        return {
            total: tally.total,
            done: tally.ok + tally.failed + tally.duplicates,
            ok: tally.ok,
            failed: tally.failed,
            running: stats.running,
            waiting: stats.waiting + stats.queued,
            rateLimited: tally.rateLimited,
            retries: stats.retries,
            now
        };
    });
    if (prepared.mode !== "none") {
        const interval = prepared.mode === "bar" ? 150 : prepared.intervalMs;
        yield* Effect.forkScoped(Effect.forever(Effect.sleep(Duration.millis(interval)).pipe(Effect.andThen(snapshot), Effect.tap((s) => Effect.sync(() => reporter.update(s))))));
    }
    // The input: parsed lines of this shard, not done before, each id once.
    const done = prepared.scan?.done;
    const shard = options.shard;
    const seen = new Set();
    const source = options.input === "-" ? stdio.stdin : fs.stream(options.input, { chunkSize: 64 * 1024 });
    const inputs = Input.lines(source).pipe(Stream.mapError((error) => new InputFailed({ detail: `reading the input ${options.input} failed: ${describe(error)}` })), Stream.filter((line) => {
        if (shard !== undefined && Input.shardOf(line.key, shard.count) !== shard.index)
            return false;
        if (done !== undefined && done.has(line.key))
            return false;
        if (seen.has(line.key)) {
            tally.duplicates++;
            if (tally.duplicates <= 20) {
                reporter.log(`pile: line ${line.line}: id ${JSON.stringify(line.id)} was already used on an earlier line: skipped${tally.duplicates === 20 ? " (further duplicates are counted, not shown)" : ""}`, { always: true });
            }
            return false;
        }
        seen.add(line.key);
        return true;
    }));
    const onStatus = (status) => {
        if (status === 429)
            tally.rateLimited++;
        else if (status >= 500)
            tally.serverErrors++;
    };
    const attempt = (line) => line._tag === "Invalid"
        ? Effect.fail(new Http.InvalidInput({ detail: line.message }))
        : Effect.andThen(Effect.sync(() => tally.attempts++), Http.send(line, prepared.timeoutMs, onStatus));
    const pile = executor.run(inputs, attempt, {
        key: (line) => line._tag === "Request" ? hostOf(line.url) : undefined,
        cost: (line) => line._tag === "Invalid"
            ? { requests: 0 }
            : tokenLimits.length > 0
                ? { tokens: Math.max(1, Math.ceil(line.tokens ?? 1)) }
                : undefined,
        ...(tokenLimits.length === 0 ? {} : {
            settle: (exit) => {
                const body = Exit.isSuccess(exit)
                    ? exit.value.body
                    : Option.getOrUndefined(Option.map(Cause.findErrorOption(exit.cause), (e) => "body" in e ? e.body : undefined));
                const used = usageOf(body);
                return used === undefined ? undefined : { tokens: used };
            }
        })
    });
    const encoder = new TextEncoder();
    const write = (outcomes) => {
        let text = "";
        for (const outcome of outcomes) {
            const record = toRecord(outcome);
            if (record === undefined)
                continue;
            text += Output.encode(record);
            if (record.ok)
                tally.ok++;
            else
                tally.failed++;
            if (record.error?.type === "InvalidInput")
                tally.invalid++;
            if (record.error?.type === "TooManyTokens")
                tally.tooManyTokens++;
            if (record.attempts > 1)
                tally.retried++;
            if (record.latencyMs !== null)
                tally.latencies.push(record.latencyMs);
            const used = record.ok ? usageOf(record.body) : undefined;
            if (used !== undefined) {
                tally.tokensUsed += used;
                tally.sawUsage = true;
            }
        }
        return text === ""
            ? Effect.void
            : file.writeAll(encoder.encode(text)).pipe(Effect.mapError((error) => new OutputFailed({ detail: `writing the output ${options.output} failed: ${describe(error)}` })));
    };
    const result = yield* Effect.exit(Stream.runForEachArray(pile, write));
    let error;
    if (result._tag === "Failure") {
        const found = Cause.findErrorOption(result.cause);
        if (found._tag === "Some") {
            const e = found.value;
            // Closed: a signal shut the executor down before the whole input was read; that is a drain, not an error.
            if (!(ExecutorError.isExecutorError(e) && e.reason._tag === "Closed" && state.signal !== undefined)) {
                error = e._tag === "InputFailed" || e._tag === "OutputFailed" ? e.detail : e.message;
            }
        }
        else if (!Cause.hasInterruptsOnly(result.cause)) {
            error = Cause.pretty(result.cause).split("\n")[0];
        }
    }
    yield* executor.shutdown({ mode: "cancel" });
    reporter.clear();
    if (error === undefined && state.signal === undefined) {
        // The whole input was read: every line is accounted for, whatever the counting pass got to.
        tally.total = tally.ok + tally.failed + tally.duplicates;
    }
    else if (tally.total === undefined && counting !== undefined) {
        yield* Fiber.await(counting).pipe(Effect.timeoutOption(Duration.seconds(2)));
    }
    const stats = yield* executor.stats;
    const end = yield* Clock.currentTimeMillis;
    const elapsedMs = Math.max(1, end - start);
    const seconds = elapsedMs / 1000;
    const sorted = tally.latencies.slice().sort((a, b) => a - b);
    const sent = tally.ok + tally.failed - tally.invalid - tally.tooManyTokens;
    const requestLimit = requestLimits.length === 0 ? undefined : Math.min(...requestLimits.map(perSecond));
    const tokenLimit = tokenLimits.length === 0 ? undefined : Math.min(...tokenLimits.map(perSecond)) * 60;
    const scan = prepared.scan;
    const failedBefore = scan?.failed ?? 0;
    const stopped = error !== undefined
        ? "failed"
        : state.signal === undefined
            ? "completed"
            : state.phase === "cancelling"
                ? "cancelled"
                : "drained";
    const exitCode = state.signal !== undefined
        ? 130
        : error !== undefined
            ? 3
            : tally.failed > 0 || tally.duplicates > 0 || failedBefore > 0
                ? 1
                : 0;
    const summary = {
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
        tokens: tokenLimit === undefined && !tally.sawUsage
            ? undefined
            : { used: tally.tokensUsed, perMinute: (tally.tokensUsed / seconds) * 60, limitPerMinute: tokenLimit },
        latency: sorted.length === 0 ? undefined : {
            p50: percentile(sorted, 50),
            p95: percentile(sorted, 95),
            p99: percentile(sorted, 99),
            max: sorted[sorted.length - 1]
        },
        stopped,
        error,
        exitCode
    };
    if (options.onSummary !== undefined)
        yield* options.onSummary(summary);
    return summary;
});
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
export const run = (options) => Effect.scoped(Effect.gen(function* () {
    const prepared = yield* prepare(options);
    const body = execute(prepared);
    return yield* (options.signals === true ? Effect.uninterruptible(body) : body);
}));
