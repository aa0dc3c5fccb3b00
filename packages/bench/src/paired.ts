/**
 * `pnpm bench:paired`: two executors' Pile rows in ONE process, batch by batch in alternation, after a warm-up:
 * the CPU time per task of each, as medians. Both see the same load at the same moments, so a loaded machine
 * skews them alike (what `pnpm bench --baseline` cannot promise across fresh processes). Steady state only: no
 * start-up, and the JIT has settled.
 *
 *   pnpm bench:paired --baseline DIR [--library pile-run] [--work instant] [--n 100000] [--rounds 20]
 *
 * DIR is another checkout with its own install (see docs/performance.md, "Against an earlier commit"); its
 * `packages/bench/src/adapter.ts` loads its executor. Work: instant, sync, promise, fail10, sleep.
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
if (baseline === "") {
  console.error(
    "usage: pnpm bench:paired --baseline DIR [--library pile-run] [--work instant] [--n 100000] [--rounds 20]"
  )
  process.exit(2)
}
const library = option("--library", "pile-run")
const work = option("--work", "instant") as Work
const n = Number(option("--n", "100000"))
const rounds = Number(option("--rounds", "20"))
const trees = [{ name: "baseline", dir: resolve(baseline) }, { name: "this tree", dir: resolve(here, "../../..") }]

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
  // Alternate which goes first, so neither always runs right after the other's garbage.
  const order = round % 2 === 0 ? [0, 1] : [1, 0]
  for (const k of order) {
    const before = process.cpuUsage()
    await adapters[k]!.batch(n, 64, work, false)
    const used = process.cpuUsage(before)
    samples[k]!.push((used.user + used.system) * 1000 / n)
  }
}
const [base, now] = samples.map((s) => median(s)) as [number, number]
console.log(`${library}, ${work}, n=${n}, ${rounds} rounds: CPU ns per task (median)`)
console.log(`  baseline   ${base.toFixed(0)}  (min ${Math.min(...samples[0]!).toFixed(0)})`)
console.log(`  this tree  ${now.toFixed(0)}  (min ${Math.min(...samples[1]!).toFixed(0)})`)
console.log(`  ratio      ${(now / base).toFixed(2)}`)
process.exit(0)
