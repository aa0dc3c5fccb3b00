/**
 * The clock of the latency histograms (instrumentation only: nothing in the cycle reads it).
 *
 * On this machine a clock reading costs more than the rest of a task's bookkeeping, so inside an admission
 * pass or a batch feeder's burst every reading is the one taken when it was first needed (a pass lasts well
 * under the histograms' first bucket, 1 ms), and a pass that records nothing reads no clock.
 */
import type * as Clock from "effect/Clock"

export class MetricClock {
  /** The engine's creation time: readings are ms since then (small integers a task stores inline). */
  private readonly epoch: number
  /** The reading of the current pass or burst, valid while `read` is set. */
  private reading = 0
  private read = false
  /** Inside an admission pass (the engine's synchronous pump). */
  private pumping = false
  /** Inside a batch feeder's synchronous run of inputs; only when histograms are kept. */
  private bursting = false

  private readonly clock: Clock.Clock
  /** Whether histograms are kept (bursts are marked only then). */
  private readonly enabled: boolean

  constructor(clock: Clock.Clock, enabled: boolean) {
    this.clock = clock
    this.enabled = enabled
    this.epoch = clock.currentTimeMillisUnsafe()
  }

  /** Now, for a histogram: inside a pass or a burst, the reading of that pass or burst. */
  now(): number {
    return this.pumping || this.bursting ? this.pass() : this.millis()
  }

  /** The reading of the current pass, taken the first time it is needed. */
  pass(): number {
    if (!this.read) {
      this.reading = this.millis()
      this.read = true
    }
    return this.reading
  }

  /** A pass begins (its reading is taken afresh) or ends. */
  beginPass(): void {
    this.read = false
    this.pumping = true
  }

  endPass(): void {
    this.pumping = false
  }

  /** Time moved on inside a pass (it waited for an asynchronous store): the next reading is taken afresh. */
  stale(): void {
    this.read = false
  }

  /** A batch feeder starts or stops offering a synchronous run of inputs. */
  beginBurst(): void {
    if (!this.enabled) return
    this.read = false
    this.bursting = true
  }

  endBurst(): void {
    this.bursting = false
  }

  private millis(): number {
    return this.clock.currentTimeMillisUnsafe() - this.epoch
  }
}
