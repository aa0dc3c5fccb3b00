/**
 * The sweep of idle per-key state: rate-limit states in the memory store and per-key metric series are
 * dropped once their key is idle (a state can only be dropped once its window has passed).
 *
 * Invariant: one sweep timer at most; it is set when a task with a key finishes and none is due, and set
 * again after a sweep only while something is left, so an idle executor holds no timer.
 */
import type * as Clock from "effect/Clock"
import type { Config } from "./config.ts"
import { nowMillis, type Timers } from "./timers.ts"

/**
 * How often idle per-key state is swept: the longest window of the executor's limits, between 1 second and
 * 1 minute (a state can only be dropped once its window has passed; sweeping more often finds nothing more).
 */
const sweepPeriod = (config: Config): number => {
  let window = 1000
  for (const limit of config.limits) window = Math.max(window, limit.window)
  return Math.min(window, 60_000)
}

export class Sweeper {
  /** When the next sweep is due; undefined while none is scheduled. */
  private dueAt: number | undefined = undefined

  private readonly config: Config
  private readonly clock: Clock.Clock
  private readonly timers: Timers
  /** Whether the executor is still open: a closed one sweeps no more. */
  private readonly isOpen: () => boolean

  constructor(config: Config, clock: Clock.Clock, timers: Timers, isOpen: () => boolean) {
    this.config = config
    this.clock = clock
    this.timers = timers
    this.isOpen = isOpen
  }

  /** A task with a key finished: some per-key state may become idle. */
  finished(): void {
    if (this.dueAt === undefined) this.schedule()
  }

  private schedule(): void {
    if (!this.isOpen()) return
    this.dueAt = nowMillis(this.clock) + sweepPeriod(this.config)
    this.timers.add(this.dueAt, this.sweep)
  }

  /** Fired by the dispatcher (inside a transition): drops idle keys' state, then sweeps again if some is left. */
  private readonly sweep = (): void => {
    this.dueAt = undefined
    const left = (this.config.store.memory?.sweep(nowMillis(this.clock)) ?? 0) +
      (this.config.instruments?.sweep() ?? 0)
    if (left > 0) this.schedule()
  }
}
