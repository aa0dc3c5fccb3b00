/**
 * The executor's Effect metrics. The engine counts everything in its own ledger (plain numbers, no allocation
 * on the hot path); the dispatcher publishes the ledger to Effect's `MetricRegistry` after each of its steps
 * and at shutdown, so exporters (Prometheus, OTLP) see the same numbers as `stats` (invariant I20).
 */
import type * as Context from "effect/Context"
import * as Metric from "effect/Metric"
import type * as Outcome from "../Outcome.ts"

const seconds = Metric.exponentialBoundaries({ start: 0.001, factor: 2, count: 18 })

const outcomes = Metric.counter("pile_task_outcomes_total", {
  description: "Tasks finished, by outcome kind (success, failure, defect, interrupted, cancelled, timedOut, ...)",
  incremental: true
})
const submitted = Metric.counter("pile_tasks_submitted_total", {
  description: "Tasks accepted by the executor",
  incremental: true
})
const rejected = Metric.counter("pile_submissions_rejected_total", {
  description: "Submissions refused with an error (closed, queue full, cost over limit)",
  incremental: true
})
const attempts = Metric.counter("pile_task_attempts_total", {
  description: "Attempts started (a task's first run and each retry)",
  incremental: true
})
const retries = Metric.counter("pile_task_retries_total", { description: "Attempts retried", incremental: true })
const queued = Metric.gauge("pile_tasks_queued", { description: "Tasks in the queue" })
const waiting = Metric.gauge("pile_tasks_waiting", {
  description: "Tasks out of the queue waiting for a rate budget, a paused key or a retry delay"
})
const running = Metric.gauge("pile_tasks_running", { description: "Tasks whose attempt is running" })
const queueWait = Metric.histogram("pile_task_queue_wait_seconds", {
  description: "Time from acceptance to leaving the queue",
  boundaries: seconds
})
const rateWait = Metric.histogram("pile_task_rate_wait_seconds", {
  description: "Time from leaving the queue to the first attempt's start (rate budgets, paused keys, a slot)",
  boundaries: seconds
})
const runTime = Metric.histogram("pile_task_run_seconds", {
  description: "Duration of each attempt",
  boundaries: seconds
})

/** The names, for docs and tests. */
export const names = {
  outcomes: "pile_task_outcomes_total",
  submitted: "pile_tasks_submitted_total",
  rejected: "pile_submissions_rejected_total",
  attempts: "pile_task_attempts_total",
  retries: "pile_task_retries_total",
  queued: "pile_tasks_queued",
  waiting: "pile_tasks_waiting",
  running: "pile_tasks_running",
  queueWait: "pile_task_queue_wait_seconds",
  rateWait: "pile_task_rate_wait_seconds",
  runTime: "pile_task_run_seconds"
} as const

/** Counts of one series: the whole executor, or one key. */
class Series {
  submitted = 0
  rejected = 0
  attempts = 0
  retries = 0
  readonly outcomes = new Map<Outcome.Kind, number>()
  // What was published so far.
  private published = { submitted: 0, rejected: 0, attempts: 0, retries: 0, outcomes: new Map<Outcome.Kind, number>() }
  readonly metrics: {
    readonly submitted: Metric.Metric<number, unknown>
    readonly rejected: Metric.Metric<number, unknown>
    readonly attempts: Metric.Metric<number, unknown>
    readonly retries: Metric.Metric<number, unknown>
    readonly outcome: (kind: Outcome.Kind) => Metric.Metric<number, unknown>
  }

  constructor(attributes: Record<string, string>) {
    const byKind = new Map<Outcome.Kind, Metric.Metric<number, unknown>>()
    this.metrics = {
      submitted: Metric.withAttributes(submitted, attributes),
      rejected: Metric.withAttributes(rejected, attributes),
      attempts: Metric.withAttributes(attempts, attributes),
      retries: Metric.withAttributes(retries, attributes),
      outcome: (kind) => {
        let metric = byKind.get(kind)
        if (metric === undefined) {
          metric = Metric.withAttributes(outcomes, { ...attributes, outcome: kind })
          byKind.set(kind, metric)
        }
        return metric
      }
    }
  }

  publish(context: Context.Context<never>): void {
    const p = this.published
    if (this.submitted > p.submitted) this.metrics.submitted.updateUnsafe(this.submitted - p.submitted, context)
    if (this.rejected > p.rejected) this.metrics.rejected.updateUnsafe(this.rejected - p.rejected, context)
    if (this.attempts > p.attempts) this.metrics.attempts.updateUnsafe(this.attempts - p.attempts, context)
    if (this.retries > p.retries) this.metrics.retries.updateUnsafe(this.retries - p.retries, context)
    p.submitted = this.submitted
    p.rejected = this.rejected
    p.attempts = this.attempts
    p.retries = this.retries
    for (const [kind, count] of this.outcomes) {
      const before = p.outcomes.get(kind) ?? 0
      if (count > before) this.metrics.outcome(kind).updateUnsafe(count - before, context)
      p.outcomes.set(kind, count)
    }
  }
}

export class Instruments {
  private readonly context: Context.Context<never>
  private readonly attributes: Record<string, string>
  private readonly all: Series
  private readonly keys = new Map<string, Series>()
  private readonly gauges: {
    readonly queued: Metric.Metric<number, unknown>
    readonly waiting: Metric.Metric<number, unknown>
    readonly running: Metric.Metric<number, unknown>
  }
  private readonly histograms: {
    readonly queueWait: Metric.Metric<number, unknown>
    readonly rateWait: Metric.Metric<number, unknown>
    readonly runTime: Metric.Metric<number, unknown>
  }
  /** Observations waiting to be published, in seconds: [histogram index, value] pairs. */
  private observations: Array<number> = []

  constructor(executor: string, context: Context.Context<never>) {
    this.context = context
    this.attributes = { executor }
    this.all = new Series(this.attributes)
    this.gauges = {
      queued: Metric.withAttributes(queued, this.attributes),
      waiting: Metric.withAttributes(waiting, this.attributes),
      running: Metric.withAttributes(running, this.attributes)
    }
    this.histograms = {
      queueWait: Metric.withAttributes(queueWait, this.attributes),
      rateWait: Metric.withAttributes(rateWait, this.attributes),
      runTime: Metric.withAttributes(runTime, this.attributes)
    }
  }

  private series(key: string | undefined): Series | undefined {
    if (key === undefined) return undefined
    let series = this.keys.get(key)
    if (series === undefined) {
      series = new Series({ ...this.attributes, key })
      this.keys.set(key, series)
    }
    return series
  }

  submitted(key: string | undefined): void {
    this.all.submitted++
    const s = this.series(key)
    if (s !== undefined) s.submitted++
  }

  rejected(key: string | undefined): void {
    this.all.rejected++
    const s = this.series(key)
    if (s !== undefined) s.rejected++
  }

  started(key: string | undefined): void {
    this.all.attempts++
    const s = this.series(key)
    if (s !== undefined) s.attempts++
  }

  retried(key: string | undefined): void {
    this.all.retries++
    const s = this.series(key)
    if (s !== undefined) s.retries++
  }

  finished(key: string | undefined, kind: Outcome.Kind): void {
    this.all.outcomes.set(kind, (this.all.outcomes.get(kind) ?? 0) + 1)
    const s = this.series(key)
    if (s !== undefined) s.outcomes.set(kind, (s.outcomes.get(kind) ?? 0) + 1)
  }

  /** Buffers a duration (milliseconds) for histogram 0 (queue wait), 1 (rate wait) or 2 (run time). */
  observe(histogram: 0 | 1 | 2, millis: number): void {
    this.observations.push(histogram, millis / 1000)
  }

  /** Publishes everything counted since the last call, and the gauges' current values. */
  publish(state: { readonly queued: number; readonly waiting: number; readonly running: number }): void {
    const context = this.context
    this.all.publish(context)
    for (const series of this.keys.values()) series.publish(context)
    const observations = this.observations
    if (observations.length > 0) {
      this.observations = []
      const histograms = [this.histograms.queueWait, this.histograms.rateWait, this.histograms.runTime]
      for (let i = 0; i < observations.length; i += 2) {
        histograms[observations[i]!]!.updateUnsafe(observations[i + 1]!, context)
      }
    }
    this.gauges.queued.updateUnsafe(state.queued, context)
    this.gauges.waiting.updateUnsafe(state.waiting, context)
    this.gauges.running.updateUnsafe(state.running, context)
  }
}
