/**
 * What the suite runs: one row per (scenario, library, size), with its repetitions and warm-up.
 */
import { library as libraryOf, type Work } from "./adapter.ts"
import type { Job, Sample, Scenario } from "./model.ts"

/** The medians of a row's repetitions: a sample's figures, without its profiling window. */
export type Median = Omit<Sample, "windowUs">

export interface Row {
  readonly scenario: Scenario
  readonly library: string
  readonly label: string
  readonly job: Omit<Job, "out">
  reps: number
  /** `skipped`: the library has no such feature; `pending`: not implemented yet; `error`: a run failed. */
  status: "ok" | "error" | "skipped" | "pending"
  note?: string | undefined
  readonly samples: Array<Sample>
  median?: Median | undefined
  /** Wall time spent in this row's worker processes (start-up and warm-up included), seconds. */
  seconds: number
  /** Latency: the ideal wall time, ceil(n / concurrency) × 2 ms. */
  readonly ideal?: number | undefined
  /** A `--baseline` row: the worker of that other checkout runs it (its executor, this harness's job). */
  readonly worker?: string | undefined
}

/**
 * `--baseline DIR`: every Pile row again, run by the worker of the checkout in DIR (with its own install), and
 * labelled "(baseline)". Its repetitions are interleaved with this tree's, so both versions are measured in one
 * run against the same peers. DIR should hold this tree's `packages/bench` (only the executor compared).
 */
export const withBaseline = (rows: ReadonlyArray<Row>, worker: string): Array<Row> =>
  rows.flatMap((row) =>
    row.library.startsWith("pile")
      ? [row, {
        ...row,
        library: `${row.library}@baseline`,
        label: `${row.label} (baseline)`,
        samples: [],
        worker
      }]
      : [row]
  )

/**
 * Bottleneck's submit path waits on `setTimeout(0)` (its datastore "yield loop") several times per job,
 * serially, so every job costs ~2.5 ms of wall time whatever the concurrency (measured flat from 500 to 20,000
 * jobs). At 100,000 tasks one run would take over 4 minutes: it runs at this reduced size instead.
 */
export const BOTTLENECK_N = 500
export const BOTTLENECK_MEMORY_N = 1_000

interface Spec {
  readonly scenario: Scenario
  readonly libraries: ReadonlyArray<string>
  readonly work: Work
  readonly sizes: ReadonlyArray<number>
  readonly concurrency: number
  readonly reps: number
  readonly warmup: number
  readonly warmupRuns: number
  readonly limit?: number | undefined
  readonly windowMs?: number | undefined
}

const promiseLibraries = ["pool", "p-limit", "p-queue", "bottleneck"]
const effectLibraries = ["effect-foreach", "effect-stream", "pile-run", "pile-submit"]

/**
 * The suite. Budget: under 5 minutes on 2 idle cores. Timed scenarios get 5 repetitions; the rate, memory and
 * scale scenarios (seconds per run, and steady figures) get 3.
 */
const specs = (quick: boolean): ReadonlyArray<Spec> => {
  const reps = quick ? 1 : 5
  const fewer = quick ? 1 : 3
  const big = quick ? 20_000 : 100_000
  const warm = quick ? { warmup: 5_000, warmupRuns: 1 } : { warmup: 20_000, warmupRuns: 2 }
  return [
    {
      scenario: "overhead",
      libraries: [...promiseLibraries, "effect-foreach", "effect-stream", "pile-run", "pile-run-bare", "pile-submit"],
      work: "instant",
      sizes: [big],
      concurrency: 64,
      reps,
      ...warm
    },
    {
      scenario: "overhead-fork",
      libraries: ["effect-foreach", "effect-stream", "pile-run"],
      work: "sync",
      sizes: [big],
      concurrency: 64,
      reps,
      ...warm
    },
    {
      // What users hand the executor: promise-returning functions (Effect.tryPromise), run as a batch or
      // submitted one by one (as `queue.add`), next to the promise libraries and Effect.forEach.
      scenario: "promise",
      libraries: ["pool", "p-limit", "p-queue", "effect-foreach", "pile-run", "pile-run-bare", "pile-submit"],
      work: "promise",
      sizes: [big],
      concurrency: 64,
      reps,
      ...warm
    },
    {
      scenario: "latency",
      libraries: [...promiseLibraries, ...effectLibraries],
      work: "sleep",
      sizes: [5_000],
      concurrency: 256,
      reps,
      warmup: 5_000,
      warmupRuns: quick ? 1 : 2
    },
    {
      scenario: "rate",
      libraries: [
        "pool",
        "p-limit",
        "p-queue",
        "p-queue-strict",
        "bottleneck",
        "bottleneck-mintime",
        "effect-foreach",
        "effect-stream",
        "pile-run",
        "pile-run-gcra"
      ],
      work: "instant",
      sizes: [quick ? 400 : 600],
      concurrency: 256,
      reps: fewer,
      warmup: 0,
      warmupRuns: 0,
      limit: 200,
      windowMs: 1_000
    },
    {
      scenario: "memory",
      libraries: ["pool", "p-limit", "p-queue", "bottleneck", "pile-run", "pile-submit"],
      work: "instant",
      sizes: [quick ? 100_000 : 1_000_000],
      concurrency: 1,
      reps: fewer,
      warmup: 1_000,
      warmupRuns: 1
    },
    {
      scenario: "containment",
      libraries: [...promiseLibraries, ...effectLibraries],
      work: "fail10",
      sizes: [big],
      concurrency: 64,
      reps,
      ...warm
    },
    {
      scenario: "scale",
      libraries: ["pile-run", "effect-foreach", "effect-foreach:sync"],
      work: "instant",
      // The 100,000 figures come from the overhead rows (the same job): the table borrows them.
      sizes: quick ? [10_000, 100_000] : [10_000, 1_000_000],
      concurrency: 64,
      reps: fewer,
      ...warm
    }
  ]
}

const int = (x: number): string => x.toLocaleString("en-US")

/** Every row of the suite, in the order the tables show them. */
export const plan = (quick: boolean): Array<Row> => {
  const rows: Array<Row> = []
  for (const spec of specs(quick)) {
    for (const entry of spec.libraries) {
      // "library:work" runs a library with another task body than the scenario's (a reference row).
      const [library, variant] = entry.split(":") as [string, Work | undefined]
      const lib = libraryOf(library)
      const work = variant ?? spec.work
      const label = variant === "sync" ? `${lib.label} (Effect.sync task)` : lib.label
      for (const size of spec.sizes) {
        const isBottleneck = library === "bottleneck" && spec.scenario !== "rate"
        const n = isBottleneck
          ? Math.min(size, spec.scenario === "memory" ? BOTTLENECK_MEMORY_N : quick ? 100 : BOTTLENECK_N)
          : size
        let status: Row["status"] = "ok"
        let note: string | undefined = undefined
        if (spec.scenario === "rate" && lib.rate !== true) {
          note = lib.rate
          status = note.startsWith("pending") ? "pending" : "skipped"
        }
        if (isBottleneck) note = `n = ${int(n)}: ~2.5 ms per job, see methodology`
        rows.push({
          scenario: spec.scenario,
          library,
          label,
          job: {
            scenario: spec.scenario,
            library,
            work,
            n,
            concurrency: spec.concurrency,
            warmup: isBottleneck ? Math.min(50, spec.warmup) : spec.warmup,
            warmupRuns: isBottleneck ? Math.min(1, spec.warmupRuns) : spec.warmupRuns,
            // Timed runs per process (their mean is the sample): two, more for short runs (at least ~200,000 tasks
            // timed), one for a million tasks (seconds long).
            inner: isBottleneck || spec.scenario === "memory" || spec.scenario === "rate" || n >= 1_000_000
              ? 1
              : spec.scenario === "latency"
              ? 2
              : Math.max(2, Math.ceil(200_000 / n)),
            limit: spec.limit,
            windowMs: spec.windowMs
          },
          reps: spec.reps,
          status,
          note,
          samples: [],
          seconds: 0,
          ideal: spec.scenario === "latency" ? Math.ceil(n / spec.concurrency) * 2 : undefined
        })
      }
    }
  }
  return rows
}
