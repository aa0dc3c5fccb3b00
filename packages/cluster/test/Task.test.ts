import { assert, describe, it } from "@effect/vitest"
import { Task } from "@pile/cluster"
import { ErrorPolicy, Executor, Outcome, Pile } from "@pile/executor"
import { Cause, Deferred, Effect, Exit, Layer, Schedule, Schema, Scope, Stream } from "effect"
import {
  MessageStorage,
  RunnerHealth,
  Runners,
  RunnerStorage,
  Sharding,
  ShardingConfig,
  TestRunner
} from "effect/cluster"

// The logic on Effect Cluster's TestRunner: Sharding in memory, messages and replies stored in memory (and
// serialized as between machines). Real time: the cluster's own loops run on it.

class NotFound extends Schema.TaggedError<NotFound>()("NotFound", { id: Schema.Number }) {}

const Lookup = Task.make("Lookup", {
  input: Schema.Struct({ n: Schema.Number }),
  success: Schema.String,
  error: NotFound,
  id: (input) => `lookup-${input.n}`,
  entities: 4
})

/** A runner serving `Lookup` with `f`, counting the executions per input. */
const runner = (
  f: (n: number) => Effect.Effect<string, NotFound>,
  options?: { readonly concurrency?: number; readonly policy?: ErrorPolicy.ErrorPolicy<NotFound> }
) => {
  const runs = new Map<number, number>()
  const layer = Task.toLayer(Lookup, ({ n }) =>
    Effect.suspend(() => {
      runs.set(n, (runs.get(n) ?? 0) + 1)
      return f(n)
    }), { policy: options?.policy }).pipe(
      Layer.provide(Executor.layer({ concurrency: options?.concurrency ?? 8 })),
      Layer.provideMerge(TestRunner.layer)
    )
  return { runs, layer }
}

const inputs = (count: number) => Array.from({ length: count }, (_, i) => ({ n: i + 1 }))

describe("Task.run", () => {
  it.live("gives one outcome per input, as one machine does: success, typed failure, defect", () => {
    const { layer } = runner((n) =>
      n % 3 === 0 ? Effect.fail(new NotFound({ id: n })) : n % 5 === 0 ? Effect.die("boom") : Effect.succeed(`v${n}`)
    )
    return Effect.gen(function*() {
      const outcomes = yield* Stream.runCollect(Task.run(Lookup, inputs(15)))
      assert.deepEqual(outcomes.map((o) => o.input.n).sort((a, b) => a - b), inputs(15).map((i) => i.n))
      const kindOf = new Map(outcomes.map((o) => [o.input.n, o.kind]))
      assert.equal(kindOf.get(1), "success")
      assert.equal(kindOf.get(3), "failure")
      assert.equal(kindOf.get(5), "defect")
      const three = outcomes.find((o) => o.input.n === 3)!
      assert.ok(Exit.isFailure(three.exit))
      const error = Cause.findErrorOption(three.exit.cause)
      assert.ok(error._tag === "Some" && error.value instanceof NotFound && error.value.id === 3)
      const one = outcomes.find((o) => o.input.n === 1)!
      assert.ok(Outcome.isSuccess(one) && one.exit.value === "v1")
      assert.deepEqual(outcomes.map((o) => o.id).sort((a, b) => a - b), Array.from({ length: 15 }, (_, i) => i))
    }).pipe(Effect.provide(layer))
  })

  it.live("running a batch again returns the stored replies and runs nothing again", () => {
    const { layer, runs } = runner((n) => Effect.succeed(`v${n}`))
    return Effect.gen(function*() {
      const first = yield* Pile.collect(Task.run(Lookup, inputs(20)))
      const second = yield* Pile.collect(Task.run(Lookup, inputs(30)))
      assert.equal(first.length, 20)
      assert.equal(second.length, 30)
      assert.equal(runs.size, 30)
      assert.ok([...runs.values()].every((count) => count === 1))
    }).pipe(Effect.provide(layer))
  })

  it.live("two inputs with one id are one message, run once", () => {
    const { layer, runs } = runner((n) => Effect.succeed(`v${n}`))
    return Effect.gen(function*() {
      const outcomes = yield* Stream.runCollect(Task.run(Lookup, [{ n: 7 }, { n: 7 }, { n: 8 }]))
      assert.equal(outcomes.length, 3)
      assert.equal(runs.get(7), 1)
      assert.equal(runs.get(8), 1)
    }).pipe(Effect.provide(layer))
  })

  it.live("the runner's executor caps the messages running at once", () => {
    let running = 0
    let peak = 0
    const { layer } = runner(
      (n) =>
        Effect.acquireUseRelease(
          Effect.sync(() => {
            running++
            peak = Math.max(peak, running)
          }),
          () => Effect.as(Effect.sleep("5 millis"), `v${n}`),
          () => Effect.sync(() => running--)
        ),
      { concurrency: 3 }
    )
    return Effect.gen(function*() {
      const outcomes = yield* Pile.collect(Task.run(Lookup, inputs(30)))
      assert.equal(outcomes.length, 30)
      assert.equal(peak, 3)
    }).pipe(Effect.provide(layer))
  })

  it.live("the runner's error policy retries, and the outcome counts the attempts", () => {
    const { layer, runs } = runner(
      (n) => (n === 2 ? Effect.fail(new NotFound({ id: n })) : Effect.succeed(`v${n}`)),
      { policy: ErrorPolicy.retry(Schedule.recurs(2)) }
    )
    return Effect.gen(function*() {
      const outcomes = yield* Stream.runCollect(Task.run(Lookup, inputs(3)))
      const two = outcomes.find((o) => o.input.n === 2)!
      assert.equal(two.kind, "failure")
      assert.equal(two.attempts, 3)
      assert.equal(runs.get(2), 3)
      assert.equal(outcomes.find((o) => o.input.n === 1)!.attempts, 1)
    }).pipe(Effect.provide(layer))
  })

  it.live("reads a stream of inputs and emits in completion order", () => {
    const { layer } = runner((n) => Effect.as(Effect.sleep(`${(6 - n) * 20} millis`), `v${n}`))
    return Effect.gen(function*() {
      const outcomes = yield* Stream.runCollect(Task.run(Lookup, Stream.fromIterable(inputs(5))))
      assert.deepEqual(outcomes.map((o) => o.input.n), [5, 4, 3, 2, 1])
    }).pipe(Effect.provide(layer))
  })
})

describe("Task.toLayer", () => {
  it.live("a message stopped by its runner's shutdown gets no reply, and the next runner runs it again", () =>
    Effect.gen(function*() {
      // One message storage, two runners one after the other (as after a restart, or on another machine).
      const storage = yield* Layer.build(MessageStorage.layerMemory.pipe(Layer.provide(ShardingConfig.layer())))
      const started = yield* Deferred.make<void>()
      const runs: Array<string> = []
      const runnerWith = (name: string, f: (n: number) => Effect.Effect<string, NotFound>) =>
        Task.toLayer(Lookup, ({ n }) => Effect.andThen(Effect.sync(() => runs.push(name)), f(n))).pipe(
          Layer.provide(Executor.layer({ concurrency: 2 })),
          Layer.provideMerge(Sharding.layer),
          Layer.provide([Runners.layerNoop, RunnerStorage.layerMemory, RunnerHealth.layerNoop]),
          Layer.provide(ShardingConfig.layer({ entityTerminationTimeout: "100 millis" })),
          Layer.provide(Layer.succeedContext(storage))
        )

      // The first runner starts the message and shuts down before it ends.
      const first = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        runnerWith("first", () => Effect.andThen(Deferred.succeed(started, undefined), Effect.never)),
        first
      )
      yield* Stream.runDrain(Task.run(Lookup, [{ n: 1 }])).pipe(Effect.provideContext(context), Effect.forkChild)
      yield* Deferred.await(started)
      yield* Scope.close(first, Exit.void)

      // The second runner finds the message unanswered and runs it; the batch gets its outcome.
      const outcomes = yield* Stream.runCollect(Task.run(Lookup, [{ n: 1 }])).pipe(
        Effect.provide(runnerWith("second", (n) => Effect.succeed(`v${n}`)))
      )
      assert.deepEqual(runs, ["first", "second"])
      assert.equal(outcomes.length, 1)
      assert.equal(outcomes[0]!.kind, "success")
    }))
})

describe("Task.make", () => {
  it("refuses a number of entities that is not a positive integer", () => {
    assert.throws(() => Task.make("Bad", { input: Schema.Number, success: Schema.Number, id: String, entities: 0 }))
  })
})
