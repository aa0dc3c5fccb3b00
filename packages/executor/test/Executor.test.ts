import { assert, describe, it } from "@effect/vitest"
import {
  Cause,
  Config,
  ConfigProvider,
  Context,
  Deferred,
  Effect,
  Exit,
  Fiber,
  Metric,
  Ref,
  Schedule,
  Scope,
  Stream
} from "effect"
import { TestClock } from "effect/testing"
import * as ErrorPolicy from "../src/ErrorPolicy.ts"
import * as Executor from "../src/Executor.ts"
import type * as ExecutorError from "../src/ExecutorError.ts"
import { names } from "../src/internal/instruments.ts"
import type * as Outcome from "../src/Outcome.ts"
import * as Pile from "../src/Pile.ts"
import {
  assertLedger,
  engineOf,
  failsOnce,
  liveFibers,
  make,
  makeGauge,
  plain,
  reasonOf,
  retryOnce,
  settleFibers
} from "./support.ts"

const kinds = (outcomes: ReadonlyArray<Outcome.Outcome<any, any, any>>) => outcomes.map((o) => o.kind)

/** How many attempts the run-time histogram observed. */
const runTime = (snapshots: ReadonlyArray<Metric.Metric.Snapshot>): number => {
  const series = snapshots.find((s) => s.id === names.runTime)
  return Number((series?.state as { readonly count: number } | undefined)?.count ?? 0)
}

/** The waiters of a task's outcome (an internal list: an interrupted wait must leave it). */
const waitersOf = (handle: unknown): ReadonlyArray<unknown> =>
  (handle as { readonly waiters?: ReadonlyArray<unknown> }).waiters ?? []

describe("Executor.make", () => {
  it.effect("rejects a bad option with a typed error naming the option and the value", () =>
    Effect.gen(function*() {
      const cases: Array<[Executor.Options, string, string]> = [
        [{ capacity: 0 }, "capacity", "0"],
        [{ concurrency: 0 }, "concurrency", "0"],
        [{ concurrency: Number.NaN }, "concurrency", "NaN"],
        [{ concurrency: 1.5 }, "concurrency", "1.5"],
        [{ shutdown: { grace: -1 } }, "shutdown.grace", "-1"],
        [{ shutdown: { grace: "Infinity" } }, "shutdown.grace", "\"Infinity\""],
        [{ finalizerTimeout: Number.NaN }, "finalizerTimeout", "NaN"],
        [{ strategy: "lifo" as never }, "strategy", "\"lifo\""],
        [{ pile: { capacity: 0 } }, "pile.capacity", "0"]
      ]
      for (const [options, option, value] of cases) {
        const error = yield* Effect.flip(Executor.make(options))
        assert.strictEqual(error.reason._tag, "InvalidOption")
        const reason = error.reason as ExecutorError.InvalidOption
        assert.strictEqual(reason.option, option)
        assert.strictEqual(reason.value, value)
        assert.include(error.message, option)
        assert.include(error.message, value)
      }
    }))

  it.effect("layer provides the executor as a service, shut down with the layer", () =>
    Effect.gen(function*() {
      const value = yield* Effect.gen(function*() {
        const executor = yield* Executor.Executor
        const handle = yield* executor.submit(Effect.succeed("done"))
        return yield* handle.join
      }).pipe(Effect.provide(Executor.layer({ concurrency: 2 })))
      assert.strictEqual(value, "done")
    }))

  it.effect("tasks run with the services of whoever submitted them", () =>
    Effect.gen(function*() {
      const Greeting = Context.Service<string>("test/Greeting")
      const executor = yield* make()
      const a = yield* executor.submit(Greeting).pipe(Effect.provideService(Greeting, "from A"))
      const b = yield* executor.submit(Greeting).pipe(Effect.provideService(Greeting, "from B"))
      assert.deepStrictEqual([yield* a.join, yield* b.join], ["from A", "from B"])
    }))
})

describe("outcomes", () => {
  it.effect("I1 every accepted task yields exactly one outcome, whatever it does", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 3, pile: "unbounded" })
      const tasks: Array<Effect.Effect<number, string>> = [
        Effect.succeed(1),
        Effect.fail("typed"),
        Effect.die("defect"),
        Effect.interrupt,
        Effect.sleep(50).pipe(Effect.as(5)),
        Effect.never,
        Effect.sleep(10).pipe(Effect.andThen(Effect.fail("late")))
      ]
      const handles = yield* Effect.forEach(tasks, (task) => executor.submit(task))
      yield* TestClock.adjust(100)
      yield* executor.shutdown({ mode: "cancel" })
      const outcomes = yield* Stream.runCollect(executor.pile)
      assert.sameMembers(outcomes.map((o) => o.id), handles.map((h) => h.id))
      assert.strictEqual(new Set(outcomes.map((o) => o.id)).size, outcomes.length)
      const byId = new Map(outcomes.map((o) => [o.id, o.kind]))
      assert.deepStrictEqual(handles.map((h) => byId.get(h.id)), [
        "success",
        "failure",
        "defect",
        "interrupted",
        "success",
        "interrupted",
        "failure"
      ])
      assertLedger(yield* executor.stats)
    }))

  it.effect("outcomes come out of the Pile in completion order", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 3 })
      yield* executor.submitAll([30, 10, 20].map((ms) => Effect.sleep(ms).pipe(Effect.as(ms))))
      const reader = yield* Effect.forkChild(Stream.runCollect(Stream.take(executor.pile, 3)))
      yield* TestClock.adjust(30)
      const outcomes = yield* Fiber.join(reader)
      assert.deepStrictEqual(outcomes.map((o) => o.exit), [Exit.succeed(10), Exit.succeed(20), Exit.succeed(30)])
      assert.deepStrictEqual(outcomes.map((o) => o.attempts), [1, 1, 1])
    }))

  it.effect("I1 reading part of the executor's Pile leaves the rest for the next reader", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 4, pile: "unbounded" })
      yield* executor.submitAll([Effect.succeed(1), Effect.succeed(2), Effect.succeed(3)])
      yield* TestClock.adjust(1)
      assert.strictEqual((yield* executor.stats).pileBuffered, 3)
      const first = yield* Stream.runCollect(Stream.take(executor.pile, 1))
      yield* executor.shutdown()
      const rest = yield* Stream.runCollect(executor.pile)
      assert.deepStrictEqual([...first, ...rest].map((o) => plain(o.exit)), [{ success: 1 }, { success: 2 }, {
        success: 3
      }])
    }))

  it.effect("handles: await gives the Exit, join the value, poll does not wait", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const handle = yield* executor.submit(Effect.sleep(10).pipe(Effect.as("v")))
      assert.isUndefined(yield* handle.poll)
      yield* TestClock.adjust(10)
      assert.deepStrictEqual(yield* handle.await, Exit.succeed("v"))
      assert.strictEqual(yield* handle.join, "v")
      assert.strictEqual((yield* handle.poll)?.kind, "success")
    }))

  it.effect("an interrupted wait for an outcome leaves no waiter behind; the others still get the outcome", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const latch = yield* Deferred.make<void>()
      const handle = yield* executor.submit(Deferred.await(latch))
      const [a, b, c] = yield* Effect.forEach([1, 2, 3], () => Effect.forkChild(handle.outcome))
      yield* Effect.yieldNow
      assert.strictEqual(waitersOf(handle).length, 3)
      yield* Fiber.interrupt(b!) // the middle one
      assert.strictEqual(waitersOf(handle).length, 2)
      yield* Fiber.interrupt(a!) // the first one
      assert.strictEqual(waitersOf(handle).length, 1)
      yield* Deferred.succeed(latch, undefined)
      assert.strictEqual((yield* Fiber.join(c!)).kind, "success")
      assert.strictEqual(waitersOf(handle).length, 0)
    }))

  it.effect("a wait interrupted by another waiter as the outcome arrives ends interrupted, and nothing else", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1 })
      yield* executor.submit(Effect.never)
      const handle = yield* executor.submit(Effect.succeed("never runs")) // queued behind the first
      let interruptSecond: Effect.Effect<void> = Effect.void
      // The first waiter is resumed first, and at once interrupts the second, whose own resumption is still to come.
      const first = yield* Effect.forkChild(Effect.tap(handle.outcome, () => interruptSecond), {
        startImmediately: true
      })
      const second = yield* Effect.forkChild(handle.outcome, { startImmediately: true })
      interruptSecond = Fiber.interrupt(second)
      assert.strictEqual(waitersOf(handle).length, 2)
      yield* handle.cancel
      assert.strictEqual((yield* Fiber.join(first)).kind, "cancelled")
      const exit = yield* Fiber.await(second)
      assert.isTrue(Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause), "interrupted, with no defect")
    }))

  it.effect("a task stopped twice keeps the first reason", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const handle = yield* executor.submit(Effect.never.pipe(Effect.ensuring(Effect.sleep(100))), { timeout: 50 })
      yield* TestClock.adjust(1)
      const cancelling = yield* Effect.forkChild(handle.cancel)
      yield* TestClock.adjust(60) // the timeout fires while the cancelled task's finalizer runs
      yield* TestClock.adjust(100)
      yield* Fiber.join(cancelling)
      assert.strictEqual((yield* handle.outcome).kind, "cancelled")
    }))

  it.effect("a stopped task's outcome keeps what its finalizer did; a task that ends anyway is still stopped", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const dying = yield* executor.submit(Effect.never.pipe(Effect.ensuring(Effect.die("finalizer bug"))))
      const stubborn = yield* executor.submit(Effect.uninterruptible(Effect.as(Effect.sleep(100), "done")), {
        timeout: 10
      })
      yield* TestClock.adjust(1)
      yield* dying.cancel
      const cancelled = yield* dying.outcome
      assert.strictEqual(cancelled.kind, "cancelled")
      assert.isTrue(Cause.hasInterrupts(cancelled.exit._tag === "Failure" ? cancelled.exit.cause : Cause.empty))
      assert.isTrue(Cause.hasDies(cancelled.exit._tag === "Failure" ? cancelled.exit.cause : Cause.empty))
      yield* TestClock.adjust(100)
      const timedOut = yield* stubborn.outcome
      assert.strictEqual(timedOut.kind, "timedOut")
      assert.strictEqual(timedOut.exit._tag, "Failure", "stopped: its outcome is an interruption, not its value")
    }))

  it.effect("I1 a task whose body cancels it before the first suspension ends cancelled and frees its slot", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1 })
      const gate = yield* Deferred.make<void>()
      yield* executor.submit(Deferred.await(gate))
      let cancelSelf: Effect.Effect<void> = Effect.void
      // Queued now; it starts when the gate opens, and its body cancels it before anything else.
      const handle = yield* executor.submit(Effect.suspend(() => cancelSelf))
      cancelSelf = handle.cancel
      yield* Deferred.succeed(gate, undefined)
      yield* settleFibers
      assert.strictEqual((yield* handle.poll)?.kind, "cancelled")
      const stats = yield* executor.stats
      assert.strictEqual(stats.running, 0)
      assertLedger(stats)
    }))
})

describe("isolation", () => {
  it.effect("I4 a failure or a defect interrupts no sibling, no worker and not the executor", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 4 })
      const slow = yield* executor.submit(Effect.sleep(100).pipe(Effect.as("slow")))
      const failing = yield* executor.submit(Effect.sleep(10).pipe(Effect.andThen(Effect.fail("boom"))))
      const dying = yield* executor.submit(Effect.sleep(20).pipe(Effect.andThen(Effect.die("bug"))))
      yield* TestClock.adjust(100)
      assert.deepStrictEqual(yield* slow.await, Exit.succeed("slow"))
      assert.deepStrictEqual(plain(yield* failing.await), { failure: "boom" })
      assert.strictEqual((yield* dying.outcome).kind, "defect")
      const after = yield* executor.submit(Effect.succeed("still open"))
      assert.strictEqual(yield* after.join, "still open")
    }))

  it.effect("I4 an interruption by the executor is recorded as an outcome and ends the fiber", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const finalized = yield* Ref.make(false)
      const handle = yield* executor.submit(Effect.never.pipe(Effect.ensuring(Ref.set(finalized, true))))
      yield* TestClock.adjust(1)
      yield* handle.cancel
      const outcome = yield* handle.outcome
      assert.strictEqual(outcome.kind, "cancelled")
      assert.isTrue(Exit.hasInterrupts(outcome.exit))
      assert.isTrue(yield* Ref.get(finalized))
      assert.strictEqual((yield* executor.stats).running, 0)
    }))

  it.effect("cancelling a queued task ends it at once and frees its place in the queue", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 1 })
      yield* executor.submit(Effect.never)
      yield* TestClock.adjust(1)
      const queued = yield* executor.submit(Effect.succeed("never runs"))
      yield* queued.cancel
      assert.strictEqual((yield* queued.outcome).kind, "cancelled")
      assert.strictEqual((yield* queued.outcome).attempts, 0)
      const next = yield* executor.trySubmit(Effect.void)
      assert.strictEqual((yield* executor.stats).queued, 1)
      yield* next.cancel
    }))
})

describe("lifetime", () => {
  it.effect("I5 nothing outlives the executor: every fiber it forked has ended when its scope closes", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const finalized = yield* Ref.make(0)
      const executor = yield* make({ concurrency: 2 }).pipe(Scope.provide(scope))
      yield* executor.submitAll([
        Effect.never.pipe(Effect.ensuring(Ref.update(finalized, (n) => n + 1))),
        Effect.sleep(5).pipe(Effect.ensuring(Ref.update(finalized, (n) => n + 1))),
        Effect.never
      ])
      yield* executor.start((ready) => Effect.andThen(ready(undefined), Effect.never))
      yield* TestClock.adjust(1)
      assert.isAbove(liveFibers(executor).length, 0)
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(liveFibers(executor), [])
      assert.strictEqual(engineOf(executor).fibers.size, 0, "the dispatcher and the services are gone")
      assert.strictEqual(yield* Ref.get(finalized), 2)
    }))

  it.effect("I5 nothing outlives shutdown: when it returns, every fiber the executor forked has ended", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 2 })
      yield* executor.submit(Effect.never)
      yield* executor.start((ready) => Effect.andThen(ready(undefined), Effect.never))
      yield* TestClock.adjust(1)
      assert.isAbove(liveFibers(executor).length, 0)
      yield* executor.shutdown({ mode: "cancel" })
      assert.deepStrictEqual(liveFibers(executor), [], "the dispatcher, the service and the task have ended")
    }))

  it.effect("I6 after shutdown begins, submit fails with Closed, every time", () =>
    Effect.gen(function*() {
      const executor = yield* make({ shutdown: { mode: "drain", grace: 1000 } })
      yield* executor.submit(Effect.sleep(100))
      const shutdown = yield* Effect.forkChild(executor.shutdown())
      yield* Effect.yieldNow
      for (let i = 0; i < 3; i++) {
        assert.strictEqual(reasonOf(yield* Effect.exit(executor.submit(Effect.void))), "Closed")
        assert.strictEqual(reasonOf(yield* Effect.exit(executor.trySubmit(Effect.void))), "Closed")
      }
      yield* TestClock.adjust(100)
      yield* Fiber.join(shutdown)
      assert.strictEqual(reasonOf(yield* Effect.exit(executor.submit(Effect.void))), "Closed")
      const stats = yield* executor.stats
      assert.strictEqual(stats.rejected, 7)
      assertLedger(stats)
    }))

  it.effect("I6 a submitter waiting for space when shutdown begins fails with Closed, and its task never runs", () =>
    Effect.gen(function*() {
      const executor = yield* make({ capacity: 1, concurrency: 1 })
      const ran = yield* Ref.make(false)
      yield* executor.submit(Effect.never)
      yield* TestClock.adjust(1)
      yield* executor.submit(Effect.never)
      const waiting = yield* Effect.forkChild(executor.submit(Ref.set(ran, true)))
      yield* Effect.yieldNow
      assert.strictEqual((yield* executor.stats).blockedSubmitters, 1)
      yield* executor.shutdown({ mode: "cancel" })
      assert.strictEqual(reasonOf(yield* Fiber.await(waiting)), "Closed")
      assert.isFalse(yield* Ref.get(ran))
      const stats = yield* executor.stats
      assert.strictEqual(stats.rejected, 1, "the refused submission is counted as rejected")
      assertLedger(stats)
    }))

  it.effect("I7 drain finishes accepted work: queue empty, nothing running, every task has its outcome", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 2 })
      const handles = yield* Effect.forEach(
        [10, 20, 30, 40, 50],
        (ms) => executor.submit(Effect.sleep(ms).pipe(Effect.as(ms)))
      )
      const shutdown = yield* Effect.forkChild(executor.shutdown({ mode: "drain", grace: "1 hour" }))
      yield* TestClock.adjust(200)
      yield* Fiber.join(shutdown)
      const stats = yield* executor.stats
      assert.strictEqual(stats.phase, "closed")
      assert.strictEqual(stats.queued, 0)
      assert.strictEqual(stats.running, 0)
      for (const handle of handles) assert.strictEqual((yield* handle.outcome).kind, "success")
      assertLedger(stats)
    }))

  it.effect("I7 closing the scope drains by default", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const executor = yield* Executor.make({ concurrency: 1 }).pipe(Scope.provide(scope))
      const handles = yield* Effect.forEach([10, 10], (ms) => executor.submit(Effect.sleep(ms)))
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* TestClock.adjust(20)
      yield* Fiber.join(closing)
      for (const handle of handles) assert.strictEqual((yield* handle.outcome).kind, "success")
    }))

  it.effect("I8 a drain whose grace runs out cancels the rest", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1 })
      const quick = yield* executor.submit(Effect.sleep(10))
      const stuck = yield* executor.submit(Effect.never)
      const queued = yield* executor.submit(Effect.never)
      const shutdown = yield* Effect.forkChild(executor.shutdown({ mode: "drain", grace: 50 }))
      yield* TestClock.adjust(50)
      yield* Fiber.join(shutdown)
      assert.deepStrictEqual(
        [(yield* quick.outcome).kind, (yield* stuck.outcome).kind, (yield* queued.outcome).kind],
        ["success", "interrupted", "interrupted"]
      )
      assert.strictEqual((yield* queued.outcome).attempts, 0)
    }))

  it.effect("I8 cancel interrupts everything, runs every finalizer, and a second call is harmless", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 2, capacity: 10 })
      const finalized = yield* Ref.make<Array<number>>([])
      const handles = yield* Effect.forEach(
        [1, 2, 3, 4],
        (n) => executor.submit(Effect.never.pipe(Effect.ensuring(Ref.update(finalized, (xs) => [...xs, n]))))
      )
      yield* TestClock.adjust(1)
      yield* executor.shutdown({ mode: "cancel" })
      yield* executor.shutdown({ mode: "cancel" })
      yield* executor.shutdown({ mode: "drain" })
      assert.sameMembers(yield* Ref.get(finalized), [1, 2])
      for (const handle of handles) assert.strictEqual((yield* handle.outcome).kind, "interrupted")
      assert.strictEqual((yield* executor.stats).phase, "closed")
    }))

  it.effect("I8 a finalizer that never ends is abandoned after finalizerTimeout, and shutdown completes", () =>
    Effect.gen(function*() {
      const executor = yield* make({ finalizerTimeout: "5 seconds" })
      const handle = yield* executor.submit(Effect.never.pipe(Effect.ensuring(Effect.never)))
      yield* TestClock.adjust(1)
      const shutdown = yield* Effect.forkChild(executor.shutdown({ mode: "cancel" }))
      yield* TestClock.adjust("5 seconds")
      yield* Fiber.join(shutdown)
      assert.strictEqual((yield* handle.outcome).kind, "interrupted")
      const stats = yield* executor.stats
      assert.strictEqual(stats.abandoned, 1)
      assertLedger(stats)
    }))

  it.effect("a cancel request cuts a drain in progress short", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const handle = yield* executor.submit(Effect.never)
      const drain = yield* Effect.forkChild(executor.shutdown({ mode: "drain", grace: "1 hour" }))
      yield* TestClock.adjust(1)
      yield* executor.shutdown({ mode: "cancel" })
      yield* Fiber.join(drain)
      assert.strictEqual((yield* handle.outcome).kind, "interrupted")
    }))

  it.effect("a drain request after a cancel request does not turn the cancel into a drain", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const handle = yield* executor.submit(Effect.never)
      const cancel = yield* Effect.forkChild(executor.shutdown({ mode: "cancel" }))
      const drain = yield* Effect.forkChild(executor.shutdown({ mode: "drain", grace: "1 hour" }))
      yield* Fiber.join(cancel)
      yield* Fiber.join(drain)
      assert.strictEqual((yield* handle.outcome).kind, "interrupted")
      assert.strictEqual((yield* executor.stats).phase, "closed")
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

  it.effect("after a normal shutdown, Closed says it was not escalated, and no service may start", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      yield* executor.shutdown({ mode: "cancel" })
      const error = yield* Effect.flip(executor.submit(Effect.void))
      assert.strictEqual(error.reason._tag, "Closed")
      assert.isFalse((error.reason as ExecutorError.Closed).escalated)
      const service = yield* Effect.flip(executor.start((ready) => Effect.andThen(ready(1), Effect.never)))
      assert.strictEqual((service as ExecutorError.ExecutorError).reason._tag, "Closed")
      assert.strictEqual((yield* executor.stats).services.running, 0)
    }))

  it.effect("I8 cancel waits for a finalizer that ends within finalizerTimeout: nothing is abandoned", () =>
    Effect.gen(function*() {
      const executor = yield* make({ finalizerTimeout: "5 seconds" })
      const finalized = yield* Ref.make(false)
      const handle = yield* executor.submit(
        Effect.never.pipe(Effect.ensuring(Effect.andThen(Effect.sleep("1 second"), Ref.set(finalized, true))))
      )
      yield* TestClock.adjust(1)
      const shutdown = yield* Effect.forkChild(executor.shutdown({ mode: "cancel" }))
      yield* TestClock.adjust(500)
      const during = yield* executor.stats
      assert.deepStrictEqual([during.phase, during.running], ["cancelling", 1])
      yield* TestClock.adjust(500)
      yield* Fiber.join(shutdown)
      assert.isTrue(yield* Ref.get(finalized))
      assert.strictEqual((yield* handle.outcome).kind, "interrupted")
      const stats = yield* executor.stats
      assert.deepStrictEqual([stats.abandoned, stats.running, stats.phase], [0, 0, "closed"])
      assertLedger(stats)
    }))

  it.effect("I5 shutdown waits for every service to stop, not only the first", () =>
    Effect.gen(function*() {
      const executor = yield* make({ finalizerTimeout: "1 minute" })
      const stopped = yield* Ref.make<Array<string>>([])
      const service = (name: string, finalizer: number) =>
        executor.start((ready) =>
          Effect.andThen(ready(undefined), Effect.never).pipe(
            Effect.ensuring(Effect.andThen(Effect.sleep(finalizer), Ref.update(stopped, (xs) => [...xs, name])))
          )
        )
      yield* service("quick", 0)
      yield* service("slow", 1000)
      const shutdown = yield* Effect.forkChild(executor.shutdown({ mode: "cancel" }))
      yield* TestClock.adjust(999)
      assert.isUndefined(shutdown.pollUnsafe(), "the slow service is still stopping")
      yield* TestClock.adjust(1)
      yield* Fiber.join(shutdown)
      assert.deepStrictEqual(yield* Ref.get(stopped), ["quick", "slow"])
    }))

  it.effect("I14 a drain completes although a batch's consumer stopped reading", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make({ concurrency: 2, shutdown: { mode: "drain" } })
      const consumer = yield* Effect.forkChild(Stream.runForEach(
        executor.run([1, 2, 3, 4, 5, 6], (n) => Effect.as(Effect.sleep(n), n), { buffer: 1 }),
        () => Effect.never // reads one outcome, then never asks for another
      ))
      yield* TestClock.adjust(1)
      const shutdown = yield* Effect.forkChild(executor.shutdown())
      yield* TestClock.adjust(100)
      yield* Fiber.join(shutdown)
      const stats = yield* executor.stats
      assert.deepStrictEqual([stats.phase, stats.running, stats.finished], ["closed", 0, 6])
      yield* Fiber.interrupt(consumer)
    }))

  it.effect("I8 an abandoned task keeps the reason it was stopped for", () =>
    Effect.gen(function*() {
      const executor = yield* make({ finalizerTimeout: "1 second" })
      const handle = yield* executor.submit(Effect.never.pipe(Effect.ensuring(Effect.never)), { timeout: 10 })
      yield* TestClock.adjust(10)
      const shutdown = yield* Effect.forkChild(executor.shutdown({ mode: "cancel" }))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(shutdown)
      const outcome = yield* handle.outcome
      assert.strictEqual(outcome.kind, "timedOut")
      const stats = yield* executor.stats
      assert.deepStrictEqual([stats.abandoned, stats.running], [1, 0])
      assertLedger(stats)
    }))

  it.effect("I8 I15 tasks given up at the same deadline go together: the first one's waiter sees every one given up", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 2, finalizerTimeout: "1 second" })
      const stuck = Effect.never.pipe(Effect.ensuring(Effect.never))
      const first = yield* executor.submit(stuck)
      yield* executor.submit(stuck)
      yield* TestClock.adjust(1)
      const seen = yield* Effect.forkChild(Effect.andThen(first.outcome, executor.stats), { startImmediately: true })
      const shutdown = yield* Effect.forkChild(executor.shutdown({ mode: "cancel" }))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(shutdown)
      const stats = yield* Fiber.join(seen)
      assert.deepStrictEqual([stats.abandoned, stats.running], [2, 0])
      assertLedger(stats)
    }))

  it.effect("I8 a drain asked for while a cancel waits for finalizers never softens it: the phase stays cancelling", () =>
    Effect.gen(function*() {
      const executor = yield* make({ finalizerTimeout: "1 second" })
      const handle = yield* executor.submit(Effect.never.pipe(Effect.ensuring(Effect.sleep(100))))
      yield* TestClock.adjust(1)
      const cancel = yield* Effect.forkChild(executor.shutdown({ mode: "cancel" }))
      yield* TestClock.adjust(10)
      assert.strictEqual((yield* executor.stats).phase, "cancelling")
      const drain = yield* Effect.forkChild(executor.shutdown({ mode: "drain" }), { startImmediately: true })
      yield* settleFibers
      assert.strictEqual((yield* executor.stats).phase, "cancelling")
      yield* TestClock.adjust(100)
      yield* Fiber.join(cancel)
      yield* Fiber.join(drain)
      assert.strictEqual((yield* handle.outcome).kind, "interrupted")
      const stats = yield* executor.stats
      assert.deepStrictEqual([stats.phase, stats.abandoned], ["closed", 0])
    }))

  it.effect("an abandoned attempt that ends later is not counted a second time", () =>
    Effect.gen(function*() {
      const executor = yield* make({ finalizerTimeout: "1 second" })
      yield* executor.submit(Effect.never.pipe(Effect.ensuring(Effect.sleep("10 seconds"))))
      yield* TestClock.adjust(1)
      const shutdown = yield* Effect.forkChild(executor.shutdown({ mode: "cancel" }))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(shutdown)
      assert.strictEqual((yield* executor.stats).abandoned, 1)
      const before = runTime(yield* Metric.snapshot)
      yield* TestClock.adjust("10 seconds") // the abandoned finalizer ends now
      assert.strictEqual(runTime(yield* Metric.snapshot), before)
      assertLedger(yield* executor.stats)
    }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())))

  it.effect("I7 a drain waits for a task that waits in its key's line for budget while nothing runs", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make({
        shutdown: { mode: "drain", grace: "1 hour" },
        limits: [{ key: "k", limit: 1, window: "1 minute" }]
      })
      yield* executor.submit(Effect.void, { key: "k" })
      const second = yield* executor.submit(Effect.succeed("second"), { key: "k" })
      yield* TestClock.adjust(1)
      const before = yield* executor.stats
      assert.deepStrictEqual([before.running, before.waiting], [0, 1])
      const shutdown = yield* Effect.forkChild(executor.shutdown())
      yield* TestClock.adjust("1 minute")
      yield* Fiber.join(shutdown)
      assert.strictEqual(yield* second.join, "second")
    }))
})

describe("progress", () => {
  it.effect("I16 when work is queued and a slot frees up, the next task starts without anyone asking", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1 })
      yield* executor.submit(Effect.sleep(10))
      const next = yield* executor.submit(Effect.succeed("next"))
      yield* TestClock.adjust(10)
      assert.strictEqual(yield* next.join, "next")
    }))

  it.effect("I16 a failure of the executor's own machinery closes admission and gives every task an outcome", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1 })
      const running = yield* executor.submit(Effect.never)
      const queued = yield* executor.submit(Effect.never)
      yield* TestClock.adjust(1)
      // The dispatcher fiber dies as if a bug in the engine threw.
      engineOf(executor).fibers.dispatcher!.interruptUnsafe()
      yield* Effect.yieldNow
      assert.deepStrictEqual([(yield* running.outcome).kind, (yield* queued.outcome).kind], [
        "interrupted",
        "interrupted"
      ])
      assert.strictEqual(reasonOf(yield* Effect.exit(executor.submit(Effect.void))), "Closed")
      assert.strictEqual((yield* executor.stats).phase, "closed")
      const error = yield* Effect.flip(executor.join)
      assert.strictEqual(error.reason._tag, "Escalated")
      assert.strictEqual((error.reason as ExecutorError.Escalated).source, "executor")
    }))

  it.effect("I16 a submitter waiting for space fails with Closed, and running services are stopped", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 1 })
      const stopped = yield* Deferred.make<void>()
      yield* executor.start((ready) =>
        Effect.andThen(ready(undefined), Effect.never).pipe(Effect.ensuring(Deferred.succeed(stopped, undefined)))
      )
      yield* executor.submit(Effect.never)
      yield* TestClock.adjust(1)
      yield* executor.submit(Effect.never)
      const waiting = yield* Effect.forkChild(executor.submit(Effect.void))
      yield* Effect.yieldNow
      assert.isUndefined(waiting.pollUnsafe(), "the queue is full: the submitter waits")
      engineOf(executor).fibers.dispatcher!.interruptUnsafe()
      assert.strictEqual(reasonOf(yield* Fiber.await(waiting)), "Closed")
      yield* Deferred.await(stopped)
      assert.strictEqual((yield* executor.stats).phase, "closed")
    }))

  it.effect("I16 a dispatcher dying during a shutdown that escalated keeps the escalation's source", () =>
    Effect.gen(function*() {
      const executor = yield* make({ policy: ErrorPolicy.escalate, finalizerTimeout: "1 minute" })
      // The first task's finalizer keeps the shutdown waiting; the second task's failure escalates.
      yield* executor.submit(Effect.never.pipe(Effect.ensuring(Effect.sleep("10 seconds"))))
      const failing = yield* executor.submit(Effect.andThen(Effect.sleep(10), Effect.fail("fatal")))
      yield* TestClock.adjust(10)
      yield* Effect.yieldNow
      assert.strictEqual((yield* executor.stats).phase, "cancelling")
      engineOf(executor).fibers.dispatcher!.interruptUnsafe()
      const error = yield* Effect.flip(executor.join)
      assert.strictEqual(error.reason._tag, "Escalated")
      assert.strictEqual((error.reason as ExecutorError.Escalated).source, `task ${failing.id}`)
    }))

  it.effect("a pass that starts more than 512 tasks lets other fibers run, then goes on by itself", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 2000 })
      yield* executor.submitAll(Array.from({ length: 1000 }, () => Effect.never))
      yield* TestClock.adjust(1)
      yield* executor.resize(1000)
      for (let i = 0; i < 5; i++) yield* Effect.yieldNow
      assert.strictEqual((yield* executor.stats).running, 1000)
    }))

  it.effect("a long pass gives way after 512 starts: other fibers see 512 more running before the rest start", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 2000 })
      yield* executor.submitAll(Array.from({ length: 1000 }, () => Effect.never))
      yield* TestClock.adjust(1)
      yield* executor.resize(1000)
      let running = 1
      for (let i = 0; i < 100 && running === 1; i++) {
        yield* Effect.yieldNow
        running = (yield* executor.stats).running
      }
      assert.strictEqual(running, 513, "the pass started 512 tasks, then let this fiber run")
      yield* settleFibers
      assert.strictEqual((yield* executor.stats).running, 1000)
    }))
})

describe("limits", () => {
  it.effect("I9 every slot is released exactly once, on every path", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 2, capacity: 100 })
      const handles = yield* Effect.forEach(
        [
          Effect.succeed(1),
          Effect.fail("f"),
          Effect.die("d"),
          Effect.interrupt,
          Effect.never,
          Effect.sleep(5)
        ] as Array<Effect.Effect<unknown, string>>,
        (task) => executor.submit(task)
      )
      yield* TestClock.adjust(10)
      yield* handles[4]!.cancel
      yield* TestClock.adjust(10)
      const engine = engineOf(executor)
      assert.strictEqual(engine.slots, 0)
      // Both slots are still there: two tasks run at once.
      const gauge = yield* makeGauge
      yield* Effect.forEach([1, 2, 3, 4], () => executor.submit(gauge.track(Effect.sleep(10))))
      yield* TestClock.adjust(20)
      assert.strictEqual(yield* Ref.get(gauge.peak), 2)
      assert.strictEqual(engine.slots, 0)
    }))

  it.effect("I10 concurrency never exceeds the cap", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 3, capacity: 100 })
      const gauge = yield* makeGauge
      yield* executor.submitAll(Array.from({ length: 20 }, (_, i) => gauge.track(Effect.sleep(1 + (i % 7)))))
      for (let t = 0; t < 60; t++) {
        yield* TestClock.adjust(1)
        assert.isAtMost((yield* executor.stats).running, 3)
      }
      assert.strictEqual(yield* Ref.get(gauge.peak), 3)
    }))

  it.effect("I10 a cancelled task holds its slot until its fiber has really stopped", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1 })
      const slowFinalizer = yield* executor.submit(Effect.never.pipe(Effect.ensuring(Effect.sleep(100))))
      const next = yield* executor.submit(Effect.succeed("next"))
      yield* TestClock.adjust(1)
      const cancelling = yield* Effect.forkChild(slowFinalizer.cancel)
      yield* TestClock.adjust(50)
      assert.isUndefined(yield* next.poll, "the next task waits while the cancelled one finalizes")
      assert.strictEqual((yield* executor.stats).running, 1)
      yield* TestClock.adjust(50)
      yield* Fiber.join(cancelling)
      assert.strictEqual(yield* next.join, "next")
    }))

  it.effect("I10 resize: lowering never preempts, raising starts more", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 4, capacity: 100 })
      const gauge = yield* makeGauge
      yield* executor.submitAll(Array.from({ length: 12 }, () => gauge.track(Effect.sleep(10))))
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* Ref.get(gauge.current), 4)
      yield* executor.resize(1)
      assert.strictEqual(yield* Ref.get(gauge.current), 4, "running tasks are not preempted")
      yield* TestClock.adjust(10)
      assert.strictEqual(yield* Ref.get(gauge.current), 1)
      yield* executor.resize(3)
      yield* Effect.yieldNow
      assert.strictEqual(yield* Ref.get(gauge.current), 3)
      assert.strictEqual(reasonOf(yield* Effect.exit(executor.resize(0))), "InvalidOption")
    }))

  it.effect("I11 tasks start first come, first served", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 100 })
      const started = yield* Ref.make<Array<number>>([])
      yield* Effect.forEach([1, 2, 3, 4, 5], (n) => executor.submit(Ref.update(started, (xs) => [...xs, n])))
      yield* TestClock.adjust(1)
      assert.deepStrictEqual(yield* Ref.get(started), [1, 2, 3, 4, 5])
    }))

  it.effect("I11 waiting submitters get freed places in the order they came", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 1 })
      const started = yield* Ref.make<Array<number>>([])
      yield* executor.submit(Effect.sleep(10))
      yield* TestClock.adjust(1)
      const submitters = yield* Effect.forEach([1, 2, 3], (n) =>
        Effect.forkChild(executor.submit(Ref.update(started, (xs) => [...xs, n]))).pipe(Effect.tap(() =>
          Effect.yieldNow
        )))
      yield* TestClock.adjust(20)
      yield* Fiber.joinAll(submitters)
      yield* TestClock.adjust(1)
      assert.deepStrictEqual(yield* Ref.get(started), [1, 2, 3])
    }))
})

describe("backpressure", () => {
  it.effect("I13 submit waits while the queue is full, and the queue never holds more than Q", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 2 })
      yield* executor.submit(Effect.sleep(10))
      yield* TestClock.adjust(1)
      yield* executor.submit(Effect.sleep(10))
      yield* executor.submit(Effect.sleep(10))
      const blocked = yield* Effect.forkChild(executor.submit(Effect.sleep(10)))
      yield* Effect.yieldNow
      assert.isUndefined(blocked.pollUnsafe(), "the fourth submit waits")
      assert.strictEqual((yield* executor.stats).queued, 2)
      yield* TestClock.adjust(10)
      yield* Fiber.join(blocked)
      const stats = yield* executor.stats
      assert.strictEqual(stats.peakQueued, 2)
      assert.isAtMost(stats.queued, 2)
    }))

  it.effect("I13 trySubmit fails with QueueFull instead of waiting", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 1 })
      yield* executor.submit(Effect.never)
      yield* TestClock.adjust(1)
      yield* executor.submit(Effect.never)
      const error = yield* Effect.flip(executor.trySubmit(Effect.void))
      assert.strictEqual(error.reason._tag, "QueueFull")
      assert.strictEqual((error.reason as ExecutorError.QueueFull).capacity, 1)
      const stats = yield* executor.stats
      assert.deepStrictEqual([stats.submitted, stats.accepted, stats.rejected], [3, 2, 1], "a refusal is counted")
      assertLedger(stats)
    }))

  it.effect("I13 a submitter interrupted while waiting leaves nothing queued", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 1 })
      const ran = yield* Ref.make(false)
      yield* executor.submit(Effect.sleep(10))
      yield* TestClock.adjust(1)
      yield* executor.submit(Effect.sleep(10))
      const blocked = yield* Effect.forkChild(executor.submit(Ref.set(ran, true)))
      yield* Effect.yieldNow
      yield* Fiber.interrupt(blocked)
      yield* TestClock.adjust(30)
      assert.isFalse(yield* Ref.get(ran))
      const stats = yield* executor.stats
      assert.strictEqual(stats.accepted, 2)
      assert.strictEqual(stats.blockedSubmitters, 0)
      assertLedger(stats)
    }))

  it.effect("I13 dropping: a task that finds the queue full is accepted and ends at once as dropped", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 1, strategy: "dropping" })
      yield* executor.submit(Effect.sleep(10))
      yield* TestClock.adjust(1)
      const kept = yield* executor.submit(Effect.succeed("kept"))
      const dropped = yield* executor.submit(Effect.succeed("dropped"))
      assert.strictEqual((yield* dropped.outcome).kind, "dropped")
      yield* TestClock.adjust(10)
      assert.strictEqual(yield* kept.join, "kept")
      assertLedger(yield* executor.stats)
    }))

  it.effect("I13 sliding: the oldest queued task is evicted, with an outcome", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 1, strategy: "sliding", pile: "unbounded" })
      yield* executor.submit(Effect.sleep(10))
      yield* TestClock.adjust(1)
      const old = yield* executor.submit(Effect.succeed("old"))
      const young = yield* executor.submit(Effect.succeed("young"))
      assert.strictEqual((yield* old.outcome).kind, "evicted")
      yield* TestClock.adjust(10)
      assert.strictEqual(yield* young.join, "young")
      const outcomes = yield* Stream.runCollect(Stream.take(executor.pile, 3))
      assert.sameMembers(kinds(outcomes), ["evicted", "success", "success"])
    }))

  it.effect("I14 an absent Pile consumer never deadlocks shutdown, even with a full bounded Pile", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 2, capacity: 10, pile: { capacity: 1 } })
      const handles = yield* Effect.forEach([1, 2, 3, 4, 5], (n) => executor.submit(Effect.sleep(n).pipe(Effect.as(n))))
      yield* TestClock.adjust(10)
      // The Pile holds 1 outcome; the next finished tasks keep their slots, so the rest waits.
      const before = yield* executor.stats
      assert.strictEqual(before.pileBuffered, 3)
      assert.strictEqual(before.queued, 2)
      const shutdown = yield* Effect.forkChild(executor.shutdown({ mode: "drain", grace: "1 hour" }))
      yield* TestClock.adjust(10)
      yield* Fiber.join(shutdown)
      for (const handle of handles) assert.strictEqual((yield* handle.outcome).kind, "success")
      const outcomes = yield* Stream.runCollect(executor.pile)
      assert.strictEqual(outcomes.length, 5)
    }))

  it.effect("a bounded Pile pushes back: finished tasks keep their slots until the consumer reads", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 10, pile: { capacity: 1 } })
      yield* executor.submitAll([Effect.succeed(1), Effect.succeed(2), Effect.succeed(3)])
      yield* TestClock.adjust(1)
      assert.strictEqual((yield* executor.stats).queued, 1, "task 3 waits: task 2's outcome holds the only slot")
      const first = yield* Stream.runCollect(Stream.take(executor.pile, 1))
      yield* TestClock.adjust(1)
      const rest = yield* Stream.runCollect(Stream.take(executor.pile, 2))
      assert.deepStrictEqual([...first, ...rest].map((o) => o.exit), [
        Exit.succeed(1),
        Exit.succeed(2),
        Exit.succeed(3)
      ])
    }))

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

describe("the batch form", () => {
  it.effect("a batch task that submits to its executor: the submitted task's outcome goes to the Pile, not the batch", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 2, pile: "unbounded" })
      const batch = yield* Stream.runCollect(executor.run(["a", "b"], (input) =>
        Effect.gen(function*() {
          const inner = yield* executor.submit(Effect.succeed(`inner ${input}`))
          return yield* inner.join
        })))
      assert.deepStrictEqual(batch.map((o) => plain(o.exit)), [{ success: "inner a" }, { success: "inner b" }])
      yield* executor.shutdown()
      const pile = yield* Stream.runCollect(executor.pile)
      assert.deepStrictEqual(pile.map((o) => plain(o.exit)), [{ success: "inner a" }, { success: "inner b" }])
    }))

  it.effect("run gives the batch's outcomes in completion order, each with its input", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 3 })
      const reader = yield* Effect.forkChild(Stream.runCollect(
        executor.run([30, 10, 20], (ms) => ms === 20 ? Effect.fail("twenty") : Effect.sleep(ms).pipe(Effect.as(ms * 2)))
      ))
      yield* TestClock.adjust(30)
      const outcomes = yield* Fiber.join(reader)
      assert.deepStrictEqual(outcomes.map((o) => o.input), [20, 10, 30])
      assert.deepStrictEqual(outcomes.map((o) => plain(o.exit)), [{ failure: "twenty" }, { success: 20 }, {
        success: 60
      }])
    }))

  it.effect("run feeds a stream of inputs under the executor's cap, with backpressure", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 2, capacity: 2 })
      const gauge = yield* makeGauge
      const reader = yield* Effect.forkChild(Stream.runCollect(
        executor.run(Stream.range(1, 20), (n) => gauge.track(Effect.sleep(5).pipe(Effect.as(n))))
      ))
      yield* TestClock.adjust(100)
      const outcomes = yield* Fiber.join(reader)
      assert.strictEqual(outcomes.length, 20)
      assert.strictEqual(yield* Ref.get(gauge.peak), 2)
      assert.isAtMost((yield* executor.stats).peakQueued, 2)
    }))

  it.effect("a consumer that stops early cancels the batch's remaining tasks and waits for them", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 2, capacity: 10 })
      const finalized = yield* Ref.make(0)
      const reader = yield* Effect.forkChild(Stream.runCollect(Stream.take(
        executor.run(
          [1, 2, 3, 4],
          (n) => n === 1 ? Effect.succeed(n) : Effect.never.pipe(Effect.ensuring(Ref.update(finalized, (k) => k + 1)))
        ),
        1
      )))
      yield* TestClock.adjust(1)
      const outcomes = yield* Fiber.join(reader)
      assert.deepStrictEqual(outcomes.map((o) => o.input), [1])
      assert.strictEqual(yield* Ref.get(finalized), 2, "the two running tasks were interrupted and finalized")
      const stats = yield* executor.stats
      assert.strictEqual(stats.running + stats.queued, 0)
      assert.strictEqual(stats.outcomes.cancelled, 3)
    }))

  it.effect("a shutdown during a batch delivers every accepted outcome, then fails with Closed", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 1 })
      const reader = yield* Effect.forkChild(
        Stream.runCollect(
          executor.run(Stream.range(1, 10), (n) => Effect.sleep(10).pipe(Effect.as(n)))
        ).pipe(Effect.exit)
      )
      yield* TestClock.adjust(15)
      yield* Effect.forkChild(executor.shutdown({ mode: "drain", grace: "1 hour" }))
      yield* TestClock.adjust(100)
      const exit = yield* Fiber.join(reader)
      assert.strictEqual(reasonOf(exit as Exit.Exit<unknown, ExecutorError.ExecutorError>), "Closed")
      const stats = yield* executor.stats
      assert.strictEqual(stats.outcomes.success, stats.accepted, "every accepted task finished")
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

  it.effect("a batch feeder interrupted while it waits for room leaves nothing behind", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 4 })
      // The queue is full of other submitters' tasks: the batch gets no place and waits for room.
      yield* executor.submitAll(Array.from({ length: 5 }, () => Effect.never))
      yield* TestClock.adjust(1)
      const reader = yield* Effect.forkChild(Stream.runCollect(executor.run([1, 2, 3], () => Effect.never)))
      yield* TestClock.adjust(1)
      const intake = engineOf(executor).intake as unknown as { readonly roomWaiters: ReadonlyArray<unknown> }
      assert.strictEqual(intake.roomWaiters.length, 1, "the feeder waits for room")
      yield* Fiber.interrupt(reader)
      assert.strictEqual(intake.roomWaiters.length, 0, "an interrupted feeder is forgotten")
      const stats = yield* executor.stats
      assert.deepStrictEqual([stats.accepted, stats.queued], [5, 4])
      assertLedger(stats)
    }))
})

describe("Pile consumers", () => {
  it.effect("I19 collect fails with one error holding every failure, with ids", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 4 })
      const error = yield* Effect.flip(Pile.collect(
        executor.run([1, 2, 3, 4, 5, 6], (n) => n % 2 === 0 ? Effect.fail(`even ${n}`) : Effect.succeed(n))
      ))
      if (error._tag !== "PileFailures") return assert.fail(error.message)
      assert.strictEqual(error.count, 3)
      assert.sameMembers(error.failures.map((o) => o.input), [2, 4, 6])
      assert.strictEqual(error.succeeded, 3)
      assert.isFalse(error.truncated)
    }))

  it.effect("I19 collect caps the failures it keeps and reports the cap", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 4 })
      const error = yield* Effect.flip(
        Pile.collect(executor.run([1, 2, 3, 4, 5], (n) => Effect.fail(n)), { maxFailures: 2 })
      )
      if (error._tag !== "PileFailures") return assert.fail(error.message)
      assert.strictEqual(error.count, 5)
      assert.strictEqual(error.failures.length, 2)
      assert.isTrue(error.truncated)
    }))

  it.effect("collect succeeds with every value in input order when nothing failed", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 3 })
      const fiber = yield* Effect.forkChild(
        Pile.collect(executor.run([30, 10, 20], (ms) => Effect.sleep(ms).pipe(Effect.as(ms))))
      )
      yield* TestClock.adjust(30)
      assert.deepStrictEqual(yield* Fiber.join(fiber), [30, 10, 20])
    }))

  it.effect("successes, failures, partition and exits", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1 })
      const batch = () => executor.run([1, 2, 3], (n) => n === 2 ? Effect.fail("two") : Effect.succeed(n))
      assert.deepStrictEqual(yield* Stream.runCollect(Pile.successes(batch())), [1, 3])
      assert.deepStrictEqual((yield* Stream.runCollect(Pile.failures(batch()))).map((o) => o.input), [2])
      const [ok, failed] = yield* Pile.partition(batch())
      assert.deepStrictEqual([ok.length, failed.length], [2, 1])
      assert.deepStrictEqual((yield* Stream.runCollect(Pile.exits(batch()))).map(plain), [
        { success: 1 },
        { failure: "two" },
        { success: 3 }
      ])
    }))

  it.effect("reading the Pile of an executor made with pile: none is a defect with a clear message", () =>
    Effect.gen(function*() {
      const executor = yield* make({ pile: "none" })
      const exit = yield* Effect.exit(Stream.runCollect(executor.pile))
      assert.isTrue(Exit.hasDies(exit))
      assert.include(String(Cause.squash((exit as Exit.Failure<unknown, unknown>).cause)), "pile: \"none\"")
      const handle = yield* executor.submit(Effect.succeed(1))
      assert.strictEqual(yield* handle.join, 1)
    }))

  it.effect("reading nothing: with pile none, cancelling a queued task is fine", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, pile: "none" })
      yield* executor.submit(Effect.never)
      const queued = yield* executor.submit(Effect.succeed("never runs"))
      yield* queued.cancel
      assert.strictEqual((yield* queued.outcome).kind, "cancelled")
      assertLedger(yield* executor.stats)
    }))
})

describe("services", () => {
  it.effect("I17 start returns once the service signals readiness, with its value", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const started = yield* Effect.forkChild(
        executor.start((ready) => Effect.sleep(10).pipe(Effect.andThen(ready(8080)), Effect.andThen(Effect.never)))
      )
      yield* TestClock.adjust(9)
      assert.isUndefined(started.pollUnsafe())
      yield* TestClock.adjust(1)
      const service = yield* Fiber.join(started)
      assert.strictEqual(service.value, 8080)
      assert.strictEqual((yield* executor.stats).services.running, 1)
      yield* service.stop
      assert.strictEqual((yield* executor.stats).services.running, 0)
    }))

  it.effect("I17 a failure before readiness is raised to the caller and leaves nothing running", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const error = yield* Effect.flip(executor.start(() => Effect.fail("cannot bind")))
      assert.strictEqual(error, "cannot bind")
      assert.strictEqual((yield* executor.stats).services.running, 0)
      assert.deepStrictEqual(liveFibers(executor).length, 1, "only the dispatcher is left")
    }))

  it.effect("I17 a service that ends without signalling readiness is an error, not a hang", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const error = yield* Effect.flip(executor.start(() => Effect.void))
      assert.strictEqual((error as ExecutorError.ExecutorError).reason._tag, "ServiceNotReady")
    }))

  it.effect("I17 interrupting the caller interrupts the half-started service", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const interrupted = yield* Deferred.make<void>()
      const caller = yield* Effect.forkChild(
        executor.start(() => Effect.never.pipe(Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))))
      )
      yield* TestClock.adjust(1)
      yield* Fiber.interrupt(caller)
      yield* Deferred.await(interrupted)
      assert.strictEqual((yield* executor.stats).services.running, 0)
    }))

  it.effect("a supervised service is restarted on its schedule, and its restarts show in stats", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const runs = yield* Ref.make(0)
      yield* executor.start((ready) =>
        Effect.gen(function*() {
          const n = yield* Ref.updateAndGet(runs, (k) => k + 1)
          yield* ready(undefined)
          yield* Effect.sleep(10)
          if (n < 3) return yield* Effect.fail(`crash ${n}`)
          return yield* Effect.never
        }), { restart: Schedule.spaced(5) })
      yield* TestClock.adjust(100)
      assert.strictEqual(yield* Ref.get(runs), 3)
      const stats = yield* executor.stats
      assert.strictEqual(stats.services.restarts, 2)
      assert.strictEqual(stats.phase, "open")
    }))

  it.effect("a service that exhausts its restarts escalates: admission stops, tasks are cancelled, join fails", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const task = yield* executor.submit(Effect.never)
      yield* executor.start(
        (ready) => ready(undefined).pipe(Effect.andThen(Effect.sleep(10)), Effect.andThen(Effect.fail("crash"))),
        { name: "poller", restart: Schedule.recurs(1) }
      )
      yield* TestClock.adjust(100)
      assert.strictEqual((yield* task.outcome).kind, "interrupted")
      const error = yield* Effect.flip(executor.join)
      assert.strictEqual(error.reason._tag, "Escalated")
      assert.strictEqual((error.reason as ExecutorError.Escalated).source, "poller")
      assert.strictEqual(reasonOf(yield* Effect.exit(executor.submit(Effect.void))), "Closed")
      const pile = yield* Effect.exit(Stream.runCollect(executor.pile))
      assert.strictEqual(reasonOf(pile as Exit.Exit<unknown, ExecutorError.ExecutorError>), "Escalated")
    }))

  it.effect("Executor.scoped interrupts the body and fails when a failure is escalated", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(Executor.scoped({ shutdown: { mode: "cancel" } }, (executor) =>
        Effect.gen(function*() {
          yield* executor.start((ready) =>
            ready(undefined).pipe(Effect.andThen(Effect.sleep(10)), Effect.andThen(Effect.fail("x")))
          )
          return yield* Effect.never
        })))
      yield* TestClock.adjust(10)
      const exit = yield* Fiber.await(fiber)
      assert.strictEqual(reasonOf(exit as Exit.Exit<unknown, ExecutorError.ExecutorError>), "Escalated")
    }))

  it.effect("Executor.scoped reports the escalation even when the body fails first on the closed executor", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Executor.scoped(
          { shutdown: { mode: "cancel" }, policy: ErrorPolicy.escalate },
          (executor) =>
            Effect.gen(function*() {
              // The failing task starts, and escalates, inside this submit; the next submit finds the executor closed.
              yield* executor.submit(Effect.fail("fatal"))
              yield* executor.submit(Effect.void)
              return yield* Effect.never
            })
        )
      )
      assert.strictEqual(reasonOf(exit as Exit.Exit<unknown, ExecutorError.ExecutorError>), "Escalated")
    }))

  it.effect("join succeeds once the executor has shut down normally", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const join = yield* Effect.forkChild(executor.join)
      yield* executor.shutdown()
      yield* Fiber.join(join)
    }))
})

describe("ledger", () => {
  it.effect("I15 stats add up at every step of a mixed run", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 2, capacity: 3 })
      yield* Effect.forkChild(executor.submitAll(Array.from({ length: 12 }, (_, i) =>
        i % 4 === 0 ? Effect.fail(i) : i % 5 === 0 ? Effect.die(i) : Effect.sleep(i).pipe(Effect.as(i)))))
      for (let t = 0; t < 40; t++) {
        assertLedger(yield* executor.stats)
        yield* TestClock.adjust(1)
      }
      const stats = yield* executor.stats
      assert.strictEqual(stats.finished, 12)
      assertLedger(stats)
    }))
})

describe("Executor.layerConfig", () => {
  const layer = Executor.layerConfig({
    concurrency: Config.Int("PILE_CONCURRENCY"),
    capacity: Config.Int("PILE_CAPACITY").pipe(Config.withDefault(7)),
    shutdown: Config.succeed({ mode: "cancel" as const })
  })
  const statsWith = (env: Record<string, string>) =>
    Effect.gen(function*() {
      const executor = yield* Executor.Executor
      return yield* executor.stats
    }).pipe(
      Effect.provide(layer),
      Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env }))
    )

  it.effect("reads each option from the ConfigProvider; a config's default applies when the value is missing", () =>
    Effect.gen(function*() {
      const set = yield* statsWith({ PILE_CONCURRENCY: "3", PILE_CAPACITY: "50" })
      assert.strictEqual(set.concurrency, 3)
      assert.strictEqual(set.capacity, 50)
      const defaulted = yield* statsWith({ PILE_CONCURRENCY: "3" })
      assert.strictEqual(defaulted.capacity, 7)
    }))

  it.effect("a missing or malformed value fails with ConfigError, a value that breaks a rule with InvalidOption", () =>
    Effect.gen(function*() {
      const missing = yield* Effect.flip(statsWith({}))
      assert.strictEqual(missing._tag, "ConfigError")
      const malformed = yield* Effect.flip(statsWith({ PILE_CONCURRENCY: "many" }))
      assert.strictEqual(malformed._tag, "ConfigError")
      const invalid = yield* Effect.flip(statsWith({ PILE_CONCURRENCY: "0" }))
      assert.strictEqual(invalid._tag, "ExecutorError")
      assert.strictEqual(invalid._tag === "ExecutorError" ? invalid.reason._tag : undefined, "InvalidOption")
    }))
})
