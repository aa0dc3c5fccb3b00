/**
 * The adaptive rate of limits that learn from a server's 429s: per key, a factor in (0, 1] that scales the
 * limits' rates (lowered multiplicatively on a 429, recovered additively with time), and a hold (a time
 * before which the key's adaptive limits admit nothing, when the server said how long to wait).
 *
 * The `...At` methods take the time explicitly (milliseconds on the executor's `Clock`, as the stores receive
 * it), so that the stores can consult it synchronously; the others are effects that read the `Clock`.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

/** One key's state. Invariant: `floor <= factor <= 1` at `since`; it recovers linearly from there. */
interface KeyState {
  /** The factor at `since`. */
  factor: number
  /** When the factor was last lowered (ms); 429s of requests sent before it are not news. */
  since: number
  /** No adaptive admission for this key before it (ms). */
  heldUntil: number
  /** Why it is held: shown by progress displays. */
  reason: string | undefined
  /** 429s that lowered the factor, and 429s ignored as already answered by a slow-down. */
  slowDowns: number
}

/**
 * What an adaptive rate knows of one key, for a progress display or a summary.
 *
 * **Example**
 *
 * ```ts
 * import { RateLimit } from "@pile/executor"
 * import assert from "node:assert/strict"
 *
 * const rate = RateLimit.adaptive({ decrease: 0.5 })
 * rate.slowDownAt("api.example.com", 1_000)
 * const [key] = rate.snapshotAt(1_000)
 * assert.deepEqual([key!.key, key!.factor, key!.slowDowns], ["api.example.com", 0.5, 1])
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface AdaptiveKey {
  readonly key: string
  /** The share of the configured rate in force now, in (0, 1]. */
  readonly factor: number
  /** Until when the key is held (ms), when it is. */
  readonly heldUntil: number | undefined
  /** Why it is held, as given to `hold`. */
  readonly reason: string | undefined
  /** How many times its rate was lowered. */
  readonly slowDowns: number
}

/**
 * Options of `RateLimit.adaptive`.
 *
 * **Example**
 *
 * ```ts
 * import { RateLimit } from "@pile/executor"
 * import assert from "node:assert/strict"
 *
 * const options: RateLimit.AdaptiveOptions = { decrease: 0.8, increase: 0.05, floor: 0.1 }
 * assert.equal(RateLimit.adaptive(options).factorAt("k", 0), 1)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface AdaptiveOptions {
  /** The factor a 429 multiplies the key's rate by, in (0, 1). Default 0.95. */
  readonly decrease?: number | undefined
  /** The share of the configured rate regained per second after a slow-down, > 0. Default 0.1. */
  readonly increase?: number | undefined
  /** The lowest share of the configured rate, in (0, 1]. Default 0.05. */
  readonly floor?: number | undefined
}

/**
 * An adaptive rate: the rate of the limits declared with it (`adaptive` in a `RateLimit.Limit`), per key,
 * lowered after a 429 that said no wait, recovered step by step to the configured limit, and held for the
 * wait a server asked for. Made by `RateLimit.adaptive`; re-exported by `RateLimit`.
 *
 * **When to use**
 *
 * Make it with `RateLimit.adaptive`, give it to limits, and tell it what the server answered: `slowDown`
 * after a 429 without a wait, `hold` after an answer that asks for one; read `factor` or `snapshot` for a
 * display. Use the `...At` methods where the time is at hand and no effect runs (an HTTP client's callback).
 *
 * **Details**
 *
 * Per key: `factor` is the share of the configured rate in force, `slowDown` lowers it (a 429 without a
 * wait), `hold` holds the key (a wait the server asked for), `snapshot` lists the keys that were slowed down
 * or held. Each effect is its `...At` method at the `Clock`'s current time. The stores read it at each
 * reservation; nothing runs in the background.
 *
 * **Gotchas**
 *
 * Times are milliseconds on the executor's `Clock` (pass `Clock.currentTimeMillis`, not `Date.now()`, so
 * that `TestClock` drives it in tests).
 *
 * **Example**
 *
 * ```ts
 * import { RateLimit } from "@pile/executor"
 * import assert from "node:assert/strict"
 *
 * const rate = RateLimit.adaptive({ decrease: 0.5, increase: 0.1 })
 * rate.slowDownAt("api", 0) // a 429 without Retry-After: half the rate
 * assert.equal(rate.factorAt("api", 0), 0.5)
 * assert.equal(rate.factorAt("api", 2_000), 0.7) // 10% of the limit back per second
 * assert.equal(rate.factorAt("api", 10_000), 1) // never above the configured limit
 * assert.equal(rate.factorAt("other", 0), 1) // per key
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export class AdaptiveRate {
  readonly decrease: number
  readonly increase: number
  readonly floor: number
  /** The first option out of range, as `[name, value, expected]`: `Executor.make` refuses the limit. */
  readonly invalid: readonly [string, number, string] | undefined
  /** Keys that were slowed down or held; a key in its default state has no entry. */
  private readonly keys = new Map<string, KeyState>()

  constructor(options?: AdaptiveOptions | undefined) {
    const decrease = options?.decrease ?? 0.95
    const increase = options?.increase ?? 0.1
    const floor = options?.floor ?? 0.05
    this.decrease = decrease
    this.increase = increase
    this.floor = floor
    this.invalid = !(decrease > 0 && decrease < 1)
      ? ["decrease", decrease, "a number in (0, 1)"]
      : !(increase > 0 && Number.isFinite(increase))
      ? ["increase", increase, "a finite number > 0"]
      : !(floor > 0 && floor <= 1)
      ? ["floor", floor, "a number in (0, 1]"]
      : undefined
  }

  private state(key: string): KeyState {
    let state = this.keys.get(key)
    if (state === undefined) {
      state = { factor: 1, since: Number.NEGATIVE_INFINITY, heldUntil: 0, reason: undefined, slowDowns: 0 }
      this.keys.set(key, state)
    }
    return state
  }

  /** The share of the configured rate in force for `key` at `now`: 1 unless slowed down, then recovering. */
  factorAt(key: string, now: number): number {
    const state = this.keys.get(key)
    if (state === undefined || state.factor >= 1) return 1
    return Math.min(1, state.factor + (this.increase * Math.max(0, now - state.since)) / 1000)
  }

  /**
   * A 429 that said no wait: multiplies the key's rate by `decrease` (not below `floor`), unless the request
   * was sent (`sentAt`) before the last slow-down, which already answered it. Returns whether it lowered.
   */
  slowDownAt(key: string, now: number, sentAt?: number | undefined): boolean {
    const state = this.state(key)
    if (sentAt !== undefined && sentAt < state.since) return false
    state.factor = Math.max(this.floor, this.factorAt(key, now) * this.decrease)
    state.since = now
    state.slowDowns++
    return true
  }

  /** The server said how long to wait: the key's adaptive limits admit nothing before `until`. */
  holdAt(key: string, until: number, reason?: string | undefined): void {
    const state = this.state(key)
    if (until > state.heldUntil) {
      state.heldUntil = until
      state.reason = reason
    }
  }

  /** Until when `key` is held at `now`, or undefined when it is not. */
  heldAt(key: string, now: number): number | undefined {
    const state = this.keys.get(key)
    return state !== undefined && state.heldUntil > now ? state.heldUntil : undefined
  }

  /** Every key that was slowed down or held, with its state at `now`. */
  snapshotAt(now: number): Array<AdaptiveKey> {
    return [...this.keys].map(([key, state]) => ({
      key,
      factor: this.factorAt(key, now),
      heldUntil: state.heldUntil > now ? state.heldUntil : undefined,
      reason: state.heldUntil > now ? state.reason : undefined,
      slowDowns: state.slowDowns
    }))
  }

  /** A 429 without a wait for `key`, at the `Clock`'s time; see `slowDownAt`. Succeeds with whether it lowered. */
  slowDown(key: string, options?: { readonly sentAt?: number | undefined } | undefined): Effect.Effect<boolean> {
    return Effect.map(Clock.currentTimeMillis, (now) => this.slowDownAt(key, now, options?.sentAt))
  }

  /** The server asked `key` to wait `duration`, from the `Clock`'s time; see `holdAt`. */
  hold(key: string, duration: Duration.Input, reason?: string | undefined): Effect.Effect<void> {
    return Effect.map(Clock.currentTimeMillis, (now) => {
      const millis = Option.getOrUndefined(Option.map(Duration.fromInput(duration), Duration.toMillis))
      if (millis !== undefined && millis > 0) this.holdAt(key, now + millis, reason)
    })
  }

  /** The share of the configured rate in force for `key` now. */
  factor(key: string): Effect.Effect<number> {
    return Effect.map(Clock.currentTimeMillis, (now) => this.factorAt(key, now))
  }

  /** Every key that was slowed down or held, as it is now. */
  get snapshot(): Effect.Effect<Array<AdaptiveKey>> {
    return Effect.map(Clock.currentTimeMillis, (now) => this.snapshotAt(now))
  }
}
