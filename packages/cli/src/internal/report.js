import { formatDuration } from "./flags.js";
const n = (value) => value.toLocaleString("en-US");
const rate = (value) => value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
const headline = (summary) => {
    const elapsed = formatDuration(summary.elapsedMs);
    switch (summary.stopped) {
        case "completed":
            return `pile: done in ${elapsed}`;
        case "drained":
            return `pile: stopped after a signal (drained) in ${elapsed}`;
        case "cancelled":
            return `pile: stopped after a second signal (cancelled) in ${elapsed}`;
        case "failed":
            return `pile: stopped on an error after ${elapsed}: ${summary.error ?? "unknown error"}`;
    }
};
/** The summary table; `extra` rows (the demo's server view) are appended in the same columns. */
export const table = (summary, extra = []) => {
    const rows = [];
    if (summary.resumed !== undefined) {
        rows.push([
            "resumed",
            `${n(summary.resumed.done)} already in the output (ok ${n(summary.resumed.ok)}, failed ${n(summary.resumed.failed)})`
        ]);
    }
    const details = [];
    if (summary.invalid > 0)
        details.push(`${n(summary.invalid)} invalid input line(s)`);
    if (summary.tooManyTokens > 0)
        details.push(`${n(summary.tooManyTokens)} over the token budget`);
    const records = summary.ok + summary.failed;
    const partial = summary.total !== undefined && summary.total !== records + summary.duplicates;
    rows.push([
        "requests",
        `${n(records)}${partial ? ` of ${n(summary.total)}` : ""}: ok ${n(summary.ok)}, failed ${n(summary.failed)}${details.length === 0 ? "" : ` (${details.join(", ")})`}`
    ]);
    if (summary.duplicates > 0)
        rows.push(["duplicates", `${n(summary.duplicates)} line(s) skipped: id used earlier`]);
    if (summary.remaining !== undefined && summary.remaining > 0) {
        rows.push(["not done", `${n(summary.remaining)}: run again with --resume to finish`]);
    }
    rows.push(["retried", `${n(summary.retried)} request(s), ${n(summary.retries)} retries`]);
    rows.push([
        "429s seen",
        `${n(summary.rateLimited)}${summary.pauses > 0 ? ` (a Retry-After paused the host ${n(summary.pauses)} time(s))` : ""}`
    ]);
    if (summary.serverErrors > 0)
        rows.push(["5xx seen", n(summary.serverErrors)]);
    const limit = summary.throughput.limit;
    rows.push([
        "throughput",
        `${rate(summary.throughput.requests)} req/s, ${rate(summary.throughput.attempts)} attempts/s${limit === undefined ? " (no request limit)" : ` (limit ${rate(limit)}/s = ${n(Math.round(limit * 60))}/min)`}`
    ]);
    if (summary.tokens !== undefined) {
        const t = summary.tokens;
        rows.push([
            "tokens",
            `${n(t.used)} used, ${n(Math.round(t.perMinute))}/min${t.limitPerMinute === undefined ? "" : ` (limit ${n(Math.round(t.limitPerMinute))}/min)`}`
        ]);
    }
    if (summary.latency !== undefined) {
        const l = summary.latency;
        rows.push(["latency", `p50 ${n(l.p50)} ms, p95 ${n(l.p95)} ms, max ${n(l.max)} ms`]);
    }
    rows.push(["output", summary.output], ...extra);
    const width = Math.max(...rows.map(([k]) => k.length));
    return [headline(summary), ...rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`)].join("\n") + "\n";
};
/** The summary as one line of JSON; absent values are `null`, so every field is always there. */
export const json = (summary, extra) => JSON.stringify({ ...summary, ...extra }, (_, value) => value === undefined ? null : value) + "\n";
