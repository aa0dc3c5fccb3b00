/**
 * A Redis-backed `RateLimitStore`: rate budgets shared by several processes or machines.
 *
 * Every reservation is one Lua script, run atomically by Redis: it checks every claimed bucket, and charges
 * them all or none, with the same algorithms as the in-memory store (sliding log, GCRA, token bucket). Effect's
 * own `RateLimiterStore` offers fixed windows and token buckets, one budget per call; it cannot give the exact
 * sliding window nor an all-or-nothing reservation over several budgets (see docs/decisions/0003).
 *
 * Needs the `Redis` service of `effect/persistence`, e.g. from `@effect/platform-node`'s
 * `NodeRedis.layer({ url })`.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redis from "effect/persistence/Redis"
import { ClockOffset } from "./internal/clockOffset.ts"
import { type Claim, effectiveAt, type Reservation, settlement } from "./internal/limiter.ts"
import { nowMillis } from "./internal/timers.ts"
import type { RateLimitStore, ReserveResult } from "./RateLimit.ts"

/**
 * Options of `make`.
 *
 * **Example**
 *
 * ```ts
 * import type { RateLimitRedis } from "@pile/executor"
 * import assert from "node:assert/strict"
 *
 * // One prefix per application sharing the Redis server; windows on Redis's clock (the default).
 * const options: RateLimitRedis.Options = { prefix: "crawler:rl:", time: "server" }
 * assert.equal(options.prefix, "crawler:rl:")
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /** Prefix of every key. Default `"pile:rl:"`. */
  readonly prefix?: string | undefined
  /**
   * Which clock defines the windows: `"server"` (the default) uses Redis's `TIME`, so processes on machines
   * with skewed clocks still share one time line; `"client"` uses the `now` the executor passes (its `Clock`),
   * which tests drive with `TestClock`.
   */
  readonly time?: "server" | "client" | undefined
  /**
   * Reserve ahead: a reservation that could be granted within this long is granted now, for that later time
   * (`Reservation.notBefore`, on the caller's clock), instead of denied. Default 0 (never ahead). The
   * executor starts such a task at `notBefore`, not when the store answered: with a lookahead a little longer
   * than a round trip to Redis (e.g. `"20 millis"`), processes sharing a limit space their starts as tightly as
   * one process (see the rate-limit guide).
   */
  readonly lookahead?: Duration.Input | undefined
}

// KEYS: one per bucket. ARGV: now (client ms, or "" for server time), reservation id, lookahead (ms), then 6
// per bucket: algorithm, limit, window, burst, margin, amount.
// Returns { 1, now, at, then 3 per bucket: its mark (value, last, bound; see settleLua) } when reserved (at > now:
// reserved ahead, for `at`); { 0, now, retryAt, blocking bucket indexes... } when denied.
const reserveLua = `
local now
if ARGV[1] == "" then
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
else
  now = tonumber(ARGV[1])
end
local id = ARGV[2]
local lookahead = tonumber(ARGV[3])
local n = #KEYS
local inf = math.huge

local function param(i, k) return ARGV[3 + (i - 1) * 6 + k] end

local function earliest(i)
  local key = KEYS[i]
  local alg = param(i, 1)
  local limit = tonumber(param(i, 2))
  local window = tonumber(param(i, 3))
  local burst = tonumber(param(i, 4))
  local margin = tonumber(param(i, 5))
  local amount = tonumber(param(i, 6))
  if alg == "sliding-window" then
    local expired = redis.call("ZRANGEBYSCORE", key, "-inf", now - window)
    if #expired > 0 then
      local amounts = redis.call("HMGET", key .. ":a", unpack(expired))
      local freed = 0
      for j = 1, #amounts do freed = freed + (tonumber(amounts[j]) or 0) end
      redis.call("ZREM", key, unpack(expired))
      redis.call("HDEL", key .. ":a", unpack(expired))
      redis.call("INCRBYFLOAT", key .. ":u", -freed)
    end
    local used = tonumber(redis.call("GET", key .. ":u") or "0")
    if used + amount <= limit then return now end
    local entries = redis.call("ZRANGE", key, 0, -1, "WITHSCORES")
    local freed = 0
    for j = 1, #entries, 2 do
      freed = freed + (tonumber(redis.call("HGET", key .. ":a", entries[j])) or 0)
      if used - freed + amount <= limit then return tonumber(entries[j + 1]) + window end
    end
    return inf
  elseif alg == "gcra" then
    local interval = window / limit + margin
    local tat = tonumber(redis.call("GET", key) or "-1e308")
    return math.max(now, tat - (burst - 1) * interval)
  else
    local state = redis.call("HMGET", key, "t", "l")
    local tokens = tonumber(state[1]) or burst
    local last = tonumber(state[2]) or now
    if now > last then tokens = math.min(burst, tokens + (now - last) * limit / window) end
    if tokens >= amount then return now end
    return now + (amount - tokens) * window / limit
  end
end

local retryAt = now
local blocking = {}
for i = 1, n do
  local e = earliest(i)
  if e > now then
    table.insert(blocking, i)
    if e > retryAt then retryAt = e end
  end
end
if #blocking > 0 and retryAt - now > lookahead then
  local out = { 0, string.format("%.17g", now), string.format("%.17g", retryAt) }
  for _, i in ipairs(blocking) do table.insert(out, i) end
  return out
end
-- Granted at once, or ahead: every bucket is charged at \`at\` (the earliest time all of them allow).
local at = retryAt

local out = { 1, string.format("%.17g", now), string.format("%.17g", at) }
for i = 1, n do
  local key = KEYS[i]
  local alg = param(i, 1)
  local limit = tonumber(param(i, 2))
  local window = tonumber(param(i, 3))
  local burst = tonumber(param(i, 4))
  local margin = tonumber(param(i, 5))
  local amount = tonumber(param(i, 6))
  local ttl = math.ceil(window * 2 + 1000)
  if alg == "sliding-window" then
    redis.call("ZADD", key, at, id)
    redis.call("HSET", key .. ":a", id, amount)
    redis.call("INCRBYFLOAT", key .. ":u", amount)
    redis.call("PEXPIRE", key, ttl)
    redis.call("PEXPIRE", key .. ":a", ttl)
    redis.call("PEXPIRE", key .. ":u", ttl)
    table.insert(out, "")
    table.insert(out, "")
    table.insert(out, "")
  elseif alg == "gcra" then
    local interval = window / limit + margin
    local bound = math.max(tonumber(redis.call("GET", key) or "-1e308"), at)
    local tat = string.format("%.17g", bound + amount * interval)
    redis.call("SET", key, tat, "PX", math.ceil(tonumber(tat) - now + ttl))
    table.insert(out, tat)
    table.insert(out, "")
    table.insert(out, string.format("%.17g", bound))
  else
    local state = redis.call("HMGET", key, "t", "l")
    local tokens = tonumber(state[1]) or burst
    local last = tonumber(state[2]) or at
    if at > last then tokens = math.min(burst, tokens + (at - last) * limit / window) end
    local t = string.format("%.17g", tokens - amount)
    local l = string.format("%.17g", math.max(at, last))
    redis.call("HSET", key, "t", t, "l", l)
    redis.call("PEXPIRE", key, ttl)
    table.insert(out, t)
    table.insert(out, l)
    table.insert(out, string.format("%.17g", tokens))
  end
end
return out
`

// KEYS: one per bucket. ARGV: reservation id, then 9 per bucket: algorithm, limit, window, burst, margin,
// delta, and the reservation's mark for the bucket (value, last, bound; "" for a sliding window).
// An extra charge (delta > 0) always applies. A refund (delta < 0) to a GCRA or token bucket applies only
// while the bucket is still as the reservation left it (value, and last for a token bucket): no later
// reservation, extra charge or anchor relied on its units; it never crosses the bound (the TAT or tokens
// before the reservation). Otherwise it is dropped. Returns 2 per bucket: 1 if applied (else 0), and the
// reservation's new mark value ("" when the bucket is no longer as the reservation left it).
const settleLua = `
local id = ARGV[1]
local out = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local base = 1 + (i - 1) * 9
  local alg = ARGV[base + 1]
  local limit = tonumber(ARGV[base + 2])
  local window = tonumber(ARGV[base + 3])
  local burst = tonumber(ARGV[base + 4])
  local margin = tonumber(ARGV[base + 5])
  local delta = tonumber(ARGV[base + 6])
  local value = tonumber(ARGV[base + 7])
  local bound = tonumber(ARGV[base + 9])
  local applied = 0
  local mark = ""
  if alg == "sliding-window" then
    if redis.call("ZSCORE", key, id) then
      redis.call("HINCRBYFLOAT", key .. ":a", id, delta)
      redis.call("INCRBYFLOAT", key .. ":u", delta)
    end
    applied = 1
  elseif alg == "gcra" then
    local tat = redis.call("GET", key)
    if tat then
      local holds = value ~= nil and tonumber(tat) == value
      if delta > 0 or holds then
        local next = tonumber(tat) + delta * (window / limit + margin)
        if delta < 0 then next = math.max(bound, next) end
        local s = string.format("%.17g", next)
        redis.call("SET", key, s, "PX", math.max(1, redis.call("PTTL", key)))
        applied = 1
        if holds then mark = s end
      end
    end
  else
    local state = redis.call("HMGET", key, "t", "l")
    if state[1] then
      local last = tonumber(ARGV[base + 8])
      local holds = value ~= nil and tonumber(state[1]) == value and tonumber(state[2]) == last
      if delta > 0 or holds then
        local next = tonumber(state[1]) - delta
        if delta < 0 then next = math.min(bound, burst, next) end
        local s = string.format("%.17g", next)
        redis.call("HSET", key, "t", s)
        applied = 1
        if holds then mark = s end
      end
    end
  end
  table.insert(out, applied)
  table.insert(out, mark)
end
return out
`

// KEYS: one per bucket. ARGV: reservation id, at (on the store's clock), then 6 per bucket: algorithm, limit,
// window, margin, amount, and the reservation's mark value for the bucket ("" for a sliding window).
// Moves the reservation's admission later, to `at`, never earlier, as the in-memory store's `anchor` does: a
// sliding-window entry the bucket still counts moves to `at` (XX: one a reservation already dropped from its
// window is not brought back; GT: never earlier); a GCRA's TAT becomes at least at + amount * interval. A
// token bucket is unchanged. Returns one string per bucket: the reservation's new mark value when the bucket
// was as the reservation left it, "" otherwise.
const anchorLua = `
local id = ARGV[1]
local at = tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local base = 2 + (i - 1) * 6
  local alg = ARGV[base + 1]
  local limit = tonumber(ARGV[base + 2])
  local window = tonumber(ARGV[base + 3])
  local margin = tonumber(ARGV[base + 4])
  local amount = tonumber(ARGV[base + 5])
  local value = tonumber(ARGV[base + 6])
  -- The anchor is the present (a departure), so this outlives every expiry set before it.
  local ttl = math.ceil(window * 2 + 1000)
  local mark = ""
  if alg == "sliding-window" then
    if redis.call("ZADD", key, "XX", "GT", "CH", at, id) == 1 then
      redis.call("PEXPIRE", key, ttl)
      redis.call("PEXPIRE", key .. ":a", ttl)
      redis.call("PEXPIRE", key .. ":u", ttl)
    end
  elseif alg == "gcra" then
    local interval = window / limit + margin
    local current = redis.call("GET", key)
    local tat = tonumber(current or "-1e308")
    local holds = value ~= nil and tat == value
    local next = at + amount * interval
    if next > tat then
      local s = string.format("%.17g", next)
      redis.call("SET", key, s, "PX", math.ceil(next - at + ttl))
      if holds then mark = s end
    elseif holds then
      mark = current
    end
  end
  table.insert(out, mark)
end
return out
`

const reserveScript = Redis.script(
  (keys: ReadonlyArray<string>, args: ReadonlyArray<string | number>) => [...keys, ...args],
  { lua: reserveLua, numberOfKeys: (keys: ReadonlyArray<string>) => keys.length }
).withReturnType<ReadonlyArray<number | string>>()

const anchorScript = Redis.script(
  (keys: ReadonlyArray<string>, args: ReadonlyArray<string | number>) => [...keys, ...args],
  { lua: anchorLua, numberOfKeys: (keys: ReadonlyArray<string>) => keys.length }
).withReturnType<ReadonlyArray<string>>()

const settleScript = Redis.script(
  (keys: ReadonlyArray<string>, args: ReadonlyArray<string | number>) => [...keys, ...args],
  { lua: settleLua, numberOfKeys: (keys: ReadonlyArray<string>) => keys.length }
).withReturnType<ReadonlyArray<number | string>>()

/**
 * A Redis-backed store. Pass it to `Executor.make({ store })` in every process that shares the limits; the
 * limits themselves are declared in each process, identically.
 *
 * **When to use**
 *
 * When several processes or machines call the same API and must stay, together, under its limits: workers
 * of one job, replicas of one service, shards of one batch (`pile run --redis ... --shard i/n`).
 *
 * **Details**
 *
 * - Each reservation is one Lua script that Redis runs atomically: every claimed bucket is checked, then all
 *   are charged or none, with the same algorithms as the in-memory store (sliding log, GCRA, token bucket).
 *   Settlement is a second script, with the same rule: a GCRA or token-bucket refund applies only while the
 *   bucket is as its reservation left it (the handle carries that state), and is dropped otherwise.
 * - Windows are on Redis's clock (`TIME`) by default, so machines with skewed clocks share one time line.
 * - The bound holds on the admission times Redis granted: a task starts one round trip after its
 *   reservation, or at its `notBefore` with a `lookahead`. `anchor` (one more script) moves an admission
 *   later, to when the work really began (the CLI anchors each request at its departure), and the bound
 *   then holds on those times. Reservations go through the dispatcher one at a time.
 * - The store needs the `Redis` service of `effect/persistence`, e.g. `NodeRedis.layer({ url })` from
 *   `@effect/platform-node`; the connection's lifetime is the layer's.
 *
 * **Gotchas**
 *
 * With `time: "client"`, the bound holds on the clocks of the processes: keep them synchronized. A denial is
 * answered with the time its reservation could be granted, and the executor sleeps until then (no polling); a
 * store failure defers the task and is retried a second later. Only budgets are shared: each process keeps
 * its own queue, concurrency cap and key pauses.
 *
 * **Example**
 *
 * ```ts
 * // compile only: needs a Redis server (test/RateLimitRedis.test.ts runs three processes against a real one)
 * import { NodeRedis } from "@effect/platform-node"
 * import { Executor, Pile, RateLimitRedis } from "@pile/executor"
 * import { Effect } from "effect"
 * import assert from "node:assert/strict"
 *
 * const program = Effect.gen(function*() {
 *   const store = yield* RateLimitRedis.make({ prefix: "myapp:rl:" })
 *   // Every process declares the same limits: together they start at most 3,000 tasks per minute.
 *   const executor = yield* Executor.make({ limits: [{ limit: 3_000, window: "1 minute" }], store })
 *   const values = yield* Pile.collect(executor.run([1, 2, 3], (n) => Effect.succeed(n * 2)))
 *   assert.deepEqual(values, [2, 4, 6])
 * }).pipe(Effect.scoped, Effect.provide(NodeRedis.layer({ url: "redis://127.0.0.1:6379" })))
 *
 * await Effect.runPromise(program)
 * ```
 *
 * @see RateLimit: the models and their exact bounds
 * @category constructors
 * @since 0.1.0
 */
export const make = (options?: Options | undefined): Effect.Effect<RateLimitStore, never, Redis.Redis> =>
  Effect.map(Redis.Redis, (redis) => {
    const prefix = options?.prefix ?? "pile:rl:"
    const serverTime = (options?.time ?? "server") === "server"
    const lookahead = Option.getOrElse(
      Option.map(Duration.fromInput(options?.lookahead ?? 0), Duration.toMillis),
      () => 0
    )
    const reserve = redis.eval(reserveScript)
    const settle = redis.eval(settleScript)
    const anchor = redis.eval(anchorScript)
    const keyOf = (claim: Claim) => prefix + claim.bucket.id
    // Reservation ids are unique per executor; several processes share the keys, so qualify them.
    const instance = globalThis.crypto.randomUUID()
    // The marks of granted reservations, 3 strings per claim (see settleLua): a copied handle has none, and
    // its refunds to GCRA and token buckets are dropped (stricter, never looser).
    const marks = new WeakMap<Reservation, Array<string>>()
    // The caller's clock against Redis's, from the reservations' round trips (exactly 0 with client time).
    const offset = new ClockOffset()
    return {
      reserve: (
        id: string,
        claims: ReadonlyArray<Claim>,
        now: number
      ): Effect.Effect<ReserveResult, Redis.RedisError> => {
        const args: Array<string | number> = [serverTime ? "" : String(now), `${instance}:${id}`, lookahead]
        let heldUntil = now
        let held: Array<string> | undefined
        for (const claim of claims) {
          // An adaptive limit is charged at this process's rate of the moment; a held key waits here.
          const effective = claim.bucket.adaptive === undefined
            ? undefined
            : effectiveAt(claim.bucket, claim.amount, now)
          if (effective?.heldUntil !== undefined) {
            ;(held ??= []).push(claim.bucket.id)
            heldUntil = Math.max(heldUntil, effective.heldUntil)
          }
          const b = effective?.bucket ?? claim.bucket
          args.push(b.algorithm, b.limit, b.window, b.burst, b.margin, claim.amount)
        }
        if (held !== undefined) return Effect.succeed({ _tag: "Denied", retryAt: heldUntil, blocking: held })
        return Effect.clockWith((clock) =>
          Effect.map(reserve(claims.map(keyOf), args), (reply): ReserveResult => {
            const redisNow = Number(reply[1])
            // Answers are on the store's clock: translate them to the caller's, never earlier than they are
            // (a task reserved ahead never starts before its admission), by an offset that does not vary with
            // each round trip's delay.
            if (serverTime) offset.sample(now, nowMillis(clock), redisNow)
            const toCaller = (time: number) => serverTime ? offset.toCaller(time) : time
            if (Number(reply[0]) === 1) {
              // `at` is the admission time on the store's clock (Redis's with server time); later than the
              // store's now when reserved ahead, and then `notBefore` is that time on the caller's clock.
              const at = Number(reply[2])
              const reservation: Reservation = {
                id,
                at,
                claims,
                charged: claims.map((c) => c.amount),
                ...(at > redisNow ? { notBefore: toCaller(at) } : {})
              }
              marks.set(reservation, reply.slice(3).map(String))
              return { _tag: "Reserved", reservation }
            }
            const blocking = reply.slice(3).map((i) => claims[Number(i) - 1]!.bucket.id)
            return { _tag: "Denied", retryAt: toCaller(Number(reply[2])), blocking }
          })
        )
      },
      anchor: (reservation: Reservation, at: number) =>
        Effect.suspend(() => {
          const mark = marks.get(reservation)
          // A handle this store did not grant (or a copy of one) moves nothing.
          if (mark === undefined) return Effect.void
          const claims = reservation.claims.filter((claim) => claim.bucket.algorithm !== "token-bucket")
          if (claims.length === 0) return Effect.void
          const args: Array<string | number> = [`${instance}:${reservation.id}`, serverTime ? offset.toStore(at) : at]
          const indexes: Array<number> = []
          reservation.claims.forEach((claim, index) => {
            if (claim.bucket.algorithm === "token-bucket") return
            // An adaptive GCRA spaces from the anchor at its rate of that moment, as the in-memory store does.
            const b = claim.bucket.adaptive === undefined
              ? claim.bucket
              : effectiveAt(claim.bucket, claim.amount, at).bucket
            args.push(b.algorithm, b.limit, b.window, b.margin, claim.amount, mark[index * 3] ?? "")
            indexes.push(index)
          })
          return Effect.map(anchor(claims.map(keyOf), args), (reply) => {
            indexes.forEach((index, i) => {
              const value = String(reply[i] ?? "")
              if (value !== "") mark[index * 3] = value
            })
          })
        }),
      // The corrections are computed when the effect runs, and recorded in `charged` as Redis applies them.
      settle: (reservation: Reservation, actual: ReadonlyArray<number>) =>
        Effect.suspend(() => {
          const mark = marks.get(reservation)
          const corrections = settlement(reservation, actual)
          if (corrections.length === 0) return Effect.void
          const args: Array<string | number> = [`${instance}:${reservation.id}`]
          for (const { claim, delta, index } of corrections) {
            const b = claim.bucket
            const [value, last, bound] = mark?.slice(index * 3, index * 3 + 3) ?? []
            args.push(b.algorithm, b.limit, b.window, b.burst, b.margin, delta, value ?? "", last ?? "", bound ?? "")
          }
          return Effect.map(settle(corrections.map(({ claim }) => keyOf(claim)), args), (reply) => {
            corrections.forEach(({ delta, index }, i) => {
              if (Number(reply[i * 2]) !== 1) return
              reservation.charged[index] = reservation.charged[index]! + delta
              if (mark !== undefined) mark[index * 3] = String(reply[i * 2 + 1])
            })
          })
        })
    }
  })
