// Black-box tests of `pile run` / `pile worker` flags and of bad `headers` in input lines, written from
// docs/guides/cli.md and packages/cli/README.md only (no look at src). `pile` runs as a real child process
// against a tiny HTTP server of this file. Passing tests pin documented behaviour; `it.fails` records a bug
// (the comment says what is wrong), so the suite stays green while the bug is open.
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import { existsSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:http"
import { join } from "node:path"
import { bin, type Finished, readRecords, runPile, tmp, writeLines } from "./helpers.ts"

/** `pile <args>` with `cwd` as its working directory, so that a relative name such as `-1.jsonl` is passed as is. */
const runIn = (cwd: string, args: ReadonlyArray<string>): Promise<Finished> =>
  new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk) => (stdout += chunk))
    child.stderr.on("data", (chunk) => (stderr += chunk))
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }))
  })

let server: Server
let base = ""
beforeAll(async () => {
  server = createServer((req, res) => {
    const delay = Number(new URL(req.url ?? "/", "http://x").searchParams.get("delay") ?? 0)
    req.resume()
    req.on("end", () =>
      setTimeout(() => {
        res.setHeader("content-type", "application/json")
        res.end(JSON.stringify({ path: req.url, headers: req.headers }))
      }, delay))
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const address = server.address()
  if (typeof address !== "object" || address === null) throw new Error("no port")
  base = `http://127.0.0.1:${address.port}`
})
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

/** A fresh directory with `in.jsonl` (one good request), and a path for the output. */
const setup = (lines?: ReadonlyArray<unknown>) => {
  const dir = tmp()
  const input = join(dir, "in.jsonl")
  writeLines(input, lines ?? [{ id: 1, url: `${base}/a` }])
  return { dir, input, out: join(dir, "out.jsonl") }
}

const positive = (flag: string, value: string) =>
  `pile run: ${flag} "${value}": expected a positive duration such as 500ms, 30s, 2m or 1h`

/**
 * What keeps `result` from being a usage error (exit code 2, one line on stderr containing `text`, no stack
 * trace, nothing written to `out`): [] when it is one.
 */
const usageProblems = (result: Finished, text: string, out?: string): Array<string> => {
  const problems: Array<string> = []
  if (result.code !== 2) problems.push(`exit code ${result.code}, not 2`)
  if (!result.stderr.includes(text)) problems.push(`stderr lacks ${JSON.stringify(text)}`)
  if (result.stderr.includes("    at ")) problems.push("a stack trace")
  if (out !== undefined && existsSync(out)) problems.push("the output was written")
  return problems.length === 0 ? [] : [`${problems.join(", ")}; stderr: ${result.stderr.trim()}`]
}

/** A directory holding an input named `name` (one good request). */
const dashed = (name: string) => {
  const { dir } = setup()
  writeLines(join(dir, name), [{ id: 1, url: `${base}/a` }])
  return { dir, input: join(dir, name), out: join(dir, "out.jsonl") }
}

describe.concurrent("duration flags", () => {
  // The guide: "A duration (--timeout, --grace, --max-retry-after) must be positive: --timeout -1s, 0s or
  // abc is refused ... with one line that says what is allowed".
  // One test, the cases at once: each is a process start.
  it("-1s, 0s, abc, =-1s (and -5, 1d, Infinity for --timeout): refused with one line naming the flag", async () => {
    const cases: Array<[string, string, boolean]> = []
    for (const flag of ["--timeout", "--grace", "--max-retry-after"]) {
      for (const value of ["-1s", "0s", "abc"]) cases.push([flag, value, false])
      cases.push([flag, "-1s", true])
    }
    for (const value of ["-5", "1d", "Infinity"]) cases.push(["--timeout", value, false])
    const problems = await Promise.all(cases.map(async ([flag, value, joined]) => {
      const { input, out } = setup()
      const flags = joined ? [`${flag}=${value}`] : [flag, value]
      return usageProblems(await runPile(["run", input, "--out", out, "-q", ...flags]), positive(flag, value), out)
    }))
    assert.deepStrictEqual(problems.flat(), [])
  })

  it("1.5s, 500ms, 2m, 1h, 1.5 are accepted by --timeout, --grace and --max-retry-after, and the run works", async () => {
    await Promise.all(["1.5s", "500ms", "2m", "1h", "1.5"].map(async (value) => {
      const { input, out } = setup()
      const result = await runPile([
        "run",
        "--timeout",
        value,
        input,
        "--out",
        out,
        "-q",
        "--grace",
        value,
        "--max-retry-after",
        value
      ])
      assert.strictEqual(result.code, 0, `${value}: ${result.stderr}`)
      assert.deepInclude(readRecords(out)[0], { id: 1, ok: true, status: 200 })
    }))
  })

  it("the legitimate form: pile run --timeout 30s input.jsonl --out ...", async () => {
    const { input, out } = setup()
    const result = await runPile(["run", "--timeout", "30s", input, "--out", out, "-q"])
    assert.strictEqual(result.code, 0, result.stderr)
    assert.strictEqual(readRecords(out).length, 1)
  })

  it("--timeout applies: 100ms against a 300 ms answer is a Timeout; a timeout over 2^31 ms does not fire early", async () => {
    const { input, out } = setup([{ id: 1, url: `${base}/a?delay=300` }])
    const short = await runPile(["run", input, "--out", out, "-q", "--retries", "0", "--timeout", "100ms"])
    assert.strictEqual(short.code, 1, short.stderr)
    assert.strictEqual(readRecords(out)[0]?.error?.type, "Timeout")
    const out2 = join(input, "..", "out2.jsonl")
    const huge = await runPile(["run", input, "--out", out2, "-q", "--retries", "0", "--timeout", "1000h"])
    assert.strictEqual(huge.code, 0, huge.stderr)
    assert.deepInclude(readRecords(out2)[0], { ok: true })
  })

  // `pile worker`'s documented duration flags (--timeout, --grace) are checked before it connects.
  it.each([["--timeout", "-1s"], ["--grace", "abc"]])(
    "pile worker %s %s is refused naming the flag",
    async (flag, value) => {
      const result = await runPile(["worker", "--cluster", "postgres://u:p@127.0.0.1:1/db", flag, value])
      assert.deepStrictEqual(usageProblems(result, `pile worker: ${flag} "${value}": expected a positive duration`), [])
    }
  )
})

describe.concurrent("numeric flags given a negative number", () => {
  it("--retries, -c, --concurrency, --rpm, --tpm, --burst, --rate, --max-body, --shard: a usage error naming the flag", async () => {
    const cases: Array<[Array<string>, string]> = [
      [["--retries", "-1"], "--retries must be >= 0, got -1"],
      [["--retries=-1"], "--retries must be >= 0, got -1"],
      [["-c", "-3"], "--concurrency must be >= 1, got -3"],
      [["--concurrency", "-3"], "--concurrency must be >= 1, got -3"],
      [["--rpm", "-5"], "--rpm must be >= 1, got -5"],
      [["--tpm", "-100"], "--tpm must be >= 1, got -100"],
      [["--burst", "-1"], "--burst must be >= 1, got -1"],
      [["--rate", "-5/s"], `--rate "-5/s": expected <n>/<unit>`],
      [["--max-body", "-1MB"], `--max-body "-1MB": expected a size`],
      [["--shard", "-1/2"], `--shard "-1/2": expected <i>/<n>`]
    ]
    const problems = await Promise.all(cases.map(async ([flags, text]) => {
      const { input, out } = setup()
      return usageProblems(await runPile(["run", input, "--out", out, "-q", ...flags]), text, out)
    }))
    assert.deepStrictEqual(problems.flat(), [])
  })

  // Was a bug (fixed): `--metrics -1` (and 70000) started the run and crashed in Server.listen with a
  // RangeError and a stack trace, exit 1, instead of a usage error naming --metrics.
  it.each([["-1"], ["70000"]])("--metrics %s: a usage error naming the flag", async (port) => {
    const { input, out } = setup()
    assert.deepStrictEqual(
      usageProblems(await runPile(["run", input, "--out", out, "-q", "--metrics", port]), "--metrics"),
      []
    )
  })

  it("pile worker --port -1 / --concurrency -3 / --retries -1 name the flag", async () => {
    const cluster = "postgres://u:p@127.0.0.1:1/db"
    assert.deepStrictEqual(
      usageProblems(await runPile(["worker", "--cluster", cluster, "--port", "-1"]), "--port must be 1..65535, got -1"),
      []
    )
    assert.deepStrictEqual(
      usageProblems(await runPile(["worker", "--cluster", cluster, "-c", "-3"]), "--concurrency must be >= 1, got -3"),
      []
    )
    assert.deepStrictEqual(
      usageProblems(
        await runPile(["worker", "--cluster", cluster, "--retries", "-1"]),
        "--retries must be >= 0, got -1"
      ),
      []
    )
  })
})

describe.concurrent("arguments the minus-digit rewrite could misread", () => {
  it("`--` then -1.jsonl or -2x.jsonl: the file is the input", async () => {
    for (const name of ["-1.jsonl", "-2x.jsonl"]) {
      const { dir, out } = dashed(name)
      const result = await runIn(dir, ["run", "--out", out, "-q", "--", name])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.strictEqual(readRecords(out).length, 1)
    }
  })

  it("./-1.jsonl after a boolean flag: the file is the input", async () => {
    const { dir, out } = dashed("-1.jsonl")
    const result = await runIn(dir, ["run", "--quiet", "./-1.jsonl", "--out", out])
    assert.strictEqual(result.code, 0, result.stderr)
  })

  it("a boolean flag followed by a bare negative number: the number is the input (`input file not found: -5`)", async () => {
    const { out } = setup()
    assert.deepStrictEqual(
      usageProblems(await runPile(["run", "--quiet", "-5", "--out", out]), "input file not found: -5", out),
      []
    )
    assert.deepStrictEqual(
      usageProblems(await runPile(["run", "--resume", "-3", "--out", out]), "input file not found: -3", out),
      []
    )
  })

  it("a numeric flag then a value then the input: unaffected", async () => {
    const { input, out } = setup()
    const result = await runPile(["run", "--retries", "1", "-c", "2", input, "--out", out, "-q"])
    assert.strictEqual(result.code, 0, result.stderr)
  })

  // Was a bug (fixed): the rewrite of `--flag -1s` into `--flag=-1s` also took an input file named `-1.jsonl`
  // after a boolean flag as that flag's value (`--quiet -1.jsonl`: "Missing required argument: input";
  // `--no-adaptive -1.jsonl`: a message telling the user to type `--no-adaptive=-1.jsonl`). It now applies to
  // the duration flags only, and such a file is read as at the start of the line: as short flags, an exit 2
  // that names it (`./-1.jsonl` or `--` is the way, as with most CLIs). Never swallowed into another flag.
  // Every boolean flag `pile run --help` lists (a flag shown without a value), and --no-adaptive: a boolean
  // flag added later is covered without touching this test.
  it("after every boolean flag of pile run, a file named -1.jsonl is never taken as the flag's value", async () => {
    const help = (await runPile(["run", "--help"])).stdout
    const flags = help.split("\n").flatMap((line) => {
      const listed = /^\s+(--[a-z][a-z-]*)(?:, -[a-z])?( [a-z][a-z0-9/-]*)?\s{2,}/.exec(line)
      return listed === null || listed[2] !== undefined || ["--help", "--version"].includes(listed[1]!)
        ? []
        : [listed[1]!]
    })
    if (help.includes("--no-adaptive")) flags.push("--no-adaptive")
    assert.includeMembers(flags, ["--quiet", "--json", "--overwrite", "--resume", "--adaptive", "--no-adaptive"])
    for (const flag of flags) {
      for (const name of ["-1.jsonl", "-2x.jsonl"]) {
        const { dir, out } = dashed(name)
        const result = await runIn(dir, ["run", flag, name, "--out", out, "-q"])
        assert.notInclude(result.stderr, "Missing required argument: input", `${flag} ${name}`)
        assert.notInclude(result.stderr, `${flag}=${name}`, `${flag} ${name}`)
        assert.strictEqual(result.code, 2, `${flag} ${name}: ${result.stderr}`)
        assert.include(result.stderr, `Unrecognized flag: ${name.slice(0, 2)}`, `${flag} ${name}`)
      }
    }
  })

  it("--out -1.jsonl: a value-taking flag takes the dashed name as its value", async () => {
    const { dir, input } = setup()
    const result = await runIn(dir, ["run", input, "-q", "--out", "-1.jsonl"])
    assert.strictEqual(result.code, 0, result.stderr)
    assert.strictEqual(readRecords(join(dir, "-1.jsonl")).length, 1)
  })

  // Not a bug of the rewrite, recorded as seen: a dashed input as the first argument, with nothing before it,
  // is read as a cluster of short flags (`Unrecognized flag: -1 ...; Unrecognized flag: -. ...`), exit 2;
  // `--` or `./-1.jsonl` is the way (as with most CLIs).
  it("-1.jsonl as the first argument: a usage error (use -- or ./)", async () => {
    const { dir, out } = dashed("-1.jsonl")
    assert.deepStrictEqual(
      usageProblems(await runIn(dir, ["run", "-1.jsonl", "--out", out, "-q"]), "Unrecognized flag: -1", out),
      []
    )
  })
})

describe.concurrent("bad headers in a line", () => {
  it("every bad header of one line is named in one message; good lines still run", async () => {
    const u = `${base}/a`
    const { input, out } = setup()
    writeFileSync(
      input,
      [
        JSON.stringify({
          id: "multi",
          url: u,
          headers: {
            "x a": "1",
            "ok-name": "fine",
            "y(b)": "2",
            n: 5,
            cr: "a\rb",
            lf: "a\nb",
            nul: "a\u0000b",
            arr: ["x"],
            nil: null,
            "": "empty",
            bool: true
          }
        }),
        JSON.stringify({ id: "good", url: u, headers: { authorization: "Bearer x", "x-tab": "a\tb", "X-Up": "V" } }),
        JSON.stringify({ id: "empty", url: u, headers: {} }),
        JSON.stringify({ id: "both", url: u, method: "FETCH", headers: { "x a": "1" } })
      ].join("\n") + "\n"
    )
    const result = await runPile(["run", input, "--out", out, "-q"])
    assert.strictEqual(result.code, 1, result.stderr)
    const byId = new Map(readRecords(out).map((r) => [String(r.id), r]))
    const multi = byId.get("multi")!
    assert.deepInclude(multi, { ok: false, attempts: 0, status: null, line: 1 })
    assert.strictEqual(multi.error?.type, "InvalidInput")
    const message = multi.error!.message
    assert.match(message, /^line 1: /)
    for (const bad of [`"x a"`, `"y(b)"`, `"cr"`, `"lf"`, `"nul"`, `headers.n`, `headers.arr`, `headers.nil`]) {
      assert.include(message, bad)
    }
    assert.include(message, `header name ""`)
    assert.include(message, `headers.bool`)
    assert.notInclude(message, "ok-name")
    assert.include(byId.get("both")?.error?.message, `got "FETCH"`)
    assert.include(byId.get("both")?.error?.message, `"x a"`)
    const good = byId.get("good")!
    assert.deepInclude(good, { ok: true, status: 200 })
    assert.deepInclude((good.body as { headers: Record<string, string> }).headers, {
      authorization: "Bearer x",
      "x-tab": "a\tb",
      "x-up": "V"
    })
    assert.deepInclude(byId.get("empty"), { ok: true, status: 200 })
  })

  it("headers that are not an object (string, array, null, number): an InvalidInput record on \"headers\"", async () => {
    const u = `${base}/a`
    const { input, out } = setup([
      { id: "str", url: u, headers: "authorization: x" },
      { id: "arr", url: u, headers: ["a", "b"] },
      { id: "null", url: u, headers: null },
      { id: "num", url: u, headers: 42 }
    ])
    const result = await runPile(["run", input, "--out", out, "-q"])
    assert.strictEqual(result.code, 1, result.stderr)
    const records = readRecords(out)
    assert.strictEqual(records.length, 4)
    for (const r of records) {
      assert.deepInclude(r, { ok: false, attempts: 0 })
      assert.strictEqual(r.error?.type, "InvalidInput")
      assert.match(
        r.error!.message,
        new RegExp(`^line ${r.line}: "headers": expected an object of header names to string values, got `)
      )
    }
  })

  // Was a clarity bug (fixed): a non-object `headers` said `"headers": expected object | undefined`, the
  // schema's wording, and unlike the `method` message (`..., got "FETCH"`) not what the line gave.
  it("a non-object headers message says what it got, without schema wording", async () => {
    const { input, out } = setup([{ id: "arr", url: `${base}/a`, headers: ["a"] }])
    await runPile(["run", input, "--out", out, "-q"])
    const message = readRecords(out)[0]!.error!.message
    assert.notInclude(message, "undefined")
    assert.match(message, /got|array/)
  })
})

describe.concurrent("a password in a service URL never reaches the terminal", () => {
  const line = JSON.stringify({ id: "a", url: "http://127.0.0.1:1/x" })
  it.each([
    [["worker", "--cluster", "postgres://u:hunter2@127.0.0.1:1/db"], "postgres://u:***@127.0.0.1:1/db"],
    [["worker", "--cluster", "postgres://u:hunter2@[bad"], "postgres://u:***@[bad"],
    [
      ["run", "INPUT", "--out", "OUT", "--cluster", "postgres://u:hunter2@127.0.0.1:1/db"],
      "postgres://u:***@127.0.0.1:1/db"
    ],
    [["run", "INPUT", "--out", "OUT", "--redis", "redis://:hunter2@127.0.0.1:1"], "redis://:***@127.0.0.1:1"],
    [["run", "INPUT", "--out", "OUT", "--redis", "redis://:hunter2@"], "redis://:***@"]
  ])("pile %j: the error shows the URL with *** for its password", async (args, shown) => {
    const { input, out } = setup([JSON.parse(line)])
    const result = await runPile(args.map((arg) => arg === "INPUT" ? input : arg === "OUT" ? out : arg))
    assert.notStrictEqual(result.code, 0)
    assert.notInclude(result.stdout + result.stderr, "hunter2")
    assert.include(result.stderr, shown)
  })
})
