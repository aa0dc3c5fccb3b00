// GCRA spacing against a real leaky-bucket server: nginx `limit_req rate=100r/s` (burst 0) rejects a request
// that arrives sooner than 10 ms after the last one it accepted. TestClock cannot show timer drift, so this
// runs on real time and asserts counts and rates, not how fast our code ran.
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import * as Executor from "../src/Executor.ts"
import { startNginx } from "./services.ts"
import { engineOf } from "./support.ts"

const RATE = 100
const nginx = await startNginx(RATE)
afterAll(() => nginx?.stop())

const request = () => fetch(nginx!.url).then(async (r) => (await r.text(), r.status))

describe.skipIf(nginx === undefined)("GCRA spacing against nginx limit_req", () => {
  it.live(
    "100 per second, burst 1: at least 95% accepted on the first try, at 95% of the rate or more",
    () =>
      Effect.gen(function*() {
        const total = 300
        // Warm up the HTTP client (module loading, first connections) before measuring; let nginx's bucket drain.
        yield* Effect.promise(() => request())
        yield* Effect.sleep(50)
        const executor = yield* Executor.make({
          concurrency: 16,
          limits: [{ limit: RATE, window: "1 second", algorithm: "gcra", burst: 1, margin: "0.2 millis" }],
          shutdown: { mode: "cancel" }
        })
        // The executor's start times, as it anchors each admission to the first step of the task's fiber.
        const memory = engineOf(executor).config.store.memory!
        const anchor = memory.anchor.bind(memory)
        const starts: Array<number> = []
        memory.anchor = (reservation, at) => {
          starts.push(at)
          anchor(reservation, at)
        }
        const outcomes = yield* Stream.runCollect(executor.run(
          Array.from({ length: total }, (_, i) => i),
          () => Effect.promise(request)
        ))
        const accepted = outcomes.filter((o) => o.exit._tag === "Success" && o.exit.value === 200).length
        const rate = (total - 1) / ((starts[total - 1]! - starts[0]!) / 1000)
        const gaps = starts.slice(1).map((t, i) => t - starts[i]!)
        assert.strictEqual(starts.length, total)
        assert.isAtLeast(
          Math.min(...gaps),
          1000 / RATE,
          "no two starts closer than 10 ms: the pacer never starts early"
        )
        assert.isAtLeast(accepted / total, 0.95, `accepted ${accepted} of ${total} on the first try`)
        assert.isAtLeast(rate, 0.95 * RATE, `achieved ${rate.toFixed(1)} per second`)
      }),
    30_000
  )
})
