import * as Duration from "effect/Duration";
import * as Option from "effect/Option";
import * as Result from "effect/Result";
const units = [
    [["s", "sec", "second", "seconds"], 1_000],
    [["min", "minute", "minutes"], 60_000],
    [["h", "hour", "hours"], 3_600_000]
];
/** `100/s`, `5000/min`, `20000/h`: a positive number, a slash, a unit (s, min or h). */
export const parseRate = (text) => {
    const match = /^\s*(\d+(?:\.\d+)?)\s*\/\s*([a-z]+)\s*$/i.exec(text);
    if (match === null)
        return Result.fail(`--rate ${JSON.stringify(text)}: expected <n>/<unit>, e.g. 100/s or 5000/min`);
    const limit = Number(match[1]);
    const unit = match[2].toLowerCase();
    const found = units.find(([names]) => names.includes(unit));
    if (found === undefined) {
        return Result.fail(`--rate ${JSON.stringify(text)}: unknown unit ${JSON.stringify(unit)} (use s, min or h)`);
    }
    if (!(limit > 0 && Number.isFinite(limit))) {
        return Result.fail(`--rate ${JSON.stringify(text)}: the count must be > 0`);
    }
    return Result.succeed({ limit, windowMs: found[1] });
};
const durationUnits = {
    ms: 1,
    s: 1_000,
    sec: 1_000,
    m: 60_000,
    min: 60_000,
    h: 3_600_000
};
/** `500ms`, `30s`, `2m`, `1h`, or a bare number of seconds; returns milliseconds (> 0). */
export const parseDuration = (flag, text) => {
    const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
    const factor = match === null ? undefined : match[2] === "" ? 1_000 : durationUnits[match[2].toLowerCase()];
    if (match === null || factor === undefined) {
        return Result.fail(`${flag} ${JSON.stringify(text)}: expected a duration such as 500ms, 30s, 2m or 1h`);
    }
    const millis = Number(match[1]) * factor;
    if (!(millis > 0 && Number.isFinite(millis)))
        return Result.fail(`${flag} ${JSON.stringify(text)}: must be > 0`);
    return Result.succeed(millis);
};
/** `i/n` with 1 <= i <= n. */
export const parseShard = (text) => {
    const match = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
    if (match === null)
        return Result.fail(`--shard ${JSON.stringify(text)}: expected <i>/<n>, e.g. 1/3 (i from 1 to n)`);
    const index = Number(match[1]);
    const count = Number(match[2]);
    if (!(count >= 1 && index >= 1 && index <= count)) {
        return Result.fail(`--shard ${JSON.stringify(text)}: expected 1 <= i <= n`);
    }
    return Result.succeed({ index, count });
};
/** Milliseconds as a short human duration: `850 ms`, `12.3 s`, `4m05s`, `2h03m`. */
export const formatDuration = (millis) => {
    if (!Number.isFinite(millis))
        return "?";
    if (millis < 1_000)
        return `${Math.round(millis)} ms`;
    if (millis < 60_000)
        return `${(millis / 1_000).toFixed(1)} s`;
    const seconds = Math.round(millis / 1_000);
    if (seconds < 3_600)
        return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, "0")}s`;
    const minutes = Math.round(seconds / 60);
    return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, "0")}m`;
};
/** The rate limits the flags ask for. */
export const limitsOf = (flags) => {
    const requests = [];
    for (const text of flags.rate) {
        const rate = parseRate(text);
        if (Result.isFailure(rate))
            return Result.fail(rate.failure);
        if (!Number.isInteger(rate.success.limit)) {
            return Result.fail(`--rate ${JSON.stringify(text)}: the count must be a whole number (for 0.5/s write 30/min)`);
        }
        requests.push({ limit: rate.success.limit, window: Duration.millis(rate.success.windowMs) });
    }
    if (Option.isSome(flags.rpm)) {
        if (!(flags.rpm.value >= 1))
            return Result.fail(`--rpm must be >= 1, got ${flags.rpm.value}`);
        requests.push({ limit: flags.rpm.value, window: Duration.minutes(1) });
    }
    const limits = [];
    if (Option.isSome(flags.burst)) {
        const burst = flags.burst.value;
        if (!(burst >= 1))
            return Result.fail(`--burst must be >= 1, got ${burst}`);
        if (requests.length === 0)
            return Result.fail("--burst needs a request limit: --rate or --rpm");
        for (const r of requests)
            limits.push({ ...r, algorithm: "gcra", burst });
    }
    else {
        limits.push(...requests);
    }
    if (Option.isSome(flags.tpm)) {
        if (!(flags.tpm.value >= 1))
            return Result.fail(`--tpm must be >= 1, got ${flags.tpm.value}`);
        limits.push({ budget: "tokens", limit: flags.tpm.value, window: "1 minute" });
    }
    return Result.succeed(limits);
};
