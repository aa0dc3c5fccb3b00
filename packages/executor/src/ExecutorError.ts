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
 * **Example**
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Executor, ExecutorError } from "@pile/executor"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ capacity: 1, concurrency: 1 })
 *   yield* executor.submit(Effect.never)
 *   yield* executor.submit(Effect.never)
 *   return yield* executor.trySubmit(Effect.void).pipe(Effect.flip)
 * }).pipe(Effect.scoped)
 *
 * // fails fast: the reason carries the capacity
 * // (await Effect.runPromise(program)).reason._tag === "QueueFull"
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
