// One conformance suite that every rate-limit store passes: the in-memory store and the Redis store (a real
// redis-server). Times are passed explicitly (the Redis store runs with `time: "client"`), so both stores
// are driven on the same time line.
import { NodeRedis } from "@effect/platform-node"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Ref, type Scope } from "effect"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import * as Executor from "../src/Executor.ts"
import type { Bucket, Claim } from "../src/internal/limiter.ts"
import * as RateLimit from "../src/RateLimit.ts"
import * as RateLimitRedis from "../src/RateLimitRedis.ts"
import { startRedis } from "./services.ts"

const redis = await startRedis()
afterAll(() => redis?.stop())

let run = 0
// Without a redis-server only the memory store runs (CI sets PILE_REQUIRE_SERVICES=1: a missing server fails).
const stores: Array<[string, () => Effect.Effect<RateLimit.RateLimitStore, unknown, Scope.Scope>]> = [
  ["memory", () => Effect.sync(RateLimit.memoryStore)],
  ...(redis === undefined ? [] : [[
    "redis",
    // The connection lives in the test's scope.
    () =>
      Effect.flatMap(
        Layer.build(NodeRedis.layer({ url: redis.url })),
        (context) =>
          RateLimitRedis.make({ prefix: `pile-test:${process.pid}:${run++}:`, time: "client" }).pipe(
            Effect.provideContext(context)
          )
      )
  ] as [string, () => Effect.Effect<RateLimit.RateLimitStore, unknown, Scope.Scope>]])
]

const reserve = (store: RateLimit.RateLimitStore, claims: ReadonlyArray<Claim>, now: number) =>
  store.reserve(`r${Math.random()}`, claims, now)

let bucketId = 0
const bucket = (
  algorithm: Bucket["algorithm"],
  limit: number,
  window: number,
  burst = 1,
  budget = "requests"
): Bucket => ({
  id: `b${bucketId++}`,
  budget,
  algorithm,
  limit,
  window,
  burst,
  margin: 0
})
const claim = (b: Bucket, amount = 1): Claim => ({ bucket: b, amount })

describe.each(stores)("RateLimitStore conformance: %s", (_, makeStore) => {
  it.live("sliding window: L per W, the next one waits until the oldest leaves the window", () =>
    Effect.scoped(Effect.gen(function*() {
      const store = yield* makeStore()
      const b = bucket("sliding-window", 3, 1000)
      for (const t of [0, 10, 20]) assert.strictEqual((yield* reserve(store, [claim(b)], t))._tag, "Reserved")
      const denied = yield* reserve(store, [claim(b)], 500)
      assert.deepStrictEqual(denied, { _tag: "Denied", retryAt: 1000, blocking: [b.id] })
      assert.strictEqual((yield* reserve(store, [claim(b)], 999.5))._tag, "Denied")
      assert.strictEqual((yield* reserve(store, [claim(b)], 1000))._tag, "Reserved")
      assert.strictEqual((yield* reserve(store, [claim(b)], 1000))._tag, "Denied")
    })))

  it.live("sliding window with amounts: a denial says when enough units leave", () =>
    Effect.scoped(Effect.gen(function*() {
      const store = yield* makeStore()
      const b = bucket("sliding-window", 10, 1000, 1, "tokens")
      assert.strictEqual((yield* reserve(store, [claim(b, 6)], 0))._tag, "Reserved")
      assert.strictEqual((yield* reserve(store, [claim(b, 3)], 200))._tag, "Reserved")
      const denied = yield* reserve(store, [claim(b, 5)], 300)
      assert.strictEqual(denied._tag === "Denied" ? denied.retryAt : -1, 1000)
      assert.strictEqual((yield* reserve(store, [claim(b, 1)], 300))._tag, "Reserved")
      const later = yield* reserve(store, [claim(b, 5)], 1000)
      assert.strictEqual(later._tag, "Reserved")
    })))

  it.live("several budgets are reserved all or nothing, and a denial names only the buckets that refused", () =>
    Effect.scoped(Effect.gen(function*() {
      const store = yield* makeStore()
      const requests = bucket("sliding-window", 5, 1000)
      const tokens = bucket("sliding-window", 10, 1000, 1, "tokens")
      assert.strictEqual((yield* reserve(store, [claim(requests), claim(tokens, 8)], 0))._tag, "Reserved")
      const denied = yield* reserve(store, [claim(requests), claim(tokens, 5)], 1)
      assert.strictEqual(denied._tag, "Denied")
      assert.deepStrictEqual(denied._tag === "Denied" ? denied.blocking : [], [tokens.id])
      // The denied reservation took no request: four are still free.
      for (let i = 0; i < 4; i++) assert.strictEqual((yield* reserve(store, [claim(requests)], 2))._tag, "Reserved")
      assert.strictEqual((yield* reserve(store, [claim(requests)], 2))._tag, "Denied")
    })))

  it.live("settle refunds an over-estimate and charges an under-estimate, in the window it was reserved in", () =>
    Effect.scoped(Effect.gen(function*() {
      const store = yield* makeStore()
      const tokens = bucket("sliding-window", 10, 1000, 1, "tokens")
      const first = yield* reserve(store, [claim(tokens, 10)], 0)
      if (first._tag !== "Reserved") return assert.fail("the first reservation fits")
      yield* store.settle(first.reservation, [3])
      assert.strictEqual((yield* reserve(store, [claim(tokens, 7)], 1))._tag, "Reserved")
      assert.strictEqual((yield* reserve(store, [claim(tokens, 1)], 2))._tag, "Denied")
      yield* store.settle(first.reservation, [0])
      assert.strictEqual((yield* reserve(store, [claim(tokens, 3)], 3))._tag, "Reserved")
    })))

  it.live("GCRA: burst 1 spaces starts W / L apart; a larger burst lets that many through at once", () =>
    Effect.scoped(Effect.gen(function*() {
      const store = yield* makeStore()
      const even = bucket("gcra", 10, 1000)
      assert.strictEqual((yield* reserve(store, [claim(even)], 0))._tag, "Reserved")
      const denied = yield* reserve(store, [claim(even)], 50)
      assert.strictEqual(denied._tag === "Denied" ? denied.retryAt : -1, 100)
      assert.strictEqual((yield* reserve(store, [claim(even)], 100))._tag, "Reserved")
      const bursty = bucket("gcra", 10, 1000, 3)
      for (let i = 0; i < 3; i++) assert.strictEqual((yield* reserve(store, [claim(bursty)], 0))._tag, "Reserved")
      const fourth = yield* reserve(store, [claim(bursty)], 0)
      assert.strictEqual(fourth._tag === "Denied" ? fourth.retryAt : -1, 100)
    })))

  it.live("token bucket: B at once, then r per millisecond", () =>
    Effect.scoped(Effect.gen(function*() {
      const store = yield* makeStore()
      const b = bucket("token-bucket", 10, 1000, 5)
      for (let i = 0; i < 5; i++) assert.strictEqual((yield* reserve(store, [claim(b)], 0))._tag, "Reserved")
      const denied = yield* reserve(store, [claim(b)], 0)
      assert.strictEqual(denied._tag === "Denied" ? denied.retryAt : -1, 100)
      assert.strictEqual((yield* reserve(store, [claim(b)], 100))._tag, "Reserved")
    })))

  // With an asynchronous store a task starts one round trip after its reservation: the bound is on the
  // admission times the store granted, which a wrapper records here; every task must also have run.
  it("I12 the executor on this store: no window admits more than L, every task is admitted", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 20, max: 200 }),
        fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 15 }),
        async (limit, window, arrivals) => {
          const program = Effect.gen(function*() {
            const inner = yield* makeStore()
            const log: Array<number> = []
            // No `memory` field: the executor goes through `reserve`, the asynchronous path, for both stores.
            const store: RateLimit.RateLimitStore = {
              settle: inner.settle,
              reserve: (id, claims, now) =>
                Effect.tap(
                  inner.reserve(id, claims, now),
                  (r) => Effect.sync(() => r._tag === "Reserved" && log.push(now))
                )
            }
            const ran = yield* Ref.make(0)
            const executor = yield* Executor.make({
              concurrency: 4,
              shutdown: { mode: "cancel" },
              limits: [{ limit, window }],
              store
            })
            const fibers = yield* Effect.forEach(arrivals, (arrival) =>
              Effect.forkChild(Effect.andThen(
                Effect.sleep(arrival),
                Effect.flatMap(executor.submit(Ref.update(ran, (n) => n + 1)), (h) => h.await)
              )))
            // Real I/O (Redis) and virtual time: advance in small steps and let replies arrive in between, until
            // every task has run. Virtual time is not bounded (on a busy machine, replies take many steps); real
            // time is, so a lost task fails the property instead of hanging the suite.
            const deadline = Date.now() + 20_000
            while ((yield* Ref.get(ran)) < arrivals.length && Date.now() < deadline) {
              yield* TestClock.adjust(5)
              yield* Effect.promise(() => new Promise((r) => setImmediate(r)))
            }
            assert.strictEqual(yield* Ref.get(ran), arrivals.length, "every task ran within 20 s of real time")
            const exits = yield* Fiber.joinAll(fibers)
            return { log, exits, ran: yield* Ref.get(ran) }
          }).pipe(Effect.scoped, Effect.provide(TestClock.layer()))
          const { exits, log, ran } = await Effect.runPromise(program)
          assert.strictEqual(ran, arrivals.length)
          assert.strictEqual(log.length, arrivals.length)
          assert.isTrue(exits.every(Exit.isSuccess))
          const sorted = [...log].sort((a, b) => a - b)
          for (let i = 0; i < sorted.length; i++) {
            const inWindow = sorted.filter((t) => t >= sorted[i]! && t < sorted[i]! + window).length
            assert.isAtMost(inWindow, limit)
          }
        }
      ),
      { numRuns: 40 }
    )
  }, 120_000)
})
