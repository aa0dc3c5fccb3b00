/**
 * The targets of issue 15, judged on one run's medians. A target that is not met is reported as such.
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

const ratioTarget = (
  name: string,
  threshold: number,
  a: Row | undefined,
  b: Row | undefined,
  describe: (a: number, b: number) => string,
  note?: string
): Target => {
  if (a === undefined || b === undefined) return noData(name, `<= ${threshold}x`)
  const ratio = a.median!.value / b.median!.value
  return {
    name,
    threshold: `<= ${threshold}x`,
    measured: `${describe(a.median!.value, b.median!.value)}: ${fmt(ratio)}x`,
    ratio,
    status: ratio <= threshold ? "met" : "not met",
    note
  }
}

/** The targets of issue 15 (promise tasks, submit, latency, memory per queued task, exact windows, scale). */
export const evaluateTargets = (rows: ReadonlyArray<Row>): Array<Target> => {
  const targets: Array<Target> = []

  // 1. Promise tasks through run: <= 1.1x Effect.forEach and <= 0.6x p-limit; submit <= 1.5x run.
  {
    const run = find(rows, "promise", "Pile run")
    const submit = find(rows, "promise", "Pile submit")
    targets.push(ratioTarget(
      "promise tasks: run <= 1.1x Effect.forEach",
      1.1,
      run,
      find(rows, "promise", "Effect.forEach"),
      (a, b) => `Pile run ${ns(a)} vs Effect.forEach ${ns(b)}`
    ))
    targets.push(ratioTarget(
      "promise tasks: run <= 0.6x p-limit",
      0.6,
      run,
      find(rows, "promise", "p-limit"),
      (a, b) => `Pile run ${ns(a)} vs p-limit ${ns(b)}`
    ))
    targets.push(ratioTarget(
      "promise tasks: submit <= 1.5x run",
      1.5,
      submit,
      run,
      (a, b) => `Pile submit ${ns(a)} vs Pile run ${ns(b)}`
    ))
  }

  // 2. Latency-bound: <= 1.25x the ideal wall time.
  {
    const pile = find(rows, "latency", "Pile run")
    const submit = find(rows, "latency", "Pile submit")
    const floor = find(rows, "latency", "promise pool (floor)")
    const name = "latency-bound <= 1.25x ideal"
    if (pile !== undefined && pile.ideal !== undefined) {
      const ratio = pile.median!.value / pile.ideal
      targets.push({
        name,
        threshold: "<= 1.25x ideal",
        measured: `Pile run ${fmt(pile.median!.value, 1)} ms vs ideal ${pile.ideal} ms: ${fmt(ratio)}x` +
          (submit === undefined ? "" : `; Pile submit ${fmt(submit.median!.value / pile.ideal)}x`),
        ratio,
        status: ratio <= 1.25 ? "met" : "not met",
        note: floor === undefined || floor.ideal === undefined ? undefined : `The promise pool (floor) needs ` +
          `${fmt(floor.median!.value / floor.ideal)}x: a 2 ms setTimeout fires after 2 to 3 ms in Node.`
      })
    } else targets.push(noData(name, "<= 1.25x ideal"))
  }

  // 3. Memory per queued task: <= 150 bytes through run and through submit.
  for (const label of ["Pile run", "Pile submit"]) {
    const row = find(rows, "memory", label)
    const name = `memory: ${label} <= 150 B per queued task`
    if (row === undefined) targets.push(noData(name, "<= 150 B"))
    else {
      targets.push({
        name,
        threshold: "<= 150 B",
        measured: `${fmt(row.median!.value, 0)} B per queued task (${row.job.n.toLocaleString("en-US")} queued)`,
        ratio: row.median!.value / 150,
        status: row.median!.value <= 150 ? "met" : "not met"
      })
    }
  }

  // 4. Rate: every exact model, >= 97% of the limit, zero windows over it at the task body.
  for (const library of ["pile-run", "pile-run-gcra"]) {
    const row = rows.find((r) => r.scenario === "rate" && r.library === library)
    const name = `rate exact (${row?.label ?? library}): >= 97% of the limit, 0 windows over`
    if (row === undefined || row.median === undefined) targets.push(noData(name, ">= 0.97x, 0 windows"))
    else {
      const limit = row.job.limit!
      const ratio = row.median.value / limit
      const over = row.median.windowsOver ?? 0
      targets.push({
        name,
        threshold: ">= 0.97x, 0 windows",
        measured: `${fmt(row.median.value, 1)}/s of ${limit}/s (${fmt(ratio * 100, 1)}%), ` +
          `at most ${row.median.maxInWindow} starts in ${row.job.windowMs} ms at the task body ` +
          `(performance.now()), ${over} windows over (worst of ${row.samples.length} runs)`,
        ratio,
        status: ratio >= 0.97 && over === 0 ? "met" : "not met"
      })
    }
  }

  // 5. Scale: the largest size's ns/task at most 1.2x the smallest's.
  {
    const sizes = rows.filter((row) => row.scenario === "scale" && row.label === "Pile run" && row.median)
      .sort((a, b) => a.job.n - b.job.n)
    const small = sizes[0]
    const large = sizes[sizes.length - 1]
    const name = "scale: ns/task at 1M <= 1.2x at 10k"
    if (small !== undefined && large !== undefined && small !== large) {
      targets.push(ratioTarget(
        name,
        1.2,
        large,
        small,
        (a, b) =>
          `Pile run ${ns(a)} at ${large.job.n.toLocaleString("en-US")} vs ${ns(b)} at ` +
          small.job.n.toLocaleString("en-US")
      ))
    } else targets.push(noData(name, "<= 1.2x"))
  }
  return targets
}
