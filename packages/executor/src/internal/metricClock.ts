/**
 * The clock of the latency histograms (instrumentation only: nothing in the cycle reads it).
 *
 * On this machine a clock reading costs more than the rest of a task's bookkeeping, so it is read at most once
 * per entry into the engine (an outermost transition, with the wake-ups it delivers: a submit, a freed slot, an
 * attempt's end, a dispatcher pass) and once per batch feeder's burst: every reading inside is the one taken
 * when it was first needed, and an entry that records nothing reads no clock (an entry lasts well under the
 * histograms' first bucket, 1 ms). An attempt's end reads the clock afresh: a body that computes synchronously
 * runs inside the entry that started it, and its run time must include that work.
 */
import type * as Clock from "effect/Clock"

/** The ms from reading `earlier` to reading `later`, right across a wrap for spans under 2^31 ms (24 days). */
export const between = (earlier: number, later: number): number => (later - earlier) | 0

export class MetricClock {
  /**
   * The engine's creation time. Readings are ms since then as 32-bit integers, which V8 stores in the task
   * itself (any other number is a separate 16-byte box per queued task): they wrap every 2^32 ms, about 49
   * days, so spans are taken with `between`.
   */
  private readonly epoch: number
  /** The reading of the current entry or burst, valid while `read` is set. */
  private reading = 0
  private read = false
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

  /** Now, for a histogram: the reading of the current entry or burst, taken the first time it is needed. */
  now(): number {
    if (!this.read) {
      this.reading = (this.clock.currentTimeMillisUnsafe() - this.epoch) | 0
      this.read = true
    }
    return this.reading
  }

  /**
   * Now, read afresh (and kept for the rest of the entry): an attempt's end, whose run time must not be taken
   * from a reading made before its body ran (a body that computes synchronously runs inside the entry that
   * started it).
   */
  fresh(): number {
    this.reading = (this.clock.currentTimeMillisUnsafe() - this.epoch) | 0
    this.read = true
    return this.reading
  }

  /** An entry into the engine begins (the outbox's outermost transition): its reading is taken afresh. */
  enter(): void {
    if (!this.bursting) this.read = false
  }

  /** Time moved on inside an entry (it waited for an asynchronous store): the next reading is taken afresh. */
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
}
