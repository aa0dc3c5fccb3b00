/**
 * The Pile: a `Stream` of task outcomes in completion order, and the consumers that read it.
 *
 * A Pile comes from an executor (`executor.pile`: every submitted task) or from a batch (`executor.run`: one
 * batch's tasks, each outcome carrying its input). Each element is an `Outcome`, whose `exit` is the task's
 * own `Exit<A, E>`; `exits` gives the bare `Stream<Exit<A, E>>`. Being a `Stream`, a Pile pipes into any
 * stream combinator.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Result from "effect/Result"
import * as Stream from "effect/Stream"
import * as Outcome from "./Outcome.ts"

/**
 * A stream of outcomes in completion order. `I` is the batch input type (`undefined` for submitted tasks);
 * `EX` and `RX` are the stream's own error (e.g. the executor closed before a batch was fed) and
 * requirements.
 *
 * **Details**
 *
 * A Pile is a plain `Stream`, so every `Stream` combinator applies. The task's own failures are never the
 * stream's error: they are outcomes (elements). The stream fails only for the executor's reasons: `Closed`
 * when a batch could not be fed completely, `Escalated` after an escalation, or the input stream's error.
 * Outcomes that finish in the same scheduler tick arrive as one chunk.
 *
 * - `executor.pile`: every task given to `submit`, `trySubmit` and `submitAll` that finished once a reader had
 *   started (the default `pile: "read"`; `pile: "unbounded"` keeps outcomes from the start). Outcomes are
 *   kept only for someone who will read them: an executor used through handles alone holds none. Single
 *   consumer (each outcome is delivered once); it ends only after the executor has shut down.
 * - `executor.run(inputs, f)`: one batch; running it starts the batch, and it ends after the batch's last
 *   outcome. Stopping early (for example `Stream.take`) cancels the batch's remaining tasks.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, type Pile } from "@pile/executor"
 * import { Effect, Stream } from "effect"
 * import assert from "node:assert/strict"
 *
 * // Any Pile, of any task type, batch or executor-wide: count its outcomes by kind.
 * const countKinds = <A, E, I, EX, RX>(pile: Pile.Pile<A, E, I, EX, RX>) =>
 *   Stream.runFold(pile, () => new Map<string, number>(), (counts, o) => counts.set(o.kind, (counts.get(o.kind) ?? 0) + 1))
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ concurrency: 2 })
 *   const counts = yield* countKinds(executor.run([1, 2, 3, 4], (n) => n % 2 === 0 ? Effect.fail(n) : Effect.succeed(n)))
 *   assert.deepEqual(Object.fromEntries(counts), { success: 2, failure: 2 })
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type Pile<A, E = never, I = undefined, EX = never, RX = never> = Stream.Stream<Outcome.Outcome<A, E, I>, EX, RX>

/**
 * The bare exits, in completion order.
 *
 * **When to use**
 *
 * When code downstream expects `Stream<Exit<A, E>>`, the shape of
 * `Stream.mapEffect(f, { unordered: true })` over `Effect.exit`, and does not need ids, inputs or kinds.
 *
 * **Details**
 *
 * `Stream.map(self, (outcome) => outcome.exit)`: same order, same end, same error as the Pile. Nothing is read
 * until the stream runs.
 *
 * **Gotchas**
 *
 * The kinds that an `Exit` cannot tell apart (`"cancelled"`, `"timedOut"`, `"dropped"`, ...) all become
 * interruptions; keep the outcomes if you need them.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, Pile } from "@pile/executor"
 * import { Effect, Exit, Stream } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make()
 *   const exits = yield* Stream.runCollect(Pile.exits(executor.run([1, 2], (n) => Effect.succeed(n))))
 *   assert.equal(exits.length, 2)
 *   assert.ok(exits.every(Exit.isSuccess))
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category consumers
 * @since 0.1.0
 */
export const exits = <A, E, I, EX, RX>(self: Pile<A, E, I, EX, RX>): Stream.Stream<Exit.Exit<A, E>, EX, RX> =>
  Stream.map(self, (outcome) => outcome.exit)

/**
 * The values of the tasks that succeeded, in completion order.
 *
 * **When to use**
 *
 * For a pipeline that only cares about results and handles failures elsewhere (or not at all): feed the
 * values to the next stage as they come.
 *
 * **Details**
 *
 * Keeps the outcomes of kind `"success"` and maps them to their value; every other outcome is dropped
 * silently. Order, end and error are the Pile's.
 *
 * **Gotchas**
 *
 * Failures disappear here. To see them too, read the Pile itself, or use `partition` or `collect`.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, Pile } from "@pile/executor"
 * import { Effect, Stream } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make()
 *   const values = yield* Stream.runCollect(
 *     Pile.successes(executor.run([1, 2, 3], (n) => n === 2 ? Effect.fail("two") : Effect.succeed(n)))
 *   )
 *   assert.deepEqual(values.sort(), [1, 3])
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @see collect: every value, or one error holding every failure
 * @category consumers
 * @since 0.1.0
 */
export const successes = <A, E, I, EX, RX>(self: Pile<A, E, I, EX, RX>): Stream.Stream<A, EX, RX> =>
  Stream.filterMap(self, (outcome) =>
    outcome.exit._tag === "Success" && outcome.kind === "success"
      ? Result.succeed(outcome.exit.value)
      : Result.failVoid)

/**
 * The outcomes that count as failures (every kind but `"success"` and `"skipped"`), in completion order.
 *
 * **When to use**
 *
 * To log, count or dead-letter failures as they happen, while the batch goes on.
 *
 * **Details**
 *
 * `Stream.filter(self, Outcome.isFailure)`: each element keeps its id, input, kind and cause.
 *
 * **Gotchas**
 *
 * Successful values are dropped; read them separately or use `partition`.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, Pile } from "@pile/executor"
 * import { Effect, Stream } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make()
 *   const failed = yield* Stream.runCollect(
 *     Pile.failures(executor.run(["a", "b", "c"], (s) => s === "b" ? Effect.fail(`bad ${s}`) : Effect.succeed(s)))
 *   )
 *   assert.deepEqual(failed.map((o) => [o.input, o.kind]), [["b", "failure"]])
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category consumers
 * @since 0.1.0
 */
export const failures = <A, E, I, EX, RX>(
  self: Pile<A, E, I, EX, RX>
): Stream.Stream<Outcome.Outcome<A, E, I>, EX, RX> => Stream.filter(self, Outcome.isFailure)

/**
 * Reads the whole Pile and splits it: successful outcomes first, failed ones second (skipped ones are in
 * neither), each in completion order.
 *
 * **When to use**
 *
 * At the end of a batch, to report both sides: what succeeded and what to retry or dead-letter.
 *
 * **Details**
 *
 * Suspends until the Pile ends. A Pile that fails (`Closed`, `Escalated`, the input stream's error) fails
 * `partition` with that error, and the outcomes read so far are lost. Interrupting it stops reading; for a
 * batch, that cancels the batch's remaining tasks.
 *
 * **Gotchas**
 *
 * On `executor.pile`, it completes only after the executor has shut down: the executor-wide Pile ends then.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, Pile } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make()
 *   const [ok, failed] = yield* Pile.partition(
 *     executor.run([1, 2, 3, 4], (n) => n > 2 ? Effect.fail(`too big: ${n}`) : Effect.succeed(n))
 *   )
 *   assert.deepEqual(ok.map((o) => o.input).sort(), [1, 2])
 *   assert.deepEqual(failed.map((o) => o.input).sort(), [3, 4])
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category consumers
 * @since 0.1.0
 */
export const partition = <A, E, I, EX, RX>(
  self: Pile<A, E, I, EX, RX>
): Effect.Effect<[successes: Array<Outcome.Outcome<A, E, I>>, failures: Array<Outcome.Outcome<A, E, I>>], EX, RX> =>
  Stream.runFold(
    self,
    (): [Array<Outcome.Outcome<A, E, I>>, Array<Outcome.Outcome<A, E, I>>] => [[], []],
    (acc, outcome) => {
      if (outcome.kind === "success") acc[0].push(outcome)
      else if (Outcome.isFailure(outcome)) acc[1].push(outcome)
      return acc
    }
  )

/**
 * Every failure of a Pile read by `collect`, with the task ids (I19).
 *
 * **When to use**
 *
 * Catch it (`Effect.catchTag("PileFailures", ...)`) after `collect` to report or retry what failed; it is
 * never raised anywhere else.
 *
 * **Details**
 *
 * `failures` holds the failed outcomes in completion order, at most `maxFailures` of them; `count` is how many
 * there were in all, so `truncated` says whether some were left out. `succeeded` counts the successes, whose
 * values are not kept. The message names up to ten failed ids with their kinds.
 *
 * **Gotchas**
 *
 * The successful values are dropped when `collect` fails; if you need them too, use `partition`.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, Pile } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make()
 *   const error = yield* Pile.collect(
 *     executor.run([1, 2, 3, 4, 5], (n) => n % 2 === 0 ? Effect.fail(`even: ${n}`) : Effect.succeed(n)),
 *     { maxFailures: 1 }
 *   ).pipe(Effect.flip)
 *   assert.equal(error._tag, "PileFailures")
 *   assert.equal(error.count, 2) // every failure is counted
 *   assert.equal(error.failures.length, 1) // at most maxFailures are kept
 *   assert.equal(error.truncated, true)
 *   assert.equal(error.succeeded, 3)
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class PileFailures<A, E, I> extends Data.TaggedError("PileFailures")<{
  readonly failures: ReadonlyArray<Outcome.Outcome<A, E, I>>
  readonly count: number
  readonly succeeded: number
}> {
  get truncated(): boolean {
    return this.count > this.failures.length
  }
  override get message(): string {
    const ids = this.failures.slice(0, 10).map((outcome) => `${outcome.id} (${outcome.kind})`).join(", ")
    return `${this.count} task(s) failed, ${this.succeeded} succeeded; failed: ${ids}${this.count > 10 ? ", ..." : ""}`
  }
}

/**
 * Options of `collect`.
 *
 * **Example**
 *
 * ```ts
 * import type { Pile } from "@pile/executor"
 * import assert from "node:assert/strict"
 *
 * // Keep at most 10 failures in the error; all of them are still counted.
 * const options: Pile.CollectOptions = { maxFailures: 10 }
 * assert.equal(options.maxFailures, 10)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface CollectOptions {
  /** The most failures kept in the error (all are counted). Default 1000. */
  readonly maxFailures?: number | undefined
}

/**
 * Reads the whole Pile: succeeds with every value, in task id order (submission order, which for a batch is
 * input order), or, if any task failed, fails with one `PileFailures` holding every failure (up to
 * `maxFailures`, with the total count). It never stops at the first failure.
 *
 * **When to use**
 *
 * The "all results or all the failures" ending of a batch: the executor's counterpart of
 * `Effect.forEach(inputs, f, { concurrency })`, except that one failure neither cancels the others nor hides
 * them.
 *
 * **Details**
 *
 * Suspends until the Pile ends, then sorts the values by task id, so the result is in input order although
 * the tasks completed in any order. Skipped outcomes (error policy `ignore`) are neither values nor
 * failures. The Pile's own error (`Closed`, `Escalated`, the input stream's error) fails `collect` with that
 * error instead. Interrupting `collect` stops reading; for a batch, that cancels the batch's remaining tasks.
 *
 * **Gotchas**
 *
 * - It keeps every value in memory until the end; for large batches, consume the stream instead.
 * - On `executor.pile`, it completes only after the executor has shut down.
 * - To stop at the first failure instead, use the error policy `ErrorPolicy.escalate`.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, Pile } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ concurrency: 3 })
 *   // Slower inputs finish later, but the values come back in input order.
 *   const values = yield* Pile.collect(executor.run([30, 10, 20], (ms) => Effect.as(Effect.sleep(ms), ms)))
 *   assert.deepEqual(values, [30, 10, 20])
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @see partition: both sides, as outcomes
 * @category consumers
 * @since 0.1.0
 */
export const collect = <A, E, I, EX, RX>(
  self: Pile<A, E, I, EX, RX>,
  options?: CollectOptions | undefined
): Effect.Effect<Array<A>, PileFailures<A, E, I> | EX, RX> => {
  const max = options?.maxFailures ?? 1000
  return Effect.flatMap(
    Stream.runFold(
      self,
      () => ({ values: [] as Array<[number, A]>, failures: [] as Array<Outcome.Outcome<A, E, I>>, count: 0 }),
      (acc, outcome) => {
        if (outcome.kind === "success" && outcome.exit._tag === "Success") {
          acc.values.push([outcome.id, outcome.exit.value])
        } else if (Outcome.isFailure(outcome)) {
          acc.count++
          if (acc.failures.length < max) acc.failures.push(outcome)
        }
        return acc
      }
    ),
    (acc) =>
      acc.count > 0
        ? Effect.fail(new PileFailures({ failures: acc.failures, count: acc.count, succeeded: acc.values.length }))
        : Effect.succeed(acc.values.sort((a, b) => a[0] - b[0]).map(([, value]) => value))
  )
}
