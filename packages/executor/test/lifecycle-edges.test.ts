// Edges of the executor's lifecycle that the invariant tests pass through without pinning down: waiters that
// give up, a dispatcher that dies in the middle of things, shutdown waiting for finalizers and services, stops
// that race each other. Each test was written against mutants of engine.ts that the other suites let survive
// (docs/verification.md, "Mutation testing").
import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Fiber, Metric, Ref, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as ErrorPolicy from "../src/ErrorPolicy.ts"
import * as Executor from "../src/Executor.ts"
import type * as ExecutorError from "../src/ExecutorError.ts"
import { names } from "../src/internal/instruments.ts"
import { assertLedger, engineOf, reasonOf } from "./support.ts"

const make = <A = unknown, E = unknown>(options?: Executor.Options<E>) =>
  Executor.make<A, E>({ shutdown: { mode: "cancel" }, ...options })

/** How many attempts the run-time histogram observed. */
const runTime = (snapshots: ReadonlyArray<Metric.Metric.Snapshot>): number => {
  const series = snapshots.find((s) => s.id === names.runTime)
  return Number((series?.state as { readonly count: number } | undefined)?.count ?? 0)
}

/** The waiters of a task's outcome (an internal list: an interrupted wait must leave it). */
const waitersOf = (handle: unknown): ReadonlyArray<unknown> =>
  (handle as { readonly waiters?: ReadonlyArray<unknown> }).waiters ?? []

describe("waiters that give up", () => {
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

describe("counting what was refused", () => {
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

describe("the dispatcher dies", () => {
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
})

describe("escalations", () => {
  it.effect("the first escalation wins: a service failing later, during the shutdown, is not raised instead", () =>
    Effect.gen(function*() {
      const executor = yield* make({ policy: ErrorPolicy.escalate, finalizerTimeout: "1 minute" })
      yield* executor.start((ready) =>
        Effect.andThen(ready(undefined), Effect.andThen(Effect.sleep(20), Effect.fail("service")))
      )
      yield* executor.submit(Effect.never.pipe(Effect.ensuring(Effect.sleep("10 seconds")))) // keeps the shutdown busy
      const failing = yield* executor.submit(Effect.andThen(Effect.sleep(10), Effect.fail("fatal")))
      yield* TestClock.adjust(10)
      yield* TestClock.adjust(10) // the service fails while the shutdown waits for the finalizer
      yield* TestClock.adjust("10 seconds")
      const error = yield* Effect.flip(executor.join)
      assert.strictEqual((error.reason as ExecutorError.Escalated).source, `task ${failing.id}`)
    }))
})

describe("shutdown waits, within its bounds", () => {
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
})

describe("stops that race", () => {
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
})
