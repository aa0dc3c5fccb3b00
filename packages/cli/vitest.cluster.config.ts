import { defineProject } from "vitest/config"

// pile on a cluster with real parts (Postgres, Redis, worker processes, kill -9): after the other projects,
// alone, on real time.
export default defineProject({
  test: {
    name: "cli-cluster",
    include: ["test/cluster.test.ts"],
    fileParallelism: false,
    sequence: { groupOrder: 1 },
    testTimeout: 240_000,
    hookTimeout: 60_000
  }
})
