// The `pile` executable's first steps, before it loads the command line: the Node version check (run on a
// real old Node, the one the machine has besides the repository's Node 24) and the fast `--version`.
import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { accessSync, constants, readFileSync, writeFileSync } from "node:fs"
import { stripTypeScriptTypes } from "node:module"
import { delimiter, join } from "node:path"
import { bin, tmp } from "./helpers.ts"

const required = process.env["PILE_REQUIRE_SERVICES"] === "1"
const { version } = JSON.parse(readFileSync(join(import.meta.dirname, "..", "package.json"), "utf8")) as {
  readonly version: string
}

/** A `node` on PATH (or in the usual places) older than 22.19, with its version, if the machine has one. */
const oldNode = ((): { readonly path: string; readonly version: string } | undefined => {
  const dirs = [...(process.env["PATH"] ?? "").split(delimiter), "/usr/local/bin", "/usr/bin"]
  for (const dir of dirs) {
    const path = join(dir, "node")
    try {
      accessSync(path, constants.X_OK)
    } catch {
      continue
    }
    const found = spawnSync(path, ["--version"], { encoding: "utf8" }).stdout.trim().replace(/^v/, "")
    const [major = 0, minor = 0] = found.split(".").map(Number)
    if (major > 0 && (major < 22 || (major === 22 && minor < 19))) return { path, version: found }
  }
  return undefined
})()

describe("the pile executable", () => {
  it("--version prints the package's version without loading the command line", () => {
    const result = spawnSync(process.execPath, [bin, "--version"], { encoding: "utf8" })
    assert.strictEqual(result.stdout, `pile v${version}\n`)
    assert.strictEqual(result.status, 0)
  })

  // Node cannot run TypeScript before 22.6: run bin.ts with its types stripped, as the build emits it.
  it.skipIf(oldNode === undefined && !required)(
    "on Node older than 22.19 it prints one line naming the Node it needs, and exits 2",
    () => {
      assert.isDefined(oldNode, "no node older than 22.19 on this machine (PILE_REQUIRE_SERVICES=1 needs one)")
      const script = join(tmp(), "bin.mjs")
      writeFileSync(script, stripTypeScriptTypes(readFileSync(bin, "utf8")))
      for (const args of [["--version"], ["run", "in.jsonl", "--out", "out.jsonl"], []]) {
        const result = spawnSync(oldNode!.path, [script, ...args], { encoding: "utf8" })
        assert.strictEqual(result.stderr, `pile needs Node 22.19 or later (this is ${oldNode!.version})\n`)
        assert.strictEqual(result.stdout, "")
        assert.strictEqual(result.status, 2)
      }
    }
  )
})
