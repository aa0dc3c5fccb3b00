// From p-queue: the same crawl (4 at once, 10 starts per second, a per-task timeout), with every outcome kept
// and read as it completes. Run: pnpm exec node docs/examples/migrate-p-queue.ts
import { Executor, Pile } from "@pile/executor"
import { Effect, Stream } from "effect"
import assert from "node:assert/strict"

const fetchJson = (url: string): Effect.Effect<{ readonly url: string }, string> =>
  url.endsWith("/broken")
    ? Effect.fail(`500 ${url}`)
    : Effect.succeed({ url }).pipe(Effect.delay("5 millis"))

const urls = ["https://a.example/1", "https://a.example/broken", "https://b.example/2"]

const program = Effect.gen(function*() {
  // new PQueue({ concurrency: 4, intervalCap: 10, interval: 1000, timeout: 5000 })
  const executor = yield* Executor.make({
    concurrency: 4,
    limits: [{ limit: 10, window: "1 second" }], // a sliding window: exact, no 2x burst at a boundary
    timeout: "5 seconds", // really interrupts the task; its slot is held until it has stopped
    capacity: 1000 // queue.add would grow without bound; submit waits beyond this
  })

  // urls.map((url) => queue.add(() => fetchJson(url))) + queue.on("completed" | "error", ...)
  const seen: Array<string> = []
  yield* executor.run(urls, fetchJson).pipe(
    Stream.runForEach((outcome) => Effect.sync(() => seen.push(`${outcome.kind} ${outcome.input}`)))
  )
  assert.equal(seen.length, 3)
  assert.ok(seen.includes("failure https://a.example/broken"))

  // await Promise.all(urls.map((url) => queue.add(() => fetchJson(url)))): every value, or every failure.
  const error = yield* Pile.collect(executor.run(urls, fetchJson)).pipe(Effect.flip)
  assert.equal(error._tag, "PileFailures")
  assert.deepEqual(error.failures.map((o) => o.input), ["https://a.example/broken"])

  // One task at a time, with a handle: queue.add(fn) returns a promise; submit returns a handle.
  const handle = yield* executor.submit(fetchJson("https://b.example/3"))
  assert.equal((yield* handle.join).url, "https://b.example/3")
  // await queue.onIdle(): closing the scope drains the executor (or call executor.shutdown()).
}).pipe(Effect.scoped)

await Effect.runPromise(program)
console.log("p-queue migration: every outcome kept, the failure reported")
