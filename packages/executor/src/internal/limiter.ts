/**
 * The rate-limit algorithms of the in-memory store, one state per bucket (a limit, for one key).
 *
 * Every check is "can `amount` units start at `now`?"; a denial says the earliest time it could. A
 * reservation over several buckets is all or nothing: every bucket is checked before any is charged.
 * Times are milliseconds (fractions allowed) on the executor's `Clock`.
 */
import type { AdaptiveRate } from "./adaptive.ts"

/**
 * A rate-limit model: `"sliding-window"` (exact: no window of length W admits more than L), `"gcra"`
 * (spacing: starts W / L apart, up to `burst` back to back) or `"token-bucket"` (bursts of up to B, then r per
 * millisecond). Refunds to GCRA and token buckets apply only while no later reservation relied on them (see
 * `RateLimit`). Re-exported by `RateLimit`.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, Pile, type RateLimit } from "@pile/executor"
 * import { Clock, Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * // 20 per second with burst 1: starts are spaced 50 ms apart.
 * const algorithm: RateLimit.Algorithm = "gcra"
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ limits: [{ limit: 20, window: "1 second", algorithm, burst: 1 }] })
 *   const starts = yield* Pile.collect(executor.run([1, 2, 3], () => Clock.currentTimeMillis))
 *   assert.ok(starts[1]! - starts[0]! >= 49 && starts[2]! - starts[1]! >= 49, `starts: ${starts}`)
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type Algorithm = "sliding-window" | "gcra" | "token-bucket"

/**
 * One limit instance: "limit units per window", for one key. A store receives buckets inside claims; their
 * `id` is stable across processes for the same declaration and key. Re-exported by `RateLimit`.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, RateLimit } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * // A store that records the buckets each reservation claims, around the in-memory store.
 * const inner = RateLimit.memoryStore()
 * const seen: Array<RateLimit.Bucket> = []
 * const store: RateLimit.RateLimitStore = {
 *   reserve: (id, claims, now) => Effect.andThen(Effect.sync(() => seen.push(...claims.map((c) => c.bucket))), inner.reserve(id, claims, now)),
 *   settle: inner.settle
 * }
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ limits: [{ key: "api", limit: 5, window: "1 second" }], store })
 *   yield* (yield* executor.submit(Effect.void, { key: "api" })).await
 *   assert.equal(seen[0]!.budget, "requests")
 *   assert.deepEqual([seen[0]!.algorithm, seen[0]!.limit, seen[0]!.window], ["sliding-window", 5, 1000])
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Bucket {
  /** Stable across processes for the same declaration and key (the Redis store keys on it). */
  readonly id: string
  /** The budget it counts, e.g. "requests" or "tokens" (settlement matches costs by it). */
  readonly budget: string
  readonly algorithm: Algorithm
  readonly limit: number
  /** Window length in milliseconds. */
  readonly window: number
  /** GCRA: starts allowed back to back (1 = evenly spaced). Token bucket: capacity. */
  readonly burst: number
  /** GCRA: extra spacing added per unit, in milliseconds (a safety margin against a server's clock). */
  readonly margin: number
  /** The task key it counts, for a limit with `key` or `perKey`; undefined for an overall limit. */
  readonly key?: string | undefined
  /** The adaptive rate that scales its limit, for a limit declared `adaptive`. */
  readonly adaptive?: AdaptiveRate | undefined
}

/**
 * The bucket as it applies at `now`: an adaptive bucket's limit scaled by its key's factor (never below one
 * unit, nor below `amount`, so that a cost that fits the configured limit still fits), and the time before
 * which it is held, if it is. A bucket without `adaptive` is returned as it is.
 */
export const effectiveAt = (
  bucket: Bucket,
  amount: number,
  now: number
): { readonly bucket: Bucket; readonly heldUntil: number | undefined } => {
  const adaptive = bucket.adaptive
  if (adaptive === undefined) return { bucket, heldUntil: undefined }
  const key = bucket.key ?? ""
  const heldUntil = adaptive.heldAt(key, now)
  const factor = adaptive.factorAt(key, now)
  if (factor >= 1) return { bucket, heldUntil }
  const limit = bucket.algorithm === "sliding-window"
    ? Math.max(Math.floor(bucket.limit * factor), 1, Math.min(amount, bucket.limit))
    : Math.max(bucket.limit * factor, Number.MIN_VALUE)
  return { bucket: { ...bucket, limit }, heldUntil }
}

/**
 * What a task asks of one bucket: `amount` units (its cost for the bucket's budget). A reservation is a list
 * of claims, granted all or nothing. Re-exported by `RateLimit`.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, RateLimit } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const inner = RateLimit.memoryStore()
 * const claimed: Array<string> = []
 * const store: RateLimit.RateLimitStore = {
 *   reserve: (id, claims: ReadonlyArray<RateLimit.Claim>, now) =>
 *     Effect.andThen(Effect.sync(() => claimed.push(...claims.map((c) => `${c.bucket.budget}=${c.amount}`))), inner.reserve(id, claims, now)),
 *   settle: inner.settle
 * }
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({
 *     limits: [{ limit: 60, window: "1 minute" }, { budget: "tokens", limit: 10_000, window: "1 minute" }],
 *     store
 *   })
 *   yield* (yield* executor.submit(Effect.void, { cost: { tokens: 1200 } })).await
 *   // One request and 1,200 tokens, reserved together.
 *   assert.deepEqual(claimed, ["requests=1", "tokens=1200"])
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Claim {
  readonly bucket: Bucket
  readonly amount: number
}

/**
 * Handle of a granted reservation, kept by the task for settlement: a store returns it from `reserve` and
 * receives it back in `settle`. Re-exported by `RateLimit`.
 *
 * **Example**
 *
 * ```ts
 * import { Executor, RateLimit } from "@pile/executor"
 * import { Effect, Exit } from "effect"
 * import assert from "node:assert/strict"
 *
 * // A store that logs settlements: which reservation, what was charged, what was actually used.
 * const inner = RateLimit.memoryStore()
 * const settled: Array<[Array<number>, ReadonlyArray<number>]> = []
 * const store: RateLimit.RateLimitStore = {
 *   reserve: inner.reserve,
 *   settle: (reservation: RateLimit.Reservation, actual) =>
 *     Effect.andThen(Effect.sync(() => settled.push([[...reservation.charged], actual])), inner.settle(reservation, actual))
 * }
 *
 * const program = Effect.gen(function*() {
 *   const executor = yield* Executor.make({ limits: [{ budget: "tokens", limit: 10_000, window: "1 minute" }], store })
 *   const handle = yield* executor.submit(Effect.succeed({ usage: 300 }), {
 *     cost: { tokens: 1000 }, // the estimate
 *     settle: (exit) => (Exit.isSuccess(exit) ? { tokens: exit.value.usage } : undefined)
 *   })
 *   yield* handle.await
 *   yield* executor.shutdown() // settlements through a custom store are flushed by the dispatcher
 *   assert.deepEqual(settled, [[[1000], [300]]])
 * }).pipe(Effect.scoped)
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Reservation {
  readonly id: string
  /** When it was granted, on the store's clock: the admission time the rate bound is about. */
  readonly at: number
  readonly claims: ReadonlyArray<Claim>
  /** Amounts the buckets count now, per claim (updated by the settlements the store applied). */
  readonly charged: Array<number>
  /**
   * Reserved ahead (`RateLimitRedis` with `lookahead`): the task must not start before this time, on the
   * caller's clock. Absent when the reservation holds from the moment it was granted.
   */
  readonly notBefore?: number | undefined
}

/** A refused reservation: when it could be granted, and which buckets refused it. */
export interface Denial {
  readonly retryAt: number
  readonly blocking: ReadonlyArray<string>
}

/**
 * What settling a reservation to `actual` changes, claim by claim (every store computes the same corrections):
 * the claims whose amount changes, with the difference. An invalid amount (negative, not finite, missing)
 * leaves its claim as it was. The store records a correction it applied in `reservation.charged[index]`.
 */
export const settlement = (
  reservation: Reservation,
  actual: ReadonlyArray<number>
): Array<{ readonly claim: Claim; readonly index: number; readonly delta: number }> => {
  const out: Array<{ readonly claim: Claim; readonly index: number; readonly delta: number }> = []
  reservation.claims.forEach((claim, index) => {
    const next = actual[index]
    if (next === undefined || !Number.isFinite(next) || next < 0) return
    const delta = next - reservation.charged[index]!
    if (delta !== 0) out.push({ claim, index, delta })
  })
  return out
}

/** The largest amount one task may claim from a bucket; a larger cost could never be admitted. */
export const capacityOf = (bucket: Bucket): number => bucket.algorithm === "token-bucket" ? bucket.burst : bucket.limit

interface LogEntry {
  at: number
  amount: number
}

/** Sliding log: every admission of the last `window` with its amount. */
class SlidingState {
  /** Set when the limiter dropped this state (it was neutral); a fresh one replaces it. */
  droppedAt: number | undefined = undefined
  log: Array<LogEntry> = []
  head = 0
  used = 0
  /** Log entries by reservation id, for settlement. */
  readonly byId = new Map<string, LogEntry>()
  private readonly ids: Array<string> = []

  purge(bucket: Bucket, now: number): void {
    // An entry at time t counts in every window [s, s + W) with s in (t - W, t]: it leaves at t + W.
    while (this.head < this.log.length && this.log[this.head]!.at + bucket.window <= now) {
      this.used -= this.log[this.head]!.amount
      this.byId.delete(this.ids[this.head]!)
      this.head++
    }
    if (this.head > 1024 && this.head * 2 > this.log.length) {
      this.log = this.log.slice(this.head)
      this.ids.splice(0, this.head)
      this.head = 0
    }
  }

  /** The earliest time `amount` fits, given the current log (now if it fits now). */
  earliest(bucket: Bucket, amount: number, now: number): number {
    if (this.used + amount <= bucket.limit) return now
    let freed = 0
    for (let i = this.head; i < this.log.length; i++) {
      freed += this.log[i]!.amount
      if (this.used - freed + amount <= bucket.limit) return this.log[i]!.at + bucket.window
    }
    return Number.POSITIVE_INFINITY
  }

  /** Neutral at `now`: nothing left in the window, so a fresh state decides exactly as this one would. */
  idle(bucket: Bucket, now: number): boolean {
    this.purge(bucket, now)
    return this.head === this.log.length
  }

  charge(id: string, amount: number, now: number): undefined {
    const entry = { at: now, amount }
    this.log.push(entry)
    this.ids.push(id)
    this.byId.set(id, entry)
    this.used += amount
    return undefined
  }

  /**
   * Moves an admission to the time its task really started (later, never earlier), and keeps the log in time
   * order (`purge` and `earliest` read it from the oldest): the entry moves past the ones it now follows. It
   * is looked for from the newest end, where an entry anchored a moment after its admission sits.
   */
  anchor(id: string, at: number): void {
    const entry = this.byId.get(id)
    if (entry === undefined || at <= entry.at) return
    entry.at = at
    const log = this.log
    const ids = this.ids
    let i = log.length - 1
    while (log[i] !== entry) i--
    for (; i + 1 < log.length && log[i + 1]!.at < at; i++) {
      log[i] = log[i + 1]!
      log[i + 1] = entry
      const id = ids[i]!
      ids[i] = ids[i + 1]!
      ids[i + 1] = id
    }
  }

  settle(id: string, delta: number): void {
    const entry = this.byId.get(id)
    if (entry === undefined) return // already out of the window: nothing left to correct
    entry.amount += delta
    this.used += delta
  }
}

/**
 * What a GCRA or token-bucket settlement checks: the bucket's state right after the reservation's own last
 * change (`value`, and `last` for a token bucket), and the limit a refund may not cross (`bound`: GCRA's TAT
 * before the reservation, a token bucket's tokens before it). Owned by the reservation's handle.
 *
 * Invariant: the bucket's state equals the mark only if no other reservation has relied on this one's units
 * since (every reservation, extra charge and re-anchoring moves the state; only the last reservation's refund
 * moves it back, never past its own bound). Then, and only then, a refund is exact (docs/guides/rate-limits.md).
 */
interface Mark {
  value: number
  last: number
  readonly bound: number
  /** The state the reservation charged: once that state was dropped (`droppedAt`), the mark no longer holds. */
  readonly state: GcraState | TokenBucketState
}

/** GCRA: the theoretical arrival time of the next unit. */
class GcraState {
  droppedAt: number | undefined = undefined
  tat = Number.NEGATIVE_INFINITY

  /** Neutral at `now`: the TAT has passed, so a fresh state (TAT -∞) decides exactly as this one would. */
  idle(_bucket: Bucket, now: number): boolean {
    return this.tat <= now
  }

  private interval(bucket: Bucket): number {
    return bucket.window / bucket.limit + bucket.margin
  }

  earliest(bucket: Bucket, _amount: number, now: number): number {
    const tolerance = (bucket.burst - 1) * this.interval(bucket)
    return Math.max(now, this.tat - tolerance)
  }

  charge(bucket: Bucket, amount: number, now: number): Mark {
    const bound = Math.max(this.tat, now)
    this.tat = bound + amount * this.interval(bucket)
    return { value: this.tat, last: 0, bound, state: this }
  }

  /**
   * An extra charge always applies. A refund applies only while the reservation is the last change of the
   * bucket (`mark`), and never brings the TAT below where it was before the reservation; otherwise later
   * reservations were spaced from the refunded units, and the refund is dropped. True when applied.
   */
  settle(bucket: Bucket, delta: number, mark: Mark | undefined): boolean {
    const holds = mark !== undefined && mark.state === this && this.tat === mark.value
    if (delta < 0 && !holds) return false
    // An extra charge for a reservation whose state was dropped counts from when it was dropped (its TAT had
    // passed by then): never less than the dropped state would have had.
    const floor = mark !== undefined && mark.state !== this ? mark.state.droppedAt ?? mark.value : this.tat
    this.tat = delta < 0
      ? Math.max(mark!.bound, this.tat + delta * this.interval(bucket))
      : Math.max(this.tat, floor) + delta * this.interval(bucket)
    if (holds) mark.value = this.tat
    return true
  }

  /** Spacing counts from when the task really started: the next slot is at least one interval after it. */
  anchor(bucket: Bucket, amount: number, at: number, mark: Mark | undefined): void {
    const holds = mark !== undefined && mark.state === this && this.tat === mark.value
    this.tat = Math.max(this.tat, at + amount * this.interval(bucket))
    if (holds) mark.value = this.tat
  }
}

/** Token bucket: `burst` tokens, refilled continuously at limit / window (lazily: a check changes nothing). */
class TokenBucketState {
  droppedAt: number | undefined = undefined
  tokens: number
  last = Number.NEGATIVE_INFINITY

  constructor(bucket: Bucket) {
    this.tokens = bucket.burst
  }

  /** Neutral at `now`: full again, so a fresh state (`burst` tokens) decides exactly as this one would. */
  idle(bucket: Bucket, now: number): boolean {
    return this.available(bucket, now) >= bucket.burst
  }

  private available(bucket: Bucket, now: number): number {
    return now > this.last && this.last !== Number.NEGATIVE_INFINITY
      ? Math.min(bucket.burst, this.tokens + (now - this.last) * bucket.limit / bucket.window)
      : this.tokens
  }

  earliest(bucket: Bucket, amount: number, now: number): number {
    const tokens = this.available(bucket, now)
    if (tokens >= amount) return now
    return now + (amount - tokens) * bucket.window / bucket.limit
  }

  charge(bucket: Bucket, amount: number, now: number): Mark {
    const bound = this.available(bucket, now)
    this.last = Math.max(this.last, now)
    this.tokens = bound - amount
    return { value: this.tokens, last: this.last, bound, state: this }
  }

  /**
   * An extra charge always applies. A refund applies only while the reservation is the last change of the
   * bucket (`mark`), up to the tokens there were before it (never above `burst`); otherwise later reservations
   * took the refunded tokens into account, and the refund is dropped. True when applied.
   */
  settle(bucket: Bucket, delta: number, mark: Mark | undefined): boolean {
    const holds = mark !== undefined && mark.state === this && this.tokens === mark.value &&
      this.last === mark.last
    if (delta < 0 && !holds) return false
    this.tokens = delta < 0 ? Math.min(mark!.bound, bucket.burst, this.tokens - delta) : this.tokens - delta
    if (holds) mark.value = this.tokens
    return true
  }
}

type State = SlidingState | GcraState | TokenBucketState

/**
 * The in-memory store's state: one per executor unless shared explicitly.
 *
 * Invariant: a bucket's state is kept only while it is not neutral; `sweep` drops the neutral ones (a sliding
 * log with nothing in its window, a GCRA TAT that has passed, a full token bucket). A dropped state is
 * exactly a fresh one, so a key that comes back is decided as if it had never left: memory follows the keys
 * inside their window, never the keys seen so far.
 */
export class MemoryLimiter {
  /** One state per bucket id, with the bucket it was made for (its window, for the sweep). */
  private readonly states = new Map<string, State>()
  private readonly bucketOf = new Map<string, Bucket>()
  /** The marks of granted reservations, claim by claim (undefined for a sliding-window claim). */
  private readonly marks = new WeakMap<Reservation, ReadonlyArray<Mark | undefined>>()

  private state(bucket: Bucket): State {
    let state = this.states.get(bucket.id)
    if (state === undefined) {
      state = bucket.algorithm === "sliding-window"
        ? new SlidingState()
        : bucket.algorithm === "gcra"
        ? new GcraState()
        : new TokenBucketState(bucket)
      this.states.set(bucket.id, state)
      this.bucketOf.set(bucket.id, bucket)
    }
    return state
  }

  /** Bucket states held (neutral ones included until the next `sweep`). */
  get size(): number {
    return this.states.size
  }

  /**
   * Drops every state that is neutral at `now`: deciding from a fresh state gives the same answers, so no
   * bound changes. A reservation of a dropped state can still be settled: an extra charge goes to the fresh
   * state (from the time of the drop at the earliest), a refund is dropped. Returns the states left.
   */
  sweep(now: number): number {
    for (const [id, state] of this.states) {
      if (state.idle(this.bucketOf.get(id)!, now)) {
        state.droppedAt = now
        this.states.delete(id)
        this.bucketOf.delete(id)
      }
    }
    return this.states.size
  }

  private earliest(bucket: Bucket, amount: number, now: number): number {
    const state = this.state(bucket)
    if (state instanceof SlidingState) {
      state.purge(bucket, now)
      return state.earliest(bucket, amount, now)
    }
    return state.earliest(bucket, amount, now)
  }

  /**
   * Reserves every claim at `now`, or none: then returns the earliest time all could fit and the buckets that
   * refused (younger tasks must not take from those meanwhile).
   */
  reserve(id: string, claims: ReadonlyArray<Claim>, now: number): Reservation | Denial {
    let retryAt = now
    let blocking: Array<string> | undefined
    // An adaptive bucket is checked and charged at its rate of the moment (the same bucket otherwise).
    let buckets: Array<Bucket> | undefined
    for (const [i, claim] of claims.entries()) {
      let bucket = claim.bucket
      let earliest: number
      if (bucket.adaptive !== undefined) {
        const effective = effectiveAt(bucket, claim.amount, now)
        bucket = effective.bucket
        ;(buckets ??= claims.map((c) => c.bucket))[i] = bucket
        earliest = Math.max(effective.heldUntil ?? now, this.earliest(bucket, claim.amount, now))
      } else {
        earliest = this.earliest(bucket, claim.amount, now)
      }
      if (earliest > now) (blocking ??= []).push(claim.bucket.id)
      retryAt = Math.max(retryAt, earliest)
    }
    if (blocking !== undefined) return { retryAt, blocking }
    const marks = claims.map((claim, i) => {
      const bucket = buckets?.[i] ?? claim.bucket
      const state = this.state(bucket)
      if (state instanceof SlidingState) return state.charge(id, claim.amount, now)
      return state.charge(bucket, claim.amount, now)
    })
    const reservation: Reservation = { id, at: now, claims, charged: claims.map((claim) => claim.amount) }
    this.marks.set(reservation, marks)
    return reservation
  }

  /**
   * Re-anchors a reservation to the moment its task really started, which may be later than the reservation
   * (the dispatcher can be descheduled between the two): the sliding log records the real start, and GCRA
   * spaces the next start from it, so a late start never lets the next one come too close.
   */
  anchor(reservation: Reservation, at: number): void {
    const marks = this.marks.get(reservation)
    // A handle this store did not grant (another store's, or a copy) moves nothing.
    if (marks === undefined) return
    reservation.claims.forEach((claim, i) => {
      const state = this.state(claim.bucket)
      if (state instanceof SlidingState) state.anchor(reservation.id, at)
      else if (state instanceof GcraState) {
        const bucket = claim.bucket.adaptive === undefined
          ? claim.bucket
          : effectiveAt(claim.bucket, claim.amount, at).bucket
        state.anchor(bucket, claim.amount, at, marks[i])
      }
    })
  }

  /**
   * Corrects the amounts charged by a reservation (to 0 to refund it). Sliding window: in the window it was
   * charged in. GCRA and token bucket: an extra charge always; a refund only while no later reservation has
   * relied on it (see `Mark`), else it is dropped and `charged` keeps the amount the bucket still counts.
   */
  settle(reservation: Reservation, actual: ReadonlyArray<number>): void {
    const marks = this.marks.get(reservation)
    for (const { claim, delta, index } of settlement(reservation, actual)) {
      const state = this.state(claim.bucket)
      if (state instanceof SlidingState) state.settle(reservation.id, delta)
      else if (!state.settle(claim.bucket, delta, marks?.[index])) continue
      reservation.charged[index] = reservation.charged[index]! + delta
    }
  }
}
