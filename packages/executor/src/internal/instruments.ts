/**
 * The executor's Effect metrics, read from its own ledger when they are scraped.
 *
 * The engine counts everything in plain numbers (no allocation on the hot path) and registers each series in
 * Effect's `MetricRegistry` with `Metric.registerUnsafe`, whose `get` computes the state on demand. So a
 * snapshot, a Prometheus scrape or an OTLP export always sees exactly the ledger (invariant I20), and a task
 * costs a few integer increments, not a registry update per event. The series are removed when the executor's
 * scope closes.
 *
 * Per-key series are opt-in (`metrics: { keys: n }`) and bounded: at most n keys have their own series at a
 * time, the others count under `key="other"`, and the series of a key idle for a whole sweep period are
 * removed, their counts added to `other` (so the per-key series always sum to the executor's totals).
 */
import type * as Context from "effect/Context"
import * as Metric from "effect/Metric"
import * as Outcome from "../Outcome.ts"

export const secondsBoundaries = Metric.exponentialBoundaries({ start: 0.001, factor: 2, count: 18 })

/**
 * The bucket of a duration of `millis` ms (an integer, as the engine's clock readings are): the first i with
 * `millis / 1000 <= secondsBoundaries[i]` (1 ms × 2^i; the last boundary is Infinity). Found from the bit length
 * of `millis - 1` instead of a scan of the boundaries: every task records three durations.
 */
export const bucketOf = (millis: number): number =>
  millis <= 1 ? 0 : Math.min(secondsBoundaries.length - 1, 32 - Math.clz32(millis - 1))

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
  /** Counts per bucket (a plain array of small integers: cheaper to make than a typed array, three per executor). */
  private readonly values: Array<number> = secondsBoundaries.map(() => 0)
  private count = 0
  private sum = 0
  private min = Number.MAX_VALUE
  private max = -Number.MAX_VALUE

  observe(millis: number): void {
    const seconds = millis / 1000
    this.values[bucketOf(millis)]!++
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

/** The label of the series that counts the keys without their own series. */
export const otherKey = "other"

/** A key being counted: its live tasks, and where its counts go (its own series, or `other`'s). */
interface KeyEntry {
  /** Tasks of this key accepted and not yet finished. */
  live: number
  /** Its own series, or undefined when it counts under `other`. */
  readonly own: KeySeries | undefined
  /** True once a sweep found it with nothing live: the next sweep that still does drops it. */
  idle: boolean
}

/** A key's own series: its counts and their registrations. */
interface KeySeries {
  readonly counts: Counts
  readonly registrations: Array<Metric.Registration>
}

export class Instruments {
  private readonly context: Context.Context<never>
  private readonly executor: string
  private readonly all = new Counts()
  /** Most keys with their own series at once; 0: no per-key series (the default). */
  private readonly keyLimit: number
  /**
   * Keys being counted. Invariant: an entry exists only while its key has live tasks or was live within the
   * last sweep period, and at most `keyLimit` entries have their own series.
   */
  private readonly keys = new Map<string, KeyEntry>()
  private ownSeries = 0
  /** The `other` series, made when a key first finds no room. */
  private other: Counts | undefined = undefined
  private readonly histograms = { queueWait: new Histogram(), rateWait: new Histogram(), runTime: new Histogram() }
  private readonly registrations: Array<Metric.Registration> = []

  constructor(executor: string, context: Context.Context<never>, gauges: Gauges, keyLimit = 0) {
    this.context = context
    this.executor = executor
    this.keyLimit = keyLimit
    const attributes = { executor }
    this.registerCounts(this.all, attributes, this.registrations)
    this.register(metrics.queued, attributes, () => ({ value: gauges.queued() }), this.registrations)
    this.register(metrics.waiting, attributes, () => ({ value: gauges.waiting() }), this.registrations)
    this.register(metrics.running, attributes, () => ({ value: gauges.running() }), this.registrations)
    this.register(metrics.queueWait, attributes, () => this.histograms.queueWait.state(), this.registrations)
    this.register(metrics.rateWait, attributes, () => this.histograms.rateWait.state(), this.registrations)
    this.register(metrics.runTime, attributes, () => this.histograms.runTime.state(), this.registrations)
  }

  private register<State>(
    metric: Metric.Metric<any, State>,
    attributes: Record<string, string>,
    get: () => State,
    into: Array<Metric.Registration>
  ) {
    into.push(
      Metric.registerUnsafe(Metric.withAttributes(metric, attributes), this.context, {
        get,
        update: ignore,
        modify: ignore
      })
    )
  }

  private registerCounts(counts: Counts, attributes: Record<string, string>, into: Array<Metric.Registration>): void {
    this.register(metrics.submitted, attributes, count(() => counts.submitted), into)
    this.register(metrics.rejected, attributes, count(() => counts.rejected), into)
    this.register(metrics.attempts, attributes, count(() => counts.attempts), into)
    this.register(metrics.retries, attributes, count(() => counts.retries), into)
    for (const kind of Outcome.kinds) {
      this.register(metrics.outcomes, { ...attributes, outcome: kind }, count(() => counts.outcomes[kind]), into)
    }
  }

  /** Keys counted now (live or idle for less than a sweep period); for tests. */
  get keysCounted(): number {
    return this.keys.size
  }

  private entry(key: string): KeyEntry {
    let entry = this.keys.get(key)
    if (entry === undefined) {
      let own: KeySeries | undefined
      if (this.ownSeries < this.keyLimit) {
        own = { counts: new Counts(), registrations: [] }
        this.registerCounts(own.counts, { executor: this.executor, key }, own.registrations)
        this.ownSeries++
      }
      entry = { live: 0, own, idle: false }
      this.keys.set(key, entry)
    }
    return entry
  }

  private otherCounts(): Counts {
    if (this.other === undefined) {
      this.other = new Counts()
      this.registerCounts(this.other, { executor: this.executor, key: otherKey }, this.registrations)
    }
    return this.other
  }

  private series(key: string | undefined): Counts | undefined {
    if (key === undefined || this.keyLimit === 0) return undefined
    const entry = this.entry(key)
    entry.idle = false
    return entry.own?.counts ?? this.otherCounts()
  }

  submitted(key: string | undefined): void {
    this.all.submitted++
    const s = this.series(key)
    if (s !== undefined) {
      s.submitted++
      this.keys.get(key!)!.live++
    }
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
    if (s !== undefined) {
      s.outcomes[kind]++
      this.keys.get(key!)!.live--
    }
  }

  /**
   * Drops the keys with nothing live since the last sweep: a key's own series are removed from the registry
   * and its counts added to `other`, so the sums stay equal to the totals (I20). Returns the keys left.
   */
  sweep(): number {
    for (const [key, entry] of this.keys) {
      if (entry.live > 0) continue
      if (entry.own !== undefined && !entry.idle) {
        entry.idle = true // seen idle once: its last counts stay scrapeable for one more period
        continue
      }
      this.keys.delete(key)
      if (entry.own === undefined) continue
      const from = entry.own.counts
      const to = this.otherCounts()
      to.submitted += from.submitted
      to.rejected += from.rejected
      to.attempts += from.attempts
      to.retries += from.retries
      for (const kind of Outcome.kinds) to.outcomes[kind] += from.outcomes[kind]
      for (const registration of entry.own.registrations) registration.remove()
      this.ownSeries--
    }
    return this.keys.size
  }

  /** Records a duration in milliseconds: queue wait (0), rate wait (1) or an attempt's run time (2). */
  observe(histogram: 0 | 1 | 2, millis: number): void {
    const h = histogram === 0
      ? this.histograms.queueWait
      : histogram === 1
      ? this.histograms.rateWait
      : this.histograms.runTime
    h.observe(millis)
  }

  /** Removes every series from the registry (the executor's scope closed). */
  remove(): void {
    for (const registration of this.registrations) registration.remove()
    this.registrations.length = 0
    for (const entry of this.keys.values()) {
      for (const registration of entry.own?.registrations ?? []) registration.remove()
    }
    this.keys.clear()
    this.ownSeries = 0
  }
}
