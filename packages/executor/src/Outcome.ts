/**
 * What became of one accepted task: its `Exit`, which task it was, how it ended and after how many attempts.
 *
 * Every task the executor accepts yields exactly one `Outcome` (invariant I1). The Pile is a stream of them in
 * completion order; `TaskHandle.outcome` gives the one of a single task.
 *
 * @since 0.1.0
 */
import type * as Exit from "effect/Exit"
import type { ExecutorError } from "./ExecutorError.ts"

/**
 * How a task ended. The `exit` says what the task returned; the kind says why, and tells apart the ways a task
 * can be stopped from outside, which an `Exit` alone cannot (they are all interruptions).
 *
 * **Details**
 *
 * - `"success"`: the task succeeded.
 * - `"failure"`: the task failed with its typed error `E` (after any retries its error policy allowed).
 * - `"defect"`: the task died (a thrown exception, `Effect.die`).
 * - `"interrupted"`: the task was interrupted by shutdown, by an escalation, or interrupted itself.
 * - `"cancelled"`: the caller cancelled it through its handle or its batch.
 * - `"timedOut"`: its timeout or deadline passed; it was interrupted.
 * - `"dropped"`: the queue was full and its strategy is `"dropping"`: the task never ran.
 * - `"evicted"`: the queue was full and its strategy is `"sliding"`: a newer task took its place; it never ran.
 * - `"rejected"`: the executor refused to run it after accepting it (its circuit was open, its cost exceeds a
 *   limit): `rejection` holds the `ExecutorError` that says why.
 * - `"skipped"`: its error policy chose `ignore`: counted, but its failure is not delivered as a failure.
 *
 * `isFailure` counts every kind but `"success"` and `"skipped"`; `isStopped` is true for the six kinds where
 * the executor stopped the task or never ran it.
 *
 * **Example**
 *
 * ```ts
 * import { Executor } from "@pile/executor"
 * import { Effect, Stream } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ concurrency: 4 })
 *   const outcomes = yield* Stream.runCollect(
 *     executor.run([1, 2, 3], (n) => n === 1 ? Effect.succeed(n) : n === 2 ? Effect.fail("no") : Effect.die("bug"))
 *   )
 *   const byInput = outcomes.map((o) => [o.input, o.kind]).sort()
 *   assert.deepEqual(byInput, [[1, "success"], [2, "failure"], [3, "defect"]])
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type Kind =
  | "success"
  | "failure"
  | "defect"
  | "interrupted"
  | "cancelled"
  | "timedOut"
  | "dropped"
  | "evicted"
  | "rejected"
  | "skipped"

/**
 * Every kind, in a fixed order (used for stats and metrics).
 *
 * **When to use**
 *
 * To build a table or a dashboard with one row per kind, including the kinds that did not occur.
 *
 * **Details**
 *
 * The keys of `Stats.outcomes` and the `outcome` attribute of the `pile_task_outcomes_total` metric take their
 * values from this list, in this order.
 *
 * **Gotchas**
 *
 * Adding a kind is a breaking change for code that switches over `Kind` exhaustively; iterate this list
 * rather than hard-coding the kinds.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, Outcome } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make()
 *   const stats = yield* executor.stats
 *   assert.deepEqual(Object.keys(stats.outcomes), Outcome.kinds)
 *   assert.ok(Outcome.kinds.every((kind) => stats.outcomes[kind] === 0))
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category constants
 * @since 0.1.0
 */
export const kinds: ReadonlyArray<Kind> = [
  "success",
  "failure",
  "defect",
  "interrupted",
  "cancelled",
  "timedOut",
  "dropped",
  "evicted",
  "rejected",
  "skipped"
]

/**
 * The outcome of one task.
 *
 * **Details**
 *
 * - `id` is the task's id, the same as its handle's `id`; ids increase in the order tasks are accepted.
 * - `input` is the batch input the task was made from (the batch form), or `undefined` for `submit`.
 * - `exit` is the task's `Exit`. Its error type is the task's own `E`, never wrapped. For the kinds where the
 *   task was stopped or never ran (`interrupted`, `cancelled`, `timedOut`, `dropped`, `evicted`, `rejected`)
 *   it is an interruption.
 * - `rejection` is set for `rejected` outcomes only: the executor's reason for refusing the task.
 * - `attempts` counts how many times the task body started (0 when it never ran, more than 1 after retries).
 *
 * Outcomes reach a Pile in completion order; a task's handle gives its own outcome (`TaskHandle.outcome`).
 *
 * **Example**
 *
 * ```ts
 * import { Executor } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make()
 *   const handle = yield* executor.submit(Effect.succeed("done"))
 *   const outcome = yield* handle.outcome
 *   assert.equal(outcome.id, handle.id)
 *   assert.equal(outcome.kind, "success")
 *   assert.equal(outcome.attempts, 1)
 *   assert.equal(outcome.input, undefined) // only the batch form sets an input
 *   assert.ok(outcome.exit._tag === "Success" && outcome.exit.value === "done")
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Outcome<out A, out E = never, out I = undefined> {
  readonly id: number
  readonly input: I
  readonly kind: Kind
  readonly exit: Exit.Exit<A, E>
  readonly attempts: number
  readonly rejection?: ExecutorError | undefined
}

/**
 * Whether the task succeeded. Narrows `exit` to a success, so `exit.value` is typed.
 *
 * **When to use**
 *
 * To filter a Pile or an array of outcomes down to the successful ones while keeping the outcome (its id,
 * input and attempts). For the bare values use `Pile.successes`.
 *
 * **Details**
 *
 * True exactly for the kind `"success"`.
 *
 * **Gotchas**
 *
 * A `"skipped"` outcome (error policy `ignore`) is neither a success nor a failure.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, Outcome } from "@pile/executor"
 * import { Effect, Stream } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make()
 *   const outcomes = yield* Stream.runCollect(
 *     executor.run([1, 2, 3], (n) => n === 2 ? Effect.fail("two") : Effect.succeed(n * 10))
 *   )
 *   const values = outcomes.filter(Outcome.isSuccess).map((o) => o.exit.value)
 *   assert.deepEqual(values.sort(), [10, 30])
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @see Pile.successes: the values alone, as a stream
 * @category guards
 * @since 0.1.0
 */
export const isSuccess = <A, E, I>(
  self: Outcome<A, E, I>
): self is Outcome<A, E, I> & { readonly exit: Exit.Success<A, E> } => self.kind === "success"

/**
 * Whether the outcome counts as a failure for `Pile.collect` and `Pile.failures`: every kind except
 * `"success"` and `"skipped"`.
 *
 * **When to use**
 *
 * To decide whether a batch "went wrong" from its outcomes. Narrows `exit` to a failure, so `exit.cause` is
 * typed.
 *
 * **Details**
 *
 * Stopped tasks (`"interrupted"`, `"cancelled"`, `"timedOut"`, `"dropped"`, `"evicted"`, `"rejected"`) count
 * as failures: their exit is an interruption.
 *
 * **Gotchas**
 *
 * `Exit.isFailure(outcome.exit)` is not the same test: a `"skipped"` outcome has a failed exit but is not a
 * failure here.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, Outcome } from "@pile/executor"
 * import { Cause, Effect, Stream } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make()
 *   const outcomes = yield* Stream.runCollect(
 *     executor.run(["a", "b"], (s) => s === "b" ? Effect.fail(`bad ${s}`) : Effect.succeed(s))
 *   )
 *   const failed = outcomes.filter(Outcome.isFailure)
 *   assert.equal(failed.length, 1)
 *   assert.deepEqual(failed.map((o) => Cause.squash(o.exit.cause)), ["bad b"])
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @see Pile.failures: the failed outcomes of a Pile, as a stream
 * @category guards
 * @since 0.1.0
 */
export const isFailure = <A, E, I>(
  self: Outcome<A, E, I>
): self is Outcome<A, E, I> & { readonly exit: Exit.Failure<A, E> } =>
  self.kind !== "success" && self.kind !== "skipped"

/**
 * Whether the task was stopped from outside or never ran: interrupted, cancelled, timed out, dropped, evicted
 * or rejected.
 *
 * **When to use**
 *
 * To tell "the work failed" (`"failure"`, `"defect"`) from "the work was not allowed to finish", for example
 * to resubmit stopped tasks after a restart.
 *
 * **Details**
 *
 * The exit of a stopped task is an interruption; `attempts` is 0 when it never started.
 *
 * **Gotchas**
 *
 * A task that interrupted itself (`Effect.interrupt` in its body) ends as `"interrupted"` and counts as
 * stopped too.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, Outcome } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ concurrency: 1 })
 *   const slow = yield* executor.submit(Effect.never)
 *   const failing = yield* executor.submit(Effect.fail("no"))
 *   yield* slow.cancel
 *   assert.ok(Outcome.isStopped(yield* slow.outcome)) // "cancelled"
 *   assert.ok(!Outcome.isStopped(yield* failing.outcome)) // "failure"
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category guards
 * @since 0.1.0
 */
export const isStopped = <A, E, I>(self: Outcome<A, E, I>): boolean =>
  self.kind === "interrupted" || self.kind === "cancelled" || self.kind === "timedOut" ||
  self.kind === "dropped" || self.kind === "evicted" || self.kind === "rejected"

/** @internal */
export class OutcomeImpl<A, E, I> implements Outcome<A, E, I> {
  readonly id: number
  readonly input: I
  readonly kind: Kind
  readonly exit: Exit.Exit<A, E>
  readonly attempts: number
  readonly rejection: ExecutorError | undefined
  constructor(id: number, input: I, kind: Kind, exit: Exit.Exit<A, E>, attempts: number, rejection?: ExecutorError) {
    this.id = id
    this.input = input
    this.kind = kind
    this.exit = exit
    this.attempts = attempts
    this.rejection = rejection
  }
  toJSON(): unknown {
    return { id: this.id, input: this.input, kind: this.kind, attempts: this.attempts, exit: this.exit.toJSON() }
  }
}

/** @internal */
export const kindOfExit = <A, E>(exit: Exit.Exit<A, E>): Kind => {
  if (exit._tag === "Success") return "success"
  let dies = false
  for (const reason of exit.cause.reasons) {
    if (reason._tag === "Fail") return "failure"
    if (reason._tag === "Die") dies = true
  }
  return dies ? "defect" : "interrupted"
}
