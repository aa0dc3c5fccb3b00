/**
 * `pnpm soak`: what a long-lived executor holds after the work is done (issue 20). Each scenario runs in a
 * fresh child process started with `--expose-gc`, and prints the heap after a full GC at the start, at the
 * peak and once the work went idle, with ms per 10k tasks at the start and at the end. Then the three targets,
 * met or not met. Not part of `pnpm test`: it takes a few minutes.
 *
 *   pnpm soak                  every scenario at full size
 *   pnpm soak --scale 0.1      every count times 0.1 (a quick look; the targets are for scale 1)
 *   pnpm soak --only keys      one scenario (keys, handles, reader)
 *   SOAK_DEBUG=1 pnpm soak     also the ms of every block of 10k of the keys scenario
 */
import { Executor } from "@pile/executor"
import { Effect, Stream } from "effect"
import { CircuitBreaker } from "effect/persistence"
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"

const MB = 1024 * 1024

interface Result {
  readonly scenario: string
  readonly heap: { readonly start: number; readonly peak: number; readonly idle: number }
  readonly msPer10k: { readonly start: number; readonly end: number }
  /** The keys scenario: CPU ms (user + system) per 10k, which other processes on the machine disturb less. */
  readonly cpuPer10k?: { readonly start: number; readonly end: number }
  /** The reader scenario: the most outcomes ever buffered. */
  readonly maxBuffered?: number
}

/** Heap after a full GC (twice: finalizers of the first may free more). */
const heapAfterGc = (): number => {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error("run with node --expose-gc")
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

const sleep = (ms: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))

/** Runs `count` tasks through `submit` in blocks of 10k, each block awaited; returns ms per block. */
const blocks = (
  count: number,
  submitOne: (i: number) => Effect.Effect<{ readonly await: Effect.Effect<unknown> }, unknown>,
  offset: number,
  onBlock: () => void
) =>
  Effect.gen(function*() {
    const times: Array<number> = []
    const cpu: Array<number> = []
    for (let from = 0; from < count; from += 10_000) {
      const started = performance.now()
      const cpuStarted = process.cpuUsage()
      const handles: Array<{ readonly await: Effect.Effect<unknown> }> = []
      for (let i = from; i < Math.min(count, from + 10_000); i++) handles.push(yield* submitOne(offset + i))
      for (const handle of handles) yield* handle.await
      times.push(performance.now() - started)
      const used = process.cpuUsage(cpuStarted)
      cpu.push((used.user + used.system) / 1000)
      onBlock()
    }
    return Object.assign(times, { cpu })
  })

/** The median of the first (or last) ten blocks: one block alone is at the mercy of one GC pause. */
const msOf = (times: ReadonlyArray<number>, which: "start" | "end"): number => {
  const part = which === "start" ? times.slice(0, 10) : times.slice(-10)
  const sorted = [...part].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN
}

/** Target 1: tasks over many keys, with per-key limits, a breaker and default metrics. */
const keysScenario = (scale: number) =>
  Effect.gen(function*() {
    const tasks = Math.round(1_000_000 * scale)
    const keys = Math.round(200_000 * scale)
    const executor = yield* Executor.make({
      concurrency: 64,
      limits: [
        { perKey: true, limit: 10, window: "1 second" },
        { perKey: true, name: "spacing", limit: 100, window: "1 second", algorithm: "gcra", burst: 10 }
      ],
      circuitBreaker: {
        tripPolicy: CircuitBreaker.consecutive(5),
        openDuration: "1 second",
        idleTimeToLive: "2 seconds"
      }
    })
    const submit = (i: number) => executor.submit(Effect.void, { key: `k${i % keys}` })
    // Warm-up, on keys of their own, then the baseline.
    yield* blocks(20_000, (i) => executor.submit(Effect.void, { key: `warm${i % 1000}` }), 0, () => {})
    yield* sleep(3_000)
    const start = heapAfterGc()
    let peak = start
    let block = 0
    // The peak: the heap after a full GC every 100k tasks (without the GC it would count garbage).
    const times = yield* blocks(tasks, submit, 0, () => {
      if (++block % 10 === 0) peak = Math.max(peak, heapAfterGc())
    })
    peak = Math.max(peak, heapAfterGc())
    // Idle: longer than the windows (1 s), two sweep periods and the breaker's lifetime (2 s). One task
    // then lets the breaker's store sweep (it sweeps when it admits).
    yield* sleep(3_000)
    yield* (yield* executor.submit(Effect.void, { key: "wake" })).await
    yield* sleep(2_500)
    const idle = heapAfterGc()
    const end = yield* blocks(100_000, submit, tasks, () => {})
    if (process.env["SOAK_DEBUG"]) console.error(times.map(Math.round).join(" "), "|", end.map(Math.round).join(" "))
    return {
      scenario: "keys",
      heap: { start, peak, idle },
      msPer10k: { start: msOf(times, "start"), end: msOf(end, "end") },
      cpuPer10k: { start: msOf(times.cpu, "start"), end: msOf(end.cpu, "end") }
    } satisfies Result
  })

/** Target 2: submit + join with default options and no Pile reader. */
const handlesScenario = (scale: number) =>
  Effect.gen(function*() {
    const tasks = Math.round(2_000_000 * scale)
    const executor = yield* Executor.make({ concurrency: 64 })
    const submit = (i: number) => executor.submit(Effect.succeed(i))
    yield* blocks(20_000, submit, 0, () => {})
    const start = heapAfterGc()
    let peak = start
    let block = 0
    // The peak: the heap after a full GC every 100k tasks (without the GC it would count garbage).
    const times = yield* blocks(tasks, submit, 0, () => {
      if (++block % 10 === 0) peak = Math.max(peak, heapAfterGc())
    })
    peak = Math.max(peak, heapAfterGc())
    const idle = heapAfterGc()
    return {
      scenario: "handles",
      heap: { start, peak, idle },
      msPer10k: { start: msOf(times, "start"), end: msOf(times, "end") }
    } satisfies Result
  })

/** Target 3: a reader doing no work beside a loop of submits; the most outcomes ever buffered. */
const readerScenario = (scale: number) =>
  Effect.gen(function*() {
    const tasks = Math.round(1_000_000 * scale)
    const executor = yield* Executor.make({ concurrency: 64 })
    yield* Effect.forkChild(Stream.runForEach(executor.pile, () => Effect.void))
    yield* Effect.yieldNow
    const start = heapAfterGc()
    let peak = start
    let maxBuffered = 0
    const times: Array<number> = []
    let started = performance.now()
    for (let i = 0; i < tasks; i++) {
      yield* executor.submit(Effect.succeed(i))
      if (i % 1000 === 999) {
        maxBuffered = Math.max(maxBuffered, (yield* executor.stats).pileBuffered)
        if (i % 10_000 === 9_999) {
          times.push(performance.now() - started)
          if (times.length % 10 === 0) peak = Math.max(peak, heapAfterGc())
          started = performance.now()
        }
      }
    }
    while ((yield* executor.stats).finished < tasks) yield* sleep(10)
    yield* sleep(100)
    const idle = heapAfterGc()
    return {
      scenario: "reader",
      heap: { start, peak, idle },
      msPer10k: { start: msOf(times, "start"), end: msOf(times, "end") },
      maxBuffered
    } satisfies Result
  })

const scenarios = { keys: keysScenario, handles: handlesScenario, reader: readerScenario } as const

const option = (name: string): string | undefined => {
  const i = process.argv.indexOf(name)
  return i >= 0 ? process.argv[i + 1] : undefined
}

const met = (ok: boolean) => ok ? "met" : "NOT MET"

const child = option("--child") as keyof typeof scenarios | undefined
const scale = Number(option("--scale") ?? "1")

if (child !== undefined) {
  const result = await Effect.runPromise(Effect.scoped(scenarios[child](scale)))
  process.stdout.write(`${JSON.stringify(result)}\n`)
} else {
  const only = option("--only")?.split(",")
  const results: Array<Result> = []
  for (const name of Object.keys(scenarios) as Array<keyof typeof scenarios>) {
    if (only !== undefined && !only.includes(name)) continue
    const began = performance.now()
    const run = spawnSync(
      process.execPath,
      [
        "--expose-gc",
        "--max-old-space-size=4096",
        fileURLToPath(import.meta.url),
        "--child",
        name,
        "--scale",
        `${scale}`
      ],
      { encoding: "utf8", maxBuffer: 16 * MB }
    )
    process.stderr.write(run.stderr) // SOAK_DEBUG=1: the ms of every block
    if (run.status !== 0) throw new Error(`scenario ${name} failed`)
    const result = JSON.parse(run.stdout.trim().split("\n").at(-1)!) as Result
    results.push(result)
    const mb = (b: number) => `${(b / MB).toFixed(1)} MB`
    console.log(
      `${name.padEnd(8)} heap start ${mb(result.heap.start)}, peak ${mb(result.heap.peak)}, idle ${
        mb(result.heap.idle)
      }; ms per 10k start ${result.msPer10k.start.toFixed(1)}, end ${result.msPer10k.end.toFixed(1)}${
        result.cpuPer10k === undefined
          ? ""
          : ` (CPU ms ${result.cpuPer10k.start.toFixed(1)}, ${result.cpuPer10k.end.toFixed(1)})`
      }${result.maxBuffered === undefined ? "" : `; most buffered ${result.maxBuffered}`} (${
        ((performance.now() - began) / 1000).toFixed(0)
      } s)`
    )
  }
  const by = (name: string) => results.find((r) => r.scenario === name)
  console.log(`\ntargets (scale ${scale})`)
  const keys = by("keys")
  if (keys !== undefined) {
    const heap = (keys.heap.idle - keys.heap.start) / MB
    const ratio = keys.msPer10k.end / keys.msPer10k.start
    const cpu = keys.cpuPer10k!.end / keys.cpuPer10k!.start
    console.log(
      `  1. 1M tasks over 200k keys: idle heap - start heap ${heap.toFixed(1)} MB (<= 20): ${met(heap <= 20)}; ` +
        `ms per 10k end / start ${ratio.toFixed(2)} (<= 1.3): ${met(ratio <= 1.3)}; ` +
        `CPU ms per 10k end / start ${cpu.toFixed(2)} (<= 1.3): ${met(cpu <= 1.3)}`
    )
  }
  const handles = by("handles")
  if (handles !== undefined) {
    const heap = (handles.heap.idle - handles.heap.start) / MB
    console.log(
      `  2. 2M submit + join, no reader: heap after - start ${heap.toFixed(1)} MB (<= 20): ${met(heap <= 20)}`
    )
  }
  const reader = by("reader")
  if (reader !== undefined) {
    console.log(
      `  3. no-op reader beside 1M submits: most buffered ${reader.maxBuffered} (<= 10,000): ${
        met(reader.maxBuffered! <= 10_000)
      }`
    )
  }
}
