/**
 * Error policies: what the executor does with each failed attempt of a task, decided from the task's typed
 * error (or its defect): retry it on a `Schedule`, record it, escalate it, or ignore it.
 *
 * A policy is set for the whole executor (`make` / `layer` option `policy`) and can be overridden per task
 * (`submit` / `run` option `policy`). The default is `record`: the failure goes to the Pile as a failed
 * `Exit`. Failures are handled inside the worker and reported through the outcome; nothing is thrown at
 * siblings.
 *
 * @since 0.1.0
 */
import type * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import { dual } from "effect/Function"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import * as Predicate from "effect/Predicate"
import type * as Schedule from "effect/Schedule"
import * as ExecutorError from "./ExecutorError.ts"

const TypeId = "~@pile/executor/ErrorPolicy"

/**
 * What to do with one failed attempt.
 *
 * - `Record`: the failure is the task's outcome (`"failure"` or `"defect"`).
 * - `Ignore`: the task ends as `"skipped"`: counted in stats, not delivered as a failure.
 * - `Escalate`: the failure is the task's outcome, and then the executor stops admission, cancels every other
 *   task and raises the failure to its owner (`join`, `Executor.scoped`, the batch's Pile).
 * - `Retry`: run the task again, after the schedule's delay (and at least the error's `retryAfter`), as a new
 *   attempt that goes back through admission; when the schedule is done (or `while` says no), apply
 *   `exhausted` instead.
 *
 * @category models
 * @since 0.1.0
 */
export type Rule =
  | { readonly _tag: "Record" }
  | { readonly _tag: "Ignore" }
  | { readonly _tag: "Escalate" }
  | {
    readonly _tag: "Retry"
    readonly schedule: Schedule.Schedule<unknown, unknown>
    readonly while: ((error: unknown) => boolean) | undefined
    readonly exhausted: Terminal
  }

/**
 * A rule that ends the task.
 *
 * @category models
 * @since 0.1.0
 */
export type Terminal = Exclude<Rule, { readonly _tag: "Retry" }>

/**
 * A policy for tasks failing with `E`. Contravariant: a policy for `unknown` errors fits every task.
 *
 * @category models
 * @since 0.1.0
 */
export interface ErrorPolicy<in E> extends Pipeable {
  readonly [TypeId]: typeof TypeId
  /** The rule for an attempt that failed with `error`. */
  readonly onFailure: (error: E) => Rule
  /** The rule for an attempt that died. */
  readonly onDefect: (defect: unknown) => Rule
}

const Proto = {
  [TypeId]: TypeId,
  pipe() {
    return pipeArguments(this, arguments)
  }
}

const make = <E>(onFailure: (error: E) => Rule, onDefect: (defect: unknown) => Rule): ErrorPolicy<E> => {
  const self = Object.create(Proto)
  self.onFailure = onFailure
  self.onDefect = onDefect
  return self
}

const recordRule: Rule = { _tag: "Record" }
const ignoreRule: Rule = { _tag: "Ignore" }
const escalateRule: Rule = { _tag: "Escalate" }

/**
 * Whether a value is an `ErrorPolicy`.
 *
 * @category guards
 * @since 0.1.0
 */
export const isErrorPolicy = (u: unknown): u is ErrorPolicy<unknown> => Predicate.hasProperty(u, TypeId)

/**
 * The default: every failure and defect is the task's outcome.
 *
 * @category constructors
 * @since 0.1.0
 */
export const record: ErrorPolicy<unknown> = make(() => recordRule, () => recordRule)

/**
 * Failures end the task as `"skipped"`: counted, never delivered as failures. Defects are still recorded.
 *
 * @category constructors
 * @since 0.1.0
 */
export const ignore: ErrorPolicy<unknown> = make(() => ignoreRule, () => recordRule)

/**
 * Fail fast, Trio style: the first failure or defect stops the executor and is raised to its owner.
 *
 * @category constructors
 * @since 0.1.0
 */
export const escalate: ErrorPolicy<unknown> = make(() => escalateRule, () => escalateRule)

/**
 * Options of `retry`.
 *
 * @category models
 * @since 0.1.0
 */
export interface RetryOptions<E> {
  /** Retry only the errors this accepts; others are handled by `exhausted`. */
  readonly while?: ((error: E) => boolean) | undefined
  /** What to do once the schedule is done, or `while` refused. Default `"record"`. */
  readonly exhausted?: "record" | "ignore" | "escalate" | undefined
}

const terminal = (name: "record" | "ignore" | "escalate" | undefined): Terminal =>
  name === "ignore" ? ignoreRule as Terminal : name === "escalate" ? escalateRule as Terminal : recordRule as Terminal

/**
 * Retries failures on `schedule` (for example
 * `Schedule.exponential("100 millis").pipe(Schedule.jittered, Schedule.upTo({ times: 5 }))`); defects are
 * recorded. Each retry is a new attempt: it waits the schedule's delay, and at least the error's
 * `retryAfter` (see `RetryAfter`), then goes back through admission and takes a concurrency slot and rate
 * budget again (I21).
 *
 * @category constructors
 * @since 0.1.0
 */
export const retry = <E = unknown>(
  schedule: Schedule.Schedule<unknown, unknown>,
  options?: RetryOptions<E> | undefined
): ErrorPolicy<E> => {
  const rule: Rule = {
    _tag: "Retry",
    schedule,
    while: options?.while as ((error: unknown) => boolean) | undefined,
    exhausted: terminal(options?.exhausted)
  }
  return make(() => rule, () => recordRule)
}

/**
 * Sets what a policy does with defects (by default they are recorded and never retried).
 *
 * @category combinators
 * @since 0.1.0
 */
export const withDefects: {
  (defects: ErrorPolicy<unknown>): <E>(self: ErrorPolicy<E>) => ErrorPolicy<E>
  <E>(self: ErrorPolicy<E>, defects: ErrorPolicy<unknown>): ErrorPolicy<E>
} = dual(
  2,
  <E>(self: ErrorPolicy<E>, defects: ErrorPolicy<unknown>): ErrorPolicy<E> => make(self.onFailure, defects.onFailure)
)

type Tags<E> = E extends { readonly _tag: infer T extends string } ? T : never

/**
 * The cases of `byTag`: one policy per tag of the error union, no more, no less.
 *
 * @category models
 * @since 0.1.0
 */
export type Cases<E> = { readonly [K in Tags<E>]: ErrorPolicy<Extract<E, { readonly _tag: K }>> }

/**
 * Classifies failures by their `_tag`. The compiler checks the cases are exhaustive: a missing tag (or an
 * unknown one) is a type error. Give the error type explicitly, `ErrorPolicy.byTag<ApiError>()({...})`, or
 * let a `submit` option infer it.
 *
 * **Example**
 *
 * ```ts
 * import { Data, Schedule } from "effect"
 * import { ErrorPolicy } from "@pile/executor"
 *
 * class RateLimited extends Data.TaggedError("RateLimited")<{ retryAfter: number }> {}
 * class ServerError extends Data.TaggedError("ServerError")<{}> {}
 * class BadRequest extends Data.TaggedError("BadRequest")<{}> {}
 *
 * const policy = ErrorPolicy.byTag<RateLimited | ServerError | BadRequest>()({
 *   RateLimited: ErrorPolicy.retry(Schedule.recurs(5)),
 *   ServerError: ErrorPolicy.retry(Schedule.exponential("100 millis").pipe(Schedule.upTo({ times: 3 }))),
 *   BadRequest: ErrorPolicy.record
 * })
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const byTag = <E extends { readonly _tag: string }>() =>
<const C extends Cases<E>>(
  cases: C & { readonly [K in Exclude<keyof C, Tags<E>>]: never },
  options?: { readonly defect?: ErrorPolicy<unknown> | undefined } | undefined
): ErrorPolicy<E> => {
  const table = cases as unknown as Record<string, ErrorPolicy<any>>
  const defect = options?.defect
  return make(
    (error: E) => {
      const policy = table[error._tag]
      return policy === undefined ? recordRule : policy.onFailure(error)
    },
    defect === undefined ? () => recordRule : defect.onFailure
  )
}

/**
 * Decides from a predicate: `onTrue` for the errors it accepts, `onFalse` for the others.
 *
 * @category constructors
 * @since 0.1.0
 */
export const when = <E>(
  predicate: (error: E) => boolean,
  onTrue: ErrorPolicy<E>,
  onFalse: ErrorPolicy<E>
): ErrorPolicy<E> =>
  make((error) => predicate(error) ? onTrue.onFailure(error) : onFalse.onFailure(error), onFalse.onDefect)

/**
 * What an error implements to say how long to wait before the next attempt, for example from an HTTP 429's
 * `Retry-After` header: a `retryAfter` field holding a `Duration` or a number of milliseconds. A retry waits
 * at least that long, and the task's key is paused for that long (see the rate-limit guide).
 *
 * @category models
 * @since 0.1.0
 */
export interface RetryAfter {
  readonly retryAfter: Duration.Duration | number
}

/**
 * The `retryAfter` of an error, in milliseconds, if it carries a valid one.
 *
 * @category getters
 * @since 0.1.0
 */
export const retryAfterMillis = (error: unknown): number | undefined => {
  if (!Predicate.hasProperty(error, "retryAfter")) return undefined
  const value = (error as RetryAfter).retryAfter
  const millis = typeof value === "number" ? value : Duration.isDuration(value) ? Duration.toMillis(value) : NaN
  return Number.isFinite(millis) && millis >= 0 ? millis : undefined
}

/**
 * Errors that are never retried, whatever the policy says: the executor's own `Closed` and `CircuitOpen`.
 * (Interruptions are not failures: they never reach a policy.)
 *
 * @category predicates
 * @since 0.1.0
 */
export const isNeverRetried = (error: unknown): boolean =>
  ExecutorError.isExecutorError(error) &&
  (error.reason._tag === "Closed" || error.reason._tag === "CircuitOpen")

/** @internal */
export const ruleFor = <E>(policy: ErrorPolicy<E>, cause: Cause.Cause<E>): { rule: Rule; error: unknown } => {
  for (const reason of cause.reasons) {
    if (reason._tag === "Fail") {
      const rule = policy.onFailure(reason.error)
      return { rule: rule._tag === "Retry" && isNeverRetried(reason.error) ? recordRule : rule, error: reason.error }
    }
  }
  for (const reason of cause.reasons) {
    if (reason._tag === "Die") return { rule: policy.onDefect(reason.defect), error: reason.defect }
  }
  return { rule: recordRule, error: undefined }
}
