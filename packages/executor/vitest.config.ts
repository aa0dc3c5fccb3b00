import { defineProject } from "vitest/config"

/** Tests that run real servers or processes on real time: a project of their own (vitest.services.config.ts). */
export const services = ["test/RateLimitRedis.test.ts", "test/RateLimitNginx.test.ts", "test/RateLimitStore.test.ts"]

export default defineProject({
  test: {
    name: "executor",
    include: ["test/**/*.test.ts"],
    exclude: services,
    // A bound for hangs, not a speed check: the property and race suites take 2 to 5 s each on a quiet machine
    // and several times that at a load of 8 on 2 cores.
    testTimeout: 120_000
  }
})
