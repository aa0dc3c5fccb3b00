#!/usr/bin/env bash
# `pnpm mutation:parts [file ...]`: the mutation run one source file at a time (stryker.config.json's
# `mutate` list, or the files named, e.g. `engine intake`), each with its own report and incremental file
# under reports/mutation/parts/, then all the parts merged into reports/mutation/mutation.json for
# `pnpm mutation:score`. A part whose report exists is skipped (delete it to redo it; its incremental file
# makes the redo re-test only what changed), so an interrupted run resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
parts=reports/mutation/parts
mkdir -p "$parts"
if [ $# -gt 0 ]; then files=("$@"); else
  mapfile -t files < <(node -e 'for (const f of JSON.parse(require("fs").readFileSync("stryker.config.json", "utf8")).mutate) console.log(f.replace(/^.*\/|\.ts$/g, ""))')
fi
for f in "${files[@]}"; do
  if [ -f "$parts/$f.json" ]; then echo "=== $f: done (delete $parts/$f.json to redo)"; continue; fi
  node -e '
    const fs = require("fs")
    const [f, parts] = process.argv.slice(1)
    const config = JSON.parse(fs.readFileSync("stryker.config.json", "utf8"))
    config.mutate = config.mutate.filter((m) => m.endsWith("/" + f + ".ts"))
    if (config.mutate.length === 0) throw new Error(f + ".ts is not in stryker.config.json mutate")
    config.jsonReporter = { fileName: parts + "/" + f + ".json" }
    config.htmlReporter = { fileName: parts + "/" + f + ".html" }
    config.incrementalFile = parts + "/" + f + ".incremental.json"
    config.reporters = ["progress", "json", "html"]
    fs.writeFileSync(parts + "/" + f + ".config.json", JSON.stringify(config, null, 2))
  ' "$f" "$parts"
  echo "=== $f $(date -u +%T)"
  PILE_MUTATION=1 npx -y pnpm@12.21.0 exec stryker run "$parts/$f.config.json"
done
node -e '
  const fs = require("fs")
  const parts = process.argv[1]
  let merged
  for (const f of fs.readdirSync(parts).filter((f) => /^[A-Za-z]+\.json$/.test(f))) {
    const report = JSON.parse(fs.readFileSync(parts + "/" + f, "utf8"))
    merged ??= { ...report, files: {} }
    Object.assign(merged.files, report.files)
  }
  fs.writeFileSync("reports/mutation/mutation.json", JSON.stringify(merged))
  console.log("merged into reports/mutation/mutation.json: " + Object.keys(merged.files).map((f) => f.replace(/^.*\//, "")).join(", "))
' "$parts"
