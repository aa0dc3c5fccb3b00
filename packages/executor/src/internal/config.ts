/**
 * The executor's configuration, checked once: the options of `make` resolved to their defaults (every bad
 * value an `InvalidOption` before anything starts), and each task's spec resolved from those defaults and the
 * task's own options.
 *
 * Written once: `Config` when the executor is made, a `TaskSpec` when its task is submitted; nobody changes
 * either afterwards (the concurrency, the one resizable setting, is the engine's).
 */
import type * as Clock from "effect/Clock"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import { CircuitBreaker } from "effect/persistence"
import * as Predicate from "effect/Predicate"
import * as Result from "effect/Result"
import type * as Scope from "effect/Scope"
import * as ErrorPolicy from "../ErrorPolicy.ts"
import type { Options, ShutdownOptions, TaskOptions } from "../Executor.ts"
import * as ExecutorError from "../ExecutorError.ts"
import * as RateLimit from "../RateLimit.ts"
import type { Instruments } from "./instruments.ts"
import type { Claim } from "./limiter.ts"
import * as Check from "./options.ts"
import { nowMillis } from "./timers.ts"

export type Strategy = "suspend" | "dropping" | "sliding"
export type ShutdownMode = "drain" | "cancel"
export interface ShutdownRequest {
  readonly mode: ShutdownMode
  /** Milliseconds a drain may take before what is left is cancelled. */
  readonly grace: number
}

export type Phase = "open" | "draining" | "cancelling" | "closed"

export interface Breaker {
  readonly breaker: CircuitBreaker.CircuitBreaker
  readonly whenOpen: "reject" | "wait"
}

/** The options of `make`, checked and defaulted. */
export interface Resolved {
  readonly name: string
  readonly capacity: number
  readonly concurrency: number
  readonly strategy: Strategy
  readonly shutdown: ShutdownRequest
  /** Milliseconds shutdown waits for interrupted fibers (and their finalizers) before abandoning them. */
  readonly finalizerTimeout: number
  readonly pile: number | "none" | "read"
  readonly policy: ErrorPolicy.ErrorPolicy<any>
  readonly timeout: number | undefined
  readonly deadline: number | undefined
  readonly limits: ReadonlyArray<RateLimit.Resolved>
  readonly whenOpen: "reject" | "wait"
  /** Milliseconds a breaker made from the options keeps an idle key's state. */
  readonly breakerTimeToLive: number
  /** Most keys with their own metric series (0: none); undefined when metrics are off. */
  readonly metricKeys: number | undefined
}

/** Everything the engine runs with: the resolved options and what `make` built from them. */
export interface Config extends Resolved {
  readonly store: RateLimit.RateLimitStore
  readonly breaker: Breaker | undefined
  /** Effect metrics; undefined when turned off. */
  readonly instruments: Instruments | undefined
  /** Whether each attempt runs in a span parented to the submitter's; "auto": when a tracer is installed. */
  readonly tracing: boolean | "auto"
  /**
   * Whether the clock is Effect's live clock: only then are waits finished by yielding to the event loop (a
   * virtual clock, `TestClock`, does not move while the dispatcher yields).
   */
  readonly liveClock: boolean
}

/** What a task asked for beyond running: resolved from the executor's defaults and the submit options. */
export interface TaskSpec {
  readonly key: string | undefined
  readonly claims: ReadonlyArray<Claim>
  readonly policy: ErrorPolicy.ErrorPolicy<any>
  /** Milliseconds per attempt. */
  readonly timeout: number | undefined
  /** Absolute time (ms) by which the task must have finished, across queue, rate waits, runs and retries. */
  readonly deadlineAt: number | undefined
  readonly settle: ((exit: Exit.Exit<any, any>) => RateLimit.Cost | undefined) | undefined
}

export const resolveShutdown = (
  prefix: string,
  options: ShutdownOptions | undefined,
  fallback: ShutdownRequest
): Result.Result<ShutdownRequest, ExecutorError.ExecutorError> =>
  Result.all({
    mode: Check.oneOf(`${prefix}.mode`, options?.mode, ["drain", "cancel"], fallback.mode),
    grace: Check.duration(`${prefix}.grace`, options?.grace, fallback.grace)
  })

const optionalDuration = (option: string, value: Duration.Input | undefined) =>
  value === undefined ? Result.succeed(undefined) : Check.duration(option, value, 0)

export const resolve = (options: Options<any> | undefined): Result.Result<Resolved, ExecutorError.ExecutorError> =>
  Result.all({
    name: options?.name === undefined || typeof options.name === "string"
      ? Result.succeed(options?.name ?? "executor")
      : Result.fail(ExecutorError.invalidOption("name", options.name, "a string")),
    capacity: Check.integer("capacity", options?.capacity, 1, 1024),
    concurrency: Check.integer("concurrency", options?.concurrency, 1, 16),
    strategy: Check.oneOf("strategy", options?.strategy, ["suspend", "dropping", "sliding"], "suspend"),
    shutdown: resolveShutdown("shutdown", options?.shutdown, { mode: "drain", grace: 30_000 }),
    finalizerTimeout: Check.duration("finalizerTimeout", options?.finalizerTimeout, 10_000),
    pile: options?.pile === undefined || options.pile === "read"
      ? Result.succeed("read" as const)
      : options.pile === "unbounded"
      ? Result.succeed(Number.POSITIVE_INFINITY)
      : options.pile === "none"
      ? Result.succeed("none" as const)
      : Predicate.isObject(options.pile)
      ? Check.integer("pile.capacity", options.pile.capacity, 1, 0)
      : Result.fail(ExecutorError.invalidOption("pile", options.pile, `"read", "unbounded", "none" or { capacity }`)),
    policy: options?.policy === undefined || ErrorPolicy.isErrorPolicy(options.policy)
      ? Result.succeed(options?.policy ?? ErrorPolicy.record)
      : Result.fail(ExecutorError.invalidOption("policy", options.policy, "an ErrorPolicy")),
    timeout: optionalDuration("timeout", options?.timeout),
    deadline: optionalDuration("deadline", options?.deadline),
    limits: RateLimit.resolve("limits", options?.limits),
    whenOpen: Check.oneOf("circuitBreaker.whenOpen", options?.circuitBreaker?.whenOpen, ["reject", "wait"], "reject"),
    breakerTimeToLive: Check.duration(
      "circuitBreaker.idleTimeToLive",
      options?.circuitBreaker?.idleTimeToLive,
      breakerTimeToLive
    ),
    metricKeys: options?.metrics === undefined || options.metrics === true
      ? Result.succeed(0)
      : options.metrics === false
      ? Result.succeed(undefined)
      : Predicate.isObject(options.metrics)
      ? Check.integer("metrics.keys", options.metrics.keys, 0, 0)
      : Result.fail(ExecutorError.invalidOption("metrics", options.metrics, "a boolean or { keys }"))
  })

/**
 * How long a breaker made from the options keeps an idle key's state: long enough to outlive any sensible
 * `openDuration` (an open key is kept this long past its opening), short enough that keys seen once do not
 * pile up (Effect's default is one hour).
 */
export const breakerTimeToLive = 5 * 60_000

/** The executor's breaker: the one given, one made from the options, or none. */
export const makeBreaker = (
  options: Options["circuitBreaker"],
  whenOpen: "reject" | "wait",
  idleTimeToLive: number
): Effect.Effect<Breaker | undefined, never, Scope.Scope> => {
  if (options === undefined) return Effect.succeed(undefined)
  if (options.breaker !== undefined) return Effect.succeed({ breaker: options.breaker, whenOpen })
  return CircuitBreaker.make({
    tripPolicy: options.tripPolicy ?? CircuitBreaker.consecutive(5),
    openDuration: options.openDuration ?? "30 seconds"
  }).pipe(
    Effect.provide(CircuitBreaker.layerStoreMemory({ idleTimeToLive })),
    Effect.map((breaker) => ({ breaker, whenOpen }))
  )
}

const limitCache = new WeakMap<ReadonlyArray<RateLimit.Limit>, ReturnType<typeof RateLimit.resolve>>()

/** Per-task limits are usually one array reused by many tasks: check it once. */
const resolveLimits = (limits: ReadonlyArray<RateLimit.Limit>) => {
  let resolved = limitCache.get(limits)
  if (resolved === undefined) {
    resolved = RateLimit.resolve("limits", limits)
    limitCache.set(limits, resolved)
  }
  return resolved
}

/** The rejection of a task whose cost can never fit one of its budgets. */
export const costOverLimit = (claim: RateLimit.Claim, key: string | undefined): ExecutorError.ExecutorError =>
  new ExecutorError.ExecutorError({
    reason: new ExecutorError.CostOverLimit({
      key: key ?? "",
      limit: `${claim.bucket.limit} ${claim.bucket.budget} per ${claim.bucket.window} ms`,
      cost: claim.amount,
      capacity: claim.bucket.algorithm === "token-bucket" ? claim.bucket.burst : claim.bucket.limit
    })
  })

/** The most rate buckets an executor caches (a few hundred bytes each); past it the cache starts again. */
export const bucketCacheSize = 4096

/** Resolves task options into specs, against one executor's defaults and its rate buckets. */
export class Specs {
  private readonly config: Config
  private readonly clock: Clock.Clock
  /**
   * The executor's rate buckets, one per limit and key, made on first use. A cache of value objects, not
   * state (the limiter keys on `bucket.id`, so an equal bucket made again is the same bucket): it is emptied
   * whenever it reaches `bucketCacheSize`, so it never grows with the keys seen. Invariant: size <= bucketCacheSize.
   */
  private readonly buckets = new Map<string, RateLimit.Bucket>()

  constructor(config: Config, clock: Clock.Clock) {
    this.config = config
    this.clock = clock
  }

  /** Rate buckets cached (for tests: never above `bucketCacheSize`). */
  get cachedBuckets(): number {
    return this.buckets.size
  }

  /** Whether the executor's own defaults give every task a spec (limits, a policy, a timeout, a breaker). */
  get needed(): boolean {
    const config = this.config
    return config.limits.length > 0 || config.policy !== ErrorPolicy.record || config.timeout !== undefined ||
      config.deadline !== undefined || config.breaker !== undefined
  }

  /** Resolves a task's options into its spec; undefined when it asks for nothing (the fast path). */
  spec(
    options: TaskOptions<any, any> | undefined,
    key: string | undefined,
    cost: RateLimit.Cost | undefined
  ): Result.Result<TaskSpec | undefined, ExecutorError.ExecutorError> {
    const config = this.config
    if (
      options === undefined && key === undefined && cost === undefined && config.limits.length === 0 &&
      config.policy === ErrorPolicy.record && config.timeout === undefined && config.deadline === undefined &&
      config.breaker === undefined
    ) return Result.succeed(undefined)
    for (const [budget, amount] of Object.entries(cost ?? {})) {
      if (!(typeof amount === "number" && amount >= 0 && Number.isFinite(amount))) {
        return Result.fail(ExecutorError.invalidOption(`cost.${budget}`, amount, "a finite number >= 0"))
      }
    }
    const taskLimits = options?.limits === undefined ? Result.succeed([]) : resolveLimits(options.limits)
    if (Result.isFailure(taskLimits)) return Result.fail(taskLimits.failure)
    const timeout = optionalDuration("timeout", options?.timeout)
    if (Result.isFailure(timeout)) return Result.fail(timeout.failure)
    const deadline = optionalDuration("deadline", options?.deadline)
    if (Result.isFailure(deadline)) return Result.fail(deadline.failure)
    const limits = taskLimits.success.length === 0 ? config.limits : [...config.limits, ...taskLimits.success]
    if (this.buckets.size >= bucketCacheSize) this.buckets.clear()
    const claims = RateLimit.claimsFor(limits, key, cost, this.buckets)
    const deadlineMillis = deadline.success ?? config.deadline
    return Result.succeed({
      key,
      claims,
      policy: options?.policy ?? config.policy,
      timeout: timeout.success ?? config.timeout,
      deadlineAt: deadlineMillis === undefined ? undefined : nowMillis(this.clock) + deadlineMillis,
      settle: options?.settle
    })
  }
}
