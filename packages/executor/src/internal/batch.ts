/**
 * A batch: `Executor.run`'s feeder, which offers one task per input (synchronously while the intake has room,
 * waiting for room once when it is full), and the batch's own Pile buffer, which closes once the feeder is done
 * and every accepted task's outcome is in. A consumer that leaves early stops the feeder, then cancels the
 * batch's remaining tasks (I5, I14).
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Result from "effect/Result"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { RunOptions, TaskOptions } from "../Executor.ts"
import * as ExecutorError from "../ExecutorError.ts"
import type * as Outcome from "../Outcome.ts"
import type { Pile } from "../Pile.ts"
import * as RateLimit from "../RateLimit.ts"
import { costOverLimit, type Specs, type TaskSpec } from "./config.ts"
import type { Engine } from "./engine.ts"
import * as Check from "./options.ts"
import { OutcomeBuffer } from "./outcomeBuffer.ts"
import { Lazy, type Task } from "./task.ts"
import { guard } from "./userCode.ts"

/** Runs `f` on every input as a task of `engine` (see `Executor.run`). */
export const run = <I, B, E1, R, EI, RI>(
  engine: Engine,
  specs: Specs,
  inputs: Iterable<I> | Stream.Stream<I, EI, RI>,
  f: (input: I, index: number) => Effect.Effect<B, E1, R>,
  options: RunOptions<I, B, E1> | undefined
): Pile<B, E1, I, ExecutorError.ExecutorError | EI, R | RI> =>
  Stream.unwrap(Effect.gen(function*() {
    const capacity = yield* Effect.fromResult(Check.integer("buffer", options?.buffer, 1, 256))
    const context = yield* Effect.context<R | RI>()
    const scope = yield* Effect.scope
    const batch = new Batch<B, E1, I, EI>(engine, capacity)
    engine.sinks.add(batch)
    const settle = options?.settle
    // What every input's task asks for; nothing at all (the fast path) when neither the batch nor the
    // executor needs a spec.
    const shared: TaskOptions<B, E1> = {
      policy: options?.policy,
      timeout: options?.timeout,
      deadline: options?.deadline,
      limits: options?.limits
    }
    const perInput = options?.key !== undefined || options?.cost !== undefined || settle !== undefined ||
      options?.policy !== undefined || options?.timeout !== undefined || options?.deadline !== undefined ||
      options?.limits !== undefined || specs.needed
    let index = 0
    const lazy = new Lazy(f)
    /** Offers one input: undefined once its task is accepted (or rejected into the batch), else the wait. */
    const offerOne = (input: I): Effect.Effect<void, ExecutorError.ExecutorError> | undefined => {
      let spec: TaskSpec | undefined
      let key: string | undefined
      // The user's key and cost run here, in the feeder: a throw is that input's defect.
      if (perInput) {
        const described = guard(() => ({ key: options?.key?.(input), cost: options?.cost?.(input) }))
        if (described._tag === "Failure") {
          index++
          return failInput(input, described)
        }
        key = described.value.key
        const taskOptions = settle === undefined
          ? shared
          : { ...shared, settle: (exit: Exit.Exit<B, E1>) => settle(exit, input) }
        const resolved = specs.spec(taskOptions, key, described.value.cost)
        if (Result.isFailure(resolved)) return Effect.fail(resolved.failure)
        spec = resolved.success
      }
      // The task's effect is built when it starts (`Task.build`): a queued input holds no effect.
      const task = engine.makeTask<B, E1>(lazy, context, input, batch, spec, index)
      index++
      const over = spec === undefined ? undefined : RateLimit.overLimit(spec.claims)
      if (over !== undefined) {
        // One input whose cost can never fit must not stop the batch: its outcome says why.
        engine.acceptFinished(task, Exit.interrupt(), "rejected", costOverLimit(over, key))
        batch.track(task)
        return undefined
      }
      return offerTask(task)
    }
    /** An input whose description threw: accepted, and ended at once with the defect as its outcome. */
    const failInput = (input: I, defect: Exit.Exit<unknown>): undefined => {
      const task = engine.makeTask<B, E1>(Effect.void as any, context, input, batch, undefined)
      engine.acceptFinished(task, defect, "defect")
      batch.track(task)
      return undefined
    }
    const offerTask = (task: Task<B, E1>): Effect.Effect<void, ExecutorError.ExecutorError> | undefined => {
      const decided = engine.tryOffer(task, true)
      if (decided === task) {
        batch.track(task)
        return undefined
      }
      if (decided !== undefined) return Effect.fail(decided as ExecutorError.ExecutorError)
      // Full: wait for room once, then offer this task again (and the next ones synchronously).
      return Effect.flatMap(engine.intake.waitForRoom, () => offerTask(task) ?? Effect.void)
    }
    // Inputs are offered synchronously while the queue has room; the feeder suspends only to wait for
    // room, and yields to other fibers every 1024 inputs.
    const feedIterator = (iterator: Iterator<I>): Effect.Effect<void, ExecutorError.ExecutorError> =>
      Effect.suspend(() => {
        engine.metricClock.beginBurst()
        for (let n = 0; n < 1024; n++) {
          const next = iterator.next()
          if (next.done === true) {
            engine.metricClock.endBurst()
            return Effect.void
          }
          const waiting = offerOne(next.value)
          if (waiting !== undefined) {
            engine.metricClock.endBurst()
            return Effect.andThen(waiting, feedIterator(iterator))
          }
        }
        engine.metricClock.endBurst()
        return Effect.andThen(Effect.yieldNow, feedIterator(iterator))
      })
    const feed = Stream.isStream(inputs)
      ? Stream.runForEachArray(inputs, (chunk) => feedIterator(chunk[Symbol.iterator]()))
      : feedIterator(inputs[Symbol.iterator]())
    const feeder = yield* Effect.forkIn(feed, scope, { startImmediately: true })
    feeder.addObserver((exit) => batch.fed(exit))
    // The consumer left (or the stream ended): stop feeding first, so nothing is submitted while the batch's
    // tasks are cancelled (I5, I14).
    yield* Scope.addFinalizer(scope, Effect.andThen(Fiber.interrupt(feeder), Effect.suspend(() => batch.cancel())))
    return Stream.fromPull(Effect.succeed(batch.pull as any))
  })) as any

/**
 * A batch's Pile buffer. It tracks the batch's live tasks (to cancel them if the consumer leaves early) and
 * closes once the feeder is done and every accepted task's outcome has entered the buffer.
 */
class Batch<B, E, I, EI> extends OutcomeBuffer<Outcome.Outcome<B, E, I>, ExecutorError.ExecutorError | EI> {
  private trackedCount = 0
  private feederExit: Exit.Exit<void, ExecutorError.ExecutorError | EI> | undefined = undefined
  readonly engine: Engine

  constructor(engine: Engine, capacity: number) {
    super(capacity, false, engine.transitions)
    this.engine = engine
  }

  /** Counts a task accepted for this batch (its outcome will come to this buffer). */
  track(_task: Task): void {
    this.trackedCount++
  }

  override offer(outcome: Outcome.Outcome<B, E, I>, release: () => void): boolean {
    const accepted = super.offer(outcome, release)
    this.maybeClose()
    return accepted
  }

  protected override onAccepted(): void {
    this.maybeClose()
  }

  fed(exit: Exit.Exit<void, ExecutorError.ExecutorError | EI>): void {
    this.feederExit = exit
    this.maybeClose()
  }

  private maybeClose(): void {
    const exit = this.feederExit
    if (exit === undefined || this.isClosed || this.accepted < this.trackedCount) return
    this.engine.sinks.remove(this)
    // An escalation while the batch ran is raised to the batch's caller, after every outcome.
    const escalation = this.engine.escalation
    if (escalation !== undefined) return this.close({ error: new ExecutorError.ExecutorError({ reason: escalation }) })
    if (exit._tag === "Success") return this.close()
    const error = Cause.findErrorOption(exit.cause)
    if (error._tag === "Some") return this.close({ error: error.value })
    // The feeder was interrupted (the consumer left) or died: end quietly; a defect is re-raised by the pull.
    this.close()
  }

  /**
   * The consumer is gone: cancel the batch's remaining tasks and wait for them to stop. The live tasks are
   * found in the engine (queued, waiting or running), so nothing is kept per task meanwhile.
   */
  cancel(): Effect.Effect<void> {
    this.engine.sinks.remove(this)
    this.discard()
    const engine = this.engine
    const tasks = engine.tasksOf(this)
    if (tasks.length === 0) return Effect.void
    // All are stopped at once, then awaited: their finalizers run side by side.
    for (const task of tasks) engine.stop(task, "cancelled")
    return Effect.forEach(tasks, (task) => task.outcome, { discard: true })
  }
}
