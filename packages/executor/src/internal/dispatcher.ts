/**
 * The dispatcher: the one fiber per executor that fires timers, runs admission passes the other steps could
 * not finish synchronously, and runs the shutdown protocol; how it is woken and how it waits; and the registry
 * of the fibers the executor owns outside any scope (docs/decisions/0002).
 *
 * It drives the engine's cycle through `Cycle`, given when its program starts, and never touches a task.
 */
import type * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import type { ShutdownRequest } from "./config.ts"
import { nowMillis, Timers } from "./timers.ts"

/**
 * The fibers the executor started and still owns, besides running attempts (which hang off their tasks): the
 * dispatcher, the services, and the attempts given up at shutdown. Shutdown interrupts and awaits each one,
 * bounded by `finalizerTimeout`; a scope would await a stuck finalizer forever (docs/decisions/0002).
 */
export class FiberRegistry {
  /** The dispatcher and the services. Invariant: a fiber is here from its fork until it ends. */
  private readonly owned = new Set<Fiber.Fiber<any, any>>()
  /** The services among them. */
  private readonly services = new Set<Fiber.Fiber<any, any>>()
  /** Task fibers that did not stop within finalizerTimeout at shutdown: given up, counted in `abandoned`. */
  private readonly abandoned = new Set<Fiber.Fiber<any, any>>()
  private dispatcherFiber: Fiber.Fiber<void> | undefined = undefined

  /** Owned fibers still running. */
  get size(): number {
    return this.owned.size
  }

  get dispatcher(): Fiber.Fiber<void> | undefined {
    return this.dispatcherFiber
  }

  get serviceCount(): number {
    return this.services.size
  }

  get abandonedFibers(): ReadonlySet<Fiber.Fiber<any, any>> {
    return this.abandoned
  }

  addDispatcher(fiber: Fiber.Fiber<void>): void {
    this.dispatcherFiber = fiber
    this.own(fiber)
  }

  addService(fiber: Fiber.Fiber<any, any>): void {
    this.services.add(fiber)
    this.own(fiber)
  }

  private own(fiber: Fiber.Fiber<any, any>): void {
    this.owned.add(fiber)
    fiber.addObserver(() => {
      this.owned.delete(fiber)
      this.services.delete(fiber)
    })
  }

  /** An attempt's fiber would not stop before the finalizer deadline: given up. */
  abandon(fiber: Fiber.Fiber<any, any>): void {
    this.abandoned.add(fiber)
  }

  /** The services still running (shutdown interrupts them). */
  serviceFibers(): Array<Fiber.Fiber<any, any>> {
    return Array.from(this.services)
  }

  /** Owned fibers that have not ended, with `extra` (the running attempts): what I5 checks. */
  live(extra: Array<Fiber.Fiber<any, any>>): Array<Fiber.Fiber<any, any>> {
    const out = Array.from(this.owned)
    for (const fiber of extra) out.push(fiber)
    return out.filter((fiber) => fiber.pollUnsafe() === undefined)
  }

  /** Interrupts the services and waits for them to stop, at most `timeout` ms. */
  stopServices(timeout: number): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.services.size === 0) return Effect.void
      const services = Array.from(this.services)
      for (const fiber of services) fiber.interruptUnsafe()
      return Effect.asVoid(Effect.timeoutOption(
        Effect.callback<void>((resume) => {
          let left = services.length
          for (const fiber of services) {
            fiber.addObserver(() => {
              if (--left === 0) resume(Effect.void)
            })
          }
        }),
        timeout
      ))
    })
  }
}

/** The steps of the engine's cycle the dispatcher's program drives. */
export interface Cycle {
  /** One admission pass: fires due timers and starts every task that may start. */
  readonly pass: Effect.Effect<void>
  /** Nothing queued, waiting or holding a slot. */
  isIdle(): boolean
  /** Some attempt still holds its slot (its fiber has not stopped). */
  holdsSlots(): boolean
  /** Shutdown, step 1: every queued and pending task gets an interruption, every running one is interrupted. */
  cancel(): void
  /** Shutdown, step 2, after the finalizer deadline: what would not stop is given up, and its slot freed. */
  abandon(): void
  /** Shutdown, last step: nothing more will be delivered. */
  readonly close: Effect.Effect<void>
}

export class Dispatcher {
  /** Every timer wakes the dispatcher when it becomes the earliest, wherever it was set. */
  readonly timers = new Timers(() => this.wake())
  /** The shutdown asked for, once asked: the program leaves its loop for the shutdown protocol. */
  private request: ShutdownRequest | undefined = undefined
  /** A wake-up came while the dispatcher was not waiting: its next wait returns at once. */
  // Stryker disable next-line BooleanLiteral: a signal at start costs one empty admission pass
  private signalled = false
  /** Resumes the dispatcher while it waits for a signal. */
  private resume: ((effect: Effect.Effect<void>) => void) | undefined = undefined

  private readonly clock: Clock.Clock
  private readonly liveClock: boolean
  private readonly fibers: FiberRegistry
  /** Milliseconds shutdown waits for interrupted fibers (and their finalizers) before abandoning them. */
  private readonly finalizerTimeout: number

  constructor(clock: Clock.Clock, liveClock: boolean, finalizerTimeout: number, fibers: FiberRegistry) {
    this.clock = clock
    this.liveClock = liveClock
    this.finalizerTimeout = finalizerTimeout
    this.fibers = fibers
  }

  // Stryker disable next-line BlockStatement: read only once the dispatcher is gone, where a repeated request has no reader
  get requested(): boolean {
    return this.request !== undefined
  }

  /** Takes a shutdown request; true when it is the first. A cancel cuts a drain short; a drain never softens a cancel. */
  ask(request: ShutdownRequest): boolean {
    if (this.request !== undefined) {
      if (request.mode === "cancel") {
        this.request = request
        this.wake()
      }
      return false
    }
    this.request = request
    return true
  }

  /** Wakes the dispatcher on the next scheduler tick (batching wake-ups, never re-entering it). */
  wake(): void {
    const resume = this.resume
    if (resume !== undefined) {
      this.resume = undefined
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
    this.resume = resume
    return Effect.sync(() => {
      if (this.resume === resume) this.resume = undefined
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
    // Stryker disable next-line ConditionalExpression: racing an endless sleep waits for the signal all the same
    if (until === Number.POSITIVE_INFINITY) return this.waitSignal
    const remaining = until - nowMillis(this.clock)
    // Stryker disable next-line ConditionalExpression,EqualityOperator: a sleep of zero or less returns at once as well
    if (remaining <= 0) return Effect.void
    if (!this.liveClock) return Effect.raceFirst(this.waitSignal, Effect.sleep(Math.ceil(remaining)))
    if (remaining > 2) return Effect.raceFirst(this.waitSignal, Effect.sleep(Math.floor(remaining - 1)))
    return Effect.yieldNow
  }

  /** The dispatcher fiber's program: start tasks as slots free up, until shutdown is requested; then shut down. */
  run(cycle: Cycle): Effect.Effect<void> {
    return Effect.gen({ self: this }, function*() {
      while (this.request === undefined) {
        yield* cycle.pass
        // Stryker disable next-line ConditionalExpression: a request always comes with a signal, so the next wait returns at once and the loop ends
        if (this.request !== undefined) break
        yield* this.waitUntil(this.timers.next)
      }
      yield* this.shutdown(cycle)
    })
  }

  private shutdown(cycle: Cycle): Effect.Effect<void> {
    return Effect.gen({ self: this }, function*() {
      // Drain: keep starting accepted work until everything is done, the grace period ends, or cancel is asked.
      const graceEnd = nowMillis(this.clock) + this.request!.grace
      while (!cycle.isIdle() && this.request!.mode === "drain") {
        yield* cycle.pass
        if (cycle.isIdle() || nowMillis(this.clock) >= graceEnd) break
        yield* this.waitUntil(Math.min(graceEnd, this.timers.next))
      }
      // Cancel: every queued and pending task gets an interruption, every running one is interrupted (I8).
      cycle.cancel()
      const finalizerEnd = nowMillis(this.clock) + this.finalizerTimeout
      while (cycle.holdsSlots() && nowMillis(this.clock) < finalizerEnd) {
        yield* this.waitUntil(finalizerEnd)
      }
      cycle.abandon()
      // Services live as long as the executor: stop them last, bounded like any finalizer.
      yield* this.fibers.stopServices(this.finalizerTimeout)
      yield* cycle.close
    })
  }
}
