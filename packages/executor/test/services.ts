// Real servers for the tests that need one (Redis, nginx): started as plain processes on 127.0.0.1 and a free
// port, stopped by pid. A missing server skips its tests, unless PILE_REQUIRE_SERVICES=1 (CI), which fails.
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { mkdtempSync, writeFileSync } from "node:fs"
import { connect, createServer } from "node:net"
import { tmpdir } from "node:os"
import { basename, join } from "node:path"

export const required = process.env["PILE_REQUIRE_SERVICES"] === "1"

export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() =>
        typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))
      )
    })
  })

/** How long a server may take to come up: generous, for a machine busy with other suites (a load of 8 on 2 cores). */
const startTimeoutMs = 30_000
const attempts = 5

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Sends `request` to 127.0.0.1:port and resolves with what the server wrote back, "" when it could not connect. */
const exchange = (port: number, request: string, until: (reply: string) => boolean): Promise<string> =>
  new Promise((resolve) => {
    let reply = ""
    const socket = connect(port, "127.0.0.1", () => socket.write(request))
    const done = () => {
      socket.destroy()
      resolve(reply)
    }
    socket.setTimeout(5_000, done)
    socket.on("data", (chunk) => {
      reply += chunk.toString()
      if (until(reply)) done()
    })
    socket.once("error", done)
    socket.once("close", done)
  })

/**
 * Polls until `ready` holds, the child exits (it could not start: another process took the port) or time runs out
 * (then the child is killed).
 */
const waitFor = async (what: string, ready: () => Promise<boolean>, child?: ChildProcess): Promise<boolean> => {
  const end = Date.now() + startTimeoutMs
  while (Date.now() < end) {
    if (child !== undefined && child.exitCode !== null) return false
    if (await ready()) return true
    await sleep(50)
  }
  child?.kill("SIGKILL")
  throw new Error(`${what} did not answer within ${startTimeoutMs} ms`)
}

/** The server on this port answers PING with PONG. */
const redisAnswers = (port: number) => async () =>
  (await exchange(port, "PING\r\n", (reply) => reply.includes("\r\n"))).startsWith("+PONG")

/** The server on this port is the redis-server with this process id (not one another test run started). */
const redisIs = (port: number, pid: number | undefined) => async () =>
  (await exchange(port, "INFO server\r\n", (reply) => /process_id:\d+\r\n/.test(reply))).includes(
    `process_id:${pid}\r\n`
  )

const has = (command: string): boolean => spawnSync("sh", ["-c", `command -v ${command}`]).status === 0

export interface Service {
  readonly url: string
  readonly port: number
  readonly stop: () => Promise<void>
}

const stopper = (child: ChildProcess) => () =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null) return resolve()
    child.once("exit", () => resolve())
    child.kill("SIGTERM")
  })

/**
 * A Redis server that answers PING: PILE_REDIS_URL if set (CI starts one), else a fresh redis-server, else
 * undefined. A fresh server gets a free port; if another process takes that port first, the server exits and
 * the next attempt takes another port.
 */
export const startRedis = async (): Promise<Service | undefined> => {
  const given = process.env["PILE_REDIS_URL"]
  if (given !== undefined && given !== "") {
    const port = Number(new URL(given).port || 6379)
    await waitFor(`Redis at ${given}`, redisAnswers(port))
    return { url: given, port, stop: async () => {} }
  }
  if (!has("redis-server")) {
    if (required) throw new Error("redis-server is required (PILE_REQUIRE_SERVICES=1) but not installed")
    return undefined
  }
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const port = await freePort()
    const child = spawn("redis-server", [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no"
    ], {
      stdio: "ignore"
    })
    if (await waitFor(`redis-server on port ${port}`, redisIs(port, child.pid), child)) {
      return { url: `redis://127.0.0.1:${port}`, port, stop: stopper(child) }
    }
  }
  throw new Error(`redis-server did not start in ${attempts} attempts (each on a port another process took)`)
}

/**
 * nginx answering 200 on / under `limit_req` at `rate` requests per second (burst 0), else undefined. It is
 * ready once it answers `/pile-ready` (not rate limited) with this instance's own token: a server another
 * process started on the same port does not count, and a port taken first means another attempt.
 */
export const startNginx = async (rate: number): Promise<Service | undefined> => {
  const binary = ["nginx", "/usr/sbin/nginx"].find((b) =>
    b.startsWith("/") ? spawnSync("test", ["-x", b]).status === 0 : has(b)
  )
  if (binary === undefined) {
    if (required) throw new Error("nginx is required (PILE_REQUIRE_SERVICES=1) but not installed")
    return undefined
  }
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const port = await freePort()
    const dir = mkdtempSync(join(tmpdir(), "pile-nginx-"))
    const token = basename(dir)
    writeFileSync(
      join(dir, "nginx.conf"),
      `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  limit_req_zone $server_name zone=pile:1m rate=${rate}r/s;
  limit_req_status 503;
  server {
    listen 127.0.0.1:${port};
    location = /pile-ready {
      return 200 "${token}";
    }
    location / {
      limit_req zone=pile;
      return 200 "ok";
    }
  }
}
`
    )
    const child = spawn(binary, ["-c", join(dir, "nginx.conf"), "-p", dir], { stdio: "ignore" })
    const answers = async () =>
      (await exchange(
        port,
        `GET /pile-ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
        (reply) => reply.includes(token)
      )).includes(token)
    if (await waitFor(`nginx on port ${port}`, answers, child)) {
      return { url: `http://127.0.0.1:${port}/`, port, stop: stopper(child) }
    }
  }
  throw new Error(`nginx did not start in ${attempts} attempts`)
}
