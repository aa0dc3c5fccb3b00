// The whole `pile` command line, loaded by bin.ts once the Node version is known to be supported.
import { runMain } from "@effect/platform-node/NodeRuntime"
import { main } from "../Cli.ts"

runMain(main)
