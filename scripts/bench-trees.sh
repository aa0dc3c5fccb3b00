#!/usr/bin/env bash
# `scripts/bench-trees.sh DIR COMMIT...`: one checkout per commit under DIR (DIR/<commit>), each with this
# tree's bench harness and the executor's sources of that commit, installed: the trees `pnpm bench:paired
# --chain` and `pnpm bench --baseline` compare (docs/performance.md, "Against an earlier commit").
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$1
shift
mkdir -p "$dir"
for commit in "$@"; do
  tree="$dir/$commit"
  if [ -d "$tree" ]; then echo "$tree: exists"; continue; fi
  git worktree add -q --detach "$tree" HEAD
  (
    cd "$tree"
    rm -rf packages/executor/src
    git checkout -q "$commit" -- packages/executor/src
    npx -y pnpm@12.21.0 install --offline --frozen-lockfile > /dev/null 2>&1 || npx -y pnpm@12.21.0 install --frozen-lockfile > /dev/null
  )
  echo "$tree: the executor at $commit"
done
