#!/usr/bin/env bash
# The packages as a user gets them. Builds and packs @pile/executor, @pile/cli and @pile/cluster, checks what the tarballs
# hold, then installs them with plain npm into fresh apps outside the workspace (no workspace links) and
# there:
#   1. follows docs/guides/getting-started.md, "A project of your own", as written (scripts/guide-script.ts
#      turns the section into commands; only the package name becomes the local tarball), on Node 24;
#   2. runs its program on Node 22 too (the npm package node@22), compiled and as TypeScript;
#   3. type-checks the program with TypeScript 5.9, 6.0 and the guide's own (latest), under NodeNext and
#      under Bundler resolution, with skipLibCheck false;
#   4. runs the installed `pile`: --version (time and memory printed; at most 80 MB), the one-line refusal
#      on Node older than 22.19 (exit 2), and one `pile run` against the mock API on 127.0.0.1 on Node 24
#      and on Node 22;
#   5. dry-runs the release: `pnpm -r publish --dry-run` (docs/releasing.md).
# Exits non-zero on the first failure.
# Run: pnpm release:check (or bash scripts/package-check.sh); PILE_KEEP=1 keeps the temporary folder.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if ! command -v pnpm >/dev/null; then pnpm() { npx -y pnpm@12.21.0 "$@"; }; fi

work=$(mktemp -d "${TMPDIR:-/tmp}/pile-package-check.XXXXXX")
mock_pid=""
cleanup() {
  if [ -n "$mock_pid" ]; then kill "$mock_pid" 2>/dev/null || true; fi
  if [ "${PILE_KEEP:-}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
step() { echo "--- package-check: $*"; }
fail() {
  echo "package-check: $*" >&2
  exit 1
}

# The repository's Node 24 (the pinned devDependency), alone on a bin folder: the apps see no workspace tool.
node24=$(readlink -f "$root/node_modules/.bin/node")
mkdir -p "$work/node24/bin"
ln -s "$node24" "$work/node24/bin/node"
export PATH="$work/node24/bin:$PATH"
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
[ "$(node --version)" = "$("$node24" --version)" ] || fail "node on PATH is not the repository's Node 24"

step "build and pack"
pnpm build
mkdir -p "$work/packs"
for package in executor cli cluster; do (cd "packages/$package" && pnpm pack --pack-destination "$work/packs" >/dev/null); done
executor_tgz=$(ls "$work"/packs/pile-executor-*.tgz)
cli_tgz=$(ls "$work"/packs/pile-cli-*.tgz)
cluster_tgz=$(ls "$work"/packs/pile-cluster-*.tgz)

step "what the tarballs hold"
node - "$executor_tgz" "$cli_tgz" "$cluster_tgz" "$root/LICENSE" <<'EOF'
// Lists each tarball with tar and checks its files and its package.json as published.
const { execFileSync } = require("node:child_process")
const { readFileSync } = require("node:fs")
const [executor, cli, cluster, license] = process.argv.slice(2)
const problems = []
for (const [tgz, bin] of [[executor, undefined], [cli, "./dist/bin.js"], [cluster, undefined]]) {
  const files = execFileSync("tar", ["tzf", tgz], { encoding: "utf8" }).split("\n").filter(Boolean)
  const read = (path) => execFileSync("tar", ["xzf", tgz, "-O", `package/${path}`], { encoding: "utf8" })
  const pkg = JSON.parse(read("package.json"))
  const say = (problem) => problems.push(`${pkg.name}: ${problem}`)
  for (const file of ["LICENSE", "README.md", "CHANGELOG.md", "package.json", "dist/index.js", "dist/index.d.ts"]) {
    if (!files.includes(`package/${file}`)) say(`${file} is missing`)
  }
  if (read("LICENSE") !== readFileSync(license, "utf8")) say("LICENSE differs from the repository's")
  for (const file of files) if (/tsbuildinfo|\.test\.|^package\/test\//.test(file)) say(`ships ${file}`)
  for (const field of ["repository", "homepage", "bugs", "license", "description"]) {
    if (pkg[field] === undefined) say(`no ${field} field`)
  }
  const text = JSON.stringify(pkg)
  if (text.includes("workspace:")) say("a workspace: range was left in package.json")
  if (text.includes("./src/")) say("package.json points into src/")
  if (!/^\^4\.1/.test(pkg.peerDependencies?.effect ?? "")) say(`effect is not a ^4.1 peer dependency`)
  if (pkg.dependencies?.effect !== undefined) say("effect is a dependency (two Effects in an app)")
  if (bin !== undefined && pkg.bin?.pile !== bin) say(`bin.pile is ${pkg.bin?.pile}, not ${bin}`)
  if (bin !== undefined && !/^\^4\.1/.test(pkg.peerDependencies?.["@effect/platform-node"] ?? "")) {
    say("@effect/platform-node is not a ^4.1 peer dependency")
  }
  console.log(`${pkg.name}@${pkg.version}: ${files.length} files`)
}
if (problems.length > 0) {
  console.error(problems.join("\n"))
  process.exit(1)
}
EOF

step "getting started, \"A project of your own\", as written"
node scripts/guide-script.ts docs/guides/getting-started.md "A project of your own" \
  --replace "@pile/executor=$executor_tgz" >"$work/guide.sh"
mkdir "$work/guide"
(cd "$work/guide" && bash "$work/guide.sh") 2>&1 | tee "$work/guide.log"
app="$work/guide/my-app"
grep -qx "squares 1 4 9 16 (concurrency 2)" "$work/guide.log" || fail "the guide's program did not print its result"
grep -qx "squares 1 4 9 16 (concurrency 8)" "$work/guide.log" || fail "the guide's program ignored PILE_CONCURRENCY"
[ -z "$(find "$app/node_modules" -name '*.tsbuildinfo' -print -quit)" ] || fail "a .tsbuildinfo was installed"
[ "$(find "$app/node_modules" -name package.json -path '*/effect/package.json' | wc -l)" = 1 ] ||
  fail "the app has more than one copy of effect"

step "Node 22"
npm install --silent node@22 --prefix "$work/node22" >/dev/null
node22="$work/node22/node_modules/.bin/node"
"$node22" --version | grep -q '^v22\.' || fail "npm's node@22 is $("$node22" --version)"
(cd "$app" && "$node22" dist/main.js) | grep -qx "squares 1 4 9 16 (concurrency 2)" || fail "Node 22: dist/main.js"
(cd "$app" && "$node22" --no-warnings src/main.ts) | grep -qx "squares 1 4 9 16 (concurrency 2)" ||
  fail "Node 22: src/main.ts"
echo "ok: $("$node22" --version) runs the program, compiled and as TypeScript"

step "types: TypeScript 5.9, 6.0 and the guide's own, NodeNext and Bundler, skipLibCheck false"
cat >"$app/tsconfig.bundler.json" <<'EOF'
{
  "extends": "./tsconfig.json",
  "compilerOptions": { "module": "Preserve", "moduleResolution": "Bundler", "noEmit": true }
}
EOF
tscs=("$app/node_modules/.bin/tsc")
for version in 5.9 6.0; do
  npm install --silent "typescript@$version" --prefix "$work/ts-$version" >/dev/null
  tscs+=("$work/ts-$version/node_modules/.bin/tsc")
done
for tsc in "${tscs[@]}"; do
  for project in tsconfig.json tsconfig.bundler.json; do
    (cd "$app" && "$tsc" -p "$project" --noEmit --skipLibCheck false) || fail "$("$tsc" --version), $project"
  done
  echo "ok: $("$tsc" --version | tr -d '\n'), NodeNext and Bundler"
done

step "the pile command, installed from its tarball"
mkdir "$work/cli-app"
cd "$work/cli-app"
npm init -y >/dev/null
npm pkg set type=module
# @pile/cli depends on @pile/executor, which is not on the registry yet: both tarballs, as a release would.
npm install --silent "$executor_tgz" "$cli_tgz"
for shared in effect @effect/platform-node; do
  [ "$(find "$PWD/node_modules" -path "*/node_modules/$shared/package.json" | wc -l)" = 1 ] ||
    fail "the pile app has more than one copy of $shared"
done
pile="$work/cli-app/node_modules/.bin/pile"
expected="pile v$(node -p 'require("./node_modules/@pile/cli/package.json").version')"
[ "$("$pile" --version)" = "$expected" ] || fail "pile --version: $("$pile" --version)"
if [ -x /usr/bin/time ]; then
  /usr/bin/time -f "%e %M" -o "$work/time" "$pile" --version >/dev/null
  read -r seconds kilobytes <"$work/time"
  echo "pile --version: ${seconds} s, $((kilobytes / 1024)) MB (targets: 0.2 s, 80 MB)"
  [ "$kilobytes" -lt $((80 * 1024)) ] || fail "pile --version used $((kilobytes / 1024)) MB"
fi
[ "$(PATH="$(dirname "$node22"):$PATH" "$pile" --version)" = "$expected" ] || fail "pile on Node 22"
# The machine's old Node, if it has one (the repository's own scripts never run on it).
old=""
for candidate in $(which -a node 2>/dev/null) /usr/local/bin/node /usr/bin/node; do
  [ -x "$candidate" ] || continue
  version=$("$candidate" --version)
  if node -e 'const [a, b] = process.argv[1].slice(1).split(".").map(Number); process.exit(a < 22 || (a === 22 && b < 19) ? 0 : 1)' "$version"; then
    old=$candidate
    break
  fi
done
if [ -n "$old" ]; then
  status=0
  message=$(PATH="$(dirname "$old"):$PATH" "$pile" --version 2>&1 >/dev/null) || status=$?
  [ "$status" = 2 ] || fail "pile on $("$old" --version) exited $status"
  [ "$message" = "pile needs Node 22.19 or later (this is $("$old" --version | tr -d v))" ] ||
    fail "pile on $("$old" --version) said: $message"
  echo "ok: on $("$old" --version), pile says \"$message\" and exits 2"
else
  echo "no Node older than 22.19 on this machine: the refusal is tested by packages/cli/test/bin.test.ts only"
fi

cat >mock.mjs <<'EOF'
// The mock API of @pile/cli on 127.0.0.1 and a free port, until killed; its URL goes to the file named.
import { MockServer } from "@pile/cli"
import { Effect } from "effect"
import { writeFileSync } from "node:fs"

await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
  const server = yield* MockServer.make()
  writeFileSync(process.argv[2], server.url)
  yield* Effect.never
})))
EOF
node mock.mjs "$work/mock-url" &
mock_pid=$!
for _ in $(seq 1 300); do [ -s "$work/mock-url" ] && break; sleep 0.1; done
[ -s "$work/mock-url" ] || fail "the mock API did not start"
url=$(cat "$work/mock-url")
for i in $(seq 1 20); do echo "{\"id\": $i, \"url\": \"$url/items/$i\"}"; done >requests.jsonl
for runtime in "$work/node24/bin/node" "$node22"; do
  rm -f results.jsonl
  PATH="$(dirname "$runtime"):$PATH" "$pile" run requests.jsonl --out results.jsonl --rate 200/s --json --quiet \
    >summary.json || fail "pile run on $("$runtime" --version) exited $?: $(cat summary.json)"
  node -e '
    const summary = JSON.parse(require("fs").readFileSync("summary.json", "utf8"))
    const records = require("fs").readFileSync("results.jsonl", "utf8").trim().split("\n")
    if (summary.ok !== 20 || summary.failed !== 0 || records.length !== 20) {
      console.error("pile run:", JSON.stringify(summary), records.length, "records")
      process.exit(1)
    }
    console.log(`ok: on ${process.argv[1]}, pile run sent ${summary.ok} requests to the mock API: ${records.length} records`)
  ' "$("$runtime" --version)"
done
kill "$mock_pid"
mock_pid=""
cd "$root"

step "release dry run"
pnpm -r publish --dry-run --no-git-checks
echo "package-check: ok"
