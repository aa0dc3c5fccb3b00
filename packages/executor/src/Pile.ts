/**
 * The Pile: a `Stream` of task outcomes in completion order, and the consumers that read it.
 *
 * A Pile comes from an executor (`executor.pile`: every submitted task) or from a batch (`executor.run`: one
 * batch's tasks, each outcome carrying its input). Each element is an `Outcome`, whose `exit` is the task's
 * own `Exit<A, E>`; `exits` gives the bare `Stream<Exit<A, E>>`. Being a `Stream`, a Pile pipes into any
 * stream combinator.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Result from "effect/Result"
import * as Stream from "effect/Stream"
import * as Outcome from "./Outcome.ts"

/**
 * A stream of outcomes in completion order. `I` is the batch input type (`undefined` for submitted tasks);
 * `EX` and `RX` are the stream's own error (e.g. the executor closed before a batch was fed) and
 * requirements.
 *
 * @category models
 * @since 0.1.0
 */
export type Pile<A, E = never, I = undefined, EX = never, RX = never> = Stream.Stream<Outcome.Outcome<A, E, I>, EX, RX>

/**
 * The bare exits, in completion order.
 *
 * @category consumers
 * @since 0.1.0
 */
export const exits = <A, E, I, EX, RX>(self: Pile<A, E, I, EX, RX>): Stream.Stream<Exit.Exit<A, E>, EX, RX> =>
  Stream.map(self, (outcome) => outcome.exit)

/**
 * The values of the tasks that succeeded, in completion order.
 *
 * @category consumers
 * @since 0.1.0
 */
export const successes = <A, E, I, EX, RX>(self: Pile<A, E, I, EX, RX>): Stream.Stream<A, EX, RX> =>
  Stream.filterMap(self, (outcome) =>
    outcome.exit._tag === "Success" && outcome.kind === "success"
      ? Result.succeed(outcome.exit.value)
      : Result.failVoid)

/**
 * The outcomes that count as failures (every kind but `"success"` and `"skipped"`), in completion order.
 *
 * @category consumers
 * @since 0.1.0
 */
export const failures = <A, E, I, EX, RX>(
  self: Pile<A, E, I, EX, RX>
): Stream.Stream<Outcome.Outcome<A, E, I>, EX, RX> => Stream.filter(self, Outcome.isFailure)

/**
 * Reads the whole Pile and splits it: successful outcomes first, failed ones second (skipped ones are in
 * neither), each in completion order.
 *
 * @category consumers
 * @since 0.1.0
 */
export const partition = <A, E, I, EX, RX>(
  self: Pile<A, E, I, EX, RX>
): Effect.Effect<[successes: Array<Outcome.Outcome<A, E, I>>, failures: Array<Outcome.Outcome<A, E, I>>], EX, RX> =>
  Stream.runFold(
    self,
    (): [Array<Outcome.Outcome<A, E, I>>, Array<Outcome.Outcome<A, E, I>>] => [[], []],
    (acc, outcome) => {
      if (outcome.kind === "success") acc[0].push(outcome)
      else if (Outcome.isFailure(outcome)) acc[1].push(outcome)
      return acc
    }
  )

/**
 * Every failure of a Pile read by `collect`, with the task ids (I19).
 *
 * **Details**
 *
 * `failures` holds the failed outcomes in completion order, at most `maxFailures` of them; `count` is how many
 * there were in all, so `truncated` says whether some were left out.
 *
 * @category errors
 * @since 0.1.0
 */
export class PileFailures<A, E, I> extends Data.TaggedError("PileFailures")<{
  readonly failures: ReadonlyArray<Outcome.Outcome<A, E, I>>
  readonly count: number
  readonly succeeded: number
}> {
  get truncated(): boolean {
    return this.count > this.failures.length
  }
  override get message(): string {
    const ids = this.failures.slice(0, 10).map((outcome) => `${outcome.id} (${outcome.kind})`).join(", ")
    return `${this.count} task(s) failed, ${this.succeeded} succeeded; failed: ${ids}${this.count > 10 ? ", ..." : ""}`
  }
}

/**
 * Options of `collect`.
 *
 * @category models
 * @since 0.1.0
 */
export interface CollectOptions {
  /** The most failures kept in the error (all are counted). Default 1000. */
  readonly maxFailures?: number | undefined
}

/**
 * Reads the whole Pile: succeeds with every value, in task id order (submission order, which for a batch is
 * input order), or, if any task failed, fails with one `PileFailures` holding every failure (up to
 * `maxFailures`, with the total count). It never stops at the first failure.
 *
 * @category consumers
 * @since 0.1.0
 */
export const collect = <A, E, I, EX, RX>(
  self: Pile<A, E, I, EX, RX>,
  options?: CollectOptions | undefined
): Effect.Effect<Array<A>, PileFailures<A, E, I> | EX, RX> => {
  const max = options?.maxFailures ?? 1000
  return Effect.flatMap(
    Stream.runFold(
      self,
      () => ({ values: [] as Array<[number, A]>, failures: [] as Array<Outcome.Outcome<A, E, I>>, count: 0 }),
      (acc, outcome) => {
        if (outcome.kind === "success" && outcome.exit._tag === "Success") {
          acc.values.push([outcome.id, outcome.exit.value])
        } else if (Outcome.isFailure(outcome)) {
          acc.count++
          if (acc.failures.length < max) acc.failures.push(outcome)
        }
        return acc
      }
    ),
    (acc) =>
      acc.count > 0
        ? Effect.fail(new PileFailures({ failures: acc.failures, count: acc.count, succeeded: acc.values.length }))
        : Effect.succeed(acc.values.sort((a, b) => a[0] - b[0]).map(([, value]) => value))
  )
}
