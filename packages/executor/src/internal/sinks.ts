/**
 * Where outcomes go: the executor-wide Pile (unless it was turned off) and the sinks of the batches in flight.
 *
 * Invariant (I14): once shutdown is asked for, no sink bounds its buffer, so a full buffer nobody reads never
 * keeps a slot through a shutdown.
 */
import type { Sink } from "./task.ts"

export class Sinks {
  /** The executor-wide Pile, unless it was turned off. */
  readonly pile: Sink | undefined
  /** The sinks of the batches in flight (a batch adds its own when it starts and removes it when it ends). */
  private readonly batches = new Set<Sink>()

  constructor(pile: Sink | undefined) {
    this.pile = pile
  }

  add(sink: Sink): void {
    this.batches.add(sink)
  }

  remove(sink: Sink): void {
    this.batches.delete(sink)
  }

  /** Shutdown: every sink stops bounding. */
  unbound(): void {
    this.pile?.unbound()
    for (const sink of this.batches) sink.unbound()
  }
}
