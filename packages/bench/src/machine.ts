/** The machine and the library versions, for the report. */
import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
import * as os from "node:os"
import { join } from "node:path"

export interface Machine {
  readonly cpu: string
  readonly cores: number
  readonly memory: string
  readonly os: string
  readonly node: string
  readonly v8: string
}

const lscpuModel = (): string | undefined => {
  try {
    const out = execFileSync("lscpu", { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
    return /^Model name:\s*(.+)$/m.exec(out)?.[1]?.trim()
  } catch {
    return undefined
  }
}

export const machine = (): Machine => ({
  cpu: lscpuModel() ?? os.cpus()[0]?.model ?? "unknown",
  cores: os.availableParallelism(),
  memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
  os: `${os.type()} ${os.release()} ${os.arch()}`,
  node: process.version,
  v8: process.versions.v8
})

const version = (root: string, name: string): string => {
  try {
    const file = join(root, "packages/bench/node_modules", name, "package.json")
    return (JSON.parse(readFileSync(file, "utf8")) as { version: string }).version
  } catch {
    return "unknown"
  }
}

/** The commit measured, and whether the executor's sources differed from it (others may be editing them). */
const commit = (root: string): string => {
  try {
    const git = (...args: Array<string>) =>
      execFileSync("git", ["-C", root, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim()
    const head = git("rev-parse", "--short", "HEAD")
    return git("status", "--porcelain", "packages/executor/src") === "" ? head : `${head}, executor sources modified`
  } catch {
    return "unknown commit"
  }
}

export const versions = (root: string): Record<string, string> => ({
  "@pile/executor": `${version(root, "@pile/executor")} (${commit(root)})`,
  effect: version(root, "effect"),
  "p-limit": version(root, "p-limit"),
  "p-queue": version(root, "p-queue"),
  bottleneck: version(root, "bottleneck")
})
