import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Fiber, Metric, Option, Ref, Schedule, Stream } from "effect"
import { PrometheusMetrics } from "effect/observability"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import * as ErrorPolicy from "../src/ErrorPolicy.ts"
import * as Executor from "../src/Executor.ts"
import { bucketOf, names, secondsBoundaries } from "../src/internal/instruments.ts"
import type * as Outcome from "../src/Outcome.ts"
import { assertLedger, make, recordingTracer, runs } from "./support.ts"

/** Every test gets its own registry: the default one is process-global. */
const isolated = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.provideService(effect, Metric.MetricRegistry, new Map())

/** The value of a counter or gauge series with these attributes (0 when absent). */
const valueOf = (name: string, attributes: Record<string, string>) =>
  Effect.map(Metric.snapshot, (snapshots) => {
    const series = snapshots.find((s) =>
      s.id === name && Object.entries(attributes).every(([k, v]) => s.attributes?.[k] === v) &&
      Object.keys(s.attributes ?? {}).length === Object.keys(attributes).length
    )
    if (series === undefined) return 0
    const state = series.state as { readonly count?: number; readonly value?: number }
    return Number(state.count ?? state.value ?? 0)
  })

const histogramCount = (name: string, attributes: Record<string, string>) =>
  Effect.map(Metric.snapshot, (snapshots) => {
    const series = snapshots.find((s) => s.id === name && s.attributes?.["executor"] === attributes["executor"])
    return series === undefined ? 0 : Number((series.state as { readonly count: number }).count)
  })

/** Count and sum (seconds) of a histogram series of the executor `name`. */
const histogram = (metric: string, executor: string) =>
  Effect.map(Metric.snapshot, (snapshots) => {
    const series = snapshots.find((s) => s.id === metric && s.attributes?.["executor"] === executor)
    const state = series?.state as { readonly count: number; readonly sum: number } | undefined
    return { count: Number(state?.count ?? 0), sum: Number(state?.sum ?? 0) }
  })

type Behaviour = "succeed" | "fail" | "die" | "interrupt" | "never" | "flaky"

const behaviours: ReadonlyArray<Behaviour> = ["succeed", "fail", "die", "interrupt", "never", "flaky"]

describe("metrics", () => {
  it.effect("I20 every counter equals the outcomes the Pile delivered, and the gauges end at zero", () =>
    isolated(Effect.gen(function*() {
      const executor = yield* Executor.make({
        name: "mix",
        concurrency: 3,
        capacity: 4,
        metrics: { keys: 10 },
        shutdown: { mode: "cancel" },
        policy: ErrorPolicy.retry(Schedule.spaced(3).pipe(Schedule.upTo({ times: 2 })))
      })
      const reader = yield* Effect.forkChild(Stream.runCollect(executor.pile))
      const runs = yield* Ref.make(0)
      const tasks = Array.from({ length: 40 }, (_, i) => {
        const behaviour = behaviours[(i * 7) % behaviours.length]!
        const key = i % 3 === 0 ? "a" : undefined
        const body: Effect.Effect<number, string> = behaviour === "succeed"
          ? Effect.as(Effect.sleep(i % 5), i)
          : behaviour === "fail"
          ? Effect.fail(`fail ${i}`)
          : behaviour === "die"
          ? Effect.die(i)
          : behaviour === "interrupt"
          ? Effect.interrupt
          : behaviour === "never"
          ? Effect.never
          : Effect.flatMap(
            Ref.getAndUpdate(runs, (n) => n + 1),
            (n) => n % 2 === 0 ? Effect.fail("flaky") : Effect.succeed(n)
          )
        return { body, key, timeout: behaviour === "never" ? 20 : undefined }
      })
      yield* Effect.forkChild(Effect.forEach(tasks, (t) => executor.submit(t.body, { key: t.key, timeout: t.timeout })))
      yield* TestClock.adjust(200)
      yield* executor.shutdown({ mode: "cancel" })
      const outcomes = yield* Fiber.join(reader)
      const stats = yield* executor.stats
      assert.strictEqual(outcomes.length, 40)
      const delivered = new Map<Outcome.Kind, number>()
      for (const o of outcomes) delivered.set(o.kind, (delivered.get(o.kind) ?? 0) + 1)
      for (const [kind, count] of delivered) {
        assert.strictEqual(yield* valueOf(names.outcomes, { executor: "mix", outcome: kind }), count, kind)
      }
      assert.isAbove(delivered.size, 3, "the mix produced several kinds")
      assert.strictEqual(yield* valueOf(names.submitted, { executor: "mix" }), 40)
      assert.strictEqual(yield* valueOf(names.retries, { executor: "mix" }), stats.retries)
      assert.strictEqual(
        yield* valueOf(names.attempts, { executor: "mix" }),
        outcomes.reduce((n, o) => n + o.attempts, 0)
      )
      // Per key: the tasks with key "a".
      const keyed = tasks.filter((t) => t.key === "a").length
      assert.strictEqual(yield* valueOf(names.submitted, { executor: "mix", key: "a" }), keyed)
      for (const gauge of [names.queued, names.waiting, names.running]) {
        assert.strictEqual(yield* valueOf(gauge, { executor: "mix" }), 0, gauge)
      }
      assert.strictEqual(
        yield* histogramCount(names.runTime, { executor: "mix" }),
        yield* valueOf(names.attempts, { executor: "mix" })
      )
      assertLedger(stats)
    })))

  it.effect("I20 the gauges match the ledger while work waits", () =>
    isolated(Effect.gen(function*() {
      const executor = yield* Executor.make({
        name: "g",
        concurrency: 3,
        shutdown: { mode: "cancel" },
        limits: [{ key: "k", limit: 1, window: "1 minute" }]
      })
      yield* executor.submit(Effect.never)
      yield* executor.submit(Effect.never, { key: "k" })
      yield* executor.submit(Effect.never, { key: "k" })
      yield* TestClock.adjust(1)
      yield* executor.resize(2)
      yield* executor.submit(Effect.void)
      yield* TestClock.adjust(1)
      const stats = yield* executor.stats
      assert.deepStrictEqual(
        [
          yield* valueOf(names.queued, { executor: "g" }),
          yield* valueOf(names.waiting, { executor: "g" }),
          yield* valueOf(names.running, { executor: "g" })
        ],
        [stats.queued, stats.waiting, stats.running]
      )
      assert.deepStrictEqual(
        [stats.queued, stats.waiting, stats.running],
        [1, 1, 2],
        "queued, waiting for rate, running"
      )
    })))

  it.effect("Prometheus: the executor's metrics scrape as text from PrometheusMetrics", () =>
    isolated(Effect.gen(function*() {
      const executor = yield* Executor.make({ name: "prom", shutdown: { mode: "cancel" } })
      yield* Stream.runDrain(executor.run([1, 2, 3], (n) => n === 2 ? Effect.fail("x") : Effect.succeed(n)))
      yield* executor.shutdown()
      const text = yield* PrometheusMetrics.format()
      assert.match(text, /pile_tasks_submitted_total\{executor="prom"\} 3/)
      assert.match(text, /pile_task_outcomes_total\{executor="prom",outcome="success"\} 2/)
      assert.match(text, /pile_task_outcomes_total\{executor="prom",outcome="failure"\} 1/)
      assert.match(text, /pile_tasks_running\{executor="prom"\} 0/)
      assert.match(text, /pile_task_run_seconds_bucket\{executor="prom",le="/)
    })))

  it.effect("metrics: false publishes nothing", () =>
    isolated(Effect.gen(function*() {
      const executor = yield* Executor.make({ name: "quiet", metrics: false, shutdown: { mode: "cancel" } })
      yield* (yield* executor.submit(Effect.void)).await
      yield* executor.shutdown()
      const snapshots = yield* Metric.snapshot
      assert.isFalse(snapshots.some((s) => s.id.startsWith("pile_")))
    })))

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

describe("the histograms' clock", () => {
  it.effect("a wait and a run across the 2^31 ms mark of its 32-bit readings are recorded as long as they lasted", () =>
    isolated(Effect.gen(function*() {
      const executor = yield* make({ name: "wrap", concurrency: 1 })
      // Readings are ms since the executor was made, as 32-bit integers: the one after 2^31 - 1 is negative.
      yield* TestClock.adjust(2 ** 31 - 5)
      yield* executor.submit(Effect.sleep(10)) // runs from 2^31 - 5 to 2^31 + 5
      const second = yield* executor.submit(Effect.void) // waits in the queue meanwhile
      yield* TestClock.adjust(10)
      assert.strictEqual((yield* second.poll)?.kind, "success")
      const queueWait = yield* histogram(names.queueWait, "wrap")
      const runTime = yield* histogram(names.runTime, "wrap")
      assert.closeTo(queueWait.sum, 0.010, 1e-9, "the second task waited 10 ms")
      assert.closeTo(runTime.sum, 0.010, 1e-9, "the first ran 10 ms, the second 0")
    })))
})

/** The bucket a scan of the boundaries finds for a duration of `millis` ms (what `bucketOf` computes). */
const scanBucket = (millis: number) => {
  let i = 0
  while (i < secondsBoundaries.length && millis / 1000 > secondsBoundaries[i]!) i++
  return i
}

describe("the histograms' buckets", () => {
  it("a duration's bucket, from its bit length, is the one a scan of the boundaries finds (1 ms x 2^i, and the last)", () => {
    const around = [-3, -1, 0, 1, 2, 2 ** 31 - 1]
    for (let k = 0; k <= 20; k++) around.push(2 ** k - 1, 2 ** k, 2 ** k + 1)
    for (let millis = -2; millis <= 5000; millis++) around.push(millis)
    for (const millis of around) assert.strictEqual(bucketOf(millis), scanBucket(millis), `${millis} ms`)
  })
})

describe("run time of a body that computes synchronously", () => {
  it.effect("includes the synchronous work: an attempt's end reads the clock afresh, not the reading of the pass that started it", () =>
    isolated(Effect.gen(function*() {
      // A clock the body moves synchronously, as CPU-bound work moves a real one; the executor reads it.
      const base = yield* Clock.Clock
      let worked = 0
      const clock: Clock.Clock = {
        ...base,
        currentTimeMillisUnsafe: () => base.currentTimeMillisUnsafe() + worked,
        currentTimeNanosUnsafe: () => base.currentTimeNanosUnsafe() + BigInt(worked) * 1_000_000n
      }
      const executor = yield* make({ name: "busy", concurrency: 2 }).pipe(Effect.provideService(Clock.Clock, clock))
      // Each starts and ends inside the feeder's burst (one clock reading for the burst): 30 ms and 40 ms of
      // synchronous work.
      yield* Stream.runDrain(executor.run([30, 40], (ms) => Effect.sync(() => (worked += ms))))
      const runTime = yield* histogram(names.runTime, "busy")
      assert.strictEqual(runTime.count, 2)
      assert.closeTo(runTime.sum, 0.030 + 0.040, 1e-9, "each end is read after its body's work")
    })))
})

describe("ledger", () => {
  it("I15 the ledger adds up at every snapshot while random work runs (retries, rate limits, cancels)", async () => {
    const task = fc.record({
      behaviour: fc.constantFrom(...behaviours),
      delay: fc.integer({ min: 0, max: 10 }),
      key: fc.constantFrom(undefined, "a", "b"),
      cancelAt: fc.option(fc.integer({ min: 0, max: 30 }), { nil: undefined })
    })
    await fc.assert(
      fc.asyncProperty(
        fc.array(task, { maxLength: 20 }),
        fc.integer({ min: 1, max: 4 }),
        async (tasks, concurrency) => {
          const program = isolated(
            Effect.gen(function*() {
              const executor = yield* Executor.make({
                concurrency,
                capacity: 5,
                shutdown: { mode: "cancel" },
                policy: ErrorPolicy.retry(Schedule.spaced(4).pipe(Schedule.upTo({ times: 2 }))),
                limits: [{ perKey: true, limit: 2, window: 10 }]
              })
              yield* Effect.forkChild(Effect.forEach(tasks, (t) =>
                Effect.flatMap(
                  executor.submit(
                    t.behaviour === "never"
                      ? Effect.never
                      : t.behaviour === "fail" || t.behaviour === "flaky"
                      ? Effect.andThen(Effect.sleep(t.delay), Effect.fail("f"))
                      : t.behaviour === "die"
                      ? Effect.die("d")
                      : t.behaviour === "interrupt"
                      ? Effect.interrupt
                      : Effect.sleep(t.delay),
                    { key: t.key }
                  ),
                  (handle) =>
                    t.cancelAt === undefined
                      ? Effect.void
                      : Effect.asVoid(Effect.forkChild(Effect.andThen(Effect.sleep(t.cancelAt), handle.cancel)))
                )))
              for (let i = 0; i < 60; i++) {
                assertLedger(yield* executor.stats)
                yield* TestClock.adjust(1)
              }
              yield* executor.shutdown({ mode: "cancel" })
              const stats = yield* executor.stats
              assertLedger(stats)
              assert.strictEqual(stats.accepted, stats.finished, "after shutdown every accepted task has finished")
            }).pipe(Effect.scoped, Effect.provide(TestClock.layer()))
          )
          await Effect.runPromise(program)
        }
      ),
      { numRuns: runs(100) }
    )
  })
})

describe("progress", () => {
  it.effect("progress gives a snapshot per interval with throughput, and ends after shutdown", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make({ concurrency: 2, shutdown: { mode: "cancel" } })
      yield* executor.submitAll(Array.from({ length: 8 }, () => Effect.sleep(250)))
      const reader = yield* Effect.forkChild(Stream.runCollect(executor.progress({ interval: "400 millis" })))
      yield* TestClock.adjust("1200 millis")
      yield* executor.shutdown()
      yield* TestClock.adjust("400 millis")
      const snapshots = yield* Fiber.join(reader)
      assert.deepStrictEqual(snapshots.map((p) => p.elapsed), [0, 400, 800, 1200, 1600])
      // Two at a time, 250 ms each: 2 done at 250, 4 at 500, 6 at 750, 8 at 1000.
      assert.deepStrictEqual(snapshots.map((p) => p.finished), [0, 2, 6, 8, 8])
      assert.deepStrictEqual(snapshots.map((p) => p.throughput), [0, 5, 10, 5, 0])
      assert.strictEqual(snapshots.at(-1)!.phase, "closed")
    }))
})

describe("tracing", () => {
  it.effect("each attempt is a span parented to the submitter's span, with id, key, attempt and outcome", () =>
    Effect.gen(function*() {
      const { ended, tracer } = recordingTracer()
      const executor = yield* Executor.make({
        name: "traced",
        shutdown: { mode: "cancel" },
        policy: ErrorPolicy.retry(Schedule.recurs(1))
      })
      const runs = yield* Ref.make(0)
      const handle = yield* executor.submit(
        Effect.flatMap(Ref.getAndUpdate(runs, (n) => n + 1), (n) => n === 0 ? Effect.fail("first") : Effect.succeed(n)),
        { key: "api" }
      ).pipe(Effect.withSpan("caller"), Effect.withTracer(tracer))
      yield* handle.await
      const caller = ended.find((s) => s.name === "caller")!
      const attempts = ended.filter((s) => s.name === "pile.task")
      assert.strictEqual(attempts.length, 2, "one span per attempt")
      for (const [i, span] of attempts.entries()) {
        assert.strictEqual(Option.getOrUndefined(span.parent)?.spanId, caller.spanId)
        assert.strictEqual(span.attributes.get("pile.task.id"), handle.id)
        assert.strictEqual(span.attributes.get("pile.task.key"), "api")
        assert.strictEqual(span.attributes.get("pile.task.attempt"), i + 1)
        assert.strictEqual(span.attributes.get("pile.executor"), "traced")
      }
      assert.deepStrictEqual(attempts.map((s) => s.attributes.get("pile.task.outcome")), ["failure", "success"])
    }))

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
