#!/usr/bin/env node
/**
 * The `pile` executable. It checks the Node version and answers `--version` before it loads anything else:
 * Effect's Node platform needs Node 22.19 (older versions fail deep inside undici), and loading the command
 * line costs most of the startup time. Everything else runs `Cli.main` with `NodeRuntime.runMain`, which
 * exits with the code `main` fails with (see `Cli` for the exit codes). It is an entry point, not a module
 * to import: importing it starts the command line.
 *
 * This file must stay loadable by old Node versions (no imports but `node:` built-ins above the check).
 *
 * @since 0.1.0
 */
import { createRequire } from "node:module"

const [major = 0, minor = 0] = process.versions.node.split(".").map(Number)
if (major < 22 || (major === 22 && minor < 19)) {
  process.stderr.write(`pile needs Node 22.19 or later (this is ${process.versions.node})\n`)
  process.exit(2)
}

if (process.argv.length === 3 && process.argv[2] === "--version") {
  // The same line as the full command line's --version, without loading it.
  const { version } = createRequire(import.meta.url)("../package.json") as { readonly version: string }
  process.stdout.write(`pile v${version}\n`)
} else {
  await import("./internal/main.ts")
}
