// Callers that react to the executor: user code that runs when the executor resumes it (a submitter that
// waited for room, a fiber waiting for an outcome, the consumer of a batch) and at once submits, cancels, or
// stops reading. Each test is one of the reproductions of issue 14, through the public API only.
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Option, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as Executor from "../src/Executor.ts"
import { assertCancelShutdownIsImmediate, assertLedger, make, settleFibers } from "./support.ts"

/** The first input succeeds at once; the others take a second, with a finalizer when interrupted. */
const firstAtOnce = (n: number) =>
  n === 0
    ? Effect.succeed(n)
    : Effect.as(Effect.sleep(1000), n).pipe(Effect.onInterrupt(() => Effect.sleep(1)))

/**
 * One round of a submitter that waited for room and, once resumed, cancels the task just admitted ahead of
 * it (B). B's outcome and whether it ran must agree; `label` names the round in failures.
 */
const supersedeRound = (executor: Executor.Executor<unknown, unknown>, label: string) =>
  Effect.gen(function*() {
    const gate = yield* Deferred.make<void>()
    let bRan = false
    yield* executor.submit(Deferred.await(gate))
    const b = yield* executor.submit(Effect.sync(() => {
      bRan = true
    }))
    const superseder = yield* Effect.forkChild(
      Effect.gen(function*() {
        const c = yield* executor.submit(Effect.void)
        yield* b.cancel
        return c
      }),
      { startImmediately: true }
    )
    yield* Deferred.succeed(gate, undefined)
    yield* settleFibers
    assert.isDefined(superseder.pollUnsafe(), `${label}: the superseder was resumed and went on`)
    const c = yield* Fiber.join(superseder)
    const bOutcome = (yield* b.poll)!
    assert.strictEqual(bOutcome.kind, "cancelled", `${label}: B is cancelled before its fiber was forked`)
    assert.isFalse(bRan, `${label}: a task cancelled before it started never runs`)
    assert.strictEqual(bOutcome.attempts, 0, label)
    assert.strictEqual((yield* c.poll)?.kind, "success", `${label}: C starts once the slot is free`)
  })

describe("a submitter resumed by the executor", () => {
  it.effect("I1 I3 supersedes the task admitted ahead of it after a batch's function threw: a cancelled task never runs", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 1 })
      const outcomes = yield* Stream.runCollect(executor.run([1, 2], (n) => {
        if (n === 1) throw new Error("no task for 1")
        return Effect.succeed(n)
      }))
      assert.deepStrictEqual(outcomes.map((o) => [o.kind, o.attempts]), [["defect", 0], ["success", 1]])
      yield* supersedeRound(executor, "after the defect")
    }))

  it.effect("I1 I3 supersedes the task admitted ahead of it, round after round: a task cancelled before its fork never runs", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 1 })
      for (const round of ["first", "second", "third"]) yield* supersedeRound(executor, `${round} round`)
      const stats = yield* executor.stats
      assertLedger(stats)
      assert.strictEqual(stats.finished, 9)
    }))

  it.effect("I1 I3 I10 cancels the task it superseded: a task reported cancelled never ran, and its slot is reused", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 1, finalizerTimeout: "1 hour" })
      const gate = yield* Deferred.make<void>()
      let bRan = false
      let cRan = false
      yield* executor.submit(Deferred.await(gate))
      const b = yield* executor.submit(Effect.sync(() => {
        bRan = true
      }))
      // Waits for room (the queue holds B), then cancels B, which C supersedes.
      const superseder = yield* Effect.forkChild(
        Effect.gen(function*() {
          const c = yield* executor.submit(Effect.sync(() => {
            cRan = true
          }))
          yield* b.cancel
          return c
        }),
        { startImmediately: true }
      )
      yield* Deferred.succeed(gate, undefined)
      yield* settleFibers
      const c = yield* Fiber.join(superseder)
      const bOutcome = (yield* b.poll)!
      assert.isDefined(bOutcome)
      assert.strictEqual(bRan, bOutcome.attempts > 0, "B ran if and only if its outcome counts an attempt")
      if (bOutcome.kind === "cancelled") assert.isFalse(bRan, "a task cancelled before it started never runs")
      assert.strictEqual((yield* c.poll)?.kind, "success", "C starts once the slot is free")
      assert.isTrue(cRan)
      const stats = yield* executor.stats
      assertLedger(stats)
      assert.strictEqual(stats.running, 0)
      assert.strictEqual(stats.finished, 3)
      // Nothing holds a slot: a cancel shutdown ends without waiting for the finalizer timeout.
      yield* assertCancelShutdownIsImmediate(executor)
    }))

  it.effect("I1 I15 cancels a task that is being cancelled: one outcome, and the ledger adds up", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 1, pile: "unbounded" })
      yield* executor.submit(Effect.never)
      const b = yield* executor.submit(Effect.never)
      const superseder = yield* Effect.forkChild(
        Effect.gen(function*() {
          yield* executor.submit(Effect.succeed("c"))
          yield* b.cancel
        }),
        { startImmediately: true }
      )
      yield* b.cancel
      yield* Fiber.join(superseder)
      const stats = yield* executor.stats
      assertLedger(stats)
      assert.strictEqual(stats.accepted, 3)
      yield* executor.shutdown({ mode: "cancel" })
      const outcomes = yield* Stream.runCollect(executor.pile)
      assert.deepStrictEqual(outcomes.filter((o) => o.id === b.id).map((o) => o.kind), ["cancelled"])
      assert.strictEqual(outcomes.length, 3)
      assertLedger(yield* executor.stats)
    }))
})

describe("an outcome waiter resumed by the executor", () => {
  it.effect("I13 resubmits when a sliding queue evicts its task: the queue never holds more than its capacity", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, capacity: 1, strategy: "sliding" })
      yield* executor.submit(Effect.never)
      const v = yield* executor.submit(Effect.succeed("v"))
      const resubmitter = yield* Effect.forkChild(
        Effect.gen(function*() {
          yield* v.outcome
          return yield* executor.submit(Effect.succeed("again"))
        }),
        { startImmediately: true }
      )
      const n = yield* executor.submit(Effect.succeed("n"))
      const again = yield* Fiber.join(resubmitter)
      const stats = yield* executor.stats
      assertLedger(stats)
      assert.isAtMost(stats.queued, 1)
      assert.isAtMost(stats.peakQueued, 1)
      assert.strictEqual((yield* v.poll)?.kind, "evicted")
      // Of the two later submissions, the later one evicted the other.
      const kinds = [(yield* n.poll)?.kind, (yield* again.poll)?.kind]
      assert.strictEqual(kinds.filter((k) => k === "evicted").length, 1)
      assert.strictEqual(kinds.filter((k) => k === undefined).length, 1)
    }))
})

describe("a batch whose consumer stops reading", () => {
  it.effect("I5 I14 Stream.take: no task of the batch is live when the stream returns, and none starts after", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 2, capacity: 4 })
      let live = 0
      let started = 0
      const work = (n: number) =>
        Effect.acquireUseRelease(
          Effect.sync(() => {
            live++
            started++
          }),
          () => Effect.as(Effect.sleep(20), n),
          () => Effect.andThen(Effect.sleep(10), Effect.sync(() => live--))
        )
      const first = yield* Effect.forkChild(
        Stream.runCollect(Stream.take(executor.run(Stream.iterate(0, (n) => n + 1), work), 1)),
        { startImmediately: true }
      )
      for (let i = 0; i < 10 && first.pollUnsafe() === undefined; i++) yield* TestClock.adjust(10)
      const values = yield* Fiber.join(first)
      assert.strictEqual(values.length, 1)
      assert.strictEqual(live, 0, "no body of the batch is live when the stream returns")
      const before = started
      yield* TestClock.adjust(1000)
      assert.strictEqual(started, before, "no task of the batch starts after the stream returned")
      const stats = yield* executor.stats
      assertLedger(stats)
      assert.strictEqual(stats.running + stats.queued + stats.waiting, 0)
    }))

  it.effect("I10 I14 runHead of a batch with the default options: the executor goes on afterwards", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make({ finalizerTimeout: "1 hour" })
      const head = yield* Effect.forkChild(
        Stream.runHead(executor.run(Array.from({ length: 1000 }, (_, i) => i), firstAtOnce)),
        { startImmediately: true }
      )
      for (let i = 0; i < 5 && head.pollUnsafe() === undefined; i++) yield* TestClock.adjust(1)
      const first = yield* Fiber.join(head)
      assert.isTrue(Option.isSome(first) && first.value.input === 0 && first.value.kind === "success")
      const later = yield* executor.submit(Effect.succeed("later"))
      yield* settleFibers
      assert.strictEqual((yield* later.poll)?.kind, "success")
      const stats = yield* executor.stats
      assertLedger(stats)
      assert.strictEqual(stats.running, 0)
      yield* assertCancelShutdownIsImmediate(executor)
    }))

  it.effect("I14 an interrupted consumer of a batch with a buffer of one never blocks a later submit", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1 })
      const consumer = yield* Effect.forkChild(
        Stream.runDrain(
          Stream.tap(
            executor.run([1, 2, 3, 4], (n) => Effect.as(Effect.sleep(10), n), { buffer: 1 }),
            () => Effect.never
          )
        ),
        { startImmediately: true }
      )
      yield* TestClock.adjust(100)
      yield* Fiber.interrupt(consumer)
      const later = yield* executor.submit(Effect.succeed("later"))
      yield* TestClock.adjust(100)
      yield* settleFibers
      assert.strictEqual((yield* later.poll)?.kind, "success")
      assertLedger(yield* executor.stats)
    }))
})

describe("shutdown", () => {
  it.effect("a negative grace fails with InvalidOption instead of draining", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const error = yield* Effect.flip(executor.shutdown({ mode: "cancel", grace: -1 }))
      assert.strictEqual(error.reason._tag, "InvalidOption")
      assert.strictEqual((yield* executor.stats).phase, "open", "a refused request shuts nothing down")
    }))
})
