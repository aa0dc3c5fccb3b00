/**
 * The buffer between finished tasks and a Pile's consumer.
 *
 * A bounded buffer pushes back: when it is full, a finished task's delivery waits in `blocked` and keeps its
 * concurrency slot (the engine's `release` is called only once the outcome is in the buffer), so a slow
 * consumer slows the executor down instead of growing memory. Shutdown calls `unbound`, which lifts the bound
 * and releases every blocked delivery: the consumer side is part of the shutdown protocol, and an absent
 * consumer can never deadlock it (invariant I14).
 *
 * A buffer made `untilRead` (the executor-wide Pile's default) keeps nothing until its first reader starts:
 * outcomes nobody has asked for are counted and dropped at once (their handles still deliver them), so an
 * executor used through handles alone holds no outcome (docs/decisions/0005-pile-keeps-outcomes-once-read.md).
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Pull from "effect/Pull"

interface Blocked<O> {
  readonly outcome: O
  readonly release: () => void
}

type Wake = () => void

/**
 * The engine's transitions (its outbox): a blocked delivery's `release` is a transition of its own, and
 * `refill` runs all of its releases inside one.
 */
export interface Transitions {
  begin(): void
  end(): void
}

/**
 * The capacity of a buffer without a bound (and the most a pull takes). A small integer, not Infinity: V8 keeps a
 * field that only ever holds small integers untagged, and the first comparison of a length with a float
 * deoptimizes the code optimized for bounded buffers (every batch's buffer is unbounded once it closes). 2^30
 * outcomes would take tens of GiB: never reached.
 */
export const unbounded = 2 ** 30

/** Outcomes buffered for a running reader past which producers give it a turn (`behind`). */
export const paceBound = 1024

export class OutcomeBuffer<O, E = never> {
  /** Buffered outcomes are items[itemsHead..]. Invariant: their count <= capacity, except after `unbound`. */
  private items: Array<O> = []
  private itemsHead = 0
  private blocked: Array<Blocked<O>> = []
  private blockedHead = 0
  private consumers: Array<Wake> = []
  /** Set once no outcome will arrive any more: the pull fails with it after the buffer is drained. */
  private end: Exit.Exit<never, E | Cause.Done> | undefined = undefined
  /** Outcomes accepted into the buffer so far. */
  accepted = 0

  private capacity: number
  /** True until a reader starts (`attach`), for an `untilRead` buffer: offers are counted and dropped. */
  private unread: boolean

  /** The engine's transitions, when the releases are the engine's (a test's buffer has none). */
  private readonly transitions: Transitions | undefined

  constructor(capacity: number, untilRead = false, transitions?: Transitions) {
    this.capacity = Math.min(capacity, unbounded)
    this.unread = untilRead
    this.transitions = transitions
  }

  /** Readers running now (streams started and not ended). */
  private readers = 0

  /** A reader is on its way (its stream was made): outcomes are kept from now on. */
  keep(): void {
    this.unread = false
  }

  /** A reader started: from now on every outcome is kept for it (or for the readers after it). */
  attach(): void {
    this.unread = false
    this.readers++
  }

  /** A reader ended. */
  detach(): void {
    this.readers--
  }

  /**
   * A reader is running but `paceBound` outcomes or more wait for it: producers should give it a turn (a
   * reader taking one outcome per pull does more work per outcome than a producer that only submits).
   */
  get behind(): boolean {
    return this.readers > 0 && this.items.length - this.itemsHead >= paceBound
  }

  /** Outcomes buffered plus deliveries waiting for space. */
  get size(): number {
    return this.items.length - this.itemsHead + this.blocked.length - this.blockedHead
  }

  /**
   * Offers an outcome. Returns true when it is in the buffer; false when the buffer is full, in which case the
   * delivery waits and `release` is called once the outcome enters the buffer.
   */
  offer(outcome: O, release: () => void): boolean {
    if (this.discarding || this.unread) {
      this.accepted++
      return true
    }
    if (this.items.length - this.itemsHead < this.capacity && this.blockedHead === this.blocked.length) {
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
    this.capacity = unbounded
    this.refill()
  }

  /**
   * Nobody will read this buffer any more (a batch whose consumer left): what it holds is dropped, blocked
   * deliveries are released, and every later outcome is accepted and dropped at once, so no finished task
   * keeps its slot waiting for a reader that is gone (I14).
   */
  discard(): void {
    this.discarding = true
    this.unbound()
    this.items = []
    this.itemsHead = 0
  }

  private discarding = false

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
  readonly pull: Pull.Pull<ReadonlyArray<O>, E> = this.puller(unbounded)

  /**
   * Takes one buffered outcome at a time. For a buffer read by several streams in turn (the executor-wide
   * Pile): a stream stopped by `Stream.take(n)` drops the rest of the chunk it pulled, so a reader that takes
   * part of the Pile must not pull more than it keeps.
   */
  readonly pullOne: Pull.Pull<ReadonlyArray<O>, E> = this.puller(1)

  private puller(max: number): Pull.Pull<ReadonlyArray<O>, E> {
    const pull: Pull.Pull<ReadonlyArray<O>, E> = Effect.callback<ReadonlyArray<O>, E | Cause.Done>((resume) => {
      const ready = this.tryPull(max)
      if (ready !== undefined) return resume(ready)
      const consumer: Wake = () => resume(Effect.andThen(Effect.yieldNow, pull))
      this.consumers.push(consumer)
      return Effect.sync(() => {
        const i = this.consumers.indexOf(consumer)
        if (i >= 0) this.consumers.splice(i, 1)
      })
    }) as Pull.Pull<ReadonlyArray<O>, E>
    return pull
  }

  private tryPull(max: number): Exit.Exit<ReadonlyArray<O>, E | Cause.Done> | undefined {
    const available = this.items.length - this.itemsHead
    if (available > 0) {
      let out: Array<O>
      if (available <= max && this.itemsHead === 0) {
        out = this.items
        this.items = []
      } else {
        const end = this.itemsHead + Math.min(available, max)
        out = this.items.slice(this.itemsHead, end)
        this.itemsHead = end
        if (this.itemsHead === this.items.length) {
          this.items = []
          this.itemsHead = 0
        } else if (
          // Stryker disable next-line ConditionalExpression,EqualityOperator: the floor and the tie only change how often the rest is copied (both bounds are tested)
          this.itemsHead > 1024 && this.itemsHead * 2 > this.items.length
        ) {
          this.items = this.items.slice(this.itemsHead)
          this.itemsHead = 0
        }
      }
      this.refill()
      return Exit.succeed(out)
    }
    return this.end
  }

  private refill(): void {
    // One transition of the engine around every release: the tasks they let start are forked once all of
    // them are released, and the histograms' clock is read once for them all.
    const transitions = this.transitions
    transitions?.begin()
    let moved = 0
    while (this.blockedHead < this.blocked.length && this.items.length - this.itemsHead < this.capacity) {
      const next = this.blocked[this.blockedHead]!
      this.blocked[this.blockedHead++] = undefined as never
      this.items.push(next.outcome)
      this.accepted++
      moved++
      next.release()
    }
    if (moved > 0) {
      // Drop the entered prefix once it is half the array (amortized O(1) per delivery): a consumer that stays
      // behind keeps some deliveries blocked for good, and the array must not grow with every one that passed.
      if (this.blockedHead * 2 >= this.blocked.length) {
        this.blocked = this.blocked.slice(this.blockedHead)
        this.blockedHead = 0
      }
      this.wakeConsumers()
      this.onAccepted()
    }
    transitions?.end()
  }

  private wakeConsumers(): void {
    // Stryker disable next-line ConditionalExpression: without it an empty list is swapped for a new empty one
    if (this.consumers.length === 0) return
    const consumers = this.consumers
    this.consumers = []
    // Each consumer pulls again on the next scheduler tick: it never runs inside the engine's bookkeeping,
    // and outcomes finishing in the same tick are pulled as one chunk.
    for (const wake of consumers) wake()
  }
}
