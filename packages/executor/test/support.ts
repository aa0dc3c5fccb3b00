// Test support for the executor's suites: make the tests' executor, reach the engine behind it, check the ledger,
// let fibers settle, build tasks and policies.
import { assert } from "@effect/vitest"
import { Cause, Effect, Ref, Schedule, Tracer } from "effect"
import type * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as ErrorPolicy from "../src/ErrorPolicy.ts"
import * as Executor from "../src/Executor.ts"
import type * as ExecutorError from "../src/ExecutorError.ts"
import type { Engine } from "../src/internal/engine.ts"

/**
 * The tests' executor: it shuts down with "cancel" when its scope closes, unless a test asks for a drain (a
 * drain would wait on the TestClock).
 */
export const make = <A = unknown, E = unknown>(options?: Executor.Options<E>) =>
  Executor.make<A, E>({ shutdown: { mode: "cancel" }, ...options })

/** The engine behind an executor (a test hook: the public API does not expose it). */
export const engineOf = (executor: Executor.Executor<any, any>): Engine =>
  (executor as unknown as { engine: Engine }).engine

/** The reason of the executor error an exit failed with (`"Closed"`, `"QueueFull"`, ...), if any. */
export const reasonOf = <A>(exit: Exit.Exit<A, ExecutorError.ExecutorError>): string | undefined => {
  if (exit._tag === "Success") return undefined
  const error = Cause.findErrorOption(exit.cause)
  return error._tag === "Some" ? error.value.reason._tag : undefined
}

/** Fibers the executor forked that have not ended (I5). */
export const liveFibers = (executor: Executor.Executor<any, any>): Array<Fiber.Fiber<any, any>> =>
  engineOf(executor).liveFibers()

/** I15: the numbers of a stats snapshot add up. */
export const assertLedger = (stats: Executor.Stats): void => {
  const byKind = Object.values(stats.outcomes).reduce((a, b) => a + b, 0)
  assert.strictEqual(byKind, stats.finished, "finished = Σ outcomes by kind")
  assert.strictEqual(stats.submitted, stats.accepted + stats.rejected, "submitted = accepted + rejected")
  assert.strictEqual(
    stats.accepted,
    stats.queued + stats.waiting + stats.running + stats.finished,
    "accepted = queued + waiting + running + finished"
  )
}

/** A counter of concurrently running bodies, with the peak it reached (I10). */
export const makeGauge = Effect.gen(function*() {
  const current = yield* Ref.make(0)
  const peak = yield* Ref.make(0)
  const track = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.acquireUseRelease(
      Ref.updateAndGet(current, (n) => n + 1).pipe(Effect.tap((n) => Ref.update(peak, (p) => Math.max(p, n)))),
      () => effect,
      () => Ref.update(current, (n) => n - 1)
    )
  return { current, peak, track }
})

/** An Exit without the annotations tracing adds to its cause, for comparisons in tests. */
export const plain = <A, E>(exit: Exit.Exit<A, E>): unknown => {
  if (exit._tag === "Success") return { success: exit.value }
  const failures = exit.cause.reasons.flatMap((r) => r._tag === "Fail" ? [r.error] : [])
  if (failures.length > 0) return { failure: failures[0] }
  const defects = exit.cause.reasons.flatMap((r) => r._tag === "Die" ? [r.defect] : [])
  return defects.length > 0 ? { defect: defects[0] } : { interrupted: true }
}

/**
 * How many runs a property or race suite makes: the given number, or a tenth of it (at least 10) under
 * mutation testing (PILE_MUTATION=1), where every mutant reruns the suites.
 */
export const runs = (n: number): number => process.env["PILE_MUTATION"] === "1" ? Math.max(10, Math.round(n / 10)) : n

/** A tracer that records every span it ends. */
export const recordingTracer = () => {
  const ended: Array<Tracer.Span> = []
  const tracer = Tracer.make({
    span(options) {
      const span = new Tracer.NativeSpan(options)
      const end = span.end.bind(span)
      span.end = (time, exit) => {
        end(time, exit)
        ended.push(span)
      }
      return span
    }
  })
  return { ended, tracer }
}

/**
 * Lets every fiber that can run without the clock moving do so: enough turns of the scheduler for resumed
 * waiters, finished attempts and their observers to settle (asserting afterwards never waits forever, so a
 * regression fails instead of hanging).
 */
export const settleFibers: Effect.Effect<void> = Effect.gen(function*() {
  for (let i = 0; i < 100; i++) yield* Effect.yieldNow
})

/** A task that fails its first run (after `ms`) and succeeds with the run's number afterwards. */
export const failsOnce = (runs: Ref.Ref<number>, ms = 0): Effect.Effect<number, string> =>
  Effect.flatMap(
    Ref.getAndUpdate(runs, (n) => n + 1),
    (n) => Effect.andThen(Effect.sleep(ms), n === 0 ? Effect.fail("once") : Effect.succeed(n))
  )

/** A policy that retries a failure once, `spacing` milliseconds later. */
export const retryOnce = (spacing: number) =>
  ErrorPolicy.retry(Schedule.spaced(spacing).pipe(Schedule.upTo({ times: 1 })))

/**
 * A cancel shutdown of `executor` ends without waiting on the clock: nothing holds a slot or waits for the
 * finalizer timeout (a leaked slot would keep it waiting, and this fails instead of hanging).
 */
export const assertCancelShutdownIsImmediate = (executor: Executor.Executor<any, any>): Effect.Effect<void> =>
  Effect.gen(function*() {
    const shutdown = yield* Effect.forkChild(executor.shutdown({ mode: "cancel" }), { startImmediately: true })
    yield* settleFibers
    assert.isDefined(shutdown.pollUnsafe(), "the cancel shutdown finished at once")
  })
