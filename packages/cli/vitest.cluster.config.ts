import { defineProject } from "vitest/config"

// pile on a cluster with real parts (Postgres, Redis, worker processes, kill -9): alone, on real time, after every
// other project, the service-backed ones included (its load would skew their timing bounds).
export default defineProject({
  test: {
    name: "cli-cluster",
    include: ["test/cluster.test.ts"],
    fileParallelism: false,
    sequence: { groupOrder: 2 },
    testTimeout: 240_000,
    hookTimeout: 60_000
  }
})
