// From Effect.forEach: the same work with { concurrency: 4 }, before and after. Effect.forEach stops at the
// first failure and interrupts the others; the executor runs everything and reports every failure.
// Run: pnpm exec node docs/examples/migrate-effect-foreach.ts
import { Executor, Pile } from "@pile/executor"
import { Effect, Stream } from "effect"
import assert from "node:assert/strict"

const ids = [1, 2, 3, 4, 5, 6]
let finished = 0
const work = (id: number): Effect.Effect<number, string> =>
  id % 3 === 0
    ? Effect.fail(`bad input ${id}`)
    : Effect.sync(() => (finished++, id * 10)).pipe(Effect.delay("5 millis"))

// Before: fail-fast. The first failure wins; the siblings still running are interrupted.
const before = Effect.forEach(ids, work, { concurrency: 4 })

// After: the same call shape, under the executor's limits; every input runs, every failure is reported.
const after = Effect.gen(function*() {
  const executor = yield* Executor.make({ concurrency: 4 })
  return yield* Pile.collect(executor.run(ids, work))
}).pipe(Effect.scoped)

// Before: Stream.mapEffect((id) => Effect.exit(work(id)), { concurrency: 4, unordered: true }) to see each
// result as it completes. After: the batch's Pile, each outcome with its input.
const asTheyComplete = Effect.gen(function*() {
  const executor = yield* Executor.make({ concurrency: 4 })
  return yield* Stream.runCollect(executor.run(ids, work))
}).pipe(Effect.scoped)

const first = await Effect.runPromise(Effect.flip(before))
assert.equal(first, "bad input 3") // only the first failure; 6 was interrupted or never started

finished = 0
const all = await Effect.runPromise(Effect.flip(after))
assert.equal(all._tag, "PileFailures")
assert.equal(all.count, 2) // both failures, with their inputs
assert.deepEqual(all.failures.map((o) => o.input).sort(), [3, 6])
assert.equal(finished, 4) // and every other input ran to the end

const outcomes = await Effect.runPromise(asTheyComplete)
assert.equal(outcomes.length, 6)
console.log("Effect.forEach migration: every input ran, every failure reported")
