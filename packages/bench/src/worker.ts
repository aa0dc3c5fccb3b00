/**
 * One measurement, in a fresh process: `node --expose-gc worker.ts <json job>`. Writes one JSON sample to
 * `job.out` and exits. `main.ts` starts one of these per scenario, library and repetition.
 */
import { writeFileSync } from "node:fs"
import { performance } from "node:perf_hooks"
import { type Adapter, load, range, type Work } from "./adapter.ts"
import type { Job, Sample } from "./model.ts"
import type { Settled } from "./pool.ts"
import { slidingMax } from "./stats.ts"

const gc = (): void => {
  const collect = (globalThis as { gc?: () => void }).gc
  if (collect === undefined) throw new Error("run the worker with --expose-gc")
  collect()
  collect()
}

const finish = (job: Job, sample: Sample): never => {
  writeFileSync(job.out, JSON.stringify(sample))
  process.exit(0)
}

/** CPU ms (user + system) since `start`. */
const cpuSince = (start: NodeJS.CpuUsage): number => {
  const used = process.cpuUsage(start)
  return (used.user + used.system) / 1000
}

/**
 * Warms the adapter up (JIT) on `warmupRuns` batches of `warmup` tasks, then times `inner` batches of `n` and
 * returns their mean (total time ÷ runs): a short run can take under a millisecond, and a mean over as many
 * tasks as a long run keeps sizes comparable (the fastest of 20 short runs would flatter a small size against
 * one long run). The suite reports the median of these means, across fresh processes.
 */
const timedBatch = async (lib: Adapter, job: Job, work: Work, count: boolean) => {
  const n = job.n
  for (let i = 0; i < job.warmupRuns; i++) await lib.batch(Math.min(n, job.warmup), job.concurrency, work, count)
  range(n) // the inputs of the Effect adapters, built before the clock starts
  // No forced GC here: `gc()` shrinks the young generation, and the next run then pays for many more scavenges
  // (measured: Pile run at 10,000 tasks went from 2.2 to 5.5 µs/task). The fresh process is the isolation.
  const runs: Array<{ ms: number; cpuMs: number; settled: Settled; windowUs: readonly [number, number] }> = []
  for (let i = 0; i < Math.max(1, job.inner); i++) {
    const cpu = process.cpuUsage()
    const from = monotonicUs()
    const start = performance.now()
    const settled = await lib.batch(n, job.concurrency, work, count)
    const ms = performance.now() - start
    runs.push({ ms, cpuMs: cpuSince(cpu), settled, windowUs: [from, monotonicUs()] })
  }
  const mean = (f: (run: (typeof runs)[number]) => number) => runs.reduce((sum, run) => sum + f(run), 0) / runs.length
  return {
    ms: mean((run) => run.ms),
    cpuMs: mean((run) => run.cpuMs),
    settled: runs[runs.length - 1]!.settled,
    windowUs: [runs[0]!.windowUs[0], runs[runs.length - 1]!.windowUs[1]] as const
  }
}

/** The monotonic clock in µs: the time base of V8's `.cpuprofile` sample timestamps. */
const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n)

const main = async (): Promise<void> => {
  const job = JSON.parse(process.argv[2]!) as Job
  const lib = await load(job.library)
  switch (job.scenario) {
    case "overhead":
    case "overhead-fork":
    case "promise":
    case "scale": {
      const r = await timedBatch(lib, job, job.work, false)
      return finish(job, {
        value: (r.ms * 1e6) / job.n,
        ms: r.ms,
        cpuMs: r.cpuMs,
        outcomes: r.settled.outcomes,
        failures: 0,
        windowUs: r.windowUs
      })
    }
    case "latency": {
      const r = await timedBatch(lib, job, job.work, false)
      return finish(job, {
        value: r.ms,
        ms: r.ms,
        cpuMs: r.cpuMs,
        outcomes: r.settled.outcomes,
        failures: 0,
        windowUs: r.windowUs
      })
    }
    case "containment": {
      const r = await timedBatch(lib, job, job.work, true)
      return finish(job, {
        value: (r.ms * 1e6) / job.n,
        ms: r.ms,
        cpuMs: r.cpuMs,
        outcomes: r.settled.outcomes,
        failures: r.settled.failures
      })
    }
    case "memory": {
      if (lib.queue === undefined) throw new Error(`${lib.id} has no queued form`)
      // Warm-up: a first, small queue in its own instance loads and compiles the code paths; it is never drained,
      // so it stays on the heap and is part of the baseline.
      if (job.warmupRuns > 0) await lib.queue(job.warmup, async () => {})
      gc()
      const before = process.memoryUsage().heapUsed
      const cpu = process.cpuUsage()
      const start = performance.now()
      return lib.queue(job.n, async (queued) => {
        const ms = performance.now() - start
        const cpuMs = cpuSince(cpu)
        gc()
        const after = process.memoryUsage().heapUsed
        finish(job, { value: (after - before) / job.n, ms, cpuMs, outcomes: queued, failures: 0 })
      })
    }
    case "rate": {
      if (lib.rate === undefined) throw new Error(`${lib.id} has no rate limiter`)
      const limit = job.limit!
      const windowMs = job.windowMs!
      const starts: Array<number> = Array.from({ length: job.n }, () => Number.NaN)
      const cpu = process.cpuUsage()
      const t0 = performance.now()
      await lib.rate({ n: job.n, limit, windowMs, onStart: (i) => starts[i] = performance.now() - t0 })
      const ms = performance.now() - t0
      const sorted = starts.filter((s) => !Number.isNaN(s)).sort((a, b) => a - b)
      const window = slidingMax(sorted, windowMs, limit)
      const tolerant = slidingMax(sorted, windowMs - 1, limit)
      // The span from the first start until the limit admits one more start: the window opened by the
      // limit-th start from the end must close first. Achieved rate = starts / span (see docs/performance.md).
      const span = sorted.length > limit ? sorted[sorted.length - limit]! + windowMs - sorted[0]! : windowMs
      return finish(job, {
        value: (sorted.length / span) * 1000,
        ms,
        cpuMs: cpuSince(cpu),
        outcomes: sorted.length,
        failures: 0,
        maxInWindow: window.max,
        windowsOver: window.over,
        windowsOverTolerant: tolerant.over
      })
    }
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
