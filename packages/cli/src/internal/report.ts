/**
 * The end-of-run summary as a table for people (stdout) or as one JSON object for programs (`--json`).
 */
import type * as Run from "../Run.ts"
import { formatDuration } from "./flags.ts"

const n = (value: number): string => value.toLocaleString("en-US")
const rate = (value: number): string =>
  value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2)

const headline = (summary: Run.Summary): string => {
  const elapsed = formatDuration(summary.elapsedMs)
  switch (summary.stopped) {
    case "completed":
      return `pile: done in ${elapsed}`
    case "drained":
      return `pile: stopped after a signal (drained) in ${elapsed}`
    case "cancelled":
      return `pile: stopped after a signal in ${elapsed}: ${n(summary.cancelled)} request(s) cancelled (${
        summary.stopped === "cancelled" && summary.cancelledBy === "grace" ? "the grace ran out" : "a second signal"
      })`
    case "failed":
      return `pile: stopped on an error after ${elapsed}: ${summary.error ?? "unknown error"}`
  }
}

const windowText = (millis: number): string =>
  millis === 1000
    ? "second"
    : millis === 60_000
    ? "minute"
    : millis === 3_600_000
    ? "hour"
    : millis % 1000 === 0
    ? `${millis / 1000} s`
    : formatDuration(millis)

/** A window's length for "N windows of ...": `1 s`, `10 s`, `1 min`, `1 h`. */
const spanText = (millis: number): string =>
  millis % 3_600_000 === 0
    ? `${millis / 3_600_000} h`
    : millis % 60_000 === 0
    ? `${millis / 60_000} min`
    : millis % 1000 === 0
    ? `${millis / 1000} s`
    : formatDuration(millis)

/** The summary table; `extra` rows (the demo's server view) are appended in the same columns. */
export const table = (summary: Run.Summary, extra: ReadonlyArray<readonly [string, string]> = []): string => {
  const rows: Array<readonly [string, string]> = []
  if (summary.resumed !== undefined) {
    rows.push([
      "resumed",
      `${n(summary.resumed.done)} already in the output (ok ${n(summary.resumed.ok)}, failed ${
        n(summary.resumed.failed)
      })`
    ])
  }
  const details: Array<string> = []
  if (summary.invalid > 0) details.push(`${n(summary.invalid)} invalid input line(s)`)
  if (summary.tooManyTokens > 0) details.push(`${n(summary.tooManyTokens)} over the token budget`)
  const records = summary.ok + summary.failed
  const partial = summary.total !== undefined && summary.total !== records + summary.duplicates
  rows.push([
    "requests",
    `${n(records)}${partial ? ` of ${n(summary.total!)}` : ""}: ok ${n(summary.ok)}, failed ${n(summary.failed)}${
      details.length === 0 ? "" : ` (${details.join(", ")})`
    }`
  ])
  if (summary.duplicates > 0) rows.push(["duplicates", `${n(summary.duplicates)} line(s) skipped: id used earlier`])
  if (summary.remaining !== undefined && summary.remaining > 0) {
    rows.push(["not done", `${n(summary.remaining)}: run again with --resume to finish`])
  }
  const failures = Object.entries(summary.failures).filter(([, count]) => (count ?? 0) > 0)
  if (failures.length > 0) {
    rows.push([
      "failed by",
      failures.sort(([, a], [, b]) => b! - a!).map(([type, count]) => `${type} ${n(count!)}`).join(", ")
    ])
  }
  if (summary.cancelled > 0) {
    rows.push(["cancelled", `${n(summary.cancelled)} admitted, unfinished: no record, --resume sends them again`])
  }
  rows.push(["retried", `${n(summary.retried)} request(s), ${n(summary.retries)} retries`])
  rows.push([
    "429s seen",
    `${n(summary.rateLimited)}${
      summary.pauses > 0 ? ` (a wait the server asked for paused the host ${n(summary.pauses)} time(s))` : ""
    }`
  ])
  for (const slowed of summary.slowedDown) {
    rows.push([
      "slowed down",
      `${slowed.host}: ${n(slowed.slowDowns)} time(s) after 429s without a wait; ended at ${
        Math.round(slowed.factor * 100)
      }% of the limit`
    ])
  }
  if (summary.serverErrors > 0) rows.push(["5xx seen", n(summary.serverErrors)])
  rows.push([
    "throughput",
    `${rate(summary.throughput.requests)} req/s, ${rate(summary.throughput.attempts)} attempts/s${
      summary.limits.some((l) => l.budget === "requests") ? "" : " (no request limit)"
    }`
  ])
  for (const limit of summary.limits) {
    const per = windowText(limit.windowMs)
    rows.push([
      "limit",
      `${n(limit.limit)} ${limit.budget} per ${per}: ${n(limit.used)} used in ${n(limit.windows)} window(s) of ${
        spanText(limit.windowMs)
      }, ${
        n(limit.perWindow >= 100 ? Math.round(limit.perWindow) : Math.round(limit.perWindow * 10) / 10)
      } per window (${Math.round((limit.perWindow / limit.limit) * 100)}% of the limit)`
    ])
  }
  if (summary.tokens !== undefined) rows.push(["tokens", `${n(summary.tokens.used)} used (usage.total_tokens)`])
  if (summary.latency !== undefined) {
    const l = summary.latency
    rows.push(["latency", `p50 ${n(l.p50)} ms, p95 ${n(l.p95)} ms, max ${n(l.max)} ms`])
  }
  rows.push(["output", summary.output], ...extra)
  const width = Math.max(...rows.map(([k]) => k.length))
  return [headline(summary), ...rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`)].join("\n") + "\n"
}

/** The summary as one line of JSON; absent values are `null`, so every field is always there. */
export const json = (summary: Run.Summary, extra?: object): string =>
  JSON.stringify({ ...summary, ...extra }, (_, value) => value === undefined ? null : value) + "\n"
