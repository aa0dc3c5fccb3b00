// One runner of the cluster benchmark, in its own process: node runner.ts <postgres-url> <port> <name> <sleep-ms>
// Serves `Bench` and `BenchWide` through an executor (concurrency 64) whose task waits <sleep-ms> (0: returns at once), and
// prints "ready" once it has joined the cluster.
import { NodeRuntime } from "@effect/platform-node"
import { Cluster, Task } from "@pile/cluster"
import { Executor } from "@pile/executor"
import { Effect, Layer } from "effect"
import { Bench, BenchWide } from "./task.ts"

const [url, port, name, sleep] = process.argv.slice(2)
const sleepMs = Number(sleep)
const work = sleepMs > 0 ? Effect.as(Effect.sleep(sleepMs), name!) : Effect.succeed(name!)

const runner = Layer.mergeAll(Task.toLayer(Bench, () => work), Task.toLayer(BenchWide, () => work)).pipe(
  Layer.provide(Executor.layer({ concurrency: 64, capacity: 64, metrics: false })),
  Layer.provide(Cluster.layerPostgres({ url: url!, runner: { host: "127.0.0.1", port: Number(port) } }))
)

NodeRuntime.runMain(
  Effect.gen(function*() {
    yield* Layer.build(runner)
    yield* Effect.sync(() => process.stdout.write("ready\n"))
    return yield* Effect.never
  }).pipe(Effect.scoped)
)
