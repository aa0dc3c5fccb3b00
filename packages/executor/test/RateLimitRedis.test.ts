// Limits shared by several OS processes through a real redis-server.
import { afterAll, assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { startRedis } from "./services.ts"

const redis = await startRedis()
afterAll(() => redis?.stop())

const worker = fileURLToPath(new URL("./fixtures/redis-worker.ts", import.meta.url))

const runWorker = (url: string, prefix: string, limit: number, duration: number): Promise<Array<number>> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [worker, url, prefix, String(limit), String(duration)], {
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    let err = ""
    child.stdout.on("data", (chunk) => (out += chunk))
    child.stderr.on("data", (chunk) => (err += chunk))
    child.once(
      "exit",
      (code) =>
        code === 0
          ? resolve(JSON.parse(out.trim()) as Array<number>)
          : reject(new Error(`worker exited ${code}: ${err}`))
    )
  })

describe.skipIf(redis === undefined)("a limit shared through Redis", () => {
  it(
    "three processes share one limit of L per second: no one-second window holds more than L, throughput ≥ 90% of L",
    async () => {
      const limit = 30
      const duration = 3000
      const prefix = `pile-mp:${process.pid}:${Date.now()}:`
      const logs = await Promise.all([1, 2, 3].map(() => runWorker(redis!.url, prefix, limit, duration)))
      const merged = logs.flat().sort((a, b) => a - b)
      assert.isAbove(logs.filter((log) => log.length > 0).length, 1, "more than one process was admitted")
      let max = 0
      for (let i = 0, j = 0; i < merged.length; i++) {
        while (j < merged.length && merged[j]! < merged[i]! + 1000) j++
        max = Math.max(max, j - i)
      }
      assert.isAtMost(max, limit, "no window [t, t + 1 s) holds more than L admissions")
      // Throughput over the part of the run where every process was feeding: the first `duration` ms.
      const start = merged[0]!
      const admitted = merged.filter((t) => t < start + duration).length
      assert.isAtLeast(admitted, 0.9 * limit * (duration / 1000), `admitted ${admitted} in ${duration} ms`)
    },
    60_000
  )
})
