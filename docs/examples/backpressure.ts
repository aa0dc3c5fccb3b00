// Backpressure, end to end: submit waits while the queue is full, trySubmit refuses, the dropping and sliding
// strategies give their victims an outcome, and a slow Pile consumer slows the executor down.
// Run: pnpm exec node docs/examples/backpressure.ts
import { Executor } from "@pile/executor"
import { Effect, Fiber, Stream } from "effect"
import assert from "node:assert/strict"

// 1. submit suspends while the queue is full, and resumes when a place frees up.
const suspending = Effect.gen(function*() {
  const executor = yield* Executor.make({ concurrency: 1, capacity: 1 })
  const running = yield* executor.submit(Effect.never) // takes the only slot
  yield* Effect.yieldNow // the dispatcher starts it
  yield* executor.submit(Effect.succeed("queued")) // takes the only place in the queue
  const blocked = yield* Effect.forkChild(executor.submit(Effect.succeed("third")))
  yield* Effect.yieldNow
  assert.equal((yield* executor.stats).blockedSubmitters, 1) // the third submit waits
  yield* running.cancel // frees the slot: "queued" starts, its place goes to the waiting submitter
  const third = yield* Fiber.join(blocked)
  assert.equal(yield* third.join, "third")
  // 2. trySubmit never waits: a full queue fails with QueueFull.
  yield* executor.submit(Effect.never)
  yield* Effect.yieldNow
  yield* executor.submit(Effect.never)
  const refused = yield* Effect.flip(executor.trySubmit(Effect.void))
  assert.equal(refused.reason._tag, "QueueFull")
  yield* executor.shutdown({ mode: "cancel" })
})

// 3. dropping: the new task is accepted and ends at once as "dropped". sliding: the oldest queued task is
// evicted ("evicted") to make room. Either way every accepted task has an outcome.
const dropping = Effect.gen(function*() {
  const executor = yield* Executor.make({ concurrency: 1, capacity: 1, strategy: "dropping" })
  yield* executor.submit(Effect.never)
  yield* Effect.yieldNow
  const older = yield* executor.submit(Effect.succeed("older")) // queued
  const newer = yield* executor.submit(Effect.succeed("newer")) // the queue is full: never waits
  assert.deepEqual([(yield* newer.outcome).kind, (yield* newer.outcome).attempts], ["dropped", 0])
  assert.equal(yield* older.poll, undefined) // still queued
  yield* executor.shutdown({ mode: "cancel" })
})

const sliding = Effect.gen(function*() {
  const executor = yield* Executor.make({ concurrency: 1, capacity: 1, strategy: "sliding" })
  yield* executor.submit(Effect.never)
  yield* Effect.yieldNow
  const older = yield* executor.submit(Effect.succeed("older")) // queued
  const newer = yield* executor.submit(Effect.succeed("newer")) // takes the older task's place
  assert.deepEqual([(yield* older.outcome).kind, (yield* older.outcome).attempts], ["evicted", 0])
  assert.equal(yield* newer.poll, undefined) // queued
  yield* executor.shutdown({ mode: "cancel" })
})

// 4. A slow consumer: the batch's buffer holds one unread outcome; finished tasks whose outcome does not fit
// keep their concurrency slots, so the rest of the batch waits instead of running ahead.
const slowConsumer = Effect.gen(function*() {
  const executor = yield* Executor.make({ concurrency: 2 })
  const queuedAtFirst: Array<number> = []
  yield* executor.run([1, 2, 3, 4, 5, 6], (n) => Effect.succeed(n), { buffer: 1 }).pipe(
    Stream.runForEach((outcome) =>
      Effect.gen(function*() {
        if (outcome.input === 1) queuedAtFirst.push((yield* executor.stats).queued)
        yield* Effect.sleep("5 millis") // a slow consumer
      })
    )
  )
  // Tasks 2 and 3 finished and held both slots while the consumer had not read task 1's outcome; taking it moved
  // task 2's outcome into the buffer, which freed one slot (task 4 started): 5 and 6 were still waiting.
  assert.deepEqual(queuedAtFirst, [2])
})

await Effect.runPromise(Effect.scoped(suspending))
await Effect.runPromise(Effect.scoped(dropping))
await Effect.runPromise(Effect.scoped(sliding))
await Effect.runPromise(Effect.scoped(slowConsumer))
console.log("backpressure: submit waited, trySubmit refused, dropped and evicted tasks had outcomes")
