/**
 * The common interface of the library adapters, so every scenario runs the same workload everywhere, and the
 * catalog of libraries. The adapters themselves live in `adapters-promise.ts`, `adapters-effect.ts` and
 * `adapters-pile.ts`, loaded on demand: a worker imports only its own library (importing `@pile/executor`
 * from source costs ~0.6 s, `effect/persistence` ~0.3 s, p-queue 7 ms).
 *
 * Workloads: `instant` (a task that finishes at once: `Promise.resolve()` / `Effect.void`), `sync` (the same
 * for promises; `Effect.sync(() => {})` for Effect, which unlike `Effect.void` is not an `Exit`, so that
 * `Effect.forEach` cannot skip forking a fiber for it), `sleep` (waits 2 ms: `setTimeout` /
 * `Effect.sleep("2 millis")`), `fail10` (every 10th task fails, the others finish at once), `promise` (a promise-returning function, as users
 * hand p-limit: `() => Promise.resolve()`; for Effect, `Effect.tryPromise` of it, built per task the way users
 * write it). Task bodies are
 * shared constants where the library allows it, so what is measured is the library's own cost per task, not
 * the cost of building the task.
 */
import type { Settled } from "./pool.ts"

export type Work = "instant" | "sync" | "sleep" | "fail10" | "promise"

/** A shared error: building an `Error` (and its stack) per failure would dwarf the libraries' own costs. */
export const boom = new Error("boom")

const ranges = new Map<number, ReadonlyArray<number>>()

/** The inputs 0..n-1, built once per size (outside the timed run: the warm-up builds them). Never mutated. */
export const range = (n: number): ReadonlyArray<number> => {
  let out = ranges.get(n)
  if (out === undefined) {
    const made: Array<number> = []
    for (let i = 0; i < n; i++) made.push(i)
    ranges.set(n, made)
    out = made
  }
  return out
}

/** Lets pending promise jobs and immediates run (some libraries queue asynchronously). */
export const settleTicks = async (ticks = 5): Promise<void> => {
  for (let i = 0; i < ticks; i++) await new Promise((resolve) => setImmediate(resolve))
}

export interface RateSpec {
  readonly n: number
  /** Starts allowed per `windowMs`. */
  readonly limit: number
  readonly windowMs: number
  /** Called by each task as it starts. */
  readonly onStart: (i: number) => void
}

export interface Adapter {
  readonly id: string
  /**
   * Runs `n` tasks of `work` at `concurrency` and waits for all. `count`: count outcomes and failures (the
   * containment scenario); otherwise Effect-based adapters just drain and report `n`.
   */
  readonly batch: (n: number, concurrency: number, work: Work, count: boolean) => Promise<Settled>
  /**
   * Queues `n` instant tasks behind one blocked task at concurrency 1, then calls `measure` with how many are
   * queued (the heap is read there). Nothing is drained: the promise libraries' queues stay blocked (the worker
   * process ends after the measurement); Pile's executor is shut down with `"cancel"` once `measure` returns.
   */
  readonly queue?: ((n: number, measure: (queued: number) => Promise<void>) => Promise<void>) | undefined
  /** Runs `spec.n` instant tasks under the library's own rate limiter. */
  readonly rate?: ((spec: RateSpec) => Promise<void>) | undefined
}

export interface Library {
  readonly id: string
  readonly label: string
  readonly module: "promise" | "effect" | "pile"
  /** Rate scenario: `true` when the library has a limiter of its own, else why the row is skipped or pending. */
  readonly rate: true | string
}

export const libraries: ReadonlyArray<Library> = [
  { id: "pool", label: "promise pool (floor)", module: "promise", rate: "no limiter" },
  { id: "p-limit", label: "p-limit", module: "promise", rate: "no limiter" },
  { id: "p-queue", label: "p-queue", module: "promise", rate: true },
  { id: "p-queue-strict", label: "p-queue (strict)", module: "promise", rate: true },
  { id: "bottleneck", label: "Bottleneck", module: "promise", rate: true },
  { id: "bottleneck-mintime", label: "Bottleneck (minTime)", module: "promise", rate: true },
  { id: "effect-foreach", label: "Effect.forEach", module: "effect", rate: true },
  { id: "effect-stream", label: "Stream.mapEffect", module: "effect", rate: "no limiter of its own" },
  { id: "pile-run", label: "Pile run", module: "pile", rate: true },
  { id: "pile-run-bare", label: "Pile run (metrics, tracing off)", module: "pile", rate: true },
  { id: "pile-run-gcra", label: "Pile run (gcra)", module: "pile", rate: true },
  { id: "pile-submit", label: "Pile submit", module: "pile", rate: "see Pile run" }
]

export const library = (id: string): Library => {
  const found = libraries.find((l) => l.id === id)
  if (found === undefined) throw new Error(`unknown library "${id}"`)
  return found
}

/** Loads the adapter of library `id` (only its own module is imported). */
export const load = async (id: string): Promise<Adapter> => {
  const lib = library(id)
  const module = lib.module === "promise"
    ? await import("./adapters-promise.ts")
    : lib.module === "effect"
    ? await import("./adapters-effect.ts")
    : await import("./adapters-pile.ts")
  const found = module.adapters.find((a) => a.id === id)
  if (found === undefined) throw new Error(`no adapter for "${id}"`)
  return found
}
