// A long-lived executor: what it keeps follows live work, never history (issue 20). Per-key state expires
// (rate limits, metric series, the breaker) without loosening any bound, outcomes are kept only for a reader,
// and a Pile reader is handed every outcome buffered at once.
import { assert, describe, it } from "@effect/vitest"
import { Clock, Data, Duration, Effect, Exit, Fiber, Metric, Ref, Stream } from "effect"
import { CircuitBreaker } from "effect/persistence"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import * as Executor from "../src/Executor.ts"
import { bucketCacheSize } from "../src/internal/config.ts"
import { names, otherKey } from "../src/internal/instruments.ts"
import { type Algorithm, type Bucket, MemoryLimiter } from "../src/internal/limiter.ts"
import { paceBound } from "../src/internal/outcomeBuffer.ts"
import * as RateLimit from "../src/RateLimit.ts"
import { engineOf, runs } from "./support.ts"

class Throttled extends Data.TaggedError("Throttled")<{ readonly retryAfter: Duration.Duration }> {}

const models: ReadonlyArray<Algorithm> = ["sliding-window", "gcra", "token-bucket"]

const bucketFor = (algorithm: Algorithm, key: string): Bucket => ({
  id: `test|${algorithm}|${key}`,
  budget: "requests",
  algorithm,
  limit: 3,
  window: 100,
  burst: algorithm === "token-bucket" ? 3 : 1,
  margin: 0
})

/** Starts of key "a" under one per-key limit of 2 per second, before and after its state was dropped. */
const startsAcrossADrop = (algorithm: Algorithm) =>
  Effect.gen(function*() {
    const store = RateLimit.memoryStore()
    const executor = yield* Executor.make({
      concurrency: 10,
      shutdown: { mode: "cancel" },
      store,
      limits: [{ perKey: true, limit: 2, window: "1 second", algorithm, burst: algorithm === "gcra" ? 1 : 2 }]
    })
    const starts = yield* Ref.make<Array<number>>([])
    const task = Effect.flatMap(Clock.currentTimeMillis, (at) => Ref.update(starts, (xs) => [...xs, at]))
    const burst = Effect.forEach([1, 2, 3], () => executor.submit(task, { key: "a" }))
    for (const handle of yield* burst) yield* Effect.forkChild(handle.await)
    yield* TestClock.adjust("3 seconds")
    const heldBefore = store.memory!.size
    yield* TestClock.adjust("5 seconds")
    const heldAfter = store.memory!.size
    // The key comes back: the same burst again.
    const again = yield* burst
    yield* TestClock.adjust("3 seconds")
    for (const handle of again) assert.strictEqual((yield* handle.outcome).kind, "success")
    return { starts: yield* Ref.get(starts), heldBefore, heldAfter }
  })

// Two failures in a row trip the circuit. A key idle for longer than its lifetime forgets its first
// failure: the second then does not trip it, and a third task runs.
const afterPause = (pause: Duration.Input, idleTimeToLive?: Duration.Input) =>
  Effect.gen(function*() {
    const executor = yield* Executor.make({
      concurrency: 1,
      shutdown: { mode: "cancel" },
      circuitBreaker: {
        tripPolicy: CircuitBreaker.consecutive(2),
        openDuration: "1 second",
        ...(idleTimeToLive === undefined ? {} : { idleTimeToLive })
      }
    })
    yield* (yield* executor.submit(Effect.fail("down"), { key: "a" })).await
    yield* TestClock.adjust(pause)
    yield* (yield* executor.submit(Effect.fail("down"), { key: "a" })).await
    return (yield* (yield* executor.submit(Effect.succeed("up"), { key: "a" })).outcome).kind
  })

describe("rate-limit state expires", () => {
  it.each(models)("%s: sweeping idle states never changes a decision, and leaves nothing once idle", (algorithm) => {
    // Two limiters see the same reservations; one is swept at random times. A dropped state must be exactly
    // a fresh one, so both grant and deny alike, at the same times.
    const op = fc.record({
      key: fc.constantFrom("a", "b", "c"),
      amount: fc.integer({ min: 1, max: 3 }),
      gap: fc.integer({ min: 0, max: 80 }),
      sweep: fc.boolean()
    })
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 60 }), (ops) => {
        const swept = new MemoryLimiter()
        const kept = new MemoryLimiter()
        let now = 0
        let id = 0
        for (const o of ops) {
          now += o.gap
          if (o.sweep) swept.sweep(now)
          const claims = [{ bucket: bucketFor(algorithm, o.key), amount: o.amount }]
          const a = swept.reserve(`r${id}`, claims, now)
          const b = kept.reserve(`r${id++}`, claims, now)
          assert.deepStrictEqual("claims" in a, "claims" in b, `at ${now}`)
          if (!("claims" in a) && !("claims" in b)) assert.strictEqual(a.retryAt, b.retryAt)
        }
        // Long after the last window, a sweep leaves nothing.
        assert.strictEqual(swept.sweep(now + 10_000), 0)
      }),
      { numRuns: runs(300) }
    )
  })

  it("a state inside its window is kept: the sweep drops only what a fresh state would decide alike", () => {
    for (const algorithm of models) {
      const limiter = new MemoryLimiter()
      const bucket = bucketFor(algorithm, "a")
      limiter.reserve("r1", [{ bucket, amount: 3 }], 0)
      assert.strictEqual(limiter.sweep(50), 1, `${algorithm}: still inside its window at 50`)
      assert.strictEqual(limiter.sweep(100), 0, `${algorithm}: neutral at 100`)
    }
  })

  it.effect("sliding-window: a key whose state was dropped comes back under the same bound (I12)", () =>
    Effect.gen(function*() {
      const { heldAfter, starts } = yield* startsAcrossADrop("sliding-window")
      assert.strictEqual(heldAfter, 0, "the idle key's state was dropped")
      assert.strictEqual(starts.length, 6)
      // No window of 1 s anywhere on the time line holds more than 2 starts, across the drop too.
      for (const s of starts) assert.isAtMost(starts.filter((t) => t >= s && t < s + 1000).length, 2, `from ${s}`)
      assert.deepStrictEqual(starts, [0, 0, 1000, 8000, 8000, 9000])
    }))

  it.effect("gcra: a key whose state was dropped comes back under the same bound (I12)", () =>
    Effect.gen(function*() {
      const { heldAfter, starts } = yield* startsAcrossADrop("gcra")
      assert.strictEqual(heldAfter, 0, "the idle key's state was dropped")
      assert.strictEqual(starts.length, 6)
      // Burst 1: starts at least W / L = 500 ms apart, across the drop too.
      for (let i = 1; i < starts.length; i++) assert.isAtLeast(starts[i]! - starts[i - 1]!, 500, `start ${i}`)
      assert.deepStrictEqual(starts, [0, 500, 1000, 8000, 8500, 9000])
    }))

  it.effect("token-bucket: a key whose state was dropped comes back under the same bound (I12)", () =>
    Effect.gen(function*() {
      const { heldAfter, starts } = yield* startsAcrossADrop("token-bucket")
      assert.strictEqual(heldAfter, 0, "the idle key's state was dropped")
      assert.strictEqual(starts.length, 6)
      // B + r·t: over any interval [s, t], at most 2 + 2·(t - s)/1000 starts.
      for (const s of starts) {
        for (const t of starts) {
          if (t < s) continue
          const n = starts.filter((x) => x >= s && x <= t).length
          assert.isAtMost(n, 2 + (2 * (t - s)) / 1000, `[${s}, ${t}]`)
        }
      }
      assert.deepStrictEqual(starts, [0, 0, 500, 8000, 8000, 8500])
    }))

  it("a reservation whose state was dropped still pays an extra charge, and its refund is dropped", () => {
    // GCRA, 3 per 100 ms, burst 1: one unit every 33.3 ms. A reservation of 1 at 0; its state is neutral at
    // 40 and dropped; settling it to 4 units (3 more) must still push the next start to 40 + 3 intervals.
    const limiter = new MemoryLimiter()
    const bucket = bucketFor("gcra", "a")
    const granted = limiter.reserve("r1", [{ bucket, amount: 1 }], 0)
    assert.isTrue("claims" in granted)
    assert.strictEqual(limiter.sweep(40), 0)
    limiter.settle(granted as RateLimit.Reservation, [4])
    const next = limiter.reserve("r2", [{ bucket, amount: 1 }], 41)
    assert.isFalse("claims" in next, "the extra charge counts from the drop")
    assert.closeTo((next as { readonly retryAt: number }).retryAt, 40 + 100, 1e-9)
    // A refund of a dropped state gives nothing back.
    const tokens = new MemoryLimiter()
    const tb = bucketFor("token-bucket", "a")
    const all = tokens.reserve("t1", [{ bucket: tb, amount: 3 }], 0) as RateLimit.Reservation
    tokens.sweep(1000)
    tokens.settle(all, [0])
    assert.deepStrictEqual(all.charged, [3], "the refund was dropped")
  })

  it.effect("the executor's cache of rate buckets stays bounded however many keys it sees", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make({ limits: [{ perKey: true, limit: 5, window: "1 second" }] })
      const specs = (executor as unknown as { specs: { readonly cachedBuckets: number } }).specs
      let most = 0
      for (let i = 0; i < bucketCacheSize + 500; i++) {
        yield* executor.submit(Effect.void, { key: `k${i}` })
        most = Math.max(most, specs.cachedBuckets)
      }
      assert.strictEqual(most, bucketCacheSize)
      assert.isBelow(specs.cachedBuckets, bucketCacheSize)
    }))

  it.effect("a key inside its window keeps its state through a sweep", () =>
    Effect.gen(function*() {
      const store = RateLimit.memoryStore()
      const executor = yield* Executor.make({
        shutdown: { mode: "cancel" },
        store,
        limits: [{ perKey: true, limit: 1, window: "10 seconds" }]
      })
      yield* (yield* executor.submit(Effect.void, { key: "a" })).await
      yield* TestClock.adjust("9 seconds") // the sweep at 10 s has not come; the window ends at 10 s
      assert.strictEqual(store.memory!.size, 1)
      yield* TestClock.adjust("12 seconds") // sweeps at 10 s (window just over) and 20 s
      assert.strictEqual(store.memory!.size, 0)
    }))
})

describe("key lines expire", () => {
  it.effect("a key line goes once it holds no task and its 429 pause has passed", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make({
        shutdown: { mode: "cancel" },
        limits: [{ perKey: true, limit: 1, window: "1 second" }]
      })
      const admission = engineOf(executor).admission
      // Two tasks of key "a": the second waits in the key's line for the budget.
      yield* executor.submit(Effect.void, { key: "a" })
      const second = yield* executor.submit(Effect.void, { key: "a" })
      assert.strictEqual(admission.lineCount, 1)
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* second.outcome).kind, "success")
      // A failure with a retry-after pauses the key: the line stays for the pause, then goes.
      yield* executor.submit(Effect.fail(new Throttled({ retryAfter: Duration.seconds(5) })), { key: "b" })
      yield* TestClock.adjust("1 second")
      assert.strictEqual(admission.lineCount, 1, "b is paused")
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(admission.lineCount, 0)
    }))
})

describe("what finished work leaves behind", () => {
  it.effect("tasks with no key, deadline or timeout leave no timer once they finish", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make({ concurrency: 2, shutdown: { mode: "cancel" } })
      const handles = yield* Effect.forEach([10, 20, 0], (ms) => executor.submit(Effect.sleep(ms)))
      yield* TestClock.adjust(20)
      for (const handle of handles) assert.strictEqual((yield* handle.outcome).kind, "success")
      assert.strictEqual(engineOf(executor).dispatcher.timers.size, 0)
    }))

  it.effect("the sweep comes back while per-key state is left, then stops: an idle executor holds no timer", () =>
    Effect.gen(function*() {
      const store = RateLimit.memoryStore()
      const executor = yield* Executor.make({
        shutdown: { mode: "cancel" },
        store,
        limits: [{ perKey: true, limit: 2, window: "1 second" }]
      })
      const timers = engineOf(executor).dispatcher.timers
      yield* (yield* executor.submit(Effect.void, { key: "a" })).await
      assert.strictEqual(store.memory!.size, 1)
      assert.strictEqual(timers.size, 1, "a task with a key finished: a sweep is due")
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(store.memory!.size, 0, "swept")
      assert.strictEqual(timers.size, 0, "nothing left to sweep: no timer")
    }))

  it.effect("a draining executor starts no sweep: a keyed task finishing during the drain sets no timer", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make({
        concurrency: 2,
        shutdown: { mode: "cancel" },
        limits: [{ perKey: true, limit: 10, window: "1 second" }]
      })
      const timers = engineOf(executor).dispatcher.timers
      yield* executor.submit(Effect.sleep(10), { key: "a" })
      yield* executor.submit(Effect.sleep(100))
      const shutdown = yield* Effect.forkChild(executor.shutdown({ mode: "drain" }))
      yield* TestClock.adjust(20)
      assert.deepStrictEqual([(yield* executor.stats).phase, (yield* executor.stats).finished], ["draining", 1])
      assert.strictEqual(timers.size, 0)
      yield* TestClock.adjust(100)
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(shutdown)))
    }))

  it.effect("with a store of its own (no in-memory limiter) the sweep leaves the store alone and the executor runs on", () =>
    Effect.gen(function*() {
      const inner = RateLimit.memoryStore()
      const store: RateLimit.RateLimitStore = {
        reserve: (id, claims, now) => inner.reserve(id, claims, now),
        settle: (reservation, actual) => inner.settle(reservation, actual)
      }
      const executor = yield* Executor.make({
        shutdown: { mode: "cancel" },
        store,
        limits: [{ perKey: true, limit: 2, window: "1 second" }]
      })
      const first = yield* executor.submit(Effect.succeed(1), { key: "a" })
      yield* TestClock.adjust(10)
      assert.strictEqual(yield* first.join, 1)
      yield* TestClock.adjust("5 seconds") // a sweep is due after a second
      const second = yield* executor.submit(Effect.succeed(2), { key: "a" })
      yield* TestClock.adjust(10)
      assert.strictEqual((yield* second.poll)?.kind, "success", "the executor still runs tasks")
      assert.strictEqual((yield* executor.stats).phase, "open")
    }))

  it.effect("a batch leaves nothing in the executor once it ended, read to its end or left early", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make({ concurrency: 2, shutdown: { mode: "cancel" } })
      const batches = (engineOf(executor).sinks as unknown as { readonly batches: ReadonlySet<unknown> }).batches
      assert.strictEqual((yield* Stream.runCollect(executor.run([1, 2, 3], (n) => Effect.succeed(n)))).length, 3)
      assert.strictEqual(batches.size, 0, "read to its end")
      const early = executor.run([1, 2, 3], (n) => Effect.as(Effect.sleep(10), n))
      const first = yield* Effect.forkChild(Stream.runCollect(Stream.take(early, 1)))
      yield* TestClock.adjust(10)
      assert.strictEqual((yield* Fiber.join(first)).length, 1)
      assert.strictEqual(batches.size, 0, "left early")
    }))
})

describe("breaker state expires", () => {
  it.effect("a key idle for longer than idleTimeToLive starts again closed", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* afterPause("9 seconds", "10 seconds"), "rejected", "remembered within its lifetime")
      assert.strictEqual(yield* afterPause("11 seconds", "10 seconds"), "success", "forgotten after it")
    }).pipe(Effect.scoped))

  it.effect("by default a breaker keeps an idle key's state 5 minutes", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* afterPause("299 seconds"), "rejected")
      assert.strictEqual(yield* afterPause("301 seconds"), "success")
    }).pipe(Effect.scoped))

  it.effect("a bad idleTimeToLive is refused before anything starts", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Executor.make({ circuitBreaker: { idleTimeToLive: -1 as never } }))
      assert.isTrue(Exit.isFailure(exit))
    }))
})

/** Series of a metric with a `key` attribute, by key, in the default registry of the test. */
const keyed = (name: string) =>
  Effect.map(Metric.snapshot, (snapshots) => {
    const out = new Map<string, number>()
    for (const s of snapshots) {
      const key = s.attributes?.["key"]
      if (s.id !== name || key === undefined) continue
      out.set(key, Number((s.state as { readonly count: number }).count))
    }
    return out
  })

const isolated = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.provideService(effect, Metric.MetricRegistry, new Map())

describe("metric cardinality", () => {
  it.effect("by default no series carries a key: the series count does not grow with the keys", () =>
    isolated(Effect.gen(function*() {
      const executor = yield* Executor.make({ name: "plain" })
      const before = (yield* Metric.snapshot).length
      for (let i = 0; i < 50; i++) yield* (yield* executor.submit(Effect.void, { key: `k${i}` })).await
      const after = yield* Metric.snapshot
      assert.strictEqual(after.length, before)
      assert.isFalse(after.some((s) => s.attributes?.["key"] !== undefined))
    })))

  it.effect("keys: n gives n keys their own series, counts the rest under other, and drops idle keys (I20)", () =>
    isolated(Effect.gen(function*() {
      const executor = yield* Executor.make({ name: "k", metrics: { keys: 2 }, shutdown: { mode: "cancel" } })
      const handles = yield* Effect.forEach(["a", "b", "c", "a"], (key) => executor.submit(Effect.never, { key }))
      let submitted = yield* keyed(names.submitted)
      assert.deepStrictEqual(Object.fromEntries(submitted), { a: 2, b: 1, [otherKey]: 1 })
      // a and b finish and stay idle; c still runs.
      yield* handles[0]!.cancel
      yield* handles[1]!.cancel
      yield* handles[3]!.cancel
      yield* TestClock.adjust("1 second") // first sweep: idle keys stay one more period (a last scrape)
      assert.deepStrictEqual([...(yield* keyed(names.submitted)).keys()].sort(), ["a", "b", otherKey])
      yield* TestClock.adjust("1 second") // second sweep: dropped, their counts moved to other
      submitted = yield* keyed(names.submitted)
      assert.deepStrictEqual(Object.fromEntries(submitted), { [otherKey]: 4 })
      // The sums over keys still equal the totals.
      const total = (yield* Metric.snapshot).find((s) =>
        s.id === names.submitted && s.attributes?.["key"] === undefined
      )
      assert.strictEqual(Number((total!.state as { readonly count: number }).count), 4)
      // A new key finds room again for its own series.
      yield* executor.submit(Effect.void, { key: "d" })
      assert.strictEqual((yield* keyed(names.submitted)).get("d"), 1)
    })))

  it.effect("metrics.keys must be an integer >= 0", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Executor.make({ metrics: { keys: -1 } }))
      assert.isTrue(Exit.isFailure(exit))
    }))
})

describe("outcomes are kept only for a reader", () => {
  it.effect("with default options, an executor used through handles alone holds no outcome", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make({ concurrency: 4 })
      for (let i = 0; i < 100; i++) assert.strictEqual(yield* (yield* executor.submit(Effect.succeed(i))).join, i)
      assert.strictEqual((yield* executor.stats).pileBuffered, 0)
      assert.strictEqual((yield* executor.stats).finished, 100)
    }))

  it.effect("with pile: \"unbounded\", the same executor keeps every outcome for a later reader", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make({ concurrency: 4, pile: "unbounded" })
      for (let i = 0; i < 100; i++) yield* (yield* executor.submit(Effect.succeed(i))).join
      assert.strictEqual((yield* executor.stats).pileBuffered, 100)
    }))

  it.effect("once a reader has started, every later outcome is kept for it and the readers after it", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make({ concurrency: 4 })
      yield* (yield* executor.submit(Effect.succeed(0))).join // before any reader: its handle only
      const first = yield* Stream.runCollect(Stream.take(executor.pile, 1)).pipe(Effect.forkChild)
      yield* Effect.yieldNow
      for (const n of [1, 2, 3]) yield* (yield* executor.submit(Effect.succeed(n))).join
      const taken = yield* Fiber.join(first)
      yield* executor.shutdown()
      const rest = yield* Stream.runCollect(executor.pile)
      const values = [...taken, ...rest].map((o) => Exit.isSuccess(o.exit) ? o.exit.value : undefined)
      assert.deepStrictEqual(values, [1, 2, 3])
    }))

  it.effect("I14 with no reader, a drain never waits for one (the default Pile)", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make({ concurrency: 2 })
      yield* executor.submitAll(Array.from({ length: 10 }, () => Effect.sleep(5)))
      const shutdown = yield* Effect.forkChild(executor.shutdown())
      yield* TestClock.adjust(50)
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(shutdown)))
      assert.strictEqual((yield* executor.stats).finished, 10)
    }))
})

/** A loop of 20,000 submits beside a reader doing no work; the most outcomes ever buffered. */
const submitLoop = () =>
  Effect.gen(function*() {
    const executor = yield* Executor.make({ concurrency: 4 })
    yield* Effect.forkChild(Stream.runForEach(executor.pile, () => Effect.void))
    yield* Effect.yieldNow
    let most = 0
    for (let i = 0; i < 20_000; i++) {
      yield* executor.submit(Effect.succeed(i))
      most = Math.max(most, engineOf(executor).sinks.pile!.size)
    }
    return most
  }).pipe(Effect.scoped)

describe("a Pile reader keeps pace", () => {
  it.effect("a reader doing no work keeps up with a loop of submits: never more than paceBound behind", () =>
    Effect.gen(function*() {
      // Each submit that finds the running reader paceBound behind yields to it first (no clock involved:
      // the scheduler's order decides, the same on every run).
      const most = yield* submitLoop()
      assert.isAtMost(most, paceBound + 1)
      assert.isAtLeast(most, 1)
    }))

  it.effect("without a running reader nobody waits for one: the submit loop never yields for it", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make({ concurrency: 4, pile: "unbounded" })
      for (let i = 0; i < 3 * paceBound; i++) yield* executor.submit(Effect.succeed(i))
      assert.strictEqual((yield* executor.stats).pileBuffered, 3 * paceBound, "kept for a later reader")
      assert.isFalse(engineOf(executor).sinks.pile!.behind)
    }))
})
