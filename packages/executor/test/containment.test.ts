// What the executor does with code and errors that are not its own: a user callback that throws, a task's
// own circuit breaker error, a service still starting when shutdown begins. Each test is one of the
// reproductions of issue 19, through the public API.
import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Duration, Effect, Fiber, Metric, Schedule, Stream } from "effect"
import { CircuitBreaker } from "effect/persistence"
import { TestClock } from "effect/testing"
import * as ErrorPolicy from "../src/ErrorPolicy.ts"
import { assertCancelShutdownIsImmediate, assertLedger, make, settleFibers } from "./support.ts"

const defectOf = (outcome: { readonly exit: { readonly _tag: string; readonly cause?: Cause.Cause<unknown> } }) =>
  outcome.exit._tag === "Failure" ? Cause.squash(outcome.exit.cause!) : undefined

/** The slip issue 19 found: reading the value of an attempt that failed. */
const settle = (exit: unknown) => ({ tokens: (exit as { value: { usage: number } }).value.usage })

describe("user callbacks", () => {
  it.effect("I1 I10 I15 a settle callback that throws becomes the task's defect, and the executor goes on", () =>
    Effect.gen(function*() {
      const executor = yield* make({
        concurrency: 1,
        limits: [{ budget: "tokens", limit: 1000, window: "1 minute" }],
        finalizerTimeout: "1 hour"
      })
      const a = yield* executor.submit(Effect.andThen(Effect.sleep(10), Effect.fail("boom")), {
        cost: { tokens: 10 },
        settle
      })
      const b = yield* executor.submit(Effect.succeed("b"))
      yield* TestClock.adjust(10)
      yield* settleFibers
      const outcome = yield* a.poll
      assert.strictEqual(outcome?.kind, "defect")
      assert.instanceOf(defectOf(outcome!), TypeError)
      assert.strictEqual((yield* b.poll)?.kind, "success", "the next task runs")
      // An attempt that fails at once, inside submit: submit returns the handle, the outcome is the defect.
      const c = yield* executor.submit(Effect.fail("now"), { cost: { tokens: 1 }, settle })
      yield* settleFibers
      assert.strictEqual((yield* c.poll)?.kind, "defect")
      const stats = yield* executor.stats
      assertLedger(stats)
      assert.strictEqual(stats.running, 0)
      yield* assertCancelShutdownIsImmediate(executor)
    }))

  it.effect("I1 a key or cost callback of a batch that throws: that input's outcome is the defect, the batch goes on", () =>
    Effect.gen(function*() {
      const executor = yield* make({ limits: [{ budget: "tokens", limit: 100, window: "1 minute" }] })
      const outcomes = yield* Stream.runCollect(executor.run([1, 2, 3, 4], (n) => Effect.succeed(n), {
        key: (n) => {
          if (n === 2) throw new Error("no key for 2")
          return "k"
        },
        cost: (n) => {
          if (n === 3) throw new Error("no cost for 3")
          return { tokens: 1 }
        }
      }))
      const byInput = new Map(outcomes.map((o) => [o.input, o.kind]))
      assert.deepStrictEqual([...byInput.entries()].sort(), [[1, "success"], [2, "defect"], [3, "defect"], [
        4,
        "success"
      ]])
      assertLedger(yield* executor.stats)
    }))

  it.effect("I1 I3 a batch's task function is called when its task first starts, once; a throw is that input's defect", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1 })
      const called: Array<number> = []
      const gate = yield* Deferred.make<void>()
      const pile = executor.run([0, 1, 2, 3], (n, index) => {
        called.push(index)
        if (n === 2) throw new Error("no task for 2")
        return n === 0 ? Deferred.await(gate) : n === 3 ? Effect.fail("again") : Effect.succeed(n)
      }, { policy: ErrorPolicy.retry(Schedule.recurs(2)) })
      const collected = yield* Effect.forkChild(Stream.runCollect(pile), { startImmediately: true })
      yield* settleFibers
      // Inputs 1..3 are queued behind input 0: their effects are not built yet.
      assert.deepStrictEqual(called, [0])
      yield* Deferred.succeed(gate, undefined)
      const outcomes = yield* Fiber.join(collected)
      const byInput = new Map(outcomes.map((o) => [o.input, o]))
      assert.strictEqual(byInput.get(2)!.kind, "defect")
      assert.strictEqual(byInput.get(2)!.attempts, 0, "the body never ran")
      assert.strictEqual((defectOf(byInput.get(2)!) as Error).message, "no task for 2")
      assert.strictEqual(byInput.get(3)!.attempts, 3, "retried with the same effect")
      assert.deepStrictEqual(called, [0, 1, 2, 3], "f ran once per input, at its task's first start")
      assertLedger(yield* executor.stats)
    }))

  it.effect("I1 an error whose retryAfter getter throws becomes the task's defect", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const hostile = {
        get retryAfter(): number {
          throw new Error("getter")
        }
      }
      const a = yield* executor.submit(Effect.fail(hostile))
      const b = yield* executor.submit(Effect.succeed("b"))
      yield* settleFibers
      assert.strictEqual((yield* a.poll)?.kind, "defect")
      assert.strictEqual((yield* b.poll)?.kind, "success")
      assertLedger(yield* executor.stats)
    }))
})

describe("circuit breaking", () => {
  const own = new CircuitBreaker.CircuitBreakerError({
    reason: new CircuitBreaker.CircuitOpen({ key: "downstream", retryAfter: Duration.seconds(5) })
  })

  it.effect("I3 I9 I12 I15 a task's own CircuitBreakerError is its typed failure, not the executor's rejection", () =>
    Effect.gen(function*() {
      const executor = yield* make({
        policy: ErrorPolicy.retry(Schedule.recurs(2)),
        limits: [{ limit: 1, window: "1 hour" }]
      })
      let runs = 0
      const a = yield* executor.submit(Effect.suspend(() => (runs++, Effect.fail(own))))
      yield* TestClock.adjust(10)
      yield* settleFibers
      const outcome = yield* a.poll
      assert.strictEqual(runs, 1, "the budget allows one run an hour")
      assert.notStrictEqual(outcome?.kind, "rejected")
      // The retry waits for the rate budget: one hour.
      assert.isUndefined(outcome, "the retry policy applies: the task waits for its next attempt")
      const b = yield* executor.submit(Effect.succeed("b"))
      yield* settleFibers
      assert.isUndefined(yield* b.poll, "the budget was not refunded: a second task waits")
      yield* TestClock.adjust("3 hours")
      yield* settleFibers
      const final = yield* a.poll
      assert.strictEqual(final?.kind, "failure")
      assert.strictEqual(final?.attempts, 3)
      assert.strictEqual(runs, 3)
      assert.strictEqual(Cause.squash((final!.exit as any).cause), own, "the typed error is kept")
    }))

  it.effect("I20 pile_task_attempts_total counts only attempts whose body ran, as the outcomes do", () =>
    Effect.gen(function*() {
      const executor = yield* make({
        name: "attempts-metric",
        circuitBreaker: { tripPolicy: CircuitBreaker.consecutive(1), openDuration: "1 minute" }
      })
      const handles = yield* Effect.forEach([1, 2, 3, 4], () => executor.submit(Effect.fail("down")))
      yield* settleFibers
      const outcomes = yield* Effect.forEach(handles, (h) => h.outcome)
      const attempts = outcomes.reduce((n, o) => n + o.attempts, 0)
      assert.strictEqual(attempts, 1)
      const snapshot = yield* Metric.snapshot
      const metric = snapshot.find((m) =>
        m.id === "pile_task_attempts_total" &&
        m.attributes?.["executor"] === "attempts-metric"
      )
      assert.isDefined(metric)
      assert.strictEqual((metric!.state as { count: number }).count, attempts)
    }))
})

describe("services", () => {
  it.effect("I17 a start still waiting for readiness when shutdown begins fails with Closed, not an interruption", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const started = yield* Deferred.make<void>()
      const starting = yield* Effect.forkChild(
        executor.start(() => Effect.andThen(Deferred.succeed(started, undefined), Effect.never)),
        { startImmediately: true }
      )
      yield* Deferred.await(started)
      yield* executor.shutdown({ mode: "cancel" })
      const exit = yield* Fiber.await(starting)
      assert.strictEqual(exit._tag, "Failure")
      if (exit._tag === "Failure") {
        assert.isFalse(Cause.hasInterruptsOnly(exit.cause), "the caller does not look interrupted itself")
        const error = Cause.squash(exit.cause) as { readonly reason?: { readonly _tag: string } }
        assert.strictEqual(error.reason?._tag, "Closed")
      }
    }))
})
