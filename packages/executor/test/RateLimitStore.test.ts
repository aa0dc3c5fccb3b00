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
import { runs } from "./support.ts"

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

/** A random program for one bucket: reservations and settlements (refunds, exact, extra charges) over time. */
type Step =
  | { readonly _tag: "reserve"; readonly wait: number; readonly amount: number; readonly untilGranted: boolean }
  | { readonly _tag: "settle"; readonly wait: number; readonly pick: number; readonly to: number }

interface Program {
  readonly limit: number
  readonly window: number
  readonly burst: number
  readonly steps: ReadonlyArray<Step>
}

const programOf = (algorithm: Bucket["algorithm"]): fc.Arbitrary<Program> =>
  fc.record({
    limit: fc.integer({ min: 1, max: 5 }),
    window: fc.integer({ min: 20, max: 200 }),
    burst: fc.integer({ min: 1, max: 4 })
  }).chain(({ burst, limit, window }) => {
    const capacity = algorithm === "token-bucket" ? burst : limit
    const step: fc.Arbitrary<Step> = fc.oneof(
      fc.record({
        _tag: fc.constant("reserve" as const),
        wait: fc.integer({ min: 0, max: 60 }),
        amount: fc.integer({ min: 1, max: Math.min(3, capacity) }),
        untilGranted: fc.boolean()
      }),
      fc.record({
        _tag: fc.constant("settle" as const),
        wait: fc.integer({ min: 0, max: 60 }),
        pick: fc.nat(),
        // 0 refunds it all; below its amount refunds part; above it charges extra.
        to: fc.integer({ min: 0, max: 4 })
      })
    )
    return fc.record({
      limit: fc.constant(limit),
      window: fc.constant(window),
      burst: fc.constant(burst),
      steps: fc.array(step, { maxLength: 30 })
    })
  })

interface Granted {
  readonly at: number
  readonly reserved: number
  /** The least amount it was ever reserved or settled to: what the bound counts (see the rate-limit guide). */
  counted: number
}

/** Runs a program against a store, on explicit times; returns every granted reservation. */
const runProgram = (store: RateLimit.RateLimitStore, algorithm: Bucket["algorithm"], p: Program) =>
  Effect.gen(function*() {
    const b = bucket(algorithm, p.limit, p.window, p.burst)
    const granted: Array<Granted & { readonly reservation: RateLimit.Reservation }> = []
    let now = 0
    for (const step of p.steps) {
      now += step.wait
      if (step._tag === "reserve") {
        for (let attempt = 0; attempt < 4; attempt++) {
          const result = yield* reserve(store, [claim(b, step.amount)], now)
          if (result._tag === "Reserved") {
            granted.push({ at: now, reserved: step.amount, counted: step.amount, reservation: result.reservation })
            break
          }
          assert.isAbove(result.retryAt, now, "a denial names a later time")
          if (!step.untilGranted) break
          now = result.retryAt // the earliest time it could be granted: the densest admissions
        }
      } else if (granted.length > 0) {
        const g = granted[step.pick % granted.length]!
        yield* store.settle(g.reservation, [step.to])
        g.counted = Math.min(g.counted, step.to)
      }
    }
    return granted
  })

/**
 * The most each model lets through, checked over every interval that starts and ends at an admission (the
 * maximum is reached by one of those). Units are counted at the least amount they were reserved or settled to.
 */
const checkBound = (algorithm: Bucket["algorithm"], p: Program, granted: ReadonlyArray<Granted>) => {
  const sorted = [...granted].sort((x, y) => x.at - y.at)
  const rate = p.limit / p.window
  for (let i = 0; i < sorted.length; i++) {
    let units = 0
    let largest = 0
    for (let j = i; j < sorted.length; j++) {
      const t = sorted[j]!.at - sorted[i]!.at
      if (algorithm === "sliding-window" && t >= p.window) break
      units += sorted[j]!.counted
      largest = Math.max(largest, sorted[j]!.reserved)
      // Admissions at the same time as j are in the interval too: check once all of them are summed.
      if (j + 1 < sorted.length && sorted[j + 1]!.at === sorted[j]!.at) continue
      const bound = algorithm === "sliding-window"
        ? p.limit
        : algorithm === "gcra"
        ? p.burst - 1 + largest + rate * t
        : p.burst + rate * t
      assert.isAtMost(units, bound + 1e-6, `${algorithm}: ${units} units in [${sorted[i]!.at}, ${sorted[j]!.at}]`)
    }
  }
}

/** The fixed seed of a property, or PILE_SEED (a number or "random"); the test's title shows it for replay. */
const seedOf = (fixed: number): number => {
  const env = process.env["PILE_SEED"]
  return env === undefined || env === ""
    ? fixed
    : env === "random"
    ? Math.floor(Math.random() * 0x7fffffff)
    : Number(env)
}

describe.each(stores)("RateLimitStore conformance: %s", (_, makeStore) => {
  it.live("an adaptive bucket: spaced at its key's lowered rate, held while the key is held, per key", () =>
    Effect.scoped(Effect.gen(function*() {
      const store = yield* makeStore()
      const rate = RateLimit.adaptive({ decrease: 0.5, increase: 1e-9 }) // no recovery to speak of
      const base = bucket("gcra", 10, 1000) // 100 ms apart
      const a: Bucket = { ...base, id: `${base.id}|each=a`, key: "a", adaptive: rate }
      const b: Bucket = { ...base, id: `${base.id}|each=b`, key: "b", adaptive: rate }
      assert.strictEqual((yield* reserve(store, [claim(a)], 0))._tag, "Reserved")
      rate.slowDownAt("a", 0) // half the rate: 200 ms apart, from the next reservation on
      assert.strictEqual((yield* reserve(store, [claim(a)], 100))._tag, "Reserved")
      const denied = yield* reserve(store, [claim(a)], 200)
      assert.strictEqual(denied._tag, "Denied")
      assert.closeTo(denied._tag === "Denied" ? denied.retryAt : 0, 300, 1e-3)
      assert.strictEqual((yield* reserve(store, [claim(b)], 200))._tag, "Reserved") // another key, full rate
      rate.holdAt("b", 5_000, "Retry-After")
      const held = yield* reserve(store, [claim(b)], 1_000)
      assert.deepStrictEqual(held, { _tag: "Denied", retryAt: 5_000, blocking: [b.id] })
      assert.strictEqual((yield* reserve(store, [claim(b)], 5_000))._tag, "Reserved")
    })))

  it.live("anchor: a sliding-window admission moves later, never earlier, and one that left its window stays out", () =>
    Effect.scoped(Effect.gen(function*() {
      const store = yield* makeStore()
      const b = bucket("sliding-window", 1, 1000)
      const first = yield* reserve(store, [claim(b)], 0)
      if (first._tag !== "Reserved") return assert.fail("the first reservation fits")
      yield* store.anchor!(first.reservation, 300) // the work began at 300: the window counts it from there
      assert.deepStrictEqual(yield* reserve(store, [claim(b)], 1000), {
        _tag: "Denied",
        retryAt: 1300,
        blocking: [b.id]
      })
      const second = yield* reserve(store, [claim(b)], 1300)
      if (second._tag !== "Reserved") return assert.fail("the window of the anchored admission is over")
      yield* store.anchor!(second.reservation, 1200) // earlier than its admission: nothing moves
      assert.strictEqual((yield* reserve(store, [claim(b)], 2299))._tag, "Denied")
      const third = yield* reserve(store, [claim(b)], 2300)
      if (third._tag !== "Reserved") return assert.fail("a full window after the second")
      assert.strictEqual((yield* reserve(store, [claim(b)], 3300))._tag, "Reserved") // the third left its window
      yield* store.anchor!(third.reservation, 3500) // too late: it is not brought back
      assert.strictEqual((yield* reserve(store, [claim(b)], 4300))._tag, "Reserved")
    })))

  it.live("anchor: GCRA spaces the next slot from the anchor, and the anchored reservation's refund still applies", () =>
    Effect.scoped(Effect.gen(function*() {
      const store = yield* makeStore()
      const b = bucket("gcra", 10, 1000) // 100 ms apart
      const first = yield* reserve(store, [claim(b)], 0)
      if (first._tag !== "Reserved") return assert.fail("the first reservation fits")
      yield* store.anchor!(first.reservation, 50)
      assert.deepStrictEqual(yield* reserve(store, [claim(b)], 100), { _tag: "Denied", retryAt: 150, blocking: [b.id] })
      // Still the bucket's last change: the refund gives its slot back (down to where the bucket was before it).
      yield* store.settle(first.reservation, [0])
      assert.deepStrictEqual(first.reservation.charged, [0])
      assert.strictEqual((yield* reserve(store, [claim(b)], 100))._tag, "Reserved")
    })))

  it.live("anchor: the window counts an anchored admission at its new time, whichever admission of the window moved", () =>
    Effect.scoped(Effect.gen(function*() {
      const store = yield* makeStore()
      const b = bucket("sliding-window", 2, 100)
      const first = yield* reserve(store, [claim(b)], 0)
      const second = yield* reserve(store, [claim(b)], 0)
      if (first._tag !== "Reserved" || second._tag !== "Reserved") return assert.fail("two fit")
      yield* store.anchor!(first.reservation, 50) // the older one moves past the other
      // The second (at 0) leaves at 100, the first (at 50) at 150: one place at 100, the next at 150.
      assert.deepStrictEqual(yield* reserve(store, [claim(b)], 99), { _tag: "Denied", retryAt: 100, blocking: [b.id] })
      assert.strictEqual((yield* reserve(store, [claim(b)], 100))._tag, "Reserved")
      assert.deepStrictEqual(yield* reserve(store, [claim(b)], 100), { _tag: "Denied", retryAt: 150, blocking: [b.id] })
    })))

  it.live("anchor: a handle the store did not grant (a copy) moves nothing", () =>
    Effect.scoped(Effect.gen(function*() {
      const store = yield* makeStore()
      const b = bucket("sliding-window", 1, 1000)
      const first = yield* reserve(store, [claim(b)], 0)
      if (first._tag !== "Reserved") return assert.fail("the first reservation fits")
      yield* store.anchor!({ ...first.reservation }, 500)
      assert.strictEqual((yield* reserve(store, [claim(b)], 1000))._tag, "Reserved")
    })))

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

  it.live("GCRA: a refund of the last reservation gives its slot back; after a later reservation it is dropped", () =>
    Effect.scoped(Effect.gen(function*() {
      const store = yield* makeStore()
      const b = bucket("gcra", 10, 1000)
      const a = yield* reserve(store, [claim(b)], 0)
      if (a._tag !== "Reserved") return assert.fail("the first reservation fits")
      yield* store.settle(a.reservation, [0])
      assert.deepStrictEqual(a.reservation.charged, [0], "applied: nothing was reserved since")
      const b1 = yield* reserve(store, [claim(b)], 10)
      if (b1._tag !== "Reserved") return assert.fail("the refunded slot is free again")
      assert.strictEqual((yield* reserve(store, [claim(b)], 110))._tag, "Reserved")
      // b1's slot was relied on by the reservation at 110: its refund is dropped, the spacing stays.
      yield* store.settle(b1.reservation, [0])
      assert.deepStrictEqual(b1.reservation.charged, [1], "dropped: the bucket still counts it")
      const denied = yield* reserve(store, [claim(b)], 150)
      assert.strictEqual(denied._tag === "Denied" ? denied.retryAt : -1, 210)
    })))

  it.live("token bucket: a refund of the last reservation gives its tokens back; after a later one it is dropped", () =>
    Effect.scoped(Effect.gen(function*() {
      const store = yield* makeStore()
      const b = bucket("token-bucket", 2, 1000, 2)
      const a = yield* reserve(store, [claim(b)], 0)
      const y = yield* reserve(store, [claim(b)], 0)
      if (a._tag !== "Reserved" || y._tag !== "Reserved") return assert.fail("the burst fits")
      yield* store.settle(y.reservation, [0])
      assert.deepStrictEqual(y.reservation.charged, [0])
      assert.strictEqual((yield* reserve(store, [claim(b)], 0))._tag, "Reserved", "the refunded token is back")
      assert.strictEqual((yield* reserve(store, [claim(b)], 500))._tag, "Reserved")
      // a's token was relied on by the reservations after it: its refund is dropped.
      yield* store.settle(a.reservation, [0])
      assert.deepStrictEqual(a.reservation.charged, [1])
      const denied = yield* reserve(store, [claim(b)], 600)
      assert.closeTo(denied._tag === "Denied" ? denied.retryAt : -1, 1000, 1e-6)
      // An extra charge always applies.
      yield* store.settle(a.reservation, [2])
      const later = yield* reserve(store, [claim(b)], 600)
      assert.closeTo(later._tag === "Denied" ? later.retryAt : -1, 1500, 1e-6)
    })))

  describe.each(
    [
      ["sliding-window", 20261206, "no window of length W holds more than L units"],
      ["gcra", 20261207, "any interval of length t holds at most B - 1 + a + r·t units (B + r·t with unit costs)"],
      ["token-bucket", 20261208, "any interval of length t holds at most B + r·t units"]
    ] as const
  )("settlement under %s", (algorithm, fixedSeed, bound) => {
    const numRuns = runs(150)
    const seed = seedOf(fixedSeed)
    it.live(
      `I12 random reservations, refunds and extra charges: ${bound} (seed ${seed}, ${numRuns} runs)`,
      () =>
        Effect.scoped(Effect.gen(function*() {
          const store = yield* makeStore()
          yield* Effect.promise(() =>
            fc.assert(
              fc.asyncProperty(programOf(algorithm), async (p) => {
                checkBound(algorithm, p, await Effect.runPromise(runProgram(store, algorithm, p)))
              }),
              { numRuns, seed }
            )
          )
        })),
      60_000
    )
  })

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

describe.skipIf(redis === undefined)("RateLimitRedis lookahead", () => {
  it.live("a reservation that fits within the lookahead is granted ahead, for its time; a later one is denied", () =>
    Effect.scoped(Effect.gen(function*() {
      const context = yield* Layer.build(NodeRedis.layer({ url: redis!.url }))
      const store = yield* RateLimitRedis.make({
        prefix: `pile-test:${process.pid}:${run++}:`,
        time: "client",
        lookahead: "50 millis"
      }).pipe(Effect.provideContext(context))
      const gcra = bucket("gcra", 10, 1000) // 100 ms apart
      const first = yield* reserve(store, [claim(gcra)], 0)
      assert.strictEqual(first._tag === "Reserved" ? first.reservation.notBefore : -1, undefined)
      // The next slot is at 100: from 10, that is 90 ahead, more than the lookahead.
      assert.deepStrictEqual(yield* reserve(store, [claim(gcra)], 10), {
        _tag: "Denied",
        retryAt: 100,
        blocking: [gcra.id]
      })
      // From 60 it is 40 ahead: granted now, for 100; and the one after is at 200.
      const ahead = yield* reserve(store, [claim(gcra)], 60)
      assert.strictEqual(ahead._tag === "Reserved" ? ahead.reservation.notBefore : -1, 100)
      assert.strictEqual(ahead._tag === "Reserved" ? ahead.reservation.at : -1, 100)
      const next = yield* reserve(store, [claim(gcra)], 60)
      assert.strictEqual(next._tag === "Denied" ? next.retryAt : -1, 200)
      // A sliding window too: the slot frees at 1000, granted from 960.
      const sliding = bucket("sliding-window", 1, 1000)
      assert.strictEqual((yield* reserve(store, [claim(sliding)], 0))._tag, "Reserved")
      assert.strictEqual((yield* reserve(store, [claim(sliding)], 900))._tag, "Denied")
      const later = yield* reserve(store, [claim(sliding)], 960)
      assert.strictEqual(later._tag === "Reserved" ? later.reservation.notBefore : -1, 1000)
    })))
})
