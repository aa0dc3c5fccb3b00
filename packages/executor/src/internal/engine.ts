/**
 * The engine: the cycle every task goes through, composed from the steps of the data path. `Executor.ts` is
 * its public face.
 *
 * The cycle: accept (into the intake, `intake.ts`) → admit (a slot, and the budgets of its key line,
 * `admission.ts`) → start (one fiber per attempt, `attempt.ts`) → exit (the error policy: retry goes back to
 * admission after a delay) → finish (the outcome, exactly once, to the task's sink and its handle's waiters)
 * → release (the slot, once the outcome is in the sink). The dispatcher fiber (`dispatcher.ts`) fires the
 * timers, runs the passes that need an asynchronous store and the shutdown protocol.
 *
 * The engine owns the slots, the running tasks and the lifecycle's phase. Each step owns its own state and
 * gets what it needs from outside as a small interface when it is made, so the imports form a tree: this file
 * imports the steps, the steps import the task and the data structures.
 *
 * The wake-up rule (outbox.ts, docs/architecture.md): every transition runs synchronously, between two steps
 * of some fiber, and every fiber it resumes, starts or interrupts is posted to the one outbox and woken once
 * the transition has finished. Entry points from other fibers (`offer`, `stop`, an attempt's exit, a Pile
 * consumer's release, the dispatcher's steps) run between `outbox.begin()` and `outbox.end()`.
 */
import type * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import type * as Scope from "effect/Scope"
import * as ExecutorError from "../ExecutorError.ts"
import * as Outcome from "../Outcome.ts"
import { Admission, type Admitted, type Line } from "./admission.ts"
import { type AttemptEnd, Attempts } from "./attempt.ts"
import type { Config, Phase, ShutdownRequest, TaskSpec } from "./config.ts"
import { type Cycle, Dispatcher, FiberRegistry } from "./dispatcher.ts"
import { Intake } from "./intake.ts"
import { LinkedList } from "./linkedList.ts"
import { between, MetricClock } from "./metricClock.ts"
import { type Forker, Outbox } from "./outbox.ts"
import { OutcomeBuffer, type Transitions, unbounded } from "./outcomeBuffer.ts"
import { Sinks } from "./sinks.ts"
import { Sweeper } from "./sweeper.ts"
import {
  type Counters,
  DONE,
  emptyFinished,
  type Lazy,
  Origin,
  PENDING,
  QUEUED,
  RUNNING,
  type Sink,
  type Stopper,
  Task
} from "./task.ts"
import { nowMillis } from "./timers.ts"

const noop = (): void => {}

export class Engine implements Stopper, Cycle, AttemptEnd, Forker<Task> {
  /** The concurrency cap; `resize` changes it. */
  private cap: number
  /** Slots in use: running tasks plus finished tasks whose outcome waits for space in a bounded Pile. */
  private slotsUsed = 0
  /**
   * Tasks whose attempt's fiber is running (an intrusive list: a running task is in no other list).
   * Invariant (I10): running.size <= slotsUsed, and slotsUsed only grows while slotsUsed < cap.
   */
  private readonly running = new LinkedList<Task>()
  /** open → draining (shutdown asked) → cancelling → closed. Written by the shutdown transitions only. */
  private lifecycle: Phase = "open"
  /** The failure that shut the executor down, once one did (set once). */
  private escalated: ExecutorError.Escalated | undefined = undefined
  /** Counters behind `stats`, written by the cycle's transitions. */
  private readonly counters: Counters = {
    accepted: 0,
    finished: emptyFinished(),
    abandoned: 0
  }
  private nextId = 1
  /** The origin of the last task made: the next one shares it while its context and sink are the same. */
  private origin: Origin | undefined = undefined
  /** Set while `pumpSync` runs: a task finishing inside it must not start another pump. */
  private pumping = false
  /**
   * Every fiber the engine resumes, starts or interrupts is posted here and woken once the transition that
   * found it has finished (the wake-up rule). A posted task is an attempt to fork.
   */
  private readonly outbox: Outbox<Task>

  /** Done once the shutdown protocol (or the dispatcher's end) closed the executor. */
  readonly closed = Deferred.makeUnsafe<void>()
  readonly config: Config
  readonly clock: Clock.Clock
  /** The executor-wide Pile (`sinks.pile`) and the batches' sinks: shutdown unbounds them all. */
  readonly sinks: Sinks

  /** A Pile buffer's refill releases its blocked deliveries inside one transition. */
  // Stryker disable next-line BlockStatement: without it each release is a transition of its own: more clock readings, the same outcomes
  get transitions(): Transitions {
    return this.outbox
  }
  /** The fibers the executor owns outside any scope (docs/decisions/0002). */
  readonly fibers = new FiberRegistry()
  readonly dispatcher: Dispatcher
  readonly intake: Intake
  readonly admission: Admission
  readonly attempts: Attempts
  /** The histograms' clock (a batch feeder marks its bursts on it). */
  readonly metricClock: MetricClock
  private readonly sweeper: Sweeper

  constructor(config: Config, clock: Clock.Clock) {
    this.config = config
    this.clock = clock
    this.cap = config.concurrency
    this.metricClock = new MetricClock(clock, config.instruments !== undefined)
    this.outbox = new Outbox<Task>(this, this.metricClock)
    const pile = config.pile
    this.sinks = new Sinks(
      pile === "none"
        ? undefined
        : new OutcomeBuffer(pile === "read" ? unbounded : pile, pile === "read", this.outbox)
    )
    this.dispatcher = new Dispatcher(clock, config.liveClock, config.finalizerTimeout, this.fibers)
    this.admission = new Admission(config.store, clock, this.dispatcher.timers, this.outbox, {
      wake: () => this.dispatcher.wake(),
      freed: () => this.intake.admitWaiters(),
      mayStart: () => this.mayStart()
    })
    this.intake = new Intake(config.capacity, config.instruments, this.outbox, this.admission, {
      accept: (task) => this.accept(task)
    })
    this.attempts = new Attempts(config, clock, this.admission, this)
    this.sweeper = new Sweeper(config, clock, this.dispatcher.timers, () => this.lifecycle === "open")
  }

  get phase(): Phase {
    return this.lifecycle
  }

  get escalation(): ExecutorError.Escalated | undefined {
    return this.escalated
  }

  get concurrency(): number {
    return this.cap
  }

  get slots(): number {
    return this.slotsUsed
  }

  get runningCount(): number {
    return this.running.size
  }

  get counts(): Readonly<Counters> {
    return this.counters
  }

  get isAccepting(): boolean {
    return this.lifecycle === "open"
  }

  /** Forks the dispatcher into `scope`; its end, however it comes, closes the executor (I16). */
  launch(scope: Scope.Scope): Effect.Effect<void> {
    return Effect.map(Effect.forkIn(this.dispatcher.run(this), scope), (fiber) => {
      this.fibers.addDispatcher(fiber)
      fiber.addObserver((exit) => this.onDispatcherExit(exit))
    })
  }

  // ------------------------------------------------------------------------------------------------------
  // accept
  // ------------------------------------------------------------------------------------------------------

  /** A new task, not yet accepted. */
  makeTask<A, E>(
    body: Effect.Effect<A, E, any> | Lazy,
    context: Context.Context<any>,
    input: unknown,
    sink: Sink | undefined,
    spec: TaskSpec | undefined,
    index = 0
  ): Task<A, E> {
    const last = this.origin
    const same = last !== undefined && last.context === context && last.sink === sink
    return new Task(same ? last : this.newOrigin(context, sink), body, input, spec, index)
  }

  /**
   * A new origin, the first task of a batch or of a submitter with another context. Out of line: it runs once per
   * batch, before V8 keeps feedback for `makeTask`, and inlined its empty feedback deoptimized `makeTask` when the
   * next batch began.
   */
  private newOrigin(context: Context.Context<any>, sink: Sink | undefined): Origin {
    return this.origin = new Origin(this, context, sink)
  }

  closedError(): ExecutorError.ExecutorError {
    return ExecutorError.closed(this.escalated !== undefined)
  }

  /**
   * Offers a task to the intake, waiting while it is full (strategy "suspend") unless `wait` is false.
   * Succeeds with the task once accepted; fails with Closed or QueueFull, and then the task was never accepted.
   */
  offer<A, E>(task: Task<A, E>, wait: boolean): Effect.Effect<Task<A, E>, ExecutorError.ExecutorError> {
    return Effect.suspend(() => this.offerNow(task, wait))
  }

  /** `offer`, from inside an effect already running (the submitter's step): decides at once. */
  offerNow<A, E>(task: Task<A, E>, wait: boolean): Effect.Effect<Task<A, E>, ExecutorError.ExecutorError> {
    const decided = this.tryOffer(task, wait)
    if (decided === undefined) return this.intake.waitToOffer(task)
    return decided === task ? Effect.succeed(task) : Effect.fail(decided as ExecutorError.ExecutorError)
  }

  /** Accepts or refuses `task` now; undefined when the submitter must wait for space. */
  tryOffer<A, E>(task: Task<A, E>, wait: boolean): Task<A, E> | ExecutorError.ExecutorError | undefined {
    this.outbox.begin()
    const decided = this.decideOffer(task, wait)
    this.outbox.end()
    return decided
  }

  private decideOffer<A, E>(task: Task<A, E>, wait: boolean): Task<A, E> | ExecutorError.ExecutorError | undefined {
    if (this.intake.hasRoom) {
      this.accept(task)
      return task
    }
    return this.decideFullOffer(task, wait)
  }

  /** `decideOffer` when admission is closed or the intake has no room for a newcomer. */
  private decideFullOffer<A, E>(task: Task<A, E>, wait: boolean): Task<A, E> | ExecutorError.ExecutorError | undefined {
    if (!this.intake.isOpen) {
      this.intake.reject(task)
      return this.closedError()
    }
    if (this.config.strategy === "dropping") {
      task.id = this.nextId++
      this.counters.accepted++
      this.config.instruments?.submitted(task.spec?.key)
      this.finish(task, Exit.interrupt(), "dropped")
      return task
    }
    if (this.config.strategy === "sliding") {
      const victim = this.intake.head ?? this.admission.oldestFresh()
      if (victim !== undefined) {
        this.finish(victim, Exit.interrupt(), "evicted")
        this.accept(task)
        return task
      }
    }
    if (!wait) {
      this.intake.reject(task)
      return new ExecutorError.ExecutorError({
        reason: new ExecutorError.QueueFull({ capacity: this.intake.capacity })
      })
    }
    return undefined
  }

  /** Accepts a task that ends before it could run: rejected (its cost can never fit), or a defect in the user code that describes it. */
  acceptFinished(
    task: Task,
    exit: Exit.Exit<any, any>,
    kind: Outcome.Kind,
    rejection?: ExecutorError.ExecutorError
  ): void {
    this.outbox.begin()
    task.id = this.nextId++
    this.counters.accepted++
    this.config.instruments?.submitted(task.spec?.key)
    this.finish(task, exit, kind, rejection)
    this.outbox.end()
  }

  private accept(task: Task): void {
    task.id = this.nextId++
    task.state = QUEUED
    this.intake.push(task)
    this.counters.accepted++
    const instruments = this.config.instruments
    if (instruments !== undefined) {
      instruments.submitted(task.spec?.key)
      task.markedAt = this.metricClock.now()
    }
    const deadlineAt = task.spec?.deadlineAt
    if (deadlineAt !== undefined) {
      this.dispatcher.timers.add(deadlineAt, () => this.stop(task, "timedOut"), task)
    }
    // Stryker disable next-line ConditionalExpression,EqualityOperator: with every slot taken a pass starts nothing
    if (this.slotsUsed < this.cap) this.kick()
  }

  // ------------------------------------------------------------------------------------------------------
  // admit
  // ------------------------------------------------------------------------------------------------------

  /** A slot is free and tasks may start (open, or draining). */
  private mayStart(): boolean {
    return this.slotsUsed < this.cap && (this.lifecycle === "open" || this.lifecycle === "draining")
  }

  /**
   * One admission step: starts a task, moves one from the intake to its line, or asks for an asynchronous
   * reservation. Returns what the dispatcher must do next, or undefined when nothing more can start now.
   */
  private admitNext(): Admitted | "again" | undefined {
    // Stryker disable next-line ConditionalExpression: after cancelAll the intake and the lines are empty, so nothing could start anyway
    if (this.lifecycle !== "open" && this.lifecycle !== "draining") return undefined
    if (this.slotsUsed >= this.cap) return undefined
    // 1. The oldest head of a line that may go now. Line tasks are older than the intake's.
    const fromLine = this.admission.next()
    if (fromLine !== undefined) return fromLine
    // 2. The intake's head: it starts at once unless it must wait in its key's line.
    const task = this.intake.shift()
    if (task === undefined) return undefined
    const instruments = this.config.instruments
    if (instruments !== undefined) {
      const now = this.metricClock.now()
      instruments.observe(0, between(task.markedAt, now))
      task.markedAt = now
    }
    if (this.admission.enter(task)) return "again"
    this.intake.admitWaiters()
    return task
  }

  /** An admission pass: fires due timers and starts every task that may start now. */
  readonly pass: Effect.Effect<void> = Effect.suspend(() => {
    this.admission.beginPass()
    return this.pumpLoop
  })

  private readonly pumpLoop: Effect.Effect<void> = Effect.suspend(() => {
    this.outbox.begin()
    const timers = this.dispatcher.timers
    // Stryker disable next-line ConditionalExpression,EqualityOperator: firing the due timers of an empty heap fires nothing
    if (timers.size > 0) timers.fireDue(nowMillis(this.clock))
    const next = this.pumpSync()
    this.outbox.end()
    if (next === undefined) return this.admission.flush
    if (next === "yield") return Effect.andThen(Effect.yieldNow, this.pumpLoop)
    return Effect.flatMap(this.admission.reserve(next.reserve, next.line), (reserved) => {
      if (reserved) {
        this.metricClock.stale()
        this.outbox.begin()
        this.start(next.reserve)
        this.outbox.end()
      }
      return this.pumpLoop
    })
  })

  /**
   * Starts every task that may start now, synchronously (attempts start with `runForkWith`, no Effect step).
   * Returns undefined when nothing more can start, "yield" after 512 starts (a long run of instant tasks must
   * let other fibers run), or a line head that needs an asynchronous reservation (the dispatcher's job).
   */
  private pumpSync(): undefined | "yield" | { readonly reserve: Task; readonly line: Line } {
    if (this.pumping) return undefined
    this.pumping = true
    let result: undefined | "yield" | { readonly reserve: Task; readonly line: Line } = undefined
    for (let started = 0;;) {
      if (started >= 512) {
        result = "yield"
        break
      }
      const next = this.admitNext()
      if (next === undefined) break
      if (next === "again") continue
      if (!(next instanceof Task)) {
        result = next
        break
      }
      this.start(next)
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
    if (this.pumpSync() !== undefined) this.dispatcher.wake()
  }

  // ------------------------------------------------------------------------------------------------------
  // start and exit
  // ------------------------------------------------------------------------------------------------------

  /** Starts one attempt of `task`: it takes a slot now, and its fiber is forked after the transition. */
  private start(task: Task): void {
    task.state = RUNNING
    task.attempts++
    this.slotsUsed++
    this.running.push(task)
    const instruments = this.config.instruments
    if (instruments !== undefined) {
      const now = this.metricClock.now()
      if (task.attempts === 1) instruments.observe(1, between(task.markedAt, now))
      task.markedAt = now
    }
    const timeout = task.spec?.timeout
    if (timeout !== undefined) this.armTimeout(task, timeout)
    // The attempt's fiber is forked once this transition has finished (its body may run at once and call
    // back into the engine): see `fork`.
    this.outbox.post(task)
  }

  /** The attempt's timeout: it stops this attempt (not a later one) once `timeout` ms have passed. */
  private armTimeout(task: Task, timeout: number): void {
    const attempt = task.attempts
    this.dispatcher.timers.add(nowMillis(this.clock) + timeout, () => {
      if (task.state === RUNNING && task.attempts === attempt) this.stop(task, "timedOut")
    }, task)
  }

  /**
   * Forks the attempt of a task `start` admitted. The fiber runs with exactly the submitter's context (its
   * services, tracer, clock and span), and starts at once. It is owned by the engine, not by a scope
   * (docs/decisions/0002): shutdown interrupts and awaits each one, bounded by finalizerTimeout; a scope would
   * await a stuck finalizer forever.
   */
  fork(task: Task): void {
    if (task.state !== RUNNING || task.fiber !== undefined) return // finished (abandoned) before its turn
    // Stopped between its admission and its fork: the body never runs, and the attempt does not count (I3).
    if (task.stopReason !== undefined) return this.unstarted(task, undefined)
    // A batch task's effect is built now, as it first starts; a throw in the batch's function is its outcome
    // (a defect), and the attempt does not count: its body never ran.
    const thrown = task.build()
    if (thrown !== undefined) return this.unstarted(task, thrown)
    // Without a breaker the body runs as soon as the fiber starts; with one, `Attempts.effect` counts it.
    if (this.config.breaker === undefined) this.config.instruments?.started(task.spec?.key)
    // The forking function is made here, not kept per origin: a call site that saw one origin's function is
    // deoptimized by the next one's, and one made in place is inlined.
    this.attach(task, Effect.runForkWith(task.origin.context)(this.attempts.effect(task)))
  }

  /** An admitted attempt that never forks: stopped before its turn, or its batch function threw (`thrown`). */
  private unstarted(task: Task, thrown: Exit.Exit<unknown> | undefined): void {
    this.outbox.begin()
    task.attempts--
    this.admission.refund(task)
    if (thrown === undefined) this.onAttemptExit(task, undefined, Exit.interrupt())
    else this.finish(task, thrown, "defect")
    this.outbox.end()
  }

  private attach(task: Task, fiber: Fiber.Fiber<any, any>): void {
    task.fiber = fiber
    // A body that ran to its end inside the fork (it never suspended): its exit is handled now, without an
    // observer (what `addObserver` would do at once, minus a closure per attempt).
    const exit = fiber.pollUnsafe()
    // Stryker disable next-line ConditionalExpression: addObserver calls back at once for a fiber that has ended
    if (exit !== undefined) return this.onAttemptExit(task, fiber, exit)
    fiber.addObserver((exit) => this.onAttemptExit(task, fiber, exit))
    // The task may have been stopped while its fiber was being forked: the fork runs the body synchronously
    // up to its first suspension, and a body that cancels its own task there finds no fiber to interrupt yet.
    if (task.stopReason !== undefined && task.fiber === fiber) fiber.interruptUnsafe()
  }

  private onAttemptExit(task: Task, fiber: Fiber.Fiber<any, any> | undefined, fiberExit: Exit.Exit<any, any>): void {
    if (task.fiber !== fiber) return // abandoned by a shutdown that timed out
    this.outbox.begin()
    task.fiber = undefined
    this.running.remove(task)
    if (this.config.instruments !== undefined) {
      this.config.instruments.observe(2, between(task.markedAt, this.metricClock.fresh()))
    }
    // The outcome, a retry or an escalation, as the policy decides (attempt.ts).
    this.attempts.exited(task, fiberExit)
    this.outbox.end()
  }

  /** The attempt ended; the task goes back to admission after `delay` (I21: it takes a slot and budget again). */
  retryLater(task: Task, delay: number): void {
    this.release()
    this.admission.retryLater(task, delay)
  }

  // ------------------------------------------------------------------------------------------------------
  // finish and release
  // ------------------------------------------------------------------------------------------------------

  /**
   * Records the outcome of a task, exactly once (I1), releases what it holds and delivers the outcome.
   * Works from every state: a queued or pending task is removed from its list; a running one must have stopped.
   */
  finish(
    task: Task,
    exit: Exit.Exit<any, any>,
    kind: Outcome.Kind,
    rejection?: ExecutorError.ExecutorError
  ): void {
    // Stryker disable next-line ConditionalExpression: every caller finishes a task from a live state, and abandoned attempts are ignored when they end
    if (task.result !== undefined) return
    const held = task.state === RUNNING
    if (held) this.running.remove(task)
    else this.unqueue(task)
    const outcome = new Outcome.OutcomeImpl(task.id, task.input, kind, exit, task.attempts, rejection)
    task.result = outcome
    task.body = undefined
    this.counters.finished[kind]++
    this.config.instruments?.finished(task.spec?.key, kind)
    if (task.spec !== undefined) this.sweeper.finished()
    task.state = DONE
    const sink = task.origin.sink
    if (held) {
      // The slot is released once the outcome is in the sink: a full bounded Pile keeps it (backpressure).
      if (sink === undefined || sink.offer(outcome, this.releaseFromSink)) this.release()
    } else {
      sink?.offer(outcome, noop)
    }
    task.finished(this.outbox, outcome)
  }

  /** A task that finishes before it started (queued, or pending: `finish` never sees a done one) leaves its list. */
  private unqueue(task: Task): void {
    if (task.state === QUEUED) {
      // Stryker disable next-line ConditionalExpression: a task already out of the intake frees no place, so admitting waiters admits nobody
      if (task.list !== undefined) this.intake.remove(task)
    } else this.admission.leave(task)
  }

  /** `release` for a Pile buffer, called when a blocked delivery enters it (from the consumer's fiber). */
  private readonly releaseFromSink = (): void => {
    this.outbox.begin()
    this.release()
    this.outbox.end()
  }

  /** Frees the slot of an attempt that ended (its fiber stopped, its outcome is delivered or it will retry). */
  private release(): void {
    this.slotsUsed--
    // Stryker disable next-line ConditionalExpression,EqualityOperator: a pass with nothing waiting starts nothing
    if (this.intake.size > 0 || this.admission.waiting > 0) this.kick()
    // Stryker disable next-line ConditionalExpression,StringLiteral: a wake-up while open costs one empty pass
    if (this.lifecycle !== "open") this.dispatcher.wake()
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
    this.cap = concurrency
    this.dispatcher.wake()
  }

  isIdle(): boolean {
    return this.intake.size === 0 && this.admission.waiting === 0 && this.slotsUsed === 0
  }

  holdsSlots(): boolean {
    return this.slotsUsed > 0
  }

  // ------------------------------------------------------------------------------------------------------
  // shutdown
  // ------------------------------------------------------------------------------------------------------

  /** Shuts down with `request` and waits until every task has its outcome and the dispatcher has ended. */
  shutdown(request: ShutdownRequest): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.requestShutdown(request)
      const dispatcher = this.fibers.dispatcher
      return Effect.andThen(
        Deferred.await(this.closed),
        dispatcher === undefined ? Effect.void : Effect.asVoid(Fiber.await(dispatcher))
      )
    }).pipe(Effect.uninterruptible)
  }

  /**
   * Asks for shutdown. Synchronous and idempotent: admission closes at once (I6), waiting submitters fail with
   * Closed, the Pile buffers stop bounding (I14); the dispatcher then drains or cancels. A cancel request cuts
   * a drain in progress short.
   */
  requestShutdown(request: ShutdownRequest): void {
    this.outbox.transition(() => this.shutdownRequested(request))
  }

  private shutdownRequested(request: ShutdownRequest): void {
    // Stryker disable next-line ConditionalExpression,StringLiteral: once closed, the dispatcher already has a request and no one reads a new one
    if (this.lifecycle === "closed") return
    if (!this.dispatcher.ask(request)) return
    this.lifecycle = "draining"
    // The error is made only if a submitter waits (an error captures a stack trace: about 10 µs).
    this.intake.close(Effect.suspend(() => Effect.fail(this.closedError())))
    this.sinks.unbound()
    this.dispatcher.wake()
  }

  escalate(source: string, cause: Cause.Cause<unknown>): void {
    if (this.escalated !== undefined || this.lifecycle === "closed") return
    this.escalated = new ExecutorError.Escalated({ source, cause })
    this.requestShutdown({ mode: "cancel", grace: 0 })
  }

  cancel(): void {
    this.lifecycle = "cancelling"
    this.outbox.transition(() => this.cancelAll())
  }

  private cancelAll(): void {
    // Taken out of the intake first, so that finishing them admits no waiting submitter.
    for (const task of this.intake.takeAll()) this.finish(task, Exit.interrupt(), "interrupted")
    for (const task of this.admission.pendingTasks()) this.stop(task, "interrupted")
    for (const task of this.running.toArray()) this.stop(task, "interrupted")
    // Stryker disable next-line CallExpression: requestShutdown unbounded every sink, and no batch starts after it
    this.sinks.unbound()
  }

  /** After the finalizer deadline: record the tasks whose fibers would not stop, and free their slots. */
  abandon(): void {
    this.outbox.begin()
    for (const task of this.running.toArray()) {
      this.counters.abandoned++
      // Stryker disable next-line ConditionalExpression: a running task has its fiber by the time shutdown abandons it
      if (task.fiber !== undefined) this.fibers.abandon(task.fiber)
      task.fiber = undefined
      // Stryker disable next-line StringLiteral: cancelAll gave every running task its stop reason
      this.finish(task, Exit.interrupt(), task.stopReason ?? "interrupted")
    }
    this.outbox.end()
  }

  readonly close: Effect.Effect<void> = Effect.andThen(
    Effect.suspend(() => this.admission.flush),
    // Stryker disable next-line BlockStatement: without it the dispatcher's exit observer closes, as the fiber ends
    Effect.sync(() => {
      // Stryker disable next-line CallExpression: closeNow's one wake-up is its last step, and no later transition posts
      this.outbox.begin()
      // Stryker disable next-line CallExpression: the dispatcher's exit, right after, closes the same way
      this.closeNow()
      this.outbox.end()
    })
  )

  /** The last step of every shutdown: nothing more will be delivered. */
  private closeNow(): void {
    // Stryker disable next-line ConditionalExpression,StringLiteral: closing twice changes nothing (the Pile and the deferred close once)
    if (this.lifecycle === "closed") return
    this.lifecycle = "closed"
    // Stryker disable next-line CallExpression: the timers are dropped to free memory, and no pass fires them after the close
    this.dispatcher.timers.clear()
    const failure = this.escalated === undefined
      ? undefined
      : { error: new ExecutorError.ExecutorError({ reason: this.escalated }) }
    this.sinks.pile?.close(failure)
    this.outbox.post(() => Deferred.doneUnsafe(this.closed, Exit.void))
  }

  /**
   * The dispatcher ended without finishing the shutdown protocol (it died, or was interrupted from outside):
   * close admission and give every task an outcome anyway, so no caller waits forever (I16).
   */
  private onDispatcherExit(exit: Exit.Exit<void>): void {
    this.outbox.transition(() => this.dispatcherExited(exit))
  }

  private dispatcherExited(exit: Exit.Exit<void>): void {
    // Stryker disable next-line ConditionalExpression,StringLiteral: after a close, the steps below find nothing to do and close again
    if (this.lifecycle === "closed") return
    if (exit._tag === "Failure" && this.escalated === undefined) {
      this.escalated = new ExecutorError.Escalated({ source: "executor", cause: exit.cause })
    }
    // Stryker disable next-line ObjectLiteral,StringLiteral: the dispatcher is gone, so no one reads this request's mode
    if (!this.dispatcher.requested) this.requestShutdown({ mode: "cancel", grace: 0 })
    // Stryker disable next-line StringLiteral: the phase is "closed" before anyone can read it
    this.lifecycle = "cancelling"
    this.cancelAll()
    for (const fiber of this.fibers.serviceFibers()) this.outbox.post(() => fiber.interruptUnsafe())
    this.closeNow()
  }

  // ------------------------------------------------------------------------------------------------------
  // observation
  // ------------------------------------------------------------------------------------------------------

  /** Every fiber the engine started and still owns: the dispatcher, services, running attempts (I5 checks). */
  liveFibers(): Array<Fiber.Fiber<any, any>> {
    const attempts: Array<Fiber.Fiber<any, any>> = []
    for (let task = this.running.head; task !== undefined; task = task.next as Task | undefined) {
      if (task.fiber !== undefined) attempts.push(task.fiber)
    }
    return this.fibers.live(attempts)
  }

  /** The tasks going to `sink` that have no outcome yet: queued, waiting or running. */
  tasksOf(sink: Sink): Array<Task> {
    const tasks: Array<Task> = []
    for (let task = this.intake.head; task !== undefined; task = task.next as Task | undefined) {
      if (task.sink === sink) tasks.push(task)
    }
    for (const task of this.admission.pendingTasks()) if (task.sink === sink) tasks.push(task)
    for (const task of this.running.toArray()) if (task.sink === sink) tasks.push(task)
    return tasks
  }
}
