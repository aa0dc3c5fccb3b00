/**
 * `--metrics <port>`: the executor's Prometheus metrics (`pile_*`, Effect's `PrometheusMetrics`) served on
 * `http://127.0.0.1:<port>/metrics` while the run lasts, for a dashboard or a scraper watching a long batch.
 */
import * as Effect from "effect/Effect"
import * as PrometheusMetrics from "effect/observability/PrometheusMetrics"
import type * as Scope from "effect/Scope"
import * as NodeHttp from "node:http"

/**
 * Listens on 127.0.0.1:`port` until the scope closes; fails with the system's message when it cannot (the port
 * is taken, say). The metrics are read from the context of the caller: the run's.
 */
export const serve = (port: number): Effect.Effect<string, string, Scope.Scope> =>
  Effect.gen(function*() {
    const context = yield* Effect.context<never>()
    const server = yield* Effect.acquireRelease(
      Effect.callback<NodeHttp.Server, string>((resume) => {
        const server = NodeHttp.createServer((request, response) => {
          if (request.url !== "/metrics" && request.url !== "/") {
            response.writeHead(404).end("not found: the metrics are at /metrics\n")
            return
          }
          response.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" })
          response.end(PrometheusMetrics.formatUnsafe(context))
        })
        server.once("error", (error) => resume(Effect.fail(error.message)))
        server.listen(port, "127.0.0.1", () => resume(Effect.succeed(server)))
      }),
      (server) =>
        Effect.callback<void>((resume) => {
          server.closeAllConnections()
          server.close(() => resume(Effect.void))
        })
    )
    const address = server.address()
    return `http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : port}/metrics`
  })
