import { assert, describe, it } from "@effect/vitest"
import { Clock, Data, Deferred, Duration, Effect, Exit, Fiber, Option, Ref, Schedule, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import * as ErrorPolicy from "../src/ErrorPolicy.ts"
import * as RateLimit from "../src/RateLimit.ts"
import { assertLedger, engineOf, failsOnce, make, plain, retryOnce, runs, settleFibers } from "./support.ts"

/** An error that carries the wait a server asked for, in milliseconds. */
class RateLimited extends Data.TaggedError("RateLimited")<{ readonly retryAfter: number }> {}

/** A settlement: an attempt that did not succeed used nothing (its reservation is refunded). */
const refundIfStopped = (exit: Exit.Exit<unknown, unknown>) => Exit.isSuccess(exit) ? undefined : { tokens: 0 }

interface Start {
  readonly at: number
  readonly key: string | undefined
  readonly cost: RateLimit.Cost
}

/** A task that records when it started, under which key and at what cost. */
const recorded = (log: Ref.Ref<Array<Start>>, key: string | undefined, cost: RateLimit.Cost, work = 0) =>
  Effect.flatMap(Clock.currentTimeMillis, (at) => Ref.update(log, (xs) => [...xs, { at, key, cost }])).pipe(
    Effect.andThen(Effect.sleep(work))
  )

/**
 * The most units started in any window [s, s + W): the maximum is reached by a window that begins at a start,
 * so checking those windows checks every window of the time line.
 */
const maxInWindow = (starts: ReadonlyArray<{ readonly at: number; readonly amount: number }>, window: number) => {
  const sorted = [...starts].sort((a, b) => a.at - b.at)
  let max = 0
  for (let i = 0; i < sorted.length; i++) {
    let sum = 0
    for (let j = i; j < sorted.length && sorted[j]!.at < sorted[i]!.at + window; j++) sum += sorted[j]!.amount
    max = Math.max(max, sum)
  }
  return max
}

const requests = (log: ReadonlyArray<Start>) => log.map((s) => ({ at: s.at, amount: s.cost["requests"] ?? 1 }))
const tokens = (log: ReadonlyArray<Start>) => log.map((s) => ({ at: s.at, amount: s.cost["tokens"] ?? 0 }))

describe("rate limits", () => {
  it("I12 sliding window: no window of length W anywhere admits more than L, and every task is admitted", async () => {
    const arbitrary = fc.record({
      limit: fc.integer({ min: 1, max: 8 }),
      window: fc.integer({ min: 10, max: 200 }),
      tokenLimit: fc.integer({ min: 10, max: 40 }),
      concurrency: fc.integer({ min: 1, max: 6 }),
      tasks: fc.array(
        fc.record({
          arrival: fc.integer({ min: 0, max: 300 }),
          tokens: fc.integer({ min: 0, max: 10 }),
          work: fc.integer({ min: 0, max: 30 })
        }),
        { maxLength: 30 }
      )
    })
    await fc.assert(
      fc.asyncProperty(arbitrary, async (p) => {
        const program = Effect.gen(function*() {
          const log = yield* Ref.make<Array<Start>>([])
          const executor = yield* make({
            concurrency: p.concurrency,
            capacity: 100,
            limits: [
              { limit: p.limit, window: p.window },
              { budget: "tokens", limit: p.tokenLimit, window: p.window * 2 }
            ]
          })
          const handles = yield* Effect.forEach(p.tasks, (t) =>
            Effect.forkChild(Effect.andThen(
              Effect.sleep(t.arrival),
              Effect.flatMap(
                executor.submit(recorded(log, undefined, { tokens: t.tokens }, t.work), { cost: { tokens: t.tokens } }),
                (h) => h.outcome
              )
            )))
          yield* TestClock.adjust(100_000)
          const outcomes = yield* Fiber.joinAll(handles)
          return { log: yield* Ref.get(log), outcomes, stats: yield* executor.stats }
        }).pipe(Effect.scoped, Effect.provide(TestClock.layer()))
        const { log, outcomes, stats } = await Effect.runPromise(program)
        assert.strictEqual(log.length, p.tasks.length, "every task was admitted (no drop, no starvation)")
        assert.isTrue(outcomes.every((o) => o.kind === "success"))
        assert.isAtMost(maxInWindow(requests(log), p.window), p.limit)
        assert.isAtMost(maxInWindow(tokens(log), p.window * 2), p.tokenLimit)
        assertLedger(stats)
      }),
      { numRuns: runs(150) }
    )
  })

  it("I12 GCRA with burst 1: starts are at least W / L apart, and any window holds at most L", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 10, max: 100 }),
        fc.array(fc.integer({ min: 0, max: 200 }), { maxLength: 25 }),
        async (limit, window, arrivals) => {
          const program = Effect.gen(function*() {
            const log = yield* Ref.make<Array<Start>>([])
            const executor = yield* make({ concurrency: 8, limits: [{ limit, window, algorithm: "gcra" }] })
            yield* Effect.forEach(
              arrivals,
              (arrival) =>
                Effect.forkChild(Effect.andThen(Effect.sleep(arrival), executor.submit(recorded(log, undefined, {}))))
            )
            yield* TestClock.adjust(100_000)
            return yield* Ref.get(log)
          }).pipe(Effect.scoped, Effect.provide(TestClock.layer()))
          const log = await Effect.runPromise(program)
          assert.strictEqual(log.length, arrivals.length)
          const times = log.map((s) => s.at).sort((a, b) => a - b)
          for (let i = 1; i < times.length; i++) assert.isAtLeast(times[i]! - times[i - 1]!, Math.floor(window / limit))
          assert.isAtMost(maxInWindow(requests(log), window), limit)
        }
      ),
      { numRuns: runs(100) }
    )
  })

  it("I12 token bucket: any interval of length t admits at most B + r·t", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 6 }),
        fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 25 }),
        async (limit, burst, arrivals) => {
          const window = 100
          const program = Effect.gen(function*() {
            const log = yield* Ref.make<Array<Start>>([])
            const executor = yield* make({
              concurrency: 8,
              limits: [{ limit, window, algorithm: "token-bucket", burst }]
            })
            yield* Effect.forEach(
              arrivals,
              (arrival) =>
                Effect.forkChild(Effect.andThen(Effect.sleep(arrival), executor.submit(recorded(log, undefined, {}))))
            )
            yield* TestClock.adjust(100_000)
            return yield* Ref.get(log)
          }).pipe(Effect.scoped, Effect.provide(TestClock.layer()))
          const log = await Effect.runPromise(program)
          assert.strictEqual(log.length, arrivals.length)
          const times = log.map((s) => s.at).sort((a, b) => a - b)
          for (let i = 0; i < times.length; i++) {
            for (let j = i; j < times.length; j++) {
              const t = times[j]! - times[i]!
              assert.isAtMost(j - i + 1, burst + (limit / window) * t + 1e-9)
            }
          }
        }
      ),
      { numRuns: runs(100) }
    )
  })

  it.effect("two budgets: when the token budget binds, tasks wait for tokens", () =>
    Effect.gen(function*() {
      const log = yield* Ref.make<Array<Start>>([])
      const executor = yield* make({
        concurrency: 10,
        limits: [
          { key: "gpt-x", limit: 100, window: "1 minute" },
          { key: "gpt-x", budget: "tokens", limit: 1000, window: "1 minute" }
        ]
      })
      for (let i = 0; i < 5; i++) {
        yield* executor.submit(recorded(log, "gpt-x", { tokens: 400 }), { key: "gpt-x", cost: { tokens: 400 } })
      }
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* Ref.get(log)).length, 2, "1000 tokens per minute: two tasks of 400 tokens")
      yield* TestClock.adjust("1 minute")
      assert.strictEqual((yield* Ref.get(log)).length, 4)
      yield* TestClock.adjust("1 minute")
      assert.deepStrictEqual((yield* Ref.get(log)).map((s) => s.at), [0, 0, 60_000, 60_000, 120_000])
    }))

  it.effect("two budgets: when the request budget binds, cheap tasks still wait for requests", () =>
    Effect.gen(function*() {
      const log = yield* Ref.make<Array<Start>>([])
      const executor = yield* make({
        concurrency: 10,
        limits: [
          { key: "gpt-x", limit: 3, window: "1 minute" },
          { key: "gpt-x", budget: "tokens", limit: 100_000, window: "1 minute" }
        ]
      })
      for (let i = 0; i < 5; i++) {
        yield* executor.submit(recorded(log, "gpt-x", { tokens: 10 }), { key: "gpt-x", cost: { tokens: 10 } })
      }
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* Ref.get(log)).length, 3)
      yield* TestClock.adjust("1 minute")
      assert.deepStrictEqual((yield* Ref.get(log)).map((s) => s.at), [0, 0, 0, 60_000, 60_000])
    }))

  it.effect("budgets are reserved all or nothing: a task denied one budget takes nothing from the other", () =>
    Effect.gen(function*() {
      const log = yield* Ref.make<Array<Start>>([])
      const executor = yield* make({
        concurrency: 10,
        limits: [
          { limit: 2, window: "1 minute" },
          { budget: "tokens", limit: 10, window: "1 minute" }
        ]
      })
      yield* executor.submit(recorded(log, undefined, { tokens: 9 }), { cost: { tokens: 9 } })
      // Needs 5 tokens: denied, so it must not hold the second request slot...
      yield* executor.submit(recorded(log, undefined, { tokens: 5 }), { cost: { tokens: 5 } })
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* Ref.get(log)).length, 1)
      // ...which the next minute's tasks can use, in arrival order.
      yield* TestClock.adjust("1 minute")
      assert.strictEqual((yield* Ref.get(log)).length, 2)
    }))

  it.effect("settlement: an over-estimate frees budget for the next task in the same window", () =>
    Effect.gen(function*() {
      const log = yield* Ref.make<Array<Start>>([])
      const executor = yield* make({
        concurrency: 10,
        limits: [{ budget: "tokens", limit: 1000, window: "1 minute" }]
      })
      // Reserves 1000 (the estimate) but reports 200 used: 800 are refunded to the current window.
      yield* executor.submit(Effect.as(recorded(log, undefined, {}), { usage: 200 }), {
        cost: { tokens: 1000 },
        settle: (exit) => Exit.isSuccess(exit) ? { tokens: exit.value.usage } : undefined
      })
      const next = yield* executor.submit(recorded(log, undefined, {}), { cost: { tokens: 700 } })
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* next.outcome).kind, "success")
      assert.deepStrictEqual((yield* Ref.get(log)).map((s) => s.at), [0, 0])
    }))

  it.effect("settlement: an under-estimate is charged to the window it was reserved in", () =>
    Effect.gen(function*() {
      const log = yield* Ref.make<Array<Start>>([])
      const executor = yield* make({
        concurrency: 10,
        limits: [{ budget: "tokens", limit: 1000, window: "1 minute" }]
      })
      yield* executor.submit(Effect.as(recorded(log, undefined, {}), 1000), {
        cost: { tokens: 100 },
        settle: (exit) => Exit.isSuccess(exit) ? { tokens: exit.value } : undefined
      })
      yield* TestClock.adjust(1)
      yield* executor.submit(recorded(log, undefined, {}), { cost: { tokens: 100 } })
      yield* TestClock.adjust("30 seconds")
      assert.strictEqual((yield* Ref.get(log)).length, 1, "the window is full after settlement")
      yield* TestClock.adjust("31 seconds")
      assert.strictEqual((yield* Ref.get(log)).length, 2)
    }))

  it.effect("settlement: a settle that reports nothing leaves the reservation charged as estimated", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 10, limits: [{ budget: "tokens", limit: 1000, window: "1 minute" }] })
      const first = yield* executor.submit(Effect.void, { cost: { tokens: 700 }, settle: () => undefined })
      const next = yield* executor.submit(Effect.succeed("next"), { cost: { tokens: 700 } })
      yield* TestClock.adjust(1)
      assert.strictEqual((yield* first.poll)?.kind, "success")
      assert.isUndefined(yield* next.poll, "the 700 tokens stay charged until the window has passed")
      yield* TestClock.adjust("1 minute")
      assert.strictEqual((yield* next.poll)?.kind, "success")
    }))

  it.effect("settlement: a task no limit applies to reserved nothing, and its settle is not asked", () =>
    Effect.gen(function*() {
      const executor = yield* make({ limits: [{ key: "other", limit: 1, window: "1 minute" }] })
      let asked = 0
      // A failure: the attempt's end is settled (a success without a reservation skips the settlement early).
      const handle = yield* executor.submit(Effect.fail("failed"), {
        settle: () => {
          asked++
          return { tokens: 5 }
        }
      })
      yield* TestClock.adjust(1)
      assert.strictEqual((yield* handle.poll)?.kind, "failure")
      assert.strictEqual(asked, 0)
    }))

  // Issue 19 item 8: a refund applied after later reservations gave back capacity they had relied on.
  it.effect("I12 GCRA with burst 1: a refund after a later reservation does not bring the next start closer", () =>
    Effect.gen(function*() {
      const log = yield* Ref.make<Array<Start>>([])
      const executor = yield* make({
        concurrency: 4,
        limits: [{ limit: 10, window: "1 second", algorithm: "gcra", burst: 1 }]
      })
      // A reserves one request, runs 150 ms and is refunded; B (at 100) reserved after it.
      yield* executor.submit(recorded(log, "A", {}, 150), { settle: () => ({ requests: 0 }) })
      for (const key of ["B", "C", "D"]) yield* executor.submit(recorded(log, key, {}))
      yield* TestClock.adjust("1 second")
      const starts = (yield* Ref.get(log)).map((s) => [s.key, s.at] as const)
      assert.strictEqual(starts.length, 4)
      for (let i = 1; i < starts.length; i++) {
        assert.isAtLeast(starts[i]![1] - starts[i - 1]![1], 100, `starts at least 100 ms apart: ${starts.join(" ")}`)
      }
    }))

  it.effect("I12 token bucket: a refund after a later reservation does not let more than B + r·t through", () =>
    Effect.gen(function*() {
      const log = yield* Ref.make<Array<Start>>([])
      const executor = yield* make({
        concurrency: 8,
        limits: [{ limit: 2, window: "1 second", algorithm: "token-bucket", burst: 2 }]
      })
      // A and Y empty the bucket at 0; A runs until 1000 and is refunded.
      yield* executor.submit(recorded(log, "A", {}, 1000), { settle: () => ({ requests: 0 }) })
      yield* executor.submit(recorded(log, "Y", {}))
      // X takes a token at 900, after A's reservation; B and C wait for tokens from 950.
      yield* Effect.forkChild(Effect.andThen(Effect.sleep(900), executor.submit(recorded(log, "X", {}))))
      yield* Effect.forkChild(Effect.andThen(
        Effect.sleep(950),
        Effect.andThen(executor.submit(recorded(log, "B", {})), executor.submit(recorded(log, "C", {})))
      ))
      yield* TestClock.adjust("5 seconds")
      const all = yield* Ref.get(log)
      assert.strictEqual(all.length, 5)
      // The bound is on settled units: A, refunded, counts 0.
      const starts = all.filter((s) => s.key !== "A").map((s) => s.at).sort((a, b) => a - b)
      for (let i = 0; i < starts.length; i++) {
        for (let j = i; j < starts.length; j++) {
          const t = starts[j]! - starts[i]!
          assert.isAtMost(
            j - i + 1,
            2 + (2 / 1000) * t + 1e-9,
            `at most B + r·t in [${starts[i]}, ${starts[j]}]: ${starts}`
          )
        }
      }
    }))

  it.effect("a cost larger than a limit fails at once with a typed error", () =>
    Effect.gen(function*() {
      const executor = yield* make({ limits: [{ budget: "tokens", limit: 1000, window: "1 minute" }] })
      const error = yield* Effect.flip(executor.submit(Effect.void, { cost: { tokens: 1001 } }))
      assert.strictEqual(error.reason._tag, "CostOverLimit")
      const outcomes = yield* Stream.runCollect(
        executor.run([500, 5000], () => Effect.void, { cost: (n) => ({ tokens: n }) })
      )
      const rejected = outcomes.find((o) => o.input === 5000)!
      assert.strictEqual(rejected.kind, "rejected")
      assert.strictEqual(rejected.rejection?.reason._tag, "CostOverLimit")
      assert.strictEqual(outcomes.find((o) => o.input === 500)!.kind, "success")
    }))

  it.effect("I11 a large task is not starved by small ones behind it", () =>
    Effect.gen(function*() {
      const log = yield* Ref.make<Array<Start>>([])
      const executor = yield* make({
        concurrency: 10,
        capacity: 100,
        limits: [{ budget: "tokens", limit: 10, window: 100 }]
      })
      yield* executor.submit(recorded(log, "small", { tokens: 3 }), { cost: { tokens: 3 } })
      yield* executor.submit(recorded(log, "large", { tokens: 10 }), { cost: { tokens: 10 } })
      for (let i = 0; i < 10; i++) {
        yield* executor.submit(recorded(log, "small", { tokens: 1 }), { cost: { tokens: 1 } })
      }
      yield* TestClock.adjust(1000)
      const order = (yield* Ref.get(log)).map((s) => s.key)
      assert.strictEqual(order[1], "large", "the large task starts right after the one before it")
    }))

  it.effect("a limit per key gives every key its own budget; an overall limit caps them all", () =>
    Effect.gen(function*() {
      const log = yield* Ref.make<Array<Start>>([])
      const executor = yield* make({
        concurrency: 10,
        capacity: 100,
        limits: [{ perKey: true, limit: 1, window: 100 }, { limit: 3, window: 100 }]
      })
      for (const key of ["a", "a", "b", "b", "c", "c", "d"]) {
        yield* executor.submit(recorded(log, key, {}), { key })
      }
      yield* TestClock.adjust(1)
      assert.deepStrictEqual((yield* Ref.get(log)).map((s) => s.key), ["a", "b", "c"])
      yield* TestClock.adjust(100)
      assert.strictEqual((yield* Ref.get(log)).length, 6)
    }))

  it.effect("a denial defers and never busy-waits: the dispatcher sleeps until the budget frees", () =>
    Effect.gen(function*() {
      const log = yield* Ref.make<Array<Start>>([])
      const executor = yield* make({ limits: [{ limit: 1, window: "1 hour" }] })
      yield* executor.submit(recorded(log, undefined, {}))
      const second = yield* executor.submit(recorded(log, undefined, {}))
      yield* TestClock.adjust("59 minutes")
      assert.strictEqual((yield* Ref.get(log)).length, 1)
      assert.isUndefined(yield* second.poll)
      yield* TestClock.adjust("1 minute")
      assert.strictEqual((yield* second.outcome).kind, "success")
    }))

  it.live("I12 on the live clock a denial never busy-waits: the dispatcher sleeps until about a millisecond before the slot", () =>
    Effect.gen(function*() {
      // Real time (about 90 ms): the dispatcher's waits on the live clock are the subject. It may yield to the
      // event loop through the last millisecond or two of each wait (a pass per turn), never through a whole
      // wait. Counted in the middle of each wait (more than 5 ms from both slots), so the bound does not depend
      // on how fast the machine turns its event loop: a sleeping dispatcher makes no pass there at all.
      const executor = yield* make({ limits: [{ limit: 1, window: 30, algorithm: "gcra" }] })
      const admission = engineOf(executor).admission
      const beginPass = admission.beginPass.bind(admission)
      const passes: Array<number> = []
      admission.beginPass = () => {
        passes.push(performance.now())
        beginPass()
      }
      const starts: Array<number> = []
      const handles = yield* Effect.forEach(
        [1, 2, 3, 4],
        () => executor.submit(Effect.sync(() => starts.push(performance.now())))
      )
      for (const handle of handles) assert.strictEqual((yield* handle.outcome).kind, "success")
      for (let i = 1; i < starts.length; i++) {
        const inside = passes.filter((at) => at > starts[i - 1]! + 5 && at < starts[i]! - 5).length
        assert.isAtMost(inside, 3, `admission passes more than 5 ms from the slots ${i} and ${i + 1}`)
      }
    }))

  it.effect("bad limits are typed errors naming the option", () =>
    Effect.gen(function*() {
      const bad: Array<[RateLimit.Limit, string]> = [
        [{ limit: 0, window: "1 second" }, "limits[0].limit"],
        [{ limit: 1, window: -5 }, "limits[0].window"],
        [{ limit: 1, window: "1 second", burst: 0 }, "limits[0].burst"],
        [{ limit: 1, window: "1 second", algorithm: "leaky" as never }, "limits[0].algorithm"]
      ]
      for (const [limit, option] of bad) {
        const error = yield* Effect.flip(make({ limits: [limit] }))
        assert.include(error.message, option)
      }
      const executor = yield* make()
      const error = yield* Effect.flip(executor.submit(Effect.void, { cost: { tokens: -1 } }))
      assert.include(error.message, "cost.tokens")
    }))

  it.effect("a batch input whose cost can never fit is accepted, then ends at once as rejected", () =>
    Effect.gen(function*() {
      const executor = yield* make({ limits: [{ budget: "tokens", limit: 10, window: "1 minute" }] })
      const outcomes = yield* Stream.runCollect(
        executor.run([11, 1], (n) => Effect.succeed(n), { cost: (n) => ({ tokens: n }) })
      )
      const rejected = outcomes.find((o) => o.input === 11)!
      assert.strictEqual(rejected.kind, "rejected")
      assert.strictEqual(rejected.rejection?.reason._tag, "CostOverLimit")
      const stats = yield* executor.stats
      assert.deepStrictEqual([stats.submitted, stats.accepted, stats.rejected, stats.finished], [2, 2, 0, 2])
      assertLedger(stats)
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
})

describe("anchoring an admission where the work began", () => {
  it.effect("I12 each attempt reads its own reservation (CurrentReservation), in its child fibers too, and none outside", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 2, limits: [{ limit: 10, window: "1 second" }] })
      const seen = (effect: Effect.Effect<RateLimit.Reservation | undefined>) =>
        Effect.flatMap(executor.submit(effect), (handle) => handle.join)
      const own = yield* seen(RateLimit.CurrentReservation)
      const child = yield* seen(Effect.flatMap(Effect.forkChild(RateLimit.CurrentReservation), Fiber.join))
      assert.isDefined(own)
      assert.isDefined(child)
      assert.notStrictEqual(own, child, "one reservation per attempt")
      assert.deepStrictEqual(own!.charged, [1])
      assert.isUndefined(yield* RateLimit.CurrentReservation, "no reservation outside an attempt")
      // Without limits, no reservation.
      const free = yield* make()
      assert.isUndefined(yield* Effect.flatMap(free.submit(RateLimit.CurrentReservation), (h) => h.join))
    }))

  it.effect("I12 a sliding window counts an anchored admission from its anchor: the next one waits a window after it", () =>
    Effect.gen(function*() {
      const store = RateLimit.memoryStore()
      const executor = yield* make({ concurrency: 2, limits: [{ limit: 1, window: "100 millis" }], store })
      // Starts at 0, leaves 30 ms later (a connection to open, say), and anchors its admission there.
      const first = yield* executor.submit(Effect.gen(function*() {
        yield* Effect.sleep("30 millis")
        const reservation = yield* RateLimit.CurrentReservation
        yield* store.anchor!(reservation!, yield* Clock.currentTimeMillis)
      }))
      const second = yield* executor.submit(Clock.currentTimeMillis)
      yield* TestClock.adjust(129)
      assert.isUndefined(yield* second.poll, "not 100 ms after the first start: 100 ms after its anchor")
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* second.join, 130)
      yield* first.join
    }))

  it.effect("I12 GCRA spaces the next start from the anchor; an anchor earlier than the admission moves nothing", () =>
    Effect.gen(function*() {
      const store = RateLimit.memoryStore()
      const executor = yield* make({
        concurrency: 3,
        limits: [{ limit: 10, window: "1 second", algorithm: "gcra" }], // 100 ms apart
        store
      })
      const anchoredAt = (delay: number) =>
        Effect.gen(function*() {
          const reservation = yield* RateLimit.CurrentReservation
          yield* store.anchor!(reservation!, (yield* Clock.currentTimeMillis) + delay)
          return yield* Clock.currentTimeMillis
        })
      const a = yield* executor.submit(anchoredAt(40)) // starts at 0, anchored at 40: the next at 140
      const b = yield* executor.submit(anchoredAt(-50)) // starts at 140, "anchored" at 90: no change, next at 240
      const c = yield* executor.submit(Clock.currentTimeMillis)
      yield* TestClock.adjust(300)
      assert.deepStrictEqual([yield* a.join, yield* b.join, yield* c.join], [0, 140, 240])
    }))
})

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

  it.effect("a task without options waiting behind a keyless pause starts when it ends, as another key's head is denied", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 5 })
      const budget = [{ limit: 1, window: "1 minute" }] as const
      yield* executor.submit(Effect.void, { key: "k", limits: budget }) // takes the budget until t = 60 s
      // t = 1: a keyless task without options fails with a retry-after: keyless tasks pause until t = 1,000.
      yield* executor.submit(Effect.andThen(Effect.sleep(1), Effect.fail(new RateLimited({ retryAfter: 999 }))))
      const denied = yield* executor.submit(Effect.void, { key: "k", limits: budget }) // older than the next one
      yield* TestClock.adjust(1)
      const plain = yield* executor.submit(Effect.succeed("plain")) // no options: it waits in the keyless line
      yield* TestClock.adjust(998)
      assert.isUndefined(yield* plain.poll, "paused")
      // t = 1,000: the pass looks at key k's head first (the oldest) and is denied, then at the plain task.
      yield* TestClock.adjust(1)
      assert.strictEqual((yield* plain.poll)?.kind, "success")
      assert.isUndefined(yield* denied.poll, "still waiting for the budget")
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
})

class TooManyRequests extends Data.TaggedError("TooManyRequests")<{ readonly retryAfter: Duration.Duration }> {}

describe("429 feedback", () => {
  it.effect("one task's retry-after pauses every queued task of its key, and no other key", () =>
    Effect.gen(function*() {
      const log = yield* Ref.make<Array<Start>>([])
      const executor = yield* make({ concurrency: 1, capacity: 100 })
      const limited = yield* executor.submit(
        Effect.andThen(
          recorded(log, "api", {}),
          Effect.fail(new TooManyRequests({ retryAfter: Duration.seconds(10) }))
        ),
        { key: "api" }
      )
      yield* executor.submit(recorded(log, "api", {}), { key: "api" })
      yield* executor.submit(recorded(log, "api", {}), { key: "api" })
      yield* executor.submit(recorded(log, "other", {}), { key: "other" })
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* limited.outcome).kind, "failure")
      assert.deepStrictEqual((yield* Ref.get(log)).map((s) => [s.key, s.at]), [["api", 0], ["other", 0]])
      yield* TestClock.adjust("9 seconds")
      assert.deepStrictEqual((yield* Ref.get(log)).map((s) => [s.key, s.at]), [
        ["api", 0],
        ["other", 0],
        ["api", 10_000],
        ["api", 10_000]
      ])
      assert.strictEqual((yield* executor.stats).pauses, 1)
    }))

  it.effect("with a retry policy, the 429'd task itself runs again after the pause", () =>
    Effect.gen(function*() {
      const starts = yield* Ref.make<Array<number>>([])
      const executor = yield* make({ policy: ErrorPolicy.retry(Schedule.recurs(3)) })
      const handle = yield* executor.submit(
        Effect.gen(function*() {
          const now = yield* Clock.currentTimeMillis
          const n = (yield* Ref.updateAndGet(starts, (xs) => [...xs, now])).length
          if (n === 1) return yield* Effect.fail(new TooManyRequests({ retryAfter: Duration.seconds(3) }))
          return n
        }),
        { key: "api" }
      )
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(yield* handle.join, 2)
      assert.deepStrictEqual(yield* Ref.get(starts), [0, 3000])
    }))

  it.effect("a failure without a retry-after pauses nothing and leaves no key line behind", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 2 })
      yield* (yield* executor.submit(Effect.fail("no retry-after"), { key: "k" })).await
      assert.strictEqual(engineOf(executor).admission.lineCount, 0)
      assert.strictEqual((yield* executor.stats).pauses, 0)
    }))

  it.effect("a retry-after of zero pauses nothing; a positive one pauses the key and is counted", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 2 })
      // Not at t = 0, where a pause of zero would end before any pause began.
      yield* TestClock.adjust(5)
      const zero = yield* executor.submit(Effect.fail(new RateLimited({ retryAfter: 0 })), { key: "k" })
      yield* zero.await
      assert.strictEqual(engineOf(executor).admission.lineCount, 0, "no line for a pause of zero")
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

  it.effect("a second retry-after ending when the key's pause already ends is not counted as a pause", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 2 })
      for (let i = 0; i < 2; i++) {
        yield* executor.submit(Effect.andThen(Effect.sleep(1), Effect.fail(new RateLimited({ retryAfter: 1000 }))), {
          key: "k"
        })
      }
      yield* TestClock.adjust(1)
      assert.strictEqual((yield* executor.stats).pauses, 1)
    }))

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

  it.effect("a pause that ends after the line's next wake-up is waited for too, and the line goes when it ends", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 5, limits: [{ key: "k", limit: 1, window: 500 }] })
      // The first task takes the budget and fails at t = 1 with a retry-after of 700 ms: key k pauses to 701.
      yield* executor.submit(Effect.andThen(Effect.sleep(1), Effect.fail(new RateLimited({ retryAfter: 700 }))), {
        key: "k"
      })
      const next = yield* executor.submit(Effect.succeed("next"), { key: "k" }) // budget again at t = 500
      yield* TestClock.adjust(700)
      assert.isUndefined(yield* next.poll, "paused until t = 701")
      yield* TestClock.adjust(1)
      // Not later, at the sweep of idle keys (t = 1,001), the next wake-up the executor had.
      assert.strictEqual((yield* next.poll)?.kind, "success", "it starts when the pause ends")
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

class Throttled extends Data.TaggedError("Throttled")<{ readonly sentAt: number }> {}

describe("adaptive rates", () => {
  it.effect("a 429 without a wait lowers the key's rate; it recovers additively, never above the limit", () =>
    Effect.gen(function*() {
      const rate = RateLimit.adaptive({ decrease: 0.5, increase: 0.1 })
      const log = yield* Ref.make<Array<Start>>([])
      const executor = yield* make({
        concurrency: 10,
        capacity: 100,
        limits: [{ perKey: true, limit: 10, window: "1 second", algorithm: "gcra", adaptive: rate }]
      })
      const startsOf = (key: string) =>
        Ref.get(log).pipe(Effect.map((xs) => xs.filter((s) => s.key === key).map((s) => s.at)))
      for (let i = 0; i < 3; i++) yield* executor.submit(recorded(log, "api", {}), { key: "api" })
      yield* TestClock.adjust(1_000)
      assert.deepStrictEqual(yield* startsOf("api"), [0, 100, 200]) // 10 per second
      yield* rate.slowDown("api")
      assert.strictEqual(yield* rate.factor("api"), 0.5)
      for (let i = 0; i < 3; i++) yield* executor.submit(recorded(log, "api", {}), { key: "api" })
      yield* executor.submit(recorded(log, "other", {}), { key: "other" })
      yield* TestClock.adjust(1_000)
      // Half the rate for "api": 200 ms apart (the recovery of 10% per second shortens the gaps a little).
      const slowed = (yield* startsOf("api")).slice(3)
      assert.strictEqual(slowed[0], 1_000)
      assert.isAtLeast(slowed[1]! - slowed[0]!, 180)
      assert.isAtLeast(slowed[2]! - slowed[1]!, 170)
      assert.deepStrictEqual(yield* startsOf("other"), [1_000]) // other keys keep their rate
      yield* TestClock.adjust(2_000)
      assert.closeTo(yield* rate.factor("api"), 0.5 + 0.1 * 3, 1e-9)
      yield* TestClock.adjust(10_000)
      assert.strictEqual(yield* rate.factor("api"), 1)
      for (let i = 0; i < 2; i++) yield* executor.submit(recorded(log, "api", {}), { key: "api" })
      yield* TestClock.adjust(1_000)
      const recovered = (yield* startsOf("api")).slice(6)
      assert.strictEqual(recovered[1]! - recovered[0]!, 100)
    }))

  it.effect("a 429 of a request sent before the last slow-down changes nothing; the floor holds", () =>
    Effect.gen(function*() {
      const rate = RateLimit.adaptive({ decrease: 0.5, floor: 0.2 })
      yield* TestClock.adjust(1_000)
      assert.isTrue(yield* rate.slowDown("api", { sentAt: 900 }))
      assert.isFalse(yield* rate.slowDown("api", { sentAt: 950 })) // in flight when the first 429 came
      assert.strictEqual(yield* rate.factor("api"), 0.5)
      for (let i = 0; i < 5; i++) yield* rate.slowDown("api")
      assert.strictEqual(yield* rate.factor("api"), 0.2)
      assert.deepStrictEqual((yield* rate.snapshot).map((k) => [k.key, k.slowDowns]), [["api", 6]])
    }))

  it.effect("a hold: the key's adaptive limits admit nothing until the wait is over", () =>
    Effect.gen(function*() {
      const rate = RateLimit.adaptive()
      const log = yield* Ref.make<Array<Start>>([])
      const executor = yield* make({ limits: [{ perKey: true, limit: 100, window: "1 second", adaptive: rate }] })
      yield* rate.hold("api", "3 seconds", "x-ratelimit-remaining 0")
      assert.deepStrictEqual((yield* rate.snapshot).map((k) => [k.heldUntil, k.reason]), [[
        3_000,
        "x-ratelimit-remaining 0"
      ]])
      yield* executor.submit(recorded(log, "api", {}), { key: "api" })
      yield* executor.submit(recorded(log, "other", {}), { key: "other" })
      yield* TestClock.adjust(5_000)
      assert.deepStrictEqual((yield* Ref.get(log)).map((s) => [s.key, s.at]), [["other", 0], ["api", 3_000]])
    }))

  it.effect("against a server that answers 429 without a wait, the rate comes down to the server's", () =>
    Effect.gen(function*() {
      // The server accepts one request per 250 ms (4 per second); the limit says 20 per second.
      const rate = RateLimit.adaptive({ decrease: 0.7, increase: 0.02 })
      let lastAccepted = Number.NEGATIVE_INFINITY
      let throttled = 0
      const accepted: Array<number> = []
      const call = Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        if (now - lastAccepted < 250) {
          throttled++
          return yield* new Throttled({ sentAt: now })
        }
        lastAccepted = now
        accepted.push(now)
      }).pipe(Effect.tapError((e) => rate.slowDown("api", { sentAt: e.sentAt })))
      const executor = yield* make<void, Throttled>({
        concurrency: 4,
        capacity: 200,
        limits: [{ perKey: true, limit: 20, window: "1 second", algorithm: "gcra", adaptive: rate }],
        policy: ErrorPolicy.retry(Schedule.recurs(100))
      })
      const handles = []
      for (let i = 0; i < 40; i++) handles.push(yield* executor.submit(call, { key: "api" }))
      yield* TestClock.adjust(60_000)
      for (const handle of handles) assert.strictEqual((yield* handle.outcome).kind, "success")
      // Without adapting, 20 per second against 4 per second: about four 429s per success (160).
      assert.isBelow(throttled, 40)
      assert.isAbove((yield* rate.snapshot)[0]!.slowDowns, 0)
      // And it still used the server's capacity: 40 accepted at 250 ms in about 10 s, not much more.
      assert.isBelow(accepted.at(-1)! - accepted[0]!, 20_000)
    }))

  it.effect("adaptive options out of range are typed errors naming the option", () =>
    Effect.gen(function*() {
      const cases: Array<[RateLimit.AdaptiveOptions, string]> = [
        [{ decrease: 1 }, "limits[0].adaptive.decrease"],
        [{ increase: 0 }, "limits[0].adaptive.increase"],
        [{ floor: 0 }, "limits[0].adaptive.floor"]
      ]
      for (const [options, option] of cases) {
        const adaptive = RateLimit.adaptive(options)
        const error = yield* Effect.flip(make({ limits: [{ limit: 1, window: "1 second", adaptive }] }))
        assert.include(error.message, option)
      }
    }))
})

/** A store that grants every reservation `ahead` ms in the future, as the Redis store does with `lookahead`. */
const aheadStore = (ahead: number): RateLimit.RateLimitStore => ({
  reserve: (id, claims, now) =>
    Effect.succeed({
      _tag: "Reserved",
      reservation: { id, at: now + ahead, claims, charged: claims.map((c) => c.amount), notBefore: now + ahead }
    }),
  settle: () => Effect.void
})

describe("reservations granted ahead", () => {
  it.effect("I12 a task reserved ahead starts at its notBefore, not when the store answered", () =>
    Effect.gen(function*() {
      const executor = yield* make({ limits: [{ limit: 10, window: "1 second" }], store: aheadStore(50) })
      const handle = yield* executor.submit(Clock.currentTimeMillis)
      yield* TestClock.adjust(49)
      assert.isUndefined(yield* handle.poll, "the body waits for notBefore")
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* handle.join, 50)
    }))

  it.live("I12 on the live clock, a task reserved ahead never starts before its notBefore, wherever it falls in a ms", () =>
    Effect.gen(function*() {
      // notBefore lands anywhere within a millisecond (3.0 to 3.9 ms ahead), where Node's timers, which count
      // whole milliseconds and sometimes fire early, would start a task before it.
      let granted = 0
      const store: RateLimit.RateLimitStore = {
        reserve: (id, claims, now) =>
          Effect.sync(() => {
            const notBefore = now + 3 + (granted++ % 10) / 10
            return { _tag: "Reserved", reservation: { id, at: notBefore, claims, charged: [1], notBefore } }
          }),
        settle: () => Effect.void
      }
      const executor = yield* make({ concurrency: 1, limits: [{ limit: 100, window: "1 second" }], store })
      assert.isTrue(engineOf(executor).config.liveClock, "the executor runs on the live clock")
      const lateness = Effect.gen(function*() {
        const startedAt = Number(yield* Clock.currentTimeNanos) / 1e6
        return startedAt - (yield* RateLimit.CurrentReservation)!.notBefore!
      })
      const handles = yield* Effect.forEach(Array.from({ length: 10 }), () => executor.submit(lateness))
      for (const handle of handles) assert.isAtLeast(yield* handle.join, 0, "started at or after its notBefore")
    }))

  it.live("on the live clock, a task waiting for its notBefore sleeps: the event loop is idle most of the wait", () =>
    Effect.gen(function*() {
      const executor = yield* make({ limits: [{ limit: 10, window: "1 second" }], store: aheadStore(100) })
      const before = performance.eventLoopUtilization()
      yield* (yield* executor.submit(Effect.void)).join
      const utilization = performance.eventLoopUtilization(before).utilization
      assert.isBelow(utilization, 0.5, "a spin until notBefore would keep the event loop busy the whole 100 ms")
    }))

  it.effect("I3 a task cancelled while it waits for its notBefore never runs its body", () =>
    Effect.gen(function*() {
      const executor = yield* make({ limits: [{ limit: 10, window: "1 second" }], store: aheadStore(50) })
      let ran = false
      const handle = yield* executor.submit(Effect.sync(() => {
        ran = true
      }))
      yield* TestClock.adjust(10)
      yield* handle.cancel
      yield* TestClock.adjust(100)
      assert.strictEqual((yield* handle.outcome).kind, "cancelled")
      assert.isFalse(ran)
    }))
})

/** The memory store behind a round trip of `delay` ms (no `memory`: the executor takes the asynchronous path). */
const roundTrip = (delay: number, settled: Array<ReadonlyArray<number>>): RateLimit.RateLimitStore => {
  const inner = RateLimit.memoryStore()
  return {
    reserve: (id, claims, now) => Effect.andThen(Effect.sleep(delay), inner.reserve(id, claims, now)),
    settle: (reservation, actual) =>
      Effect.andThen(Effect.sync(() => settled.push(actual)), inner.settle(reservation, actual))
  }
}

/** Records which task ran, and the most running at once. */
const tracker = () => {
  const log: Array<string> = []
  let running = 0
  let most = 0
  const task = (name: string, ms: number) =>
    Effect.acquireUseRelease(
      Effect.sync(() => {
        running++
        most = Math.max(most, running)
        log.push(name)
      }),
      () => Effect.sleep(ms),
      () => Effect.sync(() => running--)
    )
  return { log, task, most: () => most }
}

/** A store answering a denial without saying which buckets refused (then every claimed one is assumed to). */
const withoutBlocking = (store: RateLimit.RateLimitStore): RateLimit.RateLimitStore => ({
  ...store,
  reserve: (id, claims, now) =>
    Effect.map(
      store.reserve(id, claims, now),
      (result): RateLimit.ReserveResult =>
        result._tag === "Denied" ? { _tag: "Denied", retryAt: result.retryAt } : result
    )
})

describe("a store that answers after a round trip, and budgets given back", () => {
  it.effect("a line denied in a pass that outlasts its wake-up is looked at again once the pass ends", () =>
    Effect.gen(function*() {
      const executor = yield* make({
        concurrency: 5,
        store: roundTrip(10, []),
        limits: [{ key: "a", limit: 1, window: 135 }, { key: "b", limit: 10, window: "1 second" }]
      })
      const starts: Array<[string, number]> = []
      // Each task keeps running: none ends during the pass (an end would ask for another pass anyway).
      const started = (name: string) =>
        Effect.flatMap(Clock.currentTimeMillis, (at) => Effect.sync(() => void starts.push([name, at]))).pipe(
          Effect.andThen(Effect.never)
        )
      yield* executor.submit(started("a1"), { key: "a" }) // asks at t = 0, starts at t = 10: key a is full to 135
      // Starts at t = 20 and fails with a retry-after: key b pauses until t = 120.
      yield* executor.submit(Effect.fail(new RateLimited({ retryAfter: 100 })), { key: "b" })
      yield* executor.submit(started("a2"), { key: "a" }) // denied until t = 135
      yield* TestClock.adjust(50)
      yield* executor.submit(started("b"), { key: "b" }) // waits for the pause
      // The pass at t = 120 asks for a2 (denied at t = 130), then for b (answered at t = 140): key a's wake-up at
      // t = 135 fires within that pass. The executor's next timer after it is the sweep of idle keys, at 1,020.
      yield* TestClock.adjust(100)
      assert.deepStrictEqual(starts, [["a1", 10], ["b", 140], ["a2", 150]])
    }))

  it.effect("I11 a store that does not say which bucket refused: a younger head may take from none the older claims", () =>
    Effect.gen(function*() {
      const executor = yield* make({
        concurrency: 5,
        store: withoutBlocking(roundTrip(10, [])),
        limits: [{ budget: "tokens", limit: 10, window: "1 minute" }]
      })
      const started: Array<string> = []
      const task = (name: string) => Effect.sync(() => void started.push(name))
      yield* executor.submit(task("big"), { key: "a", cost: { tokens: 8 } })
      const older = yield* executor.submit(task("older"), { key: "a", cost: { tokens: 5 } })
      const younger = yield* executor.submit(task("younger"), { key: "b", cost: { tokens: 1 } })
      yield* TestClock.adjust(1000)
      assert.deepStrictEqual(started, ["big"], "1 token would fit, but an older task waits for 5")
      yield* TestClock.adjust("1 minute")
      assert.strictEqual((yield* older.poll)?.kind, "success")
      assert.strictEqual((yield* younger.poll)?.kind, "success")
      assert.deepStrictEqual(started, ["big", "older", "younger"])
    }))

  it.effect("a keyed task submitted while the dispatcher settles with the store starts once it has settled", () =>
    Effect.gen(function*() {
      const inner = RateLimit.memoryStore()
      const store: RateLimit.RateLimitStore = {
        reserve: (id, claims, now) => Effect.andThen(Effect.sleep(10), inner.reserve(id, claims, now)),
        settle: (reservation, actual) => Effect.andThen(Effect.sleep(10), inner.settle(reservation, actual))
      }
      const executor = yield* make({ store, limits: [{ key: "k", limit: 10, window: "1 second" }] })
      const first = yield* executor.submit(Effect.void, { key: "k", settle: () => ({ requests: 1 }) })
      yield* TestClock.adjust(15) // reserved at 10, run and finished: its settlement takes until 20
      assert.strictEqual((yield* first.poll)?.kind, "success")
      const second = yield* executor.submit(Clock.currentTimeMillis, { key: "k" })
      yield* TestClock.adjust(50)
      const outcome = yield* second.poll
      assert.isDefined(outcome, "the submit's wake-up was not lost while the dispatcher was busy")
      assert.deepStrictEqual(plain(outcome!.exit), { success: 30 })
    }))

  it.effect("a retry started by its timer submits keyed work as it starts: that work is reserved and runs", () =>
    Effect.gen(function*() {
      const executor = yield* make({ store: roundTrip(10, []), limits: [{ key: "k", limit: 10, window: "1 second" }] })
      const runs = yield* Ref.make(0)
      let submitted: Effect.Effect<{ readonly exit: Exit.Exit<unknown, unknown> } | undefined> | undefined
      const body = Effect.gen(function*() {
        if ((yield* Ref.getAndUpdate(runs, (n) => n + 1)) === 0) return yield* Effect.fail("once")
        // The retry's body runs in the pass that fired its timer, after that pass looked for work to start.
        submitted = (yield* executor.submit(Clock.currentTimeMillis, { key: "k" })).poll
        return yield* Effect.never
      })
      yield* executor.submit(body, { policy: retryOnce(100) })
      yield* TestClock.adjust(100)
      assert.isDefined(submitted, "the retry ran and submitted")
      yield* TestClock.adjust(20)
      const outcome = yield* submitted!
      assert.isDefined(outcome, "the keyed task was reserved and ran")
      assert.deepStrictEqual(plain(outcome!.exit), { success: 110 })
    }))

  it.effect("a keyed task submitted to an idle executor starts one round trip later (the submit wakes the dispatcher)", () =>
    Effect.gen(function*() {
      const executor = yield* make({ store: roundTrip(10, []), limits: [{ key: "k", limit: 10, window: "1 second" }] })
      yield* settleFibers // the dispatcher waits for a signal: no timer is set
      const handle = yield* executor.submit(Clock.currentTimeMillis, { key: "k" })
      yield* TestClock.adjust(10)
      const outcome = yield* handle.poll
      assert.isDefined(outcome, "started once the store answered")
      assert.deepStrictEqual(plain(outcome!.exit), { success: 10 })
    }))

  it.effect("I10 a reservation that comes back once the slot was taken is given back; its task starts when the slot frees", () =>
    Effect.gen(function*() {
      const settled: Array<ReadonlyArray<number>> = []
      const executor = yield* make({
        concurrency: 1,
        store: roundTrip(10, settled),
        limits: [{ key: "k", limit: 10, window: "1 second" }]
      })
      const { log, most, task } = tracker()
      const a = yield* executor.submit(task("a", 20), { key: "k" }) // its reservation takes 10 ms
      yield* TestClock.adjust(1) // the dispatcher is waiting for the store's answer
      const b = yield* executor.submit(task("b", 50)) // no key: the free slot, at once
      yield* TestClock.adjust(200)
      assert.strictEqual((yield* a.outcome).kind, "success")
      assert.strictEqual((yield* b.outcome).kind, "success")
      assert.deepStrictEqual(log, ["b", "a"])
      assert.strictEqual(most(), 1, "never two running with concurrency 1")
      assert.deepStrictEqual(settled[0], [0], "the first reservation was given back whole")
    }))

  it.effect("a drain starts a task whose reservation comes back during it", () =>
    Effect.gen(function*() {
      const executor = yield* make({
        concurrency: 1,
        store: roundTrip(10, []),
        limits: [{ key: "k", limit: 10, window: "1 second" }]
      })
      const { log, task } = tracker()
      const a = yield* executor.submit(task("a", 5), { key: "k" })
      const shutdown = yield* Effect.forkChild(executor.shutdown({ mode: "drain", grace: "1 second" }), {
        startImmediately: true
      })
      yield* TestClock.adjust(100)
      yield* Fiber.join(shutdown)
      assert.strictEqual((yield* a.outcome).kind, "success")
      assert.deepStrictEqual(log, ["a"])
    }))

  it.effect("I3 a task cancelled between its admission and its start gives its reservation back", () =>
    Effect.gen(function*() {
      const executor = yield* make({
        concurrency: 1,
        capacity: 1,
        limits: [{ key: "k", limit: 1, window: "1 second" }]
      })
      const gate = yield* Deferred.make<void>()
      const starts: Array<[string, number]> = []
      const started = (name: string) =>
        Effect.flatMap(Clock.currentTimeMillis, (at) => Effect.sync(() => void starts.push([name, at])))
      yield* executor.submit(Deferred.await(gate)) // holds the slot
      const b = yield* executor.submit(started("b"), { key: "k" }) // queued: the queue is full
      // Waits for room, which B's admission makes; its fiber then cancels B before B's attempt is forked.
      const superseding = yield* Effect.forkChild(
        Effect.andThen(executor.submit(started("c")), b.cancel),
        { startImmediately: true }
      )
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(superseding)
      const outcome = yield* b.outcome
      assert.strictEqual(outcome.kind, "cancelled")
      assert.strictEqual(outcome.attempts, 0, "its body never ran")
      const d = yield* executor.submit(started("d"), { key: "k" })
      yield* TestClock.adjust(10)
      assert.strictEqual((yield* d.outcome).kind, "success")
      assert.deepStrictEqual(starts, [["c", 0], ["d", 0]], "D used the budget B gave back, without waiting a window")
    }))

  it.effect("a batch's function that throws gives its task's reservation back", () =>
    Effect.gen(function*() {
      const executor = yield* make({ limits: [{ key: "k", limit: 1, window: "1 second" }] })
      const starts: Array<number> = []
      const batch = yield* Effect.forkChild(
        Stream.runCollect(executor.run([1, 2], (n) => {
          if (n === 1) throw new Error("boom")
          return Effect.flatMap(Clock.currentTimeMillis, (at) => Effect.sync(() => void starts.push(at)))
        }, { key: () => "k" })),
        { startImmediately: true }
      )
      yield* TestClock.adjust(10)
      const outcomes = yield* Fiber.join(batch)
      assert.deepStrictEqual(outcomes.map((o) => o.kind).sort(), ["defect", "success"])
      assert.deepStrictEqual(starts, [0], "input 2 used the budget input 1 gave back")
    }))

  it.effect("I1 ids stay distinct when a batch input is rejected at once (its cost can never fit)", () =>
    Effect.gen(function*() {
      const executor = yield* make({ limits: [{ limit: 5, window: "1 second" }] })
      const outcomes = yield* Stream.runCollect(
        executor.run([10, 1, 1], (n) => Effect.succeed(n), { cost: (n) => ({ requests: n }) })
      )
      assert.deepStrictEqual(outcomes.map((o) => o.kind).sort(), ["rejected", "success", "success"])
      assert.strictEqual(new Set(outcomes.map((o) => o.id)).size, 3)
    }))

  it.effect("I14 a batch stopped early cancels its tasks waiting in a key's line, and only its own", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 4, limits: [{ key: "k", limit: 1, window: "1 second" }] })
      yield* executor.submit(Effect.void, { key: "k" }) // takes the key's budget until t = 1,000
      const head = yield* Effect.forkChild(
        Stream.runHead(executor.run([1, 2, 3], (n) => Effect.succeed(n), { key: () => "k" })),
        { startImmediately: true }
      )
      const other = yield* executor.submit(Effect.succeed("other"), { key: "k" }) // in the line after the batch's
      assert.strictEqual((yield* executor.stats).waiting, 4)
      yield* TestClock.adjust(1000)
      assert.strictEqual(Option.getOrThrow(yield* Fiber.join(head)).input, 1)
      // Input 1 started at t = 1,000 and ended the stream: inputs 2 and 3 were cancelled in the line, not the other.
      assert.strictEqual((yield* executor.stats).waiting, 1)
      yield* TestClock.adjust(1000)
      assert.strictEqual((yield* other.outcome).kind, "success")
    }))
})
