/**
 * The executor's own failures: one tagged error, `ExecutorError`, whose `reason` says what went wrong.
 *
 * A task's own error type never passes through here: it reaches the Pile untouched, inside the task's
 * `Exit`. `ExecutorError` is only for what the executor itself refuses or reports: a closed executor, a
 * full queue, an invalid option, a service that never became ready, an escalated failure.
 *
 * @since 0.1.0
 */
import type * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Predicate from "effect/Predicate"

/**
 * The executor is shutting down or has shut down: it accepts no more work.
 *
 * **When to use**
 *
 * Match it to stop producing work once the executor is going away, instead of treating it as a bug.
 *
 * **Details**
 *
 * From the moment shutdown begins (a `shutdown` call, the scope closing, an escalation), every `submit`,
 * `trySubmit`, `submitAll` and `start` fails with it, including submitters that were already waiting for
 * space (I6). A task still running during a drain cannot submit more work either. A batch (`run`) that
 * could not submit all its inputs delivers the outcomes of those it did, then fails with it.
 *
 * **Gotchas**
 *
 * `escalated` is true when an escalated failure closed the executor: the real error is then on `join`
 * (reason `Escalated`), not here.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, type ExecutorError } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make()
 *   yield* executor.shutdown()
 *   const error = yield* Effect.flip(executor.submit(Effect.void))
 *   assert.equal(error.reason._tag, "Closed")
 *   assert.equal((error.reason as ExecutorError.Closed).escalated, false)
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class Closed extends Data.TaggedClass("Closed")<{
  /** Whether the executor closed because a failure was escalated (rather than by `shutdown` or scope close). */
  readonly escalated: boolean
}> {
  get message(): string {
    return this.escalated
      ? "the executor was closed by an escalated failure and accepts no more work"
      : "the executor is shut down and accepts no more work"
  }
}

/**
 * `trySubmit` found the queue full. `submit` would have waited instead.
 *
 * **When to use**
 *
 * Load shedding at the edge: answer "busy, try later" (an HTTP 503) instead of making the caller wait.
 *
 * **Details**
 *
 * Only `trySubmit` fails with it, and only with the strategy `"suspend"` (the default); with `"dropping"`
 * and `"sliding"` a full queue never refuses a submission. The task was not accepted: it has no handle and
 * no outcome, and `stats.rejected` counts it.
 *
 * **Gotchas**
 *
 * The queue counts tasks that have not started yet, including those waiting in a key's line for their first
 * rate budget, so it can be full while fewer than `capacity` tasks show as `queued`.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, type ExecutorError } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ concurrency: 1, capacity: 1 })
 *   yield* executor.submit(Effect.never) // running
 *   yield* Effect.yieldNow
 *   yield* executor.submit(Effect.never) // queued: the queue is full
 *   const error = yield* Effect.flip(executor.trySubmit(Effect.void))
 *   assert.equal(error.reason._tag, "QueueFull")
 *   assert.equal((error.reason as ExecutorError.QueueFull).capacity, 1)
 *   yield* executor.shutdown({ mode: "cancel" })
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class QueueFull extends Data.TaggedClass("QueueFull")<{
  /** The queue's capacity, the number of tasks it held when the submission was refused. */
  readonly capacity: number
}> {
  get message(): string {
    return `the queue is full (capacity ${this.capacity})`
  }
}

/**
 * An option given to `make`, `layer`, `submit` or `resize` is out of range.
 *
 * **When to use**
 *
 * Surface configuration mistakes (an environment variable that parsed to 0) with the option's path and the
 * value that was given.
 *
 * **Details**
 *
 * Options are checked before anything starts: `make` fails with it and forks nothing. A bad per-task option
 * fails that `submit` only (the submission counts as rejected); in a batch it fails the batch's Pile.
 * `option` is a path such as `"limits[2].window"`.
 *
 * **Gotchas**
 *
 * `value` is a rendering of what was given (a string), not the value itself.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, type ExecutorError } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const error = yield* Effect.flip(Executor.make({ concurrency: 0 }))
 *   const reason = error.reason as ExecutorError.InvalidOption
 *   assert.deepEqual([reason.option, reason.value, reason.expected], ["concurrency", "0", "an integer >= 1"])
 *   assert.equal(error.message, "invalid option concurrency: got 0, expected an integer >= 1")
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class InvalidOption extends Data.TaggedClass("InvalidOption")<{
  /** The option's path, e.g. `"concurrency"` or `"shutdown.grace"`. */
  readonly option: string
  /** What was given, rendered for the message. */
  readonly value: string
  /** What is allowed, e.g. `"an integer >= 1"`. */
  readonly expected: string
}> {
  get message(): string {
    return `invalid option ${this.option}: got ${this.value}, expected ${this.expected}`
  }
}

/**
 * A service started with `start` ended, successfully, before it signalled readiness.
 *
 * **When to use**
 *
 * Match it to tell "the service forgot to call `ready`" from the service's own failures, which `start`
 * raises with their own type.
 *
 * **Details**
 *
 * `start` fails with it instead of waiting forever for a readiness signal that can no longer come (I17).
 * Nothing of the service is left running.
 *
 * **Gotchas**
 *
 * A service that fails before readiness fails `start` with its own error, not with this reason.
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
 *   // This service returns without calling `ready`.
 *   const error = yield* Effect.flip(executor.start(() => Effect.void, { name: "cache" }))
 *   assert.ok(error._tag === "ExecutorError" && error.reason._tag === "ServiceNotReady")
 *   assert.equal(error.message, `the service "cache" ended before it signalled readiness`)
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class ServiceNotReady extends Data.TaggedClass("ServiceNotReady")<{
  readonly service: string
}> {
  get message(): string {
    return `the service "${this.service}" ended before it signalled readiness`
  }
}

/**
 * A failure was escalated (by an error policy, or by a supervised service that exhausted its restarts):
 * the executor stopped admission, cancelled its work, and raises the failure to its owner.
 *
 * **When to use**
 *
 * Fail fast: catch it on `join`, `Executor.scoped` or a batch's Pile, and read `cause` for the original
 * failure.
 *
 * **Details**
 *
 * After an escalation the executor goes straight to cancelling: every other task ends as `"interrupted"`,
 * `join` and the executor-wide Pile fail with this reason, a batch's Pile delivers every outcome and then
 * fails with it, and submissions fail with `Closed` (`escalated: true`). `source` is `"task <id>"`, a service
 * name, or `"executor"` when the executor's own dispatcher died (I16).
 *
 * **Gotchas**
 *
 * The escalating task's outcome is still its own `"failure"` or `"defect"`; `Escalated` is what the owner
 * sees, not what the task's handle sees.
 *
 * **Example**
 *
 * ```ts
 * import { ErrorPolicy, Executor, type ExecutorError } from "@pile/executor"
 * import { Cause, Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ policy: ErrorPolicy.escalate })
 *   const sibling = yield* executor.submit(Effect.never)
 *   yield* executor.submit(Effect.fail("fatal"))
 *   const error = yield* Effect.flip(executor.join)
 *   const reason = error.reason as ExecutorError.Escalated
 *   assert.equal(reason._tag, "Escalated")
 *   assert.equal(reason.source, "task 2")
 *   assert.equal(Cause.squash(reason.cause), "fatal")
 *   assert.equal((yield* sibling.outcome).kind, "interrupted")
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class Escalated extends Data.TaggedClass("Escalated")<{
  /** Who escalated: a task id, a service name, or `"executor"` for a failure of the executor's own machinery. */
  readonly source: string
  /** The failure, as the task or service produced it. */
  readonly cause: Cause.Cause<unknown>
}> {
  get message(): string {
    return `a failure of ${this.source} was escalated: the executor stopped`
  }
}

/**
 * A task's cost exceeds a limit it must fit in: it could never be admitted, so it fails at once.
 *
 * **When to use**
 *
 * Catch it to split or shorten work that is too big for a budget (a prompt larger than the tokens-per-minute
 * limit), instead of letting it wait forever.
 *
 * **Details**
 *
 * `submit` and `trySubmit` fail with it before accepting the task. In a batch, the input's task is accepted
 * and ends at once as `"rejected"`, with this reason in `outcome.rejection`, so one oversized input does not
 * stop the batch. `capacity` is the most one task may claim: the limit (or the burst of a token bucket).
 *
 * **Gotchas**
 *
 * `key` is `""` for a task without a key.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, type ExecutorError } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ limits: [{ budget: "tokens", limit: 100, window: "1 minute" }] })
 *   const error = yield* Effect.flip(executor.submit(Effect.void, { cost: { tokens: 101 } }))
 *   const reason = error.reason as ExecutorError.CostOverLimit
 *   assert.equal(reason._tag, "CostOverLimit")
 *   assert.deepEqual([reason.cost, reason.capacity], [101, 100])
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class CostOverLimit extends Data.TaggedClass("CostOverLimit")<{
  readonly key: string
  readonly limit: string
  readonly cost: number
  readonly capacity: number
}> {
  get message(): string {
    return `cost ${this.cost} exceeds the limit ${this.limit} of key "${this.key}" (at most ${this.capacity} per window)`
  }
}

/**
 * The circuit breaker of the task's key is open: the task was not run.
 *
 * **When to use**
 *
 * Read it from a `"rejected"` outcome's `rejection` to report "the service is down" and when to try again.
 *
 * **Details**
 *
 * With the `circuitBreaker` option and `whenOpen: "reject"` (the default), a task whose key's circuit is open
 * ends as `"rejected"` with this reason; the rejected attempt does not count in `attempts`, and its rate
 * budget is refunded. Tasks of other keys keep running. It is never retried by an error policy.
 *
 * **Gotchas**
 *
 * It appears in `outcome.rejection`, not in the task's `exit` (an interruption) and not as a failure of
 * `submit`.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, type ExecutorError } from "@pile/executor"
 * import { Effect } from "effect"
 * import { CircuitBreaker } from "effect/persistence"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({
 *     concurrency: 1,
 *     circuitBreaker: { tripPolicy: CircuitBreaker.consecutive(1), openDuration: "1 minute" }
 *   })
 *   yield* (yield* executor.submit(Effect.fail("down"), { key: "payments" })).await // trips the circuit
 *   const outcome = yield* (yield* executor.submit(Effect.succeed("paid"), { key: "payments" })).outcome
 *   assert.equal(outcome.kind, "rejected")
 *   assert.equal(outcome.attempts, 0)
 *   const reason = outcome.rejection?.reason as ExecutorError.CircuitOpen
 *   assert.equal(reason._tag, "CircuitOpen")
 *   assert.equal(reason.key, "payments")
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class CircuitOpen extends Data.TaggedClass("CircuitOpen")<{
  readonly key: string
  /** When the breaker will let a probe through again. */
  readonly retryAfter: Duration.Duration
}> {
  get message(): string {
    return `the circuit of key "${this.key}" is open (retry after ${Duration.format(this.retryAfter)})`
  }
}

/**
 * Every reason an `ExecutorError` can carry.
 *
 * **Example**
 *
 * ```ts
 * import type { ExecutorError } from "@pile/executor"
 * import assert from "node:assert/strict"
 *
 * // One message per reason, checked for exhaustiveness by the compiler.
 * const explain = (reason: ExecutorError.Reason): string => {
 *   switch (reason._tag) {
 *     case "Closed":
 *       return "shutting down"
 *     case "QueueFull":
 *       return `busy (${reason.capacity} queued)`
 *     case "InvalidOption":
 *       return `bad option ${reason.option}`
 *     case "ServiceNotReady":
 *       return `service ${reason.service} never became ready`
 *     case "Escalated":
 *       return `stopped by ${reason.source}`
 *     case "CostOverLimit":
 *       return `too expensive: ${reason.cost} > ${reason.capacity}`
 *     case "CircuitOpen":
 *       return `circuit ${reason.key} open`
 *   }
 * }
 * assert.equal(explain({ _tag: "QueueFull", capacity: 8 } as ExecutorError.Reason), "busy (8 queued)")
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type Reason = Closed | QueueFull | InvalidOption | ServiceNotReady | Escalated | CostOverLimit | CircuitOpen

/**
 * The executor's own failure. Match on `reason._tag`, or use `Effect.catchReason("ExecutorError", "QueueFull", f)`.
 *
 * **When to use**
 *
 * Catch it around `submit`, `trySubmit`, `make` and the batch form; it never appears inside a task's `Exit`.
 *
 * **Details**
 *
 * One error type with a `reason` union (`Reason`), so a caller handles "the executor refused" in one place
 * and the task's own error type `E` stays untouched in the Pile. Its `message` is the reason's message.
 * Besides failing calls, it appears as `outcome.rejection` of a `"rejected"` outcome.
 *
 * **Gotchas**
 *
 * A task that itself fails with an `ExecutorError` (for example one that submits to a closed executor) has
 * it as its own typed error: error policies never retry `Closed` and `CircuitOpen` (`isNeverRetried`).
 *
 * **Example**
 *
 * ```ts
 * import { Executor } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ capacity: 1, concurrency: 1 })
 *   yield* executor.submit(Effect.never)
 *   yield* Effect.yieldNow // the first task starts; the second fills the queue
 *   yield* executor.submit(Effect.never)
 *   const answer = yield* executor.trySubmit(Effect.succeed("accepted")).pipe(
 *     Effect.map(() => "accepted"),
 *     Effect.catchReason("ExecutorError", "QueueFull", (reason) => Effect.succeed(`busy: ${reason.capacity} queued`))
 *   )
 *   assert.equal(answer, "busy: 1 queued")
 *   yield* executor.shutdown({ mode: "cancel" })
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class ExecutorError extends Data.TaggedError("ExecutorError")<{
  readonly reason: Reason
}> {
  override get message(): string {
    return this.reason.message
  }
}

/**
 * Whether a value is an `ExecutorError`.
 *
 * **When to use**
 *
 * In code that receives `unknown` errors (a `Cause.squash`, a rejected promise from `Effect.runPromise`) and
 * must tell the executor's refusals from everything else.
 *
 * **Details**
 *
 * Checks the `_tag` `"ExecutorError"`, so it also recognises errors from another copy of the package.
 *
 * **Gotchas**
 *
 * It says nothing about the reason; check `reason._tag` next.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, ExecutorError } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const failure = await Effect.runPromise(Effect.flip(Effect.scoped(Executor.make({ capacity: -1 }))))
 * assert.ok(ExecutorError.isExecutorError(failure))
 * assert.ok(!ExecutorError.isExecutorError(new Error("something else")))
 * ```
 *
 * @category guards
 * @since 0.1.0
 */
export const isExecutorError = (u: unknown): u is ExecutorError => Predicate.isTagged(u, "ExecutorError")

/** @internal */
export const closed = (escalated: boolean): ExecutorError => new ExecutorError({ reason: new Closed({ escalated }) })

/** @internal */
export const invalidOption = (option: string, value: unknown, expected: string): ExecutorError =>
  new ExecutorError({ reason: new InvalidOption({ option, value: render(value), expected }) })

const render = (value: unknown): string => {
  if (typeof value === "string") return JSON.stringify(value)
  if (typeof value === "number" || typeof value === "bigint" || typeof value === "boolean") return String(value)
  if (value === undefined) return "undefined"
  if (value === null) return "null"
  if (Duration.isDuration(value)) return Duration.format(value)
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}
