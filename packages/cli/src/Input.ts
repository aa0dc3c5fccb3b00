/**
 * The input of `pile run`: one JSON object per line, each an HTTP request. This module parses and validates
 * lines (a bad line becomes an `Invalid` value carrying its line number and a message, never an exception),
 * estimates the token cost of chat-completion-like bodies, and assigns ids to shards.
 *
 * A line's fields: `url` (required, absolute http or https), `method` (default `GET`, or `POST` when there is
 * a body), `headers` (strings), `body` (any JSON: a string is sent as text, anything else as JSON), `id` (a
 * string or a number; default: the line number), `tokens` (the request's cost for a token budget) and
 * `metadata` (copied to the output record as is). Other fields are ignored.
 *
 * @since 0.1.0
 */
import type * as Cause from "effect/Cause"
import * as Exit from "effect/Exit"
import * as HttpMethod from "effect/http/HttpMethod"
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"
import * as Stream from "effect/Stream"

/**
 * A valid input line: a request to send.
 *
 * **When to use**
 *
 * It is what `parse` returns for a good line, and what `pile run` submits to the executor.
 *
 * **Details**
 *
 * `key` is the id's string form: ids are compared as strings, so `5` and `"5"` are the same id. `tokens` is
 * the line's own `tokens`, or an estimate (`estimated: true`) when the body looks like a chat-completion
 * request, or `undefined`.
 *
 * **Gotchas**
 *
 * `body` is `undefined` when the line has no body or `"body": null`.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import { Input } from "@pile/cli"
 *
 * const line = Input.parse(`{"url": "https://example.com/a", "body": {"q": 1}}`, 3)
 * assert.equal(line._tag, "Request")
 * assert.equal(line.id, 3)
 * assert.equal(line._tag === "Request" ? line.method : undefined, "POST")
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Request {
  readonly _tag: "Request"
  /** The 1-based line number in the input. */
  readonly line: number
  readonly id: string | number
  /** The id as a string: what resume and sharding compare. */
  readonly key: string
  readonly url: string
  readonly method: HttpMethod.HttpMethod
  readonly headers: Readonly<Record<string, string>>
  readonly body: unknown
  /** The cost for a token budget: given by the line, estimated, or unknown. */
  readonly tokens: number | undefined
  /** Whether `tokens` is an estimate (see `estimateTokens`). */
  readonly estimated: boolean
  readonly metadata: unknown
}

/**
 * An input line that cannot be sent: not JSON, not an object, no `url`, a bad method, and so on.
 *
 * **When to use**
 *
 * `pile run` turns it into an error record (`error.type` `"InvalidInput"`) and goes on with the next line.
 *
 * **Details**
 *
 * `message` starts with the line number and says what is wrong, e.g.
 * `line 7: "method": expected one of GET, POST, ... got "FETCH"`. `id` is the line's own id when it has a
 * valid one, else the line number.
 *
 * **Gotchas**
 *
 * A line number used as the default id may collide with an explicit numeric id of another line; give every
 * line an explicit id, or none.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import { Input } from "@pile/cli"
 *
 * const line = Input.parse(`{"id": "a", "method": "GET"}`, 2)
 * assert.equal(line._tag, "Invalid")
 * assert.equal(line.id, "a")
 * assert.equal(line._tag === "Invalid" ? line.message : undefined, `line 2: "url" is required`)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Invalid {
  readonly _tag: "Invalid"
  readonly line: number
  readonly id: string | number
  readonly key: string
  readonly message: string
  readonly metadata: unknown
}

/**
 * One parsed input line.
 *
 * **When to use**
 *
 * Match on `_tag` to send a `Request` or record an `Invalid` line.
 *
 * **Details**
 *
 * Blank lines are not lines: `lines` skips them (they keep their place in the line numbering).
 *
 * **Gotchas**
 *
 * None.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import { Input } from "@pile/cli"
 *
 * const describe = (line: Input.Line) => line._tag === "Request" ? `${line.method} ${line.url}` : line.message
 * assert.equal(describe(Input.parse(`{"url": "https://example.com/"}`, 1)), "GET https://example.com/")
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type Line = Request | Invalid

const Id = Schema.Union([Schema.String, Schema.Finite])

const methods: ReadonlyArray<string> = Array.from(HttpMethod.all).filter((m) => m !== "QUERY")

const isHttpUrl = (text: string): boolean => {
  if (!URL.canParse(text)) return false
  const protocol = new URL(text).protocol
  return protocol === "http:" || protocol === "https:"
}

/** A header name is an HTTP token (RFC 9110): letters, digits and ``!#$%&'*+-.^_`|~``, at least one. */
const headerName = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
/** A header value has no control characters but tab (so no CR, LF or NUL), as Node's HTTP client requires. */
const badValueChar = /[^\t\x20-\x7e\x80-\xff]/

/**
 * Why a line's headers cannot be sent: one issue per bad name or value, so a single message names every bad
 * entry (the file is fixed once). A non-string value is reported at its own path, as the schema would.
 */
const badHeaders = (headers: unknown): Array<Schema.FilterIssue> => {
  if (!isObject(headers)) {
    const got = headers === null ? "null" : Array.isArray(headers) ? "an array" : `a ${typeof headers}`
    return [`expected an object of header names to string values, got ${got}`]
  }
  const issues: Array<Schema.FilterIssue> = []
  for (const [name, value] of Object.entries(headers)) {
    if (!headerName.test(name)) issues.push(`invalid header name ${JSON.stringify(name)}`)
    if (typeof value !== "string") issues.push({ path: [name], issue: "expected string" })
    else if (badValueChar.test(value)) {
      issues.push(
        `invalid value of header ${JSON.stringify(name)}: control characters (CR, LF...) are not allowed`
      )
    }
  }
  return issues
}

const isObject = (value: unknown): value is Readonly<Record<string, unknown>> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const isHeaders = (headers: unknown): headers is Readonly<Record<string, string>> =>
  isObject(headers) && Object.values(headers).every((value) => typeof value === "string")

const LineSchema = Schema.Struct({
  id: Schema.optional(Id),
  url: Schema.String.check(
    Schema.makeFilter((url: string) =>
      isHttpUrl(url) || `expected an absolute http:// or https:// URL, got ${JSON.stringify(url)}`
    )
  ),
  method: Schema.optional(Schema.String.check(
    Schema.makeFilter((method: string) =>
      methods.includes(method.toUpperCase()) ||
      `expected one of ${methods.join(", ")}, got ${JSON.stringify(method)}`
    )
  )),
  headers: Schema.optional(
    // Checked by the filter, not by a record schema: a value that fails the schema stops the filter from running,
    // and the bad names would go unreported (and a non-object would read as schema wording). The filter aborts,
    // so the refinement (which only narrows the type) adds no second message.
    Schema.Unknown.check(Schema.makeFilter(badHeaders, undefined, true)).pipe(
      Schema.refine(isHeaders)
    )
  ),
  body: Schema.optional(Schema.Unknown),
  tokens: Schema.optional(Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0))),
  metadata: Schema.optional(Schema.Unknown)
})

const decodeLine = Schema.decodeUnknownExit(LineSchema)
const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

const describeIssues = (cause: Cause.Cause<Schema.SchemaError>): string => {
  const messages: Array<string> = []
  for (const reason of cause.reasons) {
    if (reason._tag !== "Fail") continue
    for (const issue of formatter(reason.error.issue).issues) {
      const path = (issue.path ?? []).map((p) => String(typeof p === "object" ? p.key : p)).join(".")
      const message = issue.message === "Missing key"
        ? "is required"
        : issue.message === "Expected object"
        ? "expected a JSON object"
        : issue.message.charAt(0).toLowerCase() + issue.message.slice(1)
      messages.push(
        path === "" ? message : message === "is required" ? `"${path}" ${message}` : `"${path}": ${message}`
      )
    }
  }
  return messages.length === 0 ? "invalid line" : messages.join("; ")
}

const isRecord = (u: unknown): u is Readonly<Record<string, unknown>> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

const validId = (u: unknown): u is string | number =>
  typeof u === "string" || (typeof u === "number" && Number.isFinite(u))

const invalid = (line: number, json: unknown, message: string): Invalid => {
  const id = isRecord(json) && validId(json["id"]) ? json["id"] : line
  return {
    _tag: "Invalid",
    line,
    id,
    key: String(id),
    message: `line ${line}: ${message}`,
    metadata: isRecord(json) ? json["metadata"] : undefined
  }
}

const parseJson = (
  text: string
): { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly message: string } => {
  try {
    return { ok: true, value: JSON.parse(text) }
  } catch (error) {
    return { ok: false, message: error instanceof Error ? error.message : String(error) }
  }
}

/**
 * Parses one input line (its text without the line break) into a `Request` or an `Invalid` line.
 *
 * **When to use**
 *
 * To validate lines the way `pile run` does, e.g. in a pre-flight check of a large input.
 *
 * **Details**
 *
 * The JSON is decoded with `effect/Schema`; every problem is reported, each with its field:
 * `line 4: "url" is required; "tokens": expected a value greater than or equal to 0`. The method is
 * case-insensitive; a body with `GET`, `HEAD`, `OPTIONS` or `TRACE` is refused.
 *
 * **Gotchas**
 *
 * Never throws: malformed JSON is an `Invalid` line too.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import { Input } from "@pile/cli"
 *
 * const line = Input.parse(`not json`, 9)
 * assert.equal(line._tag, "Invalid")
 * assert.equal(line.id, 9)
 * assert.match(line._tag === "Invalid" ? line.message : "", /^line 9: not valid JSON/)
 * ```
 *
 * @category parsing
 * @since 0.1.0
 */
export const parse = (
  text: string,
  line: number,
  options?: { readonly countTokens?: CountTokens | undefined } | undefined
): Line => {
  const json = parseJson(text)
  if (!json.ok) return invalid(line, undefined, `not valid JSON (${json.message})`)
  const decoded = decodeLine(json.value, { errors: "all" })
  if (Exit.isFailure(decoded)) return invalid(line, json.value, describeIssues(decoded.cause))
  const fields = decoded.value
  const body = fields.body === null ? undefined : fields.body
  const method = (fields.method?.toUpperCase() ?? (body === undefined ? "GET" : "POST")) as HttpMethod.HttpMethod
  if (body !== undefined && !HttpMethod.hasBody(method)) {
    return invalid(line, json.value, `"body": a ${method} request cannot have a body`)
  }
  const estimate = fields.tokens === undefined ? estimateTokens(body, options?.countTokens) : undefined
  const id = fields.id ?? line
  return {
    _tag: "Request",
    line,
    id,
    key: String(id),
    url: fields.url,
    method,
    headers: fields.headers ?? {},
    body,
    tokens: fields.tokens ?? estimate,
    estimated: estimate !== undefined,
    metadata: fields.metadata
  }
}

/**
 * The id of a line without validating the rest of it (the line number when it has no valid id): how a line
 * is assigned to a shard and matched against the output on resume.
 *
 * **When to use**
 *
 * To count or route lines cheaply; `parse` gives the same `key` for the same line.
 *
 * **Details**
 *
 * Returns the id's string form.
 *
 * **Gotchas**
 *
 * Parses the JSON: it is cheaper than `parse`, not free.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import { Input } from "@pile/cli"
 *
 * assert.equal(Input.keyOf(`{"id": 42, "url": "https://example.com"}`, 1), "42")
 * assert.equal(Input.keyOf(`garbage`, 7), "7")
 * ```
 *
 * @category parsing
 * @since 0.1.0
 */
export const keyOf = (text: string, line: number): string => {
  const json = parseJson(text)
  return json.ok && isRecord(json.value) && validId(json.value["id"]) ? String(json.value["id"]) : String(line)
}

/** Every text of a message content, a prompt or an input, in order. */
const texts = (value: unknown, out: Array<string>): Array<string> => {
  if (typeof value === "string") out.push(value)
  else if (Array.isArray(value)) { for (const item of value) texts(item, out) }
  else if (isRecord(value)) {
    // Content parts ({ type: "text", text }) and nested content; images and other parts count nothing.
    texts(value["text"], out)
    texts(value["content"], out)
  }
  return out
}

/**
 * Counts the tokens of a text: a tokenizer's `countTokens`, for `parse`, `lines` and `estimateTokens`.
 *
 * **When to use**
 *
 * To make the token estimate of chat-like bodies exact for the text part (`pile run --tokenizer o200k` loads
 * one from the optional package `gpt-tokenizer`).
 *
 * **Details**
 *
 * It counts the text of the messages (or the prompt, or the input); the per-message overhead and the
 * completion budget are added as without it.
 *
 * **Gotchas**
 *
 * Without one, a text counts one token per 4 characters: about right for English, low for code, JSON and
 * Chinese.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import { Input } from "@pile/cli"
 *
 * const words: Input.CountTokens = (text) => text.split(/\s+/).filter((w) => w !== "").length
 * const body = { messages: [{ role: "user", content: "one two three" }] }
 * assert.equal(Input.estimateTokens(body, words), 3 + 4 + 2) // 3 words, 4 for the message, 2 for the reply
 * ```
 *
 * @category parsing
 * @since 0.1.0
 */
export type CountTokens = (text: string) => number

/**
 * Estimates the tokens a chat-completion-like request will consume, for the TPM budget, when its line gives
 * no `tokens`.
 *
 * **When to use**
 *
 * `parse` calls it for every line without `tokens`; the mock API of `pile demo` charges the same estimate.
 *
 * **Details**
 *
 * A body "looks like" a chat-completion request when it is an object with a `messages` array (chat), a
 * `prompt` (completions) or an `input` (embeddings, responses). The estimate is about 4 characters per
 * token of text (string contents and `text` parts), plus 4 tokens per message and 2 for the reply, plus the
 * completion budget: `max_tokens` (or `max_completion_tokens`, or `max_output_tokens`) times `n` (default
 * 1); 0 when the body sets none. After the response, its `usage.total_tokens` replaces the estimate in the
 * budget.
 *
 * **Gotchas**
 *
 * Without `countTokens`, it is a rule of thumb for English text with OpenAI-style tokenizers, not a
 * tokenizer: pass a tokenizer's count, or give `tokens` on each line, when you know better. Returns
 * `undefined` for other bodies (their token cost is unknown).
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import { Input } from "@pile/cli"
 *
 * // 400 characters: 100 tokens of text, 4 for the message, 2 for the reply, 50 of max_tokens
 * const tokens = Input.estimateTokens({ messages: [{ role: "user", content: "x".repeat(400) }], max_tokens: 50 })
 * assert.equal(tokens, 156)
 * assert.equal(Input.estimateTokens({ query: "not a chat body" }), undefined)
 * ```
 *
 * @category tokens
 * @since 0.1.0
 */
export const estimateTokens = (body: unknown, countTokens?: CountTokens | undefined): number | undefined => {
  if (!isRecord(body)) return undefined
  const parts: Array<string> = []
  let overhead = 0
  if (Array.isArray(body["messages"])) {
    for (const message of body["messages"]) {
      overhead += 4
      texts(isRecord(message) ? message["content"] : message, parts)
    }
    overhead += 2
  } else if (body["prompt"] !== undefined) {
    texts(body["prompt"], parts)
  } else if (body["input"] !== undefined) {
    texts(body["input"], parts)
  } else {
    return undefined
  }
  let promptTokens = 0
  if (countTokens === undefined) {
    let chars = 0
    for (const text of parts) chars += text.length
    promptTokens = Math.ceil(chars / 4)
  } else {
    for (const text of parts) promptTokens += countTokens(text)
  }
  const maxTokens = [body["max_tokens"], body["max_completion_tokens"], body["max_output_tokens"]].find((
    v
  ): v is number => typeof v === "number" && Number.isFinite(v) && v >= 0) ?? 0
  const n = typeof body["n"] === "number" && body["n"] >= 1 ? Math.floor(body["n"]) : 1
  return promptTokens + overhead + maxTokens * n
}

/**
 * The shard (1 to `count`) an id belongs to, by a stable hash of its string form (32-bit FNV-1a over its
 * UTF-16 code units).
 *
 * **When to use**
 *
 * `pile run --shard i/n` keeps the lines whose `shardOf(key, n) === i`, so n processes given the same input
 * and `--shard 1/n` to `--shard n/n` together take every line exactly once.
 *
 * **Details**
 *
 * The hash depends on the id only, not on the machine, the process or the line's position.
 *
 * **Gotchas**
 *
 * Changing `n` reassigns ids: resume a sharded run with the same `n`.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import { Input } from "@pile/cli"
 *
 * const shard = Input.shardOf("request-17", 4)
 * assert.ok(shard >= 1 && shard <= 4)
 * assert.equal(Input.shardOf("request-17", 4), shard) // the same everywhere, every time
 * ```
 *
 * @category sharding
 * @since 0.1.0
 */
export const shardOf = (key: string, count: number): number => {
  let hash = 0x811c9dc5
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193)
  }
  return ((hash >>> 0) % count) + 1
}

/**
 * Splits a byte stream into parsed lines, numbering them from 1 and skipping blank ones.
 *
 * **When to use**
 *
 * To read an input file as a stream (`pile run` gives it `FileSystem.stream(path)`), so a file of any size is
 * never held in memory.
 *
 * **Details**
 *
 * UTF-8, with or without a byte-order mark; `\n`, `\r\n` and `\r` end lines; the last line needs no line
 * break. Each element is `parse(text, lineNumber)`.
 *
 * **Gotchas**
 *
 * A single line is held in memory whole: a line of several megabytes works, a line of gigabytes does not.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import { Effect, Stream } from "effect"
 * import { Input } from "@pile/cli"
 *
 * const bytes = Stream.make(new TextEncoder().encode(`{"url":"https://a.example"}\n\nnot json\n`))
 * const lines = await Effect.runPromise(Stream.runCollect(Input.lines(bytes)))
 * assert.deepEqual(lines.map((line) => [line._tag, line.line]), [["Request", 1], ["Invalid", 3]])
 * ```
 *
 * @category parsing
 * @since 0.1.0
 */
export const lines = <E, R>(
  bytes: Stream.Stream<Uint8Array, E, R>,
  options?: { readonly countTokens?: CountTokens | undefined } | undefined
): Stream.Stream<Line, E, R> => numbered(bytes).pipe(Stream.map(([text, line]) => parse(text, line, options)))

/** @internal Non-blank lines with their 1-based numbers. */
export const numbered = <E, R>(
  bytes: Stream.Stream<Uint8Array, E, R>
): Stream.Stream<readonly [string, number], E, R> =>
  bytes.pipe(
    Stream.decodeText(),
    Stream.splitLines,
    Stream.map((text, i) => [text, i + 1] as const),
    Stream.filter(([text]) => text.trim() !== "")
  )
