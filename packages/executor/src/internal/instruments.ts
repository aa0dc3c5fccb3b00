/**
 * The executor's Effect metrics, read from its own ledger when they are scraped.
 *
 * The engine counts everything in plain numbers (no allocation on the hot path) and registers each series in
 * Effect's `MetricRegistry` with `Metric.registerUnsafe`, whose `get` computes the state on demand. So a
 * snapshot, a Prometheus scrape or an OTLP export always sees exactly the ledger (invariant I20), and a task
 * costs a few integer increments, not a registry update per event. The series are removed when the executor's
 * scope closes.
 */
import type * as Context from "effect/Context"
import * as Metric from "effect/Metric"
import * as Outcome from "../Outcome.ts"

const secondsBoundaries = Metric.exponentialBoundaries({ start: 0.001, factor: 2, count: 18 })

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

const counter = (name: string, description: string) => Metric.counter(name, { description, incremental: true })

const metrics = {
  outcomes: counter(names.outcomes, "Tasks finished, by outcome kind (success, failure, defect, interrupted, ...)"),
  submitted: counter(names.submitted, "Tasks accepted by the executor"),
  rejected: counter(names.rejected, "Submissions refused with an error (closed, queue full, cost over limit)"),
  attempts: counter(names.attempts, "Attempts started (a task's first run and each retry)"),
  retries: counter(names.retries, "Attempts retried"),
  queued: Metric.gauge(names.queued, { description: "Tasks in the queue" }),
  waiting: Metric.gauge(names.waiting, {
    description: "Tasks out of the queue waiting for a rate budget, a paused key or a retry delay"
  }),
  running: Metric.gauge(names.running, { description: "Tasks whose attempt is running" }),
  queueWait: Metric.histogram(names.queueWait, {
    description: "Time from acceptance to leaving the queue",
    boundaries: secondsBoundaries
  }),
  rateWait: Metric.histogram(names.rateWait, {
    description: "Time from leaving the queue to the first attempt's start (rate budgets, paused keys, a slot)",
    boundaries: secondsBoundaries
  }),
  runTime: Metric.histogram(names.runTime, { description: "Duration of each attempt", boundaries: secondsBoundaries })
}

/** A histogram kept locally; its state is built only when read. */
class Histogram {
  private readonly values = new Uint32Array(secondsBoundaries.length + 1)
  private count = 0
  private sum = 0
  private min = Number.MAX_VALUE
  private max = -Number.MAX_VALUE

  observe(seconds: number): void {
    let i = 0
    while (i < secondsBoundaries.length && seconds > secondsBoundaries[i]!) i++
    this.values[i]!++
    this.count++
    this.sum += seconds
    if (seconds < this.min) this.min = seconds
    if (seconds > this.max) this.max = seconds
  }

  state(): Metric.HistogramState {
    let cumulated = 0
    const buckets = secondsBoundaries.map((boundary, i): [number, number] => {
      cumulated += this.values[i]!
      return [boundary, cumulated]
    })
    return { buckets, count: this.count, min: this.min, max: this.max, sum: this.sum }
  }
}

/** The counts of one series: the whole executor, or one key. */
class Counts {
  submitted = 0
  rejected = 0
  attempts = 0
  retries = 0
  readonly outcomes: Record<Outcome.Kind, number> = Object.fromEntries(Outcome.kinds.map((k) => [k, 0])) as Record<
    Outcome.Kind,
    number
  >
}

export interface Gauges {
  readonly queued: () => number
  readonly waiting: () => number
  readonly running: () => number
}

const ignore = (): void => {}

/** A counter's state, read when scraped. */
const count = (read: () => number) => () => ({ count: read(), incremental: true })

export class Instruments {
  private readonly context: Context.Context<never>
  private readonly executor: string
  private readonly all = new Counts()
  private readonly keys = new Map<string, Counts>()
  private readonly histograms = { queueWait: new Histogram(), rateWait: new Histogram(), runTime: new Histogram() }
  private readonly registrations: Array<Metric.Registration> = []

  constructor(executor: string, context: Context.Context<never>, gauges: Gauges) {
    this.context = context
    this.executor = executor
    const attributes = { executor }
    this.registerCounts(this.all, attributes)
    this.register(metrics.queued, attributes, () => ({ value: gauges.queued() }))
    this.register(metrics.waiting, attributes, () => ({ value: gauges.waiting() }))
    this.register(metrics.running, attributes, () => ({ value: gauges.running() }))
    this.register(metrics.queueWait, attributes, () => this.histograms.queueWait.state())
    this.register(metrics.rateWait, attributes, () => this.histograms.rateWait.state())
    this.register(metrics.runTime, attributes, () => this.histograms.runTime.state())
  }

  private register<State>(metric: Metric.Metric<any, State>, attributes: Record<string, string>, get: () => State) {
    this.registrations.push(
      Metric.registerUnsafe(Metric.withAttributes(metric, attributes), this.context, {
        get,
        update: ignore,
        modify: ignore
      })
    )
  }

  private registerCounts(counts: Counts, attributes: Record<string, string>): void {
    this.register(metrics.submitted, attributes, count(() => counts.submitted))
    this.register(metrics.rejected, attributes, count(() => counts.rejected))
    this.register(metrics.attempts, attributes, count(() => counts.attempts))
    this.register(metrics.retries, attributes, count(() => counts.retries))
    for (const kind of Outcome.kinds) {
      this.register(metrics.outcomes, { ...attributes, outcome: kind }, count(() => counts.outcomes[kind]))
    }
  }

  private series(key: string | undefined): Counts | undefined {
    if (key === undefined) return undefined
    let counts = this.keys.get(key)
    if (counts === undefined) {
      counts = new Counts()
      this.keys.set(key, counts)
      this.registerCounts(counts, { executor: this.executor, key })
    }
    return counts
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
    this.all.outcomes[kind]++
    const s = this.series(key)
    if (s !== undefined) s.outcomes[kind]++
  }

  /** Records a duration in milliseconds: queue wait (0), rate wait (1) or an attempt's run time (2). */
  observe(histogram: 0 | 1 | 2, millis: number): void {
    const h = histogram === 0
      ? this.histograms.queueWait
      : histogram === 1
      ? this.histograms.rateWait
      : this.histograms.runTime
    h.observe(millis / 1000)
  }

  /** Removes every series from the registry (the executor's scope closed). */
  remove(): void {
    for (const registration of this.registrations) registration.remove()
    this.registrations.length = 0
  }
}
