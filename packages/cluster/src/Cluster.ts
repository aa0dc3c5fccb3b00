/**
 * The cluster a task runs on: Effect Cluster's `Sharding` over sockets between runners, with its messages,
 * replies, runners and shard locks stored in Postgres.
 *
 * @since 0.1.0
 */
import * as NodeClusterSocket from "@effect/platform-node/NodeClusterSocket"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Duration, Layer, Option, Redacted } from "effect"
import type { Config } from "effect"
import { RunnerAddress, type Runners, type Sharding, type ShardingConfig } from "effect/cluster"
import type { SqlError } from "effect/sql"

/**
 * Options of `Cluster.layerPostgres`.
 *
 * **Example**
 *
 * ```ts
 * import type { Cluster } from "@pile/cluster"
 * import assert from "node:assert/strict"
 *
 * const runner: Cluster.PostgresOptions = {
 *   url: "postgres://postgres@127.0.0.1:5432/postgres",
 *   runner: { host: "10.0.0.7", port: 34431 }
 * }
 * const client: Cluster.PostgresOptions = { url: runner.url }
 * assert.equal(client.runner, undefined)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface PostgresOptions {
  /** The Postgres connection URL: `postgres://user:password@host:port/database`. */
  readonly url: string
  /**
   * Where this runner listens for the other runners (its address as they reach it). Without it the process
   * only sends messages and reads replies (a client: `pile run --cluster`), and owns no shards.
   */
  readonly runner?:
    | { readonly host: string; readonly port: number; readonly listenHost?: string | undefined }
    | undefined
  /** Effect Cluster settings, over Pile's defaults. Every process of a cluster must agree on `shardsPerGroup`. */
  readonly sharding?: Partial<ShardingConfig.ShardingConfig["Service"]> | undefined
}

/**
 * Pile's defaults for Effect Cluster's settings: a dead runner is noticed within seconds, not minutes.
 *
 * **When to use**
 *
 * To read what `layerPostgres` sets, or to start from them in your own `ShardingConfig`.
 *
 * **Details**
 *
 * Runners ping each other every 2 seconds (Effect's default is a minute), look for new assignments every
 * second, and poll the storage for messages every second as a fallback to the notifications they get.
 * The shard locks keep Effect's timings (refreshed every 10 seconds, expiring after 35); with Postgres's
 * advisory locks, the locks of a killed runner are released as soon as its connections drop. A runner waits
 * up to 30 seconds for its running messages when it shuts down (`entityTerminationTimeout`).
 *
 * **Gotchas**
 *
 * Every runner and client of one cluster must agree on `shardsPerGroup` (300). Shorter lock timings are
 * fragile: on a loaded machine a 5 second refresh timed out, the runner gave its shards up, and the
 * messages it was running ran a second time elsewhere.
 *
 * **Example**
 *
 * ```ts
 * import { Cluster } from "@pile/cluster"
 * import { Duration } from "effect"
 * import assert from "node:assert/strict"
 *
 * assert.equal(Duration.toMillis(Duration.fromInputUnsafe(Cluster.defaults.runnerHealthCheckInterval!)), 2000)
 * ```
 *
 * @category constants
 * @since 0.1.0
 */
export const defaults: Partial<ShardingConfig.ShardingConfig["Service"]> = {
  runnerHealthCheckInterval: Duration.seconds(2),
  refreshAssignmentsInterval: Duration.seconds(1),
  entityMessagePollInterval: Duration.seconds(1),
  entityReplyPollInterval: Duration.millis(100),
  entityTerminationTimeout: Duration.seconds(30)
}

/**
 * The cluster on Postgres: `Sharding` for `Task.toLayer` (a runner) or `Task.run` (a runner or a client),
 * with every message, reply, runner and shard lock kept in the database at `url`.
 *
 * **When to use**
 *
 * In every process of a cluster: runners (`pile worker --cluster`) give `runner`, the address the other
 * runners reach them at; producers (`pile run --cluster`) give none.
 *
 * **Details**
 *
 * Effect Cluster's Node socket runner (`NodeClusterSocket.layer`) on `SqlMessageStorage` and
 * `SqlRunnerStorage`, with `Cluster.defaults` under `sharding`. The tables (`cluster_*`) are created on first
 * use. Building the layer connects to Postgres; a runner also starts listening on its port and takes its
 * share of the shards. Closing its scope hands the shards over to the other runners.
 *
 * **Gotchas**
 *
 * A runner's `host` must be reachable from the other runners: `127.0.0.1` only works on one machine.
 *
 * **Example**
 *
 * ```ts
 * // compile only: it needs a Postgres server
 * import { Cluster, Task } from "@pile/cluster"
 * import { Executor } from "@pile/executor"
 * import { Effect, Layer, Schema } from "effect"
 *
 * const Square = Task.make("Square", { input: Schema.Number, success: Schema.Number, id: (n) => `n${n}` })
 *
 * export const Runner = Task.toLayer(Square, (n) => Effect.succeed(n * n)).pipe(
 *   Layer.provide(Executor.layer({ concurrency: 8 })),
 *   Layer.provide(Cluster.layerPostgres({
 *     url: "postgres://postgres@127.0.0.1:5432/postgres",
 *     runner: { host: "127.0.0.1", port: 34431 }
 *   }))
 * )
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const layerPostgres = (
  options: PostgresOptions
): Layer.Layer<Sharding.Sharding | Runners.Runners, SqlError.SqlError | Config.ConfigError | Error> => {
  const runner = options.runner
  const shardingConfig: Partial<ShardingConfig.ShardingConfig["Service"]> = {
    ...defaults,
    ...options.sharding,
    runnerAddress: runner === undefined ? Option.none() : Option.some(RunnerAddress.make(runner.host, runner.port)),
    runnerListenAddress: runner?.listenHost === undefined
      ? Option.none()
      : Option.some(RunnerAddress.make(runner.listenHost, runner.port))
  }
  const cluster: Layer.Layer<Sharding.Sharding | Runners.Runners, any, PgClient.PgClient> = runner === undefined
    ? NodeClusterSocket.layer({ clientOnly: true, storage: "sql", shardingConfig }) as any
    : NodeClusterSocket.layer({ storage: "sql", shardingConfig }) as any
  return cluster.pipe(
    Layer.provide(PgClient.layer({ url: Redacted.make(options.url), applicationName: "pile" }))
  )
}
