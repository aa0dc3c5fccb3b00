// pile on a cluster, with real parts: a Postgres, a Redis, `pile worker` processes on loopback, `pile run
// --cluster`, and a server that logs every request. Real time: the assertions are on counts and bounds.
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import {
  canStartPostgres,
  createDatabase,
  hasPostgres,
  hasPython,
  killed,
  type LoggingServer,
  maxInWindow,
  type Postgres,
  query,
  required,
  settle,
  startLoggingServer,
  startOwnPostgres,
  startPostgres,
  startWorker,
  wallClock
} from "./cluster-services.ts"
import {
  bin,
  hasRedis,
  type Pile,
  readRecords,
  type Redis,
  startPile,
  startRedis,
  tmp,
  waitUntil,
  writeLines
} from "./helpers.ts"

const available = hasPostgres && hasRedis && hasPython
if (required && !available) throw new Error("PILE_REQUIRE_SERVICES=1 but Postgres, Redis or python3 is missing")

let postgres: Postgres
let redis: Redis
let databases = 0
const database = () => createDatabase(postgres, `pile_test_${process.pid}_${++databases}_${Date.now() % 100_000}`)

const requests = (dir: string, server: LoggingServer, count: number): string => {
  const input = join(dir, "requests.jsonl")
  writeLines(input, Array.from({ length: count }, (_, i) => ({ id: `r${i}`, url: `${server.url}/r/r${i}` })))
  return input
}

/** How many times each id reached the server. */
const arrivalsById = (server: LoggingServer): Map<string, number> => {
  const counts = new Map<string, number>()
  for (const arrival of server.log) counts.set(arrival.id, (counts.get(arrival.id) ?? 0) + 1)
  return counts
}

const stopAll = async (piles: ReadonlyArray<Pile>) => {
  for (const pile of piles) {
    if (pile.child.exitCode === null && pile.child.signalCode === null) pile.child.kill("SIGTERM")
  }
  await Promise.all(piles.map((pile) => pile.done))
}

describe.skipIf(!available)("pile on a cluster (Postgres, Redis, worker processes)", () => {
  beforeAll(async () => {
    postgres = await startPostgres()
    redis = await startRedis()
  }, 60_000)
  afterAll(async () => {
    await redis?.stop()
    postgres?.stop()
  })

  it(
    "a worker killed with kill -9 mid-batch loses nothing: every id once in --out, duplicates only from its requests in flight, the global limit kept",
    async () => {
      const cluster = database()
      const server = await startLoggingServer(20)
      const dir = tmp()
      const total = 2_000
      const limit = 300 // requests per second, for the whole cluster, through Redis
      const input = requests(dir, server, total)
      const output = join(dir, "results.jsonl")
      const shared = ["--redis", redis.url, "--redis-prefix", `pile:cluster:${Date.now()}:`, "--rate", `${limit}/s`]
      const workers = [
        await startWorker(cluster, "w1", ["--concurrency", "16", ...shared]),
        await startWorker(cluster, "w2", ["--concurrency", "16", ...shared]),
        await startWorker(cluster, "w3", ["--concurrency", "16", ...shared])
      ]
      await settle()
      try {
        const run = startPile(["run", input, "--out", output, "--cluster", cluster, "--quiet"])
        // Kill w1 once it has sent a good part of its share, while the batch is in full flow.
        await waitUntil(
          "w1 to have sent 150 requests",
          () => server.log.filter((a) => a.worker === "w1").length >= 150,
          90_000
        )
        await killed(workers[0]!)
        const killedAt = wallClock()
        await server.sync()
        // What w1 had in flight: the ids it sent whose reply was not stored when it died (no one else has
        // taken its shards over yet: that takes seconds).
        const unanswered = new Set(
          query(cluster, "select message_id from cluster_messages where processed = false").map(([id]) =>
            id!.replace(/^pile\/http\/\d+\/Run\//, "")
          )
        )
        const sentByW1 = new Set(server.log.filter((a) => a.worker === "w1" && a.at <= killedAt).map((a) => a.id))
        const inFlight = [...sentByW1].filter((id) => unanswered.has(id)).length
        const finished = await run.done
        assert.equal(finished.code, 0, finished.stderr)
        await server.sync()

        const records = readRecords(output)
        const ids = new Set(records.map((r) => String(r.id)))
        const counts = arrivalsById(server)
        const duplicates = [...counts.values()].filter((n) => n > 1).length
        const perWorker = new Map<string, number>()
        for (const record of records) {
          const worker = (record.body as { readonly worker: string }).worker
          perWorker.set(worker, (perWorker.get(worker) ?? 0) + 1)
        }
        const maxPerSecond = maxInWindow(server.log, 1_000)
        const maxPerSecondSeen = maxInWindow(server.log, 1_000, (arrival) => arrival.seen)
        process.stdout.write(
          `kill -9 of a worker mid-batch: ${total} ids, ${records.length} records (${ids.size} distinct), ` +
            `${server.log.length} requests at the server, ${duplicates} server-side duplicate(s), ${inFlight} in flight ` +
            `at the kill, records per worker ${JSON.stringify(Object.fromEntries(perWorker))}, ` +
            `largest number of requests in any 1 s window ${maxPerSecond} (limit ${limit}; ${maxPerSecondSeen} by the ` +
            `times the server process read them)\n`
        )
        assert.equal(records.length, total)
        assert.equal(ids.size, total)
        assert.ok(records.every((r) => r.ok))
        // Every id reached the server; a second time only if w1 had sent it and it was unanswered at the kill.
        assert.equal(counts.size, total)
        for (const [id, n] of counts) {
          if (n > 1) {
            assert.equal(n, 2, `id ${id} was sent ${n} times`)
            assert.ok(sentByW1.has(id), `id ${id} was sent twice but not by the killed worker before its death`)
          }
        }
        assert.ok(
          duplicates <= inFlight,
          `${duplicates} duplicates, but only ${inFlight} requests in flight at the kill`
        )
        // Every worker did work, the killed one included (its stored replies count).
        assert.ok((perWorker.get("w1") ?? 0) > 0 && (perWorker.get("w2") ?? 0) > 0 && (perWorker.get("w3") ?? 0) > 0)
        // The limit holds on the requests' departures: each admission is anchored in Redis once undici has
        // written the request's headers to the socket, so never before the kernel received it, and a request
        // never leaves before its admission. The server stamps each arrival with the time the kernel received
        // it, not with the time its process got to run, which a busy machine delays by tens of milliseconds
        // (the second count above, which may exceed the limit).
        assert.ok(maxPerSecond <= limit, `${maxPerSecond} requests in 1 s, over the limit of ${limit} per second`)
      } finally {
        await stopAll(workers)
        await server.close()
      }
    },
    240_000
  )

  it("pile run --cluster resumed after a kill -9 of the producer writes every id exactly once", async () => {
    const cluster = database()
    const server = await startLoggingServer(5)
    const dir = tmp()
    const total = 1_000
    const input = requests(dir, server, total)
    const output = join(dir, "results.jsonl")
    const workers = [
      await startWorker(cluster, "w1", ["--concurrency", "8", "--rate", "200/s"]),
      await startWorker(cluster, "w2", ["--concurrency", "8", "--rate", "200/s"])
    ]
    await settle()
    try {
      const first = startPile(["run", input, "--out", output, "--cluster", cluster, "--quiet"])
      await waitUntil("a third of the records", () => readRecords(output).length >= total / 3, 90_000)
      await killed(first)
      const before = readRecords(output).length
      const resumed = await startPile(["run", input, "--out", output, "--cluster", cluster, "--resume", "--quiet"]).done
      assert.equal(resumed.code, 0, resumed.stderr)
      await server.sync()
      const records = readRecords(output)
      const ids = records.map((r) => String(r.id))
      const counts = arrivalsById(server)
      process.stdout.write(
        `producer killed with kill -9 after ${before} records; resumed: ${records.length} records, ` +
          `${new Set(ids).size} distinct ids, ${server.log.length} requests at the server\n`
      )
      assert.equal(records.length, total)
      assert.equal(new Set(ids).size, total)
      // The workers kept running the batch: nothing was sent twice.
      assert.equal(counts.size, total)
      assert.ok([...counts.values()].every((n) => n === 1))
    } finally {
      await stopAll(workers)
      await server.close()
    }
  }, 240_000)

  it(
    "a worker stopped with SIGINT mid-batch finishes what it runs and hands its shards over: no request is sent twice",
    async () => {
      const cluster = database()
      const server = await startLoggingServer(50)
      const dir = tmp()
      const total = 800
      const input = requests(dir, server, total)
      const output = join(dir, "results.jsonl")
      const workers = [
        await startWorker(cluster, "w1", ["--concurrency", "8", "--rate", "100/s", "--grace", "20s"]),
        await startWorker(cluster, "w2", ["--concurrency", "8", "--rate", "100/s", "--grace", "20s"])
      ]
      await settle()
      try {
        const run = startPile(["run", input, "--out", output, "--cluster", cluster, "--quiet"])
        await waitUntil(
          "w1 to have sent 100 requests",
          () => server.log.filter((a) => a.worker === "w1").length >= 100,
          90_000
        )
        workers[0]!.child.kill("SIGINT")
        const stopped = await workers[0]!.done
        const finished = await run.done
        assert.equal(finished.code, 0, finished.stderr)
        await server.sync()
        const records = readRecords(output)
        const counts = arrivalsById(server)
        const duplicates = [...counts.values()].filter((n) => n > 1).length
        process.stdout.write(
          `SIGINT to a worker mid-batch: it exited with ${
            stopped.code ?? stopped.signal
          }; ${records.length} records, ` +
            `${server.log.length} requests at the server, ${duplicates} duplicate(s)\n`
        )
        assert.equal(records.length, total)
        assert.equal(new Set(records.map((r) => String(r.id))).size, total)
        assert.equal(counts.size, total)
        assert.equal(duplicates, 0)
        assert.ok(stopped.code === 130 || stopped.code === 0, stopped.stderr)
      } finally {
        await stopAll(workers)
        await server.close()
      }
    },
    240_000
  )

  it.skipIf(!canStartPostgres)(
    "Postgres down for a while mid-batch: nothing is dropped, every id gets one record (what was sent meanwhile runs again)",
    async () => {
      const own = await startOwnPostgres()
      const server = await startLoggingServer(10)
      const dir = tmp()
      const total = 800
      const input = requests(dir, server, total)
      const output = join(dir, "results.jsonl")
      const cluster = createDatabase(own, "pile_outage")
      const workers = [
        await startWorker(cluster, "w1", ["--concurrency", "8", "--rate", "60/s"]),
        await startWorker(cluster, "w2", ["--concurrency", "8", "--rate", "60/s"])
      ]
      await settle()
      try {
        const run = startPile(["run", input, "--out", output, "--cluster", cluster, "--quiet"])
        await waitUntil("200 records", () => readRecords(output).length >= 200, 90_000)
        own.crash()
        const down = readRecords(output).length
        await new Promise((resolve) => setTimeout(resolve, 5_000))
        own.restart()
        const finished = await run.done
        assert.equal(finished.code, 0, finished.stderr)
        await server.sync()
        const records = readRecords(output)
        const counts = arrivalsById(server)
        process.stdout.write(
          `Postgres crashed after ${down} records, back 5 s later: ${records.length} records, ` +
            `${
              new Set(records.map((r) => String(r.id))).size
            } distinct ids, ${server.log.length} requests at the server, ` +
            `${[...counts.values()].filter((n) => n > 1).length} duplicate(s)\n`
        )
        assert.equal(records.length, total)
        assert.equal(new Set(records.map((r) => String(r.id))).size, total)
        assert.equal(counts.size, total)
      } finally {
        await stopAll(workers)
        await server.close()
        own.stop()
      }
    },
    240_000
  )

  it("the guide's cluster recipe runs as written", async () => {
    const guide = readFileSync(join(import.meta.dirname, "../../../docs/guides/several-machines.md"), "utf8")
    const recipe = /<!-- ci: the cluster recipe -->\s*```sh\n([\s\S]*?)```/.exec(guide)?.[1]
    assert.ok(recipe !== undefined, "the recipe block is missing from docs/guides/several-machines.md")
    const server = await startLoggingServer(5)
    const dir = tmp()
    const total = 200
    requests(dir, server, total)
    // `pile` on the PATH, as for a user who installed @pile/cli.
    const binDir = join(dir, "bin")
    mkdirSync(binDir)
    writeFileSync(join(binDir, "pile"), `#!/bin/sh\nexec "${process.execPath}" "${bin}" "$@"\n`)
    chmodSync(join(binDir, "pile"), 0o755)
    // In a process group of its own, so that whatever it leaves running is stopped with it.
    const shell = spawn("bash", ["-e", "-c", recipe], {
      cwd: dir,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        ...process.env,
        PATH: `${binDir}:${process.env["PATH"]}`,
        PILE_POSTGRES_URL: database(),
        PILE_REDIS_URL: redis.url
      }
    })
    let stderr = ""
    shell.stderr!.on("data", (chunk) => (stderr += chunk))
    shell.stdout!.resume()
    const timer = setTimeout(() => process.kill(-shell.pid!, "SIGKILL"), 180_000)
    const result = await new Promise<{ readonly status: number | null }>((resolve) =>
      shell.once("close", (status) => resolve({ status }))
    )
    clearTimeout(timer)
    await server.sync()
    try {
      process.kill(-shell.pid!, "SIGKILL")
    } catch {
      // the group has ended
    }
    await server.close()
    assert.equal(result.status, 0, stderr)
    const records = readRecords(join(dir, "results.jsonl"))
    const again = readRecords(join(dir, "again.jsonl"))
    process.stdout.write(
      `the guide's recipe: ${records.length} records, ${again.length} when sent again, ` +
        `${server.log.length} requests at the server\n`
    )
    assert.equal(records.length, total)
    assert.equal(new Set(records.map((r) => String(r.id))).size, total)
    assert.equal(again.length, total)
    assert.equal(server.log.length, total)
  }, 240_000)
})

describe("pile on a cluster, setup errors", () => {
  it("an unreachable Postgres is a setup error (exit 2) for pile run --cluster and pile worker, and nothing is written", async () => {
    const dir = tmp()
    const input = join(dir, "requests.jsonl")
    const output = join(dir, "results.jsonl")
    writeLines(input, [{ id: "a", url: "http://127.0.0.1:9/a" }])
    const unreachable = "postgres://postgres@127.0.0.1:1/pile"
    const run = await startPile(["run", input, "--out", output, "--cluster", unreachable]).done
    assert.equal(run.code, 2, run.stderr)
    assert.match(run.stderr, /pile run: cannot use the cluster at postgres:\/\/postgres@127\.0\.0\.1:1\/pile/)
    assert.equal(readRecords(output).length, 0)
    const worker = await startPile(["worker", "--cluster", unreachable, "--port", "1"]).done
    assert.equal(worker.code, 2, worker.stderr)
    const notPostgres = await startPile(["worker", "--cluster", "redis://127.0.0.1:6379"]).done
    assert.equal(notPostgres.code, 2)
    assert.match(notPostgres.stderr, /expected a postgres:\/\/ URL/)
  })
})
