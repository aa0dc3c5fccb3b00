// Export the executor's metrics as Prometheus text with Effect's PrometheusMetrics.
// Run: pnpm exec node docs/examples/prometheus.ts (serve `PrometheusMetrics.format()` on your /metrics route).
import { Executor } from "@pile/executor"
import { Effect, Stream } from "effect"
import { PrometheusMetrics } from "effect/observability"
import assert from "node:assert/strict"

const program = Effect.gen(function*() {
  const executor = yield* Executor.make({ name: "crawler", concurrency: 4 })
  yield* Stream.runDrain(executor.run([1, 2, 3, 4], (n) => n === 3 ? Effect.fail("404") : Effect.succeed(n)))
  yield* executor.shutdown()
  const text = yield* PrometheusMetrics.format()
  assert.match(text, /pile_task_outcomes_total\{executor="crawler",outcome="success"\} 3/)
  console.log(text.split("\n").filter((line) => line.startsWith("pile_task_outcomes_total")).join("\n"))
}).pipe(Effect.scoped)

Effect.runPromise(program)
