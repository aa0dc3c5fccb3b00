/**
 * A task that can cross machines: declared once by name with `effect/Schema` types for its input, its success
 * and its typed error, served by runners (`Task.toLayer`), and run in batches by any process of the cluster
 * (`Task.run`), whose outcomes come back as a Pile.
 *
 * Each input is a persisted message of an Effect Cluster entity, whose primary key is the input's id: the
 * message and its reply are stored (in Postgres with `Cluster.layerPostgres`), so an id runs once however
 * often it is sent, a runner's unfinished messages are delivered again when it dies, and running a batch
 * again returns the stored replies of the ids that finished.
 *
 * @since 0.1.0
 */
import type { ErrorPolicy, Executor, Outcome, Pile, RateLimit } from "@pile/executor"
import { Executor as ExecutorService } from "@pile/executor/Executor"
import { Duration, Effect, type Exit, type Layer, Schedule, Schema, Stream } from "effect"
import { ClusterSchema, Entity, type Sharding } from "effect/cluster"
import { Rpc } from "effect/rpc"
import { bucketOf, toOutcome } from "./internal/reply.ts"

/**
 * A task declared for the cluster: its name, its schemas, how to read an input's id, and the entity its
 * messages go to.
 *
 * **Details**
 *
 * The messages of a task go to `entities` entity instances (64 by default), an input to the one its id hashes
 * to: a bounded set of mailboxes however large the batch, each on the runner that owns its shard. The id is
 * the message's primary key, so it must name the work: two inputs with one id are one message.
 *
 * **Example**
 *
 * ```ts
 * import { Task } from "@pile/cluster"
 * import { Schema } from "effect"
 * import assert from "node:assert/strict"
 *
 * const Fetch = Task.make("Fetch", {
 *   input: Schema.Struct({ url: Schema.String }),
 *   success: Schema.Number,
 *   error: Schema.String,
 *   id: (input) => input.url
 * })
 * assert.equal(Fetch.name, "Fetch")
 * assert.equal(Fetch.entities, 64)
 * assert.equal(Fetch.id({ url: "https://example.com" }), "https://example.com")
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Task<in out I, in out A, in out E> {
  /** The task's name: its entity type in the cluster. Every runner and client must use the same one. */
  readonly name: string
  /** The id of an input: the primary key of its message. */
  readonly id: (input: I) => string
  /** How many entity instances share the task's messages. */
  readonly entities: number
  /** @internal */
  readonly entity: Entity.Entity<string, Rpc.Any>
  /** @internal */
  readonly types?: { readonly input: I; readonly success: A; readonly error: E } | undefined
}

/**
 * Declares a task for the cluster.
 *
 * **When to use**
 *
 * Once per kind of work, in a module that both the runners and the clients import: the name and the schemas
 * are the contract between them.
 *
 * **Details**
 *
 * `input`, `success` and `error` must encode to JSON (they are stored in Postgres and sent between
 * machines); the error defaults to `Schema.Never`. `entities` (default 64) is the number of entity
 * instances the messages are spread over, by a hash of their id.
 *
 * **Gotchas**
 *
 * Changing `entities` or `id` between two runs of the same batch changes where its messages are stored:
 * the second run does not find the first one's replies.
 *
 * **Example**
 *
 * ```ts
 * import { Task } from "@pile/cluster"
 * import { Schema } from "effect"
 * import assert from "node:assert/strict"
 *
 * const Square = Task.make("Square", {
 *   input: Schema.Number,
 *   success: Schema.Number,
 *   id: (n) => `n${n}`,
 *   entities: 8
 * })
 * assert.equal(Square.id(3), "n3")
 * assert.equal(Square.entities, 8)
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const make = <I, IE, A, AE, E = never, EE = never>(
  name: string,
  options: {
    readonly input: Schema.Codec<I, IE>
    readonly success: Schema.Codec<A, AE>
    readonly error?: Schema.Codec<E, EE> | undefined
    readonly id: (input: I) => string
    readonly entities?: number | undefined
  }
): Task<I, A, E> => {
  const error = options.error ?? (Schema.Never as unknown as Schema.Codec<E, EE>)
  const entities = options.entities ?? 64
  if (!Number.isInteger(entities) || entities < 1) throw new RangeError(`entities must be an integer >= 1`)
  const run = Rpc.make("Run", {
    payload: { id: Schema.String, input: options.input },
    success: Schema.Struct({
      kind: Schema.Literals([
        "success",
        "failure",
        "defect",
        "cancelled",
        "timedOut",
        "dropped",
        "evicted",
        "rejected",
        "skipped"
      ]),
      attempts: Schema.Number,
      exit: Schema.Exit(options.success, error, Schema.Defect())
    }),
    primaryKey: (payload) => payload.id
  }).annotate(ClusterSchema.Persisted, true)
  return {
    name,
    id: options.id,
    entities,
    entity: Entity.make(name, [run]) as unknown as Entity.Entity<string, Rpc.Any>
  }
}

/**
 * How a runner runs a task's messages through its `Executor`: the per-task options of `Executor.submit`,
 * computed from each input.
 *
 * **Example**
 *
 * ```ts
 * import type { Task } from "@pile/cluster"
 * import { ErrorPolicy } from "@pile/executor"
 * import { Schedule } from "effect"
 * import assert from "node:assert/strict"
 *
 * const options: Task.ServeOptions<{ readonly prompt: string }, string, string> = {
 *   key: () => "gpt",
 *   cost: (input) => ({ tokens: input.prompt.length }),
 *   policy: ErrorPolicy.retry(Schedule.recurs(2))
 * }
 * assert.deepEqual(options.cost?.({ prompt: "hello" }), { tokens: 5 })
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface ServeOptions<in out I, in out A, in out E> {
  /** Each input's key: its rate budgets and its pause after a 429. */
  readonly key?: ((input: I) => string | undefined) | undefined
  /** Each input's cost per budget. */
  readonly cost?: ((input: I) => RateLimit.Cost | undefined) | undefined
  /** Each input's actual cost once an attempt ended. */
  readonly settle?: ((exit: Exit.Exit<A, E>, input: I) => RateLimit.Cost | undefined) | undefined
  /** The task's error policy, instead of the executor's. */
  readonly policy?: ErrorPolicy.ErrorPolicy<E> | undefined
  /** A time limit per attempt. */
  readonly timeout?: Duration.Input | undefined
  /** A deadline per message, from its start on this runner. */
  readonly deadline?: Duration.Input | undefined
}

/**
 * The runner side of a task: a Layer that registers the task's handler with `Sharding`, so that this process
 * runs the messages of the shards it owns, each through the runner's `Executor`.
 *
 * **When to use**
 *
 * In every runner process (`pile worker`, or your own program), once per task it serves, on top of an
 * `Executor.layer` (its concurrency is this runner's) and a cluster layer (`Cluster.layerPostgres`).
 *
 * **Details**
 *
 * - Each message is submitted to the executor with the options computed from its input, and waits for its
 *   outcome: the executor's queue, concurrency cap, rate limits (global with `RateLimitRedis`) and error
 *   policy apply as on one machine. The outcome (its kind, attempts and exit) is the message's stored reply.
 * - When the runner shuts down (its scope closes), the shards' entities stop taking messages and their
 *   running messages are drained, up to the cluster's `entityTerminationTimeout`. A message whose task is
 *   interrupted on the way (the executor closed, or the drain ran out of time) gets no reply: it stays in the
 *   storage and is delivered again to the runner that takes the shard over.
 * - A runner killed outright (`kill -9`) stores nothing more: its unfinished messages are delivered again
 *   in the same way, once its shards move to a live runner.
 *
 * **Gotchas**
 *
 * A message can thus run twice: if it was running when its runner died, or if its reply could not be stored
 * (Postgres unreachable) and it was delivered again. The work must tolerate it (an idempotent request, or a
 * check on the id); every id still gets exactly one stored reply. A task that interrupts itself is treated as stopped by a
 * shutdown too, and is delivered again.
 *
 * **Example**
 *
 * ```ts
 * import { Task } from "@pile/cluster"
 * import { Executor, Pile } from "@pile/executor"
 * import { Effect, Layer, Schema } from "effect"
 * import { TestRunner } from "effect/cluster"
 * import assert from "node:assert/strict"
 *
 * const Square = Task.make("Square", { input: Schema.Number, success: Schema.Number, id: (n) => `n${n}` })
 *
 * const Runner = Task.toLayer(Square, (n) => Effect.succeed(n * n)).pipe(
 *   Layer.provide(Executor.layer({ concurrency: 4 })),
 *   Layer.provideMerge(TestRunner.layer)
 * )
 *
 * const squares = await Effect.runPromise(
 *   Pile.collect(Task.run(Square, [1, 2, 3])).pipe(Effect.provide(Runner))
 * )
 * assert.deepEqual([...squares].sort(), [1, 4, 9])
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const toLayer = <I, A, E, R>(
  self: Task<I, A, E>,
  f: (input: I) => Effect.Effect<A, E, R>,
  options?: ServeOptions<I, A, E> | undefined
): Layer.Layer<never, never, Sharding.Sharding | ExecutorService | R> =>
  self.entity.toLayer(
    Effect.gen(function*() {
      const executor = yield* ExecutorService
      const services = yield* Effect.context<R>()
      const run = (payload: { readonly id: string; readonly input: I }) =>
        Effect.gen(function*() {
          const input = payload.input
          const taskOptions: Executor.TaskOptions<A, E> = {
            key: options?.key?.(input),
            cost: options?.cost?.(input),
            settle: options?.settle === undefined ? undefined : (exit) => options.settle!(exit, input),
            policy: options?.policy,
            timeout: options?.timeout,
            deadline: options?.deadline
          }
          const handle = yield* executor.submit(f(input).pipe(Effect.provideContext(services)), taskOptions).pipe(
            // The executor is closing: this runner is going away, so the message is left for another one. Any
            // other refusal is a defect of the message (an invalid option), stored as its reply.
            Effect.catchIf(
              (error) => error.reason._tag === "Closed",
              () => Effect.interrupt
            ),
            Effect.orDie
          )
          const outcome = yield* handle.outcome.pipe(Effect.onInterrupt(() => handle.cancel))
          if (outcome.kind === "interrupted") return yield* Effect.interrupt
          return { kind: outcome.kind, attempts: outcome.attempts, exit: outcome.exit }
        })
      return {
        Run: (request: { readonly payload: { readonly id: string; readonly input: I } }) => run(request.payload)
      }
    }) as never,
    { concurrency: "unbounded", maxIdleTime: "1 minute" }
  ) as never

/**
 * Options of `Task.run`.
 *
 * **Example**
 *
 * ```ts
 * import type { Task } from "@pile/cluster"
 * import assert from "node:assert/strict"
 *
 * const options: Task.RunOptions = { inFlight: 256 }
 * assert.equal(options.inFlight, 256)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface RunOptions {
  /** How many messages this client has sent and awaits at once. Default 1024. */
  readonly inFlight?: number | undefined
  /** How long to wait between two tries of a send that failed (storage unreachable, mailbox full). Default 1 second. */
  readonly retryEvery?: Duration.Input | undefined
}

/**
 * Runs a batch of inputs on the cluster and returns its Pile: the same `Outcome`s as one machine gives, in
 * completion order, each with its input.
 *
 * **When to use**
 *
 * In the producer: the process that has the inputs and wants the results (`pile run --cluster`). It needs
 * `Sharding` (a runner, or a client-only cluster layer); it runs nothing itself unless it is a runner too.
 *
 * **Details**
 *
 * - Each input becomes a persisted message whose primary key is its id, sent to the entity its id hashes
 *   to; the stream emits the outcome once the reply is stored. At most `inFlight` messages are awaited at
 *   once, so a stream of inputs is read only as fast as the cluster answers.
 * - Resume: running a batch again sends the same messages; the ids that finished come back from their
 *   stored replies at once, without running again, and the others are awaited (or run, if they were never
 *   sent).
 * - A send that fails because the storage is unreachable, or a mailbox is full, is tried again every
 *   `retryEvery`, without limit: work waits while Postgres is down and resumes when it is back.
 * - `Outcome.id` is the input's position in this batch; the task's own id is `Task.id(outcome.input)`.
 *
 * **Gotchas**
 *
 * Interrupting the stream stops waiting, not the work: the messages already sent still run, and their
 * replies are kept for the next run. An outcome `"interrupted"` never comes back: a message stopped by a
 * runner's shutdown is delivered again instead.
 *
 * **Example**
 *
 * ```ts
 * import { Task } from "@pile/cluster"
 * import { Executor, Outcome } from "@pile/executor"
 * import { Effect, Layer, Schema, Stream } from "effect"
 * import { TestRunner } from "effect/cluster"
 * import assert from "node:assert/strict"
 *
 * const Check = Task.make("Check", {
 *   input: Schema.Number,
 *   success: Schema.String,
 *   error: Schema.String,
 *   id: (n) => `check-${n}`
 * })
 *
 * const Runner = Task.toLayer(Check, (n) => n % 2 === 0 ? Effect.succeed(`${n} ok`) : Effect.fail(`${n} odd`)).pipe(
 *   Layer.provide(Executor.layer()),
 *   Layer.provideMerge(TestRunner.layer)
 * )
 *
 * const outcomes = await Effect.runPromise(
 *   Stream.runCollect(Task.run(Check, [1, 2, 3, 4])).pipe(Effect.provide(Runner))
 * )
 * assert.equal(outcomes.length, 4)
 * assert.deepEqual(outcomes.filter(Outcome.isSuccess).map((o) => o.input).sort(), [2, 4])
 * ```
 *
 * @category consumers
 * @since 0.1.0
 */
export const run = <I, A, E, EX = never, RX = never>(
  self: Task<I, A, E>,
  inputs: Iterable<I> | Stream.Stream<I, EX, RX>,
  options?: RunOptions | undefined
): Pile.Pile<A, E, I, EX, RX | Sharding.Sharding> =>
  Stream.unwrap(Effect.gen(function*() {
    const client = (yield* self.entity.client) as unknown as (entityId: string) => {
      readonly Run: (payload: { readonly id: string; readonly input: I }) => Effect.Effect<
        { readonly kind: Outcome.Kind; readonly attempts: number; readonly exit: Exit.Exit<A, E> },
        unknown
      >
    }
    const retry = Schedule.spaced(options?.retryEvery ?? Duration.seconds(1))
    const source = Stream.isStream(inputs) ? inputs : Stream.fromIterable(inputs)
    return source.pipe(
      Stream.zipWithIndex,
      Stream.mapEffect(([input, index]) => {
        const id = self.id(input)
        return client(bucketOf(id, self.entities)).Run({ id, input }).pipe(
          Effect.retry(retry),
          Effect.orDie,
          Effect.map((reply) => toOutcome(index, input, reply))
        )
      }, { concurrency: options?.inFlight ?? 1024, unordered: true })
    )
  }))
