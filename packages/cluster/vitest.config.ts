import { defineProject } from "vitest/config"

export default defineProject({
  test: {
    name: "cluster",
    include: ["test/**/*.test.ts"],
    exclude: ["test/**/*.services.test.ts"]
  }
})
