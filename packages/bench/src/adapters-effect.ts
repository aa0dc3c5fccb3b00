/** Effect's own tools: `Effect.forEach` and `Stream.mapEffect`; also the Effect task bodies Pile shares. */
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Stream from "effect/Stream"
import { type Adapter, boom, range, type Work } from "./adapter.ts"
import type { Settled } from "./pool.ts"

export const effectVoid: Effect.Effect<void, Error> = Effect.void
const effectSleep: Effect.Effect<void, Error> = Effect.sleep("2 millis")
const effectFail: Effect.Effect<void, Error> = Effect.fail(boom)
/** Finishes at once like `Effect.void`, but is not an `Exit`: `Effect.forEach` must fork a fiber for it. */
const effectSync: Effect.Effect<void, Error> = Effect.sync(() => {})
/** The promise a p-limit user hands over; wrapped per task in `Effect.tryPromise`, as users write it. */
const resolvedPromise = (): Promise<void> => Promise.resolve()
const effectPromise = (): Effect.Effect<void, Error> => Effect.tryPromise(resolvedPromise) as Effect.Effect<void, Error>
export const effectTask = (work: Work): (i: number) => Effect.Effect<void, Error> =>
  work === "promise"
    ? effectPromise
    : work === "instant"
    ? () => effectVoid
    : work === "sync"
    ? () => effectSync
    : work === "sleep"
    ? () => effectSleep
    : (i) => i % 10 === 9 ? effectFail : effectVoid

/** Counts exits (the containment scenario). */
const counter = () => {
  const settled: Settled = { outcomes: 0, failures: 0 }
  const record = (exit: Exit.Exit<unknown, unknown>): void => {
    settled.outcomes++
    if (exit._tag === "Failure") settled.failures++
  }
  return { settled, record }
}

const forEach: Adapter = {
  id: "effect-foreach",
  batch: (n, concurrency, work, count) => {
    const items = range(n)
    const task = effectTask(work)
    if (!count) {
      return Effect.runPromise(Effect.forEach(items, task, { concurrency, discard: true })).then(() => ({
        outcomes: n,
        failures: 0
      }))
    }
    // forEach stops at the first failure and interrupts the rest: containment needs Effect.exit per item.
    const { record, settled } = counter()
    return Effect.runPromise(
      Effect.forEach(items, (i) => Effect.map(Effect.exit(task(i)), record), { concurrency, discard: true })
    ).then(() => settled)
  },
  rate: async (spec) => {
    // Loaded here: effect/persistence takes ~0.3 s to import, and only this scenario needs it.
    const RateLimiter = await import("effect/persistence/RateLimiter")
    const Layer = await import("effect/Layer")
    const limited = Effect.gen(function*() {
      const withLimiter = yield* RateLimiter.makeWithRateLimiter
      const options = {
        key: "bench",
        limit: spec.limit,
        window: spec.windowMs,
        onExceeded: "delay",
        algorithm: "fixed-window"
      } as const
      yield* Effect.forEach(
        range(spec.n),
        (i) => withLimiter(options)(Effect.sync(() => spec.onStart(i))),
        { concurrency: "unbounded", discard: true }
      )
    })
    return Effect.runPromise(
      limited.pipe(Effect.provide(RateLimiter.layer.pipe(Layer.provide(RateLimiter.layerStoreMemory))))
    )
  }
}

const streamMapEffect: Adapter = {
  id: "effect-stream",
  batch: (n, concurrency, work, count) => {
    const items = Stream.fromArray(range(n))
    const task = effectTask(work)
    if (!count) {
      return Effect.runPromise(Stream.runDrain(Stream.mapEffect(items, task, { concurrency, unordered: true })))
        .then(() => ({ outcomes: n, failures: 0 }))
    }
    const { record, settled } = counter()
    const exits = Stream.mapEffect(items, (i) => Effect.exit(task(i)), { concurrency, unordered: true })
    return Effect.runPromise(
      Stream.runForEachArray(exits, (chunk) =>
        Effect.sync(() => {
          for (const exit of chunk) record(exit)
        }))
    ).then(() => settled)
  }
}

export const adapters: ReadonlyArray<Adapter> = [forEach, streamMapEffect]
