/**
 * Rate limits: budgets of "L units per window W", per key, reserved together before a task starts.
 *
 * A task states its `key` and its `cost` (requests = 1 by default; tokens = an estimate). Every limit that
 * applies to the task is reserved at once, all or nothing, at the moment the task starts, and in the order
 * tasks arrived. After the task, its actual cost can be settled: an extra charge always applies; a refund
 * gives back only capacity no later reservation relied on (see below). A failure carrying `retryAfter` (an
 * HTTP 429) pauses the task's whole key. A limit declared with an `adaptive` rate (`adaptive`) learns from
 * 429s that say no wait: its rate is lowered for the key that got them, and recovers step by step to the
 * configured limit.
 *
 * Models and their exact bounds (W = window, L = limit, B = burst, r = L / W), which hold with settlement,
 * counting each task at the smaller of its reserved cost and the least cost it was settled to:
 *
 * - `"sliding-window"` (the default): a sliding log. No window of length W, anywhere on the time line, admits
 *   more than L units. Exact: it is the strongest bound and the one the property tests check. A refund
 *   always applies, to the window the reservation was made in.
 * - `"gcra"`: spacing (a leaky bucket seen from the client): units start no closer than W / L (plus
 *   `margin`), with up to B starts back to back: any interval of length t admits at most B - 1 + a + r·t
 *   units, a the largest cost among them. With B = 1 and unit costs no two starts are closer than W / L:
 *   "100 per second, burst 1" means 10 ms apart. Use it for servers that enforce a leaky bucket (nginx
 *   `limit_req`, API gateways).
 * - `"token-bucket"`: bursts: a bucket of B tokens (default L) refilled at r per millisecond. Any interval of
 *   length t admits at most B + r·t units, so a window of length W may admit up to B + L.
 *
 * GCRA and token bucket keep one number per bucket, which later reservations rely on: a refund applies only
 * while its reservation is still the last change to the bucket (then exactly), and is dropped otherwise
 * (docs/guides/rate-limits.md).
 *
 * Stores: the in-memory store (the default, one per executor) and a Redis store for limits shared by several
 * processes or machines (`RateLimitRedis.ts`).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as ExecutorError from "./ExecutorError.ts"
import { type AdaptiveKey, type AdaptiveOptions, AdaptiveRate } from "./internal/adaptive.ts"
import {
  type Algorithm,
  type Bucket,
  capacityOf,
  type Claim,
  MemoryLimiter,
  type Reservation
} from "./internal/limiter.ts"

export type { AdaptiveKey, AdaptiveOptions, AdaptiveRate, Algorithm, Bucket, Claim, Reservation }

/**
 * One limit: "`limit` units of `budget` per `window`".
 *
 * Which tasks it counts:
 * - `key` set: the tasks with that key share it;
 * - `perKey: true`: every key gets its own copy (tasks without a key are not counted);
 * - neither: every task shares one budget (an overall limit).
 *
 * Give limits to `Executor.make({ limits })` for every task, or per task or batch (`limits` option); equal
 * declarations share one budget. A limit with `perKey` or `key` counts only tasks with a key. Invalid values
 * fail with `ExecutorError` reason `InvalidOption` naming the path, e.g. `limits[2].window`.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, Pile, type RateLimit } from "@pile/executor"
 * import { Clock, Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const limits: ReadonlyArray<RateLimit.Limit> = [
 *   { key: "search", limit: 2, window: "100 millis" }, // requests of key "search"
 *   { key: "search", budget: "tokens", limit: 1_000, window: "1 minute" } // tokens of key "search"
 * ]
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ concurrency: 8, limits })
 *   const starts = yield* Pile.collect(
 *     executor.run([1, 2, 3], () => Clock.currentTimeMillis, { key: () => "search", cost: () => ({ tokens: 10 }) })
 *   )
 *   // Sliding window: the third start waits until the first leaves the 100 ms window (a busy machine may run
 *   // a body a few ms after its admission, hence the margin).
 *   assert.ok(starts[2]! - starts[0]! >= 90, `starts: ${starts}`)
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Limit {
  /** Tells two otherwise identical declarations apart (they share a budget if their names are equal). */
  readonly name?: string | undefined
  readonly key?: string | undefined
  readonly perKey?: boolean | undefined
  /** The budget this limit counts: `"requests"` (the default, each task costs 1) or e.g. `"tokens"`. */
  readonly budget?: string | undefined
  /** L, a number > 0. */
  readonly limit: number
  /** W, a duration > 0. */
  readonly window: Duration.Input
  /** The model; default `"sliding-window"`, the exact one. */
  readonly algorithm?: Algorithm | undefined
  /** GCRA: starts allowed back to back (default 1, evenly spaced). Token bucket: capacity (default L). */
  readonly burst?: number | undefined
  /** GCRA: extra spacing per unit, a safety margin against the server's clock (default 0). */
  readonly margin?: Duration.Input | undefined
  /**
   * Scale the limit, per key, by this adaptive rate (see `adaptive`): lowered after 429s, recovering to the
   * configured limit. Usually with `perKey: true`, so that each key learns its own rate.
   */
  readonly adaptive?: AdaptiveRate | undefined
}

/**
 * A task's cost per budget, e.g. `{ tokens: 1200 }`. A budget missing here costs 1 for `"requests"` and 0
 * (not counted) for any other budget.
 *
 * Costs are finite numbers >= 0 (otherwise `InvalidOption`); a cost larger than a limit's capacity fails at
 * once with `CostOverLimit`. With `settle`, the reserved cost is an estimate corrected after the attempt.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, type RateLimit } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({
 *     limits: [{ key: "gpt", budget: "tokens", limit: 10_000, window: "1 minute" }]
 *   })
 *   const cost: RateLimit.Cost = { tokens: 1200 } // requests: 1, by default
 *   const handle = yield* executor.submit(Effect.succeed("answer"), { key: "gpt", cost })
 *   assert.equal(yield* handle.join, "answer")
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type Cost = Readonly<Record<string, number>>

/**
 * The result of a reservation: granted, or denied with the earliest time (ms on the store's clock) it could
 * be granted.
 *
 * The executor sleeps until `retryAt` (or until something changes) before asking again: a denial defers a
 * task, never drops it, never polls.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, RateLimit } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * // Count denials around the in-memory store.
 * const inner = RateLimit.memoryStore()
 * const results: Array<RateLimit.ReserveResult["_tag"]> = []
 * const store: RateLimit.RateLimitStore = {
 *   reserve: (id, claims, now) => Effect.tap(inner.reserve(id, claims, now), (result) => Effect.sync(() => results.push(result._tag))),
 *   settle: inner.settle
 * }
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ limits: [{ limit: 1, window: "50 millis" }], store })
 *   const a = yield* executor.submit(Effect.void)
 *   const b = yield* executor.submit(Effect.void)
 *   yield* a.await
 *   yield* b.await
 *   // The second task was denied (the executor slept until the window had passed), then reserved.
 *   assert.equal(results.filter((tag) => tag === "Reserved").length, 2)
 *   assert.equal(results[1], "Denied")
 *   assert.equal(results.at(-1), "Reserved")
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type ReserveResult =
  | { readonly _tag: "Reserved"; readonly reservation: Reservation }
  | {
    readonly _tag: "Denied"
    readonly retryAt: number
    /** The buckets that refused; when absent, every claimed bucket is assumed to have refused. */
    readonly blocking?: ReadonlyArray<string> | undefined
  }

/**
 * Where budgets are kept. `reserve` is all or nothing over its claims; `settle` corrects the amounts of a
 * granted reservation (0 refunds it), under the model's settlement rule (a GCRA or token-bucket refund is
 * dropped once a later reservation relied on it; `charged` records what was applied). A store failure is
 * retried by the executor (the task waits; it is never dropped).
 *
 * Two stores ship: `memoryStore` (the default, one per executor) and `RateLimitRedis.make` (shared by
 * processes). A custom store, or a wrapper around one, implements `reserve` and `settle` and leaves `memory`
 * unset: the dispatcher then reserves through the effect, one reservation at a time, and a task starts one
 * round trip after its reservation.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, Pile, RateLimit } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * // A wrapper that counts reservations; pass the same store to every executor that shares the limits.
 * const inner = RateLimit.memoryStore()
 * let reservations = 0
 * const store: RateLimit.RateLimitStore = {
 *   reserve: (id, claims, now) => Effect.andThen(Effect.sync(() => reservations++), inner.reserve(id, claims, now)),
 *   settle: (reservation, actual) => inner.settle(reservation, actual)
 * }
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ limits: [{ limit: 100, window: "1 second" }], store })
 *   assert.equal((yield* Pile.collect(executor.run([1, 2, 3], (n) => Effect.succeed(n)))).length, 3)
 *   assert.equal(reservations, 3)
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface RateLimitStore {
  readonly reserve: (id: string, claims: ReadonlyArray<Claim>, now: number) => Effect.Effect<ReserveResult, unknown>
  readonly settle: (reservation: Reservation, actual: ReadonlyArray<number>) => Effect.Effect<void, unknown>
  /**
   * Moves a granted reservation's admission later, to `at` (ms on the caller's clock): the moment the work it
   * admitted really began, e.g. when an HTTP request's headers were written. Never earlier: an earlier `at`, a
   * reservation the store no longer counts, or a handle this store did not grant, changes nothing. A sliding
   * window then counts the admission at `at`; a GCRA spaces the next start from `at`; a token bucket is
   * unchanged. Every bound of `RateLimit` still holds, on the anchored times (see `CurrentReservation`).
   * Optional: both shipped stores implement it. The executor anchors an in-memory reservation at the first
   * step of its task's fiber by itself; it never calls this.
   */
  readonly anchor?: ((reservation: Reservation, at: number) => Effect.Effect<void, unknown>) | undefined
  /** Synchronous access for in-memory stores: the dispatcher then admits without suspending. */
  readonly memory?: MemoryLimiter | undefined
}

/**
 * The rate reservation of the attempt running in this fiber: the executor provides it to each attempt that
 * reserved budget (its child fibers inherit it), and it is `undefined` anywhere else.
 *
 * **When to use**
 *
 * To anchor an admission at the moment the work really begins, later than the task's start: read it inside
 * the task, then call the store's `anchor` with it when, say, the request leaves. `pile run` and `pile
 * worker` anchor each request's admission when undici writes its headers, so the limit holds on departures
 * rather than on starts.
 *
 * **Details**
 *
 * One reservation per attempt: a retry has a new one. Anchoring only moves an admission later, and only one
 * its store still counts; a store's check counts every admission it has not dropped, wherever it lies in
 * time, so no window of the anchored times holds more than the limit either.
 *
 * **Gotchas**
 *
 * Read it in the attempt's fiber or its children (a fiber forked elsewhere does not have it). The bound holds
 * on the anchored times when each anchor reaches the store in time: for a sliding window, less than a window
 * (minus the Redis store's `lookahead`) after its admission, since a reservation granted ahead relies on when
 * earlier admissions leave their window; for a GCRA, before the store grants the next slot (within W / L of
 * the admission, less when the burst allows several at once): a start already granted cannot be pushed back, so
 * an anchor arriving after it leaves the two starts closer than W / L. With the Redis store, `anchor` is a
 * round trip: run it beside the work (the CLI forks it).
 *
 * **Example**
 *
 * ```ts
 * import { Executor, RateLimit } from "@pile/executor"
 * import { Clock, Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const store = RateLimit.memoryStore()
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ limits: [{ limit: 1, window: "100 millis" }], store })
 *   const task = Effect.gen(function*() {
 *     yield* Effect.sleep("30 millis") // e.g. opening a connection
 *     const reservation = yield* RateLimit.CurrentReservation
 *     // The work leaves now: the window counts it from here.
 *     if (reservation !== undefined) yield* store.anchor!(reservation, yield* Clock.currentTimeMillis)
 *     return yield* Clock.currentTimeMillis
 *   })
 *   const first = yield* Effect.flatMap(executor.submit(task), (handle) => handle.join)
 *   const second = yield* Effect.flatMap(executor.submit(task), (handle) => handle.join)
 *   // The second admission waited a full window after the first one's anchored time (100 ms after its start
 *   // without the anchor), then slept 30 ms itself.
 *   assert.ok(second - first >= 125, `${second - first} ms apart`)
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @see RateLimitStore for `anchor`
 * @category references
 * @since 0.2.0
 */
export const CurrentReservation = Context.Reference<Reservation | undefined>(
  "@pile/executor/RateLimit/CurrentReservation",
  { defaultValue: () => undefined }
)

/**
 * A fresh in-memory store. Each executor gets its own unless you pass one to several executors.
 *
 * **When to use**
 *
 * To share budgets between several executors of one process (say, a batch executor and a service executor
 * that call the same API); within one executor you never need it.
 *
 * **Details**
 *
 * Synchronous: the dispatcher reserves without suspending, on the executor's `Clock` (so `TestClock` drives
 * the windows). Executors that share the store and declare equal limits share their budgets.
 *
 * **Gotchas**
 *
 * The limits are not part of the store: every executor must declare them (identically) for them to apply.
 * For several processes, use `RateLimitRedis.make`.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, Pile, RateLimit } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const store = RateLimit.memoryStore()
 *   const limits: ReadonlyArray<RateLimit.Limit> = [{ limit: 2, window: "1 minute" }]
 *   const a = yield* Executor.make({ limits, store })
 *   const b = yield* Executor.make({ limits, store })
 *   yield* Pile.collect(a.run([1, 2], (n) => Effect.succeed(n))) // uses the shared budget of 2
 *   const late = yield* b.submit(Effect.succeed(3))
 *   yield* Effect.sleep("20 millis")
 *   assert.equal(yield* late.poll, undefined) // still waiting for the shared budget
 *   assert.equal((yield* b.stats).waiting, 1)
 *   yield* b.shutdown({ mode: "cancel" })
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const memoryStore = (): RateLimitStore => {
  const memory = new MemoryLimiter()
  return {
    memory,
    reserve: (id, claims, now) =>
      Effect.sync(() => {
        const result = memory.reserve(id, claims, now)
        return "claims" in result
          ? { _tag: "Reserved", reservation: result } as const
          : { _tag: "Denied", retryAt: result.retryAt, blocking: result.blocking } as const
      }),
    settle: (reservation, actual) => Effect.sync(() => memory.settle(reservation, actual)),
    anchor: (reservation, at) => Effect.sync(() => memory.anchor(reservation, at))
  }
}

/**
 * An adaptive rate for limits that learn from a server's 429s: give it to limits (`adaptive: rate`), then
 * tell it what the server answered. Per key, it lowers the rate multiplicatively after a 429 that said no
 * wait, recovers it additively toward the configured limit, and holds the key for a wait the server asked for.
 *
 * **When to use**
 *
 * When the server's real limit is unknown or lower than the one you configured, and its 429s do not say how
 * long to wait (nginx `limit_req`, many gateways): AIMD, as TCP does with congestion.
 *
 * **Details**
 *
 * - `slowDown(key, { sentAt })`: after a 429 without a wait: the key's rate is multiplied by `decrease`
 *   (default 0.95), not below `floor` (default 5% of the limit). A 429 of a request sent before the last
 *   slow-down is not news (the requests in flight then were sent at the old rate) and changes nothing.
 * - Recovery: the key regains `increase` (default 10%) of the configured rate per second, up to the limit.
 * - `hold(key, duration)`: after a wait the server asked for (`Retry-After`, an exhausted
 *   `x-ratelimit-remaining-*` with its `x-ratelimit-reset-*`): the key's adaptive limits admit nothing for
 *   that long. (A task failure carrying `retryAfter` already pauses the key in the executor; `hold` is for
 *   answers that are not failures, such as a 200 saying the budget is spent.)
 * - The `...At` methods take the time (milliseconds on the executor's `Clock`) instead of reading it, for
 *   callers outside an effect.
 * - With several limits declared with one rate, a key's factor scales all of them; an overall limit (no
 *   `key`, no `perKey`) uses the factor of key `""`.
 *
 * **Gotchas**
 *
 * The rate is the state of one process: with `RateLimitRedis`, each process lowers and recovers its own view
 * of a shared limit (it charges the shared budget at its own pace). Options out of range fail `Executor.make`
 * with `InvalidOption` (`limits[i].adaptive`).
 *
 * **Example**
 *
 * ```ts
 * import { Executor, RateLimit } from "@pile/executor"
 * import { Clock, Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const rate = RateLimit.adaptive({ decrease: 0.5 })
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({
 *     limits: [{ perKey: true, limit: 100, window: "1 second", algorithm: "gcra", adaptive: rate }]
 *   })
 *   const startOf = (key: string) =>
 *     Effect.flatMap(executor.submit(Clock.currentTimeMillis, { key }), (handle) => handle.join)
 *   const a = yield* startOf("api")
 *   const b = yield* startOf("api")
 *   assert.ok(b - a >= 5, `10 ms apart at 100 per second, less a busy machine's delay: ${b - a}`)
 *   yield* rate.slowDown("api") // the server answered 429 without Retry-After
 *   const c = yield* startOf("api")
 *   const d = yield* startOf("api")
 *   assert.ok(d - c >= 15, `20 ms apart at half the rate: ${d - c}`)
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @see Limit for `adaptive` in a declaration
 * @category constructors
 * @since 0.1.0
 */
export const adaptive = (options?: AdaptiveOptions | undefined): AdaptiveRate => new AdaptiveRate(options)

/** @internal A limit with its options checked and resolved. */
export interface Resolved {
  readonly declaration: Limit
  readonly id: string
  readonly key: string | undefined
  readonly perKey: boolean
  readonly budget: string
  readonly algorithm: Algorithm
  readonly limit: number
  readonly window: number
  readonly burst: number
  readonly margin: number
}

const millis = (input: Duration.Input | undefined): number | undefined => {
  if (input === undefined) return undefined
  const decoded = Duration.fromInput(input)
  return Option.isSome(decoded) ? Duration.toMillis(decoded.value) : Number.NaN
}

/** @internal Checks limits, naming the option path in errors. */
export const resolve = (
  path: string,
  limits: ReadonlyArray<Limit> | undefined
): Result.Result<ReadonlyArray<Resolved>, ExecutorError.ExecutorError> => {
  const out: Array<Resolved> = []
  for (const [i, limit] of (limits ?? []).entries()) {
    const at = `${path}[${i}]`
    if (!(typeof limit.limit === "number" && limit.limit > 0 && Number.isFinite(limit.limit))) {
      return Result.fail(ExecutorError.invalidOption(`${at}.limit`, limit.limit, "a finite number > 0"))
    }
    const window = millis(limit.window)
    if (window === undefined || !(window > 0 && Number.isFinite(window))) {
      return Result.fail(ExecutorError.invalidOption(`${at}.window`, limit.window, "a finite duration > 0"))
    }
    const algorithm = limit.algorithm ?? "sliding-window"
    if (!["sliding-window", "gcra", "token-bucket"].includes(algorithm)) {
      return Result.fail(
        ExecutorError.invalidOption(`${at}.algorithm`, algorithm, `"sliding-window", "gcra" or "token-bucket"`)
      )
    }
    const burst = limit.burst ?? (algorithm === "token-bucket" ? limit.limit : 1)
    if (!(typeof burst === "number" && burst >= 1 && Number.isFinite(burst))) {
      return Result.fail(ExecutorError.invalidOption(`${at}.burst`, limit.burst, "a finite number >= 1"))
    }
    const margin = millis(limit.margin) ?? 0
    if (!(margin >= 0 && Number.isFinite(margin))) {
      return Result.fail(ExecutorError.invalidOption(`${at}.margin`, limit.margin, "a finite duration >= 0"))
    }
    if (limit.key !== undefined && limit.perKey === true) {
      return Result.fail(ExecutorError.invalidOption(`${at}.perKey`, true, "not both key and perKey"))
    }
    const invalid = limit.adaptive?.invalid
    if (invalid !== undefined) {
      return Result.fail(ExecutorError.invalidOption(`${at}.adaptive.${invalid[0]}`, invalid[1], invalid[2]))
    }
    const budget = limit.budget ?? "requests"
    const id = [limit.name ?? "", budget, limit.limit, window, algorithm, burst, margin].join("|") +
      (limit.adaptive === undefined ? "" : "|adaptive")
    out.push({
      declaration: limit,
      id,
      key: limit.key,
      perKey: limit.perKey === true,
      budget,
      algorithm,
      limit: limit.limit,
      window,
      burst,
      margin
    })
  }
  return Result.succeed(out)
}

/** @internal The buckets a task with `key` and `cost` claims from `limits`. */
export const claimsFor = (
  limits: ReadonlyArray<Resolved>,
  key: string | undefined,
  cost: Cost | undefined,
  buckets: Map<string, Bucket>
): Array<Claim> => {
  const claims: Array<Claim> = []
  for (const limit of limits) {
    let bucketId: string
    let bucketKey: string | undefined
    if (limit.key !== undefined) {
      if (limit.key !== key) continue
      bucketId = `${limit.id}|key=${key}`
      bucketKey = key
    } else if (limit.perKey) {
      if (key === undefined) continue
      bucketId = `${limit.id}|each=${key}`
      bucketKey = key
    } else {
      bucketId = `${limit.id}|all`
    }
    const amount = cost?.[limit.budget] ?? (limit.budget === "requests" ? 1 : 0)
    if (!(amount > 0)) continue
    let bucket = buckets.get(bucketId)
    if (bucket === undefined) {
      bucket = {
        id: bucketId,
        budget: limit.budget,
        algorithm: limit.algorithm,
        limit: limit.limit,
        window: limit.window,
        burst: limit.burst,
        margin: limit.margin,
        ...(bucketKey === undefined ? {} : { key: bucketKey }),
        ...(limit.declaration.adaptive === undefined ? {} : { adaptive: limit.declaration.adaptive })
      }
      buckets.set(bucketId, bucket)
    }
    claims.push({ bucket, amount })
  }
  return claims
}

/** @internal The first claim whose amount can never fit, if any. */
export const overLimit = (claims: ReadonlyArray<Claim>): Claim | undefined =>
  claims.find((claim) => claim.amount > capacityOf(claim.bucket))
