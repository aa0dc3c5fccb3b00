// Property suite with callers that react to the executor: random programs in which user code runs the moment
// the executor resumes it (a submitter that waited for room, a fiber waiting on an outcome, the consumer of a
// batch) and at once submits, cancels the task it supersedes, resubmits, stops reading or shuts down.
// Public API only, on TestClock; every wait is bounded in virtual time, so a bug fails a run instead of hanging it.
// The number of runs is fixed and every property prints its seed (PILE_SEED=<n> reruns one; PILE_SEED=random
// explores new ones). fast-check shrinks a failure to a minimal program and prints its seed and path.
import { assert, describe, it } from "@effect/vitest"
import { Clock, Deferred, Effect, Exit, Fiber, Option, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import * as Executor from "../src/Executor.ts"
import type * as Outcome from "../src/Outcome.ts"
import { assertLedger, liveFibers, reasonOf, runs, settleFibers } from "./support.ts"

// ---------------------------------------------------------------------------------------------------------------
// Regressions: minimal programs the properties below found (shrunk by fast-check, then written by hand)
// ---------------------------------------------------------------------------------------------------------------

describe("regressions found by the reentrant properties", () => {
  // Shrunk from: concurrency 1, capacity 1, "sliding"; a waiter on B's outcome shuts down; a later submit
  // evicts B. The eviction resumed the waiter inside the submit's transition: the shutdown began, and then the
  // evicting submit was accepted anyway (stats.accepted went from 2 to 3 after admission had closed).
  it.effect("I6 a waiter that shuts down when its task is evicted: the evicting submit is accepted before, or refused", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<string>({
        concurrency: 1,
        capacity: 1,
        strategy: "sliding",
        shutdown: { mode: "cancel" }
      })
      yield* executor.submit(Effect.never)
      yield* settleFibers
      const b = yield* executor.submit(Effect.succeed("b"))
      let acceptedAtShutdown: number | undefined
      const stopper = yield* Effect.forkChild(
        Effect.gen(function*() {
          yield* b.outcome
          acceptedAtShutdown = (yield* executor.stats).accepted
          yield* executor.shutdown({ mode: "cancel" })
        }),
        { startImmediately: true }
      )
      const d = yield* Effect.exit(executor.submit(Effect.succeed("d")))
      yield* settleFibers
      assert.isDefined(stopper.pollUnsafe(), "the cancel shutdown ended")
      assert.strictEqual((yield* b.poll)?.kind, "evicted")
      const stats = yield* executor.stats
      assertLedger(stats)
      assert.strictEqual(stats.phase, "closed")
      if (Exit.isSuccess(d)) assert.isDefined(yield* d.value.poll, "I1 the accepted task has an outcome")
      else assert.strictEqual(reasonOf(d), "Closed")
      assert.strictEqual(stats.accepted, acceptedAtShutdown, "I6 nothing is accepted once shutdown has begun")
    }))

  // Shrunk from: concurrency 1, capacity 1; a batch over an infinite stream read by `Stream.take(3)`, and an
  // impatient submitter (the same happens with two batches); reduced by hand to three inputs. The feeder made
  // its next task, taking the next id, and waited for room; the submitter came later but was served first
  // (feeders give way to waiting submitters), so id 4 started before id 3. Ids are documented to increase in
  // submission order and tasks to start in that order: either the id is taken on acceptance, or the feeder
  // keeps its place.
  it.effect("I11 a batch feeder and a submitter both waiting for room: tasks start in the order of their ids", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make<string>({ concurrency: 1, capacity: 1, shutdown: { mode: "cancel" } })
      const started: Array<string> = []
      const work = (label: string) =>
        Effect.andThen(Effect.sync(() => started.push(label)), Effect.as(Effect.sleep(1), label))
      const batch = yield* Effect.forkChild(Stream.runCollect(executor.run([0, 1, 2], (n) => work(`b${n}`))), {
        startImmediately: true
      })
      yield* settleFibers
      const submitter = yield* Effect.forkChild(executor.submit(work("s")), { startImmediately: true })
      yield* settleFibers
      for (let t = 0; t < 10 && batch.pollUnsafe() === undefined; t++) yield* TestClock.adjust(1)
      const outcomes = yield* Fiber.join(batch)
      const s = yield* Fiber.join(submitter)
      const idOf = new Map<string, number>(outcomes.map((o) => [`b${o.input}`, o.id]))
      idOf.set("s", s.id)
      const ids = started.map((label) => idOf.get(label)!)
      assert.deepStrictEqual(
        ids,
        [...ids].sort((a, b) => a - b),
        `started ${started.join(", ")} with ids ${ids.join(", ")}`
      )
    }))
})

// ---------------------------------------------------------------------------------------------------------------
// Programs
// ---------------------------------------------------------------------------------------------------------------

type Behaviour = "succeed" | "fail" | "die" | "interrupt" | "never" | "stuckFinalizer"

interface TaskSpec {
  readonly behaviour: Behaviour
  /** Virtual milliseconds before the body ends as its behaviour says. */
  readonly delay: number
  /** Virtual milliseconds its finalizer takes (a stuck finalizer takes STUCK_FINALIZER). */
  readonly finalizer: number
}

type Via = "submit" | "trySubmit"

type Consumer =
  | { readonly _tag: "collect"; readonly pace: number }
  | { readonly _tag: "take"; readonly n: number; readonly pace: number }
  | { readonly _tag: "head" }
  | { readonly _tag: "interrupt"; readonly after: number; readonly pace: number | "never" }

/**
 * One caller. Targets are indexes among the earlier actors that own a handle (taken modulo their number), so
 * no actor waits on itself or on a later one: every wait in a program ends once the executor has closed.
 */
type Actor =
  /** Submits at `at`; cancels its own task `cancelAt` later; its body first cancels the `cancels` target. */
  | {
    readonly _tag: "Submit"
    readonly at: number
    readonly spec: TaskSpec
    readonly via: Via
    readonly cancelAt: number | undefined
    readonly cancels: number | undefined
  }
  /** Submits (waiting for room) and, the moment it is accepted, cancels the task it supersedes. */
  | { readonly _tag: "Supersede"; readonly at: number; readonly spec: TaskSpec; readonly target: number }
  /** Waits on the target's outcome and submits a new task the moment it arrives. */
  | {
    readonly _tag: "Resubmit"
    readonly target: number
    readonly wait: "outcome" | "await" | "join"
    readonly spec: TaskSpec
    readonly via: Via
  }
  /** Two fibers cancel the target at once. */
  | { readonly _tag: "DoubleCancel"; readonly at: number; readonly target: number }
  /** Waits on the target's outcome, then shuts the executor down. */
  | { readonly _tag: "ShutdownOnOutcome"; readonly target: number; readonly mode: "drain" | "cancel" }
  /** Resizes at `at`, or the moment the `on` target's outcome arrives. */
  | { readonly _tag: "Resize"; readonly at: number; readonly on: number | undefined; readonly concurrency: number }
  /** Waits in `submit` for at most `patience` ms: interrupted while waiting, it must leave nothing queued. */
  | { readonly _tag: "Impatient"; readonly at: number; readonly spec: TaskSpec; readonly patience: number }
  /** A hedged request: submits two tasks, races their outcomes, and cancels the loser the moment one ends. */
  | { readonly _tag: "Hedge"; readonly at: number; readonly first: TaskSpec; readonly second: TaskSpec }
  /** A batch (`run`) of `inputs`, read by `consumer`; an infinite source cycles through the inputs. */
  | {
    readonly _tag: "Batch"
    readonly at: number
    readonly inputs: ReadonlyArray<TaskSpec>
    readonly source: "iterable" | "stream" | "infinite"
    readonly buffer: number | undefined
    readonly consumer: Consumer
  }

interface Program {
  readonly concurrency: number
  readonly capacity: number
  readonly strategy: "suspend" | "dropping" | "sliding"
  /** The executor-wide Pile: unbounded, or bounded and read one outcome every `pace` ms. */
  readonly pile: { readonly capacity: number; readonly pace: number } | undefined
  readonly actors: ReadonlyArray<Actor>
  /** The shutdown that ends the program (after the horizon), and what closing the scope does. */
  readonly mode: "drain" | "cancel"
  readonly grace: number
  /** For how many virtual ms the clock moves 1 ms at a time (checking after each step), before 10 ms steps. */
  readonly fine: number
}

const STUCK_FINALIZER = 300
const FINALIZER_TIMEOUT = 100
/** How long (virtual ms) the program's callers act before the quiescence checks and the final shutdown. */
const HORIZON = 400

const behaviour = (stuck: boolean): fc.Arbitrary<Behaviour> =>
  fc.constantFrom<Behaviour>(
    "succeed",
    "succeed",
    "succeed",
    "fail",
    "die",
    "interrupt",
    "never",
    "never",
    ...(stuck ? ["stuckFinalizer" as const] : [])
  )

/** The scale of a program: how crowded the executor is and how close together the callers act. */
interface Shape {
  readonly concurrency: fc.Arbitrary<number>
  readonly capacity: fc.Arbitrary<number>
  /** When actors start (virtual ms). */
  readonly at: fc.Arbitrary<number>
  /** How long bodies and finalizers take (virtual ms). */
  readonly duration: fc.Arbitrary<number>
  readonly maxActors: number
  /** See `Program.fine`. */
  readonly fine: number
}

/** Everything at once in a tiny executor: the hand-offs (dequeue, start, evict, finish) meet the callers. */
const tight: Shape = {
  concurrency: fc.constantFrom(1, 1, 2),
  capacity: fc.constantFrom(1, 1, 2),
  at: fc.integer({ min: 0, max: 2 }),
  duration: fc.integer({ min: 0, max: 2 }),
  maxActors: 6,
  fine: 30
}

/** Start times cluster at 0 and in the first milliseconds, with a tail; durations up to 20 ms. */
const wide: Shape = {
  concurrency: fc.constantFrom(1, 1, 2, 3),
  capacity: fc.constantFrom(1, 1, 2, 3, 4),
  at: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 30 })),
  duration: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 20 })),
  maxActors: 8,
  fine: 100
}

const taskSpec = (shape: Shape, stuck: boolean): fc.Arbitrary<TaskSpec> =>
  fc.record({
    behaviour: behaviour(stuck),
    delay: shape.duration,
    finalizer: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 10 }))
  })
const target = fc.nat({ max: 15 })
const via = fc.constantFrom<Via>("submit", "submit", "trySubmit")

const consumer: fc.Arbitrary<Consumer> = fc.oneof(
  fc.record({ _tag: fc.constant("collect" as const), pace: fc.integer({ min: 0, max: 10 }) }),
  fc.record({
    _tag: fc.constant("take" as const),
    n: fc.integer({ min: 1, max: 4 }),
    pace: fc.integer({ min: 0, max: 10 })
  }),
  fc.record({ _tag: fc.constant("head" as const) }),
  fc.record({
    _tag: fc.constant("interrupt" as const),
    after: fc.integer({ min: 0, max: 60 }),
    pace: fc.oneof(fc.integer({ min: 1, max: 10 }), fc.constant("never" as const))
  })
)

interface Weights {
  readonly submit: number
  readonly supersede: number
  readonly resubmit: number
  readonly doubleCancel: number
  readonly shutdownOnOutcome: number
  readonly resize: number
  readonly impatient: number
  readonly hedge: number
  readonly batch: number
}

const actor = (shape: Shape, w: Weights): fc.Arbitrary<Actor> => {
  const at = shape.at
  return fc.oneof(
    {
      weight: w.submit,
      arbitrary: fc.record({
        _tag: fc.constant("Submit" as const),
        at,
        spec: taskSpec(shape, true),
        via,
        cancelAt: fc.option(fc.integer({ min: 0, max: 40 }), { nil: undefined, freq: 3 }),
        cancels: fc.option(target, { nil: undefined, freq: 2 })
      })
    },
    {
      weight: w.supersede,
      arbitrary: fc.record({ _tag: fc.constant("Supersede" as const), at, spec: taskSpec(shape, true), target })
    },
    {
      weight: w.resubmit,
      arbitrary: fc.record({
        _tag: fc.constant("Resubmit" as const),
        target,
        wait: fc.constantFrom("outcome" as const, "await" as const, "join" as const),
        spec: taskSpec(shape, true),
        via
      })
    },
    { weight: w.doubleCancel, arbitrary: fc.record({ _tag: fc.constant("DoubleCancel" as const), at, target }) },
    {
      weight: w.shutdownOnOutcome,
      arbitrary: fc.record({
        _tag: fc.constant("ShutdownOnOutcome" as const),
        target,
        mode: fc.constantFrom("drain" as const, "cancel" as const)
      })
    },
    {
      weight: w.resize,
      arbitrary: fc.record({
        _tag: fc.constant("Resize" as const),
        at,
        on: fc.option(target, { nil: undefined }),
        concurrency: fc.integer({ min: 1, max: 4 })
      })
    },
    {
      weight: w.impatient,
      arbitrary: fc.record({
        _tag: fc.constant("Impatient" as const),
        at,
        spec: taskSpec(shape, true),
        patience: fc.integer({ min: 0, max: 10 })
      })
    },
    {
      weight: w.hedge,
      arbitrary: fc.record({
        _tag: fc.constant("Hedge" as const),
        at,
        first: taskSpec(shape, true),
        second: taskSpec(shape, true)
      })
    },
    {
      weight: w.batch,
      arbitrary: fc.record({
        _tag: fc.constant("Batch" as const),
        at,
        inputs: fc.array(taskSpec(shape, false), { minLength: 1, maxLength: 6 }),
        source: fc.constantFrom("iterable" as const, "stream" as const, "infinite" as const),
        buffer: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
        consumer
      }).map((batch) =>
        // An infinite source read at full speed by a consumer that never stops would run forever without
        // the clock moving: such a batch is read at a pace of at least 1 ms, and only by one that stops.
        batch.source === "infinite" && batch.consumer._tag === "collect"
          ? Object.assign({}, batch, {
            consumer: { _tag: "take" as const, n: 3, pace: Math.max(1, batch.consumer.pace) }
          })
          : batch
      )
    }
  )
}

const program = (shape: Shape, w: Weights): fc.Arbitrary<Program> =>
  fc.record({
    concurrency: shape.concurrency,
    capacity: shape.capacity,
    strategy: fc.constantFrom("suspend" as const, "suspend" as const, "dropping" as const, "sliding" as const),
    pile: fc.option(
      fc.record({ capacity: fc.integer({ min: 1, max: 2 }), pace: fc.integer({ min: 0, max: 5 }) }),
      { nil: undefined, freq: 3 }
    ),
    actors: fc.array(actor(shape, w), { minLength: 1, maxLength: shape.maxActors }),
    mode: fc.constantFrom("drain" as const, "cancel" as const),
    grace: fc.integer({ min: 0, max: 30 }),
    fine: fc.constant(shape.fine)
  }).map((p) =>
    // With "dropping" or "sliding", submit never waits: a feeder of an infinite source would spin without the
    // clock moving, so those programs read finite streams.
    p.strategy === "suspend" ? p : Object.assign({}, p, {
      actors: p.actors.map((a) =>
        a._tag === "Batch" && a.source === "infinite" ? Object.assign({}, a, { source: "stream" as const }) : a
      )
    })
  )

// ---------------------------------------------------------------------------------------------------------------
// Running a program
// ---------------------------------------------------------------------------------------------------------------

type Handle = Executor.TaskHandle<number, string>

interface Accepted {
  readonly token: number
  readonly actor: number
  readonly spec: TaskSpec
  readonly handle: Handle
}

/** What bodies do, counted as they happen (a body runs from its first instruction to the end of its finalizer). */
class Observer {
  /** Bodies running now, and the cap they must respect (the larger one while a resize is in flight). */
  live = 0
  readonly liveKeys = new Set<string>()
  cap: number
  /** Body starts per submitted task (by token) and per batch input (`batch:input`). */
  readonly started = new Map<string, number>()
  readonly batchLive = new Map<number, number>()
  /** Batches whose stream has returned: none of their tasks may start afterwards. */
  readonly batchStopped = new Set<number>()
  readonly violations: Array<string> = []
  constructor(cap: number) {
    this.cap = cap
  }
  /** Bodies in the order they started. */
  readonly startOrder: Array<string> = []
  start(key: string, batch: number | undefined): void {
    this.startOrder.push(key)
    this.live++
    this.liveKeys.add(key)
    if (this.live > this.cap) this.violations.push(`I10 ${this.live} bodies running at once with a cap of ${this.cap}`)
    const n = (this.started.get(key) ?? 0) + 1
    this.started.set(key, n)
    if (n > 1) this.violations.push(`I3 the body of ${key} ran ${n} times`)
    if (batch !== undefined) {
      this.batchLive.set(batch, (this.batchLive.get(batch) ?? 0) + 1)
      if (this.batchStopped.has(batch)) {
        this.violations.push(`I14 a task of batch ${batch} (${key}) started after its stream had returned`)
      }
    }
  }
  stop(key: string, batch: number | undefined): void {
    this.live--
    this.liveKeys.delete(key)
    if (batch !== undefined) this.batchLive.set(batch, this.batchLive.get(batch)! - 1)
  }
  /** The batch's stream has returned (or its consumer was interrupted): none of its bodies may be live. */
  batchReturned(batch: number): void {
    const live = this.batchLive.get(batch) ?? 0
    if (live > 0) this.violations.push(`I5 I14 ${live} bodies of batch ${batch} still live when its stream returned`)
    this.batchStopped.add(batch)
  }
}

const body = (
  observer: Observer,
  key: string,
  batch: number | undefined,
  spec: TaskSpec,
  before: Effect.Effect<void>
) =>
  Effect.acquireUseRelease(
    Effect.sync(() => observer.start(key, batch)),
    (): Effect.Effect<number, string> => {
      const wait = Effect.andThen(before, Effect.sleep(spec.delay))
      switch (spec.behaviour) {
        case "succeed":
          return Effect.as(wait, 1)
        case "fail":
          return Effect.andThen(wait, Effect.fail(`fail ${key}`))
        case "die":
          return Effect.andThen(wait, Effect.die(`die ${key}`))
        case "interrupt":
          return Effect.andThen(wait, Effect.interrupt)
        case "never":
        case "stuckFinalizer":
          return Effect.andThen(before, Effect.never)
      }
    },
    () =>
      Effect.andThen(
        Effect.sleep(spec.behaviour === "stuckFinalizer" ? STUCK_FINALIZER : spec.finalizer),
        Effect.sync(() => observer.stop(key, batch))
      )
  )

/** The earlier actor (with a handle) that `target` designates in `actors`, if any. */
const resolve = (actors: ReadonlyArray<Actor>, self: number, target: number): number | undefined => {
  const candidates: Array<number> = []
  for (let i = 0; i < self; i++) {
    const tag = actors[i]!._tag
    if (tag !== "DoubleCancel" && tag !== "ShutdownOnOutcome" && tag !== "Resize" && tag !== "Batch") {
      candidates.push(i)
    }
  }
  // Target 0 is the latest one: the task a new one typically supersedes.
  return candidates.length === 0 ? undefined : candidates[candidates.length - 1 - (target % candidates.length)]
}

const hasStuckFinalizer = (p: Program): boolean =>
  p.actors.some((a) => {
    switch (a._tag) {
      case "Submit":
      case "Supersede":
      case "Resubmit":
      case "Impatient":
        return a.spec.behaviour === "stuckFinalizer"
      case "Hedge":
        return a.first.behaviour === "stuckFinalizer" || a.second.behaviour === "stuckFinalizer"
      default:
        return false
    }
  })

/** Which outcome kinds a task may end with, given what it does and what was done to it. */
const allowedKinds = (p: Program, spec: TaskSpec, cancelled: boolean): ReadonlyArray<Outcome.Kind> => {
  const stopped: Array<Outcome.Kind> = ["interrupted"]
  if (cancelled) stopped.push("cancelled")
  if (p.strategy === "sliding") stopped.push("evicted")
  if (p.strategy === "dropping") stopped.push("dropped")
  switch (spec.behaviour) {
    case "succeed":
      return ["success", ...stopped]
    case "fail":
      return ["failure", ...stopped]
    case "die":
      return ["defect", ...stopped]
    default:
      return stopped
  }
}

const describeStats = (s: Executor.Stats): string =>
  JSON.stringify({
    phase: s.phase,
    accepted: s.accepted,
    queued: s.queued,
    running: s.running,
    finished: s.finished,
    blockedSubmitters: s.blockedSubmitters,
    peakQueued: s.peakQueued,
    capacity: s.capacity,
    concurrency: s.concurrency
  })

/** Runs `program` on a fresh executor and checks I1, I3, I5, I10, I13, I14, I15 on the way and at the end. */
const runProgram = (p: Program) =>
  Effect.gen(function*() {
    const observer = new Observer(p.concurrency)
    const scope = yield* Scope.make()
    const executor = yield* Executor.make<number, string>({
      concurrency: p.concurrency,
      capacity: p.capacity,
      strategy: p.strategy,
      finalizerTimeout: FINALIZER_TIMEOUT,
      shutdown: { mode: p.mode, grace: p.grace },
      ...(p.pile === undefined ? {} : { pile: { capacity: p.pile.capacity } })
    }).pipe(Scope.provide(scope))

    const accepted: Array<Accepted> = []
    const handleOf = new Map<number, Handle>()
    const acceptance = p.actors.map(() => Deferred.makeUnsafe<Handle | undefined>())
    const cancelRequested = new Set<number>()
    const batchOutcomes = new Map<number, Array<Outcome.Outcome<number, string, number>>>()
    /** Batches whose consumer read to the end by itself: every accepted task's outcome was seen. */
    const batchComplete = new Set<number>()
    let tokens = 0
    let resizes = 0

    /** `cancel` returns once the task has stopped: its outcome is decided and its body no longer runs. */
    const cancel = (handle: Handle) =>
      Effect.gen(function*() {
        cancelRequested.add(handle.id)
        yield* handle.cancel
        const outcome = yield* handle.poll
        if (outcome === undefined) {
          observer.violations.push(`I1 cancel of task ${handle.id} returned before its outcome`)
        }
        const task = accepted.find((a) => a.handle.id === handle.id)
        if (
          task !== undefined && task.spec.behaviour !== "stuckFinalizer" && observer.liveKeys.has(`task ${task.token}`)
        ) {
          observer.violations.push(`cancel of task ${handle.id} returned while its body still runs`)
        }
      })

    /** The accepted count when shutdown was first asked for: admission closes at once (I6). */
    let acceptedAtShutdown: number | undefined
    const shutdown = (options: Executor.ShutdownOptions) =>
      Effect.flatMap(executor.stats, (stats) => {
        acceptedAtShutdown ??= stats.accepted
        return Effect.catchCause(
          executor.shutdown(options),
          (cause) => Effect.sync(() => observer.violations.push(`shutdown failed: ${String(cause)}`))
        )
      })

    const submitTask = (
      actorIndex: number,
      spec: TaskSpec,
      how: Via,
      before: Effect.Effect<void> = Effect.void,
      patience?: number
    ) =>
      Effect.gen(function*() {
        const token = tokens++
        const task = body(observer, `task ${token}`, undefined, spec, before)
        const submit = how === "submit" ? executor.submit(task) : executor.trySubmit(task)
        const exit = yield* Effect.exit(
          patience === undefined ? Effect.map(submit, Option.some) : Effect.timeoutOption(submit, patience)
        )
        if (Exit.isSuccess(exit)) {
          if (exit.value._tag === "None") return undefined // gave up waiting: nothing may be queued (I13)
          accepted.push({ token, actor: actorIndex, spec, handle: exit.value.value })
          handleOf.set(actorIndex, exit.value.value)
          return exit.value.value
        }
        const reason = reasonOf(exit)
        const expected = reason === "Closed" || (reason === "QueueFull" && how === "trySubmit")
        if (!expected) observer.violations.push(`${how} of actor ${actorIndex} failed with ${reason ?? "a defect"}`)
        return undefined
      })

    /** Waits until the target actor's task was accepted (or refused). */
    const targetHandle = (self: number, t: number) => {
      const index = resolve(p.actors, self, t)
      return index === undefined ? Effect.succeed(undefined) : Deferred.await(acceptance[index]!)
    }

    const consume = (
      index: number,
      pile: Stream.Stream<Outcome.Outcome<number, string, number>, unknown>,
      pace: number | "never"
    ) =>
      Stream.runForEach(pile, (outcome) =>
        Effect.andThen(
          Effect.sync(() => batchOutcomes.get(index)!.push(outcome)),
          pace === "never" ? Effect.never : Effect.sleep(pace)
        ))

    const runActor = (a: Actor, i: number): Effect.Effect<void> => {
      switch (a._tag) {
        case "Submit":
          return Effect.gen(function*() {
            yield* Effect.sleep(a.at)
            const victim = a.cancels === undefined ? undefined : resolve(p.actors, i, a.cancels)
            // A task that cancels another task from inside its body.
            const before = victim === undefined ? Effect.void : Effect.suspend(() => {
              const h = handleOf.get(victim)
              return h === undefined ? Effect.void : cancel(h)
            })
            const handle = yield* submitTask(i, a.spec, a.via, before)
            Deferred.doneUnsafe(acceptance[i]!, Exit.succeed(handle))
            if (handle !== undefined && a.cancelAt !== undefined) {
              yield* Effect.sleep(a.cancelAt)
              yield* cancel(handle)
            }
          })
        case "Supersede":
          return Effect.gen(function*() {
            yield* Effect.sleep(a.at)
            const index = resolve(p.actors, i, a.target)
            const handle = yield* submitTask(i, a.spec, "submit")
            Deferred.doneUnsafe(acceptance[i]!, Exit.succeed(handle))
            // The moment it is accepted, it cancels the task it supersedes, whatever state that one is in.
            const superseded = index === undefined ? undefined : handleOf.get(index)
            if (handle !== undefined && superseded !== undefined) yield* cancel(superseded)
          })
        case "Resubmit":
          return Effect.gen(function*() {
            const h = yield* targetHandle(i, a.target)
            if (h !== undefined) {
              if (a.wait === "outcome") yield* h.outcome
              else if (a.wait === "await") yield* h.await
              else yield* Effect.exit(h.join)
            }
            const handle = h === undefined ? undefined : yield* submitTask(i, a.spec, a.via)
            Deferred.doneUnsafe(acceptance[i]!, Exit.succeed(handle))
          })
        case "DoubleCancel":
          return Effect.gen(function*() {
            yield* Effect.sleep(a.at)
            const h = yield* targetHandle(i, a.target)
            if (h !== undefined) yield* Effect.all([cancel(h), cancel(h)], { concurrency: 2, discard: true })
          })
        case "ShutdownOnOutcome":
          return Effect.gen(function*() {
            const h = yield* targetHandle(i, a.target)
            if (h === undefined) return
            yield* h.outcome
            yield* shutdown({ mode: a.mode, grace: p.grace })
          })
        case "Impatient":
          return Effect.gen(function*() {
            yield* Effect.sleep(a.at)
            const handle = yield* submitTask(i, a.spec, "submit", Effect.void, a.patience)
            Deferred.doneUnsafe(acceptance[i]!, Exit.succeed(handle))
          })
        case "Hedge":
          return Effect.gen(function*() {
            yield* Effect.sleep(a.at)
            const first = yield* submitTask(i, a.first, "submit")
            const second = first === undefined ? undefined : yield* submitTask(i, a.second, "submit")
            // Targets of later actors designate the first of the two.
            if (first !== undefined) handleOf.set(i, first)
            Deferred.doneUnsafe(acceptance[i]!, Exit.succeed(first))
            if (first === undefined || second === undefined) return
            // The waiter on the losing outcome is interrupted by the race: that must not touch its task.
            const winner = yield* Effect.race(Effect.as(first.outcome, first), Effect.as(second.outcome, second))
            yield* cancel(winner === first ? second : first)
          })
        case "Resize":
          return Effect.gen(function*() {
            if (a.on === undefined) yield* Effect.sleep(a.at)
            else {
              const h = yield* targetHandle(i, a.on)
              if (h === undefined) return
              yield* h.outcome
            }
            const resize = ++resizes
            observer.cap = Math.max(observer.cap, a.concurrency)
            const exit = yield* Effect.exit(executor.resize(a.concurrency))
            if (Exit.isFailure(exit)) return
            // Lowering the cap never preempts: a task the executor started just before may run its first
            // instruction just after, so the lower cap is checked once such tasks have begun.
            yield* settleFibers
            if (resize === resizes) observer.cap = a.concurrency
          })
        case "Batch":
          return Effect.gen(function*() {
            yield* Effect.sleep(a.at)
            batchOutcomes.set(i, [])
            const f = (k: number) =>
              body(observer, `batch ${i} input ${k}`, i, a.inputs[k % a.inputs.length]!, Effect.void)
            const indexes = a.inputs.map((_, k) => k)
            const source = a.source === "iterable"
              ? indexes
              : a.source === "stream"
              ? Stream.fromIterable(indexes)
              : Stream.iterate(0, (k) => k + 1)
            const pile = executor.run(source, f, a.buffer === undefined ? undefined : { buffer: a.buffer })
            const c = a.consumer
            switch (c._tag) {
              case "collect": {
                yield* Effect.exit(consume(i, pile, c.pace))
                batchComplete.add(i)
                observer.batchReturned(i)
                return
              }
              case "take": {
                yield* Effect.exit(consume(i, Stream.take(pile, c.n), c.pace))
                observer.batchReturned(i)
                return
              }
              case "head": {
                const exit = yield* Effect.exit(Stream.runHead(pile))
                if (Exit.isSuccess(exit) && exit.value._tag === "Some") batchOutcomes.get(i)!.push(exit.value.value)
                observer.batchReturned(i)
                return
              }
              case "interrupt": {
                const reader = yield* Effect.forkChild(consume(i, pile, c.pace), { startImmediately: true })
                yield* Effect.sleep(c.after)
                if (reader.pollUnsafe() !== undefined) batchComplete.add(i)
                yield* Fiber.interrupt(reader)
                observer.batchReturned(i)
                return
              }
            }
          })
      }
    }

    const reader = yield* Effect.forkDetach(Stream.runCollect(
      p.pile === undefined
        ? executor.pile
        : Stream.mapEffect(executor.pile, (o) => Effect.as(Effect.sleep(p.pile!.pace), o))
    ))
    // Detached, so that an actor the executor never resumes is reported instead of hanging the run.
    const actors: Array<Fiber.Fiber<void>> = []
    for (let i = 0; i < p.actors.length; i++) actors.push(yield* Effect.forkDetach(runActor(p.actors[i]!, i)))

    const snapshot = (when: string) =>
      Effect.gen(function*() {
        const stats = yield* executor.stats
        if (observer.violations.length > 0) assert.fail(`${when}: ${observer.violations.join("; ")}`)
        assertLedger(stats)
        assert.isAtMost(stats.queued, p.capacity, `I13 queued <= capacity ${when}: ${describeStats(stats)}`)
        assert.isAtMost(stats.peakQueued, p.capacity, `I13 peakQueued <= capacity ${when}: ${describeStats(stats)}`)
        return stats
      })

    for (let t = 1; t <= p.fine; t++) {
      yield* TestClock.adjust(1)
      yield* snapshot(`at ${t} ms`)
    }
    for (let t = p.fine + 10; t <= HORIZON; t += 10) {
      yield* TestClock.adjust(10)
      yield* snapshot(`at ${t} ms`)
    }
    yield* settleFibers
    const quiet = yield* snapshot("at the horizon")

    // I16/I14: with queued work and a free slot, a task starts; after abandoned batches and cancelled
    // supersessions, a later task still runs.
    if (quiet.phase === "open") {
      if (quiet.queued > 0) {
        assert.isAtLeast(
          quiet.running,
          quiet.concurrency,
          `I16 work is queued but a slot is free: ${describeStats(quiet)}`
        )
      }
      if (quiet.queued === 0 && quiet.running < quiet.concurrency && quiet.blockedSubmitters === 0) {
        const probe = yield* executor.submit(Effect.succeed(0))
        yield* settleFibers
        yield* TestClock.adjust(1)
        const kind = (yield* probe.poll)?.kind
        assert.strictEqual(kind, "success", `I14 a later task runs when a slot is free: ${describeStats(quiet)}`)
        accepted.push({ token: -1, actor: -1, spec: { behaviour: "succeed", delay: 0, finalizer: 0 }, handle: probe })
      }
    }

    // The final shutdown: a cancel must not wait for finalizerTimeout unless a finalizer is stuck.
    const stuck = hasStuckFinalizer(p)
    const bound = (p.mode === "drain" || p.actors.some((a) => a._tag === "ShutdownOnOutcome") ? p.grace : 0) +
      (stuck ? FINALIZER_TIMEOUT : 0) + 20
    const startedAt = yield* Clock.currentTimeMillis
    const final = yield* Effect.forkDetach(shutdown({ mode: p.mode, grace: p.grace }))
    for (let t = 0; t < bound + 200 && final.pollUnsafe() === undefined; t++) yield* TestClock.adjust(1)
    const took = (yield* Clock.currentTimeMillis) - startedAt
    assert.isDefined(final.pollUnsafe(), `I8 the ${p.mode} shutdown ends (waited ${took} ms)`)
    assert.isAtMost(took, bound, `I8 I14 the ${p.mode} shutdown ends within ${bound} ms`)
    const closing = yield* Effect.forkDetach(Scope.close(scope, Exit.void))
    for (let t = 0; t < 50 && closing.pollUnsafe() === undefined; t++) yield* TestClock.adjust(1)
    yield* settleFibers
    assert.isDefined(closing.pollUnsafe(), "closing the scope after shutdown ends")
    // Readers still pacing their reads (at most 10 ms an outcome) finish.
    const pending = () => reader.pollUnsafe() === undefined || actors.some((f) => f.pollUnsafe() === undefined)
    for (let t = 0; t < 200 && pending(); t++) yield* TestClock.adjust(1)
    yield* settleFibers

    // Every caller was resumed: submitters refused, waiters given an outcome, batches ended.
    const stuckActors = actors.flatMap((f, i) => f.pollUnsafe() === undefined ? [`${i} ${p.actors[i]!._tag}`] : [])
    assert.deepStrictEqual(stuckActors, [], "I1 I6 every caller is resumed once the executor has closed")
    for (const [i, f] of actors.entries()) {
      const exit = f.pollUnsafe()!
      assert.isTrue(Exit.isSuccess(exit), `actor ${i} ${p.actors[i]!._tag} ended with ${String(exit)}`)
    }
    const readerExit = reader.pollUnsafe()
    assert.isDefined(readerExit, "I14 the Pile ends once the executor has closed")
    assert.isTrue(readerExit !== undefined && Exit.isSuccess(readerExit), "the Pile ends without an error")
    const pile = readerExit !== undefined && Exit.isSuccess(readerExit) ? readerExit.value : []

    // I1: the Pile holds each accepted task exactly once, and agrees with the handles.
    const pileIds = pile.map((o) => o.id)
    assert.strictEqual(new Set(pileIds).size, pileIds.length, `I1 no id twice in the Pile: ${pileIds.join(",")}`)
    const byId = new Map(pile.map((o) => [o.id, o]))
    assert.deepStrictEqual(
      [...pileIds].sort((a, b) => a - b),
      accepted.map((a) => a.handle.id).sort((a, b) => a - b),
      "I1 the Pile holds exactly the accepted tasks"
    )
    for (const a of accepted) {
      const fromHandle = yield* a.handle.poll
      const fromPile = byId.get(a.handle.id)!
      assert.isDefined(fromHandle, `I1 task ${a.handle.id} has an outcome`)
      assert.deepStrictEqual(
        [fromHandle!.kind, fromHandle!.attempts],
        [fromPile.kind, fromPile.attempts],
        `I1 task ${a.handle.id}: its handle and the Pile agree`
      )
      if (a.token < 0) continue
      const label = `task ${a.handle.id} (token ${a.token}, ${a.spec.behaviour}) ended ${fromPile.kind}`
      assert.include(allowedKinds(p, a.spec, cancelRequested.has(a.handle.id)), fromPile.kind, label)
      const ran = observer.started.get(`task ${a.token}`) ?? 0
      assert.isAtMost(ran, fromPile.attempts, `I1 I3 ${label} after ${fromPile.attempts} attempts, yet its body ran`)
      assert.isAtMost(fromPile.attempts, 1, label)
    }

    // Batch outcomes: unique ids, disjoint from the Pile's, and consistent with what ran.
    const batchIds: Array<number> = []
    for (const [b, outcomes] of batchOutcomes) {
      const batch = p.actors[b]! as Extract<Actor, { _tag: "Batch" }>
      for (const o of outcomes) {
        batchIds.push(o.id)
        const spec = batch.inputs[o.input % batch.inputs.length]!
        const label = `batch ${b} input ${o.input} (task ${o.id}, ${spec.behaviour}) ended ${o.kind}`
        assert.include(allowedKinds(p, spec, true), o.kind, label)
        const ran = observer.started.get(`batch ${b} input ${o.input}`) ?? 0
        assert.isAtMost(ran, o.attempts, `I1 I3 ${label} after ${o.attempts} attempts, yet its body ran`)
      }
    }
    const allIds = [...pileIds, ...batchIds]
    assert.strictEqual(new Set(allIds).size, allIds.length, "I1 no task has two outcomes (Pile and batches)")

    // I11: first come, first served. Submitters are accepted in the order they called (tokens are taken just
    // before the call), so a waiting submitter keeps its place; tasks start in the order they were accepted.
    const byToken = accepted.filter((a) => a.token >= 0).sort((a, b) => a.token - b.token)
    for (let k = 1; k < byToken.length; k++) {
      const [x, y] = [byToken[k - 1]!, byToken[k]!]
      assert.isBelow(
        x.handle.id,
        y.handle.id,
        `I11 token ${x.token} called before token ${y.token} but was accepted after`
      )
    }
    const idOf = new Map<string, number>(accepted.map((a) => [`task ${a.token}`, a.handle.id]))
    for (const [b, outcomes] of batchOutcomes) for (const o of outcomes) idOf.set(`batch ${b} input ${o.input}`, o.id)
    const startedIds = observer.startOrder.flatMap((key) => idOf.has(key) ? [idOf.get(key)!] : [])
    for (let k = 1; k < startedIds.length; k++) {
      assert.isBelow(startedIds[k - 1]!, startedIds[k]!, `I11 tasks start in submission order: ${startedIds.join(",")}`)
    }

    // I15, I7/I8: closed, nothing left, the ledger adds up, and agrees with what was delivered.
    const stats = yield* snapshot("after close")
    assert.strictEqual(stats.phase, "closed")
    assert.strictEqual(stats.queued + stats.running + stats.waiting + stats.blockedSubmitters, 0, describeStats(stats))
    assert.strictEqual(stats.finished, stats.accepted, "every accepted task finished")
    assert.strictEqual(stats.accepted, acceptedAtShutdown, "I6 nothing is accepted once shutdown has begun")
    const everyBatchSeen = [...batchOutcomes.keys()].every((b) => batchComplete.has(b))
    if (everyBatchSeen) {
      assert.strictEqual(stats.accepted, allIds.length, "I15 accepted = outcomes delivered (Pile and batches)")
      const delivered: Record<string, number> = {}
      for (const o of pile) delivered[o.kind] = (delivered[o.kind] ?? 0) + 1
      for (const outcomes of batchOutcomes.values()) {
        for (const o of outcomes) delivered[o.kind] = (delivered[o.kind] ?? 0) + 1
      }
      for (const [kind, n] of Object.entries(stats.outcomes)) {
        assert.strictEqual(n, delivered[kind] ?? 0, `I15 I20 the ledger's ${kind} count matches the outcomes`)
      }
    } else {
      assert.isAtLeast(stats.accepted, allIds.length)
    }

    // I5: nothing the executor forked is alive once its scope has closed.
    assert.deepStrictEqual(liveFibers(executor), [], "I5 no live fiber after close")
    if (!stuck) assert.strictEqual(observer.live, 0, "no body is live after close")
    return true
  })

/** Real-time guard: a run that neither passes nor fails (a busy loop, a wait outside virtual time) fails. */
const REAL_TIME_LIMIT = 10_000

const check = (p: Program): Promise<boolean> =>
  new Promise((resolve, reject) => {
    const fiber = Effect.runFork(runProgram(p).pipe(Effect.provide(TestClock.layer())))
    const timer = setTimeout(() => {
      reject(new Error(`the run did not end within ${REAL_TIME_LIMIT} ms of real time`))
      fiber.interruptUnsafe()
    }, REAL_TIME_LIMIT)
    fiber.addObserver((exit) => {
      clearTimeout(timer)
      if (Exit.isSuccess(exit)) resolve(exit.value)
      else reject(exit.cause.reasons.find((r) => r._tag === "Die")?.defect ?? new Error(String(exit.cause)))
    })
  })

/**
 * The parameters of a property: a fixed number of runs (PILE_RUNS overrides it) from a fixed seed
 * (PILE_SEED=<n> replays another, PILE_SEED=random draws one), printing the seed first so that every run can
 * be replayed. On failure fast-check prints the seed again with the path of the shrunk counterexample.
 */
const parameters = (name: string, fixedSeed: number, n: number): fc.Parameters<[Program]> => {
  const env = process.env["PILE_SEED"]
  const seed = env === undefined || env === ""
    ? fixedSeed
    : env === "random"
    ? Math.floor(Math.random() * 0x7fffffff)
    : Number(env)
  const numRuns = process.env["PILE_RUNS"] ? Number(process.env["PILE_RUNS"]) : runs(n)
  console.error(`[reentrant properties] ${name}: seed ${seed}, ${numRuns} runs (replay with PILE_SEED=${seed})`)
  return { numRuns, seed, interruptAfterTimeLimit: 25_000, markInterruptAsFailure: true }
}

// ---------------------------------------------------------------------------------------------------------------

const callers: Weights = {
  submit: 4,
  supersede: 3,
  resubmit: 3,
  doubleCancel: 1,
  shutdownOnOutcome: 1,
  resize: 1,
  impatient: 1,
  hedge: 1,
  batch: 0
}

const batches: Weights = { ...callers, submit: 3, supersede: 2, resubmit: 2, batch: 3 }

describe("reentrant properties", () => {
  it(
    "I1 I3 I10 I11 I13 I15 callers that supersede, resubmit from a waiter, cancel twice or from a task body (tight)",
    () => fc.assert(fc.asyncProperty(program(tight, callers), check), parameters("callers (tight)", 20261206, 300)),
    30_000
  )
  it(
    "I1 I3 I6 I10 I11 I13 I15 callers that supersede, resubmit from a waiter, shut down, cancel twice or from a task body (wide)",
    () => fc.assert(fc.asyncProperty(program(wide, callers), check), parameters("callers (wide)", 20261208, 100)),
    30_000
  )
  it(
    "I5 I10 I11 I14 batches stopped early (take, runHead, interrupted consumer) among callers that react",
    () => fc.assert(fc.asyncProperty(program(wide, batches), check), parameters("batches", 20261207, 120)),
    30_000
  )
})
