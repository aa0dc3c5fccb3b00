/**
 * `pnpm bench --profile [--scenario overhead] [--library pile-run] [--n 300000]`: runs one measurement under
 * `node --cpu-prof`, keeps the samples of the measured run (not start-up or warm-up), and prints the top
 * self-time functions, then the same grouped by source file. The `.cpuprofile` is kept for DevTools.
 */
import { spawnSync } from "node:child_process"
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs"
import { basename, join } from "node:path"
import type { Job, Sample, Scenario } from "./model.ts"

interface CallFrame {
  readonly functionName: string
  readonly url: string
  readonly lineNumber: number
}

interface ProfileNode {
  readonly id: number
  readonly callFrame: CallFrame
  readonly children?: ReadonlyArray<number> | undefined
}

interface CpuProfile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly startTime: number
  readonly endTime: number
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

export interface Entry {
  readonly key: string
  readonly us: number
  readonly share: number
}

/** A short, stable place name: the package (or the repo folder) and the file. */
const where = (url: string): string => {
  if (url === "") return ""
  const path = url.replace(/^file:\/\//, "")
  const pnpm = /node_modules\/\.pnpm\/[^/]+\/node_modules\/(@[^/]+\/[^/]+|[^/]+)\/(.+)$/.exec(path)
  if (pnpm !== null) return `${pnpm[1]}/${pnpm[2]}`
  const pkg = /packages\/([^/]+)\/(.+)$/.exec(path)
  if (pkg !== null) return `@pile/${pkg[1]}/${pkg[2]}`
  return basename(path)
}

const keyOf = (frame: CallFrame): { key: string; file: string } => {
  const file = where(frame.url)
  const name = frame.functionName === "" ? "(anonymous)" : frame.functionName
  return { key: file === "" ? name : `${name}  ${file}:${frame.lineNumber + 1}`, file: file === "" ? name : file }
}

/**
 * Self time per function and per file, and inclusive time (the function or anything it called) of the
 * functions whose file matches `inclusiveOf`, over the samples inside `window` (µs) when given.
 */
export const summarize = (
  profile: CpuProfile,
  window?: readonly [number, number],
  inclusiveOf = "@pile/"
): { total: number; functions: Array<Entry>; files: Array<Entry>; inclusive: Array<Entry>; windowed: boolean } => {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  const functions = new Map<string, number>()
  const files = new Map<string, number>()
  const inclusive = new Map<string, number>()
  let t = profile.startTime
  let total = 0
  const windowed = window !== undefined && window[0] >= profile.startTime && window[1] <= profile.endTime
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i] ?? 0
    t += delta
    if (windowed && (t < window[0] || t > window[1])) continue
    const node = byId.get(profile.samples[i]!)
    if (node === undefined) continue
    const { file, key } = keyOf(node.callFrame)
    functions.set(key, (functions.get(key) ?? 0) + delta)
    files.set(file, (files.get(file) ?? 0) + delta)
    total += delta
    // Inclusive: each function on the stack once, however deep the recursion.
    const seen = new Set<string>()
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const frame = byId.get(id)!.callFrame
      if (!frame.url.includes(inclusiveOf) && !where(frame.url).startsWith(inclusiveOf)) continue
      const k = keyOf(frame).key
      if (seen.has(k)) continue
      seen.add(k)
      inclusive.set(k, (inclusive.get(k) ?? 0) + delta)
    }
  }
  const sorted = (m: Map<string, number>): Array<Entry> =>
    [...m.entries()].map(([key, us]) => ({ key, us, share: us / total })).sort((a, b) => b.us - a.us)
  return { total, functions: sorted(functions), files: sorted(files), inclusive: sorted(inclusive), windowed }
}

const print = (title: string, entries: ReadonlyArray<Entry>, top: number): void => {
  console.log(`\n${title}`)
  console.log(`| self ms | share | function / file |`)
  console.log(`| ---: | ---: | --- |`)
  for (const e of entries.slice(0, top)) {
    console.log(`| ${(e.us / 1000).toFixed(1)} | ${(e.share * 100).toFixed(1)}% | \`${e.key}\` |`)
  }
}

export const profile = (options: {
  readonly scenario: string
  readonly library: string
  readonly worker: string
  readonly root: string
  readonly n?: number | undefined
}): void => {
  const dir = join(options.root, "node_modules/.cache/pile-bench/profile")
  mkdirSync(dir, { recursive: true })
  for (const f of readdirSync(dir)) if (f.startsWith("CPU.")) rmSync(join(dir, f))
  const n = options.n ?? 300_000
  const job: Job = {
    scenario: options.scenario as Scenario,
    library: options.library,
    work: options.scenario === "containment"
      ? "fail10"
      : options.scenario === "overhead-fork"
      ? "sync"
      : options.scenario === "promise"
      ? "promise"
      : options.scenario === "latency"
      ? "sleep"
      : "instant",
    n,
    concurrency: options.scenario === "latency" ? 256 : 64,
    warmup: 10_000,
    warmupRuns: 3,
    inner: 1,
    out: join(dir, "sample.json")
  }
  const child = spawnSync(
    process.execPath,
    [
      "--cpu-prof",
      `--cpu-prof-dir=${dir}`,
      "--cpu-prof-interval=50",
      "--expose-gc",
      options.worker,
      JSON.stringify(job)
    ],
    { encoding: "utf8", stdio: ["ignore", "inherit", "inherit"] }
  )
  if (child.status !== 0) throw new Error(`the profiled run failed (exit ${child.status})`)
  const file = readdirSync(dir).find((f) => f.endsWith(".cpuprofile") && f.startsWith("CPU."))
  if (file === undefined) throw new Error("no .cpuprofile was written")
  const kept = join(dir, `${options.scenario}-${options.library}.cpuprofile`)
  renameSync(join(dir, file), kept)
  const sample = JSON.parse(readFileSync(job.out, "utf8")) as Sample
  const data = JSON.parse(readFileSync(kept, "utf8")) as CpuProfile
  const summary = summarize(data, sample.windowUs)
  console.log(
    `${options.library}, ${options.scenario}, n=${n.toLocaleString("en-US")}: ${sample.value.toFixed(0)} ns/task ` +
      `(${sample.ms.toFixed(0)} ms wall, ${sample.cpuMs.toFixed(0)} ms CPU); ` +
      `${(summary.total / 1000).toFixed(0)} ms sampled ${
        summary.windowed ? "in the measured run" : "(whole process: the window did not match)"
      }; profile: ${kept}`
  )
  print("Top self time, by function", summary.functions, 30)
  print("Self time by file", summary.files, 15)
  print(
    "Inclusive time of @pile/executor functions (the function and what it called)",
    summary.inclusive.filter((e) => e.key.includes("@pile/executor")),
    25
  )
}
