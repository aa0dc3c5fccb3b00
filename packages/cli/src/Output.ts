/**
 * The output of `pile run`: one JSON record per finished request, one per line, in completion order, and
 * the scan that `--resume` uses to find which ids are already done.
 *
 * A record is written only when its request is finished for good: it succeeded, or it failed in a way that
 * retrying will not fix (a 4xx other than 429, retries exhausted, an invalid input line). A request
 * interrupted by Ctrl-C gets no record, so a resumed run sends it again.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"

/**
 * Why a request failed, in `Record.error.type`.
 *
 * **When to use**
 *
 * Filter the output by cause, e.g. `jq 'select(.error.type == "RateLimited")'`.
 *
 * **Details**
 *
 * - `"HttpStatus"`: the server answered a status that is not retried (a 4xx other than 429, or a 1xx/3xx).
 * - `"RateLimited"`: 429, and the retries ran out.
 * - `"ServerError"`: 5xx, and the retries ran out.
 * - `"BodyTooLarge"`: the response body is larger than `--max-body`; its reading stopped there (not retried).
 * - `"Timeout"`: no complete response within `--timeout`, and the retries ran out.
 * - `"Transport"`: the connection failed (refused, reset, DNS), and the retries ran out.
 * - `"InvalidInput"`: the input line is not a valid request; it was not sent.
 * - `"TooManyTokens"`: its token cost is larger than the whole token budget; it was not sent.
 * - `"Defect"`: a bug in pile; the message says what happened.
 *
 * **Gotchas**
 *
 * Retried statuses (429, 5xx) appear only when the retries are exhausted.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import type { Output } from "@pile/cli"
 *
 * const retried = (type: Output.ErrorType) => type === "RateLimited" || type === "ServerError"
 * assert.equal(retried("ServerError"), true)
 * assert.equal(retried("HttpStatus"), false)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type ErrorType =
  | "HttpStatus"
  | "RateLimited"
  | "ServerError"
  | "BodyTooLarge"
  | "Timeout"
  | "Transport"
  | "InvalidInput"
  | "TooManyTokens"
  | "Defect"

/**
 * One output line: the final result of one request (or one invalid input line).
 *
 * **When to use**
 *
 * Read the output file line by line and `JSON.parse` each line into a `Record`.
 *
 * **Details**
 *
 * - `id`: the input line's id (its line number when it has none); `line`: its line number.
 * - `ok`: true when the server answered 2xx.
 * - `status`: the HTTP status of the last attempt, or `null` when there was no response.
 * - `attempts`: how many times it was sent (0 when it was not sent).
 * - `latencyMs`: the last attempt's time from sending to the end of the response body, or `null`.
 * - `body`: the last response's body, parsed when it is JSON, else the text (absent without a response).
 * - `error`: present when `ok` is false.
 * - `metadata`: the input line's `metadata`, when it has one.
 *
 * **Gotchas**
 *
 * Records are in completion order, not input order: sort by `line` (or `id`) when order matters.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import type { Output } from "@pile/cli"
 *
 * const record: Output.Record = JSON.parse(
 *   `{"id":"a","line":1,"ok":true,"status":200,"attempts":1,"latencyMs":87,"body":{"answer":42}}`
 * )
 * assert.equal(record.ok, true)
 * assert.deepEqual(record.body, { answer: 42 })
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Record {
  readonly id: string | number
  readonly line: number
  readonly ok: boolean
  readonly status: number | null
  readonly attempts: number
  readonly latencyMs: number | null
  readonly body?: unknown
  readonly error?: { readonly type: ErrorType; readonly message: string } | undefined
  readonly metadata?: unknown
}

/**
 * A record as one line of the output file, newline included.
 *
 * **When to use**
 *
 * To write records in the exact format `pile run` writes and `scan` reads.
 *
 * **Details**
 *
 * Fields that are `undefined` are left out.
 *
 * **Gotchas**
 *
 * None.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import { Output } from "@pile/cli"
 *
 * assert.equal(
 *   Output.encode({ id: 1, line: 1, ok: true, status: 204, attempts: 1, latencyMs: 12 }),
 *   `{"id":1,"line":1,"ok":true,"status":204,"attempts":1,"latencyMs":12}\n`
 * )
 * ```
 *
 * @category encoding
 * @since 0.1.0
 */
export const encode = (record: Record): string => JSON.stringify(record) + "\n"

/**
 * What `scan` found in an existing output file.
 *
 * **When to use**
 *
 * `pile run --resume` skips the ids in `done`, truncates a torn last line, and counts `failed` records in its
 * exit code.
 *
 * **Details**
 *
 * - `done`: ids (string form) that have a record.
 * - `ok`, `failed`: how many of those records succeeded or failed.
 * - `validBytes`: the length of the file up to the end of its last complete line.
 * - `tail`: what follows that: `"none"`; `"torn"`, an incomplete record (a write cut short by a crash), to
 *   be truncated away; or `"unterminated"`, a complete record missing only its line break, to be kept.
 * - `corrupt`: complete lines that are not records (ignored; their ids, if any, are run again).
 *
 * **Gotchas**
 *
 * Counts each id once, even if the file has it twice.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import { Effect, Stream } from "effect"
 * import { Output } from "@pile/cli"
 *
 * const remaining = (scan: Output.ScanResult, ids: ReadonlyArray<string>) => ids.filter((id) => !scan.done.has(id))
 * const file = Output.encode({ id: "a", line: 1, ok: true, status: 200, attempts: 1, latencyMs: 5 })
 * const scan = await Effect.runPromise(Output.scan(Stream.make(new TextEncoder().encode(file))))
 * assert.deepEqual(remaining(scan, ["a", "b"]), ["b"])
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface ScanResult {
  readonly done: ReadonlySet<string>
  readonly ok: number
  readonly failed: number
  readonly validBytes: number
  readonly tail: "none" | "torn" | "unterminated"
  readonly corrupt: number
}

const isRecordLike = (u: unknown): u is { readonly id: string | number; readonly ok: boolean } =>
  typeof u === "object" && u !== null && !Array.isArray(u) &&
  (typeof (u as any).id === "string" || (typeof (u as any).id === "number" && Number.isFinite((u as any).id))) &&
  typeof (u as any).ok === "boolean"

const parseRecord = (text: string): { readonly id: string | number; readonly ok: boolean } | undefined => {
  try {
    const value: unknown = JSON.parse(text)
    return isRecordLike(value) ? value : undefined
  } catch {
    return undefined
  }
}

/**
 * Reads an output file (as a byte stream) and returns which ids are done, tolerating a torn last line.
 *
 * **When to use**
 *
 * Before resuming a run: `pile run --resume` scans `--out` first.
 *
 * **Details**
 *
 * Reads the file as a stream, line by line; memory grows with the number of ids, not with the file size.
 * A crash (even `kill -9`) can leave at most one incomplete record at the end of the file: the scan reports
 * it as a `"torn"` tail instead of failing.
 *
 * **Gotchas**
 *
 * The scan does not change the file: the caller truncates it to `validBytes` (or adds the missing line
 * break) before appending.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import { Effect, Stream } from "effect"
 * import { Output } from "@pile/cli"
 *
 * const first = `{"id":1,"line":1,"ok":true,"status":200,"attempts":1,"latencyMs":5}\n`
 * const file = first + `{"id":2,"li` // a crash cut the second record short
 * const scan = await Effect.runPromise(Output.scan(Stream.make(new TextEncoder().encode(file))))
 * assert.deepEqual([...scan.done], ["1"])
 * assert.equal(scan.tail, "torn")
 * assert.equal(scan.validBytes, first.length)
 * ```
 *
 * @category resume
 * @since 0.1.0
 */
export const scan = <E, R>(bytes: Stream.Stream<Uint8Array, E, R>): Effect.Effect<ScanResult, E, R> =>
  Effect.suspend(() => {
    const done = new Set<string>()
    let ok = 0
    let failed = 0
    let corrupt = 0
    let offset = 0
    let validBytes = 0
    let pending: Array<Uint8Array> = []
    const decoder = new TextDecoder()
    const take = (last: Uint8Array): string => {
      if (pending.length === 0) return decoder.decode(last)
      const parts = [...pending, last]
      pending = []
      const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
      let at = 0
      for (const part of parts) {
        all.set(part, at)
        at += part.length
      }
      return decoder.decode(all)
    }
    const add = (record: { readonly id: string | number; readonly ok: boolean }) => {
      const key = String(record.id)
      if (done.has(key)) return
      done.add(key)
      if (record.ok) ok++
      else failed++
    }
    return Stream.runForEach(bytes, (chunk) =>
      Effect.sync(() => {
        let from = 0
        while (true) {
          const nl = chunk.indexOf(10, from)
          if (nl < 0) break
          const text = take(chunk.subarray(from, nl))
          if (text.trim() !== "") {
            const record = parseRecord(text)
            if (record === undefined) corrupt++
            else add(record)
          }
          validBytes = offset + nl + 1
          from = nl + 1
        }
        if (from < chunk.length) pending.push(chunk.slice(from))
        offset += chunk.length
      })).pipe(Effect.map((): ScanResult => {
        const rest = take(new Uint8Array(0))
        let tail: ScanResult["tail"] = "none"
        if (rest.trim() !== "") {
          const record = parseRecord(rest)
          if (record === undefined) tail = "torn"
          else {
            tail = "unterminated"
            add(record)
          }
        } else if (rest.length > 0) {
          tail = "torn"
        }
        return { done, ok, failed, validBytes, tail, corrupt }
      }))
  })
