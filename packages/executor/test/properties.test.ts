// Property suites: random task mixes, random executor shapes, random cancels and shutdown points, on TestClock.
// fast-check shrinks a failure to a minimal program and prints its seed; the number of runs is fixed.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Ref, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import * as Executor from "../src/Executor.ts"
import type * as Outcome from "../src/Outcome.ts"
import { assertLedger, engineOf, liveFibers, runs } from "./support.ts"

type Behaviour = "succeed" | "fail" | "die" | "interrupt" | "never" | "stuckFinalizer"

interface TaskSpec {
  readonly behaviour: Behaviour
  readonly delay: number
  /** Cancel this task through its handle at this time, if set. */
  readonly cancelAt: number | undefined
}

interface Program {
  readonly concurrency: number
  readonly capacity: number
  readonly strategy: "suspend" | "dropping" | "sliding"
  readonly tasks: ReadonlyArray<TaskSpec>
  readonly shutdownAt: number
  readonly mode: "drain" | "cancel"
  readonly grace: number
}

const taskSpec: fc.Arbitrary<TaskSpec> = fc.record({
  behaviour: fc.constantFrom<Behaviour>("succeed", "succeed", "fail", "die", "interrupt", "never", "stuckFinalizer"),
  delay: fc.integer({ min: 0, max: 20 }),
  cancelAt: fc.option(fc.integer({ min: 0, max: 40 }), { nil: undefined })
})

const program: fc.Arbitrary<Program> = fc.record({
  concurrency: fc.integer({ min: 1, max: 4 }),
  capacity: fc.integer({ min: 1, max: 6 }),
  strategy: fc.constantFrom("suspend", "suspend", "dropping", "sliding"),
  tasks: fc.array(taskSpec, { maxLength: 14 }),
  shutdownAt: fc.integer({ min: 0, max: 50 }),
  mode: fc.constantFrom("drain", "cancel"),
  grace: fc.integer({ min: 0, max: 30 })
})

const FINALIZER_TIMEOUT = 25

const body = (spec: TaskSpec, index: number): Effect.Effect<number, string> => {
  const wait = Effect.sleep(spec.delay)
  switch (spec.behaviour) {
    case "succeed":
      return Effect.as(wait, index)
    case "fail":
      return Effect.andThen(wait, Effect.fail(`fail ${index}`))
    case "die":
      return Effect.andThen(wait, Effect.die(`die ${index}`))
    case "interrupt":
      return Effect.andThen(wait, Effect.interrupt)
    case "never":
      return Effect.never
    case "stuckFinalizer":
      return Effect.ensuring(Effect.never, Effect.sleep(1000))
  }
}

/** Which outcome kinds a task may end with, given what it does and what was done to it. */
const allowedKinds = (spec: TaskSpec): ReadonlyArray<Outcome.Kind> => {
  const stopped: Array<Outcome.Kind> = ["interrupted", "dropped", "evicted"]
  if (spec.cancelAt !== undefined) stopped.push("cancelled")
  switch (spec.behaviour) {
    case "succeed":
      return ["success", ...stopped]
    case "fail":
      return ["failure", ...stopped]
    case "die":
      return ["defect", ...stopped]
    default:
      return stopped
  }
}

/** Runs a program; returns what the oracle needs. */
const runProgram = (p: Program) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const executor = yield* Executor.make<number, string>({
      concurrency: p.concurrency,
      capacity: p.capacity,
      strategy: p.strategy,
      finalizerTimeout: FINALIZER_TIMEOUT,
      shutdown: { mode: p.mode, grace: p.grace },
      pile: "unbounded" // the reader starts after the first submits: it must see every outcome
    }).pipe(Scope.provide(scope))
    const handles = yield* Ref.make(new Map<number, number>()) // task id -> spec index
    const closedSubmits = yield* Ref.make(0)
    // Submit from a forked fiber: with a small queue, submits wait, and shutdown may overtake them.
    const submitter = yield* Effect.forkChild(Effect.forEach(p.tasks, (spec, index) =>
      Effect.matchEffect(executor.submit(body(spec, index)), {
        onFailure: () => Ref.update(closedSubmits, (n) => n + 1),
        onSuccess: (handle) =>
          Effect.andThen(
            Ref.update(handles, (m) => new Map(m).set(handle.id, index)),
            spec.cancelAt === undefined
              ? Effect.void
              : Effect.asVoid(Effect.forkChild(Effect.andThen(Effect.sleep(spec.cancelAt), handle.cancel)))
          )
      }), { discard: true }))
    const reader = yield* Effect.forkChild(Stream.runCollect(executor.pile))
    const shutdown = yield* Effect.forkChild(Effect.andThen(Effect.sleep(p.shutdownAt), Scope.close(scope, Exit.void)))
    for (let t = 0; t < 200; t++) {
      yield* TestClock.adjust(1)
      assertLedger(yield* executor.stats)
    }
    yield* Fiber.join(shutdown)
    yield* Fiber.join(submitter)
    const outcomes = yield* Fiber.join(reader)
    return {
      outcomes,
      handles: yield* Ref.get(handles),
      closedSubmits: yield* Ref.get(closedSubmits),
      stats: yield* executor.stats,
      live: liveFibers(executor),
      engineFibers: engineOf(executor).fibers.size,
      abandoned: Array.from(engineOf(executor).fibers.abandonedFibers).filter((f) =>
        f.pollUnsafe() === undefined
      ).length
    }
  })

const check = (p: Program) =>
  Effect.runPromise(runProgram(p).pipe(Effect.provide(TestClock.layer()))).then((r) => {
    // I1: the delivered ids are exactly the accepted ids, each once.
    const delivered = r.outcomes.map((o) => o.id).sort((a, b) => a - b)
    const accepted = Array.from(r.handles.keys()).sort((a, b) => a - b)
    assert.deepStrictEqual(delivered, accepted, "every accepted task is delivered exactly once")
    assert.strictEqual(accepted.length + r.closedSubmits, p.tasks.length, "every submit was accepted or refused")
    for (const outcome of r.outcomes) {
      const spec = p.tasks[r.handles.get(outcome.id)!]!
      assert.include(allowedKinds(spec), outcome.kind, `task ${outcome.id} (${spec.behaviour})`)
      assert.isAtMost(outcome.attempts, 1)
    }
    // I5: nothing the executor forked is alive once its scope has closed.
    // The only exception: fibers stuck in a finalizer past finalizerTimeout, given up and reported (I8).
    assert.deepStrictEqual(r.live, [], "no live fiber after close")
    assert.strictEqual(r.engineFibers, 0)
    assert.strictEqual(r.abandoned, r.stats.abandoned, "every fiber still alive is reported as abandoned")
    const stuck = p.tasks.filter((t) => t.behaviour === "stuckFinalizer").length
    assert.isAtMost(r.stats.abandoned, stuck, "only tasks with a stuck finalizer are ever abandoned")
    // I15, I7/I8: the executor is closed with nothing left queued or running.
    assertLedger(r.stats)
    assert.strictEqual(r.stats.phase, "closed")
    assert.strictEqual(r.stats.queued + r.stats.running + r.stats.waiting, 0)
    return true
  })

describe("properties", () => {
  it(
    "I1 every accepted task yields exactly one outcome, and I5 nothing outlives the executor (random programs)",
    async () => {
      await fc.assert(fc.asyncProperty(program, check), { numRuns: runs(300) })
    },
    120_000
  )
})
