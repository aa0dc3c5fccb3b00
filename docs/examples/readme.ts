import { Executor, Pile } from "@pile/executor"
import { Effect, Stream } from "effect"

// A flaky lookup: user 3 does not exist.
const fetchUser = (id: number) =>
  id === 3
    ? Effect.fail(`user ${id} not found`)
    : Effect.succeed({ id, name: `user-${id}` }).pipe(Effect.delay(10 * id))

const program = Effect.gen(function*() {
  const executor = yield* Executor.Executor
  // The batch form: fetchUser on every input, under the executor's limits, outcomes as they complete.
  yield* executor.run([1, 2, 3, 4], fetchUser).pipe(
    Stream.runForEach((outcome) => Effect.log(`user ${outcome.input}: ${outcome.kind}`))
  )
  // Or collect: every value, or one error that holds every failure (it never stops at the first).
  const users = yield* Pile.collect(executor.run([1, 2, 4], fetchUser))
  yield* Effect.log(`${users.length} users`)
})

Effect.runPromise(program.pipe(Effect.provide(Executor.layer({ concurrency: 8, capacity: 1000 }))))
