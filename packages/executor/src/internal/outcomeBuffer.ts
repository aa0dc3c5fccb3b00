/**
 * The buffer between finished tasks and a Pile's consumer.
 *
 * A bounded buffer pushes back: when it is full, a finished task's delivery waits in `blocked` and keeps its
 * concurrency slot (the engine's `release` is called only once the outcome is in the buffer), so a slow
 * consumer slows the executor down instead of growing memory. Shutdown calls `unbound`, which lifts the bound
 * and releases every blocked delivery: the consumer side is part of the shutdown protocol, and an absent
 * consumer can never deadlock it (invariant I14).
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Pull from "effect/Pull"

interface Blocked<O> {
  readonly outcome: O
  readonly release: () => void
}

type Resume<O, E> = (effect: Effect.Effect<ReadonlyArray<O>, E | Cause.Done>) => void

export class OutcomeBuffer<O, E = never> {
  /** Invariant: items.length <= capacity, except after `unbound`. */
  private items: Array<O> = []
  private blocked: Array<Blocked<O>> = []
  private blockedHead = 0
  private consumers: Array<Resume<O, E>> = []
  /** Set once no outcome will arrive any more: the pull fails with it after the buffer is drained. */
  private end: Exit.Exit<never, E | Cause.Done> | undefined = undefined
  /** Outcomes accepted into the buffer so far. */
  accepted = 0

  private capacity: number

  constructor(capacity: number) {
    this.capacity = capacity
  }

  /** Outcomes buffered plus deliveries waiting for space. */
  get size(): number {
    return this.items.length + this.blocked.length - this.blockedHead
  }

  /**
   * Offers an outcome. Returns true when it is in the buffer; false when the buffer is full, in which case the
   * delivery waits and `release` is called once the outcome enters the buffer.
   */
  offer(outcome: O, release: () => void): boolean {
    if (this.items.length < this.capacity && this.blockedHead === this.blocked.length) {
      this.items.push(outcome)
      this.accepted++
      this.wakeConsumers()
      return true
    }
    this.blocked.push({ outcome, release })
    return false
  }

  /** Lifts the bound for good and moves every blocked delivery into the buffer. */
  unbound(): void {
    this.capacity = Number.POSITIVE_INFINITY
    this.refill()
  }

  /** No more outcomes will be offered: the Pile ends (or fails with `error`) once the buffer is drained. */
  close(error?: { readonly error: E }): void {
    if (this.closing) return
    this.closing = true
    this.unbound()
    this.end = error === undefined ? Exit.fail(Cause.Done()) : Exit.fail(error.error)
    this.wakeConsumers()
  }

  private closing = false

  get isClosed(): boolean {
    return this.closing
  }

  /** Called after outcomes entered the buffer from the blocked deliveries. */
  protected onAccepted(): void {}

  /** Takes every buffered outcome, waiting while there is none; fails with `Done` (or the close error) at the end. */
  readonly pull: Pull.Pull<ReadonlyArray<O>, E> = Effect.callback<ReadonlyArray<O>, E | Cause.Done>((resume) => {
    const ready = this.tryPull()
    if (ready !== undefined) return resume(ready)
    this.consumers.push(resume)
    return Effect.sync(() => {
      const i = this.consumers.indexOf(resume)
      if (i >= 0) this.consumers.splice(i, 1)
    })
  }) as Pull.Pull<ReadonlyArray<O>, E>

  private tryPull(): Exit.Exit<ReadonlyArray<O>, E | Cause.Done> | undefined {
    if (this.items.length > 0) {
      const out = this.items
      this.items = []
      this.refill()
      return Exit.succeed(out)
    }
    return this.end
  }

  private refill(): void {
    let moved = 0
    while (this.blockedHead < this.blocked.length && this.items.length < this.capacity) {
      const next = this.blocked[this.blockedHead]!
      this.blocked[this.blockedHead++] = undefined as never
      this.items.push(next.outcome)
      this.accepted++
      moved++
      next.release()
    }
    if (this.blockedHead === this.blocked.length) {
      this.blocked = []
      this.blockedHead = 0
    }
    if (moved > 0) {
      this.wakeConsumers()
      this.onAccepted()
    }
  }

  private wakeConsumers(): void {
    if (this.consumers.length === 0) return
    const consumers = this.consumers
    this.consumers = []
    // Resume on the next scheduler tick: the consumer never runs inside the engine's bookkeeping, and
    // outcomes finishing in the same tick are pulled as one chunk.
    for (const resume of consumers) resume(Effect.andThen(Effect.yieldNow, this.pull))
  }
}
