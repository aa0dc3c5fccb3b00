// Limits shared by several OS processes through a real redis-server. The workers connect first and start
// their clocks together, so a slow process start on a busy machine does not count against the throughput.
import { afterAll, assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { startRedis } from "./services.ts"

const redis = await startRedis()
afterAll(() => redis?.stop())

const worker = fileURLToPath(new URL("./fixtures/redis-worker.ts", import.meta.url))

interface Worker {
  /** Resolves once the worker has reached Redis and waits for the start signal. */
  readonly ready: Promise<void>
  readonly start: () => void
  /** The admission times the worker was granted. */
  readonly admissions: Promise<Array<number>>
}

const startWorker = (url: string, prefix: string, limit: number, duration: number): Worker => {
  const child = spawn(process.execPath, [worker, url, prefix, String(limit), String(duration)], {
    stdio: ["pipe", "pipe", "pipe"]
  })
  let out = ""
  let err = ""
  const ready = new Promise<void>((resolve) =>
    child.stdout.on("data", (chunk) => {
      out += chunk
      if (out.startsWith("ready\n")) resolve()
    })
  )
  child.stderr.on("data", (chunk) => (err += chunk))
  const admissions = new Promise<Array<number>>((resolve, reject) => {
    child.once("exit", (code) =>
      code === 0
        ? resolve(JSON.parse(out.slice("ready\n".length).trim()) as Array<number>)
        : reject(new Error(`worker exited ${code}: ${err}`)))
  })
  return { ready: Promise.race([ready, admissions.then(() => {})]), start: () => child.stdin.end("go\n"), admissions }
}

describe.skipIf(redis === undefined)("a limit shared through Redis", () => {
  it(
    "three processes share one limit of L per second: no one-second window holds more than L, and all take part",
    async () => {
      const limit = 30
      const duration = 3000
      const prefix = `pile-mp:${process.pid}:${Date.now()}:`
      const workers = [1, 2, 3].map(() => startWorker(redis!.url, prefix, limit, duration))
      await Promise.all(workers.map((w) => w.ready))
      for (const w of workers) w.start()
      const logs = await Promise.all(workers.map((w) => w.admissions))
      const merged = logs.flat().sort((a, b) => a - b)
      assert.isAbove(logs.filter((log) => log.length > 0).length, 1, "more than one process was admitted")
      let max = 0
      for (let i = 0, j = 0; i < merged.length; i++) {
        while (j < merged.length && merged[j]! < merged[i]! + 1000) j++
        max = Math.max(max, j - i)
      }
      assert.isAtMost(max, limit, "no window [t, t + 1 s) holds more than L admissions")
      // Throughput over the part of the run where every process was feeding: the first `duration` ms. The
      // demand is far above L, so a quiet machine admits all 3 L; the floor holds at a load of 8 on 2 cores.
      const start = merged[0]!
      const admitted = merged.filter((t) => t < start + duration).length
      assert.isAtLeast(admitted, 0.6 * limit * (duration / 1000), `admitted ${admitted} in ${duration} ms`)
    },
    120_000
  )
})
