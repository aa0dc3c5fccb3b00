// Runs every docs/examples/*.ts program (each asserts its own results); fails if one fails.
// Run: pnpm exec node scripts/run-examples.ts
import { spawnSync } from "node:child_process"
import { readdirSync } from "node:fs"
import { join } from "node:path"

const examples = readdirSync("docs/examples").filter((f) => f.endsWith(".ts")).sort()
let failed = 0
for (const example of examples) {
  const started = Date.now()
  const result = spawnSync(process.execPath, [join("docs/examples", example)], { encoding: "utf8", timeout: 120_000 })
  const ms = Date.now() - started
  if (result.status === 0) {
    console.log(`ok   ${example} (${ms} ms)`)
  } else {
    failed++
    console.error(`FAIL ${example} (exit ${result.status ?? result.signal})\n${result.stdout}\n${result.stderr}`)
  }
}
console.log(`${examples.length - failed}/${examples.length} examples passed`)
process.exit(failed > 0 ? 1 : 0)
