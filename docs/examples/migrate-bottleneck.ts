// From Bottleneck: maxConcurrent + minTime + a per-key Group + weights, as one executor.
// Run: pnpm exec node docs/examples/migrate-bottleneck.ts
import { Executor, Pile } from "@pile/executor"
import { Clock, Effect } from "effect"
import assert from "node:assert/strict"

interface Job {
  readonly customer: string
  readonly weight: number
}

const program = Effect.gen(function*() {
  // new Bottleneck({ maxConcurrent: 2, minTime: 20, highWater: 100, strategy: Bottleneck.strategy.OVERFLOW })
  // + new Bottleneck.Group({ reservoir: ... }) per customer, + { weight } per job
  const executor = yield* Executor.make({
    concurrency: 2, // maxConcurrent (counts tasks; weights are a separate budget below)
    capacity: 100, // highWater
    strategy: "dropping", // OVERFLOW: a job that finds the queue full is dropped, with a "dropped" outcome
    limits: [
      { limit: 50, window: "1 second", algorithm: "gcra", burst: 1 }, // minTime: 20 ms between starts
      { perKey: true, budget: "weight", limit: 100, window: "1 minute" } // a Group: 100 weight per customer per minute
    ]
  })
  const jobs: ReadonlyArray<Job> = [
    { customer: "acme", weight: 10 },
    { customer: "acme", weight: 30 },
    { customer: "globex", weight: 20 }
  ]
  // limiter.schedule({ weight }, () => work(job)), for every job, results in input order
  const starts = yield* Pile.collect(
    executor.run(jobs, () => Clock.currentTimeMillis, {
      key: (job) => job.customer,
      cost: (job) => ({ weight: job.weight })
    })
  )
  assert.equal(starts.length, 3)
  // minTime: starts at least 20 ms apart.
  assert.ok(starts[1]! - starts[0]! >= 19 && starts[2]! - starts[1]! >= 19, `starts: ${starts}`)
}).pipe(Effect.scoped)

await Effect.runPromise(program)
console.log("Bottleneck migration: spacing, per-key budgets and weights in one executor")
