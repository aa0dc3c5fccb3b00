// Reads the report of `pnpm mutation` (reports/mutation/mutation.json) and prints the mutation score per file
// and per region of the engine, in three forms:
//   strict  = killed / (killed + survived + no coverage)     (a timeout counts neither way)
//   stryker = (killed + timeout) / (every valid mutant)       (Stryker's own score: a hung suite fails CI too)
//   raw     = like stryker, with every ignored mutant counted as survived (as if none were marked equivalent)
// Ignored mutants are the ones a `// Stryker disable` comment marks as equivalent, with its reason.
// Regions: "core" is the lifecycle, the intake (queue) and admission (engine, intake, admission, dispatcher,
// task, the outbox, the sinks, the sweeper, and the data structures); outside it: the error-policy glue (attempt.ts), admission's asynchronous-store
// path, instrumentation (metrics and spans) and the I5 test hook.
// Run: pnpm exec node scripts/mutation-score.ts [report.json] [--survivors [region]] [--ignored [region]]
import { readFileSync } from "node:fs"

interface Mutant {
  readonly mutatorName: string
  readonly replacement?: string
  readonly status: string
  readonly statusReason?: string
  readonly location: {
    readonly start: { readonly line: number; readonly column: number }
    readonly end: { readonly line: number; readonly column: number }
  }
}
interface Report {
  readonly files: Record<string, { readonly source: string; readonly mutants: ReadonlyArray<Mutant> }>
}

const args = process.argv.slice(2)
const path = args.find((a) => a.endsWith(".json")) ?? "reports/mutation/mutation.json"
const survivorsAt = args.indexOf("--survivors")
const ignoredAt = args.indexOf("--ignored")
const regionArg = (at: number) =>
  at >= 0 && args[at + 1] !== undefined && !args[at + 1]!.startsWith("--") ? args[at + 1]! : "all"
const listRegion = survivorsAt >= 0 ? regionArg(survivorsAt) : undefined
const ignoredRegion = ignoredAt >= 0 ? regionArg(ignoredAt) : undefined
const report = JSON.parse(readFileSync(path, "utf8")) as Report

/**
 * Regions outside the core. By file: attempt.ts is the error-policy glue (the policy's decision, the breaker,
 * spans). By member, in the core's files: admission's asynchronous-store path (exercised by the Redis tests,
 * which need a server and are not in the mutation run), instrumentation, and the I5 test hook.
 */
const fileRegions: Record<string, string> = { "attempt.ts": "policy" }
const regions: Record<string, ReadonlyArray<string>> = {
  asyncStore: ["reserve", "reserved", "storeOp", "flush", "storeOps", "reserving"],
  instrumentation: ["metricClock"],
  // The I5 test hook, and the registry's listing that only it calls.
  testHook: ["liveFibers", "live"]
}
/** A line of a core member that only feeds metrics or spans. */
const instrumentationLine = /instruments|metricClock|withSpan|annotateCurrentSpan/

const memberPattern = /^ {2}(?:private |readonly |static |get )*([A-Za-z_]\w*)\s*[(<:=]/
const topLevelPattern = /^(?:export )?(?:const|class|function|interface|type) (\w+)/

const regionOf = (file: string, member: string, line: string): string => {
  const byFile = fileRegions[file.split("/").at(-1)!]
  if (byFile !== undefined) return instrumentationLine.test(line) ? "instrumentation" : byFile
  const asyncStore = file.endsWith("admission.ts") ? regions["asyncStore"]! : []
  if (asyncStore.includes(member)) return "asyncStore"
  for (const region of ["instrumentation", "testHook"]) if (regions[region]!.includes(member)) return region
  return instrumentationLine.test(line) ? "instrumentation" : "core"
}

/** A piece of source for one line of output. */
const show = (text: string) => JSON.stringify(text.replace(/\s+/g, " ")).slice(0, 70)

type Tally = Record<string, number>
const tallies = new Map<string, Tally>()
const count = (key: string, status: string) => {
  const tally = tallies.get(key) ?? {}
  tally[status] = (tally[status] ?? 0) + 1
  tallies.set(key, tally)
}

for (const [file, { mutants, source }] of Object.entries(report.files)) {
  const lines = source.split("\n")
  // The member of a class (the nearest member line above, inside the nearest class), else the top-level name.
  const memberAt = (line: number): string => {
    let member: string | undefined
    for (let i = line - 1; i >= 0; i--) {
      const top = topLevelPattern.exec(lines[i]!)
      if (top !== null) return lines[i]!.includes("class ") && member !== undefined ? member : top[1]!
      member ??= memberPattern.exec(lines[i]!)?.[1]
    }
    return member ?? "?"
  }
  const name = file.split("/").at(-1)!
  for (const mutant of mutants) {
    const line = mutant.location.start.line
    const member = memberAt(line)
    const region = regionOf(file, member, lines[line - 1]!)
    count(`file ${name}`, mutant.status)
    count(`region ${region}`, mutant.status)
    count("all", mutant.status)
    const listed = mutant.status === "Ignored"
      ? ignoredRegion !== undefined && (ignoredRegion === "all" || ignoredRegion === region)
      : listRegion !== undefined && (mutant.status === "Survived" || mutant.status === "NoCoverage") &&
        (listRegion === "all" || listRegion === region)
    if (listed) {
      const { end, start } = mutant.location
      const original = start.line === end.line
        ? lines[line - 1]!.slice(start.column - 1, end.column - 1)
        : `${lines[line - 1]!.slice(start.column - 1)}...`
      console.log(
        `${name}:${line}:${start.column} ${member} [${region}] ${mutant.status} ${mutant.mutatorName}: ${
          show(original)
        } -> ${show(mutant.replacement ?? "")}${mutant.status === "Ignored" ? ` (${mutant.statusReason ?? ""})` : ""}`
      )
    }
  }
}

const pct = (n: number, d: number) => d === 0 ? "-" : `${(100 * n / d).toFixed(1)}%`
console.log("| scope | killed | timeout | survived | no coverage | ignored | strict | stryker | raw |")
console.log("| ----- | -----: | ------: | -------: | ----------: | ------: | -----: | ------: | --: |")
for (const [key, t] of [...tallies].sort(([a], [b]) => a.localeCompare(b))) {
  const killed = t["Killed"] ?? 0
  const timeout = t["Timeout"] ?? 0
  const survived = t["Survived"] ?? 0
  const none = t["NoCoverage"] ?? 0
  const ignored = t["Ignored"] ?? 0
  const detected = killed + timeout
  console.log(
    `| ${key} | ${killed} | ${timeout} | ${survived} | ${none} | ${ignored} | ${
      pct(killed, killed + survived + none)
    } | ${pct(detected, detected + survived + none)} | ${pct(detected, detected + survived + none + ignored)} |`
  )
}
