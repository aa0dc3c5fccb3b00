// The test projects, one per package, plus the service-backed group (real servers and processes on real
// time), which runs after the others. vitest 5 no longer reads this file on its own: vitest.config.ts imports it.
export default [
  "packages/executor",
  "packages/cli",
  "packages/cluster",
  "packages/executor/vitest.services.config.ts",
  "packages/cli/vitest.cluster.config.ts"
]
