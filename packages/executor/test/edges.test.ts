// Edges of the engine that the invariant tests pass through without pinning down: what counts against the
// capacity while a task waits in a key line or for a retry, the peak, the wait and run histograms, spans when
// tracing is forced on or off, retry-after pauses, retries during a drain. Each test was written against a
// mutant of engine.ts that the other suites let survive (docs/verification.md, "Mutation testing").
import { assert, describe, it } from "@effect/vitest"
import { Data, Effect, Fiber, Metric, Option, Ref, Schedule, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as ErrorPolicy from "../src/ErrorPolicy.ts"
import * as Executor from "../src/Executor.ts"
import { names } from "../src/internal/instruments.ts"
import { assertLedger, recordingTracer } from "./support.ts"

const make = <A = unknown, E = unknown>(options?: Executor.Options<E>) =>
  Executor.make<A, E>({ shutdown: { mode: "cancel" }, ...options })

const isolated = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.provideService(effect, Metric.MetricRegistry, new Map())

/** Count and sum (seconds) of a histogram series of the executor `name`. */
const histogram = (metric: string, executor: string) =>
  Effect.map(Metric.snapshot, (snapshots) => {
    const series = snapshots.find((s) => s.id === metric && s.attributes?.["executor"] === executor)
    const state = series?.state as { readonly count: number; readonly sum: number } | undefined
    return { count: Number(state?.count ?? 0), sum: Number(state?.sum ?? 0) }
  })

class RateLimited extends Data.TaggedError("RateLimited")<{ readonly retryAfter: number }> {}

describe("capacity while waiting", () => {
  it.effect("I13 tasks waiting in a key line for their first start count against the capacity; a freed place admits a waiting submitter", () =>
    Effect.gen(function*() {
      const executor = yield* make({
        concurrency: 5,
        capacity: 2,
        limits: [{ key: "k", limit: 1, window: "1 minute" }]
      })
      yield* executor.submit(Effect.never, { key: "k" })
      const second = yield* executor.submit(Effect.never, { key: "k" })
      yield* executor.submit(Effect.never, { key: "k" })
      yield* TestClock.adjust(1)
      let stats = yield* executor.stats
      assert.strictEqual(stats.running, 1)
      assert.strictEqual(stats.waiting, 2, "two tasks wait in the key's line for budget")
      assert.strictEqual(stats.queued, 0)
      const full = yield* Effect.flip(executor.trySubmit(Effect.void))
      assert.strictEqual(full.reason._tag, "QueueFull", "line tasks that never started hold their places")
      const blocked = yield* Effect.forkChild(executor.submit(Effect.void))
      yield* Effect.yieldNow
      assert.isUndefined(blocked.pollUnsafe())
      // A line task leaving without starting (cancelled) frees its place for the waiting submitter.
      yield* second.cancel
      yield* Effect.yieldNow
      assert.isDefined(blocked.pollUnsafe(), "the waiting submitter got the freed place")
      // One minute later the next line task starts: its place goes too, and the queue is empty again.
      yield* TestClock.adjust("1 minute")
      stats = yield* executor.stats
      assert.strictEqual(stats.running, 2)
      assert.strictEqual(stats.waiting, 0)
      yield* executor.trySubmit(Effect.void)
      yield* executor.trySubmit(Effect.void)
      assert.strictEqual((yield* executor.stats).peakQueued, 2)
      assertLedger(yield* executor.stats)
    }))

  it.effect("I13 a task waiting to retry does not hold a place in the queue", () =>
    Effect.gen(function*() {
      const executor = yield* make({
        concurrency: 1,
        capacity: 1,
        policy: ErrorPolicy.retry(Schedule.spaced("1 minute"))
      })
      const runs = yield* Ref.make(0)
      const flaky = yield* executor.submit(
        Effect.flatMap(Ref.getAndUpdate(runs, (n) => n + 1), (n) => n === 0 ? Effect.fail("once") : Effect.succeed(n))
      )
      yield* TestClock.adjust(1)
      assert.strictEqual((yield* executor.stats).waiting, 1, "the failed task sleeps before its retry")
      const other = yield* executor.trySubmit(Effect.succeed("other"))
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* other.join, "other")
      yield* TestClock.adjust("1 minute")
      assert.strictEqual(yield* flaky.join, 1)
      assertLedger(yield* executor.stats)
    }))

  it.effect("peakQueued keeps the highest count when the queue shrinks and grows again", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 3 })
      yield* executor.submit(Effect.never)
      yield* TestClock.adjust(1)
      const queued = yield* Effect.forEach([1, 2, 3], () => executor.submit(Effect.never))
      yield* queued[0]!.cancel
      yield* queued[1]!.cancel
      yield* executor.submit(Effect.never)
      const stats = yield* executor.stats
      assert.strictEqual(stats.queued, 2)
      assert.strictEqual(stats.peakQueued, 3)
    }))
})

describe("histograms", () => {
  it.effect("queue wait, rate wait and run time observe the virtual time each task spent, once per task or attempt", () =>
    isolated(Effect.gen(function*() {
      const executor = yield* make({
        name: "timed",
        concurrency: 1,
        limits: [{ key: "k", limit: 1, window: "1 second" }],
        policy: ErrorPolicy.retry(Schedule.spaced("5 millis").pipe(Schedule.upTo({ times: 1 })))
      })
      const runs = yield* Ref.make(0)
      // Task 1 runs 10 ms. Task 2 waits 10 ms in the queue, finds the key's budget free and runs 20 ms; it
      // fails, pauses 5 ms, waits for the next budget (t = 1,010: a retry's rate wait is not observed again)
      // and runs 20 ms more. Run time: 10 + 20 + 20 ms over three attempts.
      yield* executor.submit(Effect.sleep(10))
      yield* executor.submit(
        Effect.flatMap(
          Ref.getAndUpdate(runs, (n) => n + 1),
          (n) => Effect.andThen(Effect.sleep(20), n === 0 ? Effect.fail("once") : Effect.void)
        ),
        { key: "k" }
      )
      yield* TestClock.adjust("3 seconds")
      const queueWait = yield* histogram(names.queueWait, "timed")
      const rateWait = yield* histogram(names.rateWait, "timed")
      const runTime = yield* histogram(names.runTime, "timed")
      assert.strictEqual(queueWait.count, 2, "one queue wait per task")
      assert.closeTo(queueWait.sum, 0.010, 1e-9)
      assert.strictEqual(rateWait.count, 2, "one rate wait per task (its first start)")
      assert.closeTo(rateWait.sum, 0, 1e-9, "the key's first budget was free when task 2 left the queue")
      assert.strictEqual(runTime.count, 3, "one run time per attempt")
      assert.closeTo(runTime.sum, 0.050, 1e-9)
    })))
})

describe("spans", () => {
  it.effect("tracing: false makes no span even under a tracer; a task without a key has no key attribute", () =>
    Effect.gen(function*() {
      const { ended, tracer } = recordingTracer()
      const off = yield* make({ tracing: false })
      const on = yield* make({ tracing: true, name: "on" })
      yield* Effect.flatMap(off.submit(Effect.void), (h) => h.await).pipe(Effect.withTracer(tracer))
      assert.strictEqual(ended.filter((s) => s.name === "pile.task").length, 0)
      yield* Effect.flatMap(on.submit(Effect.void), (h) => h.await).pipe(Effect.withTracer(tracer))
      const spans = ended.filter((s) => s.name === "pile.task")
      assert.strictEqual(spans.length, 1)
      assert.isFalse(spans[0]!.attributes.has("pile.task.key"))
      assert.strictEqual(spans[0]!.kind, "internal")
    }))

  it.effect("tracing: auto follows the submitter: spans under a tracer, none without, spans again under one", () =>
    Effect.gen(function*() {
      const { ended, tracer } = recordingTracer()
      const executor = yield* make()
      const traced = Effect.flatMap(executor.submit(Effect.void), (h) => h.await).pipe(Effect.withTracer(tracer))
      yield* traced
      yield* Effect.flatMap(executor.submit(Effect.void), (h) => h.await)
      yield* traced
      const spans = ended.filter((s) => s.name === "pile.task")
      assert.strictEqual(spans.length, 2)
      assert.isTrue(spans.every((s) => Option.isNone(s.parent) || s.parent.value.spanId !== undefined))
    }))
})

describe("retry-after and retries", () => {
  it.effect("a retry-after of zero pauses nothing; a positive one pauses the key and is counted", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 2 })
      const zero = yield* executor.submit(Effect.fail(new RateLimited({ retryAfter: 0 })), { key: "k" })
      yield* zero.await
      const next = yield* executor.submit(Effect.succeed("next"), { key: "k" })
      yield* Effect.yieldNow
      assert.isDefined(yield* next.poll, "no pause: the next task of the key ran at once")
      assert.strictEqual((yield* executor.stats).pauses, 0)
      yield* (yield* executor.submit(Effect.fail(new RateLimited({ retryAfter: 1000 })), { key: "k" })).await
      const paused = yield* executor.submit(Effect.succeed("paused"), { key: "k" })
      yield* TestClock.adjust(999)
      assert.isUndefined(yield* paused.poll)
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* paused.join, "paused")
      assert.strictEqual((yield* executor.stats).pauses, 1)
    }))

  it.effect("I7 a task that fails during a drain is still retried by its policy before the executor closes", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make({
        shutdown: { mode: "drain", grace: "1 hour" },
        policy: ErrorPolicy.retry(Schedule.spaced(10).pipe(Schedule.upTo({ times: 3 })))
      })
      const runs = yield* Ref.make(0)
      const task = yield* executor.submit(
        Effect.flatMap(
          Ref.getAndUpdate(runs, (n) => n + 1),
          (n) => Effect.andThen(Effect.sleep(5), n < 2 ? Effect.fail("again") : Effect.succeed(n))
        )
      )
      const shutdown = yield* Effect.forkChild(executor.shutdown())
      yield* TestClock.adjust(100)
      yield* Fiber.join(shutdown)
      const outcome = yield* task.outcome
      assert.strictEqual(outcome.kind, "success")
      assert.strictEqual(outcome.attempts, 3)
    }))
})

describe("queue edges", () => {
  it.effect("sliding: with the queue empty, the oldest task waiting in a key line for its first start is evicted", () =>
    Effect.gen(function*() {
      const executor = yield* make({
        concurrency: 5,
        capacity: 1,
        strategy: "sliding",
        limits: [{ key: "k", limit: 1, window: "1 minute" }]
      })
      const first = yield* executor.submit(Effect.succeed("first"), { key: "k" })
      const waiting = yield* executor.submit(Effect.succeed("waiting"), { key: "k" })
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* first.join, "first")
      assert.strictEqual((yield* executor.stats).waiting, 1, "the second task waits in the key's line")
      const young = yield* executor.submit(Effect.succeed("young"), { key: "k" })
      assert.strictEqual((yield* waiting.outcome).kind, "evicted")
      yield* TestClock.adjust("1 minute")
      assert.strictEqual(yield* young.join, "young")
      assertLedger(yield* executor.stats)
    }))

  it.effect("a batch feeder that finds the queue full waits for a quarter of it to free up, then refills it", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 8 })
      const reader = yield* Effect.forkChild(Stream.runCollect(
        executor.run(Array.from({ length: 40 }, (_, i) => i), (n) => Effect.as(Effect.sleep(1), n))
      ))
      const queued: Array<number> = []
      for (let t = 0; t < 4; t++) {
        yield* Effect.yieldNow
        queued.push((yield* executor.stats).queued)
        yield* TestClock.adjust(1)
      }
      // 8 queued; one place frees (7: the feeder keeps waiting); a second one frees (a quarter): refilled to 8.
      assert.deepStrictEqual(queued, [8, 7, 8, 7])
      yield* TestClock.adjust(100)
      const outcomes = yield* Fiber.join(reader)
      assert.deepStrictEqual(outcomes.map((o) => o.input), Array.from({ length: 40 }, (_, i) => i))
      assert.strictEqual((yield* executor.stats).peakQueued, 8)
    }))

  it.effect("I6 a batch feeder waiting for room when shutdown begins stops feeding; accepted inputs get outcomes", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 4 })
      const ran = yield* Ref.make(0)
      const reader = yield* Effect.forkChild(Effect.exit(Stream.runCollect(
        executor.run(
          Array.from({ length: 20 }, (_, i) => i),
          () => Effect.andThen(Ref.update(ran, (n) => n + 1), Effect.never)
        )
      )))
      yield* TestClock.adjust(1)
      assert.strictEqual((yield* executor.stats).queued, 4, "the feeder waits for room")
      yield* executor.shutdown({ mode: "cancel" })
      const exit = yield* Fiber.join(reader)
      assert.isTrue(exit._tag === "Failure", "the batch fails with Closed after its accepted outcomes")
      const stats = yield* executor.stats
      assert.strictEqual(stats.accepted, 5, "one running and four queued: nothing more was taken")
      assert.strictEqual(stats.finished, 5)
      assert.strictEqual(yield* Ref.get(ran), 1)
    }))
})

describe("pause edges", () => {
  it.effect("a retry-after without a key pauses the other keyless tasks; a shorter one does not shorten the pause", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 3 })
      // Both start at once and fail 1 ms later, the longer retry-after first.
      yield* executor.submit(Effect.andThen(Effect.sleep(1), Effect.fail(new RateLimited({ retryAfter: 1000 }))))
      yield* executor.submit(Effect.andThen(Effect.sleep(2), Effect.fail(new RateLimited({ retryAfter: 10 }))))
      yield* TestClock.adjust(2)
      const next = yield* executor.submit(Effect.succeed("next"))
      const other = yield* executor.submit(Effect.succeed("other key"), { key: "other" })
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* other.join, "other key", "another key is not paused")
      yield* TestClock.adjust(500)
      assert.isUndefined(yield* next.poll, "still paused by the first, longer retry-after")
      yield* TestClock.adjust(497)
      assert.isUndefined(yield* next.poll, "the pause ends at t = 1,001")
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* next.join, "next")
      assert.strictEqual((yield* executor.stats).pauses, 1)
    }))
})

describe("escalation edges", () => {
  it.effect("two escalations at once: the first one is raised, the second task still has its own outcome", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 2, policy: ErrorPolicy.escalate })
      const first = yield* executor.submit(Effect.andThen(Effect.sleep(10), Effect.fail("first")))
      const second = yield* executor.submit(Effect.andThen(Effect.sleep(10), Effect.fail("second")))
      yield* TestClock.adjust(10)
      const error = yield* Effect.flip(executor.join)
      assert.strictEqual(error.reason._tag, "Escalated")
      assert.strictEqual((error.reason as { readonly source: string }).source, `task ${first.id}`)
      assert.strictEqual((yield* first.outcome).kind, "failure")
      assert.include(["failure", "interrupted"], (yield* second.outcome).kind)
      assert.strictEqual((yield* executor.stats).phase, "closed")
    }))
})
