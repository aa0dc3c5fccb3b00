// Edges of admission that the invariant tests pass through without pinning down: which waiting task a sliding
// queue evicts, the order of key lines, buckets shared by several keys (I11), pauses and rate waits meeting,
// timers of an attempt that already ended, retries and deadlines, long runs of starts. Each test was written
// against mutants of engine.ts that the other suites let survive (docs/verification.md, "Mutation testing").
import { assert, describe, it } from "@effect/vitest"
import { Data, Effect, Exit, Ref, Schedule } from "effect"
import { TestClock } from "effect/testing"
import * as ErrorPolicy from "../src/ErrorPolicy.ts"
import * as Executor from "../src/Executor.ts"
import { assertLedger, engineOf } from "./support.ts"

const make = <A = unknown, E = unknown>(options?: Executor.Options<E>) =>
  Executor.make<A, E>({ shutdown: { mode: "cancel" }, ...options })

class RateLimited extends Data.TaggedError("RateLimited")<{ readonly retryAfter: number }> {}

/** An effect that fails its first run (after `ms`) and succeeds with the run's number afterwards. */
const failsOnce = (runs: Ref.Ref<number>, ms = 0) =>
  Effect.flatMap(
    Ref.getAndUpdate(runs, (n) => n + 1),
    (n) => Effect.andThen(Effect.sleep(ms), n === 0 ? Effect.fail("once") : Effect.succeed(n))
  )

/** A settlement: an attempt that did not succeed used nothing (its reservation is refunded). */
const refundIfStopped = (exit: Exit.Exit<unknown, unknown>) => Exit.isSuccess(exit) ? undefined : { tokens: 0 }

const retryOnce = (spacing: number) => ErrorPolicy.retry(Schedule.spaced(spacing).pipe(Schedule.upTo({ times: 1 })))

describe("key lines", () => {
  it.effect("a key's line is dropped once it is empty, and once its pause is over, at the exact end", () =>
    Effect.gen(function*() {
      const executor = yield* make({ limits: [{ key: "k", limit: 1, window: "1 minute" }] })
      const admission = engineOf(executor).admission
      yield* executor.submit(Effect.void, { key: "k" })
      const second = yield* executor.submit(Effect.void, { key: "k" })
      yield* TestClock.adjust(1)
      assert.strictEqual(admission.lineCount, 1, "the second task waits in the key's line")
      yield* TestClock.adjust("1 minute")
      yield* second.await
      assert.strictEqual(admission.lineCount, 0)
      // A retry-after pauses key p until t = 60,001 + 1,000: its (empty) line lives exactly that long.
      yield* executor.submit(Effect.fail(new RateLimited({ retryAfter: 1000 })), { key: "p" })
      yield* TestClock.adjust(1)
      assert.strictEqual(admission.lineCount, 1)
      yield* TestClock.adjust(998)
      assert.strictEqual(admission.lineCount, 1, "still paused")
      yield* TestClock.adjust(1)
      assert.strictEqual(admission.lineCount, 0, "the pass at the end of the pause drops it")
    }))

  it.effect("I11 the oldest head of every line goes first, whatever the order the lines were made in", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 3 })
      // Keys a, b, c are paused (in that order) until t = 10,001.
      for (const [key, n] of [["a", 1], ["b", 2], ["c", 3]] as const) {
        yield* executor.submit(
          Effect.andThen(Effect.sleep(n), Effect.fail(new RateLimited({ retryAfter: 10_001 - n }))),
          {
            key
          }
        )
      }
      yield* TestClock.adjust(3)
      yield* executor.resize(1)
      const started = yield* Ref.make<Array<string>>([])
      for (const key of ["b", "a", "c"]) {
        yield* executor.submit(Ref.update(started, (xs) => [...xs, key]), { key })
      }
      yield* TestClock.adjust(9_997)
      assert.deepStrictEqual(yield* Ref.get(started), [])
      yield* TestClock.adjust(1)
      assert.deepStrictEqual(yield* Ref.get(started), ["b", "a", "c"], "first come, first served across keys")
    }))

  it.effect("sliding: the victim is the oldest task waiting for its first start, not a retry, in any line", () =>
    Effect.gen(function*() {
      const executor = yield* make({
        concurrency: 2,
        capacity: 4,
        strategy: "sliding",
        policy: retryOnce(0),
        limits: [{ perKey: true, limit: 1, window: "1 minute" }]
      })
      const runs = yield* Ref.make(0)
      yield* executor.submit(Effect.never, { key: "a" })
      const retried = yield* executor.submit(failsOnce(runs, 1), { key: "b" })
      const [a3, b4, a5, b6] = yield* Effect.forEach(
        ["a", "b", "a", "b"],
        (key) => executor.submit(Effect.succeed(key), { key })
      )
      yield* TestClock.adjust(1)
      yield* Effect.yieldNow
      // Lines: a = [a3, a5], b = [retried (attempt 2 waits for budget), b4, b6]
      assert.strictEqual((yield* executor.stats).waiting, 5)
      yield* a3!.cancel
      const a7 = yield* executor.submit(Effect.succeed("a"), { key: "a" }) // a = [a5, a7]: the queue is full again
      yield* executor.submit(Effect.succeed("c"), { key: "c" })
      assert.strictEqual((yield* b4!.outcome).kind, "evicted")
      for (const handle of [retried, a5!, b6!, a7]) assert.isUndefined(yield* handle.poll)
      assertLedger(yield* executor.stats)
    }))
})

describe("shared buckets and wake-ups", () => {
  it.effect("I11 a younger head of another key may not take from a bucket an older head waits for", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 5, limits: [{ budget: "tokens", limit: 10, window: "1 minute" }] })
      const started = yield* Ref.make<Array<string>>([])
      const task = (name: string) => Ref.update(started, (xs) => [...xs, name])
      yield* executor.submit(Effect.andThen(task("big"), Effect.never), { key: "a", cost: { tokens: 8 } })
      const older = yield* executor.submit(task("older"), { key: "a", cost: { tokens: 5 } })
      const younger = yield* executor.submit(task("younger"), { key: "b", cost: { tokens: 1 } })
      yield* TestClock.adjust(1)
      assert.deepStrictEqual(yield* Ref.get(started), ["big"], "1 token would fit, but an older task waits for 5")
      yield* TestClock.adjust("1 minute")
      yield* older.await
      yield* younger.await
      assert.deepStrictEqual(yield* Ref.get(started), ["big", "older", "younger"])
    }))

  it.effect("a line head leaving without starting lets the next head start as soon as its budget allows", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 5, limits: [{ budget: "tokens", limit: 10, window: "1 minute" }] })
      yield* executor.submit(Effect.never, { key: "k", cost: { tokens: 3 } }) // frees 3 tokens at t = 60 s
      yield* TestClock.adjust("10 seconds")
      yield* executor.submit(Effect.never, { key: "k", cost: { tokens: 5 } }) // frees 5 more at t = 70 s
      const big = yield* executor.submit(Effect.void, { key: "k", cost: { tokens: 6 } }) // could start at 70 s
      const small = yield* executor.submit(Effect.succeed("small"), { key: "k", cost: { tokens: 4 } }) // 60 s
      yield* TestClock.adjust("10 seconds")
      yield* big.cancel
      yield* TestClock.adjust("39 seconds")
      assert.isUndefined(yield* small.poll, "4 tokens: 2 free now, 3 more at t = 60 s")
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* small.join, "small", "it starts at t = 60 s, not at the cancelled head's 70 s")
    }))

  it.effect("a refund of a cancelled task's budget lets a waiting task start at once", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 5, limits: [{ budget: "tokens", limit: 10, window: "1 minute" }] })
      const first = yield* executor.submit(Effect.never, {
        cost: { tokens: 10 },
        settle: refundIfStopped
      })
      const next = yield* executor.submit(Effect.succeed("next"), { cost: { tokens: 10 } })
      yield* TestClock.adjust(1)
      assert.isUndefined(yield* next.poll)
      yield* first.cancel
      yield* Effect.yieldNow
      yield* Effect.yieldNow
      assert.strictEqual(yield* next.join, "next")
    }))

  it.effect("I12 a refund corrects the cancelled task's own reservation, in its own window, not another's", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 5, limits: [{ budget: "tokens", limit: 10, window: "1 minute" }] })
      const first = yield* executor.submit(Effect.never, { cost: { tokens: 5 }, settle: refundIfStopped }) // t = 0
      yield* TestClock.adjust("30 seconds")
      yield* executor.submit(Effect.never, { cost: { tokens: 5 } }) // t = 30 s
      yield* TestClock.adjust("1 second")
      yield* first.cancel // its 5 tokens (charged at t = 0) come back
      yield* executor.submit(Effect.never, { cost: { tokens: 5 } }) // t = 31 s: fits at once
      const last = yield* executor.submit(Effect.succeed("last"), { cost: { tokens: 5 } })
      yield* TestClock.adjust(1)
      assert.strictEqual((yield* executor.stats).running, 2)
      // The window holds 5 tokens from t = 30 s and 5 from t = 31 s: the next 5 fit once the first leaves it.
      yield* TestClock.adjust(58_998) // t = 90 s - 1 ms
      assert.isUndefined(yield* last.poll, "no room before t = 90 s")
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* last.join, "last")
    }))

  it.effect("a pause that ends after the line's next wake-up is waited for too", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 5, limits: [{ key: "k", limit: 1, window: 500 }] })
      // The first task takes the budget and fails at t = 1 with a retry-after of 1 s: key k pauses to 1,001.
      yield* executor.submit(Effect.andThen(Effect.sleep(1), Effect.fail(new RateLimited({ retryAfter: 1000 }))), {
        key: "k"
      })
      const next = yield* executor.submit(Effect.succeed("next"), { key: "k" }) // budget again at t = 500
      yield* TestClock.adjust(1000)
      assert.isUndefined(yield* next.poll, "paused until t = 1,001")
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* next.join, "next")
    }))
})

describe("capacity", () => {
  it.effect("I13 one freed place admits one waiting submitter, not all of them", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 1 })
      yield* executor.submit(Effect.never)
      yield* TestClock.adjust(1)
      const queued = yield* executor.submit(Effect.never)
      const waiting = yield* Effect.forEach([1, 2, 3], () => Effect.forkChild(executor.submit(Effect.never)))
      yield* Effect.yieldNow
      yield* queued.cancel
      yield* Effect.yieldNow
      assert.strictEqual((yield* executor.stats).queued, 1)
      assert.isDefined(waiting[0]!.pollUnsafe())
      assert.isUndefined(waiting[1]!.pollUnsafe())
      assert.isUndefined(waiting[2]!.pollUnsafe())
    }))

  it.effect("I13 a retried task starting again frees no place in the queue (it held none)", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 1, policy: retryOnce(0) })
      const runs = yield* Ref.make(0)
      yield* executor.submit(Effect.andThen(failsOnce(runs, 1), Effect.never))
      yield* TestClock.adjust(1)
      yield* Effect.yieldNow
      assert.strictEqual(yield* Ref.get(runs), 2, "the retry is running")
      yield* executor.submit(Effect.never)
      const full = yield* Effect.flip(executor.trySubmit(Effect.void))
      assert.strictEqual(full.reason._tag, "QueueFull")
      assertLedger(yield* executor.stats)
    }))
})

describe("attempts, retries and deadlines", () => {
  it.effect("an attempt's timeout does not outlive it: it cannot stop the task while it waits to retry", () =>
    Effect.gen(function*() {
      const executor = yield* make({ policy: retryOnce(500) })
      const runs = yield* Ref.make(0)
      const handle = yield* executor.submit(failsOnce(runs, 10), { timeout: 100 })
      yield* TestClock.adjust(200) // the first attempt's timer (t = 100) passes while the task sleeps
      assert.isUndefined(yield* handle.poll)
      yield* TestClock.adjust(400)
      const outcome = yield* handle.outcome
      assert.deepStrictEqual([outcome.kind, outcome.attempts], ["success", 2])
    }))

  it.effect("an attempt's timeout does not stop the next attempt: each attempt has its own", () =>
    Effect.gen(function*() {
      const executor = yield* make({ policy: retryOnce(0) })
      const runs = yield* Ref.make(0)
      // Attempt 1 fails at t = 10; attempt 2 starts at once and would take 150 ms: its timeout fires at 110.
      const handle = yield* executor.submit(
        Effect.flatMap(
          Ref.getAndUpdate(runs, (n) => n + 1),
          (n) => n === 0 ? Effect.andThen(Effect.sleep(10), Effect.fail("once")) : Effect.sleep(150)
        ),
        { timeout: 100 }
      )
      yield* TestClock.adjust(105)
      assert.isUndefined(yield* handle.poll, "attempt 1's timer (t = 100) is not attempt 2's")
      yield* TestClock.adjust(5)
      const outcome = yield* handle.outcome
      assert.deepStrictEqual([outcome.kind, outcome.attempts], ["timedOut", 2])
    }))

  it.effect("I18 a retry due exactly at the deadline is not attempted: the failure is the outcome", () =>
    Effect.gen(function*() {
      const executor = yield* make({ policy: retryOnce(10) })
      const handle = yield* executor.submit(Effect.andThen(Effect.sleep(90), Effect.fail("late")), {
        deadline: 100
      })
      yield* TestClock.adjust(90)
      const outcome = yield* handle.outcome
      assert.deepStrictEqual([outcome.kind, outcome.attempts], ["failure", 1])
    }))

  it.effect("I1 a task cancelled while it waits to retry never runs again, and holds no slot", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, policy: retryOnce(100) })
      const runs = yield* Ref.make(0)
      const handle = yield* executor.submit(failsOnce(runs, 1))
      yield* TestClock.adjust(50)
      yield* handle.cancel
      assert.strictEqual((yield* handle.outcome).kind, "cancelled")
      yield* TestClock.adjust(100) // past the retry's time
      assert.strictEqual(yield* Ref.get(runs), 1)
      const next = yield* executor.submit(Effect.succeed("next"))
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* next.join, "next")
      const stats = yield* executor.stats
      assert.deepStrictEqual([stats.running, stats.waiting], [0, 0])
      assertLedger(stats)
    }))

  it.effect("a retry of a task without a key waits for the keyless pause", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 2, policy: retryOnce(10) })
      const runs = yield* Ref.make(0)
      // t = 1: a keyless failure with a retry-after of 1 s pauses keyless tasks until t = 1,001.
      yield* executor.submit(Effect.andThen(Effect.sleep(1), Effect.fail(new RateLimited({ retryAfter: 1000 }))))
      const flaky = yield* executor.submit(failsOnce(runs, 2)) // fails at t = 2, retry due at t = 12
      yield* TestClock.adjust(500)
      assert.strictEqual(yield* Ref.get(runs), 1, "the retry waits for the pause")
      yield* TestClock.adjust(500)
      assert.strictEqual(yield* Ref.get(runs), 1, "t = 1,000: still paused")
      yield* TestClock.adjust(3) // the retry starts at t = 1,001 and takes 2 ms
      assert.strictEqual(yield* flaky.join, 1)
    }))
})

describe("long runs", () => {
  it.effect("a pass that starts more than 512 tasks lets other fibers run, then goes on by itself", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 2000 })
      yield* executor.submitAll(Array.from({ length: 1000 }, () => Effect.never))
      yield* TestClock.adjust(1)
      yield* executor.resize(1000)
      for (let i = 0; i < 5; i++) yield* Effect.yieldNow
      assert.strictEqual((yield* executor.stats).running, 1000)
    }))
})
