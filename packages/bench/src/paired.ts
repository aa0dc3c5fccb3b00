/**
 * `pnpm bench:paired`: two executors' Pile rows in ONE process, batch by batch in alternation, after a warm-up:
 * the CPU time per task of each, as medians. Both see the same load at the same moments, so a loaded machine
 * skews them alike (what `pnpm bench --baseline` cannot promise across fresh processes). Steady state only: no
 * start-up, and the JIT has settled.
 *
 *   pnpm bench:paired --baseline DIR [--library pile-run] [--work instant] [--n 100000] [--rounds 20]
 *   pnpm bench:paired --chain LABEL=DIR,LABEL=DIR,... [--library ...] [--work ...] [--n ...] [--rounds ...]
 *
 * DIR is another checkout with its own install (see docs/performance.md, "Against an earlier commit"); its
 * `packages/bench/src/adapter.ts` loads its executor. Work: instant, sync, promise, fail10, sleep.
 *
 * `--chain` measures several checkouts in the same alternation, oldest first (each with its executor at one
 * commit): it prints each step's ratio to the step before it and, when a label names what a step brought in
 * (`14:DIR` counts the step under "14"), the product of the steps under each label, so a slowdown across many
 * merges can be traced to the changes that brought it.
 */
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import type { Adapter, Work } from "./adapter.ts"
import { median } from "./stats.ts"

const option = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(name)
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback
}

const here = dirname(fileURLToPath(import.meta.url))
const baseline = option("--baseline", "")
const chainOption = option("--chain", "")
if (baseline === "" && chainOption === "") {
  console.error(
    "usage: pnpm bench:paired --baseline DIR | --chain LABEL=DIR,... [--library pile-run] [--work instant] [--n 100000] [--rounds 20]"
  )
  process.exit(2)
}
const library = option("--library", "pile-run")
const work = option("--work", "instant") as Work
const n = Number(option("--n", "100000"))
const rounds = Number(option("--rounds", "20"))
/** The trees, oldest first; `label` (in a chain) names what the step to this tree brought in. */
const trees: Array<{ readonly name: string; readonly dir: string; readonly label: string }> = chainOption === ""
  ? [
    { name: "baseline", dir: resolve(baseline), label: "" },
    { name: "this tree", dir: resolve(here, "../../.."), label: "" }
  ]
  : chainOption.split(",").map((entry) => {
    const [name, dir] = entry.includes("=") ? entry.split("=") as [string, string] : [entry, entry]
    const [label, path] = dir.includes(":") ? dir.split(":") as [string, string] : ["", dir]
    return { name, dir: resolve(path), label }
  })

const adapters: Array<Adapter> = []
for (const tree of trees) {
  const module = await import(join(tree.dir, "packages/bench/src/adapter.ts")) as {
    load: (id: string) => Promise<Adapter>
  }
  adapters.push(await module.load(library))
}
for (let i = 0; i < 3; i++) for (const adapter of adapters) await adapter.batch(n, 64, work, false)
const samples: Array<Array<number>> = trees.map(() => [])
for (let round = 0; round < rounds; round++) {
  // Alternate the order, so none always runs right after another's garbage.
  const order = trees.map((_, k) => k)
  if (round % 2 === 1) order.reverse()
  for (const k of order) {
    const before = process.cpuUsage()
    await adapters[k]!.batch(n, 64, work, false)
    const used = process.cpuUsage(before)
    samples[k]!.push((used.user + used.system) * 1000 / n)
  }
}
const medians = samples.map((s) => median(s))
console.log(`${library}, ${work}, n=${n}, ${rounds} rounds: CPU ns per task (median)`)
if (chainOption === "") {
  const [base, now] = medians as [number, number]
  console.log(`  baseline   ${base.toFixed(0)}  (min ${Math.min(...samples[0]!).toFixed(0)})`)
  console.log(`  this tree  ${now.toFixed(0)}  (min ${Math.min(...samples[1]!).toFixed(0)})`)
  console.log(`  ratio      ${(now / base).toFixed(2)}`)
} else {
  const products = new Map<string, number>()
  console.log(`  ${"tree".padEnd(12)} ${"label".padEnd(10)} ${"ns".padStart(6)}  ${"step".padStart(6)}  to first`)
  trees.forEach((tree, k) => {
    const step = k === 0 ? 1 : medians[k]! / medians[k - 1]!
    if (k > 0 && tree.label !== "") products.set(tree.label, (products.get(tree.label) ?? 1) * step)
    console.log(
      `  ${tree.name.padEnd(12)} ${tree.label.padEnd(10)} ${medians[k]!.toFixed(0).padStart(6)}  ${step.toFixed(3)}  ${
        (medians[k]! / medians[0]!).toFixed(3)
      }`
    )
  })
  for (const [label, product] of products) console.log(`  steps labelled ${label}: product ${product.toFixed(3)}`)
}
process.exit(0)
