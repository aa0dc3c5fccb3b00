/**
 * Parsers for the values of `pile run`'s flags that have a small grammar of their own: rates (`100/s`),
 * durations (`30s`), shards (`2/3`). Each returns the value or a message that names what was expected.
 */
import type * as RateLimit from "@pile/executor/RateLimit"
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as Result from "effect/Result"

const units: ReadonlyArray<readonly [ReadonlyArray<string>, number]> = [
  [["s", "sec", "second", "seconds"], 1_000],
  [["min", "minute", "minutes"], 60_000],
  [["h", "hour", "hours"], 3_600_000]
]

/** A rate limit as given on the command line: `limit` per `windowMs`. */
export interface Rate {
  readonly limit: number
  readonly windowMs: number
}

/** `100/s`, `5000/min`, `20000/h`: a positive number, a slash, a unit (s, min or h). */
export const parseRate = (text: string): Result.Result<Rate, string> => {
  const match = /^\s*(\d+(?:\.\d+)?)\s*\/\s*([a-z]+)\s*$/i.exec(text)
  if (match === null) return Result.fail(`--rate ${JSON.stringify(text)}: expected <n>/<unit>, e.g. 100/s or 5000/min`)
  const limit = Number(match[1])
  const unit = match[2]!.toLowerCase()
  const found = units.find(([names]) => names.includes(unit))
  if (found === undefined) {
    return Result.fail(`--rate ${JSON.stringify(text)}: unknown unit ${JSON.stringify(unit)} (use s, min or h)`)
  }
  if (!(limit > 0 && Number.isFinite(limit))) {
    return Result.fail(`--rate ${JSON.stringify(text)}: the count must be > 0`)
  }
  return Result.succeed({ limit, windowMs: found[1] })
}

const durationUnits: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1_000,
  sec: 1_000,
  m: 60_000,
  min: 60_000,
  h: 3_600_000
}

/**
 * `500ms`, `30s`, `2m`, `1h`, or a bare number of seconds; returns milliseconds (> 0). Anything else, a
 * negative or zero duration included, gets one message: what is allowed.
 */
export const parseDuration = (flag: string, text: string): Result.Result<number, string> => {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text)
  const factor = match === null ? undefined : match[2] === "" ? 1_000 : durationUnits[match[2]!.toLowerCase()]
  const millis = match === null || factor === undefined ? Number.NaN : Number(match[1]) * factor
  if (!(millis > 0 && Number.isFinite(millis))) {
    return Result.fail(`${flag} ${JSON.stringify(text)}: expected a positive duration such as 500ms, 30s, 2m or 1h`)
  }
  return Result.succeed(millis)
}

const sizeUnits: Readonly<Record<string, number>> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3
}

/** `512KB`, `16MB`, `1GB` (binary: 1 KB = 1024 bytes), or a bare number of bytes; returns bytes (>= 1). */
export const parseSize = (flag: string, text: string): Result.Result<number, string> => {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text)
  const factor = match === null ? undefined : sizeUnits[match[2]!.toLowerCase()]
  if (match === null || factor === undefined) {
    return Result.fail(`${flag} ${JSON.stringify(text)}: expected a size such as 512KB, 16MB or 1GB`)
  }
  const bytes = Math.floor(Number(match[1]) * factor)
  if (!(bytes >= 1 && Number.isFinite(bytes))) return Result.fail(`${flag} ${JSON.stringify(text)}: must be >= 1 byte`)
  return Result.succeed(bytes)
}

/** A shard: `index` of `count`, 1-based, as in `--shard 2/3`. */
export interface Shard {
  readonly index: number
  readonly count: number
}

/** `i/n` with 1 <= i <= n. */
export const parseShard = (text: string): Result.Result<Shard, string> => {
  const match = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text)
  if (match === null) return Result.fail(`--shard ${JSON.stringify(text)}: expected <i>/<n>, e.g. 1/3 (i from 1 to n)`)
  const index = Number(match[1])
  const count = Number(match[2])
  if (!(count >= 1 && index >= 1 && index <= count)) {
    return Result.fail(`--shard ${JSON.stringify(text)}: expected 1 <= i <= n`)
  }
  return Result.succeed({ index, count })
}

/** Milliseconds as a short human duration: `850 ms`, `12.3 s`, `4m05s`, `2h03m`. */
export const formatDuration = (millis: number): string => {
  if (!Number.isFinite(millis)) return "?"
  if (millis < 1_000) return `${Math.round(millis)} ms`
  if (millis < 60_000) return `${(millis / 1_000).toFixed(1)} s`
  const seconds = Math.round(millis / 1_000)
  if (seconds < 3_600) return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, "0")}s`
  const minutes = Math.round(seconds / 60)
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, "0")}m`
}

/** The spacing margin `--burst` adds to GCRA limits. */
export const gcraMargin = "0.2 millis"

/** The rate limits the flags ask for. */
export const limitsOf = (flags: {
  readonly rate: ReadonlyArray<string>
  readonly rpm: Option.Option<number>
  readonly tpm: Option.Option<number>
  readonly burst: Option.Option<number>
}): Result.Result<Array<RateLimit.Limit>, string> => {
  const requests: Array<{ readonly limit: number; readonly window: Duration.Duration }> = []
  for (const text of flags.rate) {
    const rate = parseRate(text)
    if (Result.isFailure(rate)) return Result.fail(rate.failure)
    if (!Number.isInteger(rate.success.limit)) {
      return Result.fail(`--rate ${JSON.stringify(text)}: the count must be a whole number (for 0.5/s write 30/min)`)
    }
    requests.push({ limit: rate.success.limit, window: Duration.millis(rate.success.windowMs) })
  }
  if (Option.isSome(flags.rpm)) {
    if (!(flags.rpm.value >= 1)) return Result.fail(`--rpm must be >= 1, got ${flags.rpm.value}`)
    requests.push({ limit: flags.rpm.value, window: Duration.minutes(1) })
  }
  const limits: Array<RateLimit.Limit> = []
  if (Option.isSome(flags.burst)) {
    const burst = flags.burst.value
    if (!(burst >= 1)) return Result.fail(`--burst must be >= 1, got ${burst}`)
    if (requests.length === 0) return Result.fail("--burst needs a request limit: --rate or --rpm")
    // The margin of the rate-limit guide's recipe for leaky-bucket servers: 0.2 ms more per interval
    // absorbs the jitter between our clock and the server's.
    for (const r of requests) limits.push({ ...r, algorithm: "gcra", burst, margin: gcraMargin })
  } else {
    limits.push(...requests)
  }
  if (Option.isSome(flags.tpm)) {
    if (!(flags.tpm.value >= 1)) return Result.fail(`--tpm must be >= 1, got ${flags.tpm.value}`)
    limits.push({ budget: "tokens", limit: flags.tpm.value, window: "1 minute" })
  }
  return Result.succeed(limits)
}
