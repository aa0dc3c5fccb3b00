// The first program of a project of your own (getting started, "A project of your own"): an executor whose
// limits come from the environment, a batch under them, every result in input order.
// Run: pnpm exec node docs/examples/own-project.ts (in your project: npx tsc && node dist/main.js)
import { Executor, Pile } from "@pile/executor"
import { Config, Effect } from "effect"
import assert from "node:assert/strict"

// The work: a slow square. The smaller n, the longer it takes, so the tasks finish out of order.
const square = (n: number) => Effect.succeed(n * n).pipe(Effect.delay(`${10 * (5 - n)} millis`))

// The executor's options, read from the environment when the layer is built: PILE_CONCURRENCY=8 node ...
const ExecutorLive = Executor.layerConfig({
  concurrency: Config.Int("PILE_CONCURRENCY").pipe(Config.withDefault(2)),
  capacity: Config.Int("PILE_CAPACITY").pipe(Config.withDefault(100))
})

const program = Effect.gen(function*() {
  const executor = yield* Executor.Executor
  // The batch form: square on every input, at most `concurrency` at once; collect gives input order.
  const squares = yield* Pile.collect(executor.run([1, 2, 3, 4], square))
  assert.deepEqual(squares, [1, 4, 9, 16])
  return `squares ${squares.join(" ")} (concurrency ${(yield* executor.stats).concurrency})`
})

console.log(await Effect.runPromise(program.pipe(Effect.provide(ExecutorLive))))
