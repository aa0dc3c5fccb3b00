/**
 * The executor's engine: the task states, the bounded intake, admission (concurrency slots and rate
 * budgets), attempts and their error policy, timers, and the shutdown protocol. `Executor.ts` is its public
 * face.
 *
 * Data path: submit → intake (bounded FIFO) → admission: a key line if the task has rate limits or its key
 * is paused, then a concurrency slot and every rate budget, reserved together → one fiber per attempt →
 * error policy (retry: back to admission after a delay) → outcome → the task's sink (a Pile buffer) and its
 * handle's waiters.
 *
 * Ownership: one dispatcher fiber per executor, forked in the executor's scope, starts every task fiber,
 * fires every timer and runs the shutdown protocol. Task and service fibers are owned by the engine itself
 * (`fibers`): shutdown interrupts and awaits every one of them, each wait bounded by `finalizerTimeout`
 * (docs/decisions/0002). All state below is touched only synchronously, between two steps of some fiber, so
 * every transition is atomic; nobody is woken until the state they will look at is consistent.
 */
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import type { CircuitBreaker } from "effect/persistence"
import * as Predicate from "effect/Predicate"
import * as Schedule from "effect/Schedule"
import * as Tracer from "effect/Tracer"
import * as ErrorPolicy from "../ErrorPolicy.ts"
import * as ExecutorError from "../ExecutorError.ts"
import * as Outcome from "../Outcome.ts"
import type { Cost, RateLimitStore, ReserveResult } from "../RateLimit.ts"
import type { Instruments } from "./instruments.ts"
import type { Claim, Reservation } from "./limiter.ts"
import { LinkedList, type Node } from "./linkedList.ts"
import { Outbox } from "./outbox.ts"
import type { OutcomeBuffer } from "./outcomeBuffer.ts"
import { Timers } from "./timers.ts"
import { guard } from "./userCode.ts"

/** Where a task's outcome goes besides its handle: a Pile buffer, or nowhere. */
export type Sink = OutcomeBuffer<Outcome.Outcome<any, any, any>, any>

/**
 * A task's life: queued → (pending) → running → (pending → running)* → done. A done task whose outcome waits
 * for room in a bounded Pile still holds its slot (`release` frees it once the outcome is in).
 */
export const QUEUED = 0
export const PENDING = 1
export const RUNNING = 2
export const DONE = 3
export type TaskState = typeof QUEUED | typeof PENDING | typeof RUNNING | typeof DONE

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

export interface Config {
  readonly capacity: number
  readonly concurrency: number
  readonly strategy: Strategy
  readonly shutdown: ShutdownRequest
  /** Milliseconds shutdown waits for interrupted fibers (and their finalizers) before abandoning them. */
  readonly finalizerTimeout: number
  readonly store: RateLimitStore
  readonly breaker: Breaker | undefined
  /** The executor's name, for spans. */
  readonly name: string
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
  readonly settle: ((exit: Exit.Exit<any, any>) => Cost | undefined) | undefined
}

/** A callback waiting for a task's outcome. */
type Waiter = (outcome: Outcome.Outcome<any, any, any>) => void

/** What an attempt fiber returns when the policy had to be consulted inside it. */
interface Decision {
  readonly exit: Exit.Exit<any, any>
  readonly rule?: ErrorPolicy.Rule | undefined
  readonly retryDelay?: number | undefined
  readonly circuit?: { readonly retryAfter: number } | undefined
}

/**
 * One accepted task, and its handle: the object `submit` returns is the task itself, seen through the
 * `TaskHandle` interface, so a queued task costs one object plus its links.
 */
export class Task<A = any, E = any> implements Node {
  prev: Node | undefined = undefined
  next: Node | undefined = undefined
  /** The intake or a key line, when the task is in one. */
  list: LinkedList<any> | undefined = undefined
  /** Written by the engine only. */
  state: TaskState = QUEUED
  /** Attempts started so far (I3: each attempt runs the body once). */
  attempts = 0
  /** The fiber of the running attempt. Invariant: set iff state === RUNNING and the fork returned. */
  fiber: Fiber.Fiber<any, any> | undefined = undefined
  /** Whether the running attempt returns a `Decision` (the policy ran inside the fiber). */
  decides = false
  /** Why the executor stopped this task, when it did: decides the outcome's kind over the fiber's exit. */
  stopReason: Outcome.Kind | undefined = undefined
  /** Set once, when the outcome is decided (I18: a late completion never overwrites it). */
  result: Outcome.Outcome<A, E, any> | undefined = undefined
  waiters: Array<Waiter> | undefined = undefined
  /** The rate reservation of the running attempt, for settlement and refunds (I9). */
  reservation: Reservation | undefined = undefined
  /** Clock readings (ms) for the wait and run-time histograms. */
  acceptedAt = 0
  dequeuedAt = 0
  startedAt = 0
  /** Retry schedules' step functions, one per retry rule used by this task. */
  steps:
    | Map<ErrorPolicy.Rule, (now: number, input: unknown) => Effect.Effect<[unknown, Duration.Duration], unknown>>
    | undefined = undefined

  readonly engine: Engine
  readonly id: number
  readonly effect: Effect.Effect<A, E, any>
  readonly context: Context.Context<any>
  readonly input: unknown
  readonly sink: Sink | undefined
  readonly spec: TaskSpec | undefined

  constructor(
    engine: Engine,
    id: number,
    effect: Effect.Effect<A, E, any>,
    context: Context.Context<any>,
    input: unknown,
    sink: Sink | undefined,
    spec: TaskSpec | undefined
  ) {
    this.engine = engine
    this.id = id
    this.effect = effect
    this.context = context
    this.input = input
    this.sink = sink
    this.spec = spec
  }

  /** The outcome, waiting for it. Never fails. */
  get outcome(): Effect.Effect<Outcome.Outcome<A, E, any>> {
    return Effect.callback<Outcome.Outcome<A, E, any>>((resume) => {
      if (this.result !== undefined) return resume(Effect.succeed(this.result))
      const waiter: Waiter = (outcome) => resume(Effect.succeed(outcome))
      ;(this.waiters ??= []).push(waiter)
      return Effect.sync(() => {
        // Stryker disable next-line OptionalChaining,UnaryOperator: the wait is listed until the outcome arrives, and then nothing is left to clean up
        const i = this.waiters?.indexOf(waiter) ?? -1
        if (i >= 0) this.waiters!.splice(i, 1)
      })
    })
  }

  get await(): Effect.Effect<Exit.Exit<A, E>> {
    return Effect.map(this.outcome, (outcome) => outcome.exit)
  }

  get join(): Effect.Effect<A, E> {
    return Effect.flatMap(this.await, (exit) => exit)
  }

  get cancel(): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.engine.stop(this, "cancelled")
      return Effect.asVoid(this.outcome)
    })
  }

  get poll(): Effect.Effect<Outcome.Outcome<A, E, any> | undefined> {
    return Effect.sync(() => this.result)
  }
}

/** A submitter waiting for space in the intake. */
interface SubmitWaiter extends Node {
  readonly task: Task
  readonly resume: (effect: Effect.Effect<Task, ExecutorError.ExecutorError>) => void
}

/** The tasks of one key waiting for admission, in arrival order (retries first). */
class Line {
  readonly tasks = new LinkedList<Task>()
  /** Until when a 429 paused the key (ms). */
  pausedUntil = 0
  /** The wake-up already scheduled for this line, to avoid duplicate timers. */
  wakeAt = 0
  /** An asynchronous reservation for its head is in flight. */
  reserving = false
  readonly key: string
  constructor(key: string) {
    this.key = key
  }
}

/**
 * Counters behind `stats`. Invariant (I15): accepted = intake.size + pendingCount + running.size + Σ finished,
 * and submitted = accepted + rejected.
 */
export interface Counters {
  accepted: number
  rejected: number
  finished: Record<Outcome.Kind, number>
  peakQueued: number
  abandoned: number
  serviceRestarts: number
  retries: number
  pauses: number
}

export const emptyFinished = (): Record<Outcome.Kind, number> => {
  const out = {} as Record<Outcome.Kind, number>
  for (const kind of Outcome.kinds) out[kind] = 0
  return out
}

const isCircuitRejection = (
  error: unknown
): error is { readonly reason: { readonly retryAfter?: Duration.Duration } } =>
  Predicate.isTagged(error, "CircuitBreakerError") &&
  Predicate.hasProperty(error, "reason") &&
  (Predicate.isTagged(error.reason, "CircuitOpen") || Predicate.isTagged(error.reason, "CircuitHalfOpen"))

export class Engine {
  // ---- configuration (concurrency is resizable)
  concurrency: number
  readonly capacity: number
  readonly strategy: Strategy

  // ---- intake
  /**
   * Invariant (I13): intake.size + pendingFresh <= capacity: tasks that have not started yet (queued, or
   * waiting for their first admission) never exceed the capacity.
   */
  readonly intake = new LinkedList<Task>()
  readonly submitWaiters = new LinkedList<SubmitWaiter>()

  // ---- admission and running
  /** Slots in use: running tasks plus finished tasks whose outcome waits for space in a bounded Pile. */
  slots = 0
  /**
   * Tasks whose attempt's fiber is running (an intrusive list: a running task is in no other list).
   * Invariant (I10): running.size <= slots, and slots only grows while slots < concurrency.
   */
  readonly running = new LinkedList<Task>()
  /** Key lines with tasks waiting or a pause in force. */
  readonly lines = new Map<string, Line>()
  /** Tasks waiting for a retry delay. */
  readonly sleeping = new Set<Task>()
  /** Tasks out of the intake but not running: in a key line or sleeping before a retry. */
  pendingCount = 0
  /** Of those, the ones that never started (they still count against the capacity). */
  pendingFresh = 0
  /** Every timer wakes the dispatcher when it becomes the earliest, wherever it was set. */
  readonly timers = new Timers(() => this.wake())
  /** Settlements and refunds for an asynchronous store, run by the dispatcher. */
  private storeOps: Array<Effect.Effect<void, unknown>> = []

  // ---- lifecycle
  phase: Phase = "open"
  shutdownRequest: ShutdownRequest | undefined = undefined
  escalation: ExecutorError.Escalated | undefined = undefined
  readonly closed = Deferred.makeUnsafe<void>()
  /** The dispatcher's and the services' fibers (task fibers hang off the running tasks). */
  readonly fibers = new Set<Fiber.Fiber<any, any>>()
  /** Task fibers that did not stop within finalizerTimeout at shutdown: given up, counted in `abandoned`. */
  readonly abandonedFibers = new Set<Fiber.Fiber<any, any>>()
  readonly services = new Set<Fiber.Fiber<any, any>>()
  dispatcher: Fiber.Fiber<void> | undefined = undefined

  // ---- wake-ups
  /**
   * Every fiber the engine resumes, starts or interrupts is posted here and woken once the transition that
   * found it has finished (the wake-up rule, see outbox.ts). Entry points from other fibers (`offer`,
   * `stop`, an attempt's exit, a Pile consumer's release, the dispatcher's steps) run between `begin` and `end`.
   */
  private readonly outbox = new Outbox<Task>((task) => this.fork(task))

  // ---- dispatcher signalling
  // Stryker disable next-line BooleanLiteral: a signal at start costs one empty admission pass
  private signalled = false
  private dispatcherResume: ((effect: Effect.Effect<void>) => void) | undefined = undefined

  // ---- bookkeeping
  nextId = 1
  readonly counters: Counters = {
    accepted: 0,
    rejected: 0,
    finished: emptyFinished(),
    peakQueued: 0,
    abandoned: 0,
    serviceRestarts: 0,
    retries: 0,
    pauses: 0
  }

  readonly config: Config
  readonly clock: Clock.Clock
  /** The executor-wide Pile, unless it was turned off. */
  readonly pile: Sink | undefined

  constructor(config: Config, clock: Clock.Clock, pile: Sink | undefined) {
    this.config = config
    this.clock = clock
    this.pile = pile
    this.concurrency = config.concurrency
    this.capacity = config.capacity
    this.strategy = config.strategy
  }

  /** Milliseconds on the executor's clock, with sub-millisecond precision when the clock has it. */
  now(): number {
    return Number(this.clock.currentTimeNanosUnsafe()) / 1e6
  }

  // ------------------------------------------------------------------------------------------------------
  // submission
  // ------------------------------------------------------------------------------------------------------

  /** A new task, not yet accepted. */
  makeTask<A, E>(
    effect: Effect.Effect<A, E, any>,
    context: Context.Context<any>,
    input: unknown,
    sink: Sink | undefined,
    spec: TaskSpec | undefined
  ): Task<A, E> {
    return new Task(this, this.nextId++, effect, context, input, sink, spec)
  }

  get isAccepting(): boolean {
    return this.phase === "open"
  }

  private closedError(): ExecutorError.ExecutorError {
    return ExecutorError.closed(this.escalation !== undefined)
  }

  /** Tasks that have not started yet: what the capacity bounds. */
  private get held(): number {
    return this.intake.size + this.pendingFresh
  }

  /**
   * Offers a task to the intake, waiting while it is full (strategy "suspend") unless `wait` is false.
   * Succeeds with the task once accepted; fails with Closed or QueueFull, and then the task was never accepted.
   */
  offer<A, E>(task: Task<A, E>, wait: boolean): Effect.Effect<Task<A, E>, ExecutorError.ExecutorError> {
    return Effect.suspend(() => {
      const decided = this.tryOffer(task, wait)
      if (decided === undefined) return this.waitToOffer(task)
      return decided === task ? Effect.succeed(task) : Effect.fail(decided as ExecutorError.ExecutorError)
    })
  }

  /** Accepts or refuses `task` now; undefined when the submitter must wait for space. */
  tryOffer<A, E>(task: Task<A, E>, wait: boolean): Task<A, E> | ExecutorError.ExecutorError | undefined {
    this.outbox.begin()
    const decided = this.decideOffer(task, wait)
    this.outbox.end()
    return decided
  }

  private decideOffer<A, E>(task: Task<A, E>, wait: boolean): Task<A, E> | ExecutorError.ExecutorError | undefined {
    if (this.phase !== "open") {
      this.reject(task)
      return this.closedError()
    }
    if (this.held < this.capacity && this.submitWaiters.size === 0) {
      this.accept(task)
      return task
    }
    if (this.strategy === "dropping") {
      this.counters.accepted++
      this.config.instruments?.submitted(task.spec?.key)
      this.finish(task, Exit.interrupt(), "dropped")
      return task
    }
    if (this.strategy === "sliding") {
      const victim = this.intake.head ?? this.oldestFresh()
      if (victim !== undefined) {
        this.finish(victim, Exit.interrupt(), "evicted")
        this.accept(task)
        return task
      }
    }
    if (!wait) {
      this.reject(task)
      return new ExecutorError.ExecutorError({ reason: new ExecutorError.QueueFull({ capacity: this.capacity }) })
    }
    return undefined
  }

  private waitToOffer<A, E>(task: Task<A, E>): Effect.Effect<Task<A, E>, ExecutorError.ExecutorError> {
    return Effect.callback<Task<A, E>, ExecutorError.ExecutorError>((resume) => {
      const waiter: SubmitWaiter = {
        task,
        resume: resume as SubmitWaiter["resume"],
        prev: undefined,
        next: undefined,
        list: undefined
      }
      this.submitWaiters.push(waiter)
      // An interrupted submitter leaves nothing queued (I13): while it waits, nothing was accepted.
      return Effect.sync(() => {
        this.submitWaiters.remove(waiter)
      })
    })
  }

  /** The oldest task waiting in a line for its first admission (a sliding queue's victim once the intake is empty). */
  private oldestFresh(): Task | undefined {
    let oldest: Task | undefined
    for (const task of this.pendingTasks()) {
      // A task that never started waits in a line (only retries sleep); ids are unique, so < and <= agree.
      // Stryker disable next-line EqualityOperator: ids are unique
      if (task.attempts === 0 && (oldest === undefined || task.id < oldest.id)) oldest = task
    }
    return oldest
  }

  /** Counts a submission refused with an error. */
  reject(task: Task | undefined): void {
    this.counters.rejected++
    this.config.instruments?.rejected(task?.spec?.key)
  }

  /** Accepts a task that will never run: it ends at once as rejected (its cost can never fit). */
  acceptRejected(task: Task, rejection: ExecutorError.ExecutorError): void {
    this.acceptFinished(task, Exit.interrupt(), "rejected", rejection)
  }

  /** Accepts a task that ends before it could run: rejected, or a defect in the user code that describes it. */
  acceptFinished(
    task: Task,
    exit: Exit.Exit<any, any>,
    kind: Outcome.Kind,
    rejection?: ExecutorError.ExecutorError
  ): void {
    this.outbox.begin()
    this.counters.accepted++
    this.config.instruments?.submitted(task.spec?.key)
    this.finish(task, exit, kind, rejection)
    this.outbox.end()
  }

  private accept(task: Task): void {
    task.state = QUEUED
    this.intake.push(task)
    this.counters.accepted++
    const instruments = this.config.instruments
    if (instruments !== undefined) {
      instruments.submitted(task.spec?.key)
      task.acceptedAt = this.metricMillis()
    }
    // Stryker disable next-line EqualityOperator: assigning an equal peak changes nothing
    if (this.held > this.counters.peakQueued) this.counters.peakQueued = this.held
    const deadlineAt = task.spec?.deadlineAt
    if (deadlineAt !== undefined) {
      this.timers.add(deadlineAt, () => this.stop(task, "timedOut"), task)
    }
    this.kick()
  }

  /** Called whenever fewer tasks wait to start: hands the freed places to waiting submitters, in order. */
  private admitWaiters(): void {
    while (this.held < this.capacity && this.submitWaiters.size > 0 && this.phase === "open") {
      const waiter = this.submitWaiters.shift()!
      this.accept(waiter.task)
      this.outbox.post(() => waiter.resume(Effect.succeed(waiter.task)))
    }
    if (
      // Stryker disable next-line ConditionalExpression,EqualityOperator: waking an empty list of feeders does nothing
      this.roomWaiters.length > 0 &&
      this.capacity - this.held >= this.lowWater
    ) this.wakeRoomWaiters()
  }

  /** Batch feeders waiting for room (see `waitForRoom`). */
  private roomWaiters: Array<() => void> = []

  /** How much room a batch feeder waits for: a quarter of the capacity. */
  private get lowWater(): number {
    return Math.max(1, Math.floor(this.capacity / 4))
  }

  private wakeRoomWaiters(): void {
    const waiters = this.roomWaiters
    this.roomWaiters = []
    for (const wake of waiters) this.outbox.post(wake)
  }

  /**
   * Waits until the intake has room for a quarter of its capacity, or admission closed. A batch feeder waits
   * here once and then offers a run of inputs synchronously, instead of being resumed for every single place
   * that frees up. It holds no task while it waits (so it leaves nothing queued if interrupted) and gives way
   * to waiting submitters, which are handed freed places first.
   */
  readonly waitForRoom: Effect.Effect<void> = Effect.callback<void>((resume) => {
    // Stryker disable next-line ConditionalExpression,LogicalOperator,EqualityOperator,BlockStatement: its only caller, a batch feeder, comes here in the same synchronous step in which it found the queue full while open: the early return is for other callers
    if (this.phase !== "open" || (this.capacity - this.held >= this.lowWater && this.submitWaiters.size === 0)) {
      return resume(Effect.void)
    }
    const wake = () => resume(Effect.yieldNow)
    this.roomWaiters.push(wake)
    return Effect.sync(() => {
      const i = this.roomWaiters.indexOf(wake)
      if (i >= 0) this.roomWaiters.splice(i, 1)
    })
  })

  // ------------------------------------------------------------------------------------------------------
  // admission
  // ------------------------------------------------------------------------------------------------------

  /** Lines skipped for the rest of the current pump pass (their head was denied). */
  private readonly passBlocked = new Set<Line>()
  /** Buckets a denied head is waiting for: younger heads may not take from them this pass (I11). */
  private readonly passBlockedBuckets = new Set<string>()

  private lineOf(key: string): Line {
    let line = this.lines.get(key)
    if (line === undefined) {
      line = new Line(key)
      this.lines.set(key, line)
    }
    return line
  }

  /** The line a task must wait in, or undefined when it may start as soon as it has a slot. */
  private lineFor(task: Task): Line | undefined {
    const key = task.spec?.key ?? ""
    // Stryker disable next-line ConditionalExpression: a fast path; a task without claims put in its key's line starts from there in the same pass, in the same order
    if (task.spec === undefined || task.spec.claims.length === 0) return this.lines.get(key)
    return this.lineOf(key)
  }

  private makePending(task: Task): void {
    task.state = PENDING
    this.pendingCount++
    if (task.attempts === 0) this.pendingFresh++
  }

  private leavePending(task: Task): void {
    this.pendingCount--
    if (task.attempts === 0) {
      this.pendingFresh--
      this.admitWaiters()
    }
  }

  /**
   * Makes the dispatcher pass again at `at` (ms) for this line, unless a wake-up already scheduled comes first:
   * the line is looked at then, and a wake-up for later is scheduled if it still needs one. The timer wakes the
   * dispatcher: it may fire in the middle of a pass (between asynchronous reservations, or after a yield) that
   * skips this line since it was denied earlier in the same pass, and only a new pass looks at the line again.
   */
  private scheduleLineWake(line: Line, at: number): void {
    if (
      line.wakeAt > this.now() &&
      // Stryker disable next-line ConditionalExpression: an earlier wake-up than needed changes no outcome (the line then schedules the later one)
      line.wakeAt <= at
    ) return
    line.wakeAt = at
    this.timers.add(at, () => this.wake())
  }

  private blockHead(line: Line, task: Task, retryAt: number, blocking: ReadonlyArray<string> | undefined): void {
    // Stryker disable next-line CallExpression: the buckets added below skip this line for the pass anyway
    this.passBlocked.add(line)
    // Only asynchronous stores (Redis, tested outside the mutation run) may leave `blocking` out.
    // Stryker disable next-line ConditionalExpression,BlockStatement
    if (blocking === undefined) {
      // Stryker disable next-line all
      for (const claim of task.spec?.claims ?? []) this.passBlockedBuckets.add(claim.bucket.id)
    } else for (const id of blocking) this.passBlockedBuckets.add(id)
    this.scheduleLineWake(line, retryAt)
  }

  private sharesBlockedBucket(task: Task): boolean {
    if (this.passBlockedBuckets.size === 0) return false
    for (const claim of task.spec?.claims ?? []) if (this.passBlockedBuckets.has(claim.bucket.id)) return true
    return false
  }

  /**
   * One admission step: starts a task, moves one from the intake to its line, or asks for an asynchronous
   * reservation. Returns what the dispatcher must do next, or undefined when nothing more can start now.
   */
  private admitNext():
    | { readonly start: Task }
    | { readonly reserve: Task; readonly line: Line }
    | "again"
    | undefined
  {
    // Stryker disable next-line ConditionalExpression: defensive: once cancelling, every task was taken out or stopped, so nothing could start
    if (this.phase !== "open" && this.phase !== "draining") return undefined
    if (this.slots >= this.concurrency) return undefined
    // Reading the clock costs: only lines need it (instant tasks without limits never do).
    // Stryker disable next-line ConditionalExpression: performance only
    const now = this.lines.size === 0 ? 0 : this.now()
    // 1. The oldest head of a line that may go now. Line tasks are older than the intake's.
    let best: Line | undefined
    for (const line of this.lines.values()) {
      const head = line.tasks.head
      if (head === undefined) {
        if (line.pausedUntil <= now && !line.reserving) this.lines.delete(line.key)
        continue
      }
      // Stryker disable next-line ConditionalExpression,LogicalOperator: performance only: a line looked at again in the pass gets the same answer (`reserving` is the asynchronous-store path)
      if (line.reserving || this.passBlocked.has(line)) continue
      if (line.pausedUntil > now) {
        // Stryker disable next-line CallExpression: performance only, as above
        this.passBlocked.add(line)
        this.scheduleLineWake(line, line.pausedUntil)
        continue
      }
      if (this.sharesBlockedBucket(head)) {
        // Stryker disable next-line CallExpression: performance only, as above
        this.passBlocked.add(line)
        continue
      }
      if (best === undefined || head.id < best.tasks.head!.id) best = line
    }
    if (best !== undefined) {
      const task = best.tasks.head!
      const claims = task.spec?.claims ?? []
      // Stryker disable next-line ConditionalExpression,BlockStatement: a fast path: reserving no claims always succeeds and charges nothing
      if (claims.length === 0) {
        this.leaveLine(best, task)
        return { start: task }
      }
      const memory = this.config.store.memory
      if (memory === undefined) return { reserve: task, line: best }
      const result = memory.reserve(this.reservationId(task), claims, now)
      if (!("claims" in result)) {
        this.blockHead(best, task, result.retryAt, result.blocking)
        return "again"
      }
      task.reservation = result
      this.leaveLine(best, task)
      return { start: task }
    }
    // 2. The intake's head: it starts at once unless it must wait in its key's line.
    const task = this.intake.shift()
    if (task === undefined) return undefined
    const instruments = this.config.instruments
    if (instruments !== undefined) {
      task.dequeuedAt = this.passMillis
      instruments.observe(0, task.dequeuedAt - task.acceptedAt)
    }
    const line = this.lineFor(task)
    if (line === undefined) {
      this.admitWaiters()
      return { start: task }
    }
    this.makePending(task)
    line.tasks.push(task)
    return "again"
  }

  /** Unique among every executor of the process (a store may be shared); the Redis store adds a per-process id. */
  private reservationId(task: Task): string {
    // Stryker disable next-line ArithmeticOperator: any numbering of the attempts keeps the ids unique
    return `${this.serial}.${task.id}.${task.attempts + 1}`
  }

  // Stryker disable next-line UpdateOperator: counting down keeps the serials unique too
  private readonly serial = ++engineSerial

  private leaveLine(line: Line, task: Task): void {
    line.tasks.remove(task)
    this.leavePending(task)
  }

  /** Starts one attempt of `task` in its own fiber. Runs in the dispatcher fiber. */
  private start(task: Task): void {
    task.state = RUNNING
    task.attempts++
    task.stopReason = undefined
    this.slots++
    this.running.push(task)
    const instruments = this.config.instruments
    if (instruments !== undefined) {
      task.startedAt = this.passMillis
      if (task.attempts === 1) instruments.observe(1, task.startedAt - task.dequeuedAt)
    }
    const timeout = task.spec?.timeout
    if (timeout !== undefined) {
      const attempt = task.attempts
      this.timers.add(this.now() + timeout, () => {
        if (task.state === RUNNING && task.attempts === attempt) this.stop(task, "timedOut")
      }, task)
    }
    // The attempt's fiber is forked once this transition has finished (its body may run at once and call
    // back into the engine): see `fork`.
    this.outbox.post(task)
  }

  /**
   * Forks the attempt of a task `start` admitted. The fiber runs with exactly the submitter's context (its
   * services, tracer, clock and span), and starts at once. It is owned by the engine, not by a scope
   * (docs/decisions/0002): shutdown interrupts and awaits each one, bounded by finalizerTimeout; a scope would
   * await a stuck finalizer forever.
   */
  private fork(task: Task): void {
    if (task.state !== RUNNING || task.fiber !== undefined) return // finished (abandoned) before its turn
    if (task.stopReason !== undefined) {
      // Stopped between its admission and its fork: the body never runs, and the attempt does not count (I3).
      this.outbox.begin()
      task.attempts--
      this.refund(task)
      this.onAttemptExit(task, undefined, Exit.interrupt())
      this.outbox.end()
      return
    }
    // Without a breaker the body runs as soon as the fiber starts; with one, `attemptEffect` counts it.
    if (this.config.breaker === undefined) this.config.instruments?.started(task.spec?.key)
    this.attach(task, Effect.runForkWith(task.context)(this.attemptEffect(task)))
  }

  /** The effect of one attempt; it runs in the submitter's context (its requirements are met there). */
  private attemptEffect(task: Task): Effect.Effect<unknown, unknown, any> {
    let effect: Effect.Effect<unknown, unknown, any> = this.isTraced(task)
      ? this.traced(task, task.effect)
      : task.effect
    const memory = this.config.store.memory
    const reservation = task.reservation
    if (memory !== undefined && reservation !== undefined) {
      // The first step of the attempt's fiber (it cannot yield before it): the moment the task really starts.
      const body = effect
      effect = Effect.suspend(() => {
        memory.anchor(reservation, this.now())
        return body
      })
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
    const policy = task.spec?.policy
    task.decides = breaker !== undefined || (policy !== undefined && policy !== ErrorPolicy.record)
    if (!task.decides) return effect
    return Effect.flatMap(Effect.exit(effect), (exit) => this.decide(task, exit, attempt.ran))
  }

  /**
   * Spans cost an allocation or two per attempt: with `tracing: "auto"` they are made only when the submitter
   * installed a tracer (Effect's default one records spans nobody exports).
   */
  private isTraced(task: Task): boolean {
    const tracing = this.config.tracing
    if (tracing !== "auto") return tracing
    if (task.context === this.tracedContext) return this.tracedAnswer
    this.tracedContext = task.context
    this.tracedAnswer = Context.get(task.context, Tracer.Tracer) !== defaultTracer
    return this.tracedAnswer
  }

  private tracedContext: Context.Context<any> | undefined = undefined
  private tracedAnswer = false

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

  private attach(task: Task, fiber: Fiber.Fiber<any, any>): void {
    task.fiber = fiber
    fiber.addObserver((exit) => this.onAttemptExit(task, fiber, exit))
    // The task may have been stopped while its fiber was being forked (defensive: stop() is called by other
    // fibers and by timers the dispatcher fires, never while start() forks an attempt).
    // Stryker disable next-line all: defensive, see above
    if (task.stopReason !== undefined && task.fiber === fiber) fiber.interruptUnsafe()
  }

  private onAttemptExit(task: Task, fiber: Fiber.Fiber<any, any> | undefined, fiberExit: Exit.Exit<any, any>): void {
    if (task.fiber !== fiber) return // abandoned by a shutdown that timed out
    this.outbox.begin()
    this.attemptExited(task, fiberExit)
    this.outbox.end()
  }

  private attemptExited(task: Task, fiberExit: Exit.Exit<any, any>): void {
    task.fiber = undefined
    this.running.remove(task)
    if (this.config.instruments !== undefined) {
      this.config.instruments.observe(2, this.metricMillis() - task.startedAt)
    }
    const decision: Decision = task.decides && fiberExit._tag === "Success"
      ? fiberExit.value as Decision
      : { exit: fiberExit }
    const exit = decision.exit
    if (task.stopReason !== undefined) {
      const thrown = this.settle(task, exit)
      if (thrown !== undefined) return this.finish(task, thrown, "defect")
      const stopped = exit._tag === "Failure" && Cause.hasInterrupts(exit.cause) ? exit : Exit.interrupt()
      return this.finish(task, stopped, task.stopReason)
    }
    if (exit._tag === "Failure") {
      const paused = guard(() => this.pauseOnRetryAfter(task, exit.cause))
      if (paused._tag === "Failure") {
        this.settle(task, exit)
        return this.finish(task, paused, "defect")
      }
    }
    if (decision.circuit !== undefined) {
      // The body did not run: the attempt does not count, and its rate reservation is refunded.
      task.attempts--
      this.refund(task)
      // Stryker disable next-line OptionalChaining,StringLiteral: a circuit decision exists only with a breaker; any default other than "wait" rejects
      const whenOpen = this.config.breaker?.whenOpen ?? "reject"
      if (whenOpen === "wait" && this.phase === "open") {
        return this.retryLater(task, Math.max(decision.circuit.retryAfter, 1))
      }
      const rejection = new ExecutorError.ExecutorError({
        reason: new ExecutorError.CircuitOpen({
          key: task.spec?.key ?? "default",
          retryAfter: Duration.millis(decision.circuit.retryAfter)
        })
      })
      return this.finish(task, Exit.interrupt(), "rejected", rejection)
    }
    const thrown = this.settle(task, exit)
    if (thrown !== undefined) return this.finish(task, thrown, "defect")
    const rule = decision.rule
    if (
      rule === undefined ||
      // Stryker disable next-line ConditionalExpression,StringLiteral: a success never has a rule (decide gives none)
      exit._tag === "Success"
    ) return this.finish(task, exit, Outcome.kindOfExit(exit))
    switch (rule._tag) {
      case "Record":
        return this.finish(task, exit, Outcome.kindOfExit(exit))
      case "Ignore":
        return this.finish(task, exit, "skipped")
      case "Escalate":
        this.finish(task, exit, Outcome.kindOfExit(exit))
        return this.escalate(`task ${task.id}`, exit.cause)
      case "Retry": {
        const delay = decision.retryDelay ?? 0
        // Stryker disable next-line OptionalChaining: a retry rule comes from a policy, so the task has a spec
        const deadlineAt = task.spec?.deadlineAt
        // No time left for another attempt: the last failure is the outcome.
        // Stryker disable next-line ConditionalExpression: defensive: when cancelling, every running task was stopped, so no retry rule is reached
        if (this.phase !== "open" && this.phase !== "draining") return this.finish(task, exit, Outcome.kindOfExit(exit))
        if (deadlineAt !== undefined && this.now() + delay >= deadlineAt) {
          return this.finish(task, exit, Outcome.kindOfExit(exit))
        }
        this.counters.retries++
        this.config.instruments?.retried(task.spec?.key)
        return this.retryLater(task, delay)
      }
    }
  }

  /** The attempt ended; the task goes back to admission after `delay` (I21: it takes a slot and budget again). */
  private retryLater(task: Task, delay: number): void {
    this.release()
    this.makePending(task)
    this.sleeping.add(task)
    const at = this.now() + delay
    this.timers.add(at, () => {
      // Finished meanwhile (cancelled, timed out, shut down): `finish` took it out of `sleeping`.
      if (!this.sleeping.delete(task)) return
      // Stryker disable next-line OptionalChaining: a retried task has a spec (its policy)
      this.lineOf(task.spec?.key ?? "").tasks.unshift(task)
    })
    // Stryker disable next-line CallExpression: the timer wakes the dispatcher when it is the earliest (and it sees it otherwise)
    this.wake()
  }

  /** A failure carrying retry-after pauses the task's whole key (an HTTP 429 is about the key, not the task). */
  private pauseOnRetryAfter(task: Task, cause: Cause.Cause<unknown>): void {
    const error = Cause.findErrorOption(cause)
    if (error._tag === "None") return
    const millis = ErrorPolicy.retryAfterMillis(error.value)
    if (millis === undefined || millis <= 0) return
    const line = this.lineOf(task.spec?.key ?? "")
    const until = this.now() + millis
    if (until > line.pausedUntil) {
      line.pausedUntil = until
      this.counters.pauses++
      this.scheduleLineWake(line, until)
    }
  }

  /**
   * Settles the attempt's reservation with the cost the task's `settle` reports. Returns the defect when
   * `settle` threw (the reservation then stays as charged): the task's outcome.
   */
  private settle(task: Task, exit: Exit.Exit<unknown, unknown>): Exit.Exit<never> | undefined {
    const reservation = task.reservation
    task.reservation = undefined
    const settle = task.spec?.settle
    if (reservation === undefined || settle === undefined) return undefined
    const reported = guard(() => settle(exit))
    if (reported._tag === "Failure") return reported as Exit.Exit<never>
    const cost = reported.value
    if (cost === undefined) return undefined
    const actual = reservation.claims.map((claim, i) => cost[claim.bucket.budget] ?? reservation.charged[i]!)
    this.storeOp(
      this.config.store.settle(reservation, actual),
      () => this.config.store.memory!.settle(reservation, actual)
    )
    return undefined
  }

  private refund(task: Task): void {
    const reservation = task.reservation
    task.reservation = undefined
    if (reservation === undefined) return
    const zero = reservation.claims.map(() => 0)
    this.storeOp(this.config.store.settle(reservation, zero), () => this.config.store.memory!.settle(reservation, zero))
  }

  /** Runs a settlement or refund; then a line head denied in this pass may fit, so the dispatcher looks again. */
  private storeOp(effect: Effect.Effect<void, unknown>, sync: () => void): void {
    if (this.config.store.memory !== undefined) sync()
    else this.storeOps.push(effect)
    this.wake()
  }

  private readonly flushStoreOps: Effect.Effect<void> = Effect.suspend(() => {
    if (this.storeOps.length === 0) return Effect.void
    const ops = this.storeOps
    this.storeOps = []
    return Effect.forEach(
      ops,
      (op) => Effect.catchCause(op, (cause) => Effect.logWarning("pile: a rate-limit settlement failed", cause)),
      {
        discard: true
      }
    )
  })

  /**
   * Records the outcome of a task, exactly once (I1), releases what it holds and delivers the outcome.
   * Works from every state: a queued or pending task is removed from its list; a running one must have stopped.
   */
  finish(task: Task, exit: Exit.Exit<any, any>, kind: Outcome.Kind, rejection?: ExecutorError.ExecutorError): void {
    // Stryker disable next-line ConditionalExpression: defensive: no caller finishes a task twice (abandoned attempts are ignored when they end)
    if (task.result !== undefined) return
    const held = task.state === RUNNING
    const list = task.list
    if (list !== undefined) {
      list.remove(task)
      // Stryker disable next-line ConditionalExpression: admitting waiters when nothing freed up admits nobody
      if (list === this.intake) this.admitWaiters()
    }
    if (task.state === PENDING) {
      this.sleeping.delete(task)
      this.leavePending(task)
      // A line head leaving without starting: the next head may fit the budget now (it was not looked at).
      if (list !== undefined) this.wake()
    }
    // Stryker disable next-line CallExpression: only an abandoned task is still listed here, and nothing reads the list after abandonRunning
    this.running.remove(task)
    task.reservation = undefined
    const outcome = new Outcome.OutcomeImpl(task.id, task.input, kind, exit, task.attempts, rejection)
    task.result = outcome
    task.steps = undefined
    this.counters.finished[kind]++
    this.config.instruments?.finished(task.spec?.key, kind)
    task.state = DONE
    if (held) {
      // The slot is released once the outcome is in the sink: a full bounded Pile keeps it (backpressure).
      if (task.sink === undefined || task.sink.offer(outcome, this.releaseFromSink)) this.release()
    } else {
      task.sink?.offer(outcome, noop)
    }
    const waiters = task.waiters
    if (waiters !== undefined) {
      task.waiters = undefined
      this.outbox.post(() => {
        for (const waiter of waiters) waiter(outcome)
      })
    }
  }

  /** `release` for a Pile buffer, called when a blocked delivery enters it (from the consumer's fiber). */
  private readonly releaseFromSink = (): void => {
    this.outbox.begin()
    this.release()
    this.outbox.end()
  }

  /** Frees the slot of an attempt that ended (its fiber stopped, its outcome is delivered or it will retry). */
  private release(): void {
    this.slots--
    // Stryker disable next-line ConditionalExpression,EqualityOperator: performance only: a pass with nothing waiting starts nothing
    if (this.intake.size > 0 || this.pendingCount > 0) this.kick()
    // Stryker disable next-line ConditionalExpression,StringLiteral: a spurious wake-up costs one empty pass
    if (this.phase !== "open") this.wake()
  }

  /** Stops a task for `reason` (the kind its outcome will have), from any state. Idempotent. */
  stop(task: Task, reason: Outcome.Kind): void {
    this.outbox.begin()
    switch (task.state) {
      case QUEUED:
      case PENDING:
        this.finish(task, Exit.interrupt(), reason)
        break
      case RUNNING: {
        if (task.stopReason !== undefined) break
        task.stopReason = reason
        // Not forked yet: `fork` sees the reason and never runs the body.
        const fiber = task.fiber
        if (fiber !== undefined) this.outbox.post(() => fiber.interruptUnsafe())
        break
      }
    }
    this.outbox.end()
  }

  resize(concurrency: number): void {
    this.concurrency = concurrency
    this.wake()
  }

  get isIdle(): boolean {
    // Stryker disable next-line ConditionalExpression: after a pass, a non-empty intake means every slot is taken (slots > 0)
    return this.intake.size === 0 && this.pendingCount === 0 && this.slots === 0
  }

  // ------------------------------------------------------------------------------------------------------
  // the dispatcher
  // ------------------------------------------------------------------------------------------------------

  /** Wakes the dispatcher on the next scheduler tick (batching wake-ups, never re-entering it). */
  wake(): void {
    const resume = this.dispatcherResume
    if (resume !== undefined) {
      this.dispatcherResume = undefined
      resume(Effect.yieldNow)
      // Stryker disable next-line BlockStatement,BooleanLiteral: timing only: a wake-up in the instant between a pass and the wait; the dispatcher re-reads all state after every pass, and no deterministic test reaches that instant
    } else {
      // Stryker disable next-line BooleanLiteral: timing only: a wake-up in the instant between a pass and the wait; the dispatcher re-reads all state after every pass, and no deterministic test reaches that instant
      this.signalled = true
    }
  }

  private readonly waitSignal: Effect.Effect<void> = Effect.callback<void>((resume) => {
    // Stryker disable next-line ConditionalExpression,BlockStatement: timing only: a wake-up in the instant between a pass and the wait; the dispatcher re-reads all state after every pass, and no deterministic test reaches that instant
    if (this.signalled) {
      this.signalled = false
      return resume(Effect.void)
    }
    this.dispatcherResume = resume
    // Stryker disable next-line BlockStatement: timing only: a wake-up in the instant between a pass and the wait; the dispatcher re-reads all state after every pass, and no deterministic test reaches that instant
    return Effect.sync(() => {
      // Stryker disable next-line ConditionalExpression,EqualityOperator: timing only: a wake-up in the instant between a pass and the wait; the dispatcher re-reads all state after every pass, and no deterministic test reaches that instant
      if (this.dispatcherResume === resume) this.dispatcherResume = undefined
    })
  })

  /**
   * Waits for a wake-up, or until the clock reaches `until` (milliseconds), whichever comes first.
   *
   * Node's timers fire on a cached whole-millisecond clock, typically about 1 ms late and sometimes early,
   * which would make a pacer drift (slot after slot) or start early. So the dispatcher sleeps until about a
   * millisecond before `until`, then yields to the event loop until the clock reaches it: it never starts
   * early, and is late by a fraction of a millisecond. Returning early is always safe: the dispatcher re-checks
   * the clock and waits again. With any other clock (`TestClock`) it simply sleeps until `until`.
   */
  private waitUntil(until: number): Effect.Effect<void> {
    // Stryker disable next-line ConditionalExpression: racing an endless sleep is the same wait
    if (until === Number.POSITIVE_INFINITY) return this.waitSignal
    const remaining = until - this.now()
    // Stryker disable next-line ConditionalExpression,EqualityOperator: a sleep of 0 returns at once too
    if (remaining <= 0) return Effect.void
    // Stryker disable next-line ConditionalExpression: live clock only: the tests run on TestClock; the precision is measured by the pacing benchmark
    if (!this.config.liveClock) return Effect.raceFirst(this.waitSignal, Effect.sleep(Math.ceil(remaining)))
    // Stryker disable next-line all: live clock only: the tests run on TestClock; the precision is measured by the pacing benchmark
    if (remaining > 2) return Effect.raceFirst(this.waitSignal, Effect.sleep(Math.floor(remaining - 1)))
    return Effect.yieldNow
  }

  /** Fires due timers and starts every task that may start now. */
  private readonly pump: Effect.Effect<void> = Effect.suspend(() => {
    this.passBlocked.clear()
    this.passBlockedBuckets.clear()
    return this.pumpLoop
  })

  private readonly pumpLoop: Effect.Effect<void> = Effect.suspend(() => {
    this.outbox.begin()
    // Stryker disable next-line ConditionalExpression,EqualityOperator: performance only (no clock read without timers)
    if (this.timers.size > 0) this.timers.fireDue(this.now())
    const next = this.pumpSync()
    this.outbox.end()
    if (next === undefined) return this.flushStoreOps
    if (next === "yield") return Effect.andThen(Effect.yieldNow, this.pumpLoop)
    return Effect.flatMap(this.reserveAsync(next.reserve, next.line), (reserved) => {
      if (reserved) {
        if (this.config.instruments !== undefined) this.passMillis = this.clock.currentTimeMillisUnsafe()
        this.outbox.begin()
        this.start(next.reserve)
        this.outbox.end()
      }
      return this.pumpLoop
    })
  })

  /** Set while `pumpSync` runs: a task finishing inside it must not start another pump. */
  private pumping = false
  /** The clock (ms) at the start of the current admission pass or feeding burst, for the histograms. */
  private passMillis = 0
  /** Set while a batch feeder offers a synchronous run of inputs (`beginBurst` / `endBurst`). */
  private bursting = false

  /**
   * The clock for the histograms: inside an admission pass or a feeding burst, the reading taken when it began
   * (on this machine a clock reading costs more than the rest of a task's bookkeeping; a pass lasts well under
   * the histograms' first bucket, 1 ms).
   */
  private metricMillis(): number {
    return this.pumping || this.bursting ? this.passMillis : this.clock.currentTimeMillisUnsafe()
  }

  /** A batch feeder starts offering a synchronous run of inputs. */
  beginBurst(): void {
    if (this.config.instruments === undefined) return
    this.passMillis = this.clock.currentTimeMillisUnsafe()
    this.bursting = true
  }

  endBurst(): void {
    this.bursting = false
  }

  /**
   * Starts every task that may start now, synchronously (attempts start with `runForkWith`, no Effect step).
   * Returns undefined when nothing more can start, "yield" after 512 starts (a long run of instant tasks must
   * let other fibers run), or a line head that needs an asynchronous reservation (the dispatcher's job).
   */
  private pumpSync(): undefined | "yield" | { readonly reserve: Task; readonly line: Line } {
    if (this.pumping) return undefined
    this.pumping = true
    // One clock reading per pass for the histograms: a pass is a synchronous run of admissions.
    if (this.config.instruments !== undefined) this.passMillis = this.clock.currentTimeMillisUnsafe()
    let result: undefined | "yield" | { readonly reserve: Task; readonly line: Line } = undefined
    for (let started = 0;;) {
      // Stryker disable next-line ConditionalExpression,EqualityOperator,BlockStatement: fairness only: other fibers run during a long pass; what they do then is not an outcome
      if (started >= 512) {
        result = "yield"
        break
      }
      const next = this.admitNext()
      if (next === undefined) break
      if (next === "again") continue
      if ("reserve" in next) {
        result = next
        break
      }
      this.start(next.start)
      // Stryker disable next-line UpdateOperator: fairness only, as above
      started++
    }
    this.pumping = false
    return result
  }

  /**
   * Starts what can start right away, from wherever work arrived or a slot freed (a submit, a finished task),
   * without waiting for the dispatcher's next turn; the dispatcher is woken only for what it must do itself.
   */
  private kick(): void {
    // Stryker disable next-line EqualityOperator,CallExpression: only the asynchronous-store path hands work back to the dispatcher here (the Redis tests, outside the mutation run)
    if (this.pumpSync() !== undefined) this.wake()
  }

  /** Reserves a line head's budgets through an asynchronous store (Redis); true when it may start. */
  private reserveAsync(task: Task, line: Line): Effect.Effect<boolean> {
    line.reserving = true
    const claims = task.spec?.claims ?? []
    return Effect.map(
      Effect.exit(this.config.store.reserve(this.reservationId(task), claims, this.now())),
      (exit) => {
        this.outbox.begin()
        const reserved = this.reserved(task, line, claims, exit)
        this.outbox.end()
        return reserved
      }
    )
  }

  private reserved(
    task: Task,
    line: Line,
    claims: ReadonlyArray<Claim>,
    exit: Exit.Exit<ReserveResult, unknown>
  ): boolean {
    line.reserving = false
    // A store failure defers the task (never drops it); the dispatcher asks again a second later.
    const result: ReserveResult = exit._tag === "Success"
      ? exit.value
      : { _tag: "Denied", retryAt: this.now() + 1000 }
    if (task.state !== PENDING || task.list !== line.tasks) {
      // Stopped while the store answered: give the budget back (I9).
      if (result._tag === "Reserved") {
        this.storeOps.push(this.config.store.settle(result.reservation, claims.map(() => 0)))
      }
      return false
    }
    if (result._tag === "Denied") {
      this.blockHead(line, task, result.retryAt, result.blocking)
      return false
    }
    if (this.slots >= this.concurrency || (this.phase !== "open" && this.phase !== "draining")) {
      this.storeOps.push(this.config.store.settle(result.reservation, claims.map(() => 0)))
      return false
    }
    task.reservation = result.reservation
    this.leaveLine(line, task)
    return true
  }

  /** The dispatcher fiber's program: start tasks as slots free up, until shutdown is requested; then shut down. */
  readonly run: Effect.Effect<void> = Effect.gen({ self: this }, function*() {
    while (this.shutdownRequest === undefined) {
      yield* this.pump
      // Stryker disable next-line ConditionalExpression: the request woke the dispatcher, so the wait returns at once
      if (this.shutdownRequest !== undefined) break
      yield* this.waitUntil(this.timers.next)
    }
    yield* this.shutdownProtocol
  })

  // ------------------------------------------------------------------------------------------------------
  // shutdown
  // ------------------------------------------------------------------------------------------------------

  /**
   * Asks for shutdown. Synchronous and idempotent: admission closes at once (I6), waiting submitters fail with
   * Closed, the Pile buffers stop bounding (I14); the dispatcher then drains or cancels. A cancel request cuts
   * a drain in progress short.
   */
  requestShutdown(request: ShutdownRequest): void {
    this.outbox.begin()
    this.shutdownRequested(request)
    this.outbox.end()
  }

  private shutdownRequested(request: ShutdownRequest): void {
    // Stryker disable next-line ConditionalExpression,StringLiteral: once closed, a request replaces one no one reads
    if (this.phase === "closed") return
    if (this.shutdownRequest !== undefined) {
      // A cancel cuts a drain short; a drain never softens a cancel.
      if (request.mode === "cancel") {
        this.shutdownRequest = request
        this.wake()
      }
      return
    }
    this.shutdownRequest = request
    this.phase = "draining"
    const closed = Effect.fail(this.closedError())
    for (const waiter of this.submitWaiters.takeAll()) {
      this.reject(waiter.task)
      this.outbox.post(() => waiter.resume(closed))
    }
    this.wakeRoomWaiters()
    this.pile?.unbound()
    this.unboundSinks()
    this.wake()
  }

  /** Sinks of batches in flight, so shutdown can unbound them too. */
  readonly sinks = new Set<Sink>()

  private unboundSinks(): void {
    for (const sink of this.sinks) sink.unbound()
  }

  escalate(source: string, cause: Cause.Cause<unknown>): void {
    if (this.escalation !== undefined || this.phase === "closed") return
    this.escalation = new ExecutorError.Escalated({ source, cause })
    // Stryker disable next-line ObjectLiteral,StringLiteral: any mode but "drain" cancels
    this.requestShutdown({ mode: "cancel", grace: 0 })
  }

  private readonly shutdownProtocol: Effect.Effect<void> = Effect.gen({ self: this }, function*() {
    // Drain: keep starting accepted work until everything is done, the grace period ends, or cancel is asked.
    const graceEnd = this.now() + this.shutdownRequest!.grace
    while (!this.isIdle && this.shutdownRequest!.mode === "drain") {
      yield* this.pump
      if (this.isIdle || this.now() >= graceEnd) break
      yield* this.waitUntil(Math.min(graceEnd, this.timers.next))
    }
    // Cancel: every queued and pending task gets an interruption, every running one is interrupted (I8).
    this.phase = "cancelling"
    this.outbox.begin()
    this.cancelAll()
    this.outbox.end()
    const finalizerEnd = this.now() + this.config.finalizerTimeout
    while (this.slots > 0 && this.now() < finalizerEnd) {
      yield* this.waitUntil(finalizerEnd)
    }
    this.outbox.begin()
    this.abandonRunning()
    this.outbox.end()
    // Services live as long as the executor: stop them last, bounded like any finalizer.
    if (this.services.size > 0) {
      const services = Array.from(this.services)
      for (const fiber of services) fiber.interruptUnsafe()
      yield* Effect.timeoutOption(
        Effect.callback<void>((resume) => {
          let left = services.length
          for (const fiber of services) {
            fiber.addObserver(() => {
              if (--left === 0) resume(Effect.void)
            })
          }
        }),
        this.config.finalizerTimeout
      )
    }
    yield* this.flushStoreOps
    this.outbox.begin()
    // Stryker disable next-line CallExpression: onDispatcherExit closes too, at once after
    this.close()
    this.outbox.end()
  })

  private cancelAll(): void {
    // Taken out of the intake first, so that finishing them admits no waiting submitter.
    for (const task of this.intake.takeAll()) this.finish(task, Exit.interrupt(), "interrupted")
    for (const task of this.pendingTasks()) this.stop(task, "interrupted")
    for (const task of this.running.toArray()) this.stop(task, "interrupted")
    this.pile?.unbound()
    // Stryker disable next-line CallExpression: requestShutdown unbounded them, and no batch starts after it
    this.unboundSinks()
  }

  /** Every fiber the engine started and still owns: the dispatcher, services, running attempts (I5 checks). */
  liveFibers(): Array<Fiber.Fiber<any, any>> {
    const out = Array.from(this.fibers)
    for (let task = this.running.head; task !== undefined; task = task.next as Task | undefined) {
      if (task.fiber !== undefined) out.push(task.fiber)
    }
    return out.filter((fiber) => fiber.pollUnsafe() === undefined)
  }

  /** Tasks between intake and admission: in a key line, or sleeping before a retry. */
  pendingTasks(): Array<Task> {
    const out = Array.from(this.sleeping)
    for (const line of this.lines.values()) {
      for (let task = line.tasks.head; task !== undefined; task = task.next as Task | undefined) out.push(task)
    }
    return out
  }

  /** After the finalizer deadline: record the tasks whose fibers would not stop, and free their slots. */
  private abandonRunning(): void {
    for (const task of this.running.toArray()) {
      this.counters.abandoned++
      // Stryker disable next-line ConditionalExpression: a running task has its fiber
      if (task.fiber !== undefined) this.abandonedFibers.add(task.fiber)
      task.fiber = undefined
      // Stryker disable next-line StringLiteral: cancelAll stopped every running task, so each has its reason
      this.finish(task, Exit.interrupt(), task.stopReason ?? "interrupted")
    }
  }

  /** The last step of every shutdown: nothing more will be delivered. */
  private close(): void {
    // Stryker disable next-line ConditionalExpression,StringLiteral: closing twice changes nothing (the Pile and the deferred close once)
    if (this.phase === "closed") return
    this.phase = "closed"
    // Stryker disable next-line CallExpression: frees memory only: no timer fires once closed
    this.timers.clear()
    const failure = this.escalation === undefined
      ? undefined
      : { error: new ExecutorError.ExecutorError({ reason: this.escalation }) }
    this.pile?.close(failure)
    this.outbox.post(() => Deferred.doneUnsafe(this.closed, Exit.void))
  }

  /**
   * The dispatcher ended without finishing the shutdown protocol (it died, or was interrupted from outside):
   * close admission and give every task an outcome anyway, so no caller waits forever (I16).
   */
  onDispatcherExit(exit: Exit.Exit<void>): void {
    this.outbox.begin()
    this.dispatcherExited(exit)
    this.outbox.end()
  }

  private dispatcherExited(exit: Exit.Exit<void>): void {
    // Stryker disable next-line ConditionalExpression,StringLiteral: after a close, the steps below close again, which changes nothing
    if (this.phase === "closed") return
    if (exit._tag === "Failure" && this.escalation === undefined) {
      this.escalation = new ExecutorError.Escalated({ source: "executor", cause: exit.cause })
    }
    // Stryker disable next-line ObjectLiteral,StringLiteral: the dispatcher is gone: no one reads the request's mode
    if (this.shutdownRequest === undefined) this.requestShutdown({ mode: "cancel", grace: 0 })
    // Stryker disable next-line StringLiteral: the phase is "closed" before anyone can read it
    this.phase = "cancelling"
    this.cancelAll()
    for (const fiber of this.services) this.outbox.post(() => fiber.interruptUnsafe())
    this.close()
  }
}

const noop = (): void => {}

const defaultTracer = Context.get(Context.empty(), Tracer.Tracer)

let engineSerial = 0
