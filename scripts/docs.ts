// Keeps the code in the docs honest. Every TypeScript/JavaScript code block in README.md, the packages'
// README.md and docs/**/*.md is either the copy of a runnable example (preceded by
// `<!-- example: docs/examples/x.ts -->`; CI runs the file, see scripts/run-examples.ts) or starts with a
// `// not runnable: <reason>` comment.
// Run: pnpm exec node scripts/docs.ts (rewrites example blocks from their files) or --check (fails when a block is
// stale or unmarked).
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"

const check = process.argv.includes("--check")
const codeLanguages = new Set(["ts", "typescript", "js", "javascript", "tsx", "mts"])

const markdownFiles = (dir: string): Array<string> =>
  readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return name === "api" ? [] : markdownFiles(path)
    return name.endsWith(".md") ? [path] : []
  })

const problems: Array<string> = []
let rewritten = 0

for (const file of ["README.md", "packages/executor/README.md", "packages/cli/README.md", ...markdownFiles("docs")]) {
  const lines = readFileSync(file, "utf8").split("\n")
  const out: Array<string> = []
  let example: string | undefined
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!
    const marker = /^<!-- example: (\S+) -->$/.exec(line.trim())
    if (marker !== null) example = marker[1]
    const fence = /^```(\w*)\s*$/.exec(line)
    if (fence === null) {
      out.push(line)
      if (line.trim() !== "" && marker === null) example = undefined
      continue
    }
    // A code block: find its end.
    let end = i + 1
    while (end < lines.length && !/^```\s*$/.test(lines[end]!)) end++
    const body = lines.slice(i + 1, end)
    const language = fence[1] ?? ""
    if (codeLanguages.has(language)) {
      if (example !== undefined) {
        const source = readFileSync(example, "utf8").replace(/\n$/, "").split("\n")
        if (source.join("\n") !== body.join("\n")) {
          if (check) {
            problems.push(`${file}:${i + 1}: the block differs from ${example} (run pnpm exec node scripts/docs.ts)`)
          } else rewritten++
        }
        out.push(line, ...source, "```")
        i = end
        example = undefined
        continue
      }
      if (!/^\/\/ not runnable: \S/.test(body[0] ?? "")) {
        problems.push(
          `${file}:${
            i + 1
          }: a ${language} block is neither an example (<!-- example: path -->) nor "// not runnable: <reason>"`
        )
      }
    }
    out.push(...lines.slice(i, end + 1))
    i = end
    example = undefined
  }
  if (!check) writeFileSync(file, out.join("\n"))
}

if (rewritten > 0) console.log(`rewrote ${rewritten} example block(s)`)
for (const problem of problems) console.error(problem)
process.exit(problems.length > 0 ? 1 : 0)
