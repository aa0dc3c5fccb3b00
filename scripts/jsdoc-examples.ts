// Compiles and runs every ```ts example in the JSDoc of the published packages' public modules
// (packages/<name>/src/*.ts), so that a documentation example that breaks fails CI.
//
// Each example becomes a file node_modules/.cache/jsdoc-examples/<package>/<Module>-<export>-<n>.ts. They are
// type-checked together by `tsc` with the repository's strict options and emitted as JavaScript (Node does
// not strip types under node_modules), then each one runs in its own Node process and must exit 0. An example
// imports the package by its name ("@pile/executor") and asserts its result with node:assert/strict; one
// that cannot run here starts with `// compile only: <reason>` and is type-checked only.
// Run: pnpm exec node scripts/jsdoc-examples.ts [filter], where filter keeps the examples whose file name contains it.
import { spawn, spawnSync } from "node:child_process"
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { availableParallelism } from "node:os"
import { dirname, join, relative } from "node:path"
import { type Doc, packages } from "./jsdoc.ts"

const root = process.cwd()
const cache = join(root, "node_modules/.cache/jsdoc-examples")
const filter = process.argv.slice(2).find((arg) => !arg.startsWith("-"))

interface Extracted {
  /** The example's file, relative to the cache folder. */
  readonly file: string
  /** Where it is written in the sources. */
  readonly source: string
  readonly line: number
  readonly compileOnly: boolean
}

const problems: Array<string> = []
const examples: Array<Extracted> = []

// 1. Extract: every ```ts block of every JSDoc block, named after the export (or member) it documents.
rmSync(cache, { recursive: true, force: true })
const documented = packages(root)
for (const pkg of documented) {
  for (const module of pkg.modules) {
    const labels = new Map<Doc, string>()
    if (module.doc !== undefined) labels.set(module.doc, "module")
    for (const declaration of module.declarations) {
      if (declaration.doc !== undefined && declaration.file === module.file) {
        labels.set(declaration.doc, declaration.name)
      }
      for (const member of declaration.members) {
        if (member.doc !== undefined) labels.set(member.doc, `${declaration.name}.${member.name}`)
      }
    }
    const counts = new Map<string, number>()
    // Re-exported declarations live in another file: their examples are taken from it, under this module.
    const docs = [
      ...module.comments,
      ...module.declarations.filter((d) => d.file !== module.file && d.doc !== undefined).map((d) => {
        labels.set(d.doc!, d.name)
        return d.doc!
      })
    ]
    for (const doc of docs) {
      for (const example of doc.examples) {
        const label = labels.get(doc) ?? `line${doc.line}`
        const n = (counts.get(label) ?? 0) + 1
        counts.set(label, n)
        const file = `${pkg.short}/${module.name}-${label}-${n}.ts`
        if (filter !== undefined && !file.includes(filter)) continue
        const compileOnly = /^\/\/ compile only: \S/.test(example.code)
        const where = `${doc.file}:${example.line}`
        if (!compileOnly && !/from "node:assert(\/strict)?"/.test(example.code)) {
          problems.push(`${where}: the example asserts nothing (import assert from "node:assert/strict")`)
        }
        mkdirSync(join(cache, pkg.short), { recursive: true })
        writeFileSync(join(cache, file), `${example.code}\n`)
        examples.push({ file, source: doc.file, line: example.line, compileOnly })
      }
    }
  }
}

// 2. Type-check and emit JavaScript, with the repository's options. Each package is linked into the cache's
// own node_modules under its name, so that an example imports it as a user would, whether or not the
// repository's root depends on it.
writeFileSync(join(cache, "package.json"), JSON.stringify({ private: true, type: "module" }, null, 2) + "\n")
for (const pkg of documented) {
  const link = join(cache, "node_modules", pkg.name)
  mkdirSync(dirname(link), { recursive: true })
  symlinkSync(relative(dirname(link), join(root, pkg.dir)), link, "dir")
}
writeFileSync(
  join(cache, "tsconfig.json"),
  JSON.stringify(
    {
      extends: relative(cache, join(root, "tsconfig.base.json")),
      compilerOptions: {
        rootDir: ".",
        outDir: "out",
        noEmit: false,
        composite: false,
        incremental: false,
        declaration: false,
        declarationMap: false,
        sourceMap: false
      },
      include: ["*/*.ts"]
    },
    null,
    2
  ) + "\n"
)
const byFile = new Map(examples.map((e) => [e.file, e]))
const tsc = examples.length === 0
  ? { status: 0, stdout: "", stderr: "" }
  : spawnSync(join(root, "node_modules/.bin/tsc"), ["-p", join(cache, "tsconfig.json")], {
    encoding: "utf8",
    cwd: cache
  })
// Errors in an example are problems; errors in the library itself are `pnpm check`'s business (another change
// may be in progress there): they are shown, and the examples still run, since tsc emits despite them.
let exampleErrors = 0
let current: string | undefined
for (const line of `${tsc.stdout}${tsc.stderr}`.split("\n")) {
  if (line.trim() === "") continue
  const located = /^(?:.*?jsdoc-examples\/)?([\w-]+\/[^(:]+\.ts)[(:](\d+)[,:](\d+)\)?:?\s*(.*)$/.exec(line.trim())
  const example = located === null ? undefined : byFile.get(located[1]!)
  if (located !== null && example !== undefined) {
    exampleErrors++
    current = "example"
    problems.push(`${example.source}:${example.line + Number(located[2]) - 1}: ${located[4]} (${example.file})`)
  } else if (/^\S/.test(line) || current === undefined) {
    current = "library"
    console.log(`note: tsc reports an error outside the examples (see pnpm check): ${line.trim()}`)
  } else if (current === "example") {
    problems[problems.length - 1] += ` ${line.trim()}`
  }
}
const compiled = tsc.status === 0 || exampleErrors === 0

// 3. Run each example in its own process, several at a time.
const runnable = compiled ? examples.filter((e) => !e.compileOnly) : []
const run = (example: Extracted): Promise<void> =>
  new Promise((resolve) => {
    const started = Date.now()
    const script = join(cache, "out", example.file.replace(/\.ts$/, ".js"))
    const child = spawn(process.execPath, [script], {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
      // V8's code cache across the runs: every example loads the same modules.
      env: { ...process.env, NODE_COMPILE_CACHE: join(root, "node_modules/.cache/node-compile-cache") }
    })
    let output = ""
    child.stdout.on("data", (chunk) => (output += chunk))
    child.stderr.on("data", (chunk) => (output += chunk))
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000)
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      const ms = Date.now() - started
      if (code === 0) console.log(`ok   ${example.file} (${ms} ms)`)
      else {
        console.error(`FAIL ${example.file} (exit ${code ?? signal})\n${output}`)
        problems.push(`${example.source}:${example.line}: the example failed when run (${example.file})`)
      }
      resolve()
    })
  })
const queue = [...runnable]
const workers = Array.from({ length: Math.max(2, availableParallelism() * 2) }, async () => {
  while (queue.length > 0) await run(queue.shift()!)
})
await Promise.all(workers)

for (const problem of problems) console.error(problem)
const compileOnly = examples.filter((e) => e.compileOnly).length
console.log(
  `${examples.length} JSDoc examples ${
    compiled ? "type-checked" : "failed to type-check"
  }: ${runnable.length} run, ${compileOnly} compile only; ${problems.length} problem(s)`
)
process.exit(problems.length > 0 ? 1 : 0)
