/**
 * The executor: a long-lived service that takes tasks through a bounded queue, runs them under a concurrency
 * cap, contains their failures, and delivers every outcome, in completion order, to a Pile.
 *
 * Its whole life is one `Scope`: `make` needs one, and closing it shuts the executor down (drain, then cancel
 * after a grace period). `layer` provides it as a service.
 *
 * The contract in short: tasks start first come, first served, within the concurrency cap and rate limits;
 * outcomes come out in completion order; `submit` suspends only while the queue is full; a task is owned by
 * the executor, not by the fiber that submitted it, so interrupting a submitter or a waiter never cancels a
 * task (its handle's `cancel` does); closing the scope drains (or cancels) and returns only once every task
 * has its outcome and every fiber the executor forked has ended. docs/concepts/concurrency-contract.md states
 * it for every entry point.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import type { CircuitBreaker } from "effect/persistence"
import * as Result from "effect/Result"
import type * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as ErrorPolicy from "./ErrorPolicy.ts"
import * as ExecutorError from "./ExecutorError.ts"
import * as Batch from "./internal/batch.ts"
import {
  type Config as EngineConfig,
  costOverLimit,
  makeBreaker,
  type Phase,
  resolve,
  resolveShutdown,
  type ShutdownMode,
  Specs,
  type Strategy
} from "./internal/config.ts"
import { Engine } from "./internal/engine.ts"
import { Instruments } from "./internal/instruments.ts"
import * as Check from "./internal/options.ts"
import { Services } from "./internal/services.ts"
import * as Observation from "./internal/stats.ts"
import type * as Outcome from "./Outcome.ts"
import type { Pile } from "./Pile.ts"
import * as RateLimit from "./RateLimit.ts"

// ---------------------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------------------

/**
 * Options of `make` and `layer`. Every field is optional; a bad value fails `make` with an `ExecutorError`
 * whose reason is `InvalidOption`.
 *
 * **Example**
 *
 * ```ts
 * import { ErrorPolicy, Executor } from "@pile/executor"
 * import { Effect, Schedule } from "effect"
 * import assert from "node:assert/strict"
 *
 * const options: Executor.Options = {
 *   name: "crawler",
 *   concurrency: 8, // at most 8 tasks run at once
 *   capacity: 100, // at most 100 wait to start; submit suspends beyond that
 *   limits: [{ perKey: true, limit: 10, window: "1 second" }], // 10 per second for each host
 *   policy: ErrorPolicy.retry(Schedule.exponential("100 millis").pipe(Schedule.upTo({ times: 3 }))),
 *   timeout: "30 seconds", // per attempt
 *   shutdown: { mode: "drain", grace: "10 seconds" } // what closing the scope does
 * }
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make(options)
 *   const stats = yield* executor.stats
 *   assert.deepEqual([executor.name, stats.concurrency, stats.capacity], ["crawler", 8, 100])
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Options<in E = unknown> {
  /** A name for logs, metrics and errors. Default `"executor"`. */
  readonly name?: string | undefined
  /** Queue capacity Q: at most this many tasks wait to start (I13). An integer >= 1. Default 1024. */
  readonly capacity?: number | undefined
  /** Concurrency cap C: at most this many tasks run at once (I10). An integer >= 1. Default 16. */
  readonly concurrency?: number | undefined
  /**
   * What `submit` does when the queue is full: `"suspend"` (the default) waits for space; `"dropping"` accepts
   * the new task and ends it at once as `"dropped"`; `"sliding"` evicts the oldest queued task (its outcome is
   * `"evicted"`) to make room.
   */
  readonly strategy?: Strategy | undefined
  /** What closing the executor's scope does. Default: drain, with a 30 second grace period. */
  readonly shutdown?: ShutdownOptions | undefined
  /**
   * How long shutdown waits for interrupted tasks and services (and their finalizers) to stop before it
   * abandons them and records them as interrupted. Default 10 seconds.
   */
  readonly finalizerTimeout?: Duration.Input | undefined
  /**
   * The executor-wide Pile's buffer. `"read"` (the default) keeps outcomes from the moment `pile` is first
   * read (its stream made, even before it runs), unbounded, until they are read; before that, outcomes go to their handles only (an
   * executor used through handles alone holds none). `"unbounded"` keeps every outcome from the start, read
   * or not (read the Pile after the fact, e.g. after `submitAll`). `{ capacity }` keeps every outcome from the
   * start, bounded: a finished task whose outcome finds the buffer full keeps its concurrency slot until the
   * consumer makes room (backpressure from consumer to producers). `"none"` keeps no outcomes and makes
   * reading `pile` a defect. See docs/decisions/0005-pile-keeps-outcomes-once-read.md.
   */
  readonly pile?: "read" | "unbounded" | "none" | { readonly capacity: number } | undefined
  /** The error policy of every task that does not set its own. Default `ErrorPolicy.record`. */
  readonly policy?: ErrorPolicy.ErrorPolicy<E> | undefined
  /** A time limit per attempt for every task that does not set its own: the attempt is interrupted. */
  readonly timeout?: Duration.Input | undefined
  /**
   * A deadline per task, from its submission, across queue wait, rate waits, attempts and retries (I18), for
   * every task that does not set its own. When it passes the task is interrupted; its outcome is `"timedOut"`.
   */
  readonly deadline?: Duration.Input | undefined
  /**
   * Effect metrics (`pile_*`, with an `executor` attribute), read from the executor's ledger whenever they are
   * scraped. Default `true`: executor-wide series only (no `key` label, so the series count never grows with
   * the keys). `{ keys: n }` adds per-key counters for at most n keys at a time (14 series each), the others
   * counted under `key="other"`; a key idle for a sweep period (1 s to 1 min) loses its series, its counts
   * going to `other`. See the observability guide for what each choice costs.
   */
  readonly metrics?: boolean | { readonly keys?: number | undefined } | undefined
  /**
   * One span per attempt (`pile.task`), parented to the submitter's span. Default `"auto"`: only when the
   * submitter installed a tracer (Effect's default tracer records spans no one exports, at a cost per task).
   */
  readonly tracing?: boolean | "auto" | undefined
  /** Rate limits: budgets per key, reserved together before each attempt starts (see `RateLimit`). */
  readonly limits?: ReadonlyArray<RateLimit.Limit> | undefined
  /** Where rate budgets are kept: a fresh in-memory store by default, or a shared one (Redis). */
  readonly store?: RateLimit.RateLimitStore | undefined
  /**
   * Circuit breaking per key, on Effect's `CircuitBreaker`: while a key's circuit is open, its tasks are not
   * run; they end as `"rejected"` with reason `CircuitOpen` (`whenOpen: "reject"`, the default) or wait until
   * it may close (`whenOpen: "wait"`). Give a `breaker`, or a `tripPolicy` and `openDuration` to make one
   * with an in-memory store (defaults: 5 consecutive failures, 30 seconds).
   */
  readonly circuitBreaker?: {
    readonly breaker?: CircuitBreaker.CircuitBreaker | undefined
    readonly tripPolicy?: CircuitBreaker.TripPolicy | undefined
    readonly openDuration?: Duration.Input | undefined
    readonly whenOpen?: "reject" | "wait" | undefined
    /**
     * How long the breaker keeps the state of a key it has not seen (Effect's memory store
     * `idleTimeToLive`): a dropped key starts again closed. Default 5 minutes. Ignored with `breaker`.
     */
    readonly idleTimeToLive?: Duration.Input | undefined
  } | undefined
}

/**
 * Per-task options of `submit` and `trySubmit`; each overrides the executor's default.
 *
 * **Example**
 *
 * ```ts
 * import { ErrorPolicy, Executor } from "@pile/executor"
 * import { Effect, Exit, Schedule } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({
 *     limits: [{ key: "gpt", budget: "tokens", limit: 100_000, window: "1 minute" }]
 *   })
 *   const options: Executor.TaskOptions<{ readonly tokens: number }, string> = {
 *     key: "gpt", // the key's budgets and 429 pauses apply
 *     cost: { tokens: 2_000 }, // an estimate, reserved before the task starts
 *     settle: (exit) => (Exit.isSuccess(exit) ? { tokens: exit.value.tokens } : undefined), // the real cost
 *     policy: ErrorPolicy.retry(Schedule.recurs(2)),
 *     timeout: "10 seconds", // per attempt
 *     deadline: "1 minute" // for the whole task, from submission
 *   }
 *   const handle = yield* executor.submit(Effect.succeed({ tokens: 1_234 }), options)
 *   assert.equal((yield* handle.join).tokens, 1_234)
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface TaskOptions<in out A, in out E> {
  /** The task's key: its rate budgets and its pause after a 429 are per key. */
  readonly key?: string | undefined
  /** The task's cost per budget (`{ tokens: 1200 }`); `requests` defaults to 1. */
  readonly cost?: RateLimit.Cost | undefined
  /** Extra limits for this task, on top of the executor's. Equal declarations share one budget. */
  readonly limits?: ReadonlyArray<RateLimit.Limit> | undefined
  /**
   * The task's actual cost, known once an attempt ended (e.g. `usage.total_tokens` of an LLM response):
   * the difference with the reserved cost is refunded or charged to the window it was reserved in.
   */
  readonly settle?: ((exit: Exit.Exit<A, E>) => RateLimit.Cost | undefined) | undefined
  /** The task's error policy, instead of the executor's. */
  readonly policy?: ErrorPolicy.ErrorPolicy<E> | undefined
  /** A time limit per attempt, instead of the executor's: the attempt is interrupted, the task `"timedOut"`. */
  readonly timeout?: Duration.Input | undefined
  /** A deadline from submission across queue wait, rate waits, attempts and retries (I18). */
  readonly deadline?: Duration.Input | undefined
}

/**
 * How to shut down.
 *
 * - `"drain"` stops admission, lets every queued and running task finish, and after `grace` cancels the rest.
 * - `"cancel"` stops admission and interrupts everything now.
 *
 * Given to `shutdown`, or to `make` as what closing the scope does (default: drain, 30 second grace).
 *
 * **Example**
 *
 * ```ts
 * import { Executor, type Outcome } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ concurrency: 1 })
 *   const running = yield* executor.submit(Effect.never)
 *   const queued = yield* executor.submit(Effect.succeed("never started"))
 *   const options: Executor.ShutdownOptions = { mode: "cancel" }
 *   yield* executor.shutdown(options)
 *   const kinds: Array<Outcome.Kind> = [(yield* running.outcome).kind, (yield* queued.outcome).kind]
 *   assert.deepEqual(kinds, ["interrupted", "interrupted"])
 *   assert.equal((yield* queued.outcome).attempts, 0)
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface ShutdownOptions {
  /** `"drain"` (finish accepted work, within `grace`) or `"cancel"` (interrupt everything now). */
  readonly mode?: ShutdownMode | undefined
  /** The longest a drain may take before what is left is cancelled. Default 30 seconds. */
  readonly grace?: Duration.Input | undefined
}

/**
 * The handle of a submitted task.
 *
 * **Details**
 *
 * The handle observes the task; it does not own it. Waiting on it (`outcome`, `await`, `join`) never affects
 * the task: interrupting a fiber that waits only stops that wait. `cancel` is the only way to stop one task.
 * Every waiter gets the same outcome, once it is decided.
 *
 * **Example**
 *
 * ```ts
 * import { Executor } from "@pile/executor"
 * import { Effect, Exit } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make()
 *   const handle = yield* executor.submit(Effect.as(Effect.sleep("10 millis"), 42))
 *   assert.equal(yield* handle.poll, undefined) // not finished yet; poll does not wait
 *   assert.equal(yield* handle.join, 42) // waits, then succeeds or fails as the task did
 *   assert.deepEqual(yield* handle.await, Exit.succeed(42))
 *   assert.equal((yield* handle.poll)?.kind, "success")
 *   yield* handle.cancel // finished already: nothing happens
 *   assert.equal((yield* handle.outcome).kind, "success")
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface TaskHandle<A, E> {
  /** The task's id, unique within the executor, increasing in the order tasks are accepted (a submitter that waited for room takes its id when it is let in). */
  readonly id: number
  /** Waits for the task's outcome (its `Exit` with how it ended and after how many attempts). Never fails. */
  readonly outcome: Effect.Effect<Outcome.Outcome<A, E, undefined>>
  /** Waits for the task's `Exit`. Never fails. */
  readonly await: Effect.Effect<Exit.Exit<A, E>>
  /** Waits for the task and succeeds or fails as it did (an interruption interrupts the caller). */
  readonly join: Effect.Effect<A, E>
  /**
   * Cancels the task and waits until it has stopped. A queued task ends at once; a running one is interrupted
   * and its finalizers run. Its outcome is `"cancelled"`, unless it had already finished. Idempotent.
   */
  readonly cancel: Effect.Effect<void>
  /** The outcome if the task has finished, without waiting. */
  readonly poll: Effect.Effect<Outcome.Outcome<A, E, undefined> | undefined>
}

/**
 * A plain snapshot of the executor's state. The numbers always add up (I15):
 * `submitted = accepted + rejected` and `accepted = queued + waiting + running + finished`.
 *
 * **Example**
 *
 * ```ts
 * import { Executor } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ concurrency: 1 })
 *   yield* executor.submit(Effect.never)
 *   yield* executor.submit(Effect.void)
 *   yield* Effect.yieldNow // let the dispatcher start the first task
 *   const stats: Executor.Stats = yield* executor.stats
 *   assert.deepEqual([stats.phase, stats.running, stats.queued, stats.finished], ["open", 1, 1, 0])
 *   assert.equal(stats.submitted, stats.accepted + stats.rejected)
 *   assert.equal(stats.accepted, stats.queued + stats.waiting + stats.running + stats.finished)
 *   yield* executor.shutdown({ mode: "cancel" })
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Stats {
  /** `"open"`, `"draining"`, `"cancelling"` or `"closed"` (see docs/lifecycle.md). */
  readonly phase: Phase
  /** Submissions decided so far: accepted or rejected. */
  readonly submitted: number
  /** Submissions taken in: each has a handle and will have exactly one outcome (I1). */
  readonly accepted: number
  /** Submissions refused with an error (closed, queue full): they have no handle and no outcome. */
  readonly rejected: number
  /** Tasks in the queue. */
  readonly queued: number
  /** Tasks out of the queue that wait before they can start (a retry delay, a rate budget, a paused key). */
  readonly waiting: number
  /** Of `waiting`, the tasks waiting for a retry delay (the rest wait for a rate budget or a paused key). */
  readonly retrying: number
  /** Tasks whose fiber is running. */
  readonly running: number
  /** Tasks with an outcome. */
  readonly finished: number
  /** `finished`, by outcome kind. */
  readonly outcomes: Readonly<Record<Outcome.Kind, number>>
  /** Submitters waiting for space in the queue. */
  readonly blockedSubmitters: number
  /** The most tasks the queue ever held. */
  readonly peakQueued: number
  /** The queue capacity Q. */
  readonly capacity: number
  /** The concurrency cap C, as last set by `make` or `resize`. */
  readonly concurrency: number
  /**
   * Outcomes in the executor-wide Pile's buffer, not yet read, including the deliveries of finished tasks that
   * wait for room in a bounded Pile (those tasks keep their slots until their outcome enters).
   */
  readonly pileBuffered: number
  /** Tasks whose fibers did not stop within `finalizerTimeout` at shutdown. */
  readonly abandoned: number
  /** Attempts that were retried (each retry is a new attempt). */
  readonly retries: number
  /** Times a key was paused by a failure carrying retry-after (a 429). */
  readonly pauses: number
  /** Services started with `start` that are running, and how many times they were restarted. */
  readonly services: { readonly running: number; readonly restarts: number }
}

/**
 * Options of `progress`.
 *
 * **Example**
 *
 * ```ts
 * import { Executor } from "@pile/executor"
 * import { Effect, Stream } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make()
 *   const options: Executor.ProgressOptions = { interval: "10 millis" }
 *   const snapshots = yield* Stream.runCollect(Stream.take(executor.progress(options), 3))
 *   assert.equal(snapshots.length, 3)
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface ProgressOptions {
  /** Time between snapshots. Default 1 second. */
  readonly interval?: Duration.Input | undefined
}

/**
 * A progress snapshot: the stats, plus time and throughput.
 *
 * **Example**
 *
 * ```ts
 * import { Executor } from "@pile/executor"
 * import { Effect, Stream } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make()
 *   const [first, second]: ReadonlyArray<Executor.Progress> = yield* Stream.runCollect(
 *     Stream.take(executor.progress({ interval: "20 millis" }), 2)
 *   )
 *   assert.equal(first!.elapsed, 0)
 *   assert.equal(first!.throughput, 0) // no previous snapshot
 *   assert.ok(second!.at > first!.at)
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Progress extends Stats {
  /** When the snapshot was taken (ms on the executor's clock). */
  readonly at: number
  /** Milliseconds since the first snapshot of this stream. */
  readonly elapsed: number
  /** Tasks finished per second since the previous snapshot (0 for the first). */
  readonly throughput: number
}

/**
 * Options of `start`.
 *
 * **Example**
 *
 * ```ts
 * import { Executor } from "@pile/executor"
 * import { Effect, Schedule } from "effect"
 * import assert from "node:assert/strict"
 *
 * let runs = 0
 * // Ready at once; fails after readiness the first time it runs, then keeps running.
 * const listener = (ready: (port: number) => Effect.Effect<void>) =>
 *   Effect.andThen(ready(8080), Effect.suspend(() => (++runs === 1 ? Effect.fail("connection lost") : Effect.never)))
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make()
 *   const options: Executor.ServiceOptions = { name: "listener", restart: Schedule.recurs(3) }
 *   const service = yield* executor.start(listener, options)
 *   assert.equal(service.value, 8080)
 *   yield* Effect.sleep("10 millis")
 *   assert.deepEqual((yield* executor.stats).services, { running: 1, restarts: 1 })
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface ServiceOptions {
  /** The service's name, for errors and escalations. Default `"service-<n>"`. */
  readonly name?: string | undefined
  /**
   * Restart the service when it fails after it became ready (Erlang's one-for-one), on this schedule. When
   * the schedule is exhausted, or when there is none, a failure after readiness is escalated.
   */
  readonly restart?: Schedule.Schedule<unknown, unknown> | undefined
}

/**
 * A running service.
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
 *   const service: Executor.ServiceHandle<string> = yield* executor.start(
 *     (ready: (status: string) => Effect.Effect<void>) => Effect.andThen(ready("listening"), Effect.never),
 *     { name: "heartbeat" }
 *   )
 *   assert.deepEqual([service.name, service.value], ["heartbeat", "listening"])
 *   yield* service.stop
 *   assert.equal((yield* executor.stats).services.running, 0)
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface ServiceHandle<V> {
  /** The service's name, from `ServiceOptions.name` or `"service-<n>"`. */
  readonly name: string
  /** The value the service passed to `ready`. */
  readonly value: V
  /** Interrupts the service and waits for it to stop. */
  readonly stop: Effect.Effect<void>
}

/**
 * Options of the batch form `run`.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, Pile } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ limits: [{ perKey: true, limit: 100, window: "1 second" }] })
 *   const options: Executor.RunOptions<string, number, never> = {
 *     key: (url) => new URL(url).host, // each host gets its own 100 per second
 *     buffer: 16, // at most 16 unread outcomes before finished tasks hold their slots
 *     timeout: "5 seconds"
 *   }
 *   const lengths = yield* Pile.collect(
 *     executor.run(["https://a.example/x", "https://b.example/yy"], (url) => Effect.succeed(url.length), options)
 *   )
 *   assert.deepEqual(lengths, [19, 20])
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface RunOptions<in out I, in out A, in out E> {
  /**
   * Capacity of the batch's Pile buffer: when it is full, finished tasks keep their slots until the consumer
   * reads (end-to-end backpressure). Default 256.
   */
  readonly buffer?: number | undefined
  /** Each input's key. */
  readonly key?: ((input: I) => string | undefined) | undefined
  /** Each input's cost. A cost over a limit ends that input's task at once as `"rejected"` (`CostOverLimit`). */
  readonly cost?: ((input: I) => RateLimit.Cost | undefined) | undefined
  /** Extra limits for the batch's tasks, on top of the executor's. */
  readonly limits?: ReadonlyArray<RateLimit.Limit> | undefined
  /** Each input's actual cost once an attempt ended (see `TaskOptions.settle`). */
  readonly settle?: ((exit: Exit.Exit<A, E>, input: I) => RateLimit.Cost | undefined) | undefined
  /** The batch's error policy, instead of the executor's. */
  readonly policy?: ErrorPolicy.ErrorPolicy<E> | undefined
  /** A time limit per attempt. */
  readonly timeout?: Duration.Input | undefined
  /** A deadline per task, from its submission. */
  readonly deadline?: Duration.Input | undefined
}

/**
 * The executor. `A` and `E` bound what tasks may return and fail with; the service provided by `layer` is an
 * `Executor<unknown, unknown>`, and each `submit` keeps its task's own types in the handle.
 *
 * **Details**
 *
 * Two ways in, two ways out:
 *
 * - `submit` / `trySubmit` / `submitAll` for work that arrives over time (a service); each task's outcome goes
 *   to its handle and to the executor-wide `pile`.
 * - `run(inputs, f)` for a batch; its outcomes go to the batch's own Pile, which is the stream it returns.
 *
 * Both share the executor's queue, concurrency cap, rate limits and error policy. Each member below states its
 * concurrency contract: the order of results, what suspends, what interruption does, what shutdown does.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, Pile } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * // Library code takes the executor as a parameter (or from the context) and never owns its lifetime.
 * const lengths = (executor: Executor.Executor, words: ReadonlyArray<string>) =>
 *   Pile.collect(executor.run(words, (word) => Effect.succeed(word.length)))
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ concurrency: 2 })
 *   assert.deepEqual(yield* lengths(executor, ["a", "bb", "ccc"]), [1, 2, 3])
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Executor<A = unknown, E = unknown> {
  /** The `name` option: in metrics (`executor` attribute), spans and messages. */
  readonly name: string
  /**
   * Puts a task in the queue, waiting while the queue is full, and returns its handle once accepted.
   *
   * **When to use**
   *
   * For work that arrives over time from many fibers (requests of a server, messages of a consumer), when
   * each caller wants its own task's result. For a known list of inputs, `run` is simpler.
   *
   * **Details**
   *
   * - Suspends while the queue is full (strategy `"suspend"`); never waits with `"dropping"` or `"sliding"`.
   *   Waiting submitters get places in the order they came (I11).
   * - Interrupting a waiting submitter leaves nothing queued.
   * - Fails with `ExecutorError` `Closed` once shutdown has begun (I6), even for a submitter already waiting,
   *   and for a task that submits while the executor drains.
   * - Succeeds as soon as the task is accepted, not when it finishes: wait on the handle for that. Tasks
   *   start in submission order, as slots and rate budgets allow.
   * - The task runs later, in its own fiber, with the services of the submitter (its context is captured
   *   here), including its tracer and clock.
   * - The task belongs to the executor, not to the submitter: interrupting the submitting fiber afterwards
   *   does not cancel it (use the handle's `cancel`). When the executor's scope closes, it is drained or
   *   cancelled with everything else, and always gets an outcome.
   * - The task's failure or defect becomes its outcome; nothing else notices (I4).
   *
   * **Gotchas**
   *
   * Every outcome also goes to the executor-wide `pile`, which by default keeps outcomes only once someone has
   * started reading it: an executor used through handles alone holds no outcome. Start the reader before the
   * work (or make the executor with `pile: "unbounded"`) to see every outcome in the Pile too.
   *
   * **Example**
   *
   * ```ts
   * import { Executor } from "@pile/executor"
   * import { Context, Effect } from "effect"
   * import assert from "node:assert/strict"
   *
   * const Tenant = Context.Service<string>("Tenant")
   *
   * const program = Effect.gen(function*() {
   *   const executor = yield* Executor.make({ concurrency: 4, pile: "none" })
   *   // The task reads a service: it runs with the submitter's context.
   *   const handle = yield* executor.submit(Effect.map(Tenant, (t) => `report for ${t}`)).pipe(
   *     Effect.provideService(Tenant, "acme")
   *   )
   *   assert.equal(yield* handle.join, "report for acme")
   * }).pipe(Effect.scoped)
   *
   * await Effect.runPromise(program)
   * ```
   */
  readonly submit: <A1 extends A, E1 extends E, R>(
    task: Effect.Effect<A1, E1, R>,
    options?: TaskOptions<A1, E1> | undefined
  ) => Effect.Effect<TaskHandle<A1, E1>, ExecutorError.ExecutorError, R>
  /**
   * Like `submit`, but never waits: a full queue fails with `ExecutorError` `QueueFull`.
   *
   * **When to use**
   *
   * At the edge of a system, to shed load: answer "busy" at once instead of making a caller wait.
   *
   * **Details**
   *
   * Never suspends. With the strategy `"suspend"` a full queue fails it with `QueueFull` (the task is not
   * accepted, `stats.rejected` counts it); with `"dropping"` or `"sliding"` it behaves as `submit`. Everything
   * else (order, ownership, shutdown) is as for `submit`.
   *
   * **Gotchas**
   *
   * Submitters waiting in `submit` keep their turn: `trySubmit` never takes a place ahead of them.
   *
   * **Example**
   *
   * ```ts
   * import { Executor } from "@pile/executor"
   * import { Effect } from "effect"
   * import assert from "node:assert/strict"
   *
   * const program = Effect.gen(function*() {
   *   const executor = yield* Executor.make({ concurrency: 1, capacity: 1 })
   *   yield* executor.submit(Effect.never)
   *   yield* Effect.yieldNow // the first task starts
   *   yield* executor.submit(Effect.never) // and the second fills the queue
   *   const answer = yield* executor.trySubmit(Effect.succeed("done")).pipe(
   *     Effect.as("accepted"),
   *     Effect.catchTag("ExecutorError", (error) => Effect.succeed(error.reason._tag))
   *   )
   *   assert.equal(answer, "QueueFull")
   *   yield* executor.shutdown({ mode: "cancel" })
   * }).pipe(Effect.scoped)
   *
   * await Effect.runPromise(program)
   * ```
   */
  readonly trySubmit: <A1 extends A, E1 extends E, R>(
    task: Effect.Effect<A1, E1, R>,
    options?: TaskOptions<A1, E1> | undefined
  ) => Effect.Effect<TaskHandle<A1, E1>, ExecutorError.ExecutorError, R>
  /**
   * Submits every task of an iterable or a stream, in order, waiting for space as needed; succeeds with how
   * many were accepted. The outcomes go to the executor-wide `pile`.
   *
   * **When to use**
   *
   * To feed a stream of work into a long-lived executor whose results you read from `pile` (a producer and a
   * consumer running side by side).
   *
   * **Details**
   *
   * `Effect.forEach(tasks, submit)` (or `Stream.runForEach` for a stream): one submission at a time, each
   * suspending while the queue is full, so a stream is pulled only as fast as the executor takes work.
   * Interrupting it stops submitting; the tasks already accepted keep running. Once shutdown begins it fails
   * with `Closed`; a failing input stream fails it with the stream's error.
   *
   * **Gotchas**
   *
   * It returns no handles: read the outcomes from `pile`, which ends only after the executor has shut down.
   * The default Pile keeps outcomes once a reader has started: start the reader first, or make the executor
   * with `pile: "unbounded"` to read them afterwards (as below).
   *
   * **Example**
   *
   * ```ts
   * import { Executor } from "@pile/executor"
   * import { Effect, Stream } from "effect"
   * import assert from "node:assert/strict"
   *
   * const program = Effect.gen(function*() {
   *   const executor = yield* Executor.make({ concurrency: 2, pile: "unbounded" })
   *   const accepted = yield* executor.submitAll(Stream.range(1, 5).pipe(Stream.map((n) => Effect.succeed(n * n))))
   *   assert.equal(accepted, 5)
   *   yield* executor.shutdown() // drain, then the Pile ends
   *   const outcomes = yield* Stream.runCollect(executor.pile)
   *   assert.deepEqual(outcomes.map((o) => o.kind), ["success", "success", "success", "success", "success"])
   * }).pipe(Effect.scoped)
   *
   * await Effect.runPromise(program)
   * ```
   */
  readonly submitAll: <A1 extends A, E1 extends E, R, EX = never, RX = never>(
    tasks: Iterable<Effect.Effect<A1, E1, R>> | Stream.Stream<Effect.Effect<A1, E1, R>, EX, RX>
  ) => Effect.Effect<number, ExecutorError.ExecutorError | EX, R | RX>
  /**
   * The batch form: runs `f` on every input under the executor's limits and returns the batch's own Pile, in
   * completion order, each outcome carrying its input.
   *
   * **Details**
   *
   * Like `Stream.mapEffect(inputs, f, { concurrency, unordered: true })` with `Effect.exit` on each element,
   * but failures never stop the batch, the executor's queue, cap and policies apply, and nothing is lost on
   * shutdown. Running the stream starts the batch, at its first pull (a stream made and never pulled submits
   * nothing); it ends after the last outcome. If the executor shuts down (or the input stream fails) before
   * every input was submitted, the Pile delivers the outcome of every accepted task and then fails with that
   * error. If the consumer stops early, the batch's remaining tasks are cancelled and awaited.
   *
   * **When to use**
   *
   * For a known set (or a stream) of inputs: a crawl, a batch of LLM prompts, a data migration. Read the
   * outcomes as they complete, or end with `Pile.collect`.
   *
   * **Details**
   *
   * - Order: outcomes in completion order, each with its `input`; tasks start in input order.
   * - Suspends: a feeder fiber submits the inputs, waiting while the executor's queue is full, so a stream of
   *   inputs is read only as fast as the executor takes work. When the batch's buffer (`buffer`, default 256
   *   unread outcomes) is full, finished tasks keep their concurrency slots until the consumer reads: a slow
   *   consumer slows the batch down instead of growing memory.
   * - Interruption: interrupting the consumer (or stopping early, `Stream.take`) closes the batch: the feeder
   *   stops, and the batch's remaining tasks are cancelled and awaited before the stream's scope closes.
   * - Shutdown: a drain finishes the accepted tasks and delivers their outcomes; inputs not yet submitted are
   *   not run, and the Pile then fails with `Closed`. After an escalation it fails with `Escalated`, after the
   *   last outcome.
   * - The batch's outcomes go to its own Pile only, not to the executor-wide `pile`; an input whose cost can
   *   never fit a limit ends as `"rejected"` without stopping the batch.
   *
   * **Gotchas**
   *
   * - The stream is a description: nothing runs until it is consumed, and consuming it twice runs the batch
   *   twice.
   * - `f` is called when the input's task first starts (not when it is queued: a queued input holds no
   *   effect); a retry runs the same effect again. A throw in `f` is that input's outcome, a `"defect"`.
   *
   * **Example**
   *
   * ```ts
   * import { Executor } from "@pile/executor"
   * import { Effect, Stream } from "effect"
   * import assert from "node:assert/strict"
   *
   * const program = Effect.gen(function*() {
   *   const executor = yield* Executor.make({ concurrency: 3 })
   *   const outcomes = yield* Stream.runCollect(
   *     executor.run([30, 10, 20], (ms) => ms === 20 ? Effect.fail("twenty") : Effect.as(Effect.sleep(ms), ms))
   *   )
   *   // Completion order: the failure first (at once), then 10 ms, then 30 ms.
   *   assert.deepEqual(outcomes.map((o) => [o.input, o.kind]), [[20, "failure"], [10, "success"], [30, "success"]])
   * }).pipe(Effect.scoped)
   *
   * await Effect.runPromise(program)
   * ```
   */
  readonly run: <I, B extends A, E1 extends E, R, EI = never, RI = never>(
    inputs: Iterable<I> | Stream.Stream<I, EI, RI>,
    f: (input: I, index: number) => Effect.Effect<B, E1, R>,
    options?: RunOptions<I, B, E1> | undefined
  ) => Pile<B, E1, I, ExecutorError.ExecutorError | EI, R | RI>
  /**
   * The executor-wide Pile: the outcome of every task given to `submit`, `trySubmit` and `submitAll`, in
   * completion order. Single-consumer: each outcome is delivered once (use `Stream.broadcast` to fan out).
   * It ends after shutdown, once every outcome has been read; it fails with `Escalated` after an escalation.
   *
   * **When to use**
   *
   * For one long-lived consumer of everything the executor finishes: a results writer, a progress reporter,
   * a dead-letter sink.
   *
   * **Details**
   *
   * - Order: completion order, one outcome per pull.
   * - Kept from the first read: by default (`pile: "read"`) outcomes are kept from the moment `pile` is first
   *   read (the stream made, so a reader forked and then work submitted sees every outcome); those that
   *   finished before went to their handles only. `pile: "unbounded"` or `{ capacity }`
   *   keep every outcome from the start.
   * - Suspends: the reader waits while nothing is buffered. With `pile: { capacity }` a full buffer makes
   *   finished tasks keep their slots until the reader catches up; the default buffer is unbounded.
   * - Interruption: stopping the reader leaves the executor running; outcomes not yet pulled stay buffered for
   *   a later reader (and, once a reader has started, every later outcome is kept for the next one).
   * - Shutdown lifts the buffer's bound (an absent reader never blocks it, I14); the stream ends once the
   *   executor is closed and every outcome has been read.
   *
   * **Gotchas**
   *
   * - Single consumer: two readers at once split the outcomes (fan out with `Stream.broadcast`). A reader that
   *   stops early (`Stream.take(n)`) takes exactly what it keeps: each pull takes one outcome.
   * - With `pile: "none"`, reading it is a defect. Batches (`run`) never deliver here.
   *
   * **Example**
   *
   * ```ts
   * import { Executor } from "@pile/executor"
   * import { Effect, Fiber, Stream } from "effect"
   * import assert from "node:assert/strict"
   *
   * const program = Effect.gen(function*() {
   *   const executor = yield* Executor.make({ concurrency: 4 })
   *   // One consumer, started first (so it sees every outcome), reads until the executor has shut down.
   *   const reader = yield* Effect.forkChild(Stream.runCollect(executor.pile), { startImmediately: true })
   *   for (const ms of [30, 10, 20]) yield* executor.submit(Effect.as(Effect.sleep(ms), ms))
   *   yield* executor.shutdown() // drain; then the Pile ends
   *   const outcomes = yield* Fiber.join(reader)
   *   assert.deepEqual(outcomes.map((o) => o.exit._tag === "Success" ? o.exit.value : undefined), [10, 20, 30])
   * }).pipe(Effect.scoped)
   *
   * await Effect.runPromise(program)
   * ```
   */
  readonly pile: Pile<A, E, undefined, ExecutorError.ExecutorError>
  /**
   * Shuts down and waits until it is done: admission closes at once, then the executor drains or cancels
   * (`options` default to the ones given at `make`). Idempotent; a `"cancel"` call cuts a drain in
   * progress short. Not interruptible: the shutdown goes on even if the caller is interrupted.
   *
   * **When to use**
   *
   * To stop an executor before its scope closes: on SIGTERM, at the end of a phase of a program, or in tests
   * (`{ mode: "cancel" }`).
   *
   * **Details**
   *
   * `shutdown` is: close admission (every waiting and later `submit` fails with `Closed`; Pile bounds are
   * lifted), then drain (keep starting queued tasks until nothing is queued or running, or until `grace`
   * has passed) or skip the drain for `"cancel"`, then cancel what is left (queued tasks end as
   * `"interrupted"` without running; running ones are interrupted and awaited, each for at most
   * `finalizerTimeout`, then abandoned and counted in `stats.abandoned`), then stop the services, then close
   * the executor-wide Pile, then wait for the dispatcher fiber to end. Closing the scope does the same with
   * the `shutdown` options of `make`.
   *
   * **Gotchas**
   *
   * Under `TestClock`, a drain with work left waits for virtual time: use `{ mode: "cancel" }` in tests, or
   * let the work finish first. A bad option (`grace: -1`, an unknown mode) fails with `InvalidOption` and
   * shuts nothing down; that is the only way `shutdown` fails.
   *
   * **Example**
   *
   * ```ts
   * import { Executor } from "@pile/executor"
   * import { Effect } from "effect"
   * import assert from "node:assert/strict"
   *
   * const program = Effect.gen(function*() {
   *   const executor = yield* Executor.make({ concurrency: 1 })
   *   const a = yield* executor.submit(Effect.as(Effect.sleep("10 millis"), "a"))
   *   const b = yield* executor.submit(Effect.succeed("b")) // still queued
   *   yield* executor.shutdown({ mode: "drain", grace: "1 second" })
   *   // The drain finished both, then closed the executor.
   *   assert.deepEqual([yield* a.join, yield* b.join], ["a", "b"])
   *   assert.equal((yield* executor.stats).phase, "closed")
   *   const late = yield* Effect.flip(executor.submit(Effect.void))
   *   assert.equal(late.reason._tag, "Closed")
   * }).pipe(Effect.scoped)
   *
   * await Effect.runPromise(program)
   * ```
   */
  readonly shutdown: (options?: ShutdownOptions | undefined) => Effect.Effect<void, ExecutorError.ExecutorError>
  /**
   * Changes the concurrency cap. Lowering it never preempts running tasks; it only delays new starts.
   *
   * **When to use**
   *
   * To adapt to the other side at run time: lower the cap when a server slows down, raise it when it
   * recovers, or drive it from a feedback loop on latency.
   *
   * **Details**
   *
   * Takes effect at once: raising the cap starts queued tasks right away (first come, first served); after
   * lowering it, no task starts until fewer than the new cap are running (I10). Never suspends. A value that
   * is not an integer >= 1 fails with `InvalidOption` and changes nothing.
   *
   * **Gotchas**
   *
   * The cap counts tasks until their fiber has really stopped, finalizers included, and finished tasks whose
   * outcome waits for room in a bounded Pile.
   *
   * **Example**
   *
   * ```ts
   * import { Executor } from "@pile/executor"
   * import { Effect } from "effect"
   * import assert from "node:assert/strict"
   *
   * const program = Effect.gen(function*() {
   *   const executor = yield* Executor.make({ concurrency: 1 })
   *   for (let i = 0; i < 3; i++) yield* executor.submit(Effect.never)
   *   yield* Effect.yieldNow
   *   assert.equal((yield* executor.stats).running, 1)
   *   yield* executor.resize(3)
   *   yield* Effect.yieldNow
   *   assert.equal((yield* executor.stats).running, 3)
   *   yield* executor.shutdown({ mode: "cancel" })
   * }).pipe(Effect.scoped)
   *
   * await Effect.runPromise(program)
   * ```
   */
  readonly resize: (concurrency: number) => Effect.Effect<void, ExecutorError.ExecutorError>
  /**
   * A snapshot of the executor's state.
   *
   * **When to use**
   *
   * For people: logs, a health endpoint, a test's assertions. For dashboards, use the metrics; for a periodic
   * view, `progress`.
   *
   * **Details**
   *
   * Synchronous and consistent: the counts add up at every snapshot (I15). Never suspends; works in every
   * phase, including after shutdown.
   *
   * **Gotchas**
   *
   * A task submitted a moment ago may still show as `queued`: the dispatcher starts it on its next step.
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
   *   yield* Pile.partition(executor.run([1, 2, 3], (n) => n === 2 ? Effect.fail("two") : Effect.succeed(n)))
   *   const stats = yield* executor.stats
   *   assert.deepEqual([stats.accepted, stats.finished, stats.outcomes.success, stats.outcomes.failure], [3, 3, 2, 1])
   * }).pipe(Effect.scoped)
   *
   * await Effect.runPromise(program)
   * ```
   */
  readonly stats: Effect.Effect<Stats>
  /**
   * Snapshots at a chosen interval (default 1 second), for progress bars and dashboards: the first at once,
   * the last once the executor has shut down (then the stream ends). Each adds the throughput since the
   * previous snapshot.
   *
   * **When to use**
   *
   * To drive a progress bar or a periodic log line while a batch runs (the CLI's progress line is built on
   * it).
   *
   * **Details**
   *
   * A `Stream.tick` mapped to `stats`: each run of the stream has its own first snapshot (`elapsed` 0).
   * Interrupting the consumer stops the stream and nothing else. The stream ends by itself after the snapshot
   * that shows the phase `"closed"`.
   *
   * **Gotchas**
   *
   * Under `TestClock` the ticks follow virtual time.
   *
   * **Example**
   *
   * ```ts
   * import { Executor } from "@pile/executor"
   * import { Effect, Fiber, Stream } from "effect"
   * import assert from "node:assert/strict"
   *
   * const program = Effect.gen(function*() {
   *   const executor = yield* Executor.make()
   *   const reporter = yield* Effect.forkChild(Stream.runCollect(executor.progress({ interval: "10 millis" })))
   *   yield* executor.submit(Effect.sleep("25 millis"))
   *   yield* executor.shutdown() // the progress stream ends after showing "closed"
   *   const snapshots = yield* Fiber.join(reporter)
   *   assert.equal(snapshots.at(-1)!.phase, "closed")
   *   assert.equal(snapshots.at(-1)!.finished, 1)
   * }).pipe(Effect.scoped)
   *
   * await Effect.runPromise(program)
   * ```
   */
  readonly progress: (options?: ProgressOptions | undefined) => Stream.Stream<Progress>
  /**
   * Starts a long-lived service in the executor's scope and returns once it signals readiness (Trio's
   * `nursery.start`).
   *
   * **Details**
   *
   * - `service` receives `ready`; it calls `ready(value)` once it is ready. `start` then succeeds with a
   *   handle carrying the value.
   * - A failure before readiness fails `start` with the service's error; a service that ends successfully
   *   without signalling readiness fails it with `ServiceNotReady`. Either way nothing is left running (I17).
   * - Interrupting the caller while it waits interrupts the half-started service.
   * - After readiness, a failure restarts the service on `options.restart`; without a schedule, or when it is
   *   exhausted, the failure is escalated: the executor stops and `join` fails with `Escalated`.
   * - The service belongs to the executor: it is stopped at shutdown, after the tasks, bounded by
   *   `finalizerTimeout`; `handle.stop` stops it earlier. It does not count against the concurrency cap.
   *
   * **When to use**
   *
   * For companions of the executor's work that must be up before work starts: a local proxy, a cache warmer,
   * a listener whose port the tasks need.
   *
   * **Gotchas**
   *
   * After shutdown has begun, `start` fails with `Closed`. A service that returns normally after readiness
   * just ends (it is not restarted).
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
   *   // `start` returns once the service calls ready, with the value it passed.
   *   const cache = yield* executor.start((ready: (size: number) => Effect.Effect<void>) =>
   *     Effect.gen(function*() {
   *       yield* Effect.sleep("5 millis") // warming up
   *       yield* ready(128)
   *       yield* Effect.never // serve until shutdown
   *     }), { name: "cache" })
   *   assert.equal(cache.value, 128)
   *   assert.equal((yield* executor.stats).services.running, 1)
   * }).pipe(Effect.scoped)
   *
   * await Effect.runPromise(program)
   * ```
   */
  readonly start: <V, E1, R>(
    service: (ready: (value: V) => Effect.Effect<void>) => Effect.Effect<unknown, E1, R>,
    options?: ServiceOptions | undefined
  ) => Effect.Effect<ServiceHandle<V>, E1 | ExecutorError.ExecutorError, R>
  /**
   * Waits for the executor to end: succeeds once it has shut down, fails with `ExecutorError` `Escalated` if
   * a failure was escalated. Race your program against it to fail fast.
   *
   * **When to use**
   *
   * With `ErrorPolicy.escalate` or supervised services: `Effect.raceFirst(program, join)` makes an escalated
   * failure end the program. `Executor.scoped` does exactly that for you.
   *
   * **Details**
   *
   * Suspends until the executor is `"closed"`, which happens only through shutdown (a call, the scope closing
   * or an escalation). Interrupting the waiter affects nothing else. Every task has its outcome by the time it
   * returns.
   *
   * **Gotchas**
   *
   * On an executor that nobody shuts down, `join` waits until its scope closes.
   *
   * **Example**
   *
   * ```ts
   * import { Executor } from "@pile/executor"
   * import { Effect, Fiber } from "effect"
   * import assert from "node:assert/strict"
   *
   * const program = Effect.gen(function*() {
   *   const executor = yield* Executor.make()
   *   const joined = yield* Effect.forkChild(executor.join)
   *   yield* executor.submit(Effect.sleep("5 millis"))
   *   yield* executor.shutdown()
   *   yield* Fiber.join(joined) // succeeded: a normal shutdown
   *   assert.equal((yield* executor.stats).phase, "closed")
   * }).pipe(Effect.scoped)
   *
   * await Effect.runPromise(program)
   * ```
   */
  readonly join: Effect.Effect<void, ExecutorError.ExecutorError>
}

/**
 * The executor as a service, for `layer`.
 *
 * **When to use**
 *
 * In an application assembled from layers: code that needs the executor reads it from the context
 * (`yield* Executor.Executor`), and the program's edge decides its options and lifetime with `layer`.
 *
 * **Details**
 *
 * A `Context.Service` key for an `Executor<unknown, unknown>`; each `submit` and `run` still keeps its own
 * task types. One executor per layer: every fiber that reads the service shares its queue and limits.
 *
 * **Gotchas**
 *
 * For two executors with different limits in one program, define your own keys (for example with
 * `Context.Service<Executor.Executor>("app/SearchExecutor")`) and provide each with
 * `Layer.effect(key, Executor.make(options))`.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, Pile } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const squares = (inputs: ReadonlyArray<number>) =>
 *   Effect.gen(function*() {
 *     const executor = yield* Executor.Executor
 *     return yield* Pile.collect(executor.run(inputs, (n) => Effect.succeed(n * n)))
 *   })
 *
 * const values = await Effect.runPromise(squares([1, 2, 3]).pipe(Effect.provide(Executor.layer({ concurrency: 2 }))))
 * assert.deepEqual(values, [1, 4, 9])
 * ```
 *
 * @category services
 * @since 0.1.0
 */
export const Executor: Context.Service<Executor, Executor> = Context.Service<Executor>("@pile/executor/Executor")

// ---------------------------------------------------------------------------------------------------------
// constructors
// ---------------------------------------------------------------------------------------------------------

/**
 * Creates an executor in the current scope; closing the scope shuts it down with the `shutdown` options.
 *
 * **When to use**
 *
 * To own an executor directly, for one part of a program. Use `layer` to provide it as a service.
 *
 * **Details**
 *
 * Options are checked first: a bad value fails with `ExecutorError` `InvalidOption` naming the option and the
 * value, and nothing is started. The executor forks one dispatcher fiber into the scope; the dispatcher
 * starts one fiber per running task attempt, and `start` one per service, all owned by the executor. When the
 * scope closes, the executor runs `shutdown` with the `shutdown` options (default: drain, 30 second grace):
 * every task gets its outcome, and every fiber it forked has ended (or was abandoned after
 * `finalizerTimeout`, and counted) before the close completes (I5, I7, I8). The close cannot be interrupted.
 *
 * **Gotchas**
 *
 * Under `TestClock`, a drain with work left waits for the grace period on the virtual clock: shut down with
 * `{ mode: "cancel" }`, or let the work finish, before the test's scope closes.
 *
 * **Example**
 *
 * ```ts
 * import { Executor } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ concurrency: 2 })
 *   const a = yield* executor.submit(Effect.succeed(1))
 *   const b = yield* executor.submit(Effect.fail("boom"))
 *   return [yield* a.join, (yield* b.await)._tag]
 * }).pipe(Effect.scoped) // closing the scope drains the executor
 *
 * assert.deepEqual(await Effect.runPromise(program), [1, "Failure"])
 * ```
 *
 * @see layer: the same executor as a service
 * @see scoped: an executor whose escalations fail the body
 * @category constructors
 * @since 0.1.0
 */
export const make = <A = unknown, E = unknown>(
  options?: Options<E> | undefined
): Effect.Effect<Executor<A, E>, ExecutorError.ExecutorError, Scope.Scope> =>
  Effect.gen(function*() {
    const resolved = yield* Effect.fromResult(resolve(options))
    const scope = yield* Effect.scope
    const clock = yield* Clock.Clock
    const breaker = yield* makeBreaker(options?.circuitBreaker, resolved.whenOpen, resolved.breakerTimeToLive)
    // The gauges read the engine when scraped; it exists by then.
    const ref: { engine?: Engine } = {}
    const instruments = resolved.metricKeys === undefined ? undefined : new Instruments(
      resolved.name,
      yield* Effect.context<never>(),
      {
        queued: () => ref.engine?.intake.size ?? 0,
        waiting: () => ref.engine?.admission.waiting ?? 0,
        running: () => ref.engine?.runningCount ?? 0
      },
      resolved.metricKeys
    )
    if (instruments !== undefined) yield* Scope.addFinalizer(scope, Effect.sync(() => instruments.remove()))
    const config: EngineConfig = {
      ...resolved,
      store: options?.store ?? RateLimit.memoryStore(),
      breaker,
      instruments,
      tracing: options?.tracing ?? "auto",
      liveClock: clock === Context.get(Context.empty(), Clock.Clock)
    }
    const engine = new Engine(config, clock)
    ref.engine = engine
    yield* engine.launch(scope)
    yield* Scope.addFinalizer(scope, engine.shutdown(config.shutdown))
    return new ExecutorImpl<A, E>(engine, new Specs(config, clock), new Services(engine))
  })

/**
 * Provides an executor as the `Executor` service; it shuts down when the layer's scope closes.
 *
 * **When to use**
 *
 * At the edge of an application: build the executor once with its options, provide it with the rest of the
 * layers, and let code read it with `yield* Executor.Executor`.
 *
 * **Details**
 *
 * `Layer.effect(Executor, make(options))`: the executor lives as long as the layer (for `Effect.provide`,
 * the provided effect; for `ManagedRuntime`, until `dispose`). Building the layer fails with `InvalidOption`
 * for a bad option. When the layer's scope closes, the executor shuts down as with `make`.
 *
 * **Gotchas**
 *
 * `Effect.provide(layer)` on two effects builds two executors. To share one executor between several
 * effects, provide the layer once, around all of them (or use a `ManagedRuntime`).
 *
 * **Example**
 *
 * ```ts
 * import { Executor } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.Executor
 *   const handle = yield* executor.submit(Effect.succeed("done"))
 *   return yield* handle.join
 * })
 *
 * assert.equal(await Effect.runPromise(program.pipe(Effect.provide(Executor.layer({ concurrency: 4 })))), "done")
 * ```
 *
 * @see make: the executor in the current scope, without a service
 * @category layers
 * @since 0.1.0
 */
export const layer = (options?: Options<unknown> | undefined): Layer.Layer<Executor, ExecutorError.ExecutorError> =>
  Layer.effect(Executor, make(options))

/**
 * Runs `body` with a fresh executor, Trio-nursery style: when `body` ends, the executor drains (with the
 * `shutdown` options); if a failure is escalated meanwhile, `body` is interrupted and the whole effect fails
 * with `ExecutorError` `Escalated`.
 *
 * **When to use**
 *
 * For a unit of work that must succeed as a whole and should stop at the first escalated failure: the
 * executor's counterpart of a Trio nursery or Kotlin's `coroutineScope`.
 *
 * **Details**
 *
 * `make(options)` in a scope of its own, and `body(executor)` raced against `executor.join` (which only ever
 * ends it by failing): the result is `body`'s, after the executor has shut down (every task submitted by `body` has finished, or was cancelled
 * after the grace period). An escalation interrupts `body` and fails the whole effect with `Escalated`.
 * Interrupting the whole effect interrupts `body` and then shuts the executor down.
 *
 * **Gotchas**
 *
 * The effect returns only after the drain: tasks `body` submitted and did not wait for still run to the end
 * (up to the grace period).
 *
 * **Example**
 *
 * ```ts
 * import { Executor, Pile } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const total = Executor.scoped({ concurrency: 4 }, (executor) =>
 *   Effect.map(Pile.collect(executor.run([1, 2, 3], (n) => Effect.succeed(n * 10))), (xs) => xs.reduce((a, b) => a + b, 0)))
 *
 * assert.equal(await Effect.runPromise(total), 60)
 * ```
 *
 * @see ErrorPolicy.escalate: the policy that makes a task's failure escalate
 * @category constructors
 * @since 0.1.0
 */
export const scoped = <A, E, R, X = unknown, Y = unknown>(
  options: Options<Y> | undefined,
  body: (executor: Executor<X, Y>) => Effect.Effect<A, E, R>
): Effect.Effect<A, E | ExecutorError.ExecutorError, Exclude<R, Scope.Scope>> =>
  Effect.scoped(Effect.flatMap(make<X, Y>(options), (executor) => {
    const engine = (executor as ExecutorImpl<X, Y>).engine
    return Effect.raceFirst(
      body(executor),
      Effect.flatMap(executor.join, () => Effect.never)
    ).pipe(
      // The body may fail first because of the escalation (its next submit finds the executor closed): the
      // escalation is the cause, and what the owner gets.
      Effect.catchCause((cause) =>
        engine.escalation === undefined
          ? Effect.failCause(cause)
          : Effect.fail(new ExecutorError.ExecutorError({ reason: engine.escalation }))
      )
    )
  }))

// ---------------------------------------------------------------------------------------------------------
// implementation
// ---------------------------------------------------------------------------------------------------------

class ExecutorImpl<A, E> implements Executor<A, E> {
  readonly name: string
  readonly engine: Engine
  private readonly specs: Specs
  private readonly services: Services

  constructor(engine: Engine, specs: Specs, services: Services) {
    this.name = engine.config.name
    this.engine = engine
    this.specs = specs
    this.services = services
  }

  private offerTask<A1, E1, R>(
    task: Effect.Effect<A1, E1, R>,
    options: TaskOptions<A1, E1> | undefined,
    wait: boolean
  ): Effect.Effect<TaskHandle<A1, E1>, ExecutorError.ExecutorError, R> {
    return Effect.contextWith((context: Context.Context<R>) => {
      const spec = this.specs.spec(options, options?.key, options?.cost)
      if (Result.isFailure(spec)) {
        this.engine.intake.reject(undefined)
        return Effect.fail(spec.failure)
      }
      const over = spec.success === undefined ? undefined : RateLimit.overLimit(spec.success.claims)
      if (over !== undefined) {
        this.engine.intake.reject(undefined)
        return Effect.fail(costOverLimit(over, options?.key))
      }
      const pile = this.engine.sinks.pile
      const made = this.engine.makeTask<A1, E1>(task, context, undefined, pile, spec.success)
      // A Pile reader that fell behind gets a turn before the next task: it keeps pace with a submit loop.
      if (pile !== undefined && pile.behind) return Effect.andThen(Effect.yieldNow, this.engine.offer(made, wait))
      // Decided in this step (contextWith already runs in the submitter's fiber): no second effect to suspend.
      return this.engine.offerNow(made, wait)
    }) as Effect.Effect<TaskHandle<A1, E1>, ExecutorError.ExecutorError, R>
  }

  submit<A1 extends A, E1 extends E, R>(
    task: Effect.Effect<A1, E1, R>,
    options?: TaskOptions<A1, E1> | undefined
  ): Effect.Effect<TaskHandle<A1, E1>, ExecutorError.ExecutorError, R> {
    return this.offerTask(task, options, true)
  }

  trySubmit<A1 extends A, E1 extends E, R>(
    task: Effect.Effect<A1, E1, R>,
    options?: TaskOptions<A1, E1> | undefined
  ): Effect.Effect<TaskHandle<A1, E1>, ExecutorError.ExecutorError, R> {
    return this.offerTask(task, options, false)
  }

  submitAll<A1 extends A, E1 extends E, R, EX = never, RX = never>(
    tasks: Iterable<Effect.Effect<A1, E1, R>> | Stream.Stream<Effect.Effect<A1, E1, R>, EX, RX>
  ): Effect.Effect<number, ExecutorError.ExecutorError | EX, R | RX> {
    let accepted = 0
    const submitOne = (task: Effect.Effect<A1, E1, R>) =>
      Effect.map(this.offerTask(task, undefined, true), () => {
        accepted++
      })
    const all = Stream.isStream(tasks)
      ? Stream.runForEach(tasks, submitOne)
      : Effect.forEach(tasks, submitOne, { discard: true })
    return Effect.map(all, () => accepted)
  }

  run<I, B extends A, E1 extends E, R, EI = never, RI = never>(
    inputs: Iterable<I> | Stream.Stream<I, EI, RI>,
    f: (input: I, index: number) => Effect.Effect<B, E1, R>,
    options?: RunOptions<I, B, E1> | undefined
  ): Pile<B, E1, I, ExecutorError.ExecutorError | EI, R | RI> {
    return Batch.run(this.engine, this.specs, inputs, f, options)
  }

  get pile(): Pile<A, E, undefined, ExecutorError.ExecutorError> {
    const buffer = this.engine.sinks.pile
    if (buffer === undefined) {
      return Stream.die(new Error(`the executor "${this.name}" was made with pile: "none": it keeps no outcomes`))
    }
    // Outcomes are kept from the moment the reader's stream is made, not only once it runs: a reader forked
    // (it starts on the next tick) and then work submitted at once must see every outcome (ADR 0005).
    buffer.keep()
    // The reader counts from its start to its end (its scope), so submitters give it a turn while it runs.
    return Stream.unwrap(Effect.as(
      Effect.acquireRelease(Effect.sync(() => buffer.attach()), () => Effect.sync(() => buffer.detach())),
      Stream.fromPull(Effect.succeed(buffer.pullOne as any))
    )) as any
  }

  shutdown(options?: ShutdownOptions | undefined): Effect.Effect<void, ExecutorError.ExecutorError> {
    return Effect.suspend(() => {
      const request = resolveShutdown("shutdown", options, this.engine.config.shutdown)
      // A bad option is refused and shuts nothing down: a typo must not turn a cancel into a 30 s drain.
      if (Result.isFailure(request)) return Effect.fail(request.failure)
      return this.engine.shutdown(request.success)
    })
  }

  resize(concurrency: number): Effect.Effect<void, ExecutorError.ExecutorError> {
    return Effect.suspend(() => {
      const checked = Check.integer("concurrency", concurrency, 1, 1)
      if (Result.isFailure(checked)) return Effect.fail(checked.failure)
      this.engine.resize(checked.success)
      return Effect.void
    })
  }

  get stats(): Effect.Effect<Stats> {
    return Effect.sync(() => Observation.snapshot(this.engine, this.services.restarts))
  }

  progress(options?: ProgressOptions | undefined): Stream.Stream<Progress> {
    const interval = Check.duration("interval", options?.interval, 1000)
    const millis = Result.isSuccess(interval) && interval.success > 0 ? interval.success : 1000
    return Observation.progress(this.engine, () => Observation.snapshot(this.engine, this.services.restarts), millis)
  }

  start<V, E1, R>(
    service: (ready: (value: V) => Effect.Effect<void>) => Effect.Effect<unknown, E1, R>,
    options?: ServiceOptions | undefined
  ): Effect.Effect<ServiceHandle<V>, E1 | ExecutorError.ExecutorError, R> {
    return this.services.start(service, options)
  }

  get join(): Effect.Effect<void, ExecutorError.ExecutorError> {
    return Effect.flatMap(Deferred.await(this.engine.closed), () =>
      this.engine.escalation === undefined
        ? Effect.void
        : Effect.fail(new ExecutorError.ExecutorError({ reason: this.engine.escalation })))
  }
}

/**
 * Provides an executor as the `Executor` service, with its options read through Effect `Config` (the
 * environment, by default): `layer` for options that come from outside the program.
 *
 * **When to use**
 *
 * When deployments set the limits (`PILE_CONCURRENCY=32`) rather than the code, the way
 * `NodeRedis.layerConfig` reads its connection options.
 *
 * **Details**
 *
 * `options` has the shape of `Options`, each field a `Config` of that field's type (a field left out keeps
 * its default), or one `Config` of the whole `Options`. The configs are read when the layer is built, from
 * the current `ConfigProvider`; then the executor is made as by `layer`. Options that are not plain values
 * (an error policy, a store) are given with `Config.succeed`.
 *
 * **Gotchas**
 *
 * A value that is missing (without `Config.withDefault`) or malformed fails the layer with a `ConfigError`;
 * a value that parses but breaks a rule (a concurrency of 0) fails it with `InvalidOption`, as in `layer`.
 *
 * **Example**
 *
 * ```ts
 * import { Executor } from "@pile/executor"
 * import { Config, ConfigProvider, Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const ExecutorLive = Executor.layerConfig({
 *   concurrency: Config.Int("PILE_CONCURRENCY").pipe(Config.withDefault(16)),
 *   capacity: Config.Int("PILE_CAPACITY").pipe(Config.withDefault(1024))
 * })
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.Executor
 *   return (yield* executor.stats).concurrency
 * })
 *
 * // Here the environment is a record; without a ConfigProvider, it is process.env.
 * const env = ConfigProvider.fromEnv({ env: { PILE_CONCURRENCY: "32" } })
 * const concurrency = await Effect.runPromise(
 *   program.pipe(Effect.provide(ExecutorLive), Effect.provideService(ConfigProvider.ConfigProvider, env))
 * )
 * assert.equal(concurrency, 32)
 * ```
 *
 * @see layer: the same with the options as plain values
 * @category layers
 * @since 0.1.0
 */
export const layerConfig = (
  options: Config.Wrap<Options<unknown>>
): Layer.Layer<Executor, ExecutorError.ExecutorError | Config.ConfigError> =>
  Layer.effect(Executor, Config.unwrap(options).pipe(Effect.flatMap((options) => make(options))))
