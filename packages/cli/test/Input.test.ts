import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Option, Result, Stream } from "effect"
import * as Input from "../src/Input.ts"
import { limitsOf, parseDuration, parseRate, parseShard, parseSize } from "../src/internal/flags.ts"
import { askedWaitOf, exhaustedResetOf, resetMillisOf } from "../src/internal/http.ts"
import * as Tokenizer from "../src/internal/tokenizer.ts"
import * as Output from "../src/Output.ts"

const bytes = (text: string) => Stream.make(new TextEncoder().encode(text))

describe("Input.parse", () => {
  it("a minimal line is a GET, its id the line number", () => {
    const line = Input.parse(`{"url":"https://api.example.com/v1/x"}`, 7)
    assert.strictEqual(line._tag, "Request")
    if (line._tag !== "Request") return
    assert.strictEqual(line.method, "GET")
    assert.strictEqual(line.id, 7)
    assert.strictEqual(line.key, "7")
    assert.isUndefined(line.body)
  })

  it("a body makes it a POST; the method is case-insensitive; ids and metadata are kept", () => {
    const post = Input.parse(`{"id":"a1","url":"http://h/x","body":{"q":1},"metadata":{"k":2}}`, 1)
    assert.strictEqual(post._tag === "Request" ? post.method : "", "POST")
    assert.deepStrictEqual(post.metadata, { k: 2 })
    const put = Input.parse(`{"id":3,"url":"http://h/x","method":"put","body":"text"}`, 2)
    assert.strictEqual(put._tag === "Request" ? put.method : "", "PUT")
    assert.strictEqual(put.key, "3")
  })

  it("bad lines become Invalid values with their line number and a clear message", () => {
    const cases: Array<[string, string]> = [
      [`not json`, "line 4: not valid JSON"],
      [`[1,2]`, "line 4: expected a JSON object"],
      [`{"id":"x"}`, `line 4: "url" is required`],
      [`{"url":"ftp://h/x"}`, `line 4: "url": expected an absolute http:// or https:// URL, got "ftp://h/x"`],
      [`{"url":"http://h","method":"FETCH"}`, `line 4: "method": expected one of GET, POST`],
      [`{"url":"http://h","method":"GET","body":{}}`, `line 4: "body": a GET request cannot have a body`],
      [`{"url":"http://h","headers":{"a":1}}`, `line 4: "headers.a": expected string`],
      [`{"url":"http://h","tokens":-5}`, `line 4: "tokens": expected a value greater than or equal to 0`],
      [`{"url":"http://h","headers":{"x a":"1"}}`, `line 4: "headers": invalid header name "x a"`],
      [`{"url":"http://h","headers":{"":"1"}}`, `line 4: "headers": invalid header name ""`],
      [
        `{"url":"http://h","headers":{"x-a":"1\\r\\nx-b: 2"}}`,
        `line 4: "headers": invalid value of header "x-a": control characters`
      ],
      [`{"url":"http://h","headers":{"x-a":"\\u0000"}}`, `line 4: "headers": invalid value of header "x-a"`]
    ]
    for (const [text, message] of cases) {
      const line = Input.parse(text, 4)
      assert.strictEqual(line._tag, "Invalid", text)
      if (line._tag === "Invalid") assert.include(line.message, message, text)
    }
  })

  it("every bad header is named in one message: bad names, non-string values, control characters", () => {
    const line = Input.parse(`{"url":"http://h","headers":{"x a":"1","ok":"2","b":3,"c":"\\n","y b":4}}`, 4)
    assert.strictEqual(line._tag, "Invalid")
    assert.strictEqual(
      line._tag === "Invalid" ? line.message : "",
      `line 4: "headers": invalid header name "x a"; "headers.b": expected string; ` +
        `"headers": invalid value of header "c": control characters (CR, LF...) are not allowed; ` +
        `"headers": invalid header name "y b"; "headers.y b": expected string`
    )
  })

  it("header names are tokens and values have no control characters but tab", () => {
    const line = Input.parse(`{"url":"http://h","headers":{"X-Api_Key.2":"a b\\tc ü"}}`, 1)
    assert.strictEqual(line._tag, "Request")
  })

  it("an invalid line keeps its own id when it has a valid one", () => {
    const line = Input.parse(`{"id":"keep-me","method":"GET"}`, 9)
    assert.strictEqual(line.id, "keep-me")
    assert.strictEqual(Input.parse(`{"id":{},"method":"GET"}`, 9).id, 9)
  })

  it("a chat-completion body without tokens gets an estimate; given tokens win", () => {
    const body = { messages: [{ role: "user", content: "x".repeat(400) }], max_tokens: 50 }
    const estimated = Input.parse(JSON.stringify({ url: "http://h", body }), 1)
    assert.strictEqual(estimated._tag === "Request" ? estimated.tokens : -1, 156)
    assert.strictEqual(estimated._tag === "Request" && estimated.estimated, true)
    const given = Input.parse(JSON.stringify({ url: "http://h", body, tokens: 10 }), 1)
    assert.strictEqual(given._tag === "Request" ? given.tokens : -1, 10)
    const other = Input.parse(JSON.stringify({ url: "http://h", body: { q: 1 } }), 1)
    assert.strictEqual(other._tag === "Request" ? other.tokens : -1, undefined)
  })
})

describe("Input.estimateTokens", () => {
  it("counts text parts, messages, the reply and max_tokens times n", () => {
    const body = {
      messages: [
        { role: "system", content: "abcd" },
        { role: "user", content: [{ type: "text", text: "abcdefgh" }, { type: "image_url", image_url: { url: "x" } }] }
      ],
      max_completion_tokens: 10,
      n: 2
    }
    // ceil(12 / 4) + 2 * 4 + 2 + 10 * 2
    assert.strictEqual(Input.estimateTokens(body), 33)
    assert.strictEqual(Input.estimateTokens({ prompt: "x".repeat(8), max_tokens: 1 }), 3)
    assert.strictEqual(Input.estimateTokens({ input: ["abcd", "abcd"] }), 2)
    assert.strictEqual(Input.estimateTokens({ q: "x" }), undefined)
    assert.strictEqual(Input.estimateTokens("text"), undefined)
  })
})

describe("Input.shardOf", () => {
  it("is stable, in range, and spreads ids over every shard", () => {
    assert.strictEqual(Input.shardOf("request-17", 4), Input.shardOf("request-17", 4))
    const counts = [0, 0, 0, 0]
    for (let i = 0; i < 4000; i++) counts[Input.shardOf(`id-${i}`, 4) - 1]!++
    for (const count of counts) assert.isTrue(count > 800 && count < 1200, `uneven: ${counts.join(",")}`)
    // The hash is FNV-1a: fixed values, whatever the machine.
    assert.strictEqual(Input.shardOf("", 1000), (0x811c9dc5 % 1000) + 1)
  })
})

describe("Input.lines", () => {
  it.effect("numbers lines from 1, skips blank ones, handles CRLF, a BOM and a last line without break", () =>
    Effect.gen(function*() {
      const text = `\uFEFF{"url":"http://h/1"}\r\n\r\n  \nnot json\n{"url":"http://h/5"}`
      const lines = yield* Stream.runCollect(Input.lines(bytes(text)))
      assert.deepStrictEqual(lines.map((l) => [l._tag, l.line]), [["Request", 1], ["Invalid", 4], ["Request", 5]])
    }))

  it.effect("a line split across chunks, even inside a UTF-8 character, is read whole", () =>
    Effect.gen(function*() {
      const all = new TextEncoder().encode(`{"id":"é€","url":"http://h"}\n`)
      const chunks = Stream.fromIterable([all.slice(0, 9), all.slice(9, 10), all.slice(10)])
      const lines = yield* Stream.runCollect(Input.lines(chunks))
      assert.strictEqual(lines[0]?.id, "é€")
    }))
})

const record = (id: string | number, ok = true) =>
  Output.encode({ id, line: 1, ok, status: 200, attempts: 1, latencyMs: 1 })

describe("Output.scan", () => {
  it.effect("finds done ids and counts failures", () =>
    Effect.gen(function*() {
      const scan = yield* Output.scan(bytes(record("a") + record(2, false) + record("c")))
      assert.deepStrictEqual([...scan.done], ["a", "2", "c"])
      assert.strictEqual(scan.ok, 2)
      assert.strictEqual(scan.failed, 1)
      assert.strictEqual(scan.tail, "none")
    }))

  it.effect("a torn last line is reported with the length to truncate to", () =>
    Effect.gen(function*() {
      const good = record("a") + record("b")
      const scan = yield* Output.scan(bytes(good + `{"id":"c","li`))
      assert.strictEqual(scan.tail, "torn")
      assert.strictEqual(scan.validBytes, new TextEncoder().encode(good).length)
      assert.isFalse(scan.done.has("c"))
    }))

  it.effect("a complete last record without its line break is kept", () =>
    Effect.gen(function*() {
      const scan = yield* Output.scan(bytes(record("a") + record("b").trimEnd()))
      assert.strictEqual(scan.tail, "unterminated")
      assert.isTrue(scan.done.has("b"))
    }))

  it.effect("a corrupt line in the middle is counted and ignored", () =>
    Effect.gen(function*() {
      const scan = yield* Output.scan(bytes(record("a") + "garbage\n" + record("b")))
      assert.strictEqual(scan.corrupt, 1)
      assert.strictEqual(scan.done.size, 2)
    }))
})

const limitsFailure = (flags: Parameters<typeof limitsOf>[0]) => {
  const result = limitsOf(flags)
  return Result.isFailure(result) ? result.failure : ""
}

describe("flag values", () => {
  const none = Option.none<number>()
  it("limits: --rate and --rpm are request limits, --burst makes them GCRA, --tpm a token limit", () => {
    const limits = limitsOf({ rate: ["10/s"], rpm: Option.some(600), tpm: Option.some(90_000), burst: Option.some(2) })
    assert.isTrue(Result.isSuccess(limits))
    if (Result.isFailure(limits)) return
    assert.deepStrictEqual(limits.success.map((l) => [l.budget ?? "requests", l.limit, l.algorithm, l.burst]), [
      ["requests", 10, "gcra", 2],
      ["requests", 600, "gcra", 2],
      ["tokens", 90_000, undefined, undefined]
    ])
    assert.deepStrictEqual(
      limits.success.map((l) => Duration.toMillis(Duration.fromInputUnsafe(l.window))),
      [1000, 60_000, 60_000]
    )
    // --burst uses the margin of the rate-limit guide's recipe for leaky-bucket servers.
    assert.deepStrictEqual(
      limits.success.map((l) =>
        l.margin === undefined ? undefined : Duration.toMillis(Duration.fromInputUnsafe(l.margin))
      ),
      [0.2, 0.2, undefined]
    )
    assert.include(
      limitsFailure({ rate: [], rpm: none, tpm: none, burst: Option.some(1) }),
      "--burst needs a request limit"
    )
    assert.include(limitsFailure({ rate: ["2.5/s"], rpm: none, tpm: none, burst: none }), "whole number")
    assert.include(limitsFailure({ rate: [], rpm: none, tpm: Option.some(0), burst: none }), "--tpm must be >= 1")
  })

  it("rates: n/s, n/min, n/h", () => {
    assert.deepStrictEqual(parseRate("100/s"), Result.succeed({ limit: 100, windowMs: 1000 }))
    assert.deepStrictEqual(parseRate("5000/min"), Result.succeed({ limit: 5000, windowMs: 60_000 }))
    assert.deepStrictEqual(parseRate(" 20 / h "), Result.succeed({ limit: 20, windowMs: 3_600_000 }))
    assert.isTrue(Result.isFailure(parseRate("10/week")))
    assert.isTrue(Result.isFailure(parseRate("0/s")))
    assert.isTrue(Result.isFailure(parseRate("fast")))
  })

  it("durations: ms, s, m, h, bare seconds", () => {
    assert.deepStrictEqual(parseDuration("--timeout", "500ms"), Result.succeed(500))
    assert.deepStrictEqual(parseDuration("--timeout", "1.5s"), Result.succeed(1500))
    assert.deepStrictEqual(parseDuration("--timeout", "2m"), Result.succeed(120_000))
    assert.deepStrictEqual(parseDuration("--timeout", "30"), Result.succeed(30_000))
    assert.isTrue(Result.isFailure(parseDuration("--timeout", "soon")))
    assert.isTrue(Result.isFailure(parseDuration("--timeout", "0s")))
  })

  it("a duration that is not positive names the flag and what is allowed", () => {
    for (const text of ["-1s", "0s", "0", "abc"]) {
      assert.deepStrictEqual(
        parseDuration("--timeout", text),
        Result.fail(`--timeout ${JSON.stringify(text)}: expected a positive duration such as 500ms, 30s, 2m or 1h`)
      )
    }
  })

  it("sizes: bytes, KB, MB, GB (binary)", () => {
    assert.deepStrictEqual(parseSize("--max-body", "100"), Result.succeed(100))
    assert.deepStrictEqual(parseSize("--max-body", "512KB"), Result.succeed(512 * 1024))
    assert.deepStrictEqual(parseSize("--max-body", "16mb"), Result.succeed(16 * 1024 * 1024))
    assert.deepStrictEqual(parseSize("--max-body", "1GiB"), Result.succeed(1024 ** 3))
    assert.isTrue(Result.isFailure(parseSize("--max-body", "0")))
    assert.isTrue(Result.isFailure(parseSize("--max-body", "big")))
  })

  it("shards: i/n with 1 <= i <= n", () => {
    assert.deepStrictEqual(parseShard("2/3"), Result.succeed({ index: 2, count: 3 }))
    assert.isTrue(Result.isFailure(parseShard("0/3")))
    assert.isTrue(Result.isFailure(parseShard("4/3")))
    assert.isTrue(Result.isFailure(parseShard("1")))
  })
})

describe("the waits a 429 asks for", () => {
  it("reset times: Go durations and bare seconds", () => {
    assert.strictEqual(resetMillisOf("20ms"), 20)
    assert.strictEqual(resetMillisOf("1.5s"), 1500)
    assert.strictEqual(resetMillisOf("6m0s"), 360_000)
    assert.strictEqual(resetMillisOf("1h2m3s"), 3_723_000)
    assert.strictEqual(resetMillisOf("2"), 2000)
    assert.isUndefined(resetMillisOf("soon"))
    assert.isUndefined(resetMillisOf("5 s"))
  })

  it("an exhausted budget waits for its reset; the longest of several; none when nothing is exhausted", () => {
    assert.strictEqual(
      exhaustedResetOf({
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "300ms",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "2s"
      }),
      2000
    )
    assert.strictEqual(
      exhaustedResetOf({
        "x-ratelimit-remaining-requests": "12",
        "x-ratelimit-reset-requests": "300ms",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "1s"
      }),
      1000
    )
    assert.isUndefined(exhaustedResetOf({ "x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "1s" }))
    assert.isUndefined(exhaustedResetOf({}))
  })

  it("Retry-After first (milliseconds, seconds or a date), then the rate-limit headers", () => {
    const now = Date.parse("2026-01-01T00:00:00Z")
    assert.strictEqual(askedWaitOf({ "retry-after-ms": "250", "retry-after": "9" }, now), 250)
    assert.strictEqual(askedWaitOf({ "retry-after": "3" }, now), 3000)
    assert.strictEqual(askedWaitOf({ "retry-after": "Thu, 01 Jan 2026 00:00:05 GMT" }, now), 5000)
    assert.strictEqual(
      askedWaitOf({ "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "750ms" }, now),
      750
    )
    assert.isUndefined(askedWaitOf({}, now))
  })
})

/** A toy tokenizer: one token per word. */
const words: Input.CountTokens = (text) => text.split(/\s+/).filter((w) => w !== "").length

describe("--tokenizer", () => {
  it("a tokenizer's count replaces the 4-characters rule for the text; overhead and budget stay", () => {
    const body = { messages: [{ role: "user", content: "one two three" }, { role: "user", content: "four" }] }
    assert.strictEqual(Input.estimateTokens({ ...body, max_tokens: 10 }, words), 4 + 2 * 4 + 2 + 10)
    const line = Input.parse(JSON.stringify({ url: "http://h", body }), 1, { countTokens: words })
    assert.strictEqual(line._tag === "Request" ? line.tokens : -1, 4 + 2 * 4 + 2)
  })

  it.effect("o200k and cl100k come from gpt-tokenizer, and count code denser than 4 characters per token", () =>
    Effect.gen(function*() {
      const code = "def f(x):\n    return {\"a\": [1, 2, 3], \"b\": x}\n".repeat(20)
      for (const name of ["o200k", "cl100k"] as const) {
        const count = yield* Tokenizer.load(name)
        assert.isDefined(count)
        assert.isAbove(count!(code), Math.ceil(code.length / 4), name)
      }
      assert.isUndefined(yield* Tokenizer.load("estimate"))
    }))
})
