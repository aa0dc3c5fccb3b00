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
 * can be stopped from outside, which an `Exit` alone cannot (they are all interruptions):
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
 * - `id` is the task's id, the same as its handle's `id`; ids increase in submission order.
 * - `input` is the batch input the task was made from (the batch form), or `undefined` for `submit`.
 * - `exit` is the task's `Exit`. Its error type is the task's own `E`, never wrapped. For the kinds where the
 *   task was stopped or never ran (`interrupted`, `cancelled`, `timedOut`, `dropped`, `evicted`, `rejected`)
 *   it is an interruption.
 * - `rejection` is set for `rejected` outcomes only: the executor's reason for refusing the task.
 * - `attempts` counts how many times the task body started (0 when it never ran, more than 1 after retries).
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
 * Whether the task succeeded.
 *
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
