import { defineProject } from "vitest/config"

export default defineProject({
  test: {
    name: "cli",
    include: ["test/**/*.test.ts"],
    exclude: ["test/cluster.test.ts"],
    // End-to-end tests start real processes: generous bounds for a busy machine; at most 3 run at once.
    testTimeout: 120_000,
    maxConcurrency: 3,
    hookTimeout: 30_000
  }
})
