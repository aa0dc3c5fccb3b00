// Model-checks the executor protocol (packages/executor/model/executor.pml) with SPIN.
//
// For every configuration of a sweep of small sizes it runs `spin -a`, compiles pan.c with gcc, and runs pan:
// once for safety (assertions, the Invariants monitor, invalid end states) and once per LTL property with weak
// fairness (acceptance cycles). Then it runs each seeded bad variant of the model and requires SPIN to find a
// counterexample, printed as a one-line summary of its trail. Exits non-zero if a real configuration has an
// error, or a bad variant is not caught. Everything is built in a temporary directory.
//
// Usage: pnpm exec node scripts/verify-model.ts [--jobs N] [--only REGEX] [--keep]
import { execFile, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const MODEL = fileURLToPath(new URL("../packages/executor/model/executor.pml", import.meta.url))
const CLAIMS = ["drain_terminates", "cancel_terminates", "progress", "delivered"] as const

type Defines = Readonly<Record<string, number | true>>

interface Check {
  /** "safety" (assertions and invalid end states, -DSAFETY) or the name of an LTL property (pan -a -f -N). */
  readonly property: string
}

interface Job {
  readonly label: string
  readonly defines: Defines
  readonly checks: ReadonlyArray<Check>
  /** A seeded bug: every check must produce a counterexample. */
  readonly bad?: { readonly what: string }
}

interface PanResult {
  readonly property: string
  readonly errors: number
  readonly states: number
  /** The first error pan reported ("assertion violated ...", "acceptance cycle ...", "invalid end state ..."). */
  readonly message: string | undefined
  /** The search was cut short (depth or memory): the result proves nothing. */
  readonly incomplete: string | undefined
  readonly trail: string | undefined
}

interface JobResult {
  readonly job: Job
  readonly results: ReadonlyArray<PanResult>
  readonly seconds: number
  readonly failure: string | undefined
}

// -------------------------------------------------------------------------------------------------------------
// the sweep
// -------------------------------------------------------------------------------------------------------------

// The model's own parameters: the consumer may be present (slow or fast) or absent, a rate budget of 1 refilled
// by a timer, one caller cancel, the "suspend" strategy, and the last task's caller reacting to its resumption
// (it supersedes task 0, or resubmits once task 0's outcome comes, or submits like the others).
const base: Defines = { CONSUMER: 2, RATE: 1, CANCELS: 1, STRATEGY: 0, REACTOR: 1 }
const checks = (...claims: ReadonlyArray<string>): ReadonlyArray<Check> => [
  { property: "safety" },
  ...claims.map((property) => ({ property }))
]
const all = checks(...CLAIMS)

const sizeLabel = (d: Defines): string => ["Q", "C", "TASKS", "B"].map((k) => `${k}=${String(d[k])}`).join(" ")

const sweep: Array<Job> = []
for (const TASKS of [2, 3]) {
  for (const Q of [1, 2]) {
    for (const C of [1, 2]) {
      for (const B of [1, 2]) {
        const defines = { ...base, Q, C, TASKS, B }
        sweep.push({ label: sizeLabel(defines), defines, checks: all })
      }
    }
  }
}
// Variations of the other parameters.
const two = { Q: 1, C: 1, TASKS: 2, B: 1 }
const three = { Q: 1, C: 1, TASKS: 3, B: 1 }
sweep.push(
  { label: `${sizeLabel(three)} sliding`, defines: { ...base, ...three, STRATEGY: 1 }, checks: all },
  { label: `${sizeLabel(two)} dropping`, defines: { ...base, ...two, STRATEGY: 2 }, checks: all },
  { label: `${sizeLabel(three)} no rate limit`, defines: { ...base, ...three, RATE: 0 }, checks: all },
  { label: `${sizeLabel(two)} 2 cancels`, defines: { ...base, ...two, CANCELS: 2 }, checks: all }
)

const badVariants: Array<Job> = [
  {
    label: "BAD_NO_UNBOUND",
    defines: { ...base, ...two, CONSUMER: 0, BAD_NO_UNBOUND: true },
    checks: [{ property: "safety" }, { property: "drain_terminates" }],
    bad: { what: "shutdown does not lift the Pile's bound; no consumer (I14)" }
  },
  {
    label: "BAD_FORGET_INTERRUPTED",
    defines: { ...base, ...two, BAD_FORGET_INTERRUPTED: true },
    checks: [{ property: "safety" }],
    bad: { what: "an interrupted task's fiber stops but its outcome is never recorded (I1, I8)" }
  },
  {
    label: "BAD_STALE_PHASE",
    defines: { ...base, ...two, BAD_STALE_PHASE: true },
    checks: [{ property: "safety" }],
    bad: { what: "offer trusts the phase its submitter saw instead of checking it again (I6)" }
  },
  {
    label: "BAD_EARLY_RELEASE",
    defines: { ...base, ...two, BAD_EARLY_RELEASE: true },
    checks: [{ property: "safety" }],
    bad: { what: "an interrupted task frees its slot before its fiber has stopped (I10)" }
  },
  {
    label: "BAD_WAITER_LEAK",
    defines: { ...base, ...two, BAD_WAITER_LEAK: true },
    checks: [{ property: "safety" }],
    bad: { what: "an interrupted waiting submitter is left in submitWaiters (I2, I13)" }
  },
  {
    label: "BAD_LATE_OVERWRITE",
    defines: { ...base, ...two, BAD_LATE_OVERWRITE: true },
    checks: [{ property: "safety" }],
    bad: { what: "an abandoned fiber's late exit records a second outcome (I1, I18)" }
  },
  {
    label: "BAD_ADMIT_AT_CAP",
    defines: { ...base, ...two, BAD_ADMIT_AT_CAP: true },
    checks: [{ property: "safety" }],
    bad: { what: "admission lets a task start while slots == concurrency (`slots > concurrency`) (I10)" }
  },
  {
    label: "BAD_PULL_NO_REFILL",
    defines: { ...base, ...two, BAD_PULL_NO_REFILL: true },
    checks: [{ property: "delivered" }],
    bad: { what: "a pull does not let blocked deliveries into the buffer (I1)" }
  },
  {
    label: "BAD_NO_WAKE",
    defines: { ...base, ...two, BAD_NO_WAKE: true },
    checks: [{ property: "progress" }],
    bad: { what: "a freed slot does not wake the dispatcher (I16)" }
  },
  {
    label: "SYNC_RESUME",
    defines: { ...base, ...two, SYNC_RESUME: true },
    checks: [{ property: "safety" }],
    bad: {
      what: "a resumed submitter's code runs inside the transition that resumed it and cancels a half-moved task (I1)"
    }
  },
  {
    label: "SYNC_RESUME sliding",
    defines: { ...base, ...three, STRATEGY: 1, SYNC_RESUME: true },
    checks: [{ property: "safety" }],
    bad: {
      what: "an outcome waiter's code runs inside the sliding offer that evicted its task, and resubmits (I13)"
    }
  }
]

// -------------------------------------------------------------------------------------------------------------
// running spin, gcc and pan
// -------------------------------------------------------------------------------------------------------------

interface Ran {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

const run = (cmd: string, args: ReadonlyArray<string>, cwd: string): Promise<Ran> =>
  new Promise((resolve) => {
    execFile(cmd, args, { cwd, maxBuffer: 64 * 1024 * 1024, timeout: 15 * 60 * 1000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1
      resolve({ code, stdout, stderr: error !== null && stderr === "" ? error.message : stderr })
    })
  })

const defineFlags = (d: Defines): Array<string> =>
  Object.entries(d).map(([k, v]) => (v === true ? `-D${k}` : `-D${k}=${String(v)}`))

const numberAfter = (text: string, re: RegExp): number => {
  const m = re.exec(text)
  return m?.[1] === undefined ? 0 : Number(m[1])
}

const parsePan = (property: string, out: string): Omit<PanResult, "trail"> => {
  const errorsMatch = /errors: (\d+)/.exec(out)
  const first = /^pan:1: (.*)$/m.exec(out)
  let incomplete: string | undefined
  if (/max search depth too small/.test(out)) incomplete = "max search depth too small"
  else if (/out of memory|aborting|VECTORSZ/.test(out)) incomplete = "pan ran out of memory or vector size"
  else if (errorsMatch === null) incomplete = "no result from pan"
  return {
    property,
    errors: errorsMatch?.[1] === undefined ? 0 : Number(errorsMatch[1]),
    states: numberAfter(out, /(\d+) states, stored/),
    message: first?.[1]?.trim(),
    incomplete
  }
}

const KINDS: Record<string, string> = {
  "1": "success",
  "2": "failure",
  "3": "defect",
  "4": "interrupted",
  "5": "cancelled",
  "6": "evicted",
  "7": "dropped"
}

/** One event line printed by the model's printf ("EV name task arg") as a few words. */
const describeEvent = (fields: ReadonlyArray<string>): string | undefined => {
  const [name, a, b] = fields
  const t = `t${a ?? "?"}`
  switch (name) {
    case "stale":
      return `(${t}'s submitter had seen the executor open, before the shutdown)`
    case "accept":
      return `${t} accepted`
    case "waits":
      return `${t} waits for room`
    case "refused":
      return `${t} refused (${b === "1" ? "QueueFull" : "Closed"})`
    case "withdrawn":
      return `${t}'s waiting submitter interrupted`
    case "start":
      return `${t} starts`
    case "cancel":
      return `${t} cancelled by its caller`
    case "interrupt":
      return undefined
    case "exit":
      return `${t}'s fiber stops (${KINDS[b ?? ""] ?? b ?? "?"})`
    case "finish":
      return `${t} outcome ${KINDS[b ?? ""] ?? b ?? "?"}`
    case "blocked":
      return `${t}'s outcome waits for room in the Pile, keeping its slot`
    case "release":
      return `${t} frees its slot`
    case "hang":
      return `${t}'s finalizer hangs`
    case "reacts":
      return b === "1"
        ? `${t}'s caller submits ${t} to supersede t0`
        : `${t}'s caller waits for t0's outcome, to submit ${t} then`
    case "resume":
      return b === "1" ? `${t}'s caller resumed, its code run at once inside that transition` : `${t}'s caller resumed`
    case "supersede":
      return `${t}'s caller cancels t${b ?? "?"}`
    case "resubmit":
      return `${t}'s caller submits ${t}`
    case "slides":
      return `${t} offered to the full sliding queue, which evicts t${b ?? "?"}`
    case "dequeued":
      return `${t} leaves the intake to start`
    case "shutdown":
      if (b === "2") return "shutdown(cancel) cuts the drain short"
      return a === "1" ? `shutdown(drain, grace ${b === "1" ? "finite" : "Infinity"})` : "shutdown(cancel)"
    case "grace":
      return "the grace period ends"
    case "deadline":
      return "the finalizer deadline passes"
    case "cancelAll":
      return "cancel phase"
    case "abandon":
      return `${t} abandoned`
    case "close":
      return "closed"
    case "read":
      return `consumer reads ${t}`
    case "noConsumer":
      return "no consumer"
    default:
      return fields.join(" ")
  }
}

/** Replays the trail pan left (spin -t) and summarises its events on one line. */
const summariseTrail = async (dir: string, d: Defines, deadlock: boolean): Promise<string> => {
  const replay = await run("spin", ["-t", "-T", ...defineFlags(d), "executor.pml"], dir)
  const steps: Array<string> = []
  for (const line of replay.stdout.split("\n")) {
    const text = line.trim()
    if (text.startsWith("EV ")) {
      const event = describeEvent(text.slice(3).split(/\s+/))
      if (event !== undefined) steps.push(event)
    } else if (text.includes("START OF CYCLE")) {
      steps.push("then forever:")
    }
  }
  if (steps.at(-1) === "then forever:") steps.push("nothing happens")
  const end = /spin: trail ends after (\d+) steps/.exec(replay.stdout)
  return `${steps.join("; ").replace("then forever:; ", "then forever: ")}${
    end?.[1] === undefined ? "" : ` [${end[1]} steps]`
  }. ${finalState(replay.stdout, deadlock)}`
}

const PHASES = ["open", "draining", "cancelling", "closed"]

/** The last state of a replayed trail: a few engine variables, and the processes stuck at an invalid end. */
const finalState = (replay: string, deadlock: boolean): string => {
  const value = (name: string): string | undefined => new RegExp(`^\\s*${name} = (\\d+)$`, "m").exec(replay)?.[1]
  const queue = (name: string): string => {
    const items = new RegExp(`queue \\d+ \\(${name}\\): (.*)$`, "m").exec(replay)?.[1]?.trim() ?? ""
    return `[${items.replace(/\[(\d+)\]/g, "t$1 ").trim().replaceAll(" ", ",")}]`
  }
  const phase = value("phase")
  const facts = [
    `phase ${phase === undefined ? "?" : (PHASES[Number(phase)] ?? phase)}`,
    `intake ${queue("intake")}`,
    `waiters ${queue("waiters")}`,
    `slots ${value("slots") ?? "?"}`,
    `Pile ${queue("items")} blocked ${queue("blocked")}`
  ]
  const stuck: Array<string> = []
  for (const m of deadlock ? replay.matchAll(/proc\s+\d+ \((\w+):\d+\) \S+?:(\d+) \(state \d+\)(.*)$/gm) : []) {
    if (!(m[3] ?? "").includes("valid end state")) stuck.push(`${m[1] ?? "?"} (line ${m[2] ?? "?"})`)
  }
  return `Ends with ${facts.join(", ")}${stuck.length > 0 ? `; stuck: ${stuck.join(", ")}` : ""}.`
}

const runJob = async (job: Job, root: string, index: number): Promise<JobResult> => {
  const started = Date.now()
  const dir = path.join(root, `${String(index).padStart(2, "0")}-${job.label.replace(/[^A-Za-z0-9=]+/g, "_")}`)
  fs.mkdirSync(dir, { recursive: true })
  fs.copyFileSync(MODEL, path.join(dir, "executor.pml"))
  const results: Array<PanResult> = []
  const done = (failure: string | undefined): JobResult => ({
    job,
    results,
    seconds: (Date.now() - started) / 1000,
    failure
  })

  const spin = await run("spin", ["-a", ...defineFlags(job.defines), "executor.pml"], dir)
  if (spin.code !== 0) return done(`spin -a failed: ${(spin.stderr + spin.stdout).trim().split("\n")[0] ?? ""}`)

  const wantsSafety = job.checks.some((c) => c.property === "safety")
  const claims = job.checks.filter((c) => c.property !== "safety").map((c) => c.property)
  // A bad variant's safety search runs breadth-first, for the shortest counterexample.
  const safetyFlags = ["-O2", "-w", "-DSAFETY", "-DNOCLAIM", ...(job.bad === undefined ? [] : ["-DBFS"])]
  const builds: Array<Promise<Ran>> = []
  if (wantsSafety) builds.push(run("gcc", [...safetyFlags, "-o", "pan-safety", "pan.c"], dir))
  if (claims.length > 0) builds.push(run("gcc", ["-O2", "-w", "-DNFAIR=3", "-o", "pan-ltl", "pan.c"], dir))
  for (const build of await Promise.all(builds)) {
    if (build.code !== 0) return done(`gcc failed: ${build.stderr.trim().split("\n")[0] ?? ""}`)
  }

  const panRun = async (property: string, binary: string, args: ReadonlyArray<string>): Promise<PanResult> => {
    const hashBits = Number(job.defines["TASKS"] ?? 3) <= 2 ? "-w20" : "-w22"
    const pan = await run(`./${binary}`, ["-m200000", hashBits, ...args], dir)
    const parsed = parsePan(property, pan.stdout + pan.stderr)
    const deadlock = parsed.message?.startsWith("invalid end state") === true
    const trail = parsed.errors > 0 ? await summariseTrail(dir, job.defines, deadlock) : undefined
    if (fs.existsSync(path.join(dir, "executor.pml.trail"))) {
      fs.renameSync(path.join(dir, "executor.pml.trail"), path.join(dir, `${property}.trail`))
    }
    return { ...parsed, trail }
  }

  for (const check of job.checks) {
    const result = check.property === "safety"
      ? await panRun("safety", "pan-safety", [])
      : await panRun(check.property, "pan-ltl", ["-a", "-f", "-N", check.property])
    results.push(result)
    if (result.incomplete !== undefined) return done(`${result.property}: ${result.incomplete}`)
  }
  return done(undefined)
}

// -------------------------------------------------------------------------------------------------------------
// main
// -------------------------------------------------------------------------------------------------------------

const fmt = (n: number): string => n.toLocaleString("en-US")

const describe = (r: JobResult): { line: string; ok: boolean } => {
  const { job } = r
  const time = `${r.seconds.toFixed(1)}s`
  if (job.bad === undefined) {
    const parts = r.results.map((p) =>
      p.errors === 0 ? `${p.property} ${fmt(p.states)}` : `${p.property} ERROR: ${p.message ?? "?"}`
    )
    const ok = r.failure === undefined && r.results.every((p) => p.errors === 0)
    const status = ok ? "ok  " : "FAIL"
    const failure = r.failure === undefined ? "" : `  (${r.failure})`
    return { line: `${status} ${job.label.padEnd(32)} ${parts.join(", ")} states  ${time}${failure}`, ok }
  }
  const caught = r.failure === undefined && r.results.length === job.checks.length &&
    r.results.every((p) => p.errors > 0)
  const lines = [`${caught ? "caught" : "MISSED"} ${job.label}: ${job.bad.what}  ${time}`]
  for (const p of r.results) {
    lines.push(
      p.errors > 0
        ? `    ${p.property}: ${p.message ?? "error"}\n      trail: ${p.trail ?? "(none)"}`
        : `    ${p.property}: NO COUNTEREXAMPLE (${fmt(p.states)} states)`
    )
  }
  if (r.failure !== undefined) lines.push(`    ${r.failure}`)
  return { line: lines.join("\n"), ok: caught }
}

const pool = async <A, B>(items: ReadonlyArray<A>, size: number, f: (a: A, i: number) => Promise<B>) => {
  const results: Array<Promise<B>> = []
  const slots: Array<Promise<unknown>> = []
  for (const [i, item] of items.entries()) {
    if (slots.length >= size) await Promise.race(slots)
    const p = f(item, i)
    results.push(p)
    const slot: Promise<unknown> = p.then(() => {
      slots.splice(slots.indexOf(slot), 1)
    })
    slots.push(slot)
  }
  return results
}

const main = async (): Promise<number> => {
  const args = process.argv.slice(2)
  const jobsArg = args.indexOf("--jobs")
  const requested = jobsArg >= 0 ? Number(args[jobsArg + 1]) : Number.NaN
  const parallel = Number.isInteger(requested) && requested > 0 ? requested : os.availableParallelism()
  const keep = args.includes("--keep")
  const onlyArg = args.indexOf("--only")
  const only = onlyArg >= 0 ? new RegExp(args[onlyArg + 1] ?? "") : undefined

  for (
    const [tool, versionArg, install] of [["spin", "-V", "apt-get install -y spin"], [
      "gcc",
      "--version",
      "apt-get install -y gcc"
    ]] as const
  ) {
    const probe = spawnSync(tool, [versionArg], { encoding: "utf8" })
    if (probe.error !== undefined || probe.status !== 0) {
      console.error(`verify:model needs ${tool}, which is not installed (or does not run).`)
      console.error(`Install it (Debian/Ubuntu, as root): apt-get update && ${install}`)
      return 2
    }
    if (tool === "spin") console.log(`${probe.stdout.trim()}; model ${path.relative(process.cwd(), MODEL)}`)
  }

  const root = fs.mkdtempSync(path.join(os.tmpdir(), "pile-model-"))
  const started = Date.now()
  const selected = (j: Job) => only === undefined || only.test(j.label)
  const configs = sweep.filter(selected)
  const bads = badVariants.filter(selected)
  const jobs = [...configs, ...bads]
  console.log(
    `${configs.length} configurations (safety + ${CLAIMS.join(", ")} under weak fairness), ` +
      `${bads.length} seeded bad variants; ${parallel} in parallel; in ${root}`
  )
  const results = await pool(jobs, parallel, (job, i) =>
    runJob(job, root, i).catch((error: unknown): JobResult => ({
      job,
      results: [],
      seconds: 0,
      failure: `the runner failed: ${String(error)}`
    })))

  let failed = 0
  let missed = 0
  let states = 0
  for (const [i, pending] of results.entries()) {
    if (i === configs.length) console.log("seeded bad variants (each must produce a counterexample):")
    const r = await pending
    const { line, ok } = describe(r)
    console.log(line)
    for (const p of r.results) states += p.states
    if (!ok && r.job.bad === undefined) failed++
    if (!ok && r.job.bad !== undefined) missed++
  }
  const seconds = (Date.now() - started) / 1000
  console.log(
    `${configs.length - failed}/${configs.length} configurations verified, ` +
      `${bads.length - missed}/${bads.length} bad variants caught; ` +
      `${fmt(states)} states stored in all; ${seconds.toFixed(1)}s`
  )
  if (keep) console.log(`kept ${root}`)
  else fs.rmSync(root, { recursive: true, force: true })
  return failed === 0 && missed === 0 ? 0 : 1
}

process.exitCode = await main()
