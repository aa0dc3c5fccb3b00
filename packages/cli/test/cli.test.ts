// End to end: `pile` as a real child process (Node 24, `src/bin.ts`) against the mock API running in this
// process, on real time. Assertions are on counts and bounds, never on speed.
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { appendFileSync, existsSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import type * as Output from "../src/Output.ts"
import type * as Run from "../src/Run.ts"
import {
  type Finished,
  freePort,
  hasRedis,
  lineCount,
  type Mock,
  readRecords,
  redisRequired,
  runPile,
  startMock,
  startPile,
  startRedis,
  tmp,
  waitUntil,
  writeLines
} from "./helpers.ts"

let mock: Mock
beforeAll(async () => {
  mock = await startMock()
})
afterAll(() => mock.close())

const ids = (records: ReadonlyArray<Output.Record>) => records.map((r) => String(r.id))

/** Every id of `expected` appears exactly once in `records`, and no other id. */
const assertExactlyOnce = (records: ReadonlyArray<Output.Record>, expected: ReadonlyArray<string>) => {
  const seen = ids(records)
  assert.strictEqual(new Set(seen).size, seen.length, "an id appears twice")
  assert.deepStrictEqual([...seen].sort(), [...expected].sort())
}

const summaryOf = (stdout: string): Run.Summary => JSON.parse(stdout.trim().split("\n").at(-1)!)

// The tests of this group run at once (they mostly wait on slow requests and on process start-up); the
// Redis test, which measures timing, runs alone after them.
describe.concurrent("pile run", () => {
  it("writes one record per line: retries 429 and 5xx, records 4xx, turns bad lines into error records", async () => {
    const dir = tmp()
    const input = join(dir, "in.jsonl")
    const out = join(dir, "out.jsonl")
    const u = mock.url
    writeLines(input, [
      { id: "ok", url: `${u}/a` },
      { id: "not-found", url: `${u}/a?status=404` },
      { id: "flaky", url: `${u}/a?fail=2` },
      { id: "throttled", url: `${u}/a?throttle=1&retryAfterMs=300` },
      "this is not json",
      { id: "no-url", method: "GET" },
      { id: "bad-method", url: `${u}/a`, method: "FETCH" },
      { url: `${u}/a?line=8` },
      "",
      { id: "ok", url: `${u}/a?again` },
      { id: "always-500", url: `${u}/a?fail=1000` },
      { id: "post", url: `${u}/echo`, body: { x: 1 }, metadata: { k: "v" } }
    ])
    const result = await runPile(["run", input, "--out", out, "--retries", "2", "--rate", "50/s", "--json"])
    assert.strictEqual(result.code, 1, result.stderr)
    const records = readRecords(out)
    assertExactlyOnce(records, [
      "ok",
      "not-found",
      "flaky",
      "throttled",
      "5",
      "no-url",
      "bad-method",
      "8",
      "always-500",
      "post"
    ])
    const byId = new Map(records.map((r) => [String(r.id), r]))
    assert.deepInclude(byId.get("ok"), { ok: true, status: 200, attempts: 1, line: 1 })
    assert.deepInclude(byId.get("not-found"), { ok: false, status: 404, attempts: 1 })
    assert.strictEqual(byId.get("not-found")?.error?.type, "HttpStatus")
    assert.deepInclude(byId.get("flaky"), { ok: true, status: 200, attempts: 3 })
    assert.deepInclude(byId.get("throttled"), { ok: true, status: 200, attempts: 2 })
    assert.deepInclude(byId.get("always-500"), { ok: false, status: 500, attempts: 3 })
    assert.strictEqual(byId.get("always-500")?.error?.type, "ServerError")
    assert.deepInclude(byId.get("5"), { ok: false, line: 5, attempts: 0, status: null })
    assert.include(byId.get("5")?.error?.message, "line 5: not valid JSON")
    assert.include(byId.get("no-url")?.error?.message, `line 6: "url" is required`)
    assert.include(byId.get("bad-method")?.error?.message, `line 7: "method": expected one of GET`)
    const post = byId.get("post")!
    assert.deepStrictEqual(post.body, { method: "POST", path: "/echo", query: {}, body: { x: 1 } })
    assert.deepStrictEqual(post.metadata, { k: "v" })
    assert.include(result.stderr, `line 10: id "ok" was already used on an earlier line`)

    const summary = summaryOf(result.stdout)
    assert.deepInclude(summary, { total: 11, ok: 5, failed: 5, invalid: 3, duplicates: 1, remaining: 0 })
    assert.deepInclude(summary, { retried: 3, stopped: "completed", exitCode: 1 })
    assert.isAtLeast(summary.rateLimited, 1)
    assert.isAtLeast(summary.pauses, 1)
    assert.strictEqual(summary.ok + summary.failed + summary.duplicates, summary.total)
  })

  it("setup errors: one line on stderr, exit code 2, nothing sent", async () => {
    const own = await startMock()
    const dir = tmp()
    const input = join(dir, "in.jsonl")
    writeLines(input, [{ id: 1, url: `${own.url}/a` }])
    const existing = join(dir, "existing.jsonl")
    writeFileSync(existing, `{"id":1,"line":1,"ok":true,"status":200,"attempts":1,"latencyMs":1}\n`)
    const noRedis = `redis://127.0.0.1:${await freePort()}`
    const cases: Array<[Array<string>, string]> = [
      [["run", join(dir, "missing.jsonl"), "--out", join(dir, "o1.jsonl")], "input file not found"],
      [["run", input, "--out", join(dir, "no", "such", "dir.jsonl")], "cannot write the output"],
      [["run", input, "--out", existing], "already has results: use --resume"],
      [["run", input, "--out", join(dir, "o2.jsonl"), "--rate", "10/week"], `unknown unit "week"`],
      [["run", input, "--out", join(dir, "o5.jsonl"), "--redis", noRedis], `cannot use Redis at ${noRedis}`],
      [["run", input], "Missing required flag: --out"],
      [["run", input, "--out", "/dev/null"], "the output /dev/null is not a regular file"],
      ...(existsSync("/proc/version")
        ? [[["run", input, "--out", "/proc/version"], "cannot write the output"] as [Array<string>, string]]
        : [])
    ]
    // Two at a time: each case starts a process, and the machine may have two cores.
    const results: Array<Finished> = []
    for (let i = 0; i < cases.length; i += 2) {
      results.push(...await Promise.all(cases.slice(i, i + 2).map(([args]) => runPile(args))))
    }
    results.forEach((result, i) => {
      const [args, message] = cases[i]!
      assert.strictEqual(result.code, 2, `${args.join(" ")}: ${result.stderr}`)
      assert.include(result.stderr, message)
      assert.isAtMost(result.stderr.trim().split("\n").length, 2, result.stderr)
      assert.strictEqual(result.stdout, "")
    })
    assert.strictEqual((await own.stats()).requests, 0)
    await own.close()
    assert.strictEqual(lineCount(existing), 1)
  })

  it("--timeout that is not a positive duration: one line naming the flag and what is allowed, exit 2", async () => {
    const dir = tmp()
    const input = join(dir, "in.jsonl")
    writeLines(input, [{ id: 1, url: `${mock.url}/a` }])
    // -1s as its own argument too, which effect's lexer alone would read as the short flags -1 and -s.
    const cases: Array<[Array<string>, string]> = [
      [["--timeout", "-1s"], "-1s"],
      [["--timeout=-1s"], "-1s"],
      [["--timeout", "0s"], "0s"],
      [["--timeout", "abc"], "abc"]
    ]
    const results = await Promise.all(
      cases.map(([flag], i) => runPile(["run", input, "--out", join(dir, `o${i}.jsonl`), ...flag]))
    )
    results.forEach((result, i) => {
      const [flag, text] = cases[i]!
      assert.strictEqual(result.code, 2, `${flag.join(" ")}: ${result.stderr}`)
      assert.strictEqual(
        result.stderr.split("\n")[0],
        `pile run: --timeout "${text}": expected a positive duration such as 500ms, 30s, 2m or 1h`
      )
      assert.isAtMost(result.stderr.trim().split("\n").length, 2, result.stderr)
      assert.strictEqual(result.stdout, "")
    })
  })

  it("after kill -9 and a torn last line, --resume runs the rest: every id exactly once", async () => {
    const dir = tmp()
    const input = join(dir, "in.jsonl")
    const out = join(dir, "out.jsonl")
    const all = Array.from({ length: 300 }, (_, i) => `k${i + 1}`)
    writeLines(input, all.map((id) => ({ id, url: `${mock.url}/slow?delay=80` })))
    const first = startPile(["run", input, "--out", out, "-c", "8", "--quiet"])
    await waitUntil("40 records", () => lineCount(out) >= 40)
    first.child.kill("SIGKILL")
    const killed = await first.done
    assert.strictEqual(killed.signal, "SIGKILL")
    const before = readRecords(out)
    assert.isBelow(before.length, 300, "the run finished before it was killed")
    // What a crash in the middle of a write leaves behind.
    appendFileSync(out, `{"id":"k9999","line":9999,"ok":tr`)
    const resumed = await runPile(["run", input, "--out", out, "-c", "16", "--resume", "--json"])
    assert.strictEqual(resumed.code, 0, resumed.stderr)
    const records = readRecords(out)
    assertExactlyOnce(records, all)
    assert.isTrue(records.every((r) => r.ok))
    const summary = summaryOf(resumed.stdout)
    assert.strictEqual(summary.resumed?.done, before.length)
    assert.strictEqual(summary.ok, 300 - before.length)
  })

  it("Ctrl-C drains, a second Ctrl-C cancels; the output stays consistent and --resume finishes", async () => {
    const dir = tmp()
    const input = join(dir, "in.jsonl")
    const out = join(dir, "out.jsonl")
    const all = Array.from({ length: 80 }, (_, i) => `c${i + 1}`)
    writeLines(input, all.map((id) => ({ id, url: `${mock.url}/slow?delay=400` })))

    // First Ctrl-C: no more input; the requests already admitted finish; the summary is printed.
    const drained = startPile(["run", input, "--out", out, "-c", "4", "--grace", "30s"])
    await waitUntil("4 records", () => lineCount(out) >= 4)
    drained.child.kill("SIGINT")
    const first = await drained.done
    assert.strictEqual(first.code, 130, first.stderr)
    assert.include(first.stderr, "draining")
    assert.include(first.stdout, "stopped after a signal (drained)")
    assert.include(first.stdout, "run again with --resume")
    const afterDrain = readRecords(out)
    assert.isBelow(afterDrain.length, 80)
    assert.isTrue(afterDrain.every((r) => r.ok), "a drained request was recorded as failed")

    // Second Ctrl-C: what is still running is cancelled at once, long before the grace period.
    const cancelled = startPile(["run", input, "--out", out, "-c", "4", "--grace", "60s", "--resume"])
    await waitUntil("new records", () => lineCount(out) > afterDrain.length)
    cancelled.child.kill("SIGINT")
    await waitUntil("the drain notice", () => cancelled.stderr().includes("draining"))
    const signalled = Date.now()
    cancelled.child.kill("SIGINT")
    const second = await cancelled.done
    assert.isBelow(Date.now() - signalled, 20_000)
    assert.strictEqual(second.code, 130, second.stderr)
    assert.include(second.stdout, "cancelled (a second signal)")
    const afterCancel = readRecords(out)
    assert.isTrue(afterCancel.every((r) => r.ok), "a cancelled request was recorded")
    assert.strictEqual(new Set(ids(afterCancel)).size, afterCancel.length)

    const finished = await runPile(["run", input, "--out", out, "-c", "16", "--resume", "--quiet"])
    assert.strictEqual(finished.code, 0, finished.stderr)
    assertExactlyOnce(readRecords(out), all)
  })

  it("--resume with another input or another shard is refused; an input that grew at its end resumes", async () => {
    const dir = tmp()
    const [first, other, out] = [join(dir, "first.jsonl"), join(dir, "other.jsonl"), join(dir, "out.jsonl")]
    writeLines(first, [1, 2, 3].map((i) => ({ id: `f${i}`, url: `${mock.url}/a` })))
    writeLines(other, [1, 2, 3].map((i) => ({ id: `o${i}`, url: `${mock.url}/a` })))
    assert.strictEqual((await runPile(["run", first, "--out", out, "--quiet"])).code, 0)
    const refused = await Promise.all([
      runPile(["run", other, "--out", out, "--resume"]),
      runPile(["run", first, "--out", out, "--resume", "--shard", "1/2"])
    ])
    for (const result of refused) assert.strictEqual(result.code, 2, result.stderr)
    assert.include(refused[0].stderr, `it was started with another input (${first})`)
    assert.include(refused[1].stderr, "it was started with no --shard, not --shard 1/2")
    assertExactlyOnce(readRecords(out), ["f1", "f2", "f3"])
    appendFileSync(first, JSON.stringify({ id: "f4", url: `${mock.url}/a` }) + "\n")
    const grown = await runPile(["run", first, "--out", out, "--resume", "--quiet"])
    assert.strictEqual(grown.code, 0, grown.stderr)
    assertExactlyOnce(readRecords(out), ["f1", "f2", "f3", "f4"])
  })

  it("a grace that runs out is reported as cancelled, with the count", async () => {
    const own = await startMock()
    const dir = tmp()
    const input = join(dir, "in.jsonl")
    const out = join(dir, "out.jsonl")
    writeLines(input, Array.from({ length: 20 }, (_, i) => ({ id: i, url: `${own.url}/stuck?delay=5000&i=${i}` })))
    const pile = startPile(["run", input, "--out", out, "-c", "3", "--grace", "300ms", "--json"])
    const end = Date.now() + 30_000
    while ((await own.stats()).requests < 3 && Date.now() < end) await new Promise((r) => setTimeout(r, 50))
    pile.child.kill("SIGINT")
    const result = await pile.done
    assert.strictEqual(result.code, 130, result.stderr)
    const summary = summaryOf(result.stdout)
    assert.strictEqual(summary.stopped, "cancelled")
    assert.strictEqual(summary.cancelledBy, "grace")
    // The three running, and as many admitted and waiting for a slot, at most: none of them has a record.
    assert.isAtLeast(summary.cancelled, 1)
    assert.isAtMost(summary.cancelled, 6)
    assert.strictEqual(lineCount(out), 0)
    await own.close()
  })

  it("--metrics serves the executor's Prometheus metrics while the run lasts", async () => {
    const dir = tmp()
    const input = join(dir, "in.jsonl")
    writeLines(input, Array.from({ length: 6 }, (_, i) => ({ id: i, url: `${mock.url}/m?delay=300&i=${i}` })))
    const pile = startPile(["run", input, "--out", join(dir, "out.jsonl"), "-c", "2", "--metrics", "0", "--quiet"])
    await waitUntil("the metrics address", () => /metrics at (http\S+)/.test(pile.stderr()), 20_000)
    const url = /metrics at (http\S+)/.exec(pile.stderr())![1]!
    const text = await (await fetch(url)).text()
    assert.match(text, /pile_tasks_submitted_total|pile_task_/)
    const result = await pile.done
    assert.strictEqual(result.code, 0, result.stderr)
    // Closed with the run.
    const after = await fetch(url).then(() => "open", () => "closed")
    assert.strictEqual(after, "closed")
  })

  it("two shards, run at once, together take every line exactly once", async () => {
    const dir = tmp()
    const input = join(dir, "in.jsonl")
    const all = Array.from({ length: 100 }, (_, i) => `s${i + 1}`)
    writeLines(input, [...all.map((id) => ({ id, url: `${mock.url}/a` })), "broken line", { id: "no-url" }])
    const outs = [join(dir, "1.jsonl"), join(dir, "2.jsonl")]
    const results = await Promise.all(
      outs.map((out, i) => runPile(["run", input, "--out", out, "--shard", `${i + 1}/2`, "--quiet"]))
    )
    const [one, two] = outs.map(readRecords) as [Array<Output.Record>, Array<Output.Record>]
    assert.isAbove(one.length, 20)
    assert.isAbove(two.length, 20)
    assertExactlyOnce([...one, ...two], [...all, "101", "no-url"])
    // The invalid lines are failures of whichever shard they fell into.
    results.forEach((result, i) => {
      const shard = i === 0 ? one : two
      assert.strictEqual(result.code, shard.some((r) => !r.ok) ? 1 : 0, result.stderr)
    })
  })
})

describe.skipIf(!hasRedis && !redisRequired)(
  "--redis, with a real redis-server (skipped when redis-server is not installed; PILE_REQUIRE_SERVICES=1 fails instead)",
  () => {
    it("two processes share one rate limit", async () => {
      const redis = await startRedis()
      const limited = await startMock()
      try {
        const dir = tmp()
        const prefix = `pile-test-${process.pid}-${Date.now()}:`
        const inputs = [0, 1].map((p) => {
          const path = join(dir, `in${p}.jsonl`)
          writeLines(path, Array.from({ length: 30 }, (_, i) => ({ id: `p${p}-${i}`, url: `${limited.url}/a` })))
          return path
        })
        const results = await Promise.all(inputs.map((input, p) =>
          runPile([
            "run",
            input,
            "--out",
            join(dir, `out${p}.jsonl`),
            "--rate",
            "15/s",
            "--burst",
            "1",
            "--redis",
            redis.url,
            "--redis-prefix",
            prefix,
            "--quiet"
          ])
        ))
        for (const result of results) assert.strictEqual(result.code, 0, result.stderr)
        const { arrivals } = await limited.stats()
        assert.strictEqual(arrivals.length, 60)
        // One shared budget of 15 per second, evenly spaced (GCRA, burst 1): 60 requests take at least 59 / 15
        // = 3.9 s, and no second holds more than 15 (plus what the time from reservation to arrival at the
        // server, on a busy machine, shifts into it). Two separate budgets would allow 30 per second, in
        // about 2 s.
        let most = 0
        for (let i = 0; i < arrivals.length; i++) {
          let j = i
          while (j < arrivals.length && arrivals[j]! - arrivals[i]! < 1000) j++
          most = Math.max(most, j - i)
        }
        assert.isAtMost(most, 18)
        assert.isAtLeast(arrivals.at(-1)! - arrivals[0]!, 3_000)
      } finally {
        await limited.close()
        await redis.stop()
      }
    })
  }
)

describe("pile demo", () => {
  it("accounts for every request, and the server sent no 429 the summary does not count", async () => {
    const result = await runPile(["demo", "--requests", "40", "--json"])
    assert.strictEqual(result.code, 0, result.stderr)
    const summary = summaryOf(result.stdout) as Run.Summary & { readonly server: { readonly rateLimited: number } }
    assert.strictEqual(summary.total, 40)
    assert.strictEqual(summary.ok + summary.failed, 40)
    assert.isAtMost(summary.server.rateLimited, summary.rateLimited)
  })
})
