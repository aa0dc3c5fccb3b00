// Black-box tests, written from the docs against the public API only, of what the engine's hot-path passes
// rewrote inside: the histograms' buckets, a Pile's refill of its bounded buffer, attempts whose body ends
// synchronously, the Closed error made at shutdown only for waiting submitters, and the large finite capacity
// behind the unbounded Pile buffers.
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Metric, Ref, Schedule, Scope, Stream } from "effect"
import { PrometheusMetrics } from "effect/observability"
import { TestClock } from "effect/testing"
import { ErrorPolicy, Executor, type ExecutorError, type Outcome } from "../src/index.ts"

/** Every test gets its own metric registry: the default one is process-global. */
const isolated = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.provideService(effect, Metric.MetricRegistry, new Map())

/** Lets every fiber that can run without the clock moving do so. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 100; i++) yield* Effect.yieldNow
})

interface HistogramState {
  readonly buckets: ReadonlyArray<readonly [number, number]>
  readonly count: number
  readonly sum: number
  readonly min: number
  readonly max: number
}

/** The state of the histogram series `metric` of the executor `executor`, from a public Metric snapshot. */
const histogramOf = (metric: string, executor: string) =>
  Effect.map(Metric.snapshot, (snapshots) => {
    const series = snapshots.find((s) => s.id === metric && s.attributes?.["executor"] === executor)
    assert.isDefined(series, `${metric} of ${executor} is published`)
    return series!.state as unknown as HistogramState
  })

/**
 * The cumulative bucket counts a histogram with these boundaries must show for these durations (ms): a value
 * v counts in every bucket whose boundary b has v <= b (Prometheus' `le`).
 */
const expectedCumulative = (boundaries: ReadonlyArray<number>, millis: ReadonlyArray<number>) =>
  boundaries.map((b) => millis.filter((ms) => ms / 1000 <= b).length)

const runTime = "pile_task_run_seconds"
const queueWait = "pile_task_queue_wait_seconds"

describe("histograms: a duration lands in the bucket of its value, at and around every power of two", () => {
  const durations = [0, 1, 2, 3, 4, 5, 7, 8, 9, 511, 512, 513, 1023, 1024, 1025, 65_536, 65_537, 180_000, 600_000]

  it.effect("run times of sleeping bodies: 0, 1, 2, 3, 4, 5, ..., 1023, 1024, 1025 ms and minutes", () =>
    isolated(Effect.gen(function*() {
      const executor = yield* Executor.make({ name: "runs", concurrency: 64, shutdown: { mode: "cancel" } })
      for (const ms of durations) yield* executor.submit(ms === 0 ? Effect.void : Effect.sleep(ms))
      yield* TestClock.adjust("11 minutes")
      const stats = yield* executor.stats
      assert.strictEqual(stats.finished, durations.length)
      const state = yield* histogramOf(runTime, "runs")
      const boundaries = state.buckets.map(([b]) => b)
      assert.strictEqual(boundaries[0], 0.001, "the first boundary is 1 ms")
      assert.strictEqual(boundaries[boundaries.length - 1], Infinity)
      assert.deepStrictEqual(state.buckets.map(([, n]) => n), expectedCumulative(boundaries, durations))
      assert.strictEqual(state.count, durations.length)
      assert.closeTo(state.sum, durations.reduce((a, b) => a + b, 0) / 1000, 1e-9)
      assert.strictEqual(state.min, 0)
      assert.strictEqual(state.max, 600)
    })))

  it.effect("run times of bodies that move the TestClock themselves land in the same buckets", () =>
    isolated(Effect.gen(function*() {
      const executor = yield* Executor.make({ name: "movers", concurrency: 1, shutdown: { mode: "cancel" } })
      const moves = [1, 2, 3, 1023, 1024, 1025]
      const handles = yield* Effect.forEach(moves, (ms) => executor.submit(TestClock.adjust(ms)))
      for (const handle of handles) assert.strictEqual((yield* handle.outcome).kind, "success")
      const state = yield* histogramOf(runTime, "movers")
      const boundaries = state.buckets.map(([b]) => b)
      assert.deepStrictEqual(state.buckets.map(([, n]) => n), expectedCumulative(boundaries, moves))
      assert.strictEqual(state.count, moves.length)
      assert.closeTo(state.sum, moves.reduce((a, b) => a + b, 0) / 1000, 1e-9)
    })))

  it.effect("queue waits of exactly 1, 2, 3, 4, 5, 1024 and 1025 ms (one slot, the task ahead sleeps)", () =>
    isolated(Effect.gen(function*() {
      // Each round: a blocker runs `ms`, the probe waits `ms` in the queue and runs 0 ms.
      const waits = [1, 2, 3, 4, 5, 1023, 1024, 1025]
      const executor = yield* Executor.make({ name: "waits", concurrency: 1, shutdown: { mode: "cancel" } })
      for (const ms of waits) {
        yield* executor.submit(Effect.sleep(ms))
        const probe = yield* executor.submit(Effect.void)
        yield* TestClock.adjust(ms)
        assert.strictEqual((yield* probe.poll)?.kind, "success", `the probe behind ${ms} ms has run`)
      }
      const state = yield* histogramOf(queueWait, "waits")
      const boundaries = state.buckets.map(([b]) => b)
      // The blockers found the slot free: they waited 0 ms.
      const expected = [...waits.map(() => 0), ...waits]
      assert.deepStrictEqual(state.buckets.map(([, n]) => n), expectedCumulative(boundaries, expected))
      assert.strictEqual(state.count, expected.length)
      assert.closeTo(state.sum, waits.reduce((a, b) => a + b, 0) / 1000, 1e-9)
    })))

  it.effect("Prometheus text: the le buckets of 1, 2 and 1025 ms run times are cumulative and exact", () =>
    isolated(Effect.gen(function*() {
      const executor = yield* Executor.make({ name: "prom", concurrency: 8, shutdown: { mode: "cancel" } })
      for (const ms of [1, 2, 1025]) yield* executor.submit(Effect.sleep(ms))
      yield* TestClock.adjust("2 seconds")
      const text = yield* PrometheusMetrics.format()
      const bucket = (le: string) => {
        const match = new RegExp(`pile_task_run_seconds_bucket\\{executor="prom",le="${le}"\\} (\\d+)`).exec(text)
        assert.isNotNull(match, `bucket le=${le} in\n${text}`)
        return Number(match![1])
      }
      assert.strictEqual(bucket("0.001"), 1, "1 ms is in le=0.001")
      assert.strictEqual(bucket("0.002"), 2, "2 ms is in le=0.002")
      assert.strictEqual(bucket("0.004"), 2)
      assert.strictEqual(bucket("1.024"), 2, "1025 ms is not in le=1.024")
      assert.strictEqual(bucket("2.048"), 3)
      assert.strictEqual(bucket("\\+Inf"), 3)
    })))
})

/** The ids of outcomes, checking each appears once. */
const assertEachOnce = (ids: ReadonlyArray<number>, expected: number) => {
  assert.strictEqual(ids.length, expected, "as many outcomes as tasks")
  assert.strictEqual(new Set(ids).size, expected, "no outcome delivered twice")
}

const assertLedger = (stats: Executor.Stats) => {
  const byKind = Object.values(stats.outcomes).reduce((a, b) => a + b, 0)
  assert.strictEqual(byKind, stats.finished, "finished = sum of outcomes by kind")
  assert.strictEqual(stats.submitted, stats.accepted + stats.rejected)
  assert.strictEqual(stats.accepted, stats.queued + stats.waiting + stats.running + stats.finished)
}

describe("a Pile's bounded buffer: refills, backpressure and order", () => {
  it.effect("executor pile { capacity: 3 }: a full buffer keeps slots; tasks start only after a read; order is completion order", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<number>({
        concurrency: 3,
        capacity: 100,
        pile: { capacity: 3 },
        shutdown: { mode: "cancel" }
      })
      const started = yield* Ref.make<Array<number>>([])
      const task = (n: number) => Effect.andThen(Ref.update(started, (s) => [...s, n]), Effect.succeed(n))
      for (let n = 1; n <= 12; n++) yield* executor.submit(task(n))
      yield* settle
      // 3 buffered, 3 finished and holding their slots, the other 6 not started.
      assert.deepStrictEqual(yield* Ref.get(started), [1, 2, 3, 4, 5, 6])
      const before = yield* executor.stats
      assert.strictEqual(before.queued, 6)
      assertLedger(before)
      // Reading one outcome makes room for one: one held slot is freed, one more task starts (and finishes and
      // holds it).
      const first = yield* Stream.runCollect(Stream.take(executor.pile, 1))
      yield* settle
      assert.deepStrictEqual(first.map((o) => o.id), [1])
      assert.deepStrictEqual(yield* Ref.get(started), [1, 2, 3, 4, 5, 6, 7])
      const rest = yield* Stream.runCollect(Stream.take(executor.pile, 11))
      const values = [...first, ...rest].map((o) => (o.exit._tag === "Success" ? o.exit.value : -1))
      assert.deepStrictEqual(values, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], "instant tasks finish in start order")
      yield* settle
      const after = yield* executor.stats
      assertLedger(after)
      assert.strictEqual(after.running, 0)
      assert.strictEqual(after.accepted, after.finished)
      assert.strictEqual(after.pileBuffered, 0)
    }))

  it.effect("executor pile { capacity: 1 }: blocked deliveries come out in the order the tasks finished", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<number>({
        concurrency: 6,
        pile: { capacity: 1 },
        shutdown: { mode: "cancel" }
      })
      const sleeps = [50, 5, 30, 10, 40, 20]
      for (const ms of sleeps) yield* executor.submit(Effect.as(Effect.sleep(ms), ms))
      yield* TestClock.adjust(100)
      const outcomes = yield* Stream.runCollect(Stream.take(executor.pile, sleeps.length))
      assert.deepStrictEqual(
        outcomes.map((o) => (o.exit._tag === "Success" ? o.exit.value : -1)),
        [5, 10, 20, 30, 40, 50]
      )
    }))

  it.effect("batch run with buffer 2 and a slow consumer: running never above the cap, every outcome once", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make({ concurrency: 3, capacity: 4, shutdown: { mode: "cancel" } })
      const peak = yield* Ref.make(0)
      const sampler = yield* Effect.forkChild(
        Effect.forever(
          Effect.andThen(
            Effect.flatMap(executor.stats, (s) => Ref.update(peak, (p) => Math.max(p, s.running))),
            Effect.yieldNow
          )
        )
      )
      const inputs = Array.from({ length: 30 }, (_, i) => i)
      const reader = yield* Effect.forkChild(
        Stream.runCollect(
          executor.run(inputs, (i) => i % 3 === 0 ? Effect.succeed(i) : Effect.as(Effect.sleep(i % 7), i), {
            buffer: 2
          }).pipe(Stream.tap(() => Effect.sleep(3)))
        )
      )
      yield* TestClock.adjust(1_000)
      const outcomes = yield* Fiber.join(reader)
      yield* Fiber.interrupt(sampler)
      assert.sameMembers(outcomes.map((o) => o.input), inputs)
      assertEachOnce(outcomes.map((o) => o.id), inputs.length)
      assert.isTrue(outcomes.every((o) => o.kind === "success"))
      assert.isAtMost(yield* Ref.get(peak), 3, "running never above concurrency")
      const stats = yield* executor.stats
      assertLedger(stats)
      assert.strictEqual(stats.accepted, stats.finished)
      assert.strictEqual(stats.running, 0)
    }))

  it.effect("batch run with buffer 1: backpressure, an input starts only when the slow consumer reads", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make({ concurrency: 1, shutdown: { mode: "cancel" } })
      const started = yield* Ref.make<Array<number>>([])
      const inputs = [1, 2, 3, 4, 5, 6, 7, 8]
      const pile = executor.run(inputs, (i) => Effect.as(Ref.update(started, (s) => [...s, i]), i), { buffer: 1 })
      // The consumer holds each outcome 100 ms.
      const reader = yield* Effect.forkChild(Stream.runCollect(Stream.tap(pile, () => Effect.sleep(100))))
      yield* settle
      // At most: one in the consumer's hands, one in the buffer, one finished holding the only slot.
      const atStart = (yield* Ref.get(started)).length
      assert.isAtMost(atStart, 3, "a full buffer keeps the slot: the batch waits for the consumer")
      assert.isAtLeast(atStart, 2)
      for (let read = 1; read <= 3; read++) {
        yield* TestClock.adjust(100)
        yield* settle
        assert.strictEqual(
          (yield* Ref.get(started)).length,
          Math.min(inputs.length, atStart + read),
          `after ${read} reads`
        )
      }
      yield* TestClock.adjust(1_000)
      const outcomes = yield* Fiber.join(reader)
      assert.deepStrictEqual(outcomes.map((o) => o.input), inputs, "one slot: completion order is input order")
      assert.deepStrictEqual(yield* Ref.get(started), inputs)
      const stats = yield* executor.stats
      assert.strictEqual(stats.accepted, stats.finished)
      assert.strictEqual(stats.running, 0)
    }))

  it.effect("a consumer that takes one outcome of a batch then stops: the rest is cancelled, nothing leaks", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make({ concurrency: 2, capacity: 3, shutdown: { mode: "cancel" } })
      const first = yield* Stream.runCollect(
        Stream.take(
          executor.run(Array.from({ length: 20 }, (_, i) => i), (i) => Effect.as(Effect.sleep(i), i), {
            buffer: 1
          }),
          1
        )
      )
      assert.deepStrictEqual(first.map((o) => o.input), [0])
      yield* settle
      const stats = yield* executor.stats
      assertLedger(stats)
      assert.strictEqual(stats.accepted, stats.finished)
      assert.strictEqual(stats.running, 0)
      assert.strictEqual(stats.queued, 0)
      // The executor still works.
      assert.strictEqual(yield* (yield* executor.submit(Effect.succeed("after"))).join, "after")
    }))

  it.effect("a consumer of the executor pile that submits a task for each outcome it reads: every outcome once", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<number>({
        concurrency: 2,
        capacity: 2,
        pile: { capacity: 1 },
        shutdown: { mode: "cancel" }
      })
      const total = 40
      for (let n = 0; n < 4; n++) yield* executor.submit(Effect.succeed(n))
      let next = 4
      const outcomes = yield* Stream.runCollect(
        Stream.take(executor.pile, total).pipe(
          Stream.tap(() =>
            next < total
              ? Effect.asVoid(executor.submit(Effect.succeed(next++)))
              : Effect.void
          )
        )
      )
      assertEachOnce(outcomes.map((o) => o.id), total)
      assert.sameMembers(
        outcomes.map((o) => (o.exit._tag === "Success" ? o.exit.value : -1)),
        Array.from({ length: total }, (_, i) => i)
      )
      yield* settle
      const stats = yield* executor.stats
      assertLedger(stats)
      assert.strictEqual(stats.accepted, total)
      assert.strictEqual(stats.finished, total)
    }))

  it.effect("a consumer that cancels tasks while reading: each handle's outcome is delivered once, as the handle saw it", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<number>({
        concurrency: 3,
        pile: { capacity: 2 },
        shutdown: { mode: "cancel" }
      })
      const handles = yield* Effect.forEach(
        Array.from({ length: 12 }, (_, i) => i),
        (i) => executor.submit(i % 2 === 0 ? Effect.succeed(i) : Effect.as(Effect.sleep(i), i))
      )
      yield* settle
      let read = 0
      const reader = yield* Effect.forkChild(Stream.runCollect(
        Stream.take(executor.pile, handles.length).pipe(Stream.tap(() => {
          read++
          // Cancel a task further down the line for each outcome read.
          const victim = handles[(read * 5) % handles.length]!
          return victim.cancel
        }))
      ))
      yield* TestClock.adjust(100)
      const outcomes = yield* Fiber.join(reader)
      assertEachOnce(outcomes.map((o) => o.id), handles.length)
      for (const handle of handles) {
        const outcome = yield* handle.outcome
        const delivered = outcomes.find((o) => o.id === handle.id)
        assert.isDefined(delivered)
        assert.strictEqual(delivered!.kind, outcome.kind, `task ${handle.id}`)
      }
      const stats = yield* executor.stats
      assertLedger(stats)
      assert.strictEqual(stats.accepted, stats.finished)
      assert.strictEqual(stats.running, 0)
    }))
})

describe("a refill that releases several blocked deliveries at once", () => {
  it.effect("batch run, buffer 3, 4 slots, 200 instant inputs, a consumer 1 ms per outcome: input order, cap kept", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make({ concurrency: 4, capacity: 8, shutdown: { mode: "cancel" } })
      let peak = 0
      const inputs = Array.from({ length: 200 }, (_, i) => i)
      const reader = yield* Effect.forkChild(Stream.runCollect(
        executor.run(inputs, (i) => Effect.succeed(i), { buffer: 3 }).pipe(
          Stream.tap(() =>
            Effect.andThen(
              Effect.flatMap(executor.stats, (s) => Effect.sync(() => (peak = Math.max(peak, s.running)))),
              Effect.sleep(1)
            )
          )
        )
      ))
      yield* TestClock.adjust(1_000)
      const outcomes = yield* Fiber.join(reader)
      // Tasks start first come, first served and instant ones finish as they start: completion order is input order.
      assert.deepStrictEqual(outcomes.map((o) => o.input), inputs)
      assertEachOnce(outcomes.map((o) => o.id), inputs.length)
      assert.isAtMost(peak, 4)
      const stats = yield* executor.stats
      assertLedger(stats)
      assert.strictEqual(stats.accepted, stats.finished)
    }))

  it.effect("batch run, buffer 2: a consumer that stops after 3 of 50 while deliveries are blocked leaves nothing behind", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<unknown>({
        concurrency: 4,
        capacity: 4,
        pile: "unbounded",
        shutdown: { mode: "cancel" }
      })
      const first = yield* Stream.runCollect(
        Stream.take(executor.run(Array.from({ length: 50 }, (_, i) => i), (i) => Effect.succeed(i), { buffer: 2 }), 3)
      )
      assert.deepStrictEqual(first.map((o) => o.input), [0, 1, 2])
      yield* settle
      const stats = yield* executor.stats
      assertLedger(stats)
      assert.strictEqual(stats.accepted, stats.finished)
      assert.strictEqual(stats.running + stats.queued + stats.waiting, 0)
      assert.strictEqual(stats.pileBuffered, 0, "a batch's outcomes never reach the executor-wide Pile")
      const handle = yield* executor.submit(Effect.succeed("after"))
      assert.strictEqual(yield* handle.join, "after")
      yield* executor.shutdown({ mode: "cancel" })
      const wide = yield* Stream.runCollect(executor.pile)
      assert.deepStrictEqual(wide.map((o) => o.id), [handle.id])
    }))

  it.effect("queue waits of tasks started by a read are measured at the read (1024 and 2048 ms later)", () =>
    isolated(Effect.gen(function*() {
      const executor = yield* Executor.make<number>({
        name: "refill",
        concurrency: 1,
        pile: { capacity: 1 },
        shutdown: { mode: "cancel" }
      })
      for (let n = 0; n < 4; n++) yield* executor.submit(Effect.succeed(n))
      yield* settle
      // 0 is buffered, 1 finished and holds the slot, 2 and 3 are queued.
      yield* TestClock.adjust(1024)
      yield* Stream.runCollect(Stream.take(executor.pile, 1)) // 1 enters, 2 starts (and holds the slot)
      yield* settle
      yield* TestClock.adjust(1024)
      yield* Stream.runCollect(Stream.take(executor.pile, 1)) // 2 enters, 3 starts
      yield* settle
      const state = yield* histogramOf(queueWait, "refill")
      const boundaries = state.buckets.map(([b]) => b)
      const waits = [0, 0, 1024, 2048]
      assert.deepStrictEqual(state.buckets.map(([, n]) => n), expectedCumulative(boundaries, waits))
      assert.closeTo(state.sum, 3.072, 1e-9)
      const outcomes = yield* Stream.runCollect(Stream.take(executor.pile, 2))
      assert.deepStrictEqual(outcomes.map((o) => o.id), [3, 4].map((k) => k + (outcomes[0]!.id - 3)))
    })))

  it.effect("a task body that reads the executor's bounded Pile (its read frees a slot inside the engine)", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<unknown>({
        concurrency: 2,
        pile: { capacity: 1 },
        shutdown: { mode: "cancel" }
      })
      for (let n = 0; n < 2; n++) yield* executor.submit(Effect.succeed(n))
      yield* settle
      // One outcome buffered, one delivery blocked holding a slot: the other slot is for the reader task.
      const reader = yield* executor.submit(Stream.runCollect(Stream.take(executor.pile, 2)))
      // Queued behind the reader: starts when the reader's first read frees the held slot.
      const late = yield* executor.submit(Effect.succeed("late"))
      yield* settle
      const read = (yield* reader.poll)?.exit
      assert.isDefined(read, "the reader task finished without anyone else reading")
      assert.isTrue(Exit.isSuccess(read!))
      const inside = (read as unknown as Exit.Success<ReadonlyArray<Outcome.Outcome<unknown, unknown>>>).value
      assert.strictEqual(inside.length, 2)
      assert.strictEqual((yield* late.poll)?.kind, "success")
      const rest = yield* Stream.runCollect(Stream.take(executor.pile, 2))
      assertEachOnce([...inside, ...rest].map((o) => o.id), 4)
      const stats = yield* executor.stats
      assertLedger(stats)
      assert.strictEqual(stats.accepted, stats.finished)
    }))
})

describe("bodies that end synchronously", () => {
  it.effect("Effect.void, Effect.sync, Effect.succeed, Effect.fail, a throw, Effect.die and Effect.interrupt", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<unknown, unknown>({ concurrency: 2, shutdown: { mode: "cancel" } })
      const bodies: Array<[string, Effect.Effect<unknown, unknown>, Outcome.Kind]> = [
        ["void", Effect.void, "success"],
        ["sync", Effect.sync(() => 1), "success"],
        ["succeed", Effect.succeed(2), "success"],
        ["fail", Effect.fail("f"), "failure"],
        [
          "throw",
          Effect.sync(() => {
            throw new Error("thrown")
          }),
          "defect"
        ],
        ["die", Effect.die("d"), "defect"],
        ["interrupt", Effect.interrupt, "interrupted"]
      ]
      for (const [name, body, kind] of bodies) {
        const outcome = yield* (yield* executor.submit(body)).outcome
        assert.strictEqual(outcome.kind, kind, name)
        assert.strictEqual(outcome.attempts, 1, name)
      }
      const stats = yield* executor.stats
      assertLedger(stats)
      assert.strictEqual(stats.running, 0)
    }))

  it.effect("under a retry policy: a synchronous failure is retried as many times as the schedule says", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<unknown, unknown>({
        policy: ErrorPolicy.retry(Schedule.recurs(3)),
        shutdown: { mode: "cancel" }
      })
      const calls = yield* Ref.make(0)
      const failing = yield* (yield* executor.submit(Effect.andThen(Ref.update(calls, (n) => n + 1), Effect.fail("x"))))
        .outcome
      assert.deepStrictEqual([failing.kind, failing.attempts], ["failure", 4])
      assert.strictEqual(yield* Ref.get(calls), 4)
      // Fails twice, then succeeds: all synchronously.
      let runs = 0
      const flaky = yield* (yield* executor.submit(Effect.suspend(() =>
        ++runs < 3 ? Effect.fail("again") : Effect.succeed(runs)
      )))
        .outcome
      assert.deepStrictEqual([flaky.kind, flaky.attempts], ["success", 3])
      assert.deepStrictEqual(flaky.exit, Exit.succeed(3))
      // A synchronous defect is not retried by retry (defects are recorded by default)...
      const dying = yield* (yield* executor.submit(Effect.die("boom"))).outcome
      assert.deepStrictEqual([dying.kind, dying.attempts], ["defect", 1])
      const interrupted = yield* (yield* executor.submit(Effect.interrupt)).outcome
      assert.deepStrictEqual([interrupted.kind, interrupted.attempts], ["interrupted", 1])
      // ...unless withDefects says so.
      let throws = 0
      const retriedDefect = yield* (yield* executor.submit(
        Effect.sync(() => {
          if (++throws < 3) throw new Error("hang up")
          return throws
        }),
        { policy: ErrorPolicy.record.pipe(ErrorPolicy.withDefects(ErrorPolicy.retry(Schedule.recurs(5)))) }
      )).outcome
      assert.deepStrictEqual([retriedDefect.kind, retriedDefect.attempts], ["success", 3])
      const stats = yield* executor.stats
      assert.strictEqual(stats.retries, 3 + 2 + 2)
    }))

  it.effect("with a timeout: a synchronous body succeeds before any timeout, a synchronous failure is not a timeout", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<unknown, unknown>({
        timeout: "1 millis",
        deadline: "1 millis",
        shutdown: { mode: "cancel" }
      })
      const ok = yield* (yield* executor.submit(Effect.sync(() => "ok"))).outcome
      assert.deepStrictEqual([ok.kind, ok.attempts], ["success", 1])
      const failed = yield* (yield* executor.submit(Effect.fail("no"))).outcome
      assert.deepStrictEqual([failed.kind, failed.attempts], ["failure", 1])
      const slow = yield* executor.submit(Effect.sleep(5))
      yield* TestClock.adjust(5)
      assert.strictEqual((yield* slow.outcome).kind, "timedOut")
    }))

  it.effect("a body that cancels its own task synchronously ends as cancelled, after one attempt", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<unknown, unknown>({
        concurrency: 1,
        policy: ErrorPolicy.retry(Schedule.recurs(3)),
        shutdown: { mode: "cancel" }
      })
      yield* executor.submit(Effect.sleep(10)) // holds the slot, so the handle exists before the body runs
      const box: { self?: Executor.TaskHandle<unknown, unknown> } = {}
      let after = false
      const self = yield* executor.submit(
        Effect.suspend(() => box.self!.cancel).pipe(Effect.andThen(Effect.sync(() => (after = true))))
      )
      box.self = self
      yield* TestClock.adjust(10)
      const outcome = yield* self.outcome
      assert.deepStrictEqual([outcome.kind, outcome.attempts], ["cancelled", 1])
      assert.isFalse(after, "the body did not go on after cancelling itself")
      yield* settle
      const stats = yield* executor.stats
      assertLedger(stats)
      assert.strictEqual(stats.running, 0)
      assert.strictEqual(stats.retries, 0, "a cancellation is never retried")
    }))

  it.effect("a body that submits tasks synchronously (submit and trySubmit), even with a single slot", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<unknown, unknown>({
        concurrency: 1,
        capacity: 4,
        shutdown: { mode: "cancel" }
      })
      const outer = yield* executor.submit(
        Effect.gen(function*() {
          const a = yield* executor.submit(Effect.succeed("a"))
          const b = yield* executor.trySubmit(Effect.sync(() => "b"))
          return [a, b] as const
        })
      )
      const [a, b] = yield* outer.join
      assert.strictEqual(yield* a.join, "a")
      assert.strictEqual(yield* b.join, "b")
      assert.isTrue(a.id < b.id && outer.id < a.id)
      const stats = yield* executor.stats
      assertLedger(stats)
      assert.strictEqual(stats.finished, 3)
    }))

  it.effect("a batch of synchronous bodies: run's f throwing is that input's defect, the others succeed", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make({ concurrency: 2, shutdown: { mode: "cancel" } })
      const outcomes = yield* Stream.runCollect(executor.run([1, 2, 3, 4, 5], (n) => {
        if (n === 3) throw new Error("f threw")
        return n === 4 ? Effect.fail("four") : Effect.succeed(n)
      }))
      const kinds = Object.fromEntries(outcomes.map((o) => [o.input, o.kind]))
      assert.deepStrictEqual(kinds, { 1: "success", 2: "success", 3: "defect", 4: "failure", 5: "success" })
    }))
})

/** The executor error an exit failed with. */
const errorOf = <A>(exit: Exit.Exit<A, ExecutorError.ExecutorError>): ExecutorError.ExecutorError => {
  assert.isTrue(Exit.isFailure(exit), "the submitter failed")
  const error = Cause.findErrorOption((exit as Exit.Failure<A, ExecutorError.ExecutorError>).cause)
  assert.strictEqual(error._tag, "Some")
  return (error as { readonly value: ExecutorError.ExecutorError }).value
}

const assertClosed = (error: ExecutorError.ExecutorError) => {
  assert.strictEqual(error._tag, "ExecutorError")
  assert.strictEqual(error.reason._tag, "Closed")
  assert.strictEqual((error.reason as ExecutorError.Closed).escalated, false)
  assert.strictEqual(error.message, "the executor is shut down and accepts no more work")
  assert.match(error.reason.message, /shut down/)
}

/** One running task, one queued (capacity 1), and three submitters waiting for room. */
const blockedSubmitters = (executor: Executor.Executor<unknown, unknown>) =>
  Effect.gen(function*() {
    yield* executor.submit(Effect.never)
    yield* Effect.yieldNow
    yield* executor.submit(Effect.never) // fills the queue (capacity 1)
    const fibers = yield* Effect.forEach(
      [1, 2, 3],
      (n) => Effect.forkChild(Effect.exit(executor.submit(Effect.succeed(n))), { startImmediately: true })
    )
    yield* settle
    assert.strictEqual((yield* executor.stats).blockedSubmitters, 3)
    return fibers
  })

describe("submitters blocked on a full queue when the executor shuts down", () => {
  for (const mode of ["cancel", "drain"] as const) {
    it.effect(`shutdown ${mode}: each fails with ExecutorError Closed, "shut down"`, () =>
      Effect.gen(function*() {
        const executor = yield* Executor.make<unknown, unknown>({
          concurrency: 1,
          capacity: 1,
          shutdown: { mode: "cancel" }
        })
        const fibers = yield* blockedSubmitters(executor)
        const shutdown = yield* Effect.forkChild(executor.shutdown({ mode, grace: "1 second" }), {
          startImmediately: true
        })
        yield* settle
        for (const fiber of fibers) assertClosed(errorOf(yield* Fiber.join(fiber)))
        yield* TestClock.adjust("1 minute")
        yield* Fiber.join(shutdown)
        const stats = yield* executor.stats
        assert.strictEqual(stats.rejected, 3)
        assert.strictEqual(stats.blockedSubmitters, 0)
        assert.strictEqual(stats.phase, "closed")
        // A submission after the shutdown fails the same way.
        assertClosed(errorOf(yield* Effect.exit(executor.submit(Effect.void))))
      }))
  }

  for (const mode of ["cancel", "drain"] as const) {
    it.effect(`the scope closing (shutdown ${mode}): each fails with ExecutorError Closed, "shut down"`, () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const executor = yield* Executor.make<unknown, unknown>({
          concurrency: 1,
          capacity: 1,
          shutdown: { mode, grace: "1 second" }
        }).pipe(Scope.provide(scope))
        const fibers = yield* blockedSubmitters(executor)
        const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void), { startImmediately: true })
        yield* settle
        for (const fiber of fibers) assertClosed(errorOf(yield* Fiber.join(fiber)))
        yield* TestClock.adjust("1 minute")
        yield* Fiber.join(closing)
        assertClosed(errorOf(yield* Effect.exit(executor.submit(Effect.void))))
        assertClosed(errorOf(yield* Effect.exit(executor.trySubmit(Effect.void))))
      }))
  }

  it.effect("a batch whose feeder is blocked on a full queue: the accepted tasks' outcomes, then Closed", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<unknown, unknown>({
        concurrency: 1,
        capacity: 1,
        shutdown: { mode: "cancel" }
      })
      const seen: Array<Outcome.Outcome<unknown, unknown, number>> = []
      const consumer = yield* Effect.forkChild(
        Effect.exit(Stream.runForEach(
          executor.run([1, 2, 3, 4], () => Effect.never),
          (o) => Effect.sync(() => seen.push(o))
        )),
        { startImmediately: true }
      )
      yield* settle
      assert.strictEqual((yield* executor.stats).accepted, 2, "one running, one queued, the feeder waits")
      yield* executor.shutdown({ mode: "cancel" })
      assertClosed(errorOf(yield* Fiber.join(consumer)))
      assert.sameMembers(seen.map((o) => o.input), [1, 2])
      assert.isTrue(seen.every((o) => o.kind === "interrupted"))
    }))

  it.effect("submitAll blocked on a full queue fails with Closed too, after the tasks it got in", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<unknown, unknown>({
        concurrency: 1,
        capacity: 1,
        pile: "unbounded",
        shutdown: { mode: "cancel" }
      })
      const feeder = yield* Effect.forkChild(
        Effect.exit(executor.submitAll([Effect.never, Effect.never, Effect.void, Effect.void])),
        { startImmediately: true }
      )
      yield* settle
      yield* executor.shutdown({ mode: "cancel" })
      assertClosed(errorOf(yield* Fiber.join(feeder)))
      const outcomes = yield* Stream.runCollect(executor.pile)
      assert.deepStrictEqual(outcomes.map((o) => o.kind), ["interrupted", "interrupted"])
    }))
})

describe("unbounded Pile buffers keep everything", () => {
  const many = 100_000

  it.effect(
    "pile: \"unbounded\": 100,000 instant tasks with no reader, then a reader gets every outcome",
    () =>
      Effect.gen(function*() {
        const executor = yield* Executor.make<number>({
          concurrency: 16,
          capacity: 1024,
          pile: "unbounded",
          metrics: false,
          shutdown: { mode: "cancel" }
        })
        const accepted = yield* executor.submitAll(Array.from({ length: many }, (_, i) => Effect.succeed(i)))
        assert.strictEqual(accepted, many)
        yield* settle
        const stats = yield* executor.stats
        assert.strictEqual(stats.finished, many)
        assert.strictEqual(stats.pileBuffered, many)
        assert.strictEqual(stats.running, 0)
        const outcomes = yield* Stream.runCollect(Stream.take(executor.pile, many))
        assertEachOnce(outcomes.map((o) => o.id), many)
        let sum = 0
        for (const o of outcomes) sum += o.exit._tag === "Success" ? o.exit.value : 0
        assert.strictEqual(sum, (many * (many - 1)) / 2)
        assert.strictEqual((yield* executor.stats).pileBuffered, 0)
      }),
    { timeout: 60_000 }
  )

  it.effect(
    "pile: \"read\": once the stream is made, 100,000 outcomes are kept until it runs",
    () =>
      Effect.gen(function*() {
        const executor = yield* Executor.make<number>({ concurrency: 16, metrics: false, shutdown: { mode: "cancel" } })
        const pile = executor.pile // made: outcomes are kept from now on
        yield* executor.submitAll(Array.from({ length: many }, (_, i) => Effect.succeed(i)))
        yield* settle
        assert.strictEqual((yield* executor.stats).pileBuffered, many)
        yield* executor.shutdown({ mode: "drain" })
        const outcomes = yield* Stream.runCollect(pile)
        assertEachOnce(outcomes.map((o) => o.id), many)
      }),
    { timeout: 60_000 }
  )

  it.effect("shutdown lifts a bounded pile's bound: 2,000 outcomes behind a capacity of 1 are all readable after a drain", () =>
    Effect.gen(function*() {
      const n = 2_000
      const executor = yield* Executor.make<number>({
        concurrency: 8,
        capacity: n,
        pile: { capacity: 1 },
        shutdown: { mode: "cancel" }
      })
      yield* executor.submitAll(Array.from({ length: n }, (_, i) => Effect.succeed(i)))
      yield* settle
      yield* executor.shutdown({ mode: "drain", grace: "1 hour" })
      const stats = yield* executor.stats
      assert.strictEqual(stats.finished, n)
      const outcomes = yield* Stream.runCollect(executor.pile)
      assertEachOnce(outcomes.map((o) => o.id), n)
    }))

  it.effect("a batch whose consumer reads nothing until 5,000 instant tasks were fed still delivers each once", () =>
    Effect.gen(function*() {
      const n = 5_000
      const executor = yield* Executor.make({ concurrency: 16, metrics: false, shutdown: { mode: "cancel" } })
      const outcomes = yield* Stream.runCollect(
        executor.run(Array.from({ length: n }, (_, i) => i), (i) => Effect.succeed(i), { buffer: 10_000 })
      )
      assertEachOnce(outcomes.map((o) => o.id), n)
      assert.sameMembers(outcomes.map((o) => o.input), Array.from({ length: n }, (_, i) => i))
    }))
})
