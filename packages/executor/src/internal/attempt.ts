/**
 * One attempt of a task, as the effect its fiber runs: the task's body in a span (when traced), behind the
 * executor's circuit breaker (when there is one), anchored to its rate reservation, and followed by the error
 * policy's decision about a failure (a retry schedule's step is an effect, so it runs in the attempt's fiber).
 *
 * When the attempt's fiber ends, `exited` decides what becomes of the task: its outcome, a retry, an
 * escalation. It starts nothing itself: it tells the engine's cycle through `AttemptEnd`, given when made.
 */
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Predicate from "effect/Predicate"
import * as Schedule from "effect/Schedule"
import * as Tracer from "effect/Tracer"
import * as ErrorPolicy from "../ErrorPolicy.ts"
import * as ExecutorError from "../ExecutorError.ts"
import * as Outcome from "../Outcome.ts"
import * as RateLimit from "../RateLimit.ts"
import type { Config, Phase } from "./config.ts"
import type { Task } from "./task.ts"
import { nowMillis, sleepUntil } from "./timers.ts"

/** What an attempt fiber returns when the policy had to be consulted inside it. */
export interface Decision {
  readonly exit: Exit.Exit<any, any>
  readonly rule?: ErrorPolicy.Rule | undefined
  readonly retryDelay?: number | undefined
  readonly circuit?: { readonly retryAfter: number } | undefined
}

const isCircuitRejection = (
  error: unknown
): error is { readonly reason: { readonly retryAfter?: Duration.Duration } } =>
  Predicate.isTagged(error, "CircuitBreakerError") &&
  Predicate.hasProperty(error, "reason") &&
  (Predicate.isTagged(error.reason, "CircuitOpen") || Predicate.isTagged(error.reason, "CircuitHalfOpen"))

const defaultTracer = Context.get(Context.empty(), Tracer.Tracer)

/** The rejection of a task whose key's circuit is open (the executor's breaker did not run its body). */
export const circuitOpen = (task: Task, retryAfter: number): ExecutorError.ExecutorError =>
  new ExecutorError.ExecutorError({
    reason: new ExecutorError.CircuitOpen({
      key: task.spec?.key ?? "default",
      retryAfter: Duration.millis(retryAfter)
    })
  })

/** What the end of an attempt does to its task, decided by `Attempts.exited` and carried out by the engine's cycle. */
export interface AttemptEnd {
  /** The lifecycle's phase: a retry or a wait for an open circuit needs an executor still starting tasks. */
  readonly phase: Phase
  finish(task: Task, exit: Exit.Exit<any, any>, kind: Outcome.Kind, rejection?: ExecutorError.ExecutorError): void
  retryLater(task: Task, delay: number): void
  escalate(source: string, cause: Cause.Cause<unknown>): void
}

/** The attempt's rate reservation (admission's): settled with the reported cost, or refunded. */
export interface Reservations {
  settle(task: Task, exit: Exit.Exit<unknown, unknown>): Exit.Exit<never> | undefined
  refund(task: Task): void
  /** Pauses the task's key after a failure carrying retry-after; a defect when `retryAfter` threw. */
  pauseOnRetryAfter(task: Task, cause: Cause.Cause<unknown>): Exit.Exit<void>
}

export class Attempts {
  /** Retries decided so far (`stats.retries`). */
  private retryCount = 0
  private readonly config: Config
  private readonly clock: Clock.Clock
  private readonly reservations: Reservations
  private readonly end: AttemptEnd
  /** The context last asked about for `tracing: "auto"`, and the answer (submitters usually share one). */
  private tracedContext: Context.Context<any> | undefined = undefined
  private tracedAnswer = false

  constructor(config: Config, clock: Clock.Clock, reservations: Reservations, end: AttemptEnd) {
    this.config = config
    this.clock = clock
    this.reservations = reservations
    this.end = end
  }

  get retries(): number {
    return this.retryCount
  }

  /**
   * An attempt's fiber ended (the engine took the task out of the running ones): settles its reservation and
   * applies the error policy's decision, or the reason the executor stopped it.
   */
  exited(task: Task, fiberExit: Exit.Exit<any, any>): void {
    // The common case first, as the general path decides it: a success of a task not stopped, whose fiber
    // decided nothing (no policy, no breaker), with no reservation to settle. (The general path is its own
    // method, so that this one stays small enough for the engine's exit to inline.)
    if (
      fiberExit._tag === "Success" && task.stopReason === undefined && task.reservation === undefined &&
      !this.decides(task)
    ) return this.end.finish(task, fiberExit, "success")
    this.decideExit(task, fiberExit)
  }

  private decideExit(task: Task, fiberExit: Exit.Exit<any, any>): void {
    const decision: Decision = this.decides(task) && fiberExit._tag === "Success"
      ? fiberExit.value as Decision
      : { exit: fiberExit }
    const exit = decision.exit
    if (task.stopReason !== undefined) {
      const thrown = this.reservations.settle(task, exit)
      if (thrown !== undefined) return this.end.finish(task, thrown, "defect")
      const stopped = exit._tag === "Failure" && Cause.hasInterrupts(exit.cause) ? exit : Exit.interrupt()
      return this.end.finish(task, stopped, task.stopReason)
    }
    if (exit._tag === "Failure") {
      const paused = this.reservations.pauseOnRetryAfter(task, exit.cause)
      if (paused._tag === "Failure") {
        this.reservations.settle(task, exit)
        return this.end.finish(task, paused, "defect")
      }
    }
    if (decision.circuit !== undefined) {
      // The body did not run: the attempt does not count, and its rate reservation is refunded.
      task.attempts--
      this.reservations.refund(task)
      // Stryker disable next-line OptionalChaining,StringLiteral: a circuit decision implies a breaker, and any default but "wait" rejects
      const whenOpen = this.config.breaker?.whenOpen ?? "reject"
      if (whenOpen === "wait" && this.end.phase === "open") {
        return this.end.retryLater(task, Math.max(decision.circuit.retryAfter, 1))
      }
      return this.end.finish(task, Exit.interrupt(), "rejected", circuitOpen(task, decision.circuit.retryAfter))
    }
    const thrown = this.reservations.settle(task, exit)
    if (thrown !== undefined) return this.end.finish(task, thrown, "defect")
    const rule = decision.rule
    if (
      rule === undefined ||
      // Stryker disable next-line ConditionalExpression,StringLiteral: a success never has a rule (decide gives none)
      exit._tag === "Success"
    ) return this.end.finish(task, exit, Outcome.kindOfExit(exit))
    switch (rule._tag) {
      case "Record":
        return this.end.finish(task, exit, Outcome.kindOfExit(exit))
      case "Ignore":
        return this.end.finish(task, exit, "skipped")
      case "Escalate":
        this.end.finish(task, exit, Outcome.kindOfExit(exit))
        return this.end.escalate(`task ${task.id}`, exit.cause)
      case "Retry": {
        const delay = decision.retryDelay ?? 0
        // Stryker disable next-line OptionalChaining: a retry rule comes from a policy, so the task has a spec
        const deadlineAt = task.spec?.deadlineAt
        // No time left for another attempt: the last failure is the outcome.
        // Stryker disable next-line ConditionalExpression: once cancelling, every attempt that ends was stopped and is finished above
        if (this.end.phase !== "open" && this.end.phase !== "draining") {
          return this.end.finish(task, exit, Outcome.kindOfExit(exit))
        }
        if (deadlineAt !== undefined && nowMillis(this.clock) + delay >= deadlineAt) {
          return this.end.finish(task, exit, Outcome.kindOfExit(exit))
        }
        this.retryCount++
        this.config.instruments?.retried(task.spec?.key)
        return this.end.retryLater(task, delay)
      }
    }
  }

  /** The effect of one attempt; it runs in the submitter's context (its requirements are met there). */
  effect(task: Task): Effect.Effect<unknown, unknown, any> {
    // Built by the engine before the first attempt (`Task.build`).
    const body = task.body as Effect.Effect<unknown, unknown, any>
    // The common case: nothing to wrap the body in (no reservation, tracer, breaker or deciding policy).
    if (task.reservation === undefined && !this.decides(task) && !this.isTraced(task)) return body
    return this.wrap(task, body)
  }

  private wrap(task: Task, body: Effect.Effect<unknown, unknown, any>): Effect.Effect<unknown, unknown, any> {
    let effect: Effect.Effect<unknown, unknown, any> = this.isTraced(task) ? this.traced(task, body) : body
    const memory = this.config.store.memory
    const reservation = task.reservation
    if (memory !== undefined && reservation !== undefined) {
      // The first step of the attempt's fiber (it cannot yield before it): the moment the task really starts.
      const body = effect
      effect = Effect.suspend(() => {
        memory.anchor(reservation, nowMillis(this.clock))
        return body
      })
    }
    if (reservation !== undefined) effect = Effect.provideService(effect, RateLimit.CurrentReservation, reservation)
    const notBefore = reservation?.notBefore
    if (notBefore !== undefined) {
      // Reserved ahead (a store with `lookahead`): the budget is the task's from `notBefore` on, so it waits
      // for that moment in its own fiber, holding its slot, and then starts as close to it as the clock allows.
      effect = Effect.andThen(sleepUntil(this.clock, notBefore, this.config.liveClock), effect)
    }
    const breaker = this.config.breaker
    // Whether the body ran: an attempt that failed without running it was rejected by the executor's own
    // breaker. Known by provenance, never by the error's shape (a task may fail with a breaker error of its own).
    const attempt = { ran: breaker === undefined }
    if (breaker !== undefined) {
      const body = effect
      const instruments = this.config.instruments
      effect = breaker.breaker.execute(
        Effect.suspend(() => {
          attempt.ran = true
          instruments?.started(task.spec?.key)
          return body
        }),
        { key: task.spec?.key ?? "default" }
      )
    }
    if (!this.decides(task)) return effect
    return Effect.flatMap(Effect.exit(effect), (exit) => this.decide(task, exit, attempt.ran))
  }

  /** Whether an attempt of `task` returns a `Decision` (the policy, or the breaker, runs inside its fiber). */
  private decides(task: Task): boolean {
    const policy = task.spec?.policy
    return this.config.breaker !== undefined || (policy !== undefined && policy !== ErrorPolicy.record)
  }

  /**
   * Spans cost an allocation or two per attempt: with `tracing: "auto"` they are made only when the submitter
   * installed a tracer (Effect's default one records spans nobody exports).
   */
  private isTraced(task: Task): boolean {
    const tracing = this.config.tracing
    if (tracing !== "auto") return tracing
    const context = task.origin.context
    if (context === this.tracedContext) return this.tracedAnswer
    this.tracedContext = context
    this.tracedAnswer = Context.get(context, Tracer.Tracer) !== defaultTracer
    return this.tracedAnswer
  }

  /** One span per attempt, parented to the submitter's span (the task runs in the submitter's context). */
  private traced<R>(task: Task, effect: Effect.Effect<unknown, unknown, R>): Effect.Effect<unknown, unknown, R> {
    const attributes: Record<string, unknown> = {
      "pile.executor": this.config.name,
      "pile.task.id": task.id,
      "pile.task.attempt": task.attempts
    }
    const key = task.spec?.key
    if (key !== undefined) attributes["pile.task.key"] = key
    return Effect.withSpan(
      Effect.onExit(
        effect,
        (exit) => Effect.annotateCurrentSpan("pile.task.outcome", task.stopReason ?? Outcome.kindOfExit(exit))
      ),
      "pile.task",
      // A stack trace per attempt would cost more than the attempt itself; the span's parent locates it.
      { attributes, kind: "internal", captureStackTrace: false }
    )
  }

  /** Consults the error policy about a failed attempt, inside the attempt's fiber (a schedule step is an effect). */
  private decide(task: Task, exit: Exit.Exit<unknown, unknown>, ran: boolean): Effect.Effect<Decision> {
    if (exit._tag === "Success") return Effect.succeed({ exit })
    for (const reason of exit.cause.reasons) {
      if (!ran && reason._tag === "Fail" && isCircuitRejection(reason.error)) {
        const retryAfter = reason.error.reason.retryAfter
        return Effect.succeed({
          exit,
          circuit: { retryAfter: retryAfter === undefined ? 0 : Duration.toMillis(retryAfter) }
        })
      }
    }
    if (!Cause.hasFails(exit.cause) && !Cause.hasDies(exit.cause)) return Effect.succeed({ exit })
    const { error, rule } = ErrorPolicy.ruleFor(task.spec?.policy ?? ErrorPolicy.record, exit.cause)
    if (rule._tag !== "Retry") return Effect.succeed({ exit, rule })
    if (rule.while !== undefined && !rule.while(error)) return Effect.succeed({ exit, rule: rule.exhausted })
    const steps = task.steps ??= new Map()
    const existing = steps.get(rule)
    const step = existing === undefined
      ? Effect.tap(Schedule.toStep(rule.schedule), (made) => Effect.sync(() => steps.set(rule, made as any)))
      : Effect.succeed(existing)
    return Effect.flatMap(
      step,
      (next) =>
        Effect.map(Effect.exit(next(this.clock.currentTimeMillisUnsafe(), error)), (stepped): Decision => {
          if (stepped._tag === "Failure") return { exit, rule: rule.exhausted }
          const delay = Duration.toMillis((stepped.value as [unknown, Duration.Duration])[1])
          const retryAfter = ErrorPolicy.retryAfterMillis(error) ?? 0
          return { exit, rule, retryDelay: Math.max(delay, retryAfter) }
        })
    )
  }
}
