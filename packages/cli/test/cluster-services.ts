// Helpers of the cluster tests: a real Postgres (a fresh database per test), a server that logs every request
// it receives, and `pile worker` processes.
import { spawn, spawnSync } from "node:child_process"
import { chownSync, mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { freePort, type Pile, startPile, waitUntil } from "./helpers.ts"

export const required = process.env["PILE_REQUIRE_SERVICES"] === "1"

const pgBin = "/usr/lib/postgresql/15/bin"
const has = (command: string): boolean => spawnSync("sh", ["-c", `command -v ${command}`]).status === 0
const givenPostgres = process.env["PILE_POSTGRES_URL"]

/** Whether a Postgres can be had: PILE_POSTGRES_URL (CI), or Debian's postgresql-15 to start one. */
export const hasPostgres = (givenPostgres !== undefined && givenPostgres !== "") ||
  (has(`${pgBin}/initdb`) && has("psql"))

/** The logging server of the cluster tests is a small Python program (it stamps arrivals with the kernel's time). */
export const hasPython = has("python3")

export interface Postgres {
  /** The URL of the server's `postgres` database: create databases through it. */
  readonly admin: string
  readonly stop: () => void
}

const asPostgres = (args: ReadonlyArray<string>) =>
  process.getuid?.() === 0
    ? ["runuser", ["-u", "postgres", "--", ...args]] as const
    : [args[0]!, args.slice(1)] as const

const run = (args: ReadonlyArray<string>) => {
  const [command, rest] = asPostgres(args)
  const result = spawnSync(command, rest, { encoding: "utf8" })
  if (result.status !== 0) throw new Error(`${args.join(" ")}: ${result.stderr}`)
}

/** Whether this machine can start a Postgres of its own (a test that stops and restarts it needs one). */
export const canStartPostgres = has(`${pgBin}/initdb`) && has("psql")

export interface OwnPostgres extends Postgres {
  /** Stops the server (`pg_ctl stop -m immediate`: as if it crashed). */
  readonly crash: () => void
  /** Starts it again, on the same port, with the same data. */
  readonly restart: () => void
}

/** PILE_POSTGRES_URL when set; else a fresh server in a temporary directory, on 127.0.0.1 and a free port. */
export const startPostgres = async (): Promise<Postgres> => {
  if (givenPostgres !== undefined && givenPostgres !== "") return { admin: givenPostgres, stop: () => {} }
  return startOwnPostgres()
}

/** A fresh server of this test's own, in a temporary directory, on 127.0.0.1 and a free port. */
export const startOwnPostgres = async (): Promise<OwnPostgres> => {
  const dir = mkdtempSync(join(tmpdir(), "pile-pg-"))
  if (process.getuid?.() === 0) chownSync(dir, Number(spawnSync("id", ["-u", "postgres"]).stdout), 0)
  const port = await freePort()
  run([`${pgBin}/initdb`, "-D", `${dir}/data`, "-A", "trust", "-U", "postgres"])
  const start = () =>
    run([
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
  start()
  return {
    admin: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop: () => run([`${pgBin}/pg_ctl`, "-D", `${dir}/data`, "-m", "fast", "stop"]),
    crash: () => run([`${pgBin}/pg_ctl`, "-D", `${dir}/data`, "-m", "immediate", "stop"]),
    restart: start
  }
}

/** A new, empty database on the server: each test has its own cluster tables. */
export const createDatabase = (postgres: Postgres, name: string): string => {
  const result = spawnSync("psql", [postgres.admin, "-qc", `create database ${name}`], { encoding: "utf8" })
  if (result.status !== 0) throw new Error(`create database ${name}: ${result.stderr}`)
  const url = new URL(postgres.admin)
  url.pathname = `/${name}`
  return url.toString()
}

/** Runs one SQL query and returns its rows, tab-separated. */
export const query = (url: string, sql: string): Array<Array<string>> => {
  const result = spawnSync("psql", [url, "-AtF", "\t", "-c", sql], { encoding: "utf8" })
  if (result.status !== 0) throw new Error(`${sql}: ${result.stderr}`)
  return result.stdout.split("\n").filter((line) => line !== "").map((line) => line.split("\t"))
}

/**
 * One request the server received: its id, the worker that sent it, and when it arrived (wall clock, ms): `at`
 * when the kernel received it, `seen` when the server process read it (later on a busy machine).
 */
export interface Arrival {
  readonly id: string
  readonly at: number
  readonly seen: number
  readonly worker: string
}

export interface LoggingServer {
  readonly url: string
  /** The arrivals printed so far (it grows while requests arrive): `sync` first for a complete list. */
  readonly log: Array<Arrival>
  /** Resolves once `log` holds every request that had arrived when it was called. */
  readonly sync: () => Promise<void>
  readonly close: () => Promise<void>
}

/** Now on the clock of the server's stamps (`Arrival.at`). */
export const wallClock = (): number => performance.timeOrigin + performance.now()

/**
 * An HTTP server that answers `GET /r/<id>` with 200 after `delayMs` and logs every arrival, in a process of
 * its own (fixtures/logging-server.py), stamped with the time the kernel received it: neither this process's
 * event loop nor the server's own scheduling moves the stamps.
 */
export const startLoggingServer = async (delayMs: number): Promise<LoggingServer> => {
  const child = spawn("python3", [join(import.meta.dirname, "fixtures", "logging-server.py"), String(delayMs)], {
    stdio: ["pipe", "pipe", "inherit"]
  })
  const log: Array<Arrival> = []
  const synced: Array<() => void> = []
  const listening: Array<(port: number) => void> = []
  const port = new Promise<number>((resolve) => listening.push(resolve))
  createInterface({ input: child.stdout! }).on("line", (line) => {
    if (line === "synced") return synced.shift()?.()
    if (line.startsWith("listening ")) return listening.shift()?.(Number(line.slice("listening ".length)))
    const [at, seen, worker, id] = line.split("\t")
    log.push({ at: Number(at), seen: Number(seen), worker: worker!, id: id! })
  })
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  const listened = await Promise.race([port, exited.then(() => undefined)])
  if (listened === undefined) throw new Error("the logging server (python3) exited before listening")
  return {
    url: `http://127.0.0.1:${listened}`,
    log,
    sync: () =>
      new Promise<void>((resolve) => {
        synced.push(resolve)
        child.stdin!.write("sync\n")
      }),
    close: () => {
      child.stdin!.end()
      return exited
    }
  }
}

/**
 * Starts `pile worker` on a free port, named `name` (its requests carry `x-pile-worker: <name>`), and waits
 * until it says it is ready (it has joined the cluster).
 */
export const startWorker = async (
  cluster: string,
  name: string,
  flags: ReadonlyArray<string>
): Promise<Pile> => {
  const pile = startPile(["worker", "--cluster", cluster, "--port", String(await freePort()), "--name", name, ...flags])
  await waitUntil(`worker ${name} to be ready`, () => pile.stderr().includes(": ready"), 60_000)
  return pile
}

/** Gives freshly started workers time to share the shards out (a few assignment rounds), as an operator would. */
export const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 4_000))

/** The largest number of arrivals in any window of `windowMs`, anywhere on the time line (by `stamp`, default `at`). */
export const maxInWindow = (
  arrivals: ReadonlyArray<Arrival>,
  windowMs: number,
  stamp: (arrival: Arrival) => number = (arrival) => arrival.at
): number => {
  const times = arrivals.map(stamp).sort((a, b) => a - b)
  let best = 0
  let start = 0
  for (let end = 0; end < times.length; end++) {
    while (times[end]! - times[start]! >= windowMs) start++
    best = Math.max(best, end - start + 1)
  }
  return best
}

export const killed = (pile: Pile): Promise<unknown> => {
  pile.child.kill("SIGKILL")
  return pile.done
}
