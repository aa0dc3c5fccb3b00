// The engine's three data structures, each checked against a plain reference model on random operation
// sequences: the intake list (I13, I2: a node is in one place at a time), the timer heap (deadlines, timeouts,
// retry delays and rate wake-ups fire in time order, none lost), and the Pile buffer (I1: every outcome
// delivered once, in order; the bound and its release, I14). fast-check shrinks a failure to a minimal sequence.
// The wait until a time on the live clock (a reservation's notBefore), on a clock moved by hand.
// The intake's wait for room (a batch feeder's), case by case. The clock offset a shared store translates times
// with. And the shape of the engine's modules: their imports form a tree (docs/architecture.md, "The data path").
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as fc from "fast-check"
import { readdirSync, readFileSync } from "node:fs"
import { ClockOffset } from "../src/internal/clockOffset.ts"
import { Intake } from "../src/internal/intake.ts"
import { LinkedList, type Node } from "../src/internal/linkedList.ts"
import { Outbox } from "../src/internal/outbox.ts"
import { OutcomeBuffer, paceBound } from "../src/internal/outcomeBuffer.ts"
import type { Task } from "../src/internal/task.ts"
import { sleepUntil, Timers } from "../src/internal/timers.ts"
import { runs, settleFibers } from "./support.ts"

interface Item extends Node {
  readonly n: number
}
const item = (n: number): Item => ({ n, prev: undefined, next: undefined, list: undefined })

type ListOp =
  | { readonly op: "push" | "unshift"; readonly list: 0 | 1 }
  | { readonly op: "shift" | "takeAll"; readonly list: 0 | 1 }
  | { readonly op: "remove"; readonly list: 0 | 1; readonly pick: number }

const listOp: fc.Arbitrary<ListOp> = fc.oneof(
  fc.record({ op: fc.constantFrom("push", "push", "unshift"), list: fc.constantFrom(0, 1) }),
  fc.record({ op: fc.constantFrom("shift", "takeAll"), list: fc.constantFrom(0, 1) }),
  fc.record({ op: fc.constant("remove"), list: fc.constantFrom(0, 1), pick: fc.nat() })
) as fc.Arbitrary<ListOp>

/** Walks a list both ways, checking the links against the model and returning the values in order. */
const walk = (list: LinkedList<Item>, expected: ReadonlyArray<Item>): void => {
  assert.strictEqual(list.size, expected.length, "size")
  assert.deepStrictEqual(list.toArray().map((i) => i.n), expected.map((i) => i.n), "forward order")
  const backward: Array<number> = []
  for (let node = list.tail; node !== undefined; node = node.prev as Item | undefined) backward.push(node.n)
  assert.deepStrictEqual(backward, expected.map((i) => i.n).toReversed(), "backward order")
  assert.strictEqual(list.head, expected[0], "head")
  assert.strictEqual(list.tail, expected[expected.length - 1], "tail")
  for (const node of expected) assert.strictEqual(node.list, list, "a node knows its list")
}

describe("internals: the intrusive list", () => {
  it("matches an array model on random pushes, unshifts, shifts, removals and takeAlls across two lists", () =>
    fc.assert(
      fc.property(fc.array(listOp, { maxLength: 60 }), (ops) => {
        const lists = [new LinkedList<Item>(), new LinkedList<Item>()] as const
        const models: [Array<Item>, Array<Item>] = [[], []]
        const all: Array<Item> = []
        let next = 0
        for (const op of ops) {
          const list = lists[op.list]
          const model = models[op.list]
          switch (op.op) {
            case "push":
            case "unshift": {
              const node = item(next++)
              all.push(node)
              list[op.op](node)
              if (op.op === "push") model.push(node)
              else model.unshift(node)
              break
            }
            case "shift":
              assert.strictEqual(list.shift(), model.shift())
              break
            case "takeAll": {
              const taken = list.takeAll()
              assert.deepStrictEqual(taken.map((i) => i.n), model.map((i) => i.n))
              for (const node of taken) {
                assert.isUndefined(node.list)
                assert.isUndefined(node.next)
                assert.isUndefined(node.prev)
              }
              model.length = 0
              break
            }
            case "remove": {
              if (all.length === 0) break
              // Any node ever made: in this list, in the other one, or in none. Only this list's nodes go.
              const node = all[op.pick % all.length]!
              const at = model.indexOf(node)
              const elsewhere = node.list
              assert.strictEqual(list.remove(node), at >= 0, "remove says whether the node was in the list")
              if (at >= 0) {
                model.splice(at, 1)
                assert.isUndefined(node.list)
              } else assert.strictEqual(node.list, elsewhere, "a node of another list stays where it is")
              break
            }
          }
          walk(lists[0], models[0])
          walk(lists[1], models[1])
        }
      }),
      { numRuns: runs(300) }
    ))
})

type TimerOp =
  | { readonly op: "add"; readonly at: number; readonly owned: boolean }
  | { readonly op: "fire"; readonly advance: number }
  | { readonly op: "finish"; readonly pick: number }
  | { readonly op: "clear" }

const timerOp: fc.Arbitrary<TimerOp> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({ op: fc.constant("add"), at: fc.integer({ min: 0, max: 50 }), owned: fc.boolean() })
  },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("fire"), advance: fc.integer({ min: 0, max: 15 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("finish"), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("clear") }) }
) as fc.Arbitrary<TimerOp>

describe("internals: the timer heap", () => {
  it("fires every due timer once, in time order, reports the earliest, and signals each new earliest", () =>
    fc.assert(
      fc.property(fc.array(timerOp, { maxLength: 80 }), (ops) => {
        let signals = 0
        const timers = new Timers(() => signals++)
        let pending: Array<{ readonly at: number; readonly id: number }> = []
        const fired: Array<number> = []
        const owners: Array<{ result: unknown }> = []
        let now = 0
        let id = 0
        for (const op of ops) {
          switch (op.op) {
            case "add": {
              const at = now + op.at
              const earliest = pending.length === 0 || at < Math.min(...pending.map((t) => t.at))
              const timer = { at, id: id++ }
              const owner = { result: undefined as unknown }
              if (op.owned) owners.push(owner)
              const before = signals
              timers.add(at, () => fired.push(timer.id), op.owned ? owner : undefined)
              assert.strictEqual(signals - before, earliest ? 1 : 0, "onEarliest only for a new earliest timer")
              pending.push(timer)
              break
            }
            case "fire": {
              now += op.advance
              const due = pending.filter((t) => t.at <= now).sort((a, b) => a.at - b.at || a.id - b.id)
              const from = fired.length
              assert.strictEqual(timers.fireDue(now), due.length, "fireDue returns how many fired")
              const got = fired.slice(from)
              // Equal times may fire in any order; the times themselves must be in order.
              const at = (id: number) => pending.find((t) => t.id === id)!.at
              assert.deepStrictEqual(got.map(at), due.map((t) => t.at), "due timers fire in time order")
              assert.sameMembers(got, due.map((t) => t.id), "exactly the due timers fire")
              pending = pending.filter((t) => t.at > now)
              break
            }
            case "finish":
              // A task got its outcome: its timers may be dropped by a compaction, never fired early.
              if (owners.length > 0) owners[op.pick % owners.length]!.result = "done"
              break
            case "clear":
              timers.clear()
              pending = []
              break
          }
          assert.strictEqual(
            timers.next,
            pending.length === 0 ? Number.POSITIVE_INFINITY : Math.min(...pending.map((t) => t.at)),
            "next is the earliest pending time"
          )
          assert.strictEqual(timers.size, pending.length, "size")
        }
      }),
      { numRuns: runs(300) }
    ))

  it("every insertion order of six times comes out sorted, one pop at a time", () => {
    // Deterministic, so each sift-down case (the smaller child on the left, on the right, none) is met
    // however few runs the random suite makes.
    const permutations = (xs: ReadonlyArray<number>): Array<Array<number>> => {
      if (xs.length === 0) return [[]]
      return xs.flatMap((x, i) => permutations(xs.toSpliced(i, 1)).map((rest) => [x].concat(rest)))
    }
    for (const order of permutations([1, 2, 3, 4, 5, 6])) {
      const timers = new Timers(() => {})
      const fired: Array<number> = []
      for (const at of order) timers.add(at, () => fired.push(at))
      for (let now = 1; now <= 6; now++) {
        assert.strictEqual(timers.next, now, `the earliest after inserting ${order.join(",")}`)
        assert.strictEqual(timers.fireDue(now), 1)
      }
      assert.deepStrictEqual(fired, [1, 2, 3, 4, 5, 6])
      assert.strictEqual(timers.next, Number.POSITIVE_INFINITY)
    }
  })

  it("a compaction drops the timers of finished tasks and keeps every live one, in order", () => {
    const timers = new Timers(() => {})
    const fired: Array<number> = []
    const done = { result: "done" as unknown }
    const live = { result: undefined as unknown }
    // 2,048 timers trigger a compaction on the next add: the 1,500 of the finished task go, the rest stay.
    for (let i = 0; i < 2048; i++) {
      const at = (i * 7919) % 3000
      timers.add(at, () => fired.push(at), i < 1500 ? done : i % 2 === 0 ? live : undefined)
    }
    assert.strictEqual(timers.size, 2048)
    timers.add(5000, () => fired.push(5000), live)
    assert.strictEqual(timers.size, 2048 - 1500 + 1, "only the finished task's timers were dropped")
    const expected = Array.from({ length: 548 }, (_, k) => ((1500 + k) * 7919) % 3000).sort((a, b) => a - b)
    assert.strictEqual(timers.fireDue(10_000), 549)
    assert.deepStrictEqual(fired, [...expected, 5000], "the survivors fire in time order")
    // The next compaction waits until the heap doubles from its new size (at least 1,024 again).
    for (let i = 0; i < 2047; i++) timers.add(i, () => {}, done)
    assert.strictEqual(timers.size, 2047, "no compaction below twice the compacted size")
    timers.add(1, () => {}, done)
    assert.strictEqual(timers.size, 2048, "the 2,048th timer is added before the check")
    timers.add(1, () => {}, live)
    assert.strictEqual(timers.size, 1, "at 2,048 the next add compacts first")
  })
})

type BufferOp =
  | { readonly op: "offer" }
  | { readonly op: "pull"; readonly one: boolean }
  | { readonly op: "unbound" }

const bufferOp: fc.Arbitrary<BufferOp> = fc.oneof(
  { weight: 15, arbitrary: fc.record({ op: fc.constant("offer") }) },
  { weight: 12, arbitrary: fc.record({ op: fc.constant("pull"), one: fc.boolean() }) },
  // Rare: once unbound, nothing is ever blocked again, and the bounded behaviour is what most needs checking.
  { weight: 1, arbitrary: fc.record({ op: fc.constant("unbound") }) }
) as fc.Arbitrary<BufferOp>

/**
 * A clock the test moves by hand, standing for the live clock: it records each sleep asked of it, and (like
 * the live clock) a sleep of zero or less only yields.
 */
const handClock = () => {
  let now = 0
  const asked: Array<number> = []
  let sleeping: Array<{ readonly until: number; readonly wake: () => void }> = []
  const clock: Clock.Clock = {
    currentTimeMillisUnsafe: () => now,
    currentTimeMillis: Effect.sync(() => now),
    currentTimeNanosUnsafe: () => BigInt(Math.round(now * 1e6)),
    currentTimeNanos: Effect.sync(() => BigInt(Math.round(now * 1e6))),
    monotonicTimeNanosUnsafe: () => BigInt(Math.round(now * 1e6)),
    monotonicTimeNanos: Effect.sync(() => BigInt(Math.round(now * 1e6))),
    sleep: (duration) => {
      const millis = Duration.toMillis(duration)
      if (millis <= 0) return Effect.yieldNow
      asked.push(millis)
      return Effect.callback<void>((resume) => {
        sleeping.push({ until: now + millis, wake: () => resume(Effect.void) })
      })
    }
  }
  const advanceTo = (time: number): void => {
    now = time
    const due = sleeping.filter((sleep) => sleep.until <= now)
    sleeping = sleeping.filter((sleep) => sleep.until > now)
    for (const sleep of due) sleep.wake()
  }
  return { clock, asked, advanceTo }
}

describe("internals: waiting until a time on the live clock", () => {
  it.effect("sleeps until the last whole millisecond before the time, then yields until the clock reads it", () =>
    Effect.gen(function*() {
      const hand = handClock()
      const waiting = yield* Effect.forkChild(
        sleepUntil(hand.clock, 10.5, true).pipe(Effect.provideService(Clock.Clock, hand.clock)),
        { startImmediately: true }
      )
      assert.deepStrictEqual(hand.asked, [9], "one sleep, ending between 2 ms and 1 ms before 10.5")
      hand.advanceTo(9)
      yield* settleFibers
      assert.isUndefined(waiting.pollUnsafe(), "awake 1.5 ms early, it keeps yielding")
      hand.advanceTo(10.4)
      yield* settleFibers
      assert.isUndefined(waiting.pollUnsafe(), "it never returns before its time")
      hand.advanceTo(10.5)
      yield* settleFibers
      assert.isDefined(waiting.pollUnsafe(), "it returns once the clock reads its time")
      assert.deepStrictEqual(hand.asked, [9], "and never slept again: no sleep could end past the time")
    }))
})

/** Runs a pull that must not wait: the buffer has outcomes or is closed. */
const pullNow = <O>(pull: Effect.Effect<ReadonlyArray<O>, unknown>): Exit.Exit<ReadonlyArray<O>, unknown> =>
  Effect.runSync(Effect.exit(pull))

describe("internals: the Pile buffer", () => {
  it("delivers every offered outcome once, in order; holds at most its capacity; releases each blocked delivery once", () =>
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.array(bufferOp, { maxLength: 60 }), (capacity, ops) => {
        const buffer = new OutcomeBuffer<number>(capacity)
        let bounded = true
        let buffered: Array<number> = []
        let blocked: Array<number> = []
        const released: Array<number> = []
        const delivered: Array<number> = []
        let next = 0
        for (const op of ops) {
          switch (op.op) {
            case "offer": {
              const n = next++
              const fits = !bounded || (buffered.length < capacity && blocked.length === 0)
              assert.strictEqual(buffer.offer(n, () => released.push(n)), fits, "offer says whether it fits")
              if (fits) buffered.push(n)
              else blocked.push(n)
              break
            }
            case "pull": {
              if (buffered.length === 0) break
              const exit = pullNow(op.one ? buffer.pullOne : buffer.pull)
              assert.isTrue(Exit.isSuccess(exit))
              const got = (exit as Exit.Success<ReadonlyArray<number>>).value
              const take = op.one ? 1 : buffered.length
              assert.deepStrictEqual([...got], buffered.slice(0, take), "a pull takes the oldest outcomes")
              delivered.push(...got)
              buffered = buffered.slice(take)
              // Freed space goes to the blocked deliveries, oldest first.
              const room = bounded ? capacity - buffered.length : blocked.length
              buffered.push(...blocked.splice(0, Math.max(0, room)))
              break
            }
            case "unbound":
              bounded = false
              buffered.push(...blocked)
              blocked = []
              buffer.unbound()
              break
          }
          assert.strictEqual(buffer.size, buffered.length + blocked.length, "size counts buffered and blocked")
          assert.strictEqual(buffer.accepted, next - blocked.length, "accepted counts what entered the buffer")
          if (bounded) assert.isAtMost(buffered.length, capacity)
          // A delivery is released exactly when it leaves `blocked` (never twice, never early).
          const everBlocked = released.length
          assert.strictEqual(new Set(released).size, everBlocked, "each release runs once")
          for (const n of blocked) assert.notInclude(released, n, "a blocked delivery is not released yet")
        }
        // Closing lifts the bound: everything left comes out, then the Pile ends with Done.
        buffer.close()
        assert.isTrue(buffer.isClosed)
        const rest = pullNow(buffer.pull)
        if (buffered.length + blocked.length > 0) {
          assert.deepStrictEqual([...(rest as Exit.Success<ReadonlyArray<number>>).value], [...buffered, ...blocked])
          delivered.push(...(rest as Exit.Success<ReadonlyArray<number>>).value)
        }
        assert.deepStrictEqual(delivered, Array.from({ length: next }, (_, i) => i), "every outcome once, in order")
        const end = pullNow(buffer.pull)
        assert.isTrue(Exit.isFailure(end) && Cause.hasFails(end.cause) && Cause.isDone(Cause.squash(end.cause)))
      }),
      { numRuns: runs(300) }
    ))

  it("many single pulls from a long buffer: outcomes stay in order across its internal compaction", () => {
    const buffer = new OutcomeBuffer<number>(Number.POSITIVE_INFINITY)
    for (let i = 0; i < 5000; i++) buffer.offer(i, () => {})
    const got: Array<number> = []
    for (let i = 0; i < 3000; i++) {
      const exit = pullNow(buffer.pullOne)
      got.push(...(exit as Exit.Success<ReadonlyArray<number>>).value)
      if (i % 500 === 0) buffer.offer(5000 + i, () => {})
    }
    assert.strictEqual(buffer.size, 5000 + 6 - 3000)
    const rest = (pullNow(buffer.pull) as Exit.Success<ReadonlyArray<number>>).value
    const all = [...got, ...rest]
    assert.deepStrictEqual(all.slice(0, 5000), Array.from({ length: 5000 }, (_, i) => i))
    assert.deepStrictEqual(all.slice(5000), [0, 500, 1000, 1500, 2000, 2500].map((i) => 5000 + i))
    assert.strictEqual(buffer.size, 0)
  })

  it.effect("a waiting consumer is woken by an offer, by a refill and by close; an interrupted one is forgotten", () =>
    Effect.gen(function*() {
      const buffer = new OutcomeBuffer<number, string>(1)
      const first = yield* Effect.forkChild(buffer.pull)
      yield* Effect.yieldNow
      assert.isUndefined(first.pollUnsafe(), "nothing buffered: the consumer waits")
      assert.isTrue(buffer.offer(1, () => {}))
      assert.deepStrictEqual([...(yield* Fiber.join(first))], [1])
      // Full and blocked: a second delivery waits; pulling moves it in and releases it.
      let released = 0
      assert.isTrue(buffer.offer(2, () => {}))
      assert.isFalse(buffer.offer(3, () => released++))
      assert.deepStrictEqual([...(yield* buffer.pullOne)], [2])
      assert.strictEqual(released, 1)
      assert.deepStrictEqual([...(yield* buffer.pull)], [3])
      // An interrupted consumer leaves no waker behind: the next outcome goes to the next reader.
      const gone = yield* Effect.forkChild(buffer.pull)
      yield* Effect.yieldNow
      yield* Fiber.interrupt(gone)
      assert.isTrue(buffer.offer(4, () => {}))
      assert.deepStrictEqual([...(yield* buffer.pull)], [4])
      // Close with an error wakes a waiting consumer, which then fails with it; a second close changes nothing.
      const last = yield* Effect.forkChild(Effect.flip(buffer.pull))
      yield* Effect.yieldNow
      buffer.close({ error: "boom" })
      buffer.close()
      assert.strictEqual(yield* Fiber.join(last), "boom")
    }))
})

/** The buffer's private arrays: a white-box view for its memory and copying properties. */
interface BufferInternals {
  readonly items: ReadonlyArray<unknown>
  readonly itemsHead: number
  readonly blocked: ReadonlyArray<unknown>
}
const internalsOf = (buffer: OutcomeBuffer<any, any>): BufferInternals => buffer as unknown as BufferInternals

/** The outcomes of a pull that must succeed at once. */
const taken = <O>(pull: Effect.Effect<ReadonlyArray<O>, unknown>): ReadonlyArray<O> => {
  const exit = pullNow(pull)
  assert.isTrue(Exit.isSuccess(exit), "the pull succeeds at once")
  return (exit as Exit.Success<ReadonlyArray<O>>).value
}

const noop = () => {}

describe("internals: the Pile buffer, case by case", () => {
  // The random suite finds these too, but not in every run: each is pinned here by one deterministic case.
  it("after a partial pull the bound counts what is still buffered: offers, refills and size", () => {
    const buffer = new OutcomeBuffer<number>(2)
    const released: Array<number> = []
    const offer = (n: number) => buffer.offer(n, () => released.push(n))
    assert.isTrue(offer(0))
    assert.isTrue(offer(1))
    assert.deepStrictEqual([...taken(buffer.pullOne)], [0])
    assert.isTrue(offer(2), "one was pulled: room for one more")
    assert.isFalse(offer(3), "full again: the delivery waits")
    assert.isFalse(offer(4))
    assert.strictEqual(buffer.size, 4)
    assert.deepStrictEqual([...taken(buffer.pullOne)], [1])
    assert.deepStrictEqual(released, [3], "the freed place goes to the oldest blocked delivery, and to it alone")
    assert.strictEqual(buffer.accepted, 4)
    assert.strictEqual(buffer.size, 3, "two buffered, one still blocked")
    assert.deepStrictEqual([...taken(buffer.pull)], [2, 3])
    assert.deepStrictEqual(released, [3, 4])
    assert.deepStrictEqual([...taken(buffer.pull)], [4])
    assert.strictEqual(buffer.size, 0)
  })

  it("onAccepted runs once for each refill that moved blocked deliveries in, and at no other time", () => {
    class Counting extends OutcomeBuffer<number> {
      calls = 0
      protected override onAccepted(): void {
        this.calls++
      }
    }
    const buffer = new Counting(1)
    assert.isTrue(buffer.offer(0, noop))
    assert.isFalse(buffer.offer(1, noop))
    assert.isFalse(buffer.offer(2, noop))
    assert.strictEqual(buffer.calls, 0, "an offer that fits is not a refill")
    assert.deepStrictEqual([...taken(buffer.pullOne)], [0])
    assert.strictEqual(buffer.calls, 1)
    assert.deepStrictEqual([...taken(buffer.pull)], [1])
    assert.strictEqual(buffer.calls, 2)
    assert.deepStrictEqual([...taken(buffer.pull)], [2])
    assert.strictEqual(buffer.calls, 2, "nothing was blocked: nothing moved, no call")
    assert.isTrue(buffer.offer(3, noop))
    assert.isFalse(buffer.offer(4, noop))
    assert.isFalse(buffer.offer(5, noop))
    buffer.unbound()
    assert.strictEqual(buffer.calls, 3, "one call for the two moved together")
    buffer.unbound()
    assert.strictEqual(buffer.calls, 3)
    assert.deepStrictEqual([...taken(buffer.pull)], [3, 4, 5])
    assert.strictEqual(buffer.calls, 3)
  })

  it.effect("a buffer of capacity 0 holds every delivery until unbound, which wakes the waiting consumer", () =>
    Effect.gen(function*() {
      const buffer = new OutcomeBuffer<number>(0)
      let released = 0
      const consumer = yield* Effect.forkChild(buffer.pull)
      yield* Effect.yieldNow
      assert.isFalse(buffer.offer(1, () => released++))
      yield* Effect.yieldNow
      assert.isUndefined(consumer.pollUnsafe(), "nothing enters a buffer of capacity 0")
      buffer.unbound()
      assert.strictEqual(released, 1)
      for (let i = 0; i < 10 && consumer.pollUnsafe() === undefined; i++) yield* Effect.yieldNow
      const exit = consumer.pollUnsafe()
      assert.isDefined(exit, "unbound woke the consumer")
      assert.deepStrictEqual([...(exit as Exit.Success<ReadonlyArray<number>>).value], [1])
    }))

  it("a drained buffer holds no delivered outcome and no spent blocked slot", () => {
    const buffer = new OutcomeBuffer<number>(2)
    const internals = internalsOf(buffer)
    let next = 0
    for (let round = 0; round < 3; round++) {
      assert.isTrue(buffer.offer(next++, noop))
      assert.isTrue(buffer.offer(next++, noop))
      assert.isFalse(buffer.offer(next++, noop))
      // A partial pull (the rest stays at an offset) frees a place: the blocked delivery moves in.
      assert.deepStrictEqual([...taken(buffer.pullOne)], [next - 3])
      assert.strictEqual(internals.blocked.length, 0, "no blocked slot is kept once every delivery entered")
      assert.deepStrictEqual([...taken(buffer.pull)], [next - 2, next - 1])
      assert.strictEqual(internals.items.length, 0, "no delivered outcome is kept once the buffer is drained")
    }
  })

  it("a consumer that stays behind: the blocked deliveries' array stays as small as what is blocked", () => {
    // Capacity 1 with three deliveries always blocked (each holds a slot in the engine): every pull lets one in.
    const buffer = new OutcomeBuffer<number>(1)
    const internals = internalsOf(buffer)
    let next = 0
    let expected = 0
    for (let i = 0; i < 4; i++) buffer.offer(next++, noop)
    for (let i = 0; i < 10_000; i++) {
      assert.isFalse(buffer.offer(next++, noop))
      const got = taken(buffer.pull)
      if (got.length !== 1 || got[0] !== expected++) assert.fail(`pull ${i}: got ${got.join(",")}`)
      if (internals.blocked.length > 8) assert.fail(`pull ${i}: ${internals.blocked.length} entries for 3 blocked`)
    }
    assert.strictEqual(buffer.size, 4)
  })

  it("a pull that takes the whole buffer hands its array over without copying", () => {
    const buffer = new OutcomeBuffer<number>(Number.POSITIVE_INFINITY)
    const internals = internalsOf(buffer)
    for (let i = 0; i < 100; i++) buffer.offer(i, noop)
    const array = internals.items
    const all = taken(buffer.pull)
    assert.strictEqual(all, array, "pull")
    assert.deepStrictEqual([...all], Array.from({ length: 100 }, (_, i) => i))
    assert.notStrictEqual(internals.items, array, "the buffer goes on with a new array")
    buffer.offer(100, noop)
    const single = internals.items
    assert.strictEqual(taken(buffer.pullOne), single, "pullOne of the only outcome")
    assert.deepStrictEqual([...single], [100])
  })

  it("single pulls while outcomes keep arriving: the consumed prefix never outgrows max(1,024, what is buffered)", () => {
    // The buffer is never empty here, so only its compaction reclaims the array's consumed prefix.
    for (const steady of [10, 1500]) {
      const buffer = new OutcomeBuffer<number>(Number.POSITIVE_INFINITY)
      const internals = internalsOf(buffer)
      let next = 0
      let expected = 0
      while (next < steady) buffer.offer(next++, noop)
      for (let i = 0; i < 4000; i++) {
        buffer.offer(next++, noop)
        const got = taken(buffer.pullOne)
        if (got.length !== 1 || got[0] !== expected++) assert.fail(`pull ${i} of ${steady}: got ${got.join(",")}`)
        if (internals.itemsHead > Math.max(1024, buffer.size)) {
          assert.fail(`pull ${i} of ${steady}: ${internals.itemsHead} consumed entries kept for ${buffer.size}`)
        }
      }
      assert.strictEqual(buffer.size, steady)
    }
  })

  it("draining a long buffer one at a time copies fewer entries than it delivers (amortized compaction)", () => {
    const n = 10_000
    const buffer = new OutcomeBuffer<number>(Number.POSITIVE_INFINITY)
    const internals = internalsOf(buffer)
    for (let i = 0; i < n; i++) buffer.offer(i, noop)
    let array = internals.items
    let copied = 0
    for (let i = 0; i < n; i++) {
      const got = taken(buffer.pullOne)
      if (got[0] !== i) assert.fail(`pull ${i}: got ${got.join(",")}`)
      if (internals.items !== array) {
        array = internals.items
        copied += array.length
      }
    }
    assert.strictEqual(buffer.size, 0)
    assert.isAtMost(copied, n, "entries copied by compactions while draining")
  })

  it("a consumer far behind many blocked deliveries: letting them in one at a time copies fewer entries than it lets in", () => {
    const n = 10_000
    const buffer = new OutcomeBuffer<number>(1)
    const internals = internalsOf(buffer)
    for (let i = 0; i <= n; i++) buffer.offer(i, noop)
    let array = internals.blocked
    let copied = 0
    for (let i = 0; i < n; i++) {
      const got = taken(buffer.pull)
      if (got[0] !== i) assert.fail(`pull ${i}: got ${got.join(",")}`)
      if (internals.blocked !== array) {
        array = internals.blocked
        copied += array.length
      }
    }
    assert.strictEqual(buffer.size, 1)
    assert.isAtMost(copied, n, "entries copied by compactions of the blocked deliveries")
  })

  it("an outcome offered while a blocked delivery enters (its release let a task finish at once) waits behind the others", () => {
    const buffer = new OutcomeBuffer<number>(3)
    for (let i = 0; i < 3; i++) assert.isTrue(buffer.offer(i, noop))
    assert.isFalse(buffer.offer(3, () => buffer.offer(5, noop)))
    assert.isFalse(buffer.offer(4, noop))
    assert.deepStrictEqual([...taken(buffer.pull)], [0, 1, 2])
    assert.deepStrictEqual([...taken(buffer.pull)], [3, 4, 5], "completion order: 5 finished after 4 was blocked")
  })

  it("behind: a reader is running and paceBound outcomes it has not pulled yet wait for it", () => {
    const buffer = new OutcomeBuffer<number>(Number.POSITIVE_INFINITY)
    for (let i = 0; i < paceBound; i++) buffer.offer(i, noop)
    assert.isFalse(buffer.behind, "no reader is running: nobody to give a turn to")
    buffer.attach()
    assert.isTrue(buffer.behind, "paceBound outcomes wait for the running reader")
    for (let i = 0; i < 100; i++) taken(buffer.pullOne)
    assert.isFalse(buffer.behind, "the outcomes it pulled no longer count")
    for (let i = 0; i < 100; i++) buffer.offer(i, noop)
    assert.isTrue(buffer.behind)
    buffer.detach()
    assert.isFalse(buffer.behind, "its reader ended")
    buffer.attach()
    buffer.attach()
    buffer.detach()
    assert.isTrue(buffer.behind, "one of two readers still runs")
  })

  it("a discarded buffer drops what it holds and every later outcome, counting each as accepted", () => {
    const buffer = new OutcomeBuffer<number>(1)
    const released: Array<number> = []
    assert.isTrue(buffer.offer(0, noop))
    assert.isFalse(buffer.offer(1, () => released.push(1)))
    buffer.discard()
    assert.deepStrictEqual(released, [1], "the blocked delivery is released")
    assert.strictEqual(buffer.size, 0, "nothing is kept")
    assert.isTrue(buffer.offer(2, noop))
    assert.strictEqual(buffer.size, 0, "a later outcome is dropped at once")
    assert.strictEqual(buffer.accepted, 3)
  })
})

describe("internals: the outbox", () => {
  interface Wake {
    readonly n: number
  }
  const outboxWith = (log: Array<string>) =>
    new Outbox<Wake>({ fork: (item) => log.push(`run ${item.n}`) }, { enter: () => log.push("enter") })

  it("delivers when the outermost transition ends, in the order posted; a wake-up's own transition joins that loop", () => {
    const log: Array<string> = []
    const outbox = outboxWith(log)
    outbox.begin()
    outbox.post({ n: 1 })
    outbox.transition(() => outbox.post({ n: 2 }))
    outbox.post(() => {
      log.push("wake 3")
      // User code resumed by the delivery enters the engine again: its wake-up waits for the loop, in order.
      outbox.transition(() => outbox.post(() => log.push("wake 5")))
      log.push("wake 3 done")
    })
    outbox.post({ n: 4 })
    assert.deepStrictEqual(log, ["enter"], "nothing is delivered inside a transition")
    outbox.end()
    assert.deepStrictEqual(log, ["enter", "run 1", "run 2", "wake 3", "wake 3 done", "run 4", "wake 5"])
  })

  it("the entry watcher is told when an outermost transition begins: not for a nested one, nor for one inside a delivery", () => {
    const log: Array<string> = []
    const outbox = outboxWith(log)
    outbox.begin()
    outbox.begin()
    outbox.end()
    outbox.post(() => outbox.transition(() => log.push("inside")))
    outbox.end()
    assert.deepStrictEqual(log, ["enter", "inside"])
    outbox.transition(() => {})
    assert.deepStrictEqual(log, ["enter", "inside", "enter"])
  })

  it("a wake-up posted outside any transition is delivered at once", () => {
    const log: Array<string> = []
    const outbox = outboxWith(log)
    outbox.post({ n: 1 })
    assert.deepStrictEqual(log, ["run 1"])
  })

  it("a burst of more than 4,096 wake-ups is delivered in order and its array is not kept", () => {
    const log: Array<string> = []
    const outbox = outboxWith(log)
    const internals = outbox as unknown as { readonly items: ReadonlyArray<unknown> }
    outbox.begin()
    for (let n = 0; n < 5000; n++) outbox.post({ n })
    outbox.end()
    assert.strictEqual(log.length, 5001)
    assert.strictEqual(log[5000], "run 4999")
    assert.strictEqual(internals.items.length, 0)
  })
})

/**
 * An intake of `capacity` places on its own, with no task in its FIFO: `held.fresh` sets how many places the
 * tasks out of it still hold, and `outbox` is the one its wake-ups go through.
 */
const standaloneIntake = (capacity: number) => {
  const held = { fresh: 0 }
  const outbox = new Outbox<Task>({ fork: noop }, { enter: noop })
  const intake = new Intake(capacity, undefined, outbox, held, { accept: noop })
  return { held, intake, outbox }
}

// Through the engine a feeder waits for room only right after it found the intake full; these cases are what the
// intake promises whenever the feeder's fiber yields in between (see `Scheduler.MaxOpsBeforeYield`).
describe("internals: the intake's wait for room (a batch feeder's)", () => {
  it.effect("a feeder goes on at once while a quarter of the places is free, and waits while less is", () =>
    Effect.gen(function*() {
      const { held, intake } = standaloneIntake(8) // a quarter: 2 places
      held.fresh = 6
      const atOnce = yield* Effect.forkChild(intake.waitForRoom, { startImmediately: true })
      assert.isDefined(atOnce.pollUnsafe(), "2 places free: it goes on at once")
      held.fresh = 7
      const waiting = yield* Effect.forkChild(intake.waitForRoom, { startImmediately: true })
      assert.isUndefined(waiting.pollUnsafe(), "1 place free: it waits")
      held.fresh = 6
      intake.admitWaiters()
      yield* settleFibers
      assert.isDefined(waiting.pollUnsafe(), "woken once 2 places are free")
    }))

  it.effect("once admission closed, a feeder goes on at once (to find it closed), even with no room", () =>
    Effect.gen(function*() {
      const { held, intake } = standaloneIntake(8)
      held.fresh = 8
      intake.close(Effect.die("closed"))
      const feeder = yield* Effect.forkChild(intake.waitForRoom, { startImmediately: true })
      assert.isDefined(feeder.pollUnsafe())
    }))

  it.effect("a feeder interrupted once its wake-up was taken, before it was delivered, forgets no other feeder", () =>
    Effect.gen(function*() {
      const { held, intake, outbox } = standaloneIntake(8)
      held.fresh = 8
      const first = yield* Effect.forkChild(intake.waitForRoom, { startImmediately: true })
      // One transition: room frees and the first feeder's wake-up is taken; the intake fills again and a second
      // feeder waits; the first is interrupted (as a fiber resumed earlier in the same delivery may do).
      outbox.begin()
      held.fresh = 6
      intake.admitWaiters()
      held.fresh = 8
      const second = yield* Effect.forkChild(intake.waitForRoom, { startImmediately: true })
      first.interruptUnsafe()
      outbox.end()
      yield* settleFibers
      held.fresh = 6
      intake.admitWaiters()
      yield* settleFibers
      assert.isDefined(second.pollUnsafe(), "the second feeder is woken when room frees")
    }))
})

describe("internals: the clock offset of a shared store", () => {
  // The caller's clock reads c; the store's reads c - offset(c), the offset drifting by `rate` per ms. A round
  // trip is asked at t, stamped by the store d1 later, answered d2 after that.
  const roundTrips = fc.record({
    offset: fc.double({ min: -1e6, max: 1e6, noNaN: true }),
    rate: fc.double({ min: -5e-4, max: 5e-4, noNaN: true }),
    trips: fc.array(
      fc.record({
        gap: fc.double({ min: 0, max: 1_000, noNaN: true }),
        d1: fc.double({ min: 0, max: 50, noNaN: true }),
        d2: fc.double({ min: 0, max: 50, noNaN: true }),
        later: fc.double({ min: 0, max: 2_000, noNaN: true })
      }),
      { minLength: 1, maxLength: 30 }
    )
  })

  it("translations are never early, whatever each round trip's delay and within the drift allowed", () =>
    fc.assert(
      fc.property(roundTrips, ({ offset, rate, trips }) => {
        const offsetAt = (c: number) => offset + rate * c
        const clock = new ClockOffset()
        let t = 0
        for (const { d1, d2, gap, later } of trips) {
          t += gap
          const stamped = t + d1
          clock.sample(t, stamped + d2, stamped - offsetAt(stamped))
          // `later` ms after the answer: the caller's time of a store's instant is never before the caller's
          // clock reads it then, and the other way round.
          const c = stamped + d2 + later
          const s = c - offsetAt(c)
          assert.isAtLeast(clock.toCaller(s) - c, -1e-6, "a store's time on the caller's clock")
          assert.isAtLeast(clock.toStore(c) - s, -1e-6, "a caller's time on the store's clock")
        }
      }),
      { numRuns: runs(500) }
    ))

  it("one quick round trip fixes the offset for every later translation: slow ones do not spread them", () => {
    const offset = 1234.5 // the caller's clock is ahead
    const clock = new ClockOffset()
    const trip = (asked: number, d1: number, d2: number) => clock.sample(asked, asked + d1 + d2, asked + d1 - offset)
    trip(0, 30, 10)
    trip(100, 0.1, 0.1) // quick
    trip(200, 40, 5)
    trip(300, 2, 60)
    // Every time maps to the other clock at one offset, late by the quick trip's 0.2 ms and the drift allowed
    // since (a millisecond per second): not by the slow trips' tens of milliseconds, nor by each its own.
    for (const callerTime of [370, 371, 400]) {
      const late = clock.toCaller(callerTime - offset) - callerTime
      assert.isAtLeast(late, 0)
      assert.isAtMost(late, 1)
      const lateOnStore = clock.toStore(callerTime) - (callerTime - offset)
      assert.isAtLeast(lateOnStore, 0)
      assert.isAtMost(lateOnStore, 1)
    }
  })

  it("a sample that contradicts the bounds (a clock was stepped) replaces them", () => {
    const clock = new ClockOffset()
    clock.sample(0, 1, 0) // offset in [0, 1]
    clock.sample(10, 11, 10 - 5_000) // the caller's clock jumped 5 s ahead: offset in [5000, 5001]
    const late = clock.toCaller(12 - 5_000) - 12
    assert.isAtLeast(late, 0)
    assert.isAtMost(late, 1.1)
  })
})

describe("internals: the engine's modules", () => {
  const dir = new URL("../src/internal/", import.meta.url)
  const imports = new Map<string, Array<string>>()
  for (const file of readdirSync(dir)) {
    const source = readFileSync(new URL(file, dir), "utf8")
    const local = [...source.matchAll(/^import[^"]*"\.\/([A-Za-z]+)\.ts"/gm)].map((m) => m[1]!)
    imports.set(file.replace(/\.ts$/, ""), local)
  }
  const steps = ["intake", "admission", "attempt", "dispatcher"]
  const above = ["engine", "batch", "services", "stats"]

  it("a step imports neither the engine, nor another step, nor what uses the engine", () => {
    for (const step of steps) {
      assert.isTrue(imports.has(step), `${step}.ts exists`)
      for (const target of imports.get(step)!) {
        assert.notInclude([...steps, ...above], target, `${step}.ts imports ${target}.ts`)
      }
    }
  })

  it("what the steps stand on (the task, the configuration, the data structures) imports no step", () => {
    for (const [module, targets] of imports) {
      if (steps.includes(module) || above.includes(module)) continue
      for (const target of targets) assert.notInclude([...steps, ...above], target, `${module}.ts imports ${target}.ts`)
    }
  })

  // Not under mutation testing: Stryker runs the suites on its instrumented copy of the sources.
  it.skipIf(process.env["PILE_MUTATION"] === "1")(
    "no module under src holds more than 500 lines of code (comments and blank lines not counted)",
    () => {
      const src = new URL("../src/", import.meta.url)
      for (const file of readdirSync(src, { recursive: true }) as Array<string>) {
        if (!file.endsWith(".ts")) continue
        const code = readFileSync(new URL(file, src), "utf8").replace(/\/\*[\s\S]*?\*\//g, "").split("\n")
          .filter((line) => line.trim() !== "" && !line.trim().startsWith("//"))
        assert.isAtMost(code.length, 500, `${file}: ${code.length} lines of code`)
      }
    }
  )

  it("the imports among src/internal have no cycle", () => {
    const state = new Map<string, "visiting" | "done">()
    const visit = (module: string, path: ReadonlyArray<string>): void => {
      if (state.get(module) === "done") return
      assert.notStrictEqual(state.get(module), "visiting", `cycle: ${[...path, module].join(" -> ")}`)
      state.set(module, "visiting")
      for (const target of imports.get(module) ?? []) visit(target, [...path, module])
      state.set(module, "done")
    }
    for (const module of imports.keys()) visit(module, [])
    assert.strictEqual(state.size, imports.size)
  })
})
