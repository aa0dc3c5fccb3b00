// A small end-to-end program until the CLI lands: runs a batch through the executor and prints the outcomes.
import { Executor } from "@pile/executor"
import { Effect, Stream } from "effect"

const program = Effect.gen(function*() {
  const executor = yield* Executor.make({ concurrency: 3 })
  const outcomes = yield* executor.run(
    [1, 2, 3, 4, 5, 6],
    (n) => n % 3 === 0 ? Effect.fail(`input ${n} is divisible by 3`) : Effect.succeed(n * n).pipe(Effect.delay(n * 10))
  ).pipe(Stream.runCollect)
  for (const o of outcomes) console.log(`task ${o.id} input ${o.input}: ${o.kind}`)
  const stats = yield* executor.stats
  console.log(`ok ${stats.outcomes.success}, failed ${stats.outcomes.failure}`)
}).pipe(Effect.scoped)

Effect.runPromise(program)
