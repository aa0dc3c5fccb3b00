// Black-box tests written from the docs alone (the Pile's "read" default, per-key state that expires, the new
// options, callers that react), by a tester who had not read the implementation. One found a bug (ADR 0005).
import { assert, describe, it } from "@effect/vitest"
import { Clock, type Duration, Effect, Exit, Fiber, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as Executor from "../src/Executor.ts"
import type * as Pile from "../src/Pile.ts"
import type * as RateLimit from "../src/RateLimit.ts"

// Runs `eff` in a fiber and advances the TestClock in steps until it finishes; fails instead of hanging.
const bounded = <A, E>(eff: Effect.Effect<A, E>, label: string, steps = 200, step: Duration.Input = "100 millis") =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(eff, { startImmediately: true })
    for (let i = 0; i < steps; i++) {
      const exit = fiber.pollUnsafe()
      if (exit !== undefined) return yield* exit
      yield* Effect.yieldNow
      yield* TestClock.adjust(step)
    }
    const exit = fiber.pollUnsafe()
    if (exit !== undefined) return yield* exit
    yield* Fiber.interrupt(fiber)
    return yield* Effect.die(new Error(`${label}: did not finish (hang)`))
  })

const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

const ids = (outcomes: ReadonlyArray<{ readonly id: number }>) => outcomes.map((o) => o.id).sort((a, b) => a - b)

const startReader = <A, E>(pile: Pile.Pile<A, E, undefined, unknown>) =>
  Effect.forkChild(Stream.runCollect(pile), { startImmediately: true })

describe("attack: default pile 'read'", () => {
  it.effect("a reader started late sees only outcomes finished after it started; none kept before", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<number>({ concurrency: 4 })
      const early = []
      for (let i = 0; i < 3; i++) early.push(yield* executor.submit(Effect.succeed(i)))
      for (const h of early) yield* h.join
      yield* settle
      assert.equal((yield* executor.stats).pileBuffered, 0, "handles only: nothing buffered")
      const reader = yield* startReader(executor.pile)
      yield* settle
      const late = []
      for (let i = 10; i < 13; i++) late.push(yield* executor.submit(Effect.succeed(i)))
      for (const h of late) yield* h.join
      yield* bounded(executor.shutdown({ mode: "cancel" }), "shutdown")
      const got = yield* bounded(Fiber.join(reader), "reader")
      assert.deepEqual(ids(got), late.map((h) => h.id))
    }).pipe(Effect.scoped))

  it.effect("two readers at once split the outcomes: each exactly once", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<number>({ concurrency: 4 })
      const r1 = yield* startReader(executor.pile)
      const r2 = yield* startReader(executor.pile)
      yield* settle
      const hs = []
      for (let i = 0; i < 20; i++) hs.push(yield* executor.submit(Effect.as(Effect.sleep(`${(i % 5) * 10} millis`), i)))
      yield* bounded(executor.shutdown({ mode: "drain", grace: "10 seconds" }), "shutdown")
      const a = yield* bounded(Fiber.join(r1), "r1")
      const b = yield* bounded(Fiber.join(r2), "r2")
      assert.deepEqual(ids([...a, ...b]), hs.map((h) => h.id))
    }).pipe(Effect.scoped))

  it.effect("a reader interrupted then restarted: later outcomes kept for the next reader", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<number>({ concurrency: 4 })
      const r1 = yield* startReader(executor.pile)
      yield* settle
      const a = yield* executor.submit(Effect.succeed(1))
      yield* a.join
      yield* settle
      yield* Fiber.interrupt(r1)
      const b = yield* executor.submit(Effect.succeed(2))
      const c = yield* executor.submit(Effect.succeed(3))
      yield* b.join
      yield* c.join
      yield* settle
      assert.isAtLeast((yield* executor.stats).pileBuffered, 2)
      const r2 = yield* startReader(executor.pile)
      yield* bounded(executor.shutdown({ mode: "cancel" }), "shutdown")
      const got = ids(yield* bounded(Fiber.join(r2), "r2"))
      assert.includeMembers(got, [b.id, c.id])
      for (const id of got) assert.include([a.id, b.id, c.id], id)
    }).pipe(Effect.scoped))

  it.effect("Stream.take(n) takes exactly n; the rest waits for the next reader", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<number>({ concurrency: 4 })
      const first = yield* Effect.forkChild(Stream.runCollect(Stream.take(executor.pile, 2)), {
        startImmediately: true
      })
      yield* settle
      const hs = []
      for (let i = 0; i < 6; i++) hs.push(yield* executor.submit(Effect.succeed(i)))
      for (const h of hs) yield* h.join
      const got1 = yield* bounded(Fiber.join(first), "take(2)")
      assert.equal(got1.length, 2)
      const got2 = yield* bounded(Stream.runCollect(Stream.take(executor.pile, 1)), "take(1)")
      assert.equal(got2.length, 1)
      yield* bounded(executor.shutdown({ mode: "cancel" }), "shutdown")
      const got3 = yield* bounded(Stream.runCollect(executor.pile), "rest")
      assert.deepEqual(ids([...got1, ...got2, ...got3]), hs.map((h) => h.id))
    }).pipe(Effect.scoped))

  it.effect("the usual program: fork the reader (default forkChild), then submit, then drain: sees every outcome (0005)", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<number>({ concurrency: 4 })
      const reader = yield* Effect.forkChild(Stream.runCollect(executor.pile))
      const hs = []
      for (let i = 0; i < 5; i++) hs.push(yield* executor.submit(Effect.succeed(i)))
      yield* bounded(executor.shutdown({ mode: "drain", grace: "1 second" }), "shutdown")
      const got = yield* bounded(Fiber.join(reader), "reader")
      assert.deepEqual(ids(got), hs.map((h) => h.id))
    }).pipe(Effect.scoped))

  it.effect("a runHead reader at start-up turns buffering on: the rest waits for the next reader", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<number>({ concurrency: 4 })
      const head = yield* Effect.forkChild(Stream.runHead(executor.pile), { startImmediately: true })
      yield* settle
      const hs = []
      for (let i = 0; i < 4; i++) hs.push(yield* executor.submit(Effect.succeed(i)))
      for (const h of hs) yield* h.join
      const first = yield* bounded(Fiber.join(head), "runHead")
      assert.isTrue(first._tag === "Some")
      yield* settle
      assert.equal((yield* executor.stats).pileBuffered, 3)
      yield* bounded(executor.shutdown({ mode: "drain", grace: "1 second" }), "shutdown")
      const rest = yield* bounded(Stream.runCollect(executor.pile), "rest")
      assert.deepEqual(ids([...(first._tag === "Some" ? [first.value] : []), ...rest]), hs.map((h) => h.id))
    }).pipe(Effect.scoped))

  it.effect("pile { capacity } with no reader: drain shutdown does not hang (I14)", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<number>({ concurrency: 2, pile: { capacity: 2 } })
      const hs = []
      for (let i = 0; i < 10; i++) hs.push(yield* executor.submit(Effect.succeed(i)))
      yield* bounded(executor.shutdown({ mode: "drain", grace: "5 seconds" }), "shutdown")
      for (const h of hs) assert.equal((yield* bounded(h.outcome, "handle")).kind, "success")
      const all = yield* bounded(Stream.runCollect(executor.pile), "reader")
      assert.deepEqual(ids(all), hs.map((h) => h.id))
    }).pipe(Effect.scoped))

  it.effect("a reader started and interrupted before any task: outcomes buffered, scope close does not hang", () =>
    Effect.gen(function*() {
      const hs: Array<Executor.TaskHandle<number, never>> = []
      yield* bounded(
        Effect.gen(function*() {
          const executor = yield* Executor.make<number, never>({ concurrency: 4 })
          const r = yield* startReader(executor.pile)
          yield* settle
          yield* Fiber.interrupt(r)
          for (let i = 0; i < 50; i++) hs.push(yield* executor.submit(Effect.as(Effect.sleep("5 millis"), i)))
        }).pipe(Effect.scoped),
        "scope close"
      )
      for (const h of hs) assert.equal((yield* h.outcome).kind, "success")
    }))

  for (const mode of ["drain", "cancel"] as const) {
    for (const readerState of ["never", "running", "stopped"] as const) {
      it.effect(`shutdown ${mode} with reader ${readerState} never hangs (I14)`, () =>
        Effect.gen(function*() {
          const executor = yield* Executor.make<number>({ concurrency: 8 })
          let reader: Fiber.Fiber<Array<{ readonly id: number }>, unknown> | undefined
          if (readerState !== "never") {
            reader = (yield* startReader(executor.pile)) as any
            yield* settle
          }
          const hs = []
          for (let i = 0; i < 200; i++) {
            hs.push(yield* executor.submit(Effect.as(Effect.sleep(`${i % 7} millis`), i)))
          }
          if (readerState === "stopped") {
            yield* Fiber.interrupt(reader!)
            reader = undefined
          }
          yield* bounded(executor.shutdown({ mode, grace: "5 seconds" }), "shutdown")
          assert.equal((yield* executor.stats).phase, "closed")
          for (const h of hs) {
            const o = yield* bounded(h.outcome, "handle")
            assert.include(mode === "drain" ? ["success"] : ["success", "interrupted", "cancelled"], o.kind)
          }
          if (reader !== undefined) {
            const got = yield* bounded(Fiber.join(reader), "reader")
            assert.deepEqual(ids(got), hs.map((h) => h.id))
          }
          if (readerState === "stopped") {
            // buffering stayed on: a later reader gets what finished after the first one stopped, then ends
            const rest = yield* bounded(Stream.runCollect(executor.pile), "late reader")
            for (const o of rest) assert.include(hs.map((h) => h.id), o.id)
          }
        }).pipe(Effect.scoped))
    }
  }
})

// Rate limits on keys that come back after being idle.
const runPattern = (limit: RateLimit.Limit) =>
  Effect.gen(function*() {
    const executor = yield* Executor.make<void>({ concurrency: 64, limits: [limit] })
    const starts: Array<number> = []
    const task = Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => void starts.push(t)))
    const handles = []
    // bursts with idle gaps longer than any sweep period (1 s to 1 min) in between
    const gaps = [0, 300, 5_000, 70_000, 999, 1, 120_000, 1_500, 61_000, 2_000]
    for (const gap of gaps) {
      if (gap > 0) yield* TestClock.adjust(`${gap} millis`)
      for (let i = 0; i < 6; i++) handles.push(yield* executor.submit(task, { key: "k" }))
      // let a couple start, but come back before the whole burst is done sometimes
      yield* settle
    }
    for (const h of handles) {
      const exit = yield* bounded(h.await, "rate-limited task", 400, "50 millis")
      assert.isTrue(Exit.isSuccess(exit))
    }
    yield* executor.shutdown({ mode: "cancel" })
    return starts.sort((a, b) => a - b)
  }).pipe(Effect.scoped)

describe("attack: per-key rate-limit state that expires when idle", () => {
  it.effect("sliding-window: no window of W admits more than L, across idle gaps", () =>
    Effect.gen(function*() {
      const starts = yield* runPattern({ perKey: true, limit: 3, window: "1 second", algorithm: "sliding-window" })
      assert.equal(starts.length, 60)
      for (let i = 0; i < starts.length; i++) {
        const inWindow = starts.filter((t) => t >= starts[i]! && t < starts[i]! + 1000).length
        assert.isAtMost(inWindow, 3, `window at ${starts[i]}: ${JSON.stringify(starts)}`)
      }
    }))

  it.effect("gcra burst 1: starts at least W/L apart, across idle gaps", () =>
    Effect.gen(function*() {
      const starts = yield* runPattern({ perKey: true, limit: 4, window: "1 second", algorithm: "gcra", burst: 1 })
      assert.equal(starts.length, 60)
      for (let i = 1; i < starts.length; i++) {
        assert.isAtLeast(starts[i]! - starts[i - 1]!, 250, `starts ${JSON.stringify(starts)}`)
      }
    }))

  it.effect("token-bucket: any interval t admits at most B + r*t, across idle gaps", () =>
    Effect.gen(function*() {
      const starts = yield* runPattern({ perKey: true, limit: 2, window: "1 second", algorithm: "token-bucket" })
      assert.equal(starts.length, 60)
      for (let i = 0; i < starts.length; i++) {
        for (let j = i; j < starts.length; j++) {
          const t = starts[j]! - starts[i]!
          assert.isAtMost(j - i + 1, 2 + (2 * t) / 1000 + 1e-9, `[${i},${j}] ${JSON.stringify(starts)}`)
        }
      }
    }))

  for (const algorithm of ["sliding-window", "gcra", "token-bucket"] as const) {
    it.effect(`${algorithm}: a cold key next to a hot key (sweeps keep running) keeps its bound`, () =>
      Effect.gen(function*() {
        const executor = yield* Executor.make<void>({
          concurrency: 64,
          limits: [
            {
              perKey: true,
              limit: 2,
              window: "1 second",
              algorithm,
              burst: algorithm === "sliding-window" ? undefined : 2
            } as RateLimit.Limit
          ]
        })
        const starts: Record<string, Array<number>> = { hot: [], cold: [] }
        const task = (key: string) =>
          Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => void starts[key]!.push(t)))
        const hs = []
        for (let step = 0; step < 120; step++) {
          hs.push(yield* executor.submit(task("hot"), { key: "hot" }))
          if (step % 17 === 0 || step % 17 === 1) {
            for (let i = 0; i < 3; i++) hs.push(yield* executor.submit(task("cold"), { key: "cold" }))
          }
          yield* settle
          yield* TestClock.adjust("450 millis")
        }
        for (const h of hs) assert.isTrue(Exit.isSuccess(yield* bounded(h.await, "task", 400, "100 millis")))
        yield* executor.shutdown({ mode: "cancel" })
        for (const key of ["hot", "cold"]) {
          const xs = starts[key]!.sort((a, b) => a - b)
          for (let i = 0; i < xs.length; i++) {
            for (let j = i; j < xs.length; j++) {
              const t = xs[j]! - xs[i]!
              const n = j - i + 1
              // sliding window: at most 2 in any window of 1 s; gcra (B=2, unit cost): B - 1 + 1 + r t; bucket: B + r t
              if (algorithm === "sliding-window") {
                if (t < 1000) assert.isAtMost(n, 2, `${key} ${JSON.stringify(xs)}`)
              } else assert.isAtMost(n, 2 + (2 * t) / 1000 + 1e-9, `${key} [${i},${j}] ${JSON.stringify(xs)}`)
            }
          }
        }
      }).pipe(Effect.scoped))
  }

  it.effect("sliding-window: a key returning right after a sweep-length gap still waits for its window", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<void>({
        concurrency: 16,
        limits: [{ perKey: true, limit: 2, window: "1 second" }]
      })
      const starts: Array<number> = []
      const task = Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => void starts.push(t)))
      for (let round = 0; round < 5; round++) {
        yield* TestClock.adjust("5 seconds") // idle: the key's state may be swept
        const t0 = yield* Clock.currentTimeMillis
        const hs = []
        for (let i = 0; i < 2; i++) hs.push(yield* executor.submit(task, { key: "k" }))
        for (const h of hs) yield* bounded(h.await, "first two")
        yield* TestClock.adjust("999 millis") // crosses at most one sweep; still inside the window
        const h3 = yield* executor.submit(task, { key: "k" })
        yield* settle
        assert.isUndefined(yield* h3.poll, `round ${round}: third start inside the window`)
        yield* bounded(h3.await, "third", 50, "1 millis")
        assert.isAtLeast(starts.at(-1)! - t0, 1000)
      }
      yield* executor.shutdown({ mode: "cancel" })
    }).pipe(Effect.scoped))
})

describe("attack: invalid options", () => {
  for (const keys of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    it.effect(`metrics.keys ${keys} fails make with InvalidOption`, () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(Executor.make({ metrics: { keys } }))
        assert.equal(error.reason._tag, "InvalidOption")
        assert.equal((error.reason as any).option, "metrics.keys")
      }).pipe(Effect.scoped))
  }
  for (const idleTimeToLive of [-1, Number.NaN, "-5 seconds"] as const) {
    it.effect(`circuitBreaker.idleTimeToLive ${String(idleTimeToLive)} fails make with InvalidOption`, () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(Executor.make({ circuitBreaker: { idleTimeToLive: idleTimeToLive as any } }))
        assert.equal(error.reason._tag, "InvalidOption")
        assert.equal((error.reason as any).option, "circuitBreaker.idleTimeToLive")
      }).pipe(Effect.scoped))
  }

  it.effect("shutdown({ grace: -1 }) fails with InvalidOption and shuts nothing down", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<number>({ concurrency: 1 })
      const running = yield* executor.submit(Effect.as(Effect.sleep("1 second"), 1))
      const error = yield* Effect.flip(executor.shutdown({ grace: -1 }))
      assert.equal(error.reason._tag, "InvalidOption")
      assert.equal((error.reason as any).option, "shutdown.grace")
      assert.notEqual((yield* executor.stats).phase, "closed")
      const later = yield* executor.submit(Effect.succeed(2))
      assert.equal(yield* bounded(later.join, "later"), 2)
      assert.equal(yield* bounded(running.join, "running"), 1)
      yield* bounded(executor.shutdown({ mode: "cancel" }), "real shutdown")
      assert.equal((yield* executor.stats).phase, "closed")
    }).pipe(Effect.scoped))
})

describe("attack: callers that react", () => {
  it.effect("an outcome waiter cancels the superseded task", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<string>({ concurrency: 2 })
      const old = yield* executor.submit(Effect.as(Effect.sleep("1 hour"), "old"))
      const fresh = yield* executor.submit(Effect.as(Effect.sleep("10 millis"), "new"))
      const watcher = yield* Effect.forkChild(
        Effect.flatMap(fresh.outcome, () => old.cancel),
        { startImmediately: true }
      )
      yield* bounded(Fiber.join(watcher), "watcher")
      assert.equal((yield* old.poll)?.kind, "cancelled")
      assert.equal((yield* fresh.poll)?.kind, "success")
      yield* bounded(executor.shutdown({ mode: "drain", grace: "1 second" }), "shutdown")
    }).pipe(Effect.scoped))

  it.effect("an outcome waiter resubmits; the resubmitted task runs", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<number>({ concurrency: 1 })
      const first = yield* executor.submit(Effect.as(Effect.sleep("10 millis"), 1))
      const waiter = yield* Effect.forkChild(
        Effect.flatMap(first.outcome, () => Effect.flatMap(executor.submit(Effect.succeed(2)), (h) => h.join)),
        { startImmediately: true }
      )
      assert.equal(yield* bounded(Fiber.join(waiter), "waiter"), 2)
      yield* bounded(executor.shutdown({ mode: "cancel" }), "shutdown")
    }).pipe(Effect.scoped))

  it.effect("a resubmit from an outcome waiter during a drain fails Closed; shutdown does not hang", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<number>({ concurrency: 1 })
      const first = yield* executor.submit(Effect.as(Effect.sleep("10 millis"), 1))
      const waiter = yield* Effect.forkChild(
        Effect.flatMap(first.outcome, () => Effect.flip(executor.submit(Effect.succeed(2)))),
        { startImmediately: true }
      )
      yield* bounded(executor.shutdown({ mode: "drain", grace: "5 seconds" }), "shutdown")
      const error = yield* bounded(Fiber.join(waiter), "waiter")
      assert.equal(error.reason._tag, "Closed")
      assert.equal((yield* first.poll)?.kind, "success")
    }).pipe(Effect.scoped))

  it.effect("cancel of a task while shutdown({ grace: -1 }) was refused, then drain completes", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<number>({ concurrency: 1 })
      const a = yield* executor.submit(Effect.as(Effect.sleep("1 hour"), 1))
      const b = yield* executor.submit(Effect.succeed(2))
      const refused = yield* Effect.exit(executor.shutdown({ mode: "drain", grace: -1 }))
      assert.isTrue(Exit.isFailure(refused))
      yield* bounded(a.cancel, "cancel")
      assert.equal(yield* bounded(b.join, "b"), 2)
      yield* bounded(executor.shutdown({ mode: "drain", grace: "1 second" }), "shutdown")
      assert.equal((yield* a.poll)?.kind, "cancelled")
    }).pipe(Effect.scoped))
})
