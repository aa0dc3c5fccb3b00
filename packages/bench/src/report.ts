/**
 * The report: Markdown tables (printed, and pasted into docs/performance.md) and a hand-written SVG chart.
 */
import type { Machine } from "./machine.ts"
import type { Scenario } from "./model.ts"
import type { Row } from "./plan.ts"
import { median } from "./stats.ts"
import type { Target } from "./targets.ts"

export interface Report {
  readonly date: string
  readonly quick: boolean
  readonly elapsedSeconds: number
  readonly load: { readonly before: number; readonly after: number }
  readonly machine: Machine
  readonly versions: Record<string, string>
  readonly rows: ReadonlyArray<Row>
  readonly targets: ReadonlyArray<Target>
}

// ---------------------------------------------------------------------------------------------------------
// numbers
// ---------------------------------------------------------------------------------------------------------

const int = (x: number): string => Math.round(x).toLocaleString("en-US")
const dec = (x: number, digits: number): string =>
  x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
const ratio = (x: number): string => `${x >= 100 ? int(x) : x >= 10 ? dec(x, 1) : dec(x, 2)}x`
const range = (row: Row, f: (x: number) => string): string => {
  const values = row.samples.map((s) => s.value)
  return values.length < 2 ? "-" : `${f(Math.min(...values))} - ${f(Math.max(...values))}`
}

const table = (header: ReadonlyArray<string>, lines: ReadonlyArray<ReadonlyArray<string>>): string => {
  const out = [`| ${header.join(" | ")} |`, `| ${header.map(() => "---").join(" | ")} |`]
  for (const line of lines) out.push(`| ${line.join(" | ")} |`)
  return out.join("\n")
}

const rowsOf = (report: Report, scenario: Scenario): ReadonlyArray<Row> =>
  report.rows.filter((row) => row.scenario === scenario)

const baseline = (rows: ReadonlyArray<Row>, label: string): number | undefined =>
  rows.find((row) => row.label === label && row.median !== undefined)?.median?.value

/** The label, with the row's note when it has one (reduced size, skipped, error). */
const name = (row: Row): string => row.label + (row.note === undefined ? "" : ` (${row.note})`)

const unavailable = (row: Row, columns: number): Array<string> => [
  row.label,
  ...Array.from({ length: columns - 1 }, (_, i) => i === 0 ? `${row.status}: ${row.note ?? ""}` : "-")
]

// ---------------------------------------------------------------------------------------------------------
// tables
// ---------------------------------------------------------------------------------------------------------

const perTaskTable = (report: Report, scenario: Scenario, reference: string): string => {
  const rows = rowsOf(report, scenario)
  const base = baseline(rows, reference)
  const floor = baseline(rows, "promise pool (floor)")
  const header = ["library", "n", "ns/task (median)", "min - max", "CPU ms", `x ${reference}`]
  if (floor !== undefined) header.push("x floor")
  return table(
    header,
    rows.map((row) => {
      const m = row.median
      if (m === undefined) return unavailable(row, header.length)
      const line = [
        name(row),
        int(row.job.n),
        int(m.value),
        range(row, int),
        int(m.cpuMs),
        base === undefined ? "-" : ratio(m.value / base)
      ]
      if (floor !== undefined) line.push(ratio(m.value / floor))
      return line
    })
  )
}

const latencyTable = (report: Report): string =>
  table(
    ["library", "n", "wall ms (median)", "min - max", "ideal ms", "x ideal", "CPU ms"],
    rowsOf(report, "latency").map((row) => {
      const m = row.median
      if (m === undefined) return unavailable(row, 7)
      return [
        name(row),
        int(row.job.n),
        dec(m.value, 1),
        range(row, (x) => dec(x, 1)),
        String(row.ideal),
        ratio(m.value / row.ideal!),
        int(m.cpuMs)
      ]
    })
  )

const rateTable = (report: Report): string =>
  table(
    [
      "library",
      "achieved /s (median)",
      "% of limit",
      "most starts in 1 s (worst run)",
      "windows over (worst run)",
      "over, 1 ms tolerance",
      "wall s"
    ],
    rowsOf(report, "rate").map((row) => {
      const m = row.median
      if (m === undefined) return unavailable(row, 7)
      return [
        row.label,
        dec(m.value, 1),
        `${dec((m.value / row.job.limit!) * 100, 1)}%`,
        String(m.maxInWindow),
        String(m.windowsOver),
        String(m.windowsOverTolerant),
        dec(m.ms / 1000, 2)
      ]
    })
  )

const memoryTable = (report: Report): string => {
  const rows = rowsOf(report, "memory")
  const base = baseline(rows, "p-queue")
  return table(
    ["library", "n", "queued", "heap bytes/task (median)", "min - max", "x p-queue", "queueing ms"],
    rows.map((row) => {
      const m = row.median
      if (m === undefined) return unavailable(row, 7)
      return [
        name(row),
        int(row.job.n),
        int(m.outcomes),
        int(m.value),
        range(row, int),
        base === undefined ? "-" : ratio(m.value / base),
        int(m.ms)
      ]
    })
  )
}

const containmentTable = (report: Report): string => {
  const rows = rowsOf(report, "containment")
  const base = baseline(rows, "Effect.forEach")
  return table(
    ["library", "n", "outcomes", "failures", "all delivered", "ns/task (median)", "min - max", "x Effect.forEach"],
    rows.map((row) => {
      const m = row.median
      if (m === undefined) return unavailable(row, 8)
      return [
        name(row),
        int(row.job.n),
        int(m.outcomes),
        int(m.failures),
        m.outcomes === row.job.n ? "yes" : "NO",
        int(m.value),
        range(row, int),
        base === undefined ? "-" : ratio(m.value / base)
      ]
    })
  )
}

/**
 * The scale rows, plus the overhead rows that ran the same job at another size (same library, task body and
 * concurrency): the full suite times 100,000 tasks once, in the overhead scenarios.
 */
const scaleRows = (report: Report): Array<Row> => {
  const scale = rowsOf(report, "scale")
  const out = [...scale]
  for (const row of report.rows) {
    if (row.scenario !== "overhead" && row.scenario !== "overhead-fork") continue
    const same = scale.filter((s) => s.library === row.library && s.job.work === row.job.work)
    if (same.length === 0 || same.some((s) => s.job.n === row.job.n)) continue
    if (row.job.concurrency !== same[0]!.job.concurrency) continue
    out.push({ ...row, label: same[0]!.label })
  }
  return out
}

const scaleTable = (report: Report): string => {
  const rows = scaleRows(report)
  const sizes = [...new Set(rows.map((row) => row.job.n))].sort((a, b) => a - b)
  const labels = [...new Set(rows.map((row) => row.label))]
  const small = sizes[0]!
  const large = sizes[sizes.length - 1]!
  return table(
    ["library", ...sizes.map((n) => `ns/task at ${int(n)}`), `${int(large)} / ${int(small)}`],
    labels.map((label) => {
      const at = (n: number) => rows.find((row) => row.label === label && row.job.n === n)?.median?.value
      const first = at(small)
      const last = at(large)
      const line = [label]
      for (const n of sizes) {
        const v = at(n)
        line.push(v === undefined ? "-" : int(v))
      }
      line.push(first === undefined || last === undefined ? "-" : ratio(last / first))
      return line
    })
  )
}

const targetsTable = (report: Report): string =>
  table(
    ["target", "measured", "status"],
    report.targets.map((t) => [t.name, t.measured, t.status === "met" ? "**met**" : `**${t.status}**`])
  )

/** Every table, as Markdown. */
export const renderTables = (report: Report): string => {
  const rate = rowsOf(report, "rate")[0]
  const sections: Array<string> = [
    `Run ${report.date}${report.quick ? " (--quick)" : ""}, ${dec(report.elapsedSeconds, 0)} s; ` +
    `load average ${dec(report.load.before, 2)} before, ${dec(report.load.after, 2)} after; ` +
    `${report.machine.cpu}, ${report.machine.cores} cores, ${report.machine.memory}, Node ${report.machine.node}; ` +
    Object.entries(report.versions).map(([k, v]) => `${k} ${v}`).join(", ") + ".",
    "Medians of the repetitions; each run is a fresh process after a warm-up."
  ]
  // A scenario left out with --only has no section.
  const section = (scenario: Scenario, title: string, render: () => string) => {
    if (rowsOf(report, scenario).length > 0) sections.push(`### ${title}`, render())
  }
  section(
    "overhead",
    "overhead: tasks that finish at once (Promise.resolve() / Effect.void), concurrency 64",
    () => perTaskTable(report, "overhead", "Effect.forEach")
  )
  section(
    "overhead-fork",
    "overhead with a forking task: Effect.sync(() => {}) instead of Effect.void (Effect libraries only)",
    () => perTaskTable(report, "overhead-fork", "Effect.forEach")
  )
  section(
    "promise",
    "promise tasks: () => Promise.resolve() (Effect: Effect.tryPromise of it, built per task), concurrency 64",
    () => perTaskTable(report, "promise", "Effect.forEach")
  )
  section("latency", "latency-bound: 5,000 tasks each waiting 2 ms, concurrency 256", () => latencyTable(report))
  if (rate !== undefined) {
    section(
      "rate",
      `rate precision: ${
        int(rate.job.n)
      } tasks at ${rate.job.limit} per ${rate.job.windowMs} ms, each library's own limiter`,
      () => rateTable(report)
    )
  }
  section("memory", "memory: instant tasks queued behind concurrency 1", () => memoryTable(report))
  section("containment", "containment: every 10th task fails, concurrency 64", () => containmentTable(report))
  section("scale", "scale: the overhead scenario at growing sizes, concurrency 64", () => scaleTable(report))
  if (report.rows.some((row) => row.worker !== undefined)) {
    sections.push(`### against the baseline`, baselineTable(report))
  }
  sections.push(`### targets`, targetsTable(report))
  return sections.join("\n\n") + "\n"
}

/**
 * `--baseline`: each Pile row against its baseline twin, measured in the same run, with three ratios of the
 * scenario's figure (for the rate scenario, starts per second, higher is better; for every other lower is better):
 *
 * - median: this tree's median over the baseline's;
 * - paired: the median of the per-repetition ratios (a row's repetition r and its twin's run one after the other,
 *   so they share the machine's state of that moment);
 * - best: this tree's best repetition over the baseline's best. On a shared host a fresh process may run at
 *   half speed throughout (docs/performance.md, "Noise"): interference only ever adds time, so the best of
 *   several repetitions is the code's own cost, and the median can land on either mode.
 *
 * "slower by" takes the median ratio.
 */
const baselineTable = (report: Report): string =>
  table(
    ["scenario", "library", "n", "this tree", "baseline", "this / baseline", "paired", "best", "slower by"],
    report.rows.filter((row) => row.worker !== undefined).flatMap((twin) => {
      const row = report.rows.find((r) =>
        r.worker === undefined && `${r.library}@baseline` === twin.library && r.job.n === twin.job.n &&
        r.job.work === twin.job.work && r.scenario === twin.scenario
      )
      const now = row?.median?.value
      const then = twin.median?.value
      if (row === undefined || now === undefined || then === undefined) return []
      const higherIsBetter = twin.scenario === "rate"
      const ratio = now / then
      const slower = higherIsBetter ? then / now - 1 : ratio - 1
      const reps = Math.min(row.samples.length, twin.samples.length)
      const paired = median(
        Array.from({ length: reps }, (_, i) => row.samples[i]!.value / twin.samples[i]!.value)
      )
      const best = (r: Row) =>
        higherIsBetter
          ? Math.max(...r.samples.map((sample) => sample.value))
          : Math.min(...r.samples.map((sample) => sample.value))
      return [[
        twin.scenario,
        row.label,
        int(row.job.n),
        dec(now, 1),
        dec(then, 1),
        dec(ratio, 2),
        dec(paired, 2),
        dec(best(row) / best(twin), 2),
        slower > 0 ? `${dec(100 * slower, 0)}%` : "-"
      ]]
    })
  )

// ---------------------------------------------------------------------------------------------------------
// chart
// ---------------------------------------------------------------------------------------------------------

const escape = (s: string): string => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

interface Bar {
  readonly label: string
  readonly value: number
  readonly text: string
  readonly color: string
}

interface Panel {
  readonly title: string
  readonly unit: string
  readonly log: boolean
  readonly bars: ReadonlyArray<Bar>
  /** A vertical reference line (the ideal, the limit). */
  readonly marker?: { readonly value: number; readonly label: string } | undefined
}

const colorOf = (row: Row): string =>
  row.library.startsWith("pile")
    ? "#d9480f"
    : row.library.startsWith("effect")
    ? "#1971c2"
    : row.library === "pool"
    ? "#2f9e44"
    : "#868e96"

const perTaskPanel = (report: Report, scenario: Scenario, title: string): Panel | undefined => {
  const rows = rowsOf(report, scenario).filter((row) => row.median !== undefined)
  if (rows.length === 0) return undefined
  const base = baseline(rows, "Effect.forEach")
  return {
    title,
    unit: "ns per task (log scale)",
    log: true,
    bars: rows.map((row) => ({
      label: row.label + (row.library === "bottleneck" ? ` (n=${int(row.job.n)})` : ""),
      value: row.median!.value,
      text: `${int(row.median!.value)} ns` +
        (base === undefined ? "" : ` · ${ratio(row.median!.value / base)} forEach`),
      color: colorOf(row)
    }))
  }
}

const panels = (report: Report): Array<Panel> => {
  const out: Array<Panel | undefined> = []
  out.push(perTaskPanel(report, "overhead", "Overhead: tasks that finish at once, concurrency 64"))
  out.push(perTaskPanel(report, "promise", "Promise tasks (Effect.tryPromise), concurrency 64"))
  out.push(perTaskPanel(report, "overhead-fork", "Overhead with a forking task (Effect.sync)"))
  out.push(perTaskPanel(report, "containment", "Containment: every 10th task fails, all outcomes delivered"))
  const latency = rowsOf(report, "latency").filter((row) => row.median !== undefined)
  if (latency.length > 0) {
    const ideal = latency.find((row) => row.job.n === 5_000)?.ideal ?? latency[0]!.ideal!
    out.push({
      title: "Latency-bound: 5,000 tasks × 2 ms, concurrency 256",
      unit: "wall ms (log scale)",
      log: true,
      marker: { value: ideal, label: `ideal ${ideal} ms` },
      bars: latency.map((row) => ({
        label: row.label + (row.library === "bottleneck" ? ` (n=${int(row.job.n)})` : ""),
        value: row.median!.value,
        text: `${dec(row.median!.value, 1)} ms · ${ratio(row.median!.value / row.ideal!)} ideal`,
        color: colorOf(row)
      }))
    })
  }
  const rate = rowsOf(report, "rate").filter((row) => row.median !== undefined)
  if (rate.length > 0) {
    const limit = rate[0]!.job.limit!
    out.push({
      title: `Rate precision: starts per second against a limit of ${limit}/s`,
      unit: "achieved starts per second",
      log: false,
      marker: { value: limit, label: `limit ${limit}/s` },
      bars: rate.map((row) => ({
        label: row.label,
        value: row.median!.value,
        text: `${dec(row.median!.value, 1)}/s · max ${row.median!.maxInWindow} in 1 s · ${
          row.median!.windowsOver
        } windows over`,
        color: colorOf(row)
      }))
    })
  }
  const memory = rowsOf(report, "memory").filter((row) => row.median !== undefined)
  if (memory.length > 0) {
    const base = baseline(memory, "p-queue")
    out.push({
      title: "Memory: heap bytes per task queued behind concurrency 1",
      unit: "bytes per queued task",
      log: false,
      bars: memory.map((row) => ({
        label: row.label + (row.library === "bottleneck" ? ` (n=${int(row.job.n)})` : ""),
        value: row.median!.value,
        text: `${int(row.median!.value)} B` +
          (base === undefined ? "" : ` · ${ratio(row.median!.value / base)} p-queue`),
        color: colorOf(row)
      }))
    })
  }
  const all = scaleRows(report).filter((row) => row.median !== undefined)
  const order = [...new Set(all.map((row) => row.label))]
  const scale = all.sort((a, b) => order.indexOf(a.label) - order.indexOf(b.label) || a.job.n - b.job.n)
  if (scale.length > 0) {
    const shades = ["#ffa94d", "#f76707", "#a61e4d"]
    const sizes = [...new Set(scale.map((row) => row.job.n))].sort((a, b) => a - b)
    out.push({
      title: "Scale: ns per task as the batch grows (grouped by size)",
      unit: "ns per task (log scale)",
      log: true,
      bars: scale.map((row) => ({
        label: `${row.label}, ${int(row.job.n)}`,
        value: row.median!.value,
        text: `${int(row.median!.value)} ns`,
        color: shades[sizes.indexOf(row.job.n) % shades.length]!
      }))
    })
  }
  return out.filter((panel): panel is Panel => panel !== undefined)
}

/** 1, 2, 2.5 or 5 times a power of ten: the smallest at least `raw`. */
const niceStep = (raw: number): number => {
  const power = 10 ** Math.floor(Math.log10(raw))
  for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= raw) return m * power
  return 10 * power
}

/** Grouped horizontal bars, one panel per scenario; log scales where the values span decades. */
export const renderSvg = (report: Report): string => {
  const width = 1000
  const labelWidth = 290
  const barArea = 400
  const barHeight = 16
  const gap = 6
  const parts: Array<string> = []
  let y = 40
  parts.push(
    `<text x="20" y="26" font-size="16" font-weight="bold">Pile vs peers: medians of ${
      escape(report.quick ? "a --quick run" : "pnpm bench")
    } (${escape(report.machine.cpu)}, ${report.machine.cores} cores, Node ${escape(report.machine.node)})</text>`
  )
  for (const panel of panels(report)) {
    y += 22
    parts.push(
      `<text x="20" y="${y}" font-size="13" font-weight="bold">${escape(panel.title)}` +
        `<tspan font-size="11" font-weight="normal" fill="#495057">  (${escape(panel.unit)})</tspan></text>`
    )
    y += panel.marker === undefined ? 8 : 20
    const values = panel.bars.map((b) => b.value).concat(panel.marker === undefined ? [] : [panel.marker.value])
    const max = Math.max(...values)
    const min = Math.min(...values.filter((v) => v > 0))
    // Log scales start below the smallest value's decade, so that every bar shows; linear ones end on a
    // round step.
    const step = niceStep((max * 1.05) / 4)
    const lo = panel.log ? 10 ** Math.floor(Math.log10(min / 3)) : 0
    const hi = panel.log ? 10 ** Math.ceil(Math.log10(max)) : Math.ceil((max * 1.05) / step) * step
    const scale = (v: number): number =>
      panel.log
        ? (Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) * barArea
        : (v / hi) * barArea
    const top = y
    const height = panel.bars.length * (barHeight + gap)
    // Grid: each decade on a log scale, round steps on a linear one.
    const ticks: Array<number> = []
    if (panel.log) { for (let t = lo; t <= hi * 1.0001; t *= 10) ticks.push(t) }
    else for (let t = 0; t <= hi * 1.0001; t += step) ticks.push(t)
    for (const t of ticks) {
      const x = labelWidth + scale(t)
      parts.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${top + height}" stroke="#e9ecef"/>`)
      parts.push(
        `<text x="${x}" y="${top + height + 11}" font-size="9" fill="#868e96" text-anchor="middle">${
          t === 0 ? "0" : t >= 1000 ? int(t) : dec(t, t < 1 ? 2 : 0)
        }</text>`
      )
    }
    for (const bar of panel.bars) {
      const w = Math.max(1, scale(bar.value))
      parts.push(
        `<text x="${labelWidth - 8}" y="${y + barHeight - 4}" font-size="11" text-anchor="end">${
          escape(bar.label)
        }</text>`
      )
      parts.push(
        `<rect x="${labelWidth}" y="${y}" width="${w.toFixed(1)}" height="${barHeight}" fill="${bar.color}"/>`
      )
      parts.push(
        `<text x="${labelWidth + w + 6}" y="${y + barHeight - 4}" font-size="10" fill="#212529">${
          escape(bar.text)
        }</text>`
      )
      y += barHeight + gap
    }
    if (panel.marker !== undefined) {
      const x = labelWidth + scale(panel.marker.value)
      parts.push(
        `<line x1="${x}" y1="${top - 4}" x2="${x}" y2="${top + height}" stroke="#212529" stroke-dasharray="4 3"/>`
      )
      parts.push(
        `<text x="${x + 3}" y="${top - 6}" font-size="9" fill="#212529">${escape(panel.marker.label)}</text>`
      )
    }
    y += 16
  }
  y += 10
  parts.push(
    `<text x="20" y="${y}" font-size="10" fill="#495057">orange: Pile · blue: Effect · green: hand-written promise pool (floor) · grey: p-limit, p-queue, Bottleneck</text>`
  )
  y += 10
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}" font-family="Helvetica, Arial, sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...parts,
    `</svg>`,
    ""
  ].join("\n")
}
