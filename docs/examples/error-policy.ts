// An HTTP API that fails with 429 (retry after), 500 (retry with backoff), 400 (record) and a defect,
// under one typed error policy. Run: pnpm exec node docs/examples/error-policy.ts
import { ErrorPolicy, Executor } from "@pile/executor"
import { Data, Duration, Effect, Schedule, Stream } from "effect"
import assert from "node:assert/strict"

// The API's failures, as typed errors. RateLimited carries retryAfter: the retry waits at least that long,
// and the whole key pauses meanwhile.
class RateLimited extends Data.TaggedError("RateLimited")<{ readonly retryAfter: Duration.Duration }> {}
class ServerError extends Data.TaggedError("ServerError")<{ readonly status: number }> {}
class BadRequest extends Data.TaggedError("BadRequest")<{ readonly reason: string }> {}
type ApiError = RateLimited | ServerError | BadRequest

// A fake API: request n answers according to a script, one answer per attempt.
const answers: Record<number, Array<"ok" | 429 | 500 | 400 | "crash">> = {
  1: ["ok"],
  2: [429, "ok"],
  3: [500, 500, "ok"],
  4: [400],
  5: ["crash"]
}
const calls = new Map<number, number>()
const call = (n: number): Effect.Effect<string, ApiError> =>
  Effect.suspend((): Effect.Effect<string, ApiError> => {
    const attempt = calls.get(n) ?? 0
    calls.set(n, attempt + 1)
    const answer = answers[n]![Math.min(attempt, answers[n]!.length - 1)]!
    switch (answer) {
      case "ok":
        return Effect.succeed(`response ${n}`)
      case 429:
        return Effect.fail(new RateLimited({ retryAfter: Duration.millis(50) }))
      case 500:
        return Effect.fail(new ServerError({ status: 500 }))
      case 400:
        return Effect.fail(new BadRequest({ reason: "missing field" }))
      case "crash":
        return Effect.die(new Error("bug in the client"))
    }
  })

// One decision per tag; the compiler checks that every tag of ApiError has one.
const policy = ErrorPolicy.byTag<ApiError>()({
  RateLimited: ErrorPolicy.retry(Schedule.recurs(5)),
  ServerError: ErrorPolicy.retry(
    Schedule.exponential("10 millis").pipe(Schedule.jittered, Schedule.upTo({ times: 3 }))
  ),
  BadRequest: ErrorPolicy.record
})

const program = Effect.gen(function*() {
  const executor = yield* Executor.make({ concurrency: 4, policy })
  const outcomes = yield* Stream.runCollect(executor.run([1, 2, 3, 4, 5], call, { key: () => "api" }))
  const byInput = new Map(outcomes.map((o) => [o.input, o]))
  assert.deepEqual(
    [1, 2, 3, 4, 5].map((n) => [byInput.get(n)!.kind, byInput.get(n)!.attempts]),
    [["success", 1], ["success", 2], ["success", 3], ["failure", 1], ["defect", 1]]
  )
  const stats = yield* executor.stats
  assert.equal(stats.retries, 3)
  assert.equal(stats.pauses, 1)
  for (const o of outcomes) console.log(`request ${o.input}: ${o.kind} after ${o.attempts} attempt(s)`)
}).pipe(Effect.scoped)

Effect.runPromise(program)
