// Getting started: an executor provided as a Layer, work submitted under limits, outcomes read from the Pile,
// and a clean shutdown when the scope closes. Run: pnpm exec node docs/examples/getting-started.ts
import { Executor, Pile } from "@pile/executor"
import { Clock, Effect, Stream } from "effect"
import assert from "node:assert/strict"

// 1. The work: a fake HTTP call that takes a few milliseconds, and fails for one page.
const fetchPage = (path: string): Effect.Effect<string, string> =>
  path === "/missing"
    ? Effect.fail(`404 ${path}`)
    : Effect.succeed(`<html>${path}</html>`).pipe(Effect.delay("5 millis"))

// 2. The executor, as a Layer: at most 4 pages at once, at most 100 waiting to start (then submit waits),
// and at most 20 starts in any 100 ms.
const ExecutorLive = Executor.layer({
  name: "pages",
  concurrency: 4,
  capacity: 100,
  limits: [{ limit: 20, window: "100 millis" }]
})

let saved = false

// 3. The program reads the executor from its context, like any other service.
const program = Effect.gen(function*() {
  const executor = yield* Executor.Executor

  // 3a. Submit one task and wait for its result through its handle.
  const home = yield* executor.submit(fetchPage("/"))
  assert.equal(yield* home.join, "<html>/</html>")

  // 3b. The batch form: fetchPage on every path, under the same limits. The Pile it returns is a Stream of
  // outcomes in completion order; the failure is an outcome like the others, and cancels nothing.
  const paths = ["/a", "/b", "/missing", "/c", "/d"]
  const kinds = new Map<string, string>()
  yield* executor.run(paths, fetchPage).pipe(
    Stream.runForEach((outcome) => Effect.sync(() => kinds.set(outcome.input, outcome.kind)))
  )
  assert.equal(kinds.get("/missing"), "failure")
  assert.equal(kinds.get("/d"), "success")

  // 3c. Or collect: every value in input order, or one error that holds every failure.
  const failures = yield* Pile.collect(executor.run(paths, fetchPage)).pipe(Effect.flip)
  assert.equal(failures._tag, "PileFailures") // not an ExecutorError: the executor did not refuse anything
  assert.deepEqual(failures.failures.map((o) => o.input), ["/missing"])
  const pages = yield* Pile.collect(executor.run(["/a", "/b"], fetchPage))
  assert.deepEqual(pages, ["<html>/a</html>", "<html>/b</html>"])

  // 3d. The rate limit binds: 30 more pages need more than one 100 ms window.
  const start = yield* Clock.currentTimeMillis
  const many = yield* Pile.collect(executor.run(Array.from({ length: 30 }, (_, i) => `/p${i}`), fetchPage))
  assert.equal(many.length, 30)
  assert.ok((yield* Clock.currentTimeMillis) - start >= 100)

  // 3e. A task nobody waits for: closing the scope drains the executor, so it still finishes.
  yield* executor.submit(Effect.sleep("20 millis").pipe(Effect.andThen(Effect.sync(() => (saved = true)))))
})

// 4. Provide the layer and run. When the program ends, the layer's scope closes: admission stops, accepted
// work finishes (a drain, 30 seconds at most by default), and every fiber the executor started has ended.
await Effect.runPromise(program.pipe(Effect.provide(ExecutorLive)))
assert.ok(saved)
console.log("getting started: pages fetched under the limits, the failure reported, a clean shutdown")
