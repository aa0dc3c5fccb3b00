/**
 * `pile demo`: an embedded mock API that enforces its own RPM and TPM, a generated batch of chat-like
 * requests, and one `Run.run` against it with limits set just under the server's; then the summary, the
 * server's own counters, and a check that they agree.
 */
import * as Effect from "effect/Effect";
import * as FileSystem from "effect/FileSystem";
import * as Path from "effect/Path";
import * as MockServer from "../MockServer.js";
import * as Run from "../Run.js";
import * as Report from "./report.js";
/** The mock API's limits: 1,200 RPM enforced per second, 180,000 TPM enforced per 10 seconds. */
const server = {
    requests: { limit: 20, window: "1 second" },
    tokens: { limit: 30_000, window: "10 seconds" },
    latency: { min: 20, max: 250 },
    errorRate: 0.03,
    seed: 7
};
/** 95% of the server's limits; requests evenly spaced so arrival jitter cannot bunch them into one window. */
const clientLimits = [
    { limit: 19, window: "1 second", algorithm: "gcra", burst: 1 },
    { budget: "tokens", limit: 28_500, window: "10 seconds" }
];
const words = ("pile runs batches of API calls under rate limits with retries resume progress and a summary " +
    "every request gets exactly one record in the output file even after a crash or an interruption").split(" ");
/** A deterministic batch of chat-completion requests of varied size. */
const requestsFile = (url, count) => {
    let seed = 12345;
    const next = () => {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        return seed / 4294967296;
    };
    const lines = [];
    for (let i = 1; i <= count; i++) {
        const length = 10 + Math.floor(next() * 140);
        const content = Array.from({ length }, () => words[Math.floor(next() * words.length)]).join(" ");
        lines.push(JSON.stringify({
            id: `req-${String(i).padStart(4, "0")}`,
            url: `${url}/v1/chat/completions`,
            body: {
                model: "mock-1",
                messages: [{ role: "system", content: "You are terse." }, { role: "user", content }],
                max_tokens: 32 + Math.floor(next() * 224)
            },
            metadata: { batch: "demo" }
        }));
    }
    return lines.join("\n") + "\n";
};
const n = (value) => value.toLocaleString("en-US");
export const demo = (options) => Effect.scoped(Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem;
    const path = yield* Path.Path;
    const mock = yield* MockServer.make(server);
    const report = reporter(options);
    const dir = yield* fs.makeTempDirectory({ prefix: "pile-demo-" });
    const input = path.join(dir, "requests.jsonl");
    const output = options.out ?? path.join(dir, "results.jsonl");
    yield* fs.writeFileString(input, requestsFile(mock.url, options.requests));
    if (!options.json && !options.quiet) {
        process.stdout.write([
            `pile demo: a mock chat-completion API at ${mock.url}`,
            `  server limits  1,200 requests/min (enforced as 20 per second), 180,000 tokens/min (as 30,000 per 10 s)`,
            `  server faults  latency 20-250 ms, about 3% of requests answered 500`,
            `  pile limits    19 requests/s evenly spaced, 28,500 tokens per 10 s (95% of the server's)`,
            `  requests       ${n(options.requests)} chat completions from ${input}`,
            ""
        ].join("\n"));
    }
    const summary = yield* Run.run({
        input,
        output,
        overwrite: true,
        concurrency: options.concurrency,
        limits: clientLimits,
        retries: 5,
        timeout: "10 seconds",
        grace: "10 seconds",
        progress: options.quiet ? "none" : "auto",
        signals: true,
        onSummary: (summary) => Effect.flatMap(mock.stats, (stats) => Effect.sync(() => report(summary, stats)))
    });
    const stats = yield* mock.stats;
    const { accounted, agrees, complete } = checks(summary, stats);
    if (summary.exitCode === 130)
        return 130;
    if (!accounted || !agrees)
        return 1;
    return summary.exitCode === 3 ? 3 : complete ? 0 : 1;
}));
const checks = (summary, stats) => ({
    accounted: summary.total === undefined ||
        summary.ok + summary.failed + (summary.remaining ?? 0) + summary.duplicates === summary.total,
    complete: summary.total !== undefined && summary.ok + summary.failed === summary.total,
    agrees: stats.rateLimited <= summary.rateLimited
});
const reporter = (options) => (summary, stats) => {
    const { agrees, complete } = checks(summary, stats);
    if (options.json) {
        process.stdout.write(Report.json(summary, {
            server: {
                requests: stats.requests,
                rateLimited: stats.rateLimited,
                serverErrors: stats.serverErrors,
                tokens: stats.tokens
            }
        }));
    }
    else if (!options.quiet) {
        process.stdout.write(Report.table(summary, [
            [
                "server saw",
                `${n(stats.requests)} requests: ${n(stats.rateLimited)} answered 429, ${n(stats.serverErrors)} answered 500; ${n(stats.tokens)} tokens charged`
            ],
            [
                "check",
                `${complete
                    ? "every request accounted for (ok + failed = total)"
                    : summary.stopped !== "completed"
                        ? `stopped early: ${n(summary.remaining ?? 0)} request(s) not done`
                        : "NOT every request has a record"}; ${agrees ? "no 429 from the server went uncounted" : "the server sent 429s that pile did not count"}`
            ]
        ]));
    }
};
