// How `pile run` reads a server's answers, end to end against the mock API (real time; assertions are on
// counts and loose bounds, never on speed): bodies over --max-body, the waits a 429 asks for, and the
// adaptive rate after 429s that ask for none.
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { join } from "node:path"
import type * as Run from "../src/Run.ts"
import { type Mock, readRecords, runPile, startMock, tmp, writeLines } from "./helpers.ts"

let mock: Mock
beforeAll(async () => {
  mock = await startMock()
})
afterAll(() => mock.close())

const summaryOf = (stdout: string): Run.Summary => JSON.parse(stdout.trim().split("\n").at(-1)!)

describe.concurrent("pile run reads the answers", () => {
  it("a body over --max-body is a BodyTooLarge record, announced or not; it is not retried", async () => {
    const dir = tmp()
    const input = join(dir, "in.jsonl")
    const out = join(dir, "out.jsonl")
    writeLines(input, [
      { id: "small", url: `${mock.url}/body?size=1000` },
      { id: "announced", url: `${mock.url}/body?size=300000` },
      { id: "chunked", url: `${mock.url}/body?size=300000&chunked=1` }
    ])
    const result = await runPile(["run", input, "--out", out, "--max-body", "64KB", "--json"])
    assert.strictEqual(result.code, 1, result.stderr)
    const byId = new Map(readRecords(out).map((r) => [String(r.id), r]))
    assert.deepInclude(byId.get("small"), { ok: true, status: 200, attempts: 1 })
    assert.strictEqual(byId.get("small")!.body, "x".repeat(1000))
    for (const id of ["announced", "chunked"]) {
      const record = byId.get(id)!
      assert.deepInclude(record, { ok: false, status: 200, attempts: 1 }, id)
      assert.strictEqual(record.error?.type, "BodyTooLarge", id)
      assert.include(record.error?.message, "--max-body (65536 bytes)", id)
      assert.notProperty(record, "body", id)
    }
    assert.deepStrictEqual(summaryOf(result.stdout).failures, { BodyTooLarge: 2 })
  })

  it("a 429 waits what the server asks, for that host: x-ratelimit-reset, and Retry-After capped", async () => {
    const dir = tmp()
    const input = join(dir, "in.jsonl")
    const out = join(dir, "out.jsonl")
    writeLines(input, [
      { id: "reset", url: `${mock.url}/w?throttle=1&reset=400ms` },
      // An hour, capped by --max-retry-after to one second.
      { id: "hour", url: `${mock.url}/w?throttle=1&retryAfterMs=3600000` }
    ])
    const result = await runPile(["run", input, "--out", out, "--max-retry-after", "1s", "--rate", "50/s", "--json"])
    assert.strictEqual(result.code, 0, result.stderr)
    const summary = summaryOf(result.stdout)
    assert.deepStrictEqual([summary.ok, summary.rateLimited, summary.retries], [2, 2, 2])
    // Both waits paused the host (the executor's pause), and neither slowed its rate down.
    assert.isAtLeast(summary.pauses, 1)
    assert.deepStrictEqual(summary.slowedDown, [])
    // The retries waited (at least the 400 ms reset, and the one-second cap), and not an hour.
    assert.isAtLeast(summary.elapsedMs, 950)
    assert.isBelow(summary.elapsedMs, 60_000)
    for (const record of readRecords(out)) assert.deepInclude(record, { ok: true, attempts: 2 })
  })

  it("a 429 on a request's last attempt still pauses its host for the other requests, and counts as a pause", async () => {
    const dir = tmp()
    const input = join(dir, "in.jsonl")
    const out = join(dir, "out.jsonl")
    writeLines(input, [
      { id: "last", url: `${mock.url}/last-attempt?throttle=1&retryAfterMs=1000` },
      { id: "other", url: `${mock.url}/other` }
    ])
    // --retries 0: the 429 is the request's last attempt, no retry follows; -c 1: the other request starts after it.
    const result = await runPile(["run", input, "--out", out, "--retries", "0", "--concurrency", "1", "--json"])
    assert.strictEqual(result.code, 1, result.stderr)
    const summary = summaryOf(result.stdout)
    assert.deepStrictEqual([summary.rateLimited, summary.retries, summary.pauses], [1, 0, 1])
    // The other request waited out the second the server asked for.
    assert.isAtLeast(summary.elapsedMs, 950)
    const byId = new Map(readRecords(out).map((r) => [String(r.id), r]))
    assert.deepInclude(byId.get("last"), { ok: false, status: 429, attempts: 1 })
    assert.deepInclude(byId.get("other"), { ok: true, status: 200, attempts: 1 })
  })

  it("429s without a wait slow the host down instead of pausing it, and every request still succeeds", async () => {
    // The server allows 10 per second and answers a bare 429 beyond that (as nginx limit_req does); pile is
    // told 40 per second.
    const strict = await startMock({ requests: { limit: 10, window: "1 second" }, retryAfter: false })
    try {
      const dir = tmp()
      const input = join(dir, "in.jsonl")
      const out = join(dir, "out.jsonl")
      writeLines(input, Array.from({ length: 60 }, (_, i) => ({ id: i, url: `${strict.url}/a` })))
      const args = ["run", input, "--out", out, "--rate", "40/s", "--burst", "1", "--retries", "20", "--json"]
      const result = await runPile(args)
      assert.strictEqual(result.code, 0, result.stderr)
      const summary = summaryOf(result.stdout)
      assert.strictEqual(summary.ok, 60)
      assert.strictEqual(summary.pauses, 0)
      const [slowed] = summary.slowedDown
      assert.isDefined(slowed)
      assert.isAtLeast(slowed!.slowDowns, 3)
      // Learning: well under the 429s of a client that kept sending 40 per second to a server taking 10
      // (about three per success).
      const stats = await strict.stats()
      assert.isBelow(stats.rateLimited, 75)
      assert.strictEqual(stats.rateLimited, summary.rateLimited)

      // The same without --adaptive keeps its rate: more 429s for the same work.
      const fixed = await runPile([...args.slice(0, 3), join(dir, "fixed.jsonl"), ...args.slice(4), "--no-adaptive"])
      assert.strictEqual(fixed.code, 0, fixed.stderr)
      const fixedSummary = summaryOf(fixed.stdout)
      assert.deepStrictEqual(fixedSummary.slowedDown, [])
      assert.isAbove(fixedSummary.rateLimited, summary.rateLimited)
    } finally {
      await strict.close()
    }
  })
})
