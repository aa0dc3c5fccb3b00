/** Pile: the batch form (`executor.run`) and `submit` with handles. */
import { Executor } from "@pile/executor"
import type { Algorithm } from "@pile/executor/RateLimit"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import { type Adapter, range, type RateSpec } from "./adapter.ts"
import { effectTask, effectVoid } from "./adapters-effect.ts"
import type { Settled } from "./pool.ts"

/** Executor options beyond concurrency: none (the defaults), or metrics and tracing turned off. */
type Extra = { readonly metrics?: boolean; readonly tracing?: boolean }

/**
 * The rate scenario: one executor-wide limit (`limits` on `make`), the batch form, tasks that record their
 * start. Concurrency is not the bottleneck (256).
 */
const rateWith = (algorithm: Algorithm) => (spec: RateSpec): Promise<void> =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const executor = yield* Executor.make({
      concurrency: 256,
      pile: "none",
      limits: [{ limit: spec.limit, window: spec.windowMs, algorithm }]
    })
    yield* Stream.runDrain(executor.run(range(spec.n), (i) => Effect.sync(() => spec.onStart(i))))
  })))

/** The inputs 0..n-1 without an array (the memory scenario counts every byte allocated while queueing). */
const upTo = (n: number): Iterable<number> => ({
  [Symbol.iterator]: () => {
    let i = 0
    return { next: () => i < n ? { done: false, value: i++ } : { done: true, value: undefined } }
  }
})

/** The batch form: `executor.run(items, f)`, drained. */
const runAdapter = (id: string, extra: Extra, algorithm: Algorithm = "sliding-window"): Adapter => ({
  id,
  batch: (n, concurrency, work, count) => {
    const items = range(n)
    const task = effectTask(work)
    const settled: Settled = { outcomes: n, failures: 0 }
    const program = Effect.gen(function*() {
      const executor = yield* Executor.make({ concurrency, pile: "none", ...extra })
      const pile = executor.run(items, task)
      if (!count) return yield* Stream.runDrain(pile)
      settled.outcomes = 0
      yield* Stream.runForEachArray(pile, (chunk) =>
        Effect.sync(() => {
          for (const outcome of chunk) {
            settled.outcomes++
            if (outcome.kind !== "success") settled.failures++
          }
        }))
    })
    return Effect.runPromise(Effect.scoped(program)).then(() => settled)
  },
  rate: rateWith(algorithm),
  queue: (n, measure) => {
    // One batch of n + 1 inputs at concurrency 1: the first blocks, the n others wait in the intake.
    const program = Effect.gen(function*() {
      const executor = yield* Executor.make({ concurrency: 1, capacity: n, pile: "none", ...extra })
      const gate = yield* Deferred.make<void>()
      const drained = yield* Effect.forkChild(
        Stream.runDrain(executor.run(upTo(n + 1), (i) => i === 0 ? Deferred.await(gate) : effectVoid))
      )
      // The feeder offers every input synchronously while there is room (yielding every 1,024).
      while ((yield* executor.stats).queued < n) yield* Effect.yieldNow
      const stats = yield* executor.stats
      yield* Effect.promise(() => measure(stats.queued))
      yield* Fiber.interrupt(drained)
      yield* executor.shutdown({ mode: "cancel" })
    })
    return Effect.runPromise(Effect.scoped(program))
  }
})

const pileRun = runAdapter("pile-run", {})
/** The same with the per-task observability turned off: what the defaults cost. */
const pileRunBare = runAdapter("pile-run-bare", { metrics: false, tracing: false })
/** The rate scenario with the GCRA model (even spacing) instead of the default sliding window. */
const pileRunGcra = runAdapter("pile-run-gcra", {}, "gcra")

/** `submit` per task, then await every handle. */
const pileSubmit: Adapter = {
  id: "pile-submit",
  batch: (n, concurrency, work, count) => {
    const task = effectTask(work)
    const settled: Settled = { outcomes: 0, failures: 0 }
    const program = Effect.gen(function*() {
      const executor = yield* Executor.make({ concurrency, pile: "none" })
      const handles: Array<Executor.TaskHandle<void, Error>> = []
      for (let i = 0; i < n; i++) handles.push(yield* executor.submit(task(i)))
      for (const handle of handles) {
        const outcome = yield* handle.outcome
        settled.outcomes++
        if (outcome.kind !== "success") settled.failures++
      }
    })
    return Effect.runPromise(Effect.scoped(program)).then(() => count ? settled : { outcomes: n, failures: 0 })
  },
  queue: (n, measure) => {
    const program = Effect.gen(function*() {
      const executor = yield* Executor.make({ concurrency: 1, capacity: n, pile: "none" })
      const gate = yield* Deferred.make<void>()
      yield* executor.submit(Deferred.await(gate))
      // Let the dispatcher start the blocker, so the intake holds exactly the n tasks below.
      while ((yield* executor.stats).running === 0) yield* Effect.yieldNow
      for (let i = 0; i < n; i++) yield* executor.submit(effectVoid)
      const stats = yield* executor.stats
      yield* Effect.promise(() => measure(stats.queued))
      yield* executor.shutdown({ mode: "cancel" })
    })
    return Effect.runPromise(Effect.scoped(program))
  }
}

export const adapters: ReadonlyArray<Adapter> = [pileRun, pileRunBare, pileRunGcra, pileSubmit]
