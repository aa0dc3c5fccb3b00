// A batch of LLM requests under RPM and TPM limits: each request reserves its estimated tokens, settles the
// real usage from the response, and a 429 pauses the model's key. Run: pnpm exec node docs/examples/llm-batch.ts
import { ErrorPolicy, Executor, Pile } from "@pile/executor"
import { Clock, Data, Duration, Effect, Exit, Schedule } from "effect"
import assert from "node:assert/strict"

class TooManyRequests extends Data.TaggedError("TooManyRequests")<{ readonly retryAfter: Duration.Duration }> {}

interface Completion {
  readonly text: string
  readonly usage: { readonly total_tokens: number }
}

// A fake chat-completion API that allows 20 requests per 100 ms and answers a 429 when it is exceeded.
const serverStarts: Array<number> = []
const complete = (prompt: string): Effect.Effect<Completion, TooManyRequests> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => {
    const recent = serverStarts.filter((t) => t > now - 100).length
    if (recent >= 20) return Effect.fail(new TooManyRequests({ retryAfter: Duration.millis(100) }))
    serverStarts.push(now)
    // The real usage is known only from the response: here, about a third of the estimate.
    return Effect.succeed({ text: `answer to ${prompt}`, usage: { total_tokens: 40 + prompt.length } }).pipe(
      Effect.delay(Duration.millis(5))
    )
  })

// Estimate a prompt's cost before sending it: prompt tokens (~4 characters each) plus max_tokens.
const estimate = (prompt: string) => Math.ceil(prompt.length / 4) + 100

const program = Effect.gen(function*() {
  const executor = yield* Executor.make({
    concurrency: 8,
    limits: [
      { key: "gpt-x", limit: 15, window: "100 millis" }, // requests: just under the server's 20
      { key: "gpt-x", budget: "tokens", limit: 2_000, window: "100 millis" } // tokens
    ],
    policy: ErrorPolicy.retry(Schedule.exponential("20 millis").pipe(Schedule.upTo({ times: 5 })))
  })
  const prompts = Array.from({ length: 60 }, (_, i) => `prompt number ${i}`)
  const answers = yield* Pile.collect(executor.run(prompts, complete, {
    key: () => "gpt-x",
    cost: (prompt) => ({ tokens: estimate(prompt) }),
    // Settle the token budget with the real usage: the over-estimate goes back to the window.
    settle: (exit) => Exit.isSuccess(exit) ? { tokens: exit.value.usage.total_tokens } : undefined
  }))
  assert.equal(answers.length, 60)
  const stats = yield* executor.stats
  console.log(`${answers.length} answers, ${stats.retries} retries, ${stats.pauses} pauses after a 429`)
}).pipe(Effect.scoped)

Effect.runPromise(program)
