/**
 * One accepted task, and its handle: the object `submit` returns is the task itself, seen through the
 * `TaskHandle` interface, so a queued task costs one object plus its links.
 *
 * A task is the record every step of the data path works on (intake, admission, attempt, the engine's
 * cycle), the way a list node carries its own links: each field says which step writes it; fields no comment
 * names are the cycle's. The handle reaches the executor only through a `Stopper`.
 */
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import type * as ErrorPolicy from "../ErrorPolicy.ts"
import * as Outcome from "../Outcome.ts"
import type { TaskSpec } from "./config.ts"
import type { Reservation } from "./limiter.ts"
import type { LinkedList, Node } from "./linkedList.ts"
import type { Outbox } from "./outbox.ts"
import type { OutcomeBuffer } from "./outcomeBuffer.ts"
import { call, Thrown } from "./userCode.ts"

/**
 * A batch's task function (`Executor.run`'s `f`), shared by all the batch's tasks: a batch task keeps it as
 * its body until it first starts, so a queued input costs no effect (its task is built when it starts).
 */
export class Lazy {
  readonly f: (input: any, index: number) => Effect.Effect<any, any, any>
  constructor(f: (input: any, index: number) => Effect.Effect<any, any, any>) {
    this.f = f
  }
}

/** Where a task's outcome goes besides its handle: a Pile buffer, or nowhere. */
export type Sink = OutcomeBuffer<Outcome.Outcome<any, any, any>, any>

/**
 * A task's life: queued → (pending) → running → (pending → running)* → done. A done task whose outcome waits
 * for room in a bounded Pile still holds its slot (the engine's `release` frees it once the outcome is in).
 */
export const QUEUED = 0
export const PENDING = 1
export const RUNNING = 2
export const DONE = 3
export type TaskState = typeof QUEUED | typeof PENDING | typeof RUNNING | typeof DONE

/** A callback waiting for a task's outcome. */
type Waiter = (outcome: Outcome.Outcome<any, any, any>) => void

/** What a handle needs from the executor: stopping its task (the engine's `stop`). */
export interface Stopper {
  stop(task: Task, reason: Outcome.Kind): void
}

/** Retry schedules' step functions, one per retry rule used by a task. */
type Steps = Map<
  ErrorPolicy.Rule,
  (now: number, input: unknown) => Effect.Effect<[unknown, Duration.Duration], unknown>
>

/**
 * What every task of a batch, or every task a submitter hands over in one context, shares: one record instead
 * of three fields per task (the engine's `makeTask` reuses the last one while they stay the same).
 */
export class Origin {
  readonly owner: Stopper
  readonly context: Context.Context<any>
  readonly sink: Sink | undefined
  constructor(owner: Stopper, context: Context.Context<any>, sink: Sink | undefined) {
    this.owner = owner
    this.context = context
    this.sink = sink
  }
}

/**
 * The fields only some tasks need (stopped, awaited, reserved against a limit, or retried), made the first time
 * one of them is written: a task that runs plainly never makes one (Node has no pointer compression: every
 * field costs 8 bytes).
 */
class Run {
  stopReason: Outcome.Kind | undefined = undefined
  waiters: Array<Waiter> | undefined = undefined
  reservation: Reservation | undefined = undefined
  steps: Steps | undefined = undefined
}

/**
 * The record of every task that has not needed its own, so that reads need no check. Shared, and never written:
 * every write goes to the task's own record (`own` makes it).
 */
const noRun = new Run()

export class Task<A = any, E = any> implements Node {
  prev: Node | undefined = undefined
  next: Node | undefined = undefined
  /** The intake or a key line, when the task is in one (written by those lists). */
  list: LinkedList<any> | undefined = undefined
  /** Written by the engine's cycle and by admission (queued ↔ pending) only. */
  state: TaskState = QUEUED
  /** Set once, when the outcome is decided (I18: a late completion never overwrites it). */
  result: Outcome.Outcome<A, E, any> | undefined = undefined
  /**
   * The clock reading of the task's last step (`MetricClock`: a 32-bit integer, stored in the task itself), for
   * the wait and run-time histograms: when it was accepted, then dequeued, then started.
   */
  markedAt = 0
  /**
   * Unique within the executor; written by the cycle when the task is accepted, so that ids increase in the
   * order tasks enter the executor and tasks start in id order (I11), whoever waited for room.
   */
  id = 0
  /**
   * The fields of a stopped, awaited, reserved or retried task (see `Run`), behind the accessors below; `noRun`
   * until one of them is written.
   */
  private run: Run = noRun
  /**
   * Attempts started so far (I3: each attempt runs the body once). Written by the cycle and by attempt (an
   * attempt whose body never ran does not count). In the task itself, like `fiber`: every started task writes
   * both, and reading them through a record costs more per task than the two fields cost a queued one.
   */
  attempts = 0
  /** The fiber of the running attempt. Invariant: set iff state === RUNNING and the fork returned. */
  fiber: Fiber.Fiber<any, any> | undefined = undefined
  readonly origin: Origin
  /**
   * What the task runs: an effect, or (a batch task that has not started yet) the batch's function, called
   * with `input` and `index` by `build` when the task first starts. Dropped by `finish`: a handle kept after
   * its outcome does not keep the task's effect alive.
   */
  body: Effect.Effect<A, E, any> | Lazy | undefined
  /** The input's position in its batch (0 for a submitted task). */
  readonly index: number
  readonly input: unknown
  readonly spec: TaskSpec | undefined

  constructor(
    origin: Origin,
    body: Effect.Effect<A, E, any> | Lazy,
    input: unknown,
    spec: TaskSpec | undefined,
    index: number
  ) {
    this.origin = origin
    this.body = body
    this.input = input
    this.spec = spec
    this.index = index
  }

  get owner(): Stopper {
    return this.origin.owner
  }

  get sink(): Sink | undefined {
    return this.origin.sink
  }

  /** The task's own record, made now if it has none yet. */
  private own(): Run {
    return this.run === noRun ? (this.run = new Run()) : this.run
  }

  /** Why the executor stopped this task, when it did: decides the outcome's kind over the fiber's exit. */
  get stopReason(): Outcome.Kind | undefined {
    return this.run.stopReason
  }

  set stopReason(reason: Outcome.Kind | undefined) {
    this.own().stopReason = reason
  }

  /** Callbacks waiting for the outcome. */
  get waiters(): Array<Waiter> | undefined {
    return this.run.waiters
  }

  set waiters(waiters: Array<Waiter> | undefined) {
    this.own().waiters = waiters
  }

  /** The rate reservation of the running attempt, for settlement and refunds (I9). Set and settled by admission;
   * dropped by the cycle's `finish` (`finished`). */
  get reservation(): Reservation | undefined {
    return this.run.reservation
  }

  set reservation(reservation: Reservation | undefined) {
    this.own().reservation = reservation
  }

  /** Retry schedules' step functions, one per retry rule used by this task. Made by attempt; dropped by `finish`
   * (`finished`). */
  get steps(): Steps | undefined {
    return this.run.steps
  }

  set steps(steps: Steps | undefined) {
    this.own().steps = steps
  }

  /**
   * Builds a batch task's effect, once, as it first starts (outside any fiber: the caller's transition). The
   * batch's function is user code: a throw is returned as a defect, which becomes the task's outcome.
   */
  build(): Exit.Exit<unknown> | undefined {
    const body = this.body
    if (!(body instanceof Lazy)) return undefined
    const made = call(body.f, this.input, this.index)
    if (made instanceof Thrown) return made.exit
    this.body = made
    return undefined
  }

  /**
   * The outcome is recorded (the cycle's `finish`): drops what only an attempt needs (a handle kept after its
   * outcome holds neither the reservation nor the retry steps) and resumes the fibers waiting for the outcome
   * through `outbox`. A task that never had its own record has nothing to drop and nobody waiting.
   */
  finished(outbox: Outbox<Task>, outcome: Outcome.Outcome<A, E, any>): void {
    const run = this.run
    // Stryker disable next-line ConditionalExpression: the shared record's fields are unset already, and nobody waits on it
    if (run === noRun) return
    run.reservation = undefined
    run.steps = undefined
    const waiters = run.waiters
    if (waiters === undefined) return
    run.waiters = undefined
    outbox.post(() => {
      for (const waiter of waiters) waiter(outcome)
    })
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
      this.owner.stop(this, "cancelled")
      return Effect.asVoid(this.outcome)
    })
  }

  get poll(): Effect.Effect<Outcome.Outcome<A, E, any> | undefined> {
    return Effect.sync(() => this.result)
  }
}

/**
 * Counters behind `stats`. Invariant (I15): accepted = queued + waiting + running + Σ finished (and
 * submitted = accepted + the intake's rejected).
 */
export interface Counters {
  accepted: number
  finished: Record<Outcome.Kind, number>
  abandoned: number
}

export const emptyFinished = (): Record<Outcome.Kind, number> => {
  const out = {} as Record<Outcome.Kind, number>
  for (const kind of Outcome.kinds) out[kind] = 0
  return out
}
