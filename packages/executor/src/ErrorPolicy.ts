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
 * Every policy is a pair of functions from a failure to a `Rule` (`onFailure`, `onDefect`); reading the rule
 * a policy gives is how to unit-test a policy without running any task.
 *
 * **Example**
 *
 * ```ts
 * import { ErrorPolicy } from "@pile/executor"
 * import { Schedule } from "effect"
 * import assert from "node:assert/strict"
 *
 * const policy = ErrorPolicy.when(
 *   (status: number) => status >= 500,
 *   ErrorPolicy.retry(Schedule.recurs(3)),
 *   ErrorPolicy.record
 * )
 * assert.equal(policy.onFailure(503)._tag, "Retry")
 * assert.equal(policy.onFailure(404)._tag, "Record")
 * assert.equal(policy.onDefect(new Error("bug"))._tag, "Record")
 * ```
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
 * A rule that ends the task: what a `Retry` rule falls back to once its schedule is done (`exhausted`).
 *
 * **Example**
 *
 * ```ts
 * import { ErrorPolicy } from "@pile/executor"
 * import { Schedule } from "effect"
 * import assert from "node:assert/strict"
 *
 * const rule = ErrorPolicy.retry(Schedule.recurs(2), { exhausted: "escalate" }).onFailure("boom")
 * assert.ok(rule._tag === "Retry")
 * const terminal: ErrorPolicy.Terminal = rule.exhausted
 * assert.equal(terminal._tag, "Escalate")
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type Terminal = Exclude<Rule, { readonly _tag: "Retry" }>

/**
 * A policy for tasks failing with `E`. Contravariant: a policy for `unknown` errors fits every task.
 *
 * **Details**
 *
 * Build one with `record`, `ignore`, `escalate`, `retry`, `byTag`, `when` and `withDefects`; give it to
 * `Executor.make({ policy })` for every task, or to `submit` / `run` (`policy` option) for some. The policy
 * runs inside the executor, after each failed attempt; interruptions never reach it.
 *
 * **Example**
 *
 * ```ts
 * import { ErrorPolicy } from "@pile/executor"
 * import { Schedule } from "effect"
 * import assert from "node:assert/strict"
 *
 * type HttpError = { readonly status: number }
 * // A policy for any error fits a task failing with HttpError (contravariance).
 * const fallback: ErrorPolicy.ErrorPolicy<HttpError> = ErrorPolicy.record
 * const transient: ErrorPolicy.ErrorPolicy<HttpError> = ErrorPolicy.retry(Schedule.recurs(2), {
 *   while: (error) => error.status >= 500
 * })
 * assert.equal(fallback.onFailure({ status: 500 })._tag, "Record")
 * assert.equal(transient.onFailure({ status: 500 })._tag, "Retry")
 * ```
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
 * **When to use**
 *
 * When a policy comes from configuration or from user code typed loosely, before passing it on.
 *
 * **Details**
 *
 * Checks for the policy's type id; `make` uses it to reject a `policy` option that is not a policy
 * (`InvalidOption`).
 *
 * **Gotchas**
 *
 * An object with `onFailure` and `onDefect` functions is not a policy: build policies with this module.
 *
 * **Example**
 *
 * ```ts
 * import { ErrorPolicy } from "@pile/executor"
 * import assert from "node:assert/strict"
 *
 * assert.ok(ErrorPolicy.isErrorPolicy(ErrorPolicy.record))
 * assert.ok(!ErrorPolicy.isErrorPolicy({ onFailure: () => ({ _tag: "Record" }) }))
 * ```
 *
 * @category guards
 * @since 0.1.0
 */
export const isErrorPolicy = (u: unknown): u is ErrorPolicy<unknown> => Predicate.hasProperty(u, TypeId)

/**
 * The default: every failure and defect is the task's outcome.
 *
 * **When to use**
 *
 * As the fallback case of `byTag` or `when` for errors that retrying would not fix (a 400, a validation
 * error); you never need to pass it to `make`, where it is the default.
 *
 * **Details**
 *
 * One attempt; the outcome's kind is `"failure"` (typed error) or `"defect"`, and the failure goes to the
 * Pile as data. Nothing else is cancelled.
 *
 * **Gotchas**
 *
 * A recorded failure makes `Pile.collect` fail with `PileFailures` at the end of the batch (with every
 * failure), not at once.
 *
 * **Example**
 *
 * ```ts
 * import { ErrorPolicy, Executor } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ policy: ErrorPolicy.record })
 *   const failing = yield* executor.submit(Effect.fail("bad request"))
 *   const sibling = yield* executor.submit(Effect.succeed("fine"))
 *   const outcome = yield* failing.outcome
 *   assert.deepEqual([outcome.kind, outcome.attempts], ["failure", 1])
 *   assert.equal(yield* sibling.join, "fine")
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const record: ErrorPolicy<unknown> = make(() => recordRule, () => recordRule)

/**
 * Failures end the task as `"skipped"`: counted, never delivered as failures. Defects are still recorded.
 *
 * **When to use**
 *
 * For best-effort work where an expected failure means "nothing to do" (a 404 while crawling), so that
 * `Pile.collect` still succeeds with the other values.
 *
 * **Details**
 *
 * The outcome's kind is `"skipped"`, its `exit` keeps the failure, `stats.outcomes.skipped` counts it, and
 * `Outcome.isFailure` is false for it.
 *
 * **Gotchas**
 *
 * Defects are not ignored: a bug still shows up as a `"defect"` outcome.
 *
 * **Example**
 *
 * ```ts
 * import { ErrorPolicy, Executor, Pile } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ policy: ErrorPolicy.ignore })
 *   const pages = yield* Pile.collect(
 *     executor.run(["/a", "/missing", "/b"], (path) => path === "/missing" ? Effect.fail(404) : Effect.succeed(path))
 *   )
 *   assert.deepEqual(pages, ["/a", "/b"])
 *   assert.equal((yield* executor.stats).outcomes.skipped, 1)
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const ignore: ErrorPolicy<unknown> = make(() => ignoreRule, () => recordRule)

/**
 * Fail fast, Trio style: the first failure or defect stops the executor and is raised to its owner.
 *
 * **When to use**
 *
 * When one failure makes the rest of the work pointless (a migration step, an all-or-nothing import), and
 * you want `Effect.forEach`'s fail-fast behaviour with the executor's limits.
 *
 * **Details**
 *
 * The failing task's outcome is recorded, then the executor closes admission, interrupts every other task
 * (each gets an `"interrupted"` outcome) and fails `join`, `Executor.scoped`, the executor-wide Pile and
 * running batches with `ExecutorError` reason `Escalated`, which carries the original `Cause`.
 *
 * **Gotchas**
 *
 * The executor is finished after an escalation: later submissions fail with `Closed`. Use a fresh executor
 * (for example with `Executor.scoped`) per all-or-nothing unit of work.
 *
 * **Example**
 *
 * ```ts
 * import { ErrorPolicy, Executor, type ExecutorError } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Executor.scoped({ policy: ErrorPolicy.escalate }, (executor) =>
 *   Effect.gen(function*() {
 *     yield* executor.submit(Effect.fail("step 2 failed"))
 *     yield* Effect.never // interrupted by the escalation
 *   }))
 *
 * const error = await Effect.runPromise(Effect.flip(program))
 * assert.equal((error as ExecutorError.ExecutorError).reason._tag, "Escalated")
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const escalate: ErrorPolicy<unknown> = make(() => escalateRule, () => escalateRule)

/**
 * Options of `retry`.
 *
 * **Example**
 *
 * ```ts
 * import { ErrorPolicy } from "@pile/executor"
 * import { Schedule } from "effect"
 * import assert from "node:assert/strict"
 *
 * // Retry only 5xx statuses; when the retries are used up, stop the executor.
 * const options: ErrorPolicy.RetryOptions<number> = { while: (status) => status >= 500, exhausted: "escalate" }
 * const policy = ErrorPolicy.retry(Schedule.recurs(3), options)
 * assert.equal(policy.onFailure(503)._tag, "Retry")
 * ```
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
 * **When to use**
 *
 * For transient failures: timeouts, 5xx, 429s. Prefer it to `Effect.retry` inside the task: the retry then
 * waits without holding a concurrency slot, respects the rate limits, and is counted in `attempts`,
 * `stats.retries` and the metrics.
 *
 * **Details**
 *
 * - The number of retries never exceeds what the schedule allows (I3); the outcome is the last attempt's.
 * - While it waits for its delay the task holds no slot (`stats.retrying` counts it). When the delay is over
 *   it waits for a free slot; a due retry starts before tasks still in the queue.
 * - `while` limits which errors are retried; the others, and every error once the schedule is done, get
 *   `exhausted` (`"record"` by default).
 * - Each rule keeps its own schedule state per task.
 * - Never retried, whatever the schedule: interruptions, and the executor's own `Closed` and `CircuitOpen`.
 *   During shutdown, and when the task's `deadline` leaves no time, a failure is recorded instead.
 *
 * **Gotchas**
 *
 * - A timed-out attempt (`timeout` option) is not retried: it ends as `"timedOut"`. To retry slow calls, put
 *   `Effect.timeout` inside the task, which turns slowness into a typed error the policy can retry.
 * - A schedule without a bound (`Schedule.spaced`) retries forever; bound it with `Schedule.upTo` or
 *   `Schedule.recurs`, or set a `deadline`.
 *
 * **Example**
 *
 * ```ts
 * import { ErrorPolicy, Executor } from "@pile/executor"
 * import { Effect, Schedule } from "effect"
 * import assert from "node:assert/strict"
 *
 * let calls = 0
 * const flaky = Effect.suspend(() => ++calls < 3 ? Effect.fail("unavailable") : Effect.succeed("ok"))
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ policy: ErrorPolicy.retry(Schedule.spaced("5 millis").pipe(Schedule.upTo({ times: 5 }))) })
 *   const outcome = yield* (yield* executor.submit(flaky)).outcome
 *   assert.deepEqual([outcome.kind, outcome.attempts], ["success", 3])
 *   assert.equal((yield* executor.stats).retries, 2)
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @see byTag: a different retry schedule per error tag
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
 * **When to use**
 *
 * When a third-party client throws (a defect, not a typed error) on transient trouble, and you want those
 * retried or escalated too.
 *
 * **Details**
 *
 * `withDefects(self, defects)` keeps `self` for typed failures and applies `defects`' failure rule to
 * defects. Data-first or data-last (`policy.pipe(ErrorPolicy.withDefects(...))`).
 *
 * **Gotchas**
 *
 * Retrying defects also retries real bugs; bound the schedule.
 *
 * **Example**
 *
 * ```ts
 * import { ErrorPolicy, Executor } from "@pile/executor"
 * import { Effect, Schedule } from "effect"
 * import assert from "node:assert/strict"
 *
 * let calls = 0
 * const throwsOnce = Effect.sync(() => {
 *   if (++calls === 1) throw new Error("socket hang up")
 *   return "ok"
 * })
 *
 * const program = Effect.gen(function*() {
 *   const policy = ErrorPolicy.record.pipe(ErrorPolicy.withDefects(ErrorPolicy.retry(Schedule.recurs(2))))
 *   const executor = yield* Executor.make({ policy })
 *   const outcome = yield* (yield* executor.submit(throwsOnce)).outcome
 *   assert.deepEqual([outcome.kind, outcome.attempts], ["success", 2])
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
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
 * **Example**
 *
 * ```ts
 * import { ErrorPolicy } from "@pile/executor"
 * import { Data, Schedule } from "effect"
 * import assert from "node:assert/strict"
 *
 * class Timeout extends Data.TaggedError("Timeout")<{}> {}
 * class NotFound extends Data.TaggedError("NotFound")<{}> {}
 *
 * // Declared apart from byTag, e.g. to share them between policies; a missing tag is a compile error.
 * const cases: ErrorPolicy.Cases<Timeout | NotFound> = {
 *   Timeout: ErrorPolicy.retry(Schedule.recurs(3)),
 *   NotFound: ErrorPolicy.ignore
 * }
 * const policy = ErrorPolicy.byTag<Timeout | NotFound>()(cases)
 * assert.equal(policy.onFailure(new NotFound())._tag, "Ignore")
 * ```
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
 * **When to use**
 *
 * For a typed error union from an API client: one decision per kind of error (retry 429s and 5xxs, record
 * 400s), kept exhaustive as the union grows.
 *
 * **Details**
 *
 * Each tag gets its own policy, whose failure rule applies to errors of that tag. Defects are recorded,
 * unless the `defect` option gives a policy for them. An error whose tag is missing at run time (an untyped
 * error that slipped in) is recorded.
 *
 * **Gotchas**
 *
 * The two calls are needed: the first fixes `E`, the second checks the cases against it.
 *
 * **Example**
 *
 * ```ts
 * import { ErrorPolicy } from "@pile/executor"
 * import { Data, Schedule } from "effect"
 * import assert from "node:assert/strict"
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
 * assert.equal(policy.onFailure(new RateLimited({ retryAfter: 1000 }))._tag, "Retry")
 * assert.equal(policy.onFailure(new BadRequest())._tag, "Record")
 * ```
 *
 * @see when: decide from any predicate
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
 * **When to use**
 *
 * For errors without a `_tag` (HTTP statuses, error codes), or one test that cuts across tags.
 *
 * **Details**
 *
 * Failures go to `onTrue` or `onFalse` by the predicate; defects follow `onFalse`'s defect rule.
 *
 * **Gotchas**
 *
 * The predicate sees the typed error only; defects never reach it.
 *
 * **Example**
 *
 * ```ts
 * import { ErrorPolicy, Executor } from "@pile/executor"
 * import { Effect, Schedule } from "effect"
 * import assert from "node:assert/strict"
 *
 * let calls = 0
 * const call = Effect.suspend(() => ++calls === 1 ? Effect.fail({ status: 503 }) : Effect.fail({ status: 404 }))
 *
 * const program = Effect.gen(function*() {
 *   const policy = ErrorPolicy.when(
 *     (error: { status: number }) => error.status >= 500,
 *     ErrorPolicy.retry(Schedule.recurs(3)),
 *     ErrorPolicy.record
 *   )
 *   const executor = yield* Executor.make()
 *   const outcome = yield* (yield* executor.submit(call, { policy })).outcome
 *   // The 503 was retried; the 404 that followed was recorded.
 *   assert.deepEqual([outcome.kind, outcome.attempts], ["failure", 2])
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
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
 * **Example**
 *
 * ```ts
 * import { ErrorPolicy } from "@pile/executor"
 * import { Data, Duration } from "effect"
 * import assert from "node:assert/strict"
 *
 * class TooManyRequests extends Data.TaggedError("TooManyRequests")<ErrorPolicy.RetryAfter> {}
 *
 * const error = new TooManyRequests({ retryAfter: Duration.seconds(2) })
 * assert.equal(ErrorPolicy.retryAfterMillis(error), 2000)
 * ```
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
 * **When to use**
 *
 * To check that your error types are understood as retry-after errors, or to log the pause a failure will
 * cause.
 *
 * **Details**
 *
 * Reads a `retryAfter` field holding a `Duration` or a number of milliseconds; the executor uses the same
 * reading to delay a retry and to pause the task's key.
 *
 * **Gotchas**
 *
 * A negative, infinite or non-numeric value is ignored (`undefined`): the key is not paused.
 *
 * **Example**
 *
 * ```ts
 * import { ErrorPolicy } from "@pile/executor"
 * import { Duration } from "effect"
 * import assert from "node:assert/strict"
 *
 * assert.equal(ErrorPolicy.retryAfterMillis({ retryAfter: 1500 }), 1500)
 * assert.equal(ErrorPolicy.retryAfterMillis({ retryAfter: Duration.minutes(1) }), 60_000)
 * assert.equal(ErrorPolicy.retryAfterMillis({ retryAfter: -1 }), undefined)
 * assert.equal(ErrorPolicy.retryAfterMillis("no field"), undefined)
 * ```
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
 * **When to use**
 *
 * Rarely directly: it documents, and lets you test, the one exception to a `retry` policy.
 *
 * **Details**
 *
 * When an attempt fails with one of these, a `Retry` rule is replaced by `Record`: retrying a closed
 * executor or an open circuit would only spin (I21).
 *
 * **Gotchas**
 *
 * A task that submits to another executor sees that executor's `Closed` as its own typed failure: it is
 * recorded, not retried.
 *
 * **Example**
 *
 * ```ts
 * import { ErrorPolicy, Executor } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make()
 *   yield* executor.shutdown()
 *   const closed = yield* Effect.flip(executor.submit(Effect.void))
 *   assert.ok(ErrorPolicy.isNeverRetried(closed))
 *   assert.ok(!ErrorPolicy.isNeverRetried(new Error("timeout")))
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
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
