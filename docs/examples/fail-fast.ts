// Two ways to fail fast. Per batch: stop reading at the first failed outcome; the batch's remaining tasks are
// cancelled (and awaited) and the executor goes on. Per executor: ErrorPolicy.escalate stops everything and
// raises the failure to the owner, Trio style. Run: pnpm exec node docs/examples/fail-fast.ts
import { ErrorPolicy, Executor, type ExecutorError } from "@pile/executor"
import { Cause, Effect, Stream } from "effect"
import assert from "node:assert/strict"

// Step 1 succeeds at once, step 2 fails at once, steps 3 and 4 would take a second.
const step = (n: number): Effect.Effect<number, string> =>
  n === 1 ? Effect.succeed(n) : n === 2 ? Effect.fail(`step ${n} failed`) : Effect.as(Effect.sleep("1 second"), n)

// 1. Per batch: turn the first failed outcome into the stream's failure.
const perBatch = Effect.gen(function*() {
  const executor = yield* Executor.make({ concurrency: 4 })
  const error = yield* executor.run([1, 2, 3, 4], step).pipe(
    Stream.mapEffect((outcome) => outcome.exit), // an Exit is an Effect: a failed one fails the stream
    Stream.runDrain,
    Effect.flip
  )
  assert.equal(error, "step 2 failed")
  const stats = yield* executor.stats
  assert.equal(stats.outcomes.cancelled, 2) // 3 and 4 were cancelled, not left running
  assert.equal(stats.phase, "open") // the executor is still usable
}).pipe(Effect.scoped)

// 2. Per executor: the first failure escalates; Executor.scoped interrupts the body and fails with it.
const perExecutor = Executor.scoped(
  { concurrency: 4, policy: ErrorPolicy.escalate },
  (executor) =>
    Effect.gen(function*() {
      for (const n of [1, 2, 3, 4]) yield* executor.submit(step(n))
      return yield* Effect.never // interrupted by the escalation
    })
)

await Effect.runPromise(perBatch)
const error = (await Effect.runPromise(Effect.flip(perExecutor))) as ExecutorError.ExecutorError
assert.equal(error.reason._tag, "Escalated")
assert.equal(Cause.squash((error.reason as ExecutorError.Escalated).cause), "step 2 failed")
console.log("fail fast: the batch stopped at its first failure; the executor escalated its first failure")
