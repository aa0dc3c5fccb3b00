import { assert, describe, it } from "@effect/vitest"
import { Cause, Clock, Data, Duration, Effect, Exit, Fiber, Option, Ref, Schedule, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import * as ErrorPolicy from "../src/ErrorPolicy.ts"
import * as Executor from "../src/Executor.ts"
import * as ExecutorError from "../src/ExecutorError.ts"
import * as Pile from "../src/Pile.ts"
import { assertLedger, failsOnce, make, plain, retryOnce, runs, settleFibers } from "./support.ts"

class RateLimited extends Data.TaggedError("RateLimited")<{ readonly retryAfter: Duration.Duration }> {}
class ServerError extends Data.TaggedError("ServerError")<{ readonly status: number }> {}
class BadRequest extends Data.TaggedError("BadRequest")<{ readonly message: string }> {}
type ApiError = RateLimited | ServerError | BadRequest

/** A task that records the time each attempt started and fails with `errors[n]` on its n-th attempt. */
const flaky = <E>(errors: ReadonlyArray<E | "ok">, starts: Ref.Ref<Array<number>>) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const n = (yield* Ref.updateAndGet(starts, (xs) => [...xs, now])).length - 1
    const outcome = errors[Math.min(n, errors.length - 1)]!
    if (outcome === "ok") return n
    return yield* Effect.fail(outcome)
  })

describe("ErrorPolicy", () => {
  it.effect("record (the default): the failure is the outcome, one attempt", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const starts = yield* Ref.make<Array<number>>([])
      const handle = yield* executor.submit(flaky(["boom"], starts))
      const outcome = yield* handle.outcome
      assert.strictEqual(outcome.kind, "failure")
      assert.strictEqual(outcome.attempts, 1)
      assert.deepStrictEqual(plain(outcome.exit), { failure: "boom" })
    }))

  it.effect("I3 retry count never exceeds the schedule, and each attempt runs the body once", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const starts = yield* Ref.make<Array<number>>([])
      const handle = yield* executor.submit(flaky(["boom"], starts), {
        policy: ErrorPolicy.retry(Schedule.spaced(10).pipe(Schedule.upTo({ times: 3 })))
      })
      const waiter = yield* Effect.forkChild(handle.outcome)
      yield* TestClock.adjust(1000)
      const outcome = yield* Fiber.join(waiter)
      assert.strictEqual(outcome.kind, "failure")
      assert.strictEqual(outcome.attempts, 4, "1 attempt + 3 retries")
      assert.deepStrictEqual(yield* Ref.get(starts), [0, 10, 20, 30])
      assert.strictEqual((yield* executor.stats).retries, 3)
    }))

  it.effect("a retry that succeeds ends the task as a success, with its attempt count", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const starts = yield* Ref.make<Array<number>>([])
      const handle = yield* executor.submit(flaky(["a", "b", "ok"], starts), {
        policy: ErrorPolicy.retry(Schedule.exponential(10))
      })
      const waiter = yield* Effect.forkChild(handle.outcome)
      yield* TestClock.adjust(1000)
      const outcome = yield* Fiber.join(waiter)
      assert.strictEqual(outcome.kind, "success")
      assert.strictEqual(outcome.attempts, 3)
      assert.deepStrictEqual(yield* Ref.get(starts), [0, 10, 30])
    }))

  it.effect("a retry waits at least the error's retry-after", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const starts = yield* Ref.make<Array<number>>([])
      const handle = yield* executor.submit(
        flaky([new RateLimited({ retryAfter: Duration.seconds(5) }), "ok"], starts),
        {
          policy: ErrorPolicy.retry(Schedule.spaced(10))
        }
      )
      const waiter = yield* Effect.forkChild(handle.outcome)
      yield* TestClock.adjust("10 seconds")
      assert.strictEqual((yield* Fiber.join(waiter)).kind, "success")
      const [first, second] = yield* Ref.get(starts)
      assert.isAtLeast(second! - first!, 5000)
    }))

  it.effect("retry with while: errors it refuses are recorded at once", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const starts = yield* Ref.make<Array<number>>([])
      const handle = yield* executor.submit(flaky<ApiError>([new BadRequest({ message: "no" })], starts), {
        policy: ErrorPolicy.retry(Schedule.recurs(5), { while: (e: ApiError) => e._tag !== "BadRequest" })
      })
      const outcome = yield* handle.outcome
      assert.strictEqual(outcome.kind, "failure")
      assert.strictEqual(outcome.attempts, 1)
    }))

  it.effect("byTag: each tag gets its own decision", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 4 })
      const policy = ErrorPolicy.byTag<ApiError>()({
        RateLimited: ErrorPolicy.retry(Schedule.recurs(1)),
        ServerError: ErrorPolicy.retry(Schedule.exponential(10).pipe(Schedule.upTo({ times: 2 }))),
        BadRequest: ErrorPolicy.record
      })
      const run = (error: ApiError) =>
        Effect.gen(function*() {
          const starts = yield* Ref.make<Array<number>>([])
          const handle = yield* executor.submit(flaky<ApiError>([error], starts), { policy })
          return handle
        })
      const handles = yield* Effect.all([
        run(new RateLimited({ retryAfter: Duration.millis(100) })),
        run(new ServerError({ status: 500 })),
        run(new BadRequest({ message: "bad" }))
      ])
      yield* TestClock.adjust(1000)
      const attempts = yield* Effect.forEach(handles, (h) => Effect.map(h.outcome, (o) => o.attempts))
      assert.deepStrictEqual(attempts, [2, 3, 1])
    }))

  it("byTag is exhaustive: a missing or unknown tag is a compile error", () => {
    const complete = ErrorPolicy.byTag<ApiError>()({
      RateLimited: ErrorPolicy.record,
      ServerError: ErrorPolicy.record,
      BadRequest: ErrorPolicy.record
    })
    // @ts-expect-error BadRequest is missing
    const missing = ErrorPolicy.byTag<ApiError>()({ RateLimited: ErrorPolicy.record, ServerError: ErrorPolicy.record })
    const unknown = ErrorPolicy.byTag<ApiError>()({
      RateLimited: ErrorPolicy.record,
      ServerError: ErrorPolicy.record,
      BadRequest: ErrorPolicy.record,
      // @ts-expect-error NotATag is not a tag of ApiError
      NotATag: ErrorPolicy.record
    })
    assert.isTrue(
      ErrorPolicy.isErrorPolicy(complete) && ErrorPolicy.isErrorPolicy(missing) && ErrorPolicy.isErrorPolicy(unknown)
    )
  })

  it.effect("defects are recorded and never retried unless asked", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const runs = yield* Ref.make(0)
      const dying = Effect.andThen(Ref.update(runs, (n) => n + 1), Effect.die("bug"))
      const recorded = yield* executor.submit(dying, { policy: ErrorPolicy.retry(Schedule.recurs(3)) })
      assert.strictEqual((yield* recorded.outcome).kind, "defect")
      assert.strictEqual(yield* Ref.get(runs), 1)
      const retried = yield* executor.submit(dying, {
        policy: ErrorPolicy.retry(Schedule.recurs(3)).pipe(
          ErrorPolicy.withDefects(ErrorPolicy.retry(Schedule.recurs(2)))
        )
      })
      const outcome = yield* retried.outcome
      assert.strictEqual(outcome.kind, "defect")
      assert.strictEqual(outcome.attempts, 3)
    }))

  it.effect("I21 interruptions and the executor's Closed error are never retried", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const policy = ErrorPolicy.retry(Schedule.recurs(5))
      const interrupted = yield* executor.submit(Effect.interrupt, { policy })
      assert.deepStrictEqual([(yield* interrupted.outcome).kind, (yield* interrupted.outcome).attempts], [
        "interrupted",
        1
      ])
      const closed = yield* executor.submit(Effect.fail(ExecutorError.closed(false)), { policy })
      assert.strictEqual((yield* closed.outcome).attempts, 1)
    }))

  it.effect("ignore: the failure ends the task as skipped, counted but not delivered as a failure", () =>
    Effect.gen(function*() {
      const executor = yield* make({ policy: ErrorPolicy.ignore })
      const values = yield* Pile.collect(
        executor.run([1, 2, 3], (n) => n === 2 ? Effect.fail("skip me") : Effect.succeed(n))
      )
      assert.deepStrictEqual(values, [1, 3])
      const stats = yield* executor.stats
      assert.strictEqual(stats.outcomes.skipped, 1)
      assertLedger(stats)
    }))

  it.effect("escalate: the failure stops admission, interrupts the siblings and is raised to the owner", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 3 })
      const interrupted = yield* Ref.make(0)
      const sibling = Effect.never.pipe(Effect.onInterrupt(() => Ref.update(interrupted, (n) => n + 1)))
      const a = yield* executor.submit(sibling)
      const b = yield* executor.submit(sibling)
      const failing = yield* executor.submit(Effect.sleep(10).pipe(Effect.andThen(Effect.fail("fatal"))), {
        policy: ErrorPolicy.escalate
      })
      yield* TestClock.adjust(10)
      const error = yield* Effect.flip(executor.join)
      assert.strictEqual(error.reason._tag, "Escalated")
      const reason = error.reason as ExecutorError.Escalated
      assert.strictEqual(reason.source, `task ${failing.id}`)
      assert.strictEqual(Option.getOrUndefined(Cause.findErrorOption(reason.cause)), "fatal")
      assert.strictEqual((yield* failing.outcome).kind, "failure")
      assert.deepStrictEqual([(yield* a.outcome).kind, (yield* b.outcome).kind], ["interrupted", "interrupted"])
      assert.strictEqual(yield* Ref.get(interrupted), 2)
      const refused = yield* Effect.flip(executor.submit(Effect.void))
      assert.strictEqual(refused.reason._tag, "Closed")
      assert.isTrue((refused.reason as ExecutorError.Closed).escalated)
    }))

  it.effect("escalate in a batch: the batch's Pile delivers every outcome, then fails with Escalated", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 2 })
      const exit = yield* Effect.exit(Stream.runCollect(executor.run(
        [1, 2, 3, 4],
        (n) => n === 2 ? Effect.fail("fatal") : Effect.succeed(n),
        { policy: ErrorPolicy.escalate }
      )))
      assert.isTrue(Exit.isFailure(exit))
      const error = Cause.findErrorOption((exit as Exit.Failure<unknown, ExecutorError.ExecutorError>).cause)
      assert.strictEqual(error._tag === "Some" ? error.value.reason._tag : undefined, "Escalated")
    }))

  it.effect("the executor's policy applies to every task; a task's own policy overrides it", () =>
    Effect.gen(function*() {
      const executor = yield* make({ policy: ErrorPolicy.retry(Schedule.recurs(2)) })
      const starts = yield* Ref.make<Array<number>>([])
      const byDefault = yield* executor.submit(flaky(["x"], starts))
      assert.strictEqual((yield* byDefault.outcome).attempts, 3)
      const own = yield* executor.submit(flaky(["x"], starts), { policy: ErrorPolicy.record })
      assert.strictEqual((yield* own.outcome).attempts, 1)
    }))

  it.effect("I21 each retry re-enters admission: it waits for a slot behind the tasks that queued meanwhile", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1 })
      const order = yield* Ref.make<Array<string>>([])
      const log = (s: string) => Ref.update(order, (xs) => [...xs, s])
      const starts = yield* Ref.make<Array<number>>([])
      const retrying = yield* executor.submit(Effect.andThen(log("flaky"), flaky(["x", "ok"], starts)), {
        policy: ErrorPolicy.retry(Schedule.spaced(5))
      })
      yield* executor.submit(Effect.andThen(log("slow"), Effect.sleep(20)))
      yield* TestClock.adjust(100)
      assert.strictEqual((yield* retrying.outcome).kind, "success")
      // The retry was due at 5 but the only slot was taken by "slow" until 20.
      assert.deepStrictEqual(yield* Ref.get(order), ["flaky", "slow", "flaky"])
      assert.deepStrictEqual(yield* Ref.get(starts), [0, 20])
    }))

  it.effect("I1 a task cancelled while it waits to retry never runs again, and holds no slot", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1, policy: retryOnce(100) })
      const runs = yield* Ref.make(0)
      const handle = yield* executor.submit(failsOnce(runs, 1))
      yield* TestClock.adjust(50)
      const sleeping = yield* executor.stats
      assert.deepStrictEqual([sleeping.running, sleeping.waiting, sleeping.retrying], [0, 1, 1], "it waits to retry")
      yield* handle.cancel
      assert.strictEqual((yield* handle.outcome).kind, "cancelled")
      yield* TestClock.adjust(100) // past the retry's time
      assert.strictEqual(yield* Ref.get(runs), 1)
      const next = yield* executor.submit(Effect.succeed("next"))
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* next.join, "next")
      const stats = yield* executor.stats
      assert.deepStrictEqual([stats.running, stats.waiting, stats.retrying], [0, 0, 0])
      assertLedger(stats)
    }))

  it.effect("two escalations at once: the first one is raised, the second task still has its own outcome", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 2, policy: ErrorPolicy.escalate })
      const first = yield* executor.submit(Effect.andThen(Effect.sleep(10), Effect.fail("first")))
      const second = yield* executor.submit(Effect.andThen(Effect.sleep(10), Effect.fail("second")))
      yield* TestClock.adjust(10)
      const error = yield* Effect.flip(executor.join)
      assert.strictEqual(error.reason._tag, "Escalated")
      assert.strictEqual((error.reason as { readonly source: string }).source, `task ${first.id}`)
      assert.strictEqual((yield* first.outcome).kind, "failure")
      assert.include(["failure", "interrupted"], (yield* second.outcome).kind)
      assert.strictEqual((yield* executor.stats).phase, "closed")
    }))

  it.effect("the first escalation wins: a service failing later, during the shutdown, is not raised instead", () =>
    Effect.gen(function*() {
      const executor = yield* make({ policy: ErrorPolicy.escalate, finalizerTimeout: "1 minute" })
      yield* executor.start((ready) =>
        Effect.andThen(ready(undefined), Effect.andThen(Effect.sleep(20), Effect.fail("service")))
      )
      yield* executor.submit(Effect.never.pipe(Effect.ensuring(Effect.sleep("10 seconds")))) // keeps the shutdown busy
      const failing = yield* executor.submit(Effect.andThen(Effect.sleep(10), Effect.fail("fatal")))
      yield* TestClock.adjust(10)
      yield* TestClock.adjust(10) // the service fails while the shutdown waits for the finalizer
      yield* TestClock.adjust("10 seconds")
      const error = yield* Effect.flip(executor.join)
      assert.strictEqual((error.reason as ExecutorError.Escalated).source, `task ${failing.id}`)
    }))

  it.effect("escalate during a drain: the escalation cuts the drain short and interrupts what still runs", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make({
        policy: ErrorPolicy.escalate,
        shutdown: { mode: "drain", grace: "1 hour" }
      })
      const endless = yield* executor.submit(Effect.never)
      yield* executor.submit(Effect.andThen(Effect.sleep(10), Effect.fail("fatal")))
      yield* Effect.forkChild(executor.shutdown())
      yield* TestClock.adjust(10)
      yield* settleFibers
      assert.strictEqual((yield* endless.poll)?.kind, "interrupted")
      assert.strictEqual((yield* executor.stats).phase, "closed")
    }))
})

describe("timeouts and deadlines", () => {
  it.effect("I18 a timeout interrupts the attempt (its finalizer runs) and the outcome says timed out", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const finalized = yield* Ref.make<number | undefined>(undefined)
      const handle = yield* executor.submit(
        Effect.never.pipe(Effect.ensuring(Effect.flatMap(Clock.currentTimeMillis, (t) => Ref.set(finalized, t)))),
        { timeout: 100 }
      )
      const waiter = yield* Effect.forkChild(handle.outcome)
      yield* TestClock.adjust(100)
      const outcome = yield* Fiber.join(waiter)
      assert.strictEqual(outcome.kind, "timedOut")
      assert.isTrue(Exit.hasInterrupts(outcome.exit))
      assert.strictEqual(yield* Ref.get(finalized), 100)
    }))

  it.effect("I18 timed out, cancelled and shut down are three distinct outcomes", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 3 })
      const timedOut = yield* executor.submit(Effect.never, { timeout: 10 })
      const cancelled = yield* executor.submit(Effect.never)
      const shutDown = yield* executor.submit(Effect.never)
      yield* TestClock.adjust(10)
      yield* cancelled.cancel
      yield* executor.shutdown({ mode: "cancel" })
      assert.deepStrictEqual(
        [(yield* timedOut.outcome).kind, (yield* cancelled.outcome).kind, (yield* shutDown.outcome).kind],
        ["timedOut", "cancelled", "interrupted"]
      )
    }))

  it.effect("I18 the deadline covers the queue wait: a task that never got a slot times out", () =>
    Effect.gen(function*() {
      const executor = yield* make({ concurrency: 1 })
      yield* executor.submit(Effect.never)
      const queued = yield* executor.submit(Effect.succeed("late"), { deadline: 50 })
      const waiter = yield* Effect.forkChild(queued.outcome)
      yield* TestClock.adjust(50)
      const outcome = yield* Fiber.join(waiter)
      assert.deepStrictEqual([outcome.kind, outcome.attempts], ["timedOut", 0])
      assertLedger(yield* executor.stats)
    }))

  it.effect("I18 the deadline covers retries: a retry that cannot start before it ends the task", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const starts = yield* Ref.make<Array<number>>([])
      const handle = yield* executor.submit(flaky(["x"], starts), {
        policy: ErrorPolicy.retry(Schedule.spaced(30)),
        deadline: 100
      })
      const waiter = yield* Effect.forkChild(handle.outcome)
      yield* TestClock.adjust(200)
      const outcome = yield* Fiber.join(waiter)
      assert.deepStrictEqual(yield* Ref.get(starts), [0, 30, 60, 90])
      assert.deepStrictEqual([outcome.kind, outcome.attempts], ["failure", 4])
    }))

  it.effect("I18 the deadline interrupts a running attempt, and a late completion never overwrites it", () =>
    Effect.gen(function*() {
      const executor = yield* make()
      const handle = yield* executor.submit(
        Effect.sleep(100).pipe(Effect.uninterruptible, Effect.as("late")),
        { deadline: 50 }
      )
      const waiter = yield* Effect.forkChild(handle.outcome)
      yield* TestClock.adjust(100)
      const outcome = yield* Fiber.join(waiter)
      assert.strictEqual(outcome.kind, "timedOut")
      assert.isTrue(Exit.hasInterrupts(outcome.exit))
      assert.strictEqual((yield* executor.stats).running, 0)
    }))

  it.effect("an attempt's timeout does not outlive it: it cannot stop the task while it waits to retry", () =>
    Effect.gen(function*() {
      const executor = yield* make({ policy: retryOnce(500) })
      const runs = yield* Ref.make(0)
      const handle = yield* executor.submit(failsOnce(runs, 10), { timeout: 100 })
      yield* TestClock.adjust(200) // the first attempt's timer (t = 100) passes while the task sleeps
      assert.isUndefined(yield* handle.poll)
      yield* TestClock.adjust(400)
      const outcome = yield* handle.outcome
      assert.deepStrictEqual([outcome.kind, outcome.attempts], ["success", 2])
    }))

  it.effect("an attempt's timeout does not stop the next attempt: each attempt has its own", () =>
    Effect.gen(function*() {
      const executor = yield* make({ policy: retryOnce(0) })
      const runs = yield* Ref.make(0)
      // Attempt 1 fails at t = 10; attempt 2 starts at once and would take 150 ms: its timeout fires at 110.
      const handle = yield* executor.submit(
        Effect.flatMap(
          Ref.getAndUpdate(runs, (n) => n + 1),
          (n) => n === 0 ? Effect.andThen(Effect.sleep(10), Effect.fail("once")) : Effect.sleep(150)
        ),
        { timeout: 100 }
      )
      yield* TestClock.adjust(105)
      assert.isUndefined(yield* handle.poll, "attempt 1's timer (t = 100) is not attempt 2's")
      yield* TestClock.adjust(5)
      const outcome = yield* handle.outcome
      assert.deepStrictEqual([outcome.kind, outcome.attempts], ["timedOut", 2])
    }))

  it.effect("I18 a retry due exactly at the deadline is not attempted: the failure is the outcome", () =>
    Effect.gen(function*() {
      const executor = yield* make({ policy: retryOnce(10) })
      const handle = yield* executor.submit(Effect.andThen(Effect.sleep(90), Effect.fail("late")), {
        deadline: 100
      })
      yield* TestClock.adjust(90)
      const outcome = yield* handle.outcome
      assert.deepStrictEqual([outcome.kind, outcome.attempts], ["failure", 1])
    }))
})

describe("circuit breaking", () => {
  it.effect("while a key's circuit is open, its tasks end as rejected with CircuitOpen; other keys run", () =>
    Effect.gen(function*() {
      const { CircuitBreaker } = yield* Effect.promise(() => import("effect/persistence"))
      const executor = yield* make({
        concurrency: 1,
        circuitBreaker: { tripPolicy: CircuitBreaker.consecutive(2), openDuration: "1 minute" }
      })
      const runs = yield* Ref.make(0)
      const failing = Effect.andThen(Ref.update(runs, (n) => n + 1), Effect.fail("down"))
      yield* executor.submit(failing, { key: "payments" })
      yield* executor.submit(failing, { key: "payments" })
      const third = yield* executor.submit(failing, { key: "payments" })
      const other = yield* executor.submit(Effect.succeed("ok"), { key: "search" })
      const outcome = yield* third.outcome
      assert.strictEqual(outcome.kind, "rejected")
      assert.strictEqual(outcome.attempts, 0)
      assert.strictEqual(outcome.rejection?.reason._tag, "CircuitOpen")
      const reason = outcome.rejection?.reason as { readonly key: string; readonly retryAfter: Duration.Duration }
      assert.strictEqual(reason.key, "payments")
      assert.isTrue(Duration.isDuration(reason.retryAfter))
      assert.strictEqual(yield* Ref.get(runs), 2, "the third task never called the dead service")
      assert.strictEqual(yield* other.join, "ok")
    }))

  it.effect("a task the circuit rejects gives its rate budget back", () =>
    Effect.gen(function*() {
      const { CircuitBreaker } = yield* Effect.promise(() => import("effect/persistence"))
      const executor = yield* make({
        concurrency: 1,
        circuitBreaker: { tripPolicy: CircuitBreaker.consecutive(1), openDuration: "1 minute" },
        limits: [{ budget: "tokens", limit: 10, window: "1 minute" }]
      })
      yield* executor.submit(Effect.fail("down"), { key: "payments" })
      const rejected = yield* executor.submit(Effect.void, { key: "payments", cost: { tokens: 10 } })
      const other = yield* executor.submit(Effect.succeed("ok"), { key: "search", cost: { tokens: 10 } })
      assert.strictEqual((yield* rejected.outcome).kind, "rejected")
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* other.join, "ok", "the 10 tokens reserved for the rejected task came back")
    }))

  it.effect("tasks without a key share the circuit named \"default\"", () =>
    Effect.gen(function*() {
      const { CircuitBreaker } = yield* Effect.promise(() => import("effect/persistence"))
      const executor = yield* make({
        concurrency: 1,
        circuitBreaker: { tripPolicy: CircuitBreaker.consecutive(1), openDuration: "1 minute" }
      })
      yield* executor.submit(Effect.fail("down"))
      const outcome = yield* (yield* executor.submit(Effect.succeed("never runs"))).outcome
      assert.strictEqual(outcome.kind, "rejected")
      assert.strictEqual((outcome.rejection!.reason as { readonly key: string }).key, "default")
    }))

  it.effect("whenOpen: wait applies while the executor is open: during a drain, an open circuit rejects", () =>
    Effect.gen(function*() {
      const { CircuitBreaker } = yield* Effect.promise(() => import("effect/persistence"))
      const executor = yield* Executor.make({
        concurrency: 1,
        shutdown: { mode: "drain", grace: "1 hour" },
        circuitBreaker: { tripPolicy: CircuitBreaker.consecutive(1), openDuration: "10 seconds", whenOpen: "wait" }
      })
      yield* executor.submit(Effect.andThen(Effect.sleep(1), Effect.fail("down")), { key: "k" })
      const later = yield* executor.submit(Effect.succeed("recovered"), { key: "k" })
      const shutdown = yield* Effect.forkChild(executor.shutdown())
      yield* TestClock.adjust(1)
      yield* Fiber.join(shutdown)
      const outcome = yield* later.outcome
      assert.deepStrictEqual([outcome.kind, outcome.rejection?.reason._tag], ["rejected", "CircuitOpen"])
    }))

  it.effect("whenOpen: wait: tasks wait for the circuit instead of being rejected", () =>
    Effect.gen(function*() {
      const { CircuitBreaker } = yield* Effect.promise(() => import("effect/persistence"))
      const executor = yield* make({
        concurrency: 1,
        circuitBreaker: { tripPolicy: CircuitBreaker.consecutive(1), openDuration: "10 seconds", whenOpen: "wait" }
      })
      yield* executor.submit(Effect.fail("down"), { key: "k" })
      const later = yield* executor.submit(Effect.succeed("recovered"), { key: "k" })
      const waiter = yield* Effect.forkChild(later.outcome)
      yield* TestClock.adjust("5 seconds")
      assert.isUndefined(waiter.pollUnsafe())
      yield* TestClock.adjust("6 seconds")
      const outcome = yield* Fiber.join(waiter)
      assert.deepStrictEqual([outcome.kind, outcome.attempts], ["success", 1])
    }))
})

describe("ErrorPolicy against a reference model", () => {
  type Step = "ok" | "fail" | "die"
  type PolicySpec =
    | { readonly _tag: "record" }
    | { readonly _tag: "ignore" }
    | {
      readonly _tag: "retry"
      readonly times: number
      readonly exhausted: "record" | "ignore"
      readonly defects: boolean
    }

  const toPolicy = (spec: PolicySpec): ErrorPolicy.ErrorPolicy<string> => {
    switch (spec._tag) {
      case "record":
        return ErrorPolicy.record
      case "ignore":
        return ErrorPolicy.ignore
      case "retry": {
        const policy = ErrorPolicy.retry<string>(Schedule.spaced(7).pipe(Schedule.upTo({ times: spec.times })), {
          exhausted: spec.exhausted
        })
        return spec.defects ? ErrorPolicy.withDefects(policy, ErrorPolicy.retry(Schedule.recurs(spec.times))) : policy
      }
    }
  }

  /**
   * What the policy should do: the number of attempts and the final kind. Each rule keeps its own schedule
   * per task, so failures and defects have separate retry budgets.
   */
  const model = (steps: ReadonlyArray<Step>, spec: PolicySpec): { attempts: number; kind: string } => {
    const retries = { fail: 0, die: 0 }
    for (let attempt = 1;; attempt++) {
      const step = steps[Math.min(attempt - 1, steps.length - 1)]!
      if (step === "ok") return { attempts: attempt, kind: "success" }
      const retryable = spec._tag === "retry" && (step === "fail" || spec.defects)
      if (retryable && retries[step] < spec.times) {
        retries[step]++
        continue
      }
      if (step === "die") return { attempts: attempt, kind: "defect" }
      if (spec._tag === "ignore" || (spec._tag === "retry" && spec.exhausted === "ignore")) {
        return { attempts: attempt, kind: "skipped" }
      }
      return { attempts: attempt, kind: "failure" }
    }
  }

  const step = fc.constantFrom<Step>("ok", "fail", "fail", "die")
  const policySpec: fc.Arbitrary<PolicySpec> = fc.oneof(
    fc.constant({ _tag: "record" } as const),
    fc.constant({ _tag: "ignore" } as const),
    fc.record({
      _tag: fc.constant("retry" as const),
      times: fc.integer({ min: 0, max: 4 }),
      exhausted: fc.constantFrom("record" as const, "ignore" as const),
      defects: fc.boolean()
    })
  )

  it("I3 attempts per task and the final outcome match the model of the policy", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(step, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 6 }),
        policySpec,
        async (tasks, spec) => {
          const program = Effect.gen(function*() {
            const executor = yield* make<number, string>({ concurrency: 2, policy: toPolicy(spec) })
            const handles = yield* Effect.forEach(tasks, (steps) =>
              Effect.gen(function*() {
                const runs = yield* Ref.make(0)
                const body = Effect.gen(function*() {
                  const n = yield* Ref.getAndUpdate(runs, (k) => k + 1)
                  const s = steps[Math.min(n, steps.length - 1)]!
                  return s === "ok" ? n : s === "fail" ? yield* Effect.fail(`fail ${n}`) : yield* Effect.die(`die ${n}`)
                })
                const handle = yield* executor.submit(body)
                return { handle, runs }
              }))
            yield* TestClock.adjust(1000)
            return yield* Effect.forEach(
              handles,
              ({ handle, runs }) =>
                Effect.map(Effect.all([handle.outcome, Ref.get(runs)]), ([outcome, n]) => ({ outcome, runs: n }))
            )
          }).pipe(Effect.scoped, Effect.provide(TestClock.layer()))
          const results = await Effect.runPromise(program)
          results.forEach(({ outcome, runs }, i) => {
            const expected = model(tasks[i]!, spec)
            assert.strictEqual(outcome.kind, expected.kind, `task ${i}: ${tasks[i]} under ${JSON.stringify(spec)}`)
            assert.strictEqual(outcome.attempts, expected.attempts, `task ${i}: attempts`)
            assert.strictEqual(runs, expected.attempts, `task ${i}: the body ran once per attempt (I3)`)
          })
        }
      ),
      { numRuns: runs(200) }
    )
  })
})
