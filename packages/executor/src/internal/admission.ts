/**
 * Admission: which waiting task may take a free slot next, given its rate budgets. It owns the key lines
 * (tasks waiting for budget, oldest first, I11), the retries sleeping before their next admission (I21), the
 * reservations of running attempts and their settlement or refund (I9, I12), and the pause of a key after a
 * failure carrying retry-after (a 429).
 *
 * It reaches the rest of the executor through `AdmissionHooks`, given when it is made: it never starts a
 * task itself; `next` and `reserved` tell the engine's cycle which task may start.
 */
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as ErrorPolicy from "../ErrorPolicy.ts"
import type { RateLimitStore, ReserveResult } from "../RateLimit.ts"
import type { Claim } from "./limiter.ts"
import { LinkedList } from "./linkedList.ts"
import type { Outbox } from "./outbox.ts"
import { PENDING, type Task } from "./task.ts"
import { nowMillis, type Timers } from "./timers.ts"
import { guard } from "./userCode.ts"

/** What admission needs from the rest of the executor. */
export interface AdmissionHooks {
  /** Wakes the dispatcher: a line may go now, or a reservation waits for an asynchronous store. */
  wake(): void
  /** A task that never started left admission: the place it held in the intake is free (the intake's). */
  freed(): void
  /** A slot is free and the executor still starts tasks. */
  mayStart(): boolean
}

/** The tasks of one key waiting for admission, in arrival order (retries first). */
export class Line {
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

/** What one admission step found: a task that may start, or a line head that needs an asynchronous store. */
/** What admission decided for the head it found: start this task now, or reserve its budget first. */
export type Admitted = Task | { readonly reserve: Task; readonly line: Line }

let serials = 0

export class Admission {
  /** Key lines with tasks waiting or a pause in force. Invariant: a line with no task and no pause goes. */
  private readonly lines = new Map<string, Line>()
  /** Tasks waiting for a retry delay (pending, in no line). */
  private readonly sleeping = new Set<Task>()
  /** Tasks out of the intake but not running: in a key line or sleeping. Invariant: every such task is PENDING. */
  private pendingCount = 0
  /** Of those, the ones that never started (they still count against the intake's capacity, I13). */
  private pendingFresh = 0
  /** Settlements and refunds for an asynchronous store, run by the dispatcher (`flush`). */
  private storeOps: Array<Effect.Effect<void, unknown>> = []
  /** Lines skipped for the rest of the current admission pass (their head was denied). */
  private readonly passBlocked = new Set<Line>()
  /** Buckets a denied head is waiting for: younger heads may not take from them this pass (I11). */
  private readonly passBlockedBuckets = new Set<string>()
  /** Keys paused by a retry-after so far (`stats.pauses`). */
  private pauseCount = 0
  // Stryker disable next-line UpdateOperator: counting down keeps the serials unique too
  private readonly serial = ++serials

  private readonly store: RateLimitStore
  private readonly clock: Clock.Clock
  private readonly timers: Timers
  private readonly outbox: Outbox<Task>
  private readonly hooks: AdmissionHooks

  constructor(store: RateLimitStore, clock: Clock.Clock, timers: Timers, outbox: Outbox<Task>, hooks: AdmissionHooks) {
    this.store = store
    this.clock = clock
    this.timers = timers
    this.outbox = outbox
    this.hooks = hooks
  }

  /** Tasks in a key line or sleeping before a retry (`stats.waiting`). */
  get waiting(): number {
    return this.pendingCount
  }

  /** Of those, the ones that never started. */
  get fresh(): number {
    return this.pendingFresh
  }

  /** Tasks sleeping before a retry (`stats.retrying`). */
  get retrying(): number {
    return this.sleeping.size
  }

  get pauses(): number {
    return this.pauseCount
  }

  /** Key lines alive (tasks waiting, or a pause in force). */
  get lineCount(): number {
    return this.lines.size
  }

  /** Tasks between intake and admission: in a key line, or sleeping before a retry. */
  pendingTasks(): Array<Task> {
    const out = Array.from(this.sleeping)
    for (const line of this.lines.values()) {
      for (let task = line.tasks.head; task !== undefined; task = task.next as Task | undefined) out.push(task)
    }
    return out
  }

  /** The oldest task waiting in a line for its first admission (a sliding queue's victim once the intake is empty). */
  oldestFresh(): Task | undefined {
    let oldest: Task | undefined
    for (const task of this.pendingTasks()) {
      // A task that never started waits in a line (only retries sleep); ids are unique, so < and <= agree.
      // Stryker disable next-line EqualityOperator: ids are unique, so < and <= pick the same task
      if (task.attempts === 0 && (oldest === undefined || task.id < oldest.id)) oldest = task
    }
    return oldest
  }

  /** A new admission pass begins: lines denied in the last one are looked at again. */
  beginPass(): void {
    this.passBlocked.clear()
    this.passBlockedBuckets.clear()
  }

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
    // Stryker disable next-line ConditionalExpression,BlockStatement: a claimless task put in a new line starts from it in the same pass, in the same order
    if (task.spec === undefined || task.spec.claims.length === 0) {
      // Stryker disable next-line ConditionalExpression: with no line at all the lookup finds none; only the lookup is saved
      return this.lines.size === 0 ? undefined : this.lines.get(key)
    }
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
      this.hooks.freed()
    }
  }

  private leaveLine(line: Line, task: Task): void {
    line.tasks.remove(task)
    this.leavePending(task)
  }

  /** A task left the intake: true when it waits in its key's line, false when it may start at once. */
  enter(task: Task): boolean {
    const line = this.lineFor(task)
    if (line === undefined) return false
    this.makePending(task)
    line.tasks.push(task)
    return true
  }

  /** A pending task finished before it started again (stopped, shut down): it leaves admission. */
  leave(task: Task): void {
    const list = task.list
    if (list !== undefined) list.remove(task)
    this.sleeping.delete(task)
    this.leavePending(task)
    // A line head leaving without starting: the next head may fit the budget now (it was not looked at).
    if (list !== undefined) this.hooks.wake()
  }

  /**
   * Makes the dispatcher pass again at `at` (ms) for this line, unless a wake-up already scheduled comes first:
   * the line is looked at then, and a wake-up for later is scheduled if it still needs one. The timer wakes the
   * dispatcher: it may fire in the middle of a pass (between asynchronous reservations, or after a yield) that
   * skips this line since it was denied earlier in the same pass, and only a new pass looks at the line again.
   */
  private scheduleLineWake(line: Line, at: number): void {
    if (
      line.wakeAt > nowMillis(this.clock) &&
      // Stryker disable next-line ConditionalExpression: an earlier wake-up than needed costs a pass, and the line then schedules the later one
      line.wakeAt <= at
    ) return
    line.wakeAt = at
    this.timers.add(at, () => this.hooks.wake())
  }

  private blockHead(line: Line, task: Task, retryAt: number, blocking: ReadonlyArray<string> | undefined): void {
    // Stryker disable next-line CallExpression: the denied head's blocking buckets skip its line for the rest of the pass anyway
    this.passBlocked.add(line)
    // Only asynchronous stores (Redis, tested outside the mutation run) may leave `blocking` out.
    if (blocking === undefined) {
      // Stryker disable next-line OptionalChaining,ArrayDeclaration: a head whose budgets were asked for has claims, hence a spec
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
   * One step over the key lines, for a free slot: the oldest head that may go now, with its budgets reserved
   * (or to reserve through an asynchronous store); "again" after a denial; undefined when no line may go (the
   * intake's head is next).
   */
  next(): Admitted | "again" | undefined {
    // Without a key line (instant tasks without limits) nothing to look at, and no clock to read.
    if (this.lines.size === 0) return undefined
    const now = nowMillis(this.clock)
    // The oldest head of a line that may go now. Line tasks are older than the intake's.
    let best: Line | undefined
    for (const line of this.lines.values()) {
      const head = line.tasks.head
      if (head === undefined) {
        if (line.pausedUntil <= now && !line.reserving) this.lines.delete(line.key)
        continue
      }
      if (line.reserving || this.passBlocked.has(line)) continue
      if (line.pausedUntil > now) {
        // Stryker disable next-line CallExpression: a paused line looked at again in the pass is skipped by its pause anyway
        this.passBlocked.add(line)
        this.scheduleLineWake(line, line.pausedUntil)
        continue
      }
      if (this.sharesBlockedBucket(head)) {
        // Stryker disable next-line CallExpression: a head that shares a blocked bucket is skipped again on the next look
        this.passBlocked.add(line)
        continue
      }
      if (best === undefined || head.id < best.tasks.head!.id) best = line
    }
    if (best === undefined) return undefined
    const task = best.tasks.head!
    const claims = task.spec?.claims ?? []
    // Stryker disable next-line ConditionalExpression,BlockStatement: reserving no claims always succeeds and charges nothing
    if (claims.length === 0) {
      this.leaveLine(best, task)
      return task
    }
    const memory = this.store.memory
    if (memory === undefined) return { reserve: task, line: best }
    const result = memory.reserve(this.reservationId(task), claims, now)
    if (!("claims" in result)) {
      this.blockHead(best, task, result.retryAt, result.blocking)
      return "again"
    }
    task.reservation = result
    this.leaveLine(best, task)
    return task
  }

  /** Unique among every executor of the process (a store may be shared); the Redis store adds a per-process id. */
  private reservationId(task: Task): string {
    // Stryker disable next-line ArithmeticOperator: any numbering of the attempts keeps the ids unique
    return `${this.serial}.${task.id}.${task.attempts + 1}`
  }

  /**
   * Reserves a line head's budgets through an asynchronous store (Redis), in the dispatcher fiber: true when
   * it may start now. The answer is taken in a transition of its own.
   */
  reserve(task: Task, line: Line): Effect.Effect<boolean> {
    line.reserving = true
    const claims = task.spec?.claims ?? []
    return Effect.map(
      Effect.exit(this.store.reserve(this.reservationId(task), claims, nowMillis(this.clock))),
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
      : { _tag: "Denied", retryAt: nowMillis(this.clock) + 1000 }
    if (task.state !== PENDING || task.list !== line.tasks) {
      // Stopped while the store answered: give the budget back (I9).
      if (result._tag === "Reserved") {
        this.storeOps.push(this.store.settle(result.reservation, claims.map(() => 0)))
      }
      return false
    }
    if (result._tag === "Denied") {
      this.blockHead(line, task, result.retryAt, result.blocking)
      return false
    }
    if (!this.hooks.mayStart()) {
      this.storeOps.push(this.store.settle(result.reservation, claims.map(() => 0)))
      return false
    }
    task.reservation = result.reservation
    this.leaveLine(line, task)
    return true
  }

  /** An attempt ended and the task retries after `delay` (I21: it takes a slot and budget again). */
  retryLater(task: Task, delay: number): void {
    this.makePending(task)
    this.sleeping.add(task)
    const at = nowMillis(this.clock) + delay
    this.timers.add(at, () => {
      // Finished meanwhile (cancelled, timed out, shut down): `leave` took it out of `sleeping`.
      if (!this.sleeping.delete(task)) return
      // Stryker disable next-line OptionalChaining: a retried task has a spec (its policy)
      this.lineOf(task.spec?.key ?? "").tasks.unshift(task)
    })
    // Stryker disable next-line CallExpression: the timer wakes the dispatcher when it is the earliest, and is seen after the earlier one otherwise
    this.hooks.wake()
  }

  /**
   * A failure carrying retry-after pauses the task's whole key (an HTTP 429 is about the key, not the task).
   * The error's `retryAfter` is user code: a throw is returned as a defect (the task's outcome).
   */
  pauseOnRetryAfter(task: Task, cause: Cause.Cause<unknown>): Exit.Exit<void> {
    return guard(() => {
      const error = Cause.findErrorOption(cause)
      // Stryker disable next-line StringLiteral: a cause without a typed failure then reads no retry-after, and the next line returns
      if (error._tag === "None") return
      const millis = ErrorPolicy.retryAfterMillis(error.value)
      if (millis === undefined || millis <= 0) return
      const line = this.lineOf(task.spec?.key ?? "")
      const until = nowMillis(this.clock) + millis
      if (until > line.pausedUntil) {
        line.pausedUntil = until
        this.pauseCount++
        this.scheduleLineWake(line, until)
      }
    })
  }

  /**
   * Settles the attempt's reservation with the cost the task's `settle` reports. Returns the defect when
   * `settle` threw (the reservation then stays as charged): the task's outcome.
   */
  settle(task: Task, exit: Exit.Exit<unknown, unknown>): Exit.Exit<never> | undefined {
    const reservation = task.reservation
    if (reservation === undefined) return undefined
    task.reservation = undefined
    const settle = task.spec?.settle
    if (settle === undefined) return undefined
    const reported = guard(() => settle(exit))
    if (reported._tag === "Failure") return reported as Exit.Exit<never>
    const cost = reported.value
    if (cost === undefined) return undefined
    const actual = reservation.claims.map((claim, i) => cost[claim.bucket.budget] ?? reservation.charged[i]!)
    this.storeOp(this.store.settle(reservation, actual), () => this.store.memory!.settle(reservation, actual))
    return undefined
  }

  /** Gives the attempt's budget back: its body never ran. */
  refund(task: Task): void {
    const reservation = task.reservation
    if (reservation === undefined) return
    task.reservation = undefined
    const zero = reservation.claims.map(() => 0)
    this.storeOp(this.store.settle(reservation, zero), () => this.store.memory!.settle(reservation, zero))
  }

  /** Runs a settlement or refund; then a line head denied in this pass may fit, so the dispatcher looks again. */
  private storeOp(effect: Effect.Effect<void, unknown>, sync: () => void): void {
    if (this.store.memory !== undefined) sync()
    else this.storeOps.push(effect)
    this.hooks.wake()
  }

  /** Runs the settlements and refunds waiting for an asynchronous store (in the dispatcher fiber). */
  readonly flush: Effect.Effect<void> = Effect.suspend(() => {
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
}
