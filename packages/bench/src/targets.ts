/**
 * The targets from the issue, judged on one run's medians. A target that is not met is reported as such.
 */
import type { Scenario } from "./model.ts"
import type { Row } from "./plan.ts"

export interface Target {
  readonly name: string
  readonly threshold: string
  readonly measured: string
  /** The figure compared with the threshold (a ratio), when there is one. */
  readonly ratio?: number | undefined
  readonly status: "met" | "not met" | "pending" | "no data"
  readonly note?: string | undefined
}

const find = (rows: ReadonlyArray<Row>, scenario: Scenario, label: string, n?: number): Row | undefined =>
  rows.find((row) =>
    row.scenario === scenario && row.label === label && (n === undefined || row.job.n === n) &&
    row.median !== undefined
  )

const fmt = (x: number, digits = 2): string => x.toFixed(digits)
const ns = (x: number): string => `${Math.round(x).toLocaleString("en-US")} ns`

const noData = (name: string, threshold: string): Target => ({
  name,
  threshold,
  measured: "-",
  status: "no data"
})

export const evaluateTargets = (rows: ReadonlyArray<Row>): Array<Target> => {
  const targets: Array<Target> = []

  // 1. Overhead per task: at most 1.5x Effect.forEach, and below p-queue.
  {
    const pile = find(rows, "overhead", "Pile run")
    const forEach = find(rows, "overhead", "Effect.forEach")
    const pqueue = find(rows, "overhead", "p-queue")
    const submit = find(rows, "overhead", "Pile submit")
    const bare = find(rows, "overhead", "Pile run (metrics, tracing off)")
    const pileFork = find(rows, "overhead-fork", "Pile run")
    const forEachFork = find(rows, "overhead-fork", "Effect.forEach")
    const forkNote = pileFork !== undefined && forEachFork !== undefined
      ? `With a task that is not an Exit (Effect.sync), Effect.forEach forks a fiber per task too: Pile run ` +
        `${ns(pileFork.median!.value)} vs ${ns(forEachFork.median!.value)}, ` +
        `${fmt(pileFork.median!.value / forEachFork.median!.value)}x.`
      : undefined
    if (pile !== undefined && forEach !== undefined) {
      const ratio = pile.median!.value / forEach.median!.value
      targets.push({
        name: "overhead per task <= 1.5x Effect.forEach",
        threshold: "<= 1.5x",
        measured: `Pile run ${ns(pile.median!.value)} vs Effect.forEach ${ns(forEach.median!.value)}: ` +
          `${fmt(ratio)}x` +
          (submit === undefined ? "" : `; Pile submit ${fmt(submit.median!.value / forEach.median!.value)}x`) +
          (bare === undefined ? "" : `; metrics and tracing off ${fmt(bare.median!.value / forEach.median!.value)}x`),
        ratio,
        status: ratio <= 1.5 ? "met" : "not met",
        note: "Effect.void is an Exit: Effect.forEach completes it inline, without a fiber (a loop, not a pool). " +
          (forkNote ?? "")
      })
    } else targets.push(noData("overhead per task <= 1.5x Effect.forEach", "<= 1.5x"))
    if (pile !== undefined && pqueue !== undefined) {
      const ratio = pile.median!.value / pqueue.median!.value
      targets.push({
        name: "overhead per task below p-queue",
        threshold: "< 1x",
        measured: `Pile run ${ns(pile.median!.value)} vs p-queue ${ns(pqueue.median!.value)}: ${fmt(ratio)}x` +
          (submit === undefined ? "" : `; Pile submit ${fmt(submit.median!.value / pqueue.median!.value)}x`),
        ratio,
        status: ratio < 1 ? "met" : "not met"
      })
    } else targets.push(noData("overhead per task below p-queue", "< 1x"))
  }

  // 2. Latency-bound: within 5% of the ideal.
  {
    const pile = find(rows, "latency", "Pile run")
    const floor = find(rows, "latency", "promise pool (floor)")
    if (pile !== undefined && pile.ideal !== undefined) {
      const ratio = pile.median!.value / pile.ideal
      targets.push({
        name: "latency-bound within 5% of ideal",
        threshold: "<= 1.05x ideal",
        measured: `Pile run ${fmt(pile.median!.value, 1)} ms vs ideal ${pile.ideal} ms: ${fmt(ratio)}x`,
        ratio,
        status: ratio <= 1.05 ? "met" : "not met",
        note: floor === undefined || floor.ideal === undefined ? undefined : `The promise pool (floor) needs ` +
          `${fmt(floor.median!.value / floor.ideal)}x: a 2 ms setTimeout fires after 2 to 3 ms in Node.`
      })
    } else targets.push(noData("latency-bound within 5% of ideal", "<= 1.05x ideal"))
  }

  // 3. Rate precision: >= 98% of the limit, zero windows over the limit.
  {
    const name = "rate >= 98% of the limit, zero 1 s windows over it"
    const pile = rows.find((row) => row.scenario === "rate" && row.library === "pile-run")
    if (pile === undefined) targets.push(noData(name, ">= 0.98x, 0 windows"))
    else if (pile.status === "pending") {
      targets.push({ name, threshold: ">= 0.98x, 0 windows", measured: pile.note ?? "pending", status: "pending" })
    } else if (pile.median === undefined) targets.push(noData(name, ">= 0.98x, 0 windows"))
    else {
      const limit = pile.job.limit!
      const ratio = pile.median.value / limit
      const over = pile.median.windowsOver ?? 0
      targets.push({
        name,
        threshold: ">= 0.98x, 0 windows",
        measured: `${fmt(pile.median.value, 1)}/s of ${limit}/s (${fmt(ratio * 100, 1)}%), ` +
          `at most ${pile.median.maxInWindow} starts in 1 s, ${over} windows over ` +
          `(${pile.median.windowsOverTolerant ?? 0} with 1 ms tolerance)`,
        ratio,
        status: ratio >= 0.98 && over === 0 ? "met" : "not met"
      })
    }
  }

  // 4. Memory per queued task <= p-queue.
  {
    const pile = find(rows, "memory", "Pile submit")
    const pqueue = find(rows, "memory", "p-queue")
    if (pile !== undefined && pqueue !== undefined) {
      const ratio = pile.median!.value / pqueue.median!.value
      targets.push({
        name: "memory per queued task <= p-queue",
        threshold: "<= 1x",
        measured: `Pile ${fmt(pile.median!.value, 0)} B vs p-queue ${fmt(pqueue.median!.value, 0)} B: ${fmt(ratio)}x`,
        ratio,
        status: ratio <= 1 ? "met" : "not met"
      })
    } else targets.push(noData("memory per queued task <= p-queue", "<= 1x"))
  }

  // 5. Scale: the largest size's ns/task at most 1.2x the smallest's.
  {
    const sizes = rows.filter((row) => row.scenario === "scale" && row.label === "Pile run" && row.median)
      .sort((a, b) => a.job.n - b.job.n)
    const small = sizes[0]
    const large = sizes[sizes.length - 1]
    const name = "scale: ns/task at 1M <= 1.2x at 10k"
    if (small !== undefined && large !== undefined && small !== large) {
      const ratio = large.median!.value / small.median!.value
      targets.push({
        name,
        threshold: "<= 1.2x",
        measured: `Pile run ${ns(large.median!.value)} at ${large.job.n.toLocaleString("en-US")} vs ` +
          `${ns(small.median!.value)} at ${small.job.n.toLocaleString("en-US")}: ${fmt(ratio)}x`,
        ratio,
        status: ratio <= 1.2 ? "met" : "not met"
      })
    } else targets.push(noData(name, "<= 1.2x"))
  }
  return targets
}
