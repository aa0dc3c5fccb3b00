// Real servers for the tests that need one (Redis, nginx): started as plain processes on 127.0.0.1 and a free
// port, stopped by pid. A missing server skips its tests, unless PILE_REQUIRE_SERVICES=1 (CI), which fails.
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { mkdtempSync, writeFileSync } from "node:fs"
import { connect, createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

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

const waitForPort = async (port: number, timeoutMs: number): Promise<void> => {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1")
      socket.once("connect", () => {
        socket.destroy()
        resolve(true)
      })
      socket.once("error", () => resolve(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`)
}

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

/** A Redis server: PILE_REDIS_URL if set (CI starts one), else a fresh redis-server, else undefined. */
export const startRedis = async (): Promise<Service | undefined> => {
  const given = process.env["PILE_REDIS_URL"]
  if (given !== undefined && given !== "") {
    return { url: given, port: Number(new URL(given).port), stop: async () => {} }
  }
  if (!has("redis-server")) {
    if (required) throw new Error("redis-server is required (PILE_REQUIRE_SERVICES=1) but not installed")
    return undefined
  }
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
  await waitForPort(port, 5000)
  return { url: `redis://127.0.0.1:${port}`, port, stop: stopper(child) }
}

/** nginx answering 200 on / under `limit_req` at `rate` requests per second (burst 0), else undefined. */
export const startNginx = async (rate: number): Promise<Service | undefined> => {
  const binary = ["nginx", "/usr/sbin/nginx"].find((b) =>
    b.startsWith("/") ? spawnSync("test", ["-x", b]).status === 0 : has(b)
  )
  if (binary === undefined) {
    if (required) throw new Error("nginx is required (PILE_REQUIRE_SERVICES=1) but not installed")
    return undefined
  }
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), "pile-nginx-"))
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
    location / {
      limit_req zone=pile;
      return 200 "ok";
    }
  }
}
`
  )
  const child = spawn(binary, ["-c", join(dir, "nginx.conf"), "-p", dir], { stdio: "ignore" })
  await waitForPort(port, 5000)
  return { url: `http://127.0.0.1:${port}/`, port, stop: stopper(child) }
}
