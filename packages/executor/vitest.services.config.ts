import { defineProject } from "vitest/config"
import { services } from "./vitest.config.ts"

// Real redis-server, nginx and child processes on real time: run after the other projects, one file at a
// time, so timing assertions do not compete with the CPU-heavy property suites.
export default defineProject({
  test: {
    name: "executor-services",
    include: services,
    fileParallelism: false,
    sequence: { groupOrder: 1 },
    testTimeout: 120_000
  }
})
