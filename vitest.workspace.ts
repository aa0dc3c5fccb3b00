// The test projects, one per package (plus slow or service-backed groups as they appear).
// vitest 5 no longer reads this file on its own: vitest.config.ts imports it.
export default [
  "packages/executor"
]
