/**
 * The intake: the bounded FIFO of accepted tasks that wait to be admitted, the submitters waiting for a place
 * in it, and the batch feeders waiting for room. It owns I13 (the capacity bounds the tasks that have not
 * started), the order of waiting submitters (I2) and their refusal once admission closes (I6).
 *
 * It reaches the rest of the executor through `IntakeHooks`, given when it is made; every submitter it
 * resumes is resumed through the outbox, after the transition that found it.
 */
import * as Effect from "effect/Effect"
import type * as ExecutorError from "../ExecutorError.ts"
import type { Instruments } from "./instruments.ts"
import { LinkedList, type Node } from "./linkedList.ts"
import type { Outbox } from "./outbox.ts"
import type { Task } from "./task.ts"

/** What the intake needs from the engine's cycle. */
export interface IntakeHooks {
  /** Accepts a task handed a freed place (it joins the FIFO: the cycle's `accept`). */
  accept(task: Task): void
}

/** Where the tasks out of the FIFO that never started (waiting in a key line) are counted: admission. */
export interface FreshCount {
  /** They still hold a place. */
  readonly fresh: number
}

/** A submitter waiting for space in the intake. */
interface SubmitWaiter extends Node {
  readonly task: Task
  readonly resume: (effect: Effect.Effect<Task, ExecutorError.ExecutorError>) => void
}

export class Intake {
  /** Accepted tasks not yet admitted, oldest first. Invariant (I13): size + fresh() <= capacity. */
  private readonly queue = new LinkedList<Task>()
  /** Submitters waiting for a place, in arrival order (I2). Invariant: empty once closed (I6). */
  private readonly submitters = new LinkedList<SubmitWaiter>()
  /** Batch feeders waiting for room (see `waitForRoom`). Invariant: empty once closed. */
  // Stryker disable next-line ArrayDeclaration: a stray non-function wake-up goes to the engine's fork, which starts only a running task
  private roomWaiters: Array<() => void> = []
  /** False once admission closed (shutdown asked): nothing is accepted any more. */
  private open = true
  /** The most tasks ever held at once (`stats.peakQueued`). */
  private peak = 0
  /** Submissions refused with an error (`stats.rejected`). */
  private refused = 0

  readonly capacity: number
  private readonly instruments: Instruments | undefined
  private readonly outbox: Outbox<Task>
  private readonly hooks: IntakeHooks
  private readonly pending: FreshCount

  constructor(
    capacity: number,
    instruments: Instruments | undefined,
    outbox: Outbox<Task>,
    pending: FreshCount,
    hooks: IntakeHooks
  ) {
    this.capacity = capacity
    this.instruments = instruments
    this.outbox = outbox
    this.hooks = hooks
    this.pending = pending
  }

  get size(): number {
    return this.queue.size
  }

  /** The oldest queued task. */
  get head(): Task | undefined {
    return this.queue.head
  }

  get isOpen(): boolean {
    return this.open
  }

  /** Submitters waiting for a place. */
  get blocked(): number {
    return this.submitters.size
  }

  get peakQueued(): number {
    return this.peak
  }

  get rejected(): number {
    return this.refused
  }

  /** Counts a submission refused with an error (closed, full, or a bad option). */
  reject(task: Task | undefined): void {
    this.refused++
    this.instruments?.rejected(task?.spec?.key)
  }

  /** Tasks that have not started yet: what the capacity bounds. */
  private get held(): number {
    return this.queue.size + this.pending.fresh
  }

  /** Whether the intake is open and a new task may take a place now, ahead of nobody. */
  get hasRoom(): boolean {
    return this.open && this.queue.size + this.pending.fresh < this.capacity && this.submitters.size === 0
  }

  push(task: Task): void {
    this.queue.push(task)
    const held = this.queue.size + this.pending.fresh
    // Stryker disable next-line EqualityOperator: assigning an equal peak changes nothing
    if (held > this.peak) this.peak = held
  }

  shift(): Task | undefined {
    return this.queue.shift()
  }

  /** Empties the FIFO (shutdown's cancel), without handing the places to anyone. */
  takeAll(): Array<Task> {
    return this.queue.takeAll()
  }

  /** Takes a queued task out (it finished before admission) and hands its place on. */
  remove(task: Task): void {
    this.queue.remove(task)
    this.admitWaiters()
  }

  /** Waits for a place: resumed with the task once accepted, or with Closed when admission closes first. */
  waitToOffer<A, E>(task: Task<A, E>): Effect.Effect<Task<A, E>, ExecutorError.ExecutorError> {
    return Effect.callback<Task<A, E>, ExecutorError.ExecutorError>((resume) => {
      const waiter: SubmitWaiter = {
        task,
        resume: resume as SubmitWaiter["resume"],
        prev: undefined,
        next: undefined,
        list: undefined
      }
      this.submitters.push(waiter)
      // An interrupted submitter leaves nothing queued (I13): while it waits, nothing was accepted.
      return Effect.sync(() => {
        this.submitters.remove(waiter)
      })
    })
  }

  /** Called whenever fewer tasks wait to start: hands the freed places to waiting submitters, in order. */
  admitWaiters(): void {
    while (this.held < this.capacity && this.submitters.size > 0 && this.open) {
      const waiter = this.submitters.shift()!
      this.hooks.accept(waiter.task)
      this.outbox.post(() => waiter.resume(Effect.succeed(waiter.task)))
    }
    if (
      // Stryker disable next-line ConditionalExpression,EqualityOperator: waking an empty list of feeders does nothing
      this.roomWaiters.length > 0 &&
      this.capacity - this.held >= this.lowWater
    ) this.wakeRoomWaiters()
  }

  /** Admission closes (I6): waiting submitters fail with `closed`, waiting feeders are woken to find it. */
  close(closed: Effect.Effect<never, ExecutorError.ExecutorError>): void {
    this.open = false
    for (const waiter of this.submitters.takeAll()) {
      this.reject(waiter.task)
      this.outbox.post(() => waiter.resume(closed))
    }
    this.wakeRoomWaiters()
  }

  /** How much room a batch feeder waits for: a quarter of the capacity. */
  private get lowWater(): number {
    return Math.max(1, Math.floor(this.capacity / 4))
  }

  private wakeRoomWaiters(): void {
    const waiters = this.roomWaiters
    // Stryker disable next-line ArrayDeclaration: a string left in the list is posted, and ignored, at the next wake-up of feeders
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
    if (!this.open || (this.capacity - this.held >= this.lowWater && this.submitters.size === 0)) {
      return resume(Effect.void)
    }
    const wake = () => resume(Effect.yieldNow)
    this.roomWaiters.push(wake)
    return Effect.sync(() => {
      const i = this.roomWaiters.indexOf(wake)
      if (i >= 0) this.roomWaiters.splice(i, 1)
    })
  })
}
