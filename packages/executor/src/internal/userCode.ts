/**
 * The one place where the engine calls user code synchronously, outside any fiber: `settle`, a batch's
 * `key`, `cost` and task function, an error's `retryAfter`. A throw there must not unwind the engine in the
 * middle of a transition; it is returned as a defect, which becomes that task's outcome (issue 19).
 */
import * as Exit from "effect/Exit"

/** Calls `f`; a throw becomes a defect exit instead of an exception. */
export const guard = <A>(f: () => A): Exit.Exit<A> => {
  try {
    return Exit.succeed(f())
  } catch (defect) {
    return Exit.die(defect)
  }
}

/** What `call` returns when the user's function threw. */
export class Thrown {
  readonly exit: Exit.Exit<never>
  constructor(defect: unknown) {
    this.exit = Exit.die(defect)
  }
}

/**
 * `guard` for a hot path (a batch's task function, called once per task): calls `f(a, b)` without a closure
 * or an exit per call; only a throw allocates.
 */
export const call = <A, B, C>(f: (a: A, b: B) => C, a: A, b: B): C | Thrown => {
  try {
    return f(a, b)
  } catch (defect) {
    return new Thrown(defect)
  }
}
