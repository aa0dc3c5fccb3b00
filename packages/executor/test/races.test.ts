// Race suites for the hand-off points, each repeated many times with random interleavings (I2, I9).
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option, Random, Ref, Stream } from "effect"
import * as Executor from "../src/Executor.ts"
import { assertLedger, engineOf } from "./support.ts"

const RUNS = 1000

/** Yields a random number of times (0..3), so two forked actions interleave differently on each run. */
const jitter = Effect.flatMap(Random.nextIntBetween(0, 4), (n) => Effect.repeat(Effect.yieldNow, { times: n }))

describe("races", () => {
  it.effect(`I2 an interrupted Pile read removes nothing: each outcome is read exactly once (${RUNS} runs)`, () =>
    Effect.gen(function*() {
      const seen = [0, 0]
      for (let run = 0; run < RUNS; run++) {
        yield* Effect.scoped(Effect.gen(function*() {
          const executor = yield* Executor.make({ shutdown: { mode: "cancel" } })
          const reader = yield* Effect.forkChild(Stream.runHead(executor.pile))
          yield* Effect.yieldNow
          const interrupt = yield* Effect.forkChild(Effect.andThen(jitter, Fiber.interrupt(reader)))
          const submit = yield* Effect.forkChild(Effect.andThen(jitter, executor.submit(Effect.succeed(run))))
          yield* Fiber.join(interrupt)
          const handle = yield* Fiber.join(submit)
          yield* handle.await
          const first = yield* Fiber.await(reader)
          const readFirst = Exit.isSuccess(first) && Option.isSome(first.value) ? 1 : 0
          yield* executor.shutdown({ mode: "cancel" })
          const rest = yield* Stream.runCollect(executor.pile)
          assert.strictEqual(
            readFirst + rest.length,
            1,
            `run ${run}: the outcome was read ${readFirst + rest.length} times`
          )
          seen[readFirst]!++
        }))
      }
      assert.isAbove(seen[0]!, 0, "some runs interrupted the reader before the outcome arrived")
      assert.isAbove(seen[1]!, 0, "some runs delivered the outcome to the reader first")
    }))

  it.effect(`I2 an interrupted submit adds nothing: accepted iff the submitter got a handle (${RUNS} runs)`, () =>
    Effect.gen(function*() {
      const seen = [0, 0]
      for (let run = 0; run < RUNS; run++) {
        yield* Effect.scoped(Effect.gen(function*() {
          const executor = yield* Executor.make({ capacity: 1, concurrency: 1, shutdown: { mode: "cancel" } })
          const runs = yield* Ref.make(0)
          const blocker = yield* executor.submit(Effect.never)
          yield* Effect.yieldNow
          const queued = yield* executor.submit(Effect.never)
          const submitter = yield* Effect.forkChild(executor.submit(Ref.update(runs, (n) => n + 1)))
          yield* Effect.yieldNow
          // Race: freeing the queue's place (which hands it to the waiting submitter) against interrupting it.
          const free = yield* Effect.forkChild(Effect.andThen(jitter, queued.cancel))
          const interrupt = yield* Effect.forkChild(Effect.andThen(jitter, Fiber.interrupt(submitter)))
          yield* Fiber.join(free)
          yield* Fiber.join(interrupt)
          const exit = yield* Fiber.await(submitter)
          const stats = yield* executor.stats
          assertLedger(stats)
          const accepted = stats.accepted - 2
          assert.strictEqual(
            accepted,
            Exit.isSuccess(exit) ? 1 : 0,
            `run ${run}: accepted ${accepted}, exit ${exit._tag}`
          )
          assert.strictEqual(stats.queued, accepted, `run ${run}: the queue holds the task iff it was accepted`)
          // Let the accepted task (if any) run: it must run exactly once.
          yield* blocker.cancel
          yield* executor.shutdown({ mode: "drain", grace: "1 hour" })
          assert.strictEqual(yield* Ref.get(runs), accepted, `run ${run}: the body ran ${yield* Ref.get(runs)} times`)
          seen[accepted]!++
        }))
      }
      assert.isAbove(seen[0]!, 0, "some runs interrupted the submitter first")
      assert.isAbove(seen[1]!, 0, "some runs handed the place to the submitter first")
    }))

  it.effect(`I9 a slot is released exactly once when a cancel races the task's own end (${RUNS} runs)`, () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make({ concurrency: 2, capacity: RUNS, shutdown: { mode: "cancel" } })
      const engine = engineOf(executor)
      for (let run = 0; run < RUNS; run++) {
        const handle = yield* executor.submit(Effect.andThen(jitter, Effect.succeed(run)))
        yield* Effect.andThen(jitter, handle.cancel)
        yield* handle.await
        assert.strictEqual(engine.slots, 0, `run ${run}: ${engine.slots} slots held after the task ended`)
      }
      const stats = yield* executor.stats
      assertLedger(stats)
      assert.strictEqual(stats.finished, RUNS)
      assert.strictEqual(stats.outcomes.success + stats.outcomes.cancelled, RUNS)
    }))

  // Real time: on TestClock the task's timer always fires first (it was set first); real timers race.
  it.live(`I18 a deadline racing the task's own completion: exactly one outcome, never overwritten (${RUNS} runs)`, () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make({ concurrency: 4, capacity: RUNS, shutdown: { mode: "cancel" } })
      const engine = engineOf(executor)
      const seen = { success: 0, timedOut: 0 }
      for (let run = 0; run < RUNS; run++) {
        // The body ends after about 2 ms; the deadline is 2 ms.
        const handle = yield* executor.submit(Effect.as(Effect.sleep(2), run), { deadline: 2 })
        const outcome = yield* handle.outcome
        assert.include(["success", "timedOut"], outcome.kind, `run ${run}`)
        if (outcome.kind === "timedOut") assert.isTrue(Exit.hasInterrupts(outcome.exit))
        seen[outcome.kind as "success" | "timedOut"]++
        yield* Effect.repeat(Effect.yieldNow, { times: 3 })
        assert.strictEqual((yield* handle.outcome).kind, outcome.kind, "a late completion never overwrites the outcome")
        assert.strictEqual(engine.slots, 0, `run ${run}: the slot is released exactly once`)
      }
      const stats = yield* executor.stats
      assertLedger(stats)
      assert.strictEqual(stats.outcomes.success + stats.outcomes.timedOut, RUNS)
      assert.isAbove(seen.success, 0, "some runs completed first")
      assert.isAbove(seen.timedOut, 0, "some runs hit the deadline first")
    }))
})
