// Export the executor's spans and metrics over OTLP/HTTP with Effect's own exporter. This program starts a
// tiny OTLP receiver on 127.0.0.1 so that it runs anywhere; point `baseUrl` at your collector instead.
// Run: pnpm exec node docs/examples/otlp.ts
import { NodeHttpClient } from "@effect/platform-node"
import { Executor } from "@pile/executor"
import { Effect, Layer, Stream } from "effect"
import { Otlp } from "effect/observability"
import assert from "node:assert/strict"
import { createServer } from "node:http"

// A stand-in collector that records which OTLP endpoints were called.
const received: Array<string> = []
const collector = createServer((request, response) => {
  received.push(request.url ?? "")
  request.resume()
  request.on("end", () => response.writeHead(200, { "content-type": "application/json" }).end("{}"))
})
await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve))
const address = collector.address()
const baseUrl = `http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}`

const Observability = Otlp.layerJson({
  baseUrl,
  resource: { serviceName: "pile-example" },
  metricsExportInterval: "100 millis",
  tracerExportInterval: "100 millis"
}).pipe(Layer.provide(NodeHttpClient.layerUndici))

const program = Effect.gen(function*() {
  const executor = yield* Executor.make({ name: "otlp-demo", concurrency: 2 })
  yield* Stream.runDrain(executor.run([1, 2, 3], (n) => Effect.succeed(n * 2)))
  yield* executor.shutdown()
}).pipe(Effect.withSpan("batch"), Effect.scoped)

await Effect.runPromise(program.pipe(Effect.provide(Observability)))
collector.close()
assert.ok(received.includes("/v1/traces"), `spans exported: ${received.join(", ")}`)
assert.ok(received.includes("/v1/metrics"), `metrics exported: ${received.join(", ")}`)
console.log(`exported: ${[...new Set(received)].join(", ")}`)
