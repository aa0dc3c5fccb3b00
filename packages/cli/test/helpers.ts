// Helpers of the end-to-end tests: the mock API in-process, `pile` as a real child process, a real
// redis-server, and readers for the output files.
import { Effect, Exit, Scope } from "effect"
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { connect, createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as MockServer from "../src/MockServer.ts"
import type * as Output from "../src/Output.ts"

export const bin = join(import.meta.dirname, "..", "src", "bin.ts")

export const tmp = (): string => mkdtempSync(join(tmpdir(), "pile-test-"))

export interface Mock {
  readonly url: string
  readonly stats: () => Promise<MockServer.Stats>
  readonly close: () => Promise<void>
}

export const startMock = async (options?: MockServer.Options): Promise<Mock> => {
  const scope = await Effect.runPromise(Scope.make())
  const server = await Effect.runPromise(Scope.provide(MockServer.make(options), scope))
  return {
    url: server.url,
    stats: () => Effect.runPromise(server.stats),
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

export const writeLines = (path: string, lines: ReadonlyArray<unknown>): void => {
  writeFileSync(path, lines.map((line) => typeof line === "string" ? line : JSON.stringify(line)).join("\n") + "\n")
}

/** Every line of an output file, parsed; throws on a line that is not JSON. */
export const readRecords = (path: string): Array<Output.Record> =>
  existsSync(path)
    ? readFileSync(path, "utf8").split("\n").filter((line) => line !== "").map((line) => JSON.parse(line))
    : []

export const lineCount = (path: string): number =>
  existsSync(path) ? readFileSync(path, "utf8").split("\n").filter((line) => line !== "").length : 0

export interface Finished {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

export interface Pile {
  readonly child: ChildProcess
  readonly done: Promise<Finished>
  readonly stderr: () => string
}

/** Starts `node src/bin.ts <args>` (Node 24: vitest's own binary). */
export const startPile = (args: ReadonlyArray<string>): Pile => {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ["ignore", "pipe", "pipe"] })
  let stdout = ""
  let stderr = ""
  child.stdout!.on("data", (chunk) => (stdout += chunk))
  child.stderr!.on("data", (chunk) => (stderr += chunk))
  const done = new Promise<Finished>((resolve) => {
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
  return { child, done, stderr: () => stderr }
}

export const runPile = (args: ReadonlyArray<string>): Promise<Finished> => startPile(args).done

/** Waits until `predicate` holds, polling every 25 ms; fails after `timeoutMs`. */
export const waitUntil = async (what: string, predicate: () => boolean, timeoutMs = 45_000): Promise<void> => {
  const end = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() =>
        typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))
      )
    })
  })

/** What a redis-server on this port says to INFO server ("" when nothing answers). */
const redisInfo = (port: number): Promise<string> =>
  new Promise((resolve) => {
    let reply = ""
    const socket = connect(port, "127.0.0.1", () => socket.write("INFO server\r\n"))
    const done = () => {
      socket.destroy()
      resolve(reply)
    }
    socket.setTimeout(5_000, done)
    socket.on("data", (chunk) => {
      reply += chunk.toString()
      if (/process_id:\d+\r\n/.test(reply)) done()
    })
    socket.once("error", done)
    socket.once("close", done)
  })

export const redisRequired = process.env["PILE_REQUIRE_SERVICES"] === "1"
/** A Redis server CI started for the whole run (each test uses its own key prefix). */
const givenRedis = process.env["PILE_REDIS_URL"]
export const hasRedis = (givenRedis !== undefined && givenRedis !== "") ||
  spawnSync("sh", ["-c", "command -v redis-server"]).status === 0

export interface Redis {
  readonly url: string
  readonly stop: () => Promise<void>
}

/**
 * PILE_REDIS_URL when set, else a fresh redis-server on 127.0.0.1 and a free port, without persistence. The
 * server is ready when the process we started answers on the port (INFO gives its process id): if another
 * process took the port first, ours exits and the next attempt takes another port. Generous time limits: the
 * machine may be busy with other suites.
 */
export const startRedis = async (): Promise<Redis> => {
  if (givenRedis !== undefined && givenRedis !== "") return { url: givenRedis, stop: async () => {} }
  for (let attempt = 1; attempt <= 5; attempt++) {
    const port = await freePort()
    const child = spawn("redis-server", [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no"
    ], {
      stdio: "ignore"
    })
    const end = Date.now() + 30_000
    while (child.exitCode === null && !(await redisInfo(port)).includes(`process_id:${child.pid}\r\n`)) {
      if (Date.now() > end) {
        child.kill("SIGKILL")
        throw new Error(`redis-server did not answer on port ${port} within 30 s`)
      }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    if (child.exitCode !== null) continue
    return {
      url: `redis://127.0.0.1:${port}`,
      stop: () =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null) return resolve()
          child.once("exit", () => resolve())
          child.kill("SIGTERM")
        })
    }
  }
  throw new Error("redis-server did not start in 5 attempts (each on a port another process took)")
}
