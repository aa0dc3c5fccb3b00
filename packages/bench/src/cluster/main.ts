/**
 * The cluster path's cost (`pnpm bench --only cluster`, and part of the full `pnpm bench`):
 *
 * - messages per second of one batch through 1, 2 and 3 runner processes on this machine (a task that
 *   returns at once, so the figure is the cluster's own cost: Postgres writes, sockets, serialization),
 *   against the same batch on one executor in one process;
 * - the time from a runner's death (kill -9) to its work running elsewhere: a batch of 20 ms tasks on two
 *   runners, one killed mid-batch; the time from the kill to the first reply, from the survivor, of a message
 *   whose entity the dead runner served.
 *
 * Postgres: PILE_POSTGRES_URL (a fresh database per measurement is created in it), or Debian's postgresql-15
 * started in a temporary directory. Writes <out>/cluster.json and prints a Markdown table.
 *
 *   node packages/bench/src/cluster/main.ts [--quick] [--n N] [--out DIR]
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cluster, Task } from "@pile/cluster"
import { Executor, Pile } from "@pile/executor"
import { Effect, Layer, Stream } from "effect"
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { chownSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { loadavg, tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { Bench, BenchWide } from "./task.ts"

const here = dirname(fileURLToPath(import.meta.url))
const root = resolve(here, "../../../..")
const quick = process.argv.includes("--quick")
const outIndex = process.argv.indexOf("--out")
const out = resolve(
  root,
  outIndex >= 0 ? process.argv[outIndex + 1]! : quick ? "node_modules/.cache/pile-bench" : "docs/bench"
)
const nIndex = process.argv.indexOf("--n")
const n = nIndex >= 0 ? Number(process.argv[nIndex + 1]) : quick ? 500 : 3_000

const freePort = (): Promise<number> =>
  new Promise((ok, fail) => {
    const server = createServer()
    server.once("error", fail)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => (typeof address === "object" && address !== null ? ok(address.port) : fail()))
    })
  })

// --- Postgres --------------------------------------------------------------------------------------------

const pgBin = "/usr/lib/postgresql/15/bin"
const asPostgres = (args: ReadonlyArray<string>) => {
  const [command, rest] = process.getuid?.() === 0
    ? ["runuser", ["-u", "postgres", "--", ...args]] as const
    : [args[0]!, args.slice(1)] as const
  const result = spawnSync(command, rest, { encoding: "utf8" })
  if (result.status !== 0) throw new Error(`${args.join(" ")}: ${result.stderr}`)
}

const startPostgres = async (): Promise<{ readonly admin: string; readonly stop: () => void }> => {
  const given = process.env["PILE_POSTGRES_URL"]
  if (given !== undefined && given !== "") return { admin: given, stop: () => {} }
  const dir = mkdtempSync(join(tmpdir(), "pile-bench-pg-"))
  if (process.getuid?.() === 0) chownSync(dir, Number(spawnSync("id", ["-u", "postgres"]).stdout), 0)
  const port = await freePort()
  asPostgres([`${pgBin}/initdb`, "-D", `${dir}/data`, "-A", "trust", "-U", "postgres"])
  asPostgres([
    `${pgBin}/pg_ctl`,
    "-D",
    `${dir}/data`,
    "-o",
    `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`,
    "-l",
    `${dir}/log`,
    "-w",
    "start"
  ])
  return {
    admin: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop: () => asPostgres([`${pgBin}/pg_ctl`, "-D", `${dir}/data`, "-m", "fast", "stop"])
  }
}

let databases = 0
const createDatabase = (admin: string): string => {
  const name = `pile_bench_${process.pid}_${++databases}`
  const result = spawnSync("psql", [admin, "-qc", `create database ${name}`], { encoding: "utf8" })
  if (result.status !== 0) throw new Error(`create database ${name}: ${result.stderr}`)
  const url = new URL(admin)
  url.pathname = `/${name}`
  return url.toString()
}

// --- runners ---------------------------------------------------------------------------------------------

interface Runner {
  readonly name: string
  readonly child: ChildProcess
  readonly done: Promise<void>
}

const startRunner = async (url: string, name: string, sleepMs: number): Promise<Runner> => {
  const port = await freePort()
  const child = spawn(process.execPath, [join(here, "runner.ts"), url, String(port), name, String(sleepMs)], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, NODE_COMPILE_CACHE: join(root, "node_modules/.cache/pile-bench/compile-cache") }
  })
  const done = new Promise<void>((ok) => child.once("exit", () => ok()))
  await new Promise<void>((ok, fail) => {
    let text = ""
    child.stdout!.on("data", (chunk) => {
      text += chunk
      if (text.includes("ready")) ok()
    })
    child.once("exit", (code) => fail(new Error(`runner ${name} exited with ${code} before it was ready`)))
  })
  return { name, child, done }
}

const stopRunners = async (runners: ReadonlyArray<Runner>) => {
  for (const runner of runners) runner.child.kill("SIGTERM")
  await Promise.all(runners.map((runner) => runner.done))
}

const seconds = (ms: number) => ms / 1000

/** Sends `inputs` through the cluster at `url`; the outcomes' values name their runners. */
const send = (
  url: string,
  inputs: ReadonlyArray<number>,
  onOutcome?: (value: string, input: number) => void,
  task: Task.Task<number, string, never> = Bench
) =>
  Effect.runPromise(
    Task.run(task, inputs).pipe(
      Stream.runForEach((outcome) =>
        Effect.sync(() => {
          if (outcome.exit._tag !== "Success") throw new Error(`message ${outcome.input}: ${outcome.kind}`)
          onOutcome?.(outcome.exit.value, outcome.input)
        })
      ),
      Effect.provide(Cluster.layerPostgres({ url }))
    )
  )

const range = (from: number, count: number) => Array.from({ length: count }, (_, i) => from + i)

// --- measurements ----------------------------------------------------------------------------------------

interface Throughput {
  readonly label: string
  readonly runners: number
  readonly n: number
  readonly ms: number
  readonly perSecond: number
  readonly perRunner: Record<string, number>
}

/** One batch of `n` instant tasks through `count` runners, after a warm-up batch and a settling pause. */
const throughput = async (admin: string, count: number, task = Bench): Promise<Throughput> => {
  const url = createDatabase(admin)
  const runners: Array<Runner> = []
  for (let i = 1; i <= count; i++) runners.push(await startRunner(url, `r${i}`, 0))
  try {
    // Warm-up: the tables, the connections, the entities; then let the shards settle between the runners.
    await send(url, range(1_000_000, 200), undefined, task)
    await new Promise((ok) => setTimeout(ok, 4_000))
    const perRunner: Record<string, number> = {}
    const t0 = performance.now()
    await send(url, range(0, n), (value) => (perRunner[value] = (perRunner[value] ?? 0) + 1), task)
    const ms = performance.now() - t0
    const label = `cluster, ${count} runner(s)${task === Bench ? "" : ", one entity per message"}`
    return { label, runners: count, n, ms, perSecond: n / seconds(ms), perRunner }
  } finally {
    await stopRunners(runners)
  }
}

/** The same batch on one executor in this process (concurrency 64): no cluster, no storage. */
const local = async (): Promise<Throughput> => {
  const t0 = performance.now()
  const values = await Effect.runPromise(
    Effect.gen(function*() {
      const executor = yield* Executor.Executor
      return yield* Pile.collect(executor.run(range(0, n), () => Effect.succeed("local")))
    }).pipe(Effect.provide(Layer.fresh(Executor.layer({ concurrency: 64, metrics: false }))))
  )
  const ms = performance.now() - t0
  return {
    label: "one executor, no cluster",
    runners: 0,
    n: values.length,
    ms,
    perSecond: values.length / seconds(ms),
    perRunner: { local: n }
  }
}

interface Failover {
  readonly n: number
  readonly killedAfter: number
  /** From the kill to the first reply, from the survivor, of a message of an entity the dead runner served. */
  readonly movedMs: number
  readonly totalMs: number
}

const failover = async (admin: string): Promise<Failover> => {
  const url = createDatabase(admin)
  const runners = [await startRunner(url, "a", 20), await startRunner(url, "b", 20)]
  try {
    await send(url, range(1_000_000, 100))
    await new Promise((ok) => setTimeout(ok, 4_000))
    const total = quick ? 1_000 : 2_000
    const killAfter = Math.floor(total / 4)
    const served = new Map<string, string>() // entity bucket -> runner, before the kill
    let replies = 0
    let killedAt: number | undefined
    let movedAt: number | undefined
    const t0 = performance.now()
    await send(url, range(0, total), (runner, input) => {
      replies++
      const entity = String(bucketOf(Bench.id(input), Bench.entities))
      if (killedAt === undefined) {
        served.set(entity, runner)
        if (replies === killAfter) {
          runners[0]!.child.kill("SIGKILL")
          killedAt = performance.now()
        }
      } else if (movedAt === undefined && runner === "b" && served.get(entity) === "a") {
        movedAt = performance.now()
      }
    })
    const totalMs = performance.now() - t0
    return { n: total, killedAfter: killAfter, movedMs: (movedAt ?? Number.NaN) - killedAt!, totalMs }
  } finally {
    await stopRunners(runners)
  }
}

/** The entity an id goes to (the same FNV-1a as @pile/cluster's, to tell which runner served it). */
const bucketOf = (id: string, entities: number): number => {
  let hash = 0x811c9dc5
  for (let i = 0; i < id.length; i++) {
    hash ^= id.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash % entities
}

const format = (x: number, digits = 0) => x.toLocaleString("en-US", { maximumFractionDigits: digits })

const main = Effect.promise(async () => {
  const postgres = await startPostgres()
  try {
    const loadBefore = loadavg()[0]!
    const rows: Array<Throughput> = [await local()]
    for (const [count, task] of [[1, Bench], [2, Bench], [3, Bench], [2, BenchWide]] as const) {
      rows.push(await throughput(postgres.admin, count, task))
      process.stderr.write(`cluster: ${rows.at(-1)!.label}: ${format(rows.at(-1)!.perSecond)} messages/s\n`)
    }
    const moved = await failover(postgres.admin)
    process.stderr.write(`cluster: kill -9 to work running elsewhere: ${format(moved.movedMs)} ms\n`)
    const report = {
      date: new Date().toISOString(),
      quick,
      load: { before: loadBefore, after: loadavg()[0]! },
      rows,
      failover: moved
    }
    mkdirSync(out, { recursive: true })
    writeFileSync(join(out, "cluster.json"), JSON.stringify(report, null, 2) + "\n")
    const base = rows[0]!.perSecond
    const lines = [
      `#### cluster: a batch of ${
        format(n)
      } tasks that finish at once, runners on this machine (Postgres 15 on loopback)`,
      "",
      "| path | messages/s | ms | messages per runner | cost per message vs one executor |",
      "| --- | --- | --- | --- | --- |",
      ...rows.map((row) =>
        `| ${row.label} | ${format(row.perSecond)} | ${format(row.ms)} | ${
          Object.entries(row.perRunner).map(([k, v]) => `${k} ${v}`).join(", ")
        } | ${format(base / row.perSecond, 1)}x |`
      ),
      "",
      `kill -9 of one of two runners after ${format(moved.killedAfter)} of ${
        format(moved.n)
      } replies (20 ms tasks): its work ran elsewhere ${
        format(moved.movedMs)
      } ms after the kill; the whole batch took ${format(moved.totalMs)} ms.`
    ]
    process.stdout.write(lines.join("\n") + "\n")
  } finally {
    postgres.stop()
  }
})

NodeRuntime.runMain(main)
