// Random programs against the real executor on TestClock: submits with random behaviours, keys and costs,
// cancels, resizes and a shutdown at a random point, under a retry policy and a rate limit. One oracle checks
// I1, I3, I9, I10, I12 and I15 on every run; fast-check shrinks a failure to a minimal program and prints its
// seed.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Schedule, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import * as ErrorPolicy from "../src/ErrorPolicy.ts"
import * as Executor from "../src/Executor.ts"
import * as RateLimit from "../src/RateLimit.ts"
import { assertLedger, engineOf, runs } from "./support.ts"

type Behaviour = "succeed" | "fail" | "failOnce" | "die" | "interrupt" | "never"

interface Step {
  readonly at: number
  readonly action:
    | {
      readonly _tag: "submit"
      readonly behaviour: Behaviour
      readonly work: number
      readonly key: "a" | "b" | undefined
    }
    | { readonly _tag: "cancel"; readonly index: number }
    | { readonly _tag: "resize"; readonly concurrency: number }
}

interface Program {
  readonly concurrency: number
  readonly capacity: number
  readonly limit: number
  readonly window: number
  readonly steps: ReadonlyArray<Step>
  readonly shutdownAt: number
  readonly mode: "drain" | "cancel"
  /** The in-memory store's synchronous path, or the asynchronous one every other store takes. */
  readonly sync: boolean
}

const step: fc.Arbitrary<Step> = fc.record({
  at: fc.integer({ min: 0, max: 60 }),
  action: fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({
        _tag: fc.constant("submit" as const),
        behaviour: fc.constantFrom<Behaviour>("succeed", "succeed", "fail", "failOnce", "die", "interrupt", "never"),
        work: fc.integer({ min: 0, max: 15 }),
        key: fc.constantFrom<"a" | "b" | undefined>("a", "b", undefined)
      })
    },
    { weight: 2, arbitrary: fc.record({ _tag: fc.constant("cancel" as const), index: fc.nat(20) }) },
    {
      weight: 1,
      arbitrary: fc.record({ _tag: fc.constant("resize" as const), concurrency: fc.integer({ min: 1, max: 4 }) })
    }
  )
})

const program: fc.Arbitrary<Program> = fc.record({
  concurrency: fc.integer({ min: 1, max: 4 }),
  capacity: fc.integer({ min: 1, max: 8 }),
  limit: fc.integer({ min: 1, max: 4 }),
  window: fc.integer({ min: 5, max: 40 }),
  steps: fc.array(step, { maxLength: 25 }),
  shutdownAt: fc.integer({ min: 0, max: 120 }),
  mode: fc.constantFrom("drain", "cancel"),
  sync: fc.boolean()
})

const run = (p: Program) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    // The rate store, wrapped to record every admission and refund (I9, I12).
    const inner = RateLimit.memoryStore()
    const admissions: Array<{ at: number; id: string }> = []
    const refunds: Array<string> = []
    const memory = inner.memory!
    const reserve = memory.reserve.bind(memory)
    const settle = memory.settle.bind(memory)
    memory.reserve = (id, claims, now) => {
      const result = reserve(id, claims, now)
      if ("claims" in result) admissions.push({ at: now, id })
      return result
    }
    memory.settle = (reservation, actual) => {
      if (actual.every((a) => a === 0)) refunds.push(reservation.id)
      settle(reservation, actual)
    }
    // Without `memory`, the executor takes the asynchronous path through `reserve`.
    const store: RateLimit.RateLimitStore = p.sync ? inner : { reserve: inner.reserve, settle: inner.settle }
    const executor = yield* Executor.make<number, string>({
      concurrency: p.concurrency,
      capacity: p.capacity,
      shutdown: { mode: p.mode, grace: 30 },
      finalizerTimeout: 50,
      policy: ErrorPolicy.retry(Schedule.spaced(3).pipe(Schedule.upTo({ times: 2 }))),
      limits: [{ limit: p.limit, window: p.window }],
      store,
      pile: "unbounded" // the reader starts after the first submits: it must see every outcome
    }).pipe(Scope.provide(scope))
    // The cap in force, and the bodies running, checked at every body start (I10).
    let cap = p.concurrency
    let runningBodies = 0
    const violations: Array<string> = []
    const handles: Array<Executor.TaskHandle<number, string>> = []
    const bodyRuns = new Map<number, number>() // submission index -> runs
    const body = (index: number, behaviour: Behaviour, work: number): Effect.Effect<number, string> =>
      Effect.suspend(() => {
        const runs = (bodyRuns.get(index) ?? 0) + 1
        bodyRuns.set(index, runs)
        // A task counts as running until its fiber stops (I10), so a start must find fewer bodies than the cap.
        if (runningBodies >= cap) violations.push(`start of ${index} with ${runningBodies} running, cap ${cap}`)
        runningBodies++
        const effect: Effect.Effect<number, string> = behaviour === "succeed"
          ? Effect.as(Effect.sleep(work), index)
          : behaviour === "fail"
          ? Effect.andThen(Effect.sleep(work), Effect.fail(`fail ${index}`))
          : behaviour === "failOnce"
          ? runs === 1 ? Effect.fail("once") : Effect.as(Effect.sleep(work), index)
          : behaviour === "die"
          ? Effect.die(index)
          : behaviour === "interrupt"
          ? Effect.interrupt
          : Effect.never
        return Effect.ensuring(effect, Effect.sync(() => runningBodies--))
      })
    const driver = yield* Effect.forkChild(Effect.forEach(
      [...p.steps].sort((a, b) => a.at - b.at),
      (s, i) =>
        Effect.andThen(Effect.sleep(s.at - (i === 0 ? 0 : [...p.steps].sort((a, b) => a.at - b.at)[i - 1]!.at)), () => {
          switch (s.action._tag) {
            case "submit": {
              const index = i
              return Effect.matchEffect(
                executor.submit(body(index, s.action.behaviour, s.action.work), { key: s.action.key }),
                {
                  onFailure: () => Effect.void,
                  onSuccess: (handle) =>
                    Effect.sync(() => {
                      handles.push(handle)
                    })
                }
              )
            }
            case "cancel": {
              const handle = handles[s.action.index % Math.max(1, handles.length)]
              return handle === undefined ? Effect.void : Effect.asVoid(Effect.forkChild(handle.cancel))
            }
            case "resize": {
              const next = s.action.concurrency
              return Effect.andThen(
                // Lowering the cap never preempts: running bodies go on, new starts wait for the new cap.
                Effect.sync(() => {
                  cap = next
                }),
                executor.resize(next)
              )
            }
          }
        }),
      { discard: true }
    ))
    const reader = yield* Effect.forkChild(Stream.runCollect(executor.pile))
    const closer = yield* Effect.forkChild(Effect.andThen(Effect.sleep(p.shutdownAt), Scope.close(scope, Exit.void)))
    for (let t = 0; t < 400; t++) {
      assertLedger(yield* executor.stats)
      yield* TestClock.adjust(1)
    }
    yield* Fiber.join(closer)
    yield* Fiber.join(driver)
    const outcomes = yield* Fiber.join(reader)
    return {
      outcomes,
      handles,
      admissions,
      refunds,
      stats: yield* executor.stats,
      engine: engineOf(executor),
      bodyRuns,
      violations
    }
  })

describe("random programs", () => {
  it(
    "I1 I3 I9 I10 I12 I15 hold for random programs of submits, behaviours, cancels, resizes and shutdowns",
    async () => {
      await fc.assert(
        fc.asyncProperty(program, async (p) => {
          const r = await Effect.runPromise(run(p).pipe(Effect.provide(TestClock.layer())))
          // I1: every accepted task has exactly one outcome in the Pile.
          const delivered = r.outcomes.map((o) => o.id).sort((a, b) => a - b)
          assert.deepStrictEqual(delivered, r.handles.map((h) => h.id).sort((a, b) => a - b))
          // I3: the body ran once per attempt (failOnce tasks retry once and then succeed).
          for (const outcome of r.outcomes) {
            assert.isAtMost(outcome.attempts, 3, "at most 1 attempt + 2 retries")
            if (outcome.kind === "success" || outcome.kind === "failure" || outcome.kind === "defect") {
              assert.isAtLeast(outcome.attempts, 1)
            }
          }
          const totalAttempts = r.outcomes.reduce((n, o) => n + o.attempts, 0)
          const totalRuns = [...r.bodyRuns.values()].reduce((a, b) => a + b, 0)
          assert.strictEqual(totalRuns, totalAttempts, "one body run per attempt")
          // I9: slots and reservations were all returned; every admission belongs to an attempt that ran.
          assert.strictEqual(r.engine.slots, 0)
          assert.strictEqual(r.engine.runningCount, 0)
          assert.strictEqual(r.admissions.length - r.refunds.length, totalAttempts, "one kept reservation per attempt")
          // I10: no start while the cap was reached.
          assert.deepStrictEqual(r.violations, [])
          // I12: no window of the sliding limit admitted more than L (refunded admissions never ran).
          const kept = r.admissions.filter((a) => !r.refunds.includes(a.id)).map((a) => a.at).sort((a, b) => a - b)
          for (let i = 0; i < kept.length; i++) {
            assert.isAtMost(kept.filter((t) => t >= kept[i]! && t < kept[i]! + p.window).length, p.limit)
          }
          // I15 at the end, and the executor is closed.
          assertLedger(r.stats)
          assert.strictEqual(r.stats.phase, "closed")
        }),
        { numRuns: runs(200) }
      )
    },
    180_000
  )
})
