/** What `main.ts` asks a worker to measure, and what it gets back. */
import type { Work } from "./adapter.ts"

export type Scenario =
  | "overhead"
  | "overhead-fork"
  | "promise"
  | "latency"
  | "rate"
  | "memory"
  | "containment"
  | "scale"

export interface Job {
  readonly scenario: Scenario
  readonly library: string
  /** The task body (see adapter.ts). */
  readonly work: Work
  /** Tasks in the measured run. */
  readonly n: number
  readonly concurrency: number
  /** Tasks in each warm-up run (timed scenarios). */
  readonly warmup: number
  /** Warm-up runs before the measured ones (timed scenarios). */
  readonly warmupRuns: number
  /** Measured runs in the process (timed scenarios); the sample is their mean. */
  readonly inner: number
  /** Rate scenario: starts allowed per window. */
  readonly limit?: number | undefined
  readonly windowMs?: number | undefined
  /** Where the worker writes its sample (JSON). */
  readonly out: string
}

export interface Sample {
  /**
   * The scenario's figure: ns per task (overhead, promise, containment, scale), wall ms (latency), heap bytes per
   * queued task (memory), starts per second (rate).
   */
  readonly value: number
  /** Wall time of the measured run, ms. */
  readonly ms: number
  /** CPU time (user + system) of the measured run, ms. */
  readonly cpuMs: number
  /** Outcomes delivered (containment), tasks queued (memory), tasks started (rate). */
  readonly outcomes: number
  readonly failures: number
  /** Rate: the most starts in any window of `windowMs`. */
  readonly maxInWindow?: number | undefined
  /** The measured run's bounds on the monotonic clock, µs (to cut a `--cpu-prof` profile down to it). */
  readonly windowUs?: readonly [number, number] | undefined
  /** Rate: how many windows (one opening at each start) held more than the limit. */
  readonly windowsOver?: number | undefined
  /** Rate: the same with windows 1 ms shorter, the granularity of the `Date.now()` clocks limiters use. */
  readonly windowsOverTolerant?: number | undefined
}
