/**
 * `pnpm bench`: Pile against its peers. Every (scenario, library, repetition) runs in a fresh child process
 * (`worker.ts`), repetitions are interleaved, and the median of each row is reported.
 *
 *   pnpm bench                 the full suite (writes docs/bench/results.json and docs/bench/chart.svg)
 *   pnpm bench --quick         a shorter dev run (smaller N, one repetition; writes to node_modules/.cache/pile-bench)
 *   pnpm bench --only a,b      only these scenarios (overhead, overhead-fork, promise, latency, rate, memory,
 *                              containment, scale, cluster)
 *   pnpm bench --reps N        N repetitions instead of each scenario's default
 *   pnpm bench --out DIR       where to write results.json and chart.svg
 *   pnpm bench --baseline DIR  every Pile row also run by the checkout in DIR (another commit's executor, with
 *                              its own install and this tree's packages/bench), interleaved, labelled "(baseline)"
 *   pnpm bench --profile [--library pile-run] [--scenario overhead] [--n 300000]
 *                              CPU-profile one run (node --cpu-prof) and print the top self-time functions
 */
import { spawnSync } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { loadavg, tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { machine, versions } from "./machine.ts"
import type { Job, Sample } from "./model.ts"
import { plan, type Row, withBaseline } from "./plan.ts"
import { profile } from "./profile.ts"
import { renderSvg, renderTables } from "./report.ts"
import { median } from "./stats.ts"
import { evaluateTargets } from "./targets.ts"

const here = dirname(fileURLToPath(import.meta.url))
const root = resolve(here, "../../..")
const worker = join(here, "worker.ts")

const flag = (name: string): boolean => process.argv.includes(name)
const option = (name: string): string | undefined => {
  const i = process.argv.indexOf(name)
  return i >= 0 ? process.argv[i + 1] : undefined
}

const { NODE_COMPILE_CACHE: _compileCache, ...withoutCompileCache } = process.env

/** Runs one job in a fresh process; returns its sample or the error it printed. */
const runJob = (job: Job, script = worker): Sample | { readonly error: string } => {
  const child = spawnSync(
    process.execPath,
    ["--expose-gc", "--max-old-space-size=8192", script, JSON.stringify(job)],
    {
      encoding: "utf8",
      timeout: 240_000,
      stdio: ["ignore", "pipe", "pipe"],
      // No on-disk compile cache (NODE_COMPILE_CACHE): it halved a worker's start-up but changed the timed runs.
      // With it, promise tasks through Pile's run landed in a slow mode (about 1,600 instead of 800 ns per task)
      // in 5 of 6 fresh processes, and Effect.sync tasks spread from 500 to 720; without it, 800 and 500 every time.
      env: withoutCompileCache
    }
  )
  if (child.status !== 0) {
    const reason = child.error?.message ?? child.stderr.trim().split("\n").slice(-3).join(" | ")
    return { error: `exit ${child.status ?? child.signal}: ${reason}` }
  }
  return JSON.parse(readFileSync(job.out, "utf8")) as Sample
}

const aggregate = (row: Row): Row => {
  const samples = row.samples
  if (samples.length === 0) return row
  const pick = (f: (s: Sample) => number | undefined) =>
    median(samples.map(f).filter((v): v is number => v !== undefined))
  const worst = (f: (s: Sample) => number | undefined) =>
    Math.max(...samples.map(f).filter((v): v is number => v !== undefined))
  return {
    ...row,
    median: {
      value: pick((s) => s.value),
      ms: pick((s) => s.ms),
      cpuMs: pick((s) => s.cpuMs),
      outcomes: pick((s) => s.outcomes),
      failures: pick((s) => s.failures),
      // Rate: the worst repetition counts (a limiter must hold the limit every time).
      maxInWindow: samples[0]!.maxInWindow === undefined ? undefined : worst((s) => s.maxInWindow),
      windowsOver: samples[0]!.windowsOver === undefined ? undefined : worst((s) => s.windowsOver),
      windowsOverTolerant: samples[0]!.windowsOverTolerant === undefined
        ? undefined
        : worst((s) => s.windowsOverTolerant)
    }
  }
}

/**
 * The cluster path (`cluster/main.ts`): runner processes and Postgres, so a process of its own; it writes
 * <out>/cluster.json and prints its table.
 */
const runCluster = (quick: boolean, out: string): void => {
  const child = spawnSync(process.execPath, [
    join(here, "cluster", "main.ts"),
    ...(quick ? ["--quick"] : []),
    "--out",
    out
  ], {
    stdio: "inherit",
    timeout: 600_000
  })
  if (child.status !== 0) {
    console.error(`cluster: ERROR exit ${child.status ?? child.signal} (is Postgres 15 installed?)`)
  }
}

const main = (): void => {
  if (flag("--profile")) {
    const n = option("--n")
    profile({
      scenario: option("--scenario") ?? "overhead",
      library: option("--library") ?? "pile-run",
      worker,
      root,
      n: n === undefined ? undefined : Number(n)
    })
    return
  }
  const quick = flag("--quick")
  const only = option("--only")?.split(",")
  const reps = option("--reps")
  const out = resolve(root, option("--out") ?? (quick ? "node_modules/.cache/pile-bench" : "docs/bench"))
  if (only !== undefined && only.every((scenario) => scenario === "cluster")) return runCluster(quick, out)
  const scratch = mkdtempSync(join(tmpdir(), "pile-bench-"))
  const baseline = option("--baseline")
  const planned = plan(quick).filter((row) => only === undefined || only.includes(row.scenario))
  const rows = baseline === undefined
    ? planned
    : withBaseline(planned, join(resolve(baseline), "packages/bench/src/worker.ts"))
  if (reps !== undefined) { for (const row of rows) row.reps = Math.max(1, Number(reps)) }
  const runnable = rows.filter((row) => row.status === "ok")
  const total = runnable.reduce((n, row) => n + row.reps, 0)
  const maxReps = Math.max(0, ...runnable.map((row) => row.reps))
  const started = Date.now()
  const loadBefore = loadavg()[0]!
  let done = 0
  console.error(`pile bench: ${runnable.length} rows, ${total} runs${quick ? " (quick)" : ""}`)
  // Interleaved: repetition 1 of every row, then repetition 2, ... so drift in the machine spreads evenly. A row
  // and its baseline twin run back to back, in turns first: the second of two processes started one after the
  // other was measured up to 30% slower with the same code (docs/performance.md, "Noise").
  const inTurn = (rep: number): ReadonlyArray<Row> =>
    rep % 2 === 0 ? runnable : runnable.map((row, i) => {
      const next = runnable[i + 1]
      const previous = runnable[i - 1]
      if (next !== undefined && next.library === `${row.library}@baseline`) return next
      if (previous !== undefined && row.library === `${previous.library}@baseline`) return previous
      return row
    })
  for (let rep = 0; rep < maxReps; rep++) {
    for (const row of inTurn(rep)) {
      if (rep >= row.reps || row.status !== "ok") continue
      const job: Job = {
        ...row.job,
        out: join(scratch, `${row.scenario}-${row.library}-${row.job.work}-${row.job.n}-${rep}.json`)
      }
      const t0 = Date.now()
      const sample = runJob(job, row.worker)
      row.seconds += (Date.now() - t0) / 1000
      done++
      if ("error" in sample) {
        row.status = "error"
        row.note = sample.error
        console.error(`  [${done}/${total}] ${row.scenario} ${row.label} n=${job.n}: ERROR ${sample.error}`)
        continue
      }
      row.samples.push(sample)
      console.error(
        `  [${done}/${total}] ${row.scenario} ${row.label} n=${job.n} rep ${rep + 1}: ${sample.value.toFixed(1)}` +
          ` (${sample.ms.toFixed(0)} ms)`
      )
    }
  }
  rmSync(scratch, { recursive: true, force: true })
  const perScenario = new Map<string, number>()
  for (const row of rows) perScenario.set(row.scenario, (perScenario.get(row.scenario) ?? 0) + row.seconds)
  console.error(
    `time per scenario: ${[...perScenario].map(([name, seconds]) => `${name} ${seconds.toFixed(0)} s`).join(", ")}`
  )
  const results = rows.map(aggregate)
  const targets = evaluateTargets(results)
  const elapsed = (Date.now() - started) / 1000
  const report = {
    date: new Date().toISOString(),
    quick,
    elapsedSeconds: elapsed,
    // Other work on the machine skews timings: the 1-minute load average before and after the run.
    load: { before: loadBefore, after: loadavg()[0]! },
    machine: machine(),
    versions: versions(root),
    rows: results,
    targets
  }
  console.log(renderTables(report))
  mkdirSync(out, { recursive: true })
  writeFileSync(join(out, "results.json"), JSON.stringify(report, null, 2) + "\n")
  writeFileSync(join(out, "chart.svg"), renderSvg(report))
  console.error(`wrote ${join(out, "results.json")} and ${join(out, "chart.svg")} (${elapsed.toFixed(0)} s)`)
  if (only === undefined || only.includes("cluster")) runCluster(quick, out)
}

main()
