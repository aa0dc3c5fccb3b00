import { defineProject } from "vitest/config"

/** Tests that run real servers or processes on real time: a project of their own (vitest.services.config.ts). */
export const services = ["test/RateLimitRedis.test.ts", "test/RateLimitNginx.test.ts", "test/RateLimitStore.test.ts"]

export default defineProject({
  test: {
    name: "executor",
    include: ["test/**/*.test.ts"],
    exclude: services,
    testTimeout: 30_000
  }
})
