// One process of the nginx benchmark's library rows (`scripts/bench-nginx.ts` starts it): `count` GETs of
// `url` through one executor with the rate-limit guide's recipe for leaky-bucket servers (GCRA, burst 1,
// margin 0.2 ms), its budget in memory or, with a Redis URL, shared with the other processes. One attempt per
// request (no retries: the row measures the spacing). Prints `{ "ok": n, "rateLimited": n, "other": n }`.
//
//   node scripts/bench-nginx-library.ts <url> <count> <rate per second> [<redis url> <prefix>] [--start <epoch ms>]
import * as NodeRedis from "@effect/platform-node/NodeRedis"
import { Executor, Pile, RateLimitRedis } from "@pile/executor"
import { Effect, Layer } from "effect"

const [url, countText, rateText, redisUrl, prefix] = process.argv.slice(2).filter((a, i, all) =>
  a !== "--start" && all[i - 1] !== "--start"
)
const startAt = Number(process.argv[process.argv.indexOf("--start") + 1] ?? 0)
const count = Number(countText)
const rate = Number(rateText)

const request = () => fetch(url!).then(async (response) => (await response.arrayBuffer(), response.status))

const program = Effect.gen(function*() {
  const store = redisUrl === undefined ? undefined : yield* RateLimitRedis.make({ prefix })
  const executor = yield* Executor.make({
    concurrency: 16,
    limits: [{ limit: rate, window: "1 second", algorithm: "gcra", burst: 1, margin: "0.2 millis" }],
    store,
    shutdown: { mode: "cancel" }
  })
  // The processes of one row start together.
  const wait = startAt - Date.now()
  if (wait > 0) yield* Effect.sleep(wait)
  const statuses = yield* Pile.collect(
    executor.run(Array.from({ length: count }, (_, i) => i), () => Effect.promise(request))
  )
  const ok = statuses.filter((s) => s === 200).length
  const rateLimited = statuses.filter((s) => s === 429).length
  return { ok, rateLimited, other: count - ok - rateLimited }
}).pipe(Effect.scoped)

const runnable = redisUrl === undefined
  ? program
  : program.pipe(Effect.provide(Layer.orDie(NodeRedis.layer({ url: redisUrl }))))

const result = await Effect.runPromise(runnable as Effect.Effect<{ ok: number; rateLimited: number; other: number }>)
process.stdout.write(JSON.stringify(result) + "\n")
process.exit(0)
