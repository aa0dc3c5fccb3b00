/**
 * A binary min-heap of timers for the dispatcher: deadlines, attempt timeouts, retry delays and rate-limit
 * wake-ups all wait here, so one fiber sleeps until the earliest of them instead of one fiber per timer.
 * Entries are never removed early: each `fire` checks that what it was set for still holds.
 */
import type * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"

/** Milliseconds on `clock`, with sub-millisecond precision when the clock has it: the timers' time unit. */
export const nowMillis = (clock: Clock.Clock): number => Number(clock.currentTimeNanosUnsafe()) / 1e6

/**
 * Waits until `clock` reads `at` (ms). Node's timers fire on a whole-millisecond clock, often a millisecond
 * late and sometimes early: on the live clock this sleeps until about a millisecond before `at`, then yields
 * to the event loop until the clock reaches it, so it never returns early and is late by a fraction of a
 * millisecond. On any other clock (`TestClock`) it sleeps until `at`.
 */
export const sleepUntil = (clock: Clock.Clock, at: number, liveClock: boolean): Effect.Effect<void> =>
  Effect.suspend(() => {
    const remaining = at - nowMillis(clock)
    if (remaining <= 0) return Effect.void
    const step = !liveClock
      ? Effect.sleep(Math.ceil(remaining))
      : remaining > 2
      ? Effect.sleep(Math.floor(remaining - 1))
      : Effect.yieldNow
    return Effect.andThen(step, sleepUntil(clock, at, liveClock))
  })

export interface Timer {
  readonly at: number
  readonly fire: () => void
  /** A timer set for a task is stale once the task has its outcome. */
  readonly owner: { readonly result: unknown } | undefined
}

export class Timers {
  private heap: Array<Timer> = []
  /** Called when a timer becomes the earliest: whoever sleeps until the earliest must look again. */
  private readonly onEarliest: () => void

  constructor(onEarliest: () => void) {
    this.onEarliest = onEarliest
  }
  /** Heap size after the last compaction: stale timers are dropped whenever the heap doubles. */
  private compactedAt = 1024

  get size(): number {
    return this.heap.length
  }

  /** The time of the earliest timer, or +Infinity. */
  get next(): number {
    return this.heap.length === 0 ? Number.POSITIVE_INFINITY : this.heap[0]!.at
  }

  add(at: number, fire: () => void, owner?: { readonly result: unknown }): void {
    if (this.heap.length >= 2 * this.compactedAt) this.compact()
    const heap = this.heap
    const earliest = heap.length === 0 || at < heap[0]!.at
    heap.push({ at, fire, owner })
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      // Stryker disable next-line EqualityOperator: equal times have no specified order (the heap is not stable)
      if (heap[parent]!.at <= heap[i]!.at) break
      ;[heap[parent], heap[i]] = [heap[i]!, heap[parent]!]
      i = parent
    }
    if (earliest) this.onEarliest()
  }

  /** Fires, in time order, every timer due at `now`. Returns how many fired. */
  fireDue(now: number): number {
    let fired = 0
    while (this.heap.length > 0 && this.heap[0]!.at <= now) {
      this.pop().fire()
      fired++
    }
    return fired
  }

  clear(): void {
    this.heap = []
  }

  /** Drops the timers of finished tasks (a long deadline must not keep a finished task alive). */
  private compact(): void {
    const live = this.heap.filter((timer) => timer.owner === undefined || timer.owner.result === undefined)
    live.sort((a, b) => a.at - b.at) // a sorted array is a valid heap
    this.heap = live
    this.compactedAt = Math.max(1024, live.length)
  }

  private pop(): Timer {
    const heap = this.heap
    const top = heap[0]!
    const last = heap.pop()!
    if (heap.length > 0) {
      heap[0] = last
      let i = 0
      while (true) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        // Stryker disable EqualityOperator: a tie between a node and a child leaves no order to keep either
        if (l < heap.length && heap[l]!.at < heap[m]!.at) m = l
        if (r < heap.length && heap[r]!.at < heap[m]!.at) m = r
        // Stryker restore EqualityOperator
        if (m === i) break
        ;[heap[m], heap[i]] = [heap[i]!, heap[m]!]
        i = m
      }
    }
    return top
  }
}
