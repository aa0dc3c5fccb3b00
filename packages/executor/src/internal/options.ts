/**
 * Validation of user options: every bad value becomes an `ExecutorError` with reason `InvalidOption` that names
 * the option and the value, before anything is started.
 */
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as ExecutorError from "../ExecutorError.ts"

export type Check<A> = Result.Result<A, ExecutorError.ExecutorError>

export const integer = (option: string, value: unknown, min: number, fallback: number): Check<number> => {
  if (value === undefined) return Result.succeed(fallback)
  if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
    return Result.fail(ExecutorError.invalidOption(option, value, `an integer >= ${min}`))
  }
  return Result.succeed(value)
}

/** An integer >= min, or Infinity / "unbounded" when `unbounded` is allowed. */
export const capacity = (option: string, value: unknown, fallback: number): Check<number> => {
  if (value === "unbounded" || value === Number.POSITIVE_INFINITY) return Result.succeed(Number.POSITIVE_INFINITY)
  if (value === undefined) return Result.succeed(fallback)
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    return Result.fail(ExecutorError.invalidOption(option, value, `an integer >= 1 or "unbounded"`))
  }
  return Result.succeed(value)
}

export const number = (option: string, value: unknown, min: number, fallback: number): Check<number> => {
  if (value === undefined) return Result.succeed(fallback)
  if (typeof value !== "number" || Number.isNaN(value) || value < min) {
    return Result.fail(ExecutorError.invalidOption(option, value, `a number >= ${min}`))
  }
  return Result.succeed(value)
}

/** A duration >= 0 in milliseconds (Infinity allowed when `infinite`). */
export const duration = (
  option: string,
  value: Duration.Input | undefined,
  fallback: number,
  infinite = false
): Check<number> => {
  if (value === undefined) return Result.succeed(fallback)
  if (typeof value === "number" && Number.isNaN(value)) {
    return Result.fail(ExecutorError.invalidOption(option, value, "a duration >= 0"))
  }
  const decoded = Duration.fromInput(value)
  if (Option.isNone(decoded)) return Result.fail(ExecutorError.invalidOption(option, value, "a duration >= 0"))
  const millis = Duration.toMillis(decoded.value)
  if (Number.isNaN(millis) || millis < 0 || (!infinite && !Number.isFinite(millis))) {
    return Result.fail(
      ExecutorError.invalidOption(option, value, infinite ? "a duration >= 0" : "a finite duration >= 0")
    )
  }
  return Result.succeed(millis)
}

export const oneOf = <const L extends string>(
  option: string,
  value: unknown,
  allowed: ReadonlyArray<L>,
  fallback: L
): Check<L> => {
  if (value === undefined) return Result.succeed(fallback)
  if (typeof value !== "string" || !allowed.includes(value as L)) {
    return Result.fail(
      ExecutorError.invalidOption(option, value, `one of ${allowed.map((a) => JSON.stringify(a)).join(", ")}`)
    )
  }
  return Result.succeed(value as L)
}
