/** The promise libraries: the hand-written pool (the floor), p-limit, p-queue, Bottleneck. */
import Bottleneck from "bottleneck"
import pLimit from "p-limit"
import PQueue from "p-queue"
import { type Adapter, boom, type RateSpec, settleTicks, type Work } from "./adapter.ts"
import { Pool, runAll, type Settled } from "./pool.ts"

const resolved = (): Promise<void> => Promise.resolve()
const sleep2 = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 2))
const failEvery10th = (i: number): Promise<void> => i % 10 === 9 ? Promise.reject(boom) : resolved()
const promiseTask = (work: Work): (i: number) => Promise<void> =>
  work === "instant" || work === "sync" || work === "promise" ? resolved : work === "sleep" ? sleep2 : failEvery10th

/** Calls `schedule(i)` for every task and counts each settled promise; resolves once all `n` have settled. */
const settleAll = (n: number, schedule: (i: number) => Promise<unknown>): Promise<Settled> =>
  new Promise((resolve) => {
    const settled: Settled = { outcomes: 0, failures: 0 }
    if (n === 0) return resolve(settled)
    const ok = () => {
      if (++settled.outcomes === n) resolve(settled)
    }
    const ko = () => {
      settled.failures++
      ok()
    }
    for (let i = 0; i < n; i++) schedule(i).then(ok, ko)
  })

const pool: Adapter = {
  id: "pool",
  batch: (n, concurrency, work) => runAll(n, concurrency, promiseTask(work)),
  queue: async (n, measure) => {
    const p = new Pool(1)
    void p.add(() => new Promise(() => {}))
    for (let i = 0; i < n; i++) void p.add(resolved)
    await settleTicks()
    await measure(p.size)
  }
}

const plimit: Adapter = {
  id: "p-limit",
  batch: (n, concurrency, work) => {
    const limit = pLimit(concurrency)
    const task = promiseTask(work)
    return settleAll(n, (i) => limit(task, i))
  },
  queue: async (n, measure) => {
    const limit = pLimit(1)
    void limit(() => new Promise(() => {}))
    for (let i = 0; i < n; i++) void limit(resolved)
    await settleTicks()
    await measure(limit.pendingCount)
  }
}

const pqueueRate = (strict: boolean) => async (spec: RateSpec): Promise<void> => {
  const queue = new PQueue({ intervalCap: spec.limit, interval: spec.windowMs, strict })
  const tasks: Array<Promise<void>> = []
  for (let i = 0; i < spec.n; i++) tasks.push(queue.add(() => spec.onStart(i)))
  await Promise.all(tasks)
}

const pqueue: Adapter = {
  id: "p-queue",
  batch: (n, concurrency, work) => {
    const queue = new PQueue({ concurrency })
    const task = promiseTask(work)
    return settleAll(n, (i) => queue.add(() => task(i)))
  },
  queue: async (n, measure) => {
    const queue = new PQueue({ concurrency: 1 })
    void queue.add(() => new Promise(() => {}))
    for (let i = 0; i < n; i++) void queue.add(resolved)
    await settleTicks()
    await measure(queue.size)
  },
  rate: pqueueRate(false)
}

/** p-queue with `strict: true` (sliding window), for the rate scenario only. */
const pqueueStrict: Adapter = {
  id: "p-queue-strict",
  batch: pqueue.batch,
  rate: pqueueRate(true)
}

const bottleneckRate = (options: Bottleneck.ConstructorOptions) => async (spec: RateSpec): Promise<void> => {
  const limiter = new Bottleneck(options)
  const tasks: Array<Promise<void>> = []
  for (let i = 0; i < spec.n; i++) tasks.push(limiter.schedule(() => Promise.resolve(spec.onStart(i))))
  await Promise.all(tasks)
  await limiter.stop({ dropWaitingJobs: true })
}

const bottleneck: Adapter = {
  id: "bottleneck",
  batch: (n, concurrency, work) => {
    const limiter = new Bottleneck({ maxConcurrent: concurrency })
    const task = promiseTask(work)
    return settleAll(n, (i) => limiter.schedule(() => task(i)))
  },
  queue: async (n, measure) => {
    const limiter = new Bottleneck({ maxConcurrent: 1 })
    void limiter.schedule(() => new Promise(() => {}))
    for (let i = 0; i < n; i++) void limiter.schedule(resolved)
    // Bottleneck queues asynchronously: wait until every job has reached its queue.
    while (limiter.counts().RECEIVED > 0) await settleTicks(1)
    await settleTicks()
    await measure(limiter.counts().QUEUED)
  },
  // The reservoir is Bottleneck's "N per interval" limiter; `minTime` (below) spaces starts evenly.
  rate: (spec) =>
    bottleneckRate({
      reservoir: spec.limit,
      reservoirRefreshAmount: spec.limit,
      reservoirRefreshInterval: spec.windowMs
    })(spec)
}

/** Bottleneck with `minTime` (one start every window/limit ms), for the rate scenario only. */
const bottleneckMinTime: Adapter = {
  id: "bottleneck-mintime",
  batch: bottleneck.batch,
  rate: (spec) => bottleneckRate({ minTime: spec.windowMs / spec.limit })(spec)
}

export const adapters: ReadonlyArray<Adapter> = [pool, plimit, pqueue, pqueueStrict, bottleneck, bottleneckMinTime]
