// `pnpm bench:nginx`: `pile run` and the library against a real nginx that enforces its limits (limit_req
// 100 r/s burst 0 and burst 10, 20 r/s, limit_conn 8; 429 without Retry-After), measured at the server: each
// row counts 200 and 429 in nginx's own access log, and the most arrivals in any 1,000 ms window. It starts
// nginx (and redis-server for the shared rows) itself, on 127.0.0.1 and free ports.
//
//   pnpm bench:nginx                  every row, 1,000 requests each (about four minutes)
//   pnpm bench:nginx --requests 300   fewer requests per row
//   pnpm bench:nginx --write          also replace the table in docs/performance.md
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { cpus, loadavg, tmpdir } from "node:os"
import { join, resolve } from "node:path"

const root = resolve(import.meta.dirname, "..")
const bin = join(root, "packages/cli/src/bin.ts")
const libraryRunner = join(root, "scripts/bench-nginx-library.ts")
const argValue = (name: string) => {
  const i = process.argv.indexOf(name)
  return i === -1 ? undefined : process.argv[i + 1]
}
const N = Number(argValue("--requests") ?? 1000)
const write = process.argv.includes("--write")
// `--only limits,arrivals,body`: a subset of the rows (the targets of the rows left out read "not run").
const only = argValue("--only")?.split(",")
const runs = (group: string) => only === undefined || only.includes(group)

const freePort = (): Promise<number> =>
  new Promise((ok, fail) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() =>
        typeof address === "object" && address !== null ? ok(address.port) : fail(new Error("no port"))
      )
    })
  })

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const waitForPort = async (port: number) => {
  for (let i = 0; i < 200; i++) {
    const open = await new Promise<boolean>((ok) => {
      const socket = createServer().listen(port, "127.0.0.1", () => socket.close(() => ok(false)))
      socket.on("error", () => ok(true))
    })
    if (open) return
    await sleep(25)
  }
  throw new Error(`nothing listens on ${port}`)
}

const dir = mkdtempSync(join(tmpdir(), "pile-bench-nginx-"))
const children: Array<ChildProcess> = []
process.on("exit", () => children.forEach((c) => c.kill("SIGTERM")))

// nginx: one server per limit, each with its own access log ($msec: when the request was logged, to the ms).
const servers = {
  r100: { conf: "limit_req zone=r100;", port: await freePort() },
  r100b10: { conf: "limit_req zone=r100b10 burst=10 nodelay;", port: await freePort() },
  r20: { conf: "limit_req zone=r20;", port: await freePort() },
  // limit_rate keeps a connection busy only past its first second's worth (10 KB), so these small answers are
  // quick: the row checks that `--concurrency 8` never holds more than 8 connections.
  c8: { conf: "limit_conn c8 8; limit_rate 10k;", port: await freePort() },
  open: { conf: "", port: await freePort() }
} as const
writeFileSync(join(dir, "slow"), "x".repeat(1_100))
writeFileSync(join(dir, "ok"), "ok")
spawnSync("truncate", ["-s", "200M", join(dir, "big")])
const serverBlocks = Object.entries(servers).map(([name, s]) =>
  `  server {
    listen 127.0.0.1:${s.port};
    access_log ${dir}/${name}.log pile;
    root ${dir};
    location / { ${s.conf} try_files ${name === "c8" ? "/slow" : "$uri /ok"} =404; }
  }`
).join("\n")
writeFileSync(
  join(dir, "nginx.conf"),
  `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 4096; }
http {
  log_format pile '$msec $status';
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 100000;
  limit_req_zone $server_port zone=r100:1m rate=100r/s;
  limit_req_zone $server_port zone=r100b10:1m rate=100r/s;
  limit_req_zone $server_port zone=r20:1m rate=20r/s;
  limit_conn_zone $server_port zone=c8:1m;
  limit_req_status 429;
  limit_conn_status 429;
${serverBlocks}
}
`
)
const nginxBinary = ["/usr/sbin/nginx", "nginx"].find((b) => spawnSync(b, ["-v"]).status === 0)
if (nginxBinary === undefined) throw new Error("nginx is not installed (apt-get install -y nginx-light)")
children.push(spawn(nginxBinary, ["-c", join(dir, "nginx.conf"), "-p", dir], { stdio: "inherit" }))
for (const s of Object.values(servers)) await waitForPort(s.port)

const redisPort = await freePort()
children.push(
  spawn("redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: "ignore"
  })
)
await waitForPort(redisPort)
const redisUrl = `redis://127.0.0.1:${redisPort}`

interface Finished {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
  readonly peakRssKb: number
}

/** Runs a command; polls its peak RSS (VmHWM) while it lives. */
const run = (args: ReadonlyArray<string>): Promise<Finished> =>
  new Promise((ok) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    let peakRssKb = 0
    child.stdout.on("data", (d) => (stdout += d))
    child.stderr.on("data", (d) => (stderr += d))
    const poll = setInterval(() => {
      const status = (() => {
        try {
          return readFileSync(`/proc/${child.pid}/status`, "utf8")
        } catch {
          return ""
        }
      })()
      const hwm = /VmHWM:\s+(\d+)/.exec(status)
      if (hwm !== null) peakRssKb = Math.max(peakRssKb, Number(hwm[1]))
    }, 20)
    child.on("close", (code) => {
      clearInterval(poll)
      ok({ code, stdout, stderr, peakRssKb })
    })
  })

const logOffset = (server: keyof typeof servers) => statSync(join(dir, `${server}.log`)).size

/** The requests nginx logged for `server` since `offset`: time (ms) and status. */
const logSince = (server: keyof typeof servers, offset: number) =>
  readFileSync(join(dir, `${server}.log`), "utf8").slice(offset).split("\n").filter((l) => l !== "").map((line) => {
    const [msec, status] = line.split(" ")
    return { at: Number(msec) * 1000, status: Number(status) }
  })

const maxPerSecond = (times: ReadonlyArray<number>) => {
  const sorted = [...times].sort((a, b) => a - b)
  let most = 0
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while (j < sorted.length && sorted[j]! < sorted[i]! + 1000) j++
    most = Math.max(most, j - i)
  }
  return most
}

interface Row {
  readonly limit: string
  readonly what: string
  readonly requests: number
  readonly firstTry: number | undefined
  readonly accepted: number
  readonly rejected: number
  readonly perSecond: number
  readonly maxWindow: number
  readonly note?: string
}

const measure = (server: keyof typeof servers, offset: number) => {
  const log = logSince(server, offset)
  const accepted = log.filter((l) => l.status === 200)
  const first = Math.min(...log.map((l) => l.at))
  const last = Math.max(...accepted.map((l) => l.at))
  return {
    accepted: accepted.length,
    rejected: log.filter((l) => l.status === 429).length,
    perSecond: accepted.length <= 1 ? 0 : ((accepted.length - 1) * 1000) / (last - first),
    maxWindow: maxPerSecond(log.map((l) => l.at))
  }
}

const inputFor = (server: keyof typeof servers, count: number, path = "") => {
  const file = join(dir, `in-${server}-${count}${path.replace(/\W/g, "")}.jsonl`)
  const url = `http://127.0.0.1:${servers[server].port}/${path}`
  writeFileSync(file, Array.from({ length: count }, (_, i) => JSON.stringify({ id: i, url })).join("\n") + "\n")
  return file
}

let outputs = 0
const readRecords = (path: string): Array<{ ok: boolean; attempts: number; error?: { type: string } }> =>
  existsSync(path)
    ? readFileSync(path, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l))
    : []

/** `pile run` in `processes` processes (sharing the limit through Redis when more than one). */
const cliRow = async (
  limit: string,
  server: keyof typeof servers,
  flags: ReadonlyArray<string>,
  options?: { readonly processes?: number; readonly count?: number }
): Promise<Row> => {
  const processes = options?.processes ?? 1
  const count = options?.count ?? N
  const input = inputFor(server, count)
  const prefix = `bench:${Date.now()}:`
  const offset = logOffset(server)
  const outs = Array.from({ length: processes }, () => join(dir, `out-${outputs++}.jsonl`))
  const results = await Promise.all(outs.map((out, i) =>
    run([
      bin,
      "run",
      input,
      "--out",
      out,
      ...flags,
      "--json",
      ...(processes === 1 ? [] : ["--shard", `${i + 1}/${processes}`, "--redis", redisUrl, "--redis-prefix", prefix])
    ])
  ))
  for (const r of results) {
    if (r.code !== 0) process.stderr.write(`pile exited ${r.code}: ${r.stderr.slice(-2000)}${r.stdout.slice(-500)}\n`)
  }
  const records = outs.flatMap(readRecords)
  const firstTry = records.filter((r) => r.ok && r.attempts === 1).length / count
  const shared = processes === 1 ? "" : ` --redis --shard i/${processes}, ${processes} processes`
  return {
    limit,
    what: `\`pile run ${flags.join(" ")}\`${shared}`,
    requests: count,
    firstTry,
    ...measure(server, offset)
  }
}

/** The library in `processes` processes (sharing the limit through Redis when more than one). */
const libraryRow = async (limit: string, rate: number, processes: number): Promise<Row> => {
  const offset = logOffset("r100")
  const url = `http://127.0.0.1:${servers.r100.port}/`
  const prefix = `bench-lib:${Date.now()}:`
  const start = Date.now() + 1500
  const per = Math.ceil(N / processes)
  const results = await Promise.all(Array.from({ length: processes }, () =>
    run([
      libraryRunner,
      url,
      String(per),
      String(rate),
      ...(processes === 1 ? [] : [redisUrl, prefix]),
      "--start",
      String(start)
    ])))
  const counts = results.map((r) => JSON.parse(r.stdout.trim().split("\n").at(-1) ?? "{}") as { ok: number })
  const ok = counts.reduce((n, c) => n + (c.ok ?? 0), 0)
  const what = processes === 1
    ? "the library, one process (GCRA, burst 1, margin 0.2 ms)"
    : `the library, ${processes} processes sharing the limit through Redis`
  return { limit, what, requests: per * processes, firstTry: ok / (per * processes), ...measure("r100", offset) }
}

const rows: Array<Row> = []
const step = async (row: Promise<Row>) => {
  const r = await row
  rows.push(r)
  process.stderr.write(
    `${r.limit} | ${r.what}: first try ${pct(r.firstTry)}, ${r.perSecond.toFixed(1)}/s, max ${r.maxWindow}\n`
  )
  await sleep(1500) // let nginx's buckets drain between rows
}
const pct = (x: number | undefined) => x === undefined ? "" : `${(x * 100).toFixed(1)}%`

if (runs("limits")) {
  await step(libraryRow("100 r/s, burst 0", 100, 1))
  await step(libraryRow("100 r/s, burst 0", 100, 4))
  await step(cliRow("100 r/s, burst 0", "r100", ["--rate", "100/s", "--burst", "1"]))
  await step(cliRow("100 r/s, burst 0", "r100", ["--rate", "100/s", "--burst", "1"], { processes: 4 }))
  await step(cliRow("100 r/s, burst 0", "r100", ["--rate", "100/s", "--burst", "1", "--no-adaptive"]))
  await step(cliRow("100 r/s, burst 10", "r100b10", ["--rate", "100/s", "--burst", "10"]))
  await step(cliRow("20 r/s, burst 0", "r20", ["--rate", "20/s", "--burst", "1"]))
  await step(cliRow("8 connections", "c8", ["--concurrency", "8"]))
}
if (runs("arrivals")) {
  // As many requests as ten seconds take at the limit.
  await step(cliRow("none (arrivals)", "open", ["--rate", "10/s"], { count: 100 }))
  await step(cliRow("none (arrivals)", "open", ["--rate", "10/s"], { count: 100, processes: 2 }))
  await step(cliRow("none (arrivals)", "open", ["--rate", "100/s"], { count: 1000 }))
  await step(cliRow("none (arrivals)", "open", ["--rate", "10/s", "--burst", "1"], { count: 100 }))
  await step(cliRow("none (arrivals)", "open", ["--rate", "100/s", "--burst", "1"], { count: 1000 }))
}

// A 200 MB body with --max-body at its default: the peak RSS of the process, and the record's error.
const bigOut = join(dir, "big.jsonl")
const big = runs("body")
  ? await run([bin, "run", inputFor("open", 1, "big"), "--out", bigOut, "--json"])
  : undefined
const bigRecord = big === undefined ? undefined : readRecords(bigOut)[0]

const byWhat = (limit: string, what: string) => rows.find((r) => r.limit === limit && r.what.includes(what))
const one = byWhat("100 r/s, burst 0", "--burst 1`")
const four = byWhat("100 r/s, burst 0", "--shard")
const arrivals = rows.filter((r) => r.limit === "none (arrivals)")
const limitOf = (row: Row) => Number(/--rate (\d+)\/s/.exec(row.what)?.[1])
const met = (ok: boolean) => ok ? "met" : "**not met**"
const firstTryTarget = (row: Row | undefined) =>
  row === undefined
    ? ["not run", ""]
    : [`${pct(row.firstTry)}, ${row.perSecond.toFixed(1)} req/s`, met(row.firstTry! >= 0.97 && row.perSecond >= 90)]
const targets = [
  ["CLI, 100 r/s burst 0, one process: ≥ 97% first try, ≥ 90 req/s", ...firstTryTarget(one)],
  ["CLI, 100 r/s burst 0, four processes through Redis: ≥ 97% first try, ≥ 90 req/s in total", ...firstTryTarget(four)],
  [
    "No 1,000 ms window at the server with more arrivals than the limit, `--rate 10/s` and `--rate 100/s`",
    arrivals.length === 0
      ? "not run"
      : arrivals.map((r) =>
        `${r.maxWindow} for ${limitOf(r)}/s${r.what.includes("--burst") ? " --burst 1" : ""}${
          r.what.includes("processes") ? " (2 processes)" : ""
        }`
      )
        .join(", "),
    arrivals.length === 0 ? "" : met(arrivals.every((r) => r.maxWindow <= limitOf(r)))
  ],
  [
    "A 200 MB response with `--max-body` at its default: RSS under 300 MB, a typed error",
    big === undefined
      ? "not run"
      : `peak RSS ${Math.round(big.peakRssKb / 1024)} MB, ${bigRecord?.error?.type ?? "no error"}`,
    big === undefined ? "" : met(big.peakRssKb < 300 * 1024 && bigRecord?.error?.type === "BodyTooLarge")
  ]
]

const table = [
  `${
    N.toLocaleString("en-US")
  } requests per row (arrival rows: as many as ten seconds take), ${cpus().length} cores, load ${
    loadavg()[0]!.toFixed(1)
  } at the end, ${new Date().toISOString().slice(0, 10)}. Counted in nginx's access log.`,
  "",
  "| server limit | what ran | first try accepted | 200 | 429 | accepted/s | most arrivals in 1,000 ms |",
  "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
  ...rows.map((r) =>
    `| ${r.limit} | ${r.what} | ${pct(r.firstTry)} | ${r.accepted} | ${r.rejected} | ${
      r.perSecond.toFixed(1)
    } | ${r.maxWindow} |`
  ),
  "",
  "| target | measured | |",
  "| --- | --- | --- |",
  ...targets.map((t) => `| ${t.join(" | ")} |`)
].join("\n")
process.stdout.write(table + "\n")

if (write) {
  const path = join(root, "docs/performance.md")
  const text = readFileSync(path, "utf8")
  const start = "<!-- bench:nginx:start -->"
  const end = "<!-- bench:nginx:end -->"
  const i = text.indexOf(start)
  const j = text.indexOf(end)
  if (i === -1 || j === -1) throw new Error(`docs/performance.md has no ${start} ... ${end} block`)
  writeFileSync(path, text.slice(0, i + start.length) + "\n\n" + table + "\n\n" + text.slice(j))
}
process.exit(0)
