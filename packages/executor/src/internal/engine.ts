/**
 * The executor's engine: the task states, the bounded intake, admission, the dispatcher fiber and the
 * shutdown protocol. `Executor.ts` is its public face.
 *
 * Data path: submit → intake (bounded FIFO) → admission (a concurrency slot) → one fiber per attempt → outcome
 * → the task's sink (a Pile buffer) and its handle's waiters.
 *
 * Ownership: one dispatcher fiber per executor, forked in the executor's scope, starts every task fiber and
 * runs the shutdown protocol. Task and service fibers are owned by the engine itself (`fibers`): shutdown
 * interrupts and awaits every one of them, each wait bounded by `finalizerTimeout`. All state below is touched only synchronously,
 * between two steps of some fiber, so every transition is atomic; nobody is woken until the state they will
 * look at is consistent.
 */
import type * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as ExecutorError from "../ExecutorError.ts"
import * as Outcome from "../Outcome.ts"
import { LinkedList, type Node } from "./linkedList.ts"
import type { OutcomeBuffer } from "./outcomeBuffer.ts"

/** Where a task's outcome goes besides its handle: a Pile buffer, or nowhere. */
export type Sink = OutcomeBuffer<Outcome.Outcome<any, any, any>, any>

/** A task's life: queued → (pending) → running → delivering? → done. */
export const QUEUED = 0
export const PENDING = 1
export const RUNNING = 2
export const DELIVERING = 3
export const DONE = 4
export type TaskState = typeof QUEUED | typeof PENDING | typeof RUNNING | typeof DELIVERING | typeof DONE

export type Strategy = "suspend" | "dropping" | "sliding"
export type ShutdownMode = "drain" | "cancel"
export interface ShutdownRequest {
  readonly mode: ShutdownMode
  /** Milliseconds a drain may take before what is left is cancelled. */
  readonly grace: number
}

export type Phase = "open" | "draining" | "cancelling" | "closed"

export interface Config {
  readonly capacity: number
  readonly concurrency: number
  readonly strategy: Strategy
  readonly shutdown: ShutdownRequest
  /** Milliseconds shutdown waits for interrupted fibers (and their finalizers) before abandoning them. */
  readonly finalizerTimeout: number
}

/** A callback waiting for a task's outcome. */
type Waiter = (outcome: Outcome.Outcome<any, any, any>) => void

/**
 * One accepted task, and its handle: the object `submit` returns is the task itself, seen through the
 * `TaskHandle` interface, so a queued task costs one object plus its links.
 */
export class Task<A = any, E = any> implements Node {
  prev: Node | undefined = undefined
  next: Node | undefined = undefined
  list: LinkedList<any> | undefined = undefined
  /** Written by the engine only. */
  state: TaskState = QUEUED
  /** Attempts started so far (I3: each attempt runs the body once). */
  attempts = 0
  /** The fiber of the running attempt. Invariant: set iff state === RUNNING and the fork returned. */
  fiber: Fiber.Fiber<any, any> | undefined = undefined
  /** Why the executor stopped this task, when it did: decides the outcome's kind over the fiber's exit. */
  stopReason: Outcome.Kind | undefined = undefined
  /** Set once, when the outcome is decided (I18: a late completion never overwrites it). */
  result: Outcome.Outcome<A, E, any> | undefined = undefined
  waiters: Array<Waiter> | undefined = undefined

  readonly engine: Engine
  readonly id: number
  readonly effect: Effect.Effect<A, E, any>
  readonly context: Context.Context<any>
  readonly input: unknown
  readonly sink: Sink | undefined

  constructor(
    engine: Engine,
    id: number,
    effect: Effect.Effect<A, E, any>,
    context: Context.Context<any>,
    input: unknown,
    sink: Sink | undefined
  ) {
    this.engine = engine
    this.id = id
    this.effect = effect
    this.context = context
    this.input = input
    this.sink = sink
  }

  /** The outcome, waiting for it. Never fails. */
  get outcome(): Effect.Effect<Outcome.Outcome<A, E, any>> {
    return Effect.callback<Outcome.Outcome<A, E, any>>((resume) => {
      if (this.result !== undefined) return resume(Effect.succeed(this.result))
      const waiter: Waiter = (outcome) => resume(Effect.succeed(outcome))
      ;(this.waiters ??= []).push(waiter)
      return Effect.sync(() => {
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
      this.engine.cancelTask(this)
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
}

export const emptyFinished = (): Record<Outcome.Kind, number> => {
  const out = {} as Record<Outcome.Kind, number>
  for (const kind of Outcome.kinds) out[kind] = 0
  return out
}

export class Engine {
  // ---- configuration (concurrency is resizable)
  concurrency: number
  readonly capacity: number
  readonly strategy: Strategy

  // ---- intake
  /** Invariant (I13): intake.size <= capacity. */
  readonly intake = new LinkedList<Task>()
  readonly submitWaiters = new LinkedList<SubmitWaiter>()

  // ---- admission and running
  /** Slots in use: running tasks plus finished tasks whose outcome waits for space in a bounded Pile. */
  slots = 0
  /** Invariant (I10): running.size <= slots <= max(concurrency, slots when it was lowered). */
  readonly running = new Set<Task>()
  /** Tasks out of the intake but waiting before admission (retry delays, rate budgets). */
  pendingCount = 0

  // ---- lifecycle
  phase: Phase = "open"
  shutdownRequest: ShutdownRequest | undefined = undefined
  escalation: ExecutorError.Escalated | undefined = undefined
  readonly closed = Deferred.makeUnsafe<void>()
  /** Every fiber the engine forked and still owns, for the I5 check (tests) and for shutdown. */
  readonly fibers = new Set<Fiber.Fiber<any, any>>()
  /** Task fibers that did not stop within finalizerTimeout at shutdown: given up, counted in `abandoned`. */
  readonly abandonedFibers = new Set<Fiber.Fiber<any, any>>()
  readonly services = new Set<Fiber.Fiber<any, any>>()
  dispatcher: Fiber.Fiber<void> | undefined = undefined

  // ---- dispatcher signalling
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
    serviceRestarts: 0
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

  // ------------------------------------------------------------------------------------------------------
  // submission
  // ------------------------------------------------------------------------------------------------------

  /** A new task, not yet accepted. */
  makeTask<A, E>(
    effect: Effect.Effect<A, E, any>,
    context: Context.Context<any>,
    input: unknown,
    sink: Sink | undefined
  ): Task<A, E> {
    return new Task(this, this.nextId++, effect, context, input, sink)
  }

  get isAccepting(): boolean {
    return this.phase === "open"
  }

  private closedError(): ExecutorError.ExecutorError {
    return ExecutorError.closed(this.escalation !== undefined)
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
  private tryOffer<A, E>(task: Task<A, E>, wait: boolean): Task<A, E> | ExecutorError.ExecutorError | undefined {
    if (this.phase !== "open") {
      this.counters.rejected++
      return this.closedError()
    }
    if (this.intake.size < this.capacity && this.submitWaiters.size === 0) {
      this.accept(task)
      return task
    }
    if (this.strategy === "dropping") {
      this.counters.accepted++
      this.finish(task, Exit.interrupt(), "dropped")
      return task
    }
    if (this.strategy === "sliding") {
      this.finish(this.intake.head!, Exit.interrupt(), "evicted")
      this.accept(task)
      return task
    }
    if (!wait) {
      this.counters.rejected++
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

  private accept(task: Task): void {
    task.state = QUEUED
    this.intake.push(task)
    this.counters.accepted++
    if (this.intake.size > this.counters.peakQueued) this.counters.peakQueued = this.intake.size
    this.wake()
  }

  /** Called whenever the intake shrinks: hands the freed places to waiting submitters, first come first served. */
  private admitWaiters(): void {
    while (this.intake.size < this.capacity && this.submitWaiters.size > 0 && this.phase === "open") {
      const waiter = this.submitWaiters.shift()!
      this.accept(waiter.task)
      waiter.resume(Effect.succeed(waiter.task))
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // admission and running
  // ------------------------------------------------------------------------------------------------------

  /** The next task that may start now, taken out of the intake; undefined when none may. */
  nextStartable(): Task | undefined {
    if (this.slots >= this.concurrency) return undefined
    if (this.phase !== "open" && this.phase !== "draining") return undefined
    const task = this.intake.shift()
    if (task === undefined) return undefined
    this.admitWaiters()
    return task
  }

  /** Starts one attempt of `task` in its own fiber. Runs in the dispatcher fiber. */
  start(task: Task): Effect.Effect<void> {
    task.state = RUNNING
    task.attempts++
    this.slots++
    this.running.add(task)
    // Detached on purpose: the engine owns task fibers (see docs/decisions/0002). Its shutdown interrupts
    // and awaits each of them, bounded by finalizerTimeout; a scope would await a stuck finalizer forever.
    return Effect.map(
      Effect.forkDetach(Effect.provideContext(task.effect, task.context), { startImmediately: true }),
      (fiber) => this.attach(task, fiber)
    )
  }

  private attach(task: Task, fiber: Fiber.Fiber<any, any>): void {
    task.fiber = fiber
    this.fibers.add(fiber)
    fiber.addObserver((exit) => this.onAttemptExit(task, fiber, exit))
    // The task may have been stopped while its fiber was being forked.
    if (task.stopReason !== undefined && task.fiber === fiber) fiber.interruptUnsafe()
  }

  private onAttemptExit(task: Task, fiber: Fiber.Fiber<any, any>, exit: Exit.Exit<any, any>): void {
    this.fibers.delete(fiber)
    if (task.state !== RUNNING || task.fiber !== fiber) return // abandoned by a shutdown that timed out
    task.fiber = undefined
    this.running.delete(task)
    const kind = task.stopReason ?? Outcome.kindOfExit(exit)
    const finalExit = task.stopReason === undefined ||
        (exit._tag === "Failure" && exit.cause.reasons.some((r) => r._tag === "Interrupt"))
      ? exit
      : Exit.interrupt()
    this.finish(task, finalExit, kind)
  }

  /**
   * Records the outcome of a task, exactly once (I1), releases what it holds and delivers the outcome.
   * Works from every state: a queued task is removed from the intake, a running one must have stopped.
   */
  finish(task: Task, exit: Exit.Exit<any, any>, kind: Outcome.Kind, rejection?: ExecutorError.ExecutorError): void {
    if (task.result !== undefined) return
    const held = task.state === RUNNING
    if (task.state === QUEUED && this.intake.remove(task)) this.admitWaiters()
    if (task.state === PENDING) this.pendingCount--
    this.running.delete(task)
    const outcome = new Outcome.OutcomeImpl(task.id, task.input, kind, exit, task.attempts, rejection)
    task.result = outcome
    this.counters.finished[kind]++
    if (held) {
      if (task.sink === undefined || task.sink.offer(outcome, () => this.release(task))) this.release(task)
      else task.state = DELIVERING
    } else {
      task.state = DONE
      task.sink?.offer(outcome, noop)
    }
    const waiters = task.waiters
    if (waiters !== undefined) {
      task.waiters = undefined
      for (const waiter of waiters) waiter(outcome)
    }
  }

  private release(task: Task): void {
    task.state = DONE
    this.slots--
    if (this.intake.size > 0 || this.phase !== "open") this.wake()
  }

  /** Cancels a task: queued or pending tasks end at once; a running one is interrupted and ends when it stops. */
  cancelTask(task: Task): void {
    this.stop(task, "cancelled")
  }

  /** Stops a task for `reason` (the kind its outcome will have), from any state. */
  stop(task: Task, reason: Outcome.Kind): void {
    switch (task.state) {
      case QUEUED:
      case PENDING:
        this.finish(task, Exit.interrupt(), reason)
        return
      case RUNNING:
        if (task.stopReason !== undefined) return
        task.stopReason = reason
        task.fiber?.interruptUnsafe()
        return
    }
  }

  resize(concurrency: number): void {
    this.concurrency = concurrency
    this.wake()
  }

  get isIdle(): boolean {
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
    } else {
      this.signalled = true
    }
  }

  private readonly waitSignal: Effect.Effect<void> = Effect.callback<void>((resume) => {
    if (this.signalled) {
      this.signalled = false
      return resume(Effect.void)
    }
    this.dispatcherResume = resume
    return Effect.sync(() => {
      if (this.dispatcherResume === resume) this.dispatcherResume = undefined
    })
  })

  /** Waits for a wake-up, or until the clock reaches `until` (milliseconds), whichever comes first. */
  private waitUntil(until: number): Effect.Effect<void> {
    if (until === Number.POSITIVE_INFINITY) return this.waitSignal
    const delay = until - this.clock.currentTimeMillisUnsafe()
    if (delay <= 0) return Effect.void
    return Effect.raceFirst(this.waitSignal, Effect.sleep(delay))
  }

  /** Starts every task that may start now. */
  private readonly pump: Effect.Effect<void> = Effect.suspend(() => {
    const task = this.nextStartable()
    if (task === undefined) return Effect.void
    return Effect.flatMap(this.start(task), () => this.pump)
  })

  /** The dispatcher fiber's program: start tasks as slots free up, until shutdown is requested; then shut down. */
  readonly run: Effect.Effect<void> = Effect.gen({ self: this }, function*() {
    while (this.shutdownRequest === undefined) {
      yield* this.pump
      if (this.shutdownRequest !== undefined) break
      yield* this.waitSignal
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
    if (this.phase === "closed") return
    if (this.shutdownRequest !== undefined) {
      if (request.mode === "cancel" && this.shutdownRequest.mode === "drain") {
        this.shutdownRequest = request
        this.wake()
      }
      return
    }
    this.shutdownRequest = request
    this.phase = "draining"
    for (const waiter of this.submitWaiters.takeAll()) {
      this.counters.rejected++
      waiter.resume(Effect.fail(this.closedError()))
    }
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
    this.requestShutdown({ mode: "cancel", grace: 0 })
  }

  private readonly shutdownProtocol: Effect.Effect<void> = Effect.gen({ self: this }, function*() {
    // Drain: keep starting accepted work until everything is done, the grace period ends, or cancel is asked.
    const request = this.shutdownRequest!
    if (request.mode === "drain") {
      const graceEnd = this.clock.currentTimeMillisUnsafe() + request.grace
      while (!this.isIdle && this.shutdownRequest!.mode === "drain") {
        yield* this.pump
        if (this.isIdle || this.clock.currentTimeMillisUnsafe() >= graceEnd) break
        yield* this.waitUntil(graceEnd)
      }
    }
    // Cancel: every queued and pending task gets an interruption, every running one is interrupted (I8).
    this.phase = "cancelling"
    this.cancelAll()
    const finalizerEnd = this.clock.currentTimeMillisUnsafe() + this.config.finalizerTimeout
    while (this.slots > 0 && this.clock.currentTimeMillisUnsafe() < finalizerEnd) {
      yield* this.waitUntil(finalizerEnd)
    }
    this.abandonRunning()
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
    this.close()
  })

  private cancelAll(): void {
    // Taken out of the intake first, so that finishing them admits no waiting submitter.
    for (const task of this.intake.takeAll()) this.finish(task, Exit.interrupt(), "interrupted")
    for (const task of this.pendingTasks()) this.stop(task, "interrupted")
    for (const task of this.running) this.stop(task, "interrupted")
    this.pile?.unbound()
    this.unboundSinks()
  }

  /** Tasks between intake and admission; none until retries and rate limits are added. */
  pendingTasks(): Iterable<Task> {
    return []
  }

  /** After the finalizer deadline: record the tasks whose fibers would not stop, and free their slots. */
  private abandonRunning(): void {
    for (const task of Array.from(this.running)) {
      this.counters.abandoned++
      if (task.fiber !== undefined) {
        this.fibers.delete(task.fiber)
        this.abandonedFibers.add(task.fiber)
      }
      task.fiber = undefined
      this.running.delete(task)
      this.finish(task, Exit.interrupt(), task.stopReason ?? "interrupted")
    }
  }

  /** The last step of every shutdown: nothing more will be delivered. */
  private close(): void {
    if (this.phase === "closed") return
    this.phase = "closed"
    const failure = this.escalation === undefined
      ? undefined
      : { error: new ExecutorError.ExecutorError({ reason: this.escalation }) }
    this.pile?.close(failure)
    Deferred.doneUnsafe(this.closed, Exit.void)
  }

  /**
   * The dispatcher ended without finishing the shutdown protocol (it died, or was interrupted from outside):
   * close admission and give every task an outcome anyway, so no caller waits forever (I16).
   */
  onDispatcherExit(exit: Exit.Exit<void>): void {
    if (this.phase === "closed") return
    if (exit._tag === "Failure" && this.escalation === undefined) {
      this.escalation = new ExecutorError.Escalated({ source: "executor", cause: exit.cause })
    }
    if (this.shutdownRequest === undefined) this.requestShutdown({ mode: "cancel", grace: 0 })
    this.phase = "cancelling"
    this.cancelAll()
    for (const fiber of this.services) fiber.interruptUnsafe()
    this.close()
  }
}

const noop = (): void => {}
