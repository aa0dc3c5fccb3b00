// Testing code that uses the executor with TestClock: virtual time drives the task delays, the rate limits
// and the retries, so a test of minutes of work runs in milliseconds and always gives the same result.
// Run: pnpm exec node docs/examples/testing.ts (in a vitest suite, `it.effect` provides TestClock for you).
import { ErrorPolicy, Executor, Pile } from "@pile/executor"
import { Clock, Effect, Fiber, Schedule } from "effect"
import { TestClock } from "effect/testing"
import assert from "node:assert/strict"

// The code under test: fetch every id at most 2 per second, retrying failures every 10 seconds.
const fetchAll = (
  executor: Executor.Executor,
  ids: ReadonlyArray<number>,
  fetch: (id: number) => Effect.Effect<string, string>
) => Pile.collect(executor.run(ids, fetch))

const test = Effect.gen(function*() {
  const executor = yield* Executor.make({
    limits: [{ limit: 2, window: "1 second" }],
    policy: ErrorPolicy.retry(Schedule.spaced("10 seconds").pipe(Schedule.upTo({ times: 3 }))),
    // Gotcha: closing the scope drains, and a drain waits on the virtual clock. Tests cancel instead (or
    // let every task finish before the scope closes).
    shutdown: { mode: "cancel" }
  })
  const starts: Array<number> = []
  let failedOnce = false
  const fetch = (id: number) =>
    Effect.gen(function*() {
      starts.push(yield* Clock.currentTimeMillis)
      if (id === 3 && !failedOnce) {
        failedOnce = true
        return yield* Effect.fail("503")
      }
      return yield* Effect.as(Effect.sleep("100 millis"), `page ${id}`)
    })
  // Run the code under test in a fiber, then move the virtual clock forward.
  const fiber = yield* Effect.forkChild(fetchAll(executor, [1, 2, 3, 4], fetch))
  yield* TestClock.adjust("1 minute")
  const pages = yield* Fiber.join(fiber)
  assert.deepEqual(pages, ["page 1", "page 2", "page 3", "page 4"])
  // Two starts per second: 1 and 2 at 0 ms, 3 (fails) and 4 at 1 s, 3's retry 10 s after its failure.
  assert.deepEqual(starts, [0, 0, 1000, 1000, 11000])
}).pipe(Effect.scoped, Effect.provide(TestClock.layer()))

await Effect.runPromise(test)
console.log("testing: one virtual minute in a few milliseconds")
