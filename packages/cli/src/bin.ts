#!/usr/bin/env node
/**
 * The `pile` executable: runs `Cli.main` with `NodeRuntime.runMain`, which exits with the code `main` fails
 * with (see `Cli` for the exit codes). It is an entry point, not a module to import: importing it starts the
 * command line.
 *
 * @since 0.1.0
 */
import { runMain } from "@effect/platform-node/NodeRuntime"
import { main } from "./Cli.ts"

runMain(main)
