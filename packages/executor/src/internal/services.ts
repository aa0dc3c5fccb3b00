/**
 * The service supervisor behind `Executor.start`: a long-lived fiber owned by the executor (like a task's
 * attempt, docs/decisions/0002), started once it says it is ready, restarted on a schedule when it fails
 * afterwards, escalated when the schedule is exhausted, and stopped last at shutdown.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import type { ServiceHandle, ServiceOptions } from "../Executor.ts"
import * as ExecutorError from "../ExecutorError.ts"
import type { Engine } from "./engine.ts"

const notReady = (service: string) =>
  new ExecutorError.ExecutorError({ reason: new ExecutorError.ServiceNotReady({ service }) })

export class Services {
  /** Restarts of every service so far (`stats.services.restarts`). Written by the supervisors only. */
  private restartCount = 0
  private readonly engine: Engine

  constructor(engine: Engine) {
    this.engine = engine
  }

  get restarts(): number {
    return this.restartCount
  }

  /** Starts `service` and waits until it is ready (see `Executor.start`). */
  start<V, E1, R>(
    service: (ready: (value: V) => Effect.Effect<void>) => Effect.Effect<unknown, E1, R>,
    options: ServiceOptions | undefined
  ): Effect.Effect<ServiceHandle<V>, E1 | ExecutorError.ExecutorError, R> {
    const engine = this.engine
    return Effect.gen({ self: this }, function*() {
      if (!engine.isAccepting) return yield* Effect.fail(engine.closedError())
      const name = options?.name ?? `service-${engine.fibers.serviceCount + 1}`
      const ready = Deferred.makeUnsafe<V, E1 | ExecutorError.ExecutorError>()
      let isReady = false
      const signal = (value: V) =>
        Effect.sync(() => {
          if (isReady) return
          isReady = true
          Deferred.doneUnsafe(ready, Exit.succeed(value))
        })
      let runs = 0
      let failure: Cause.Cause<unknown> = Cause.empty
      // One run of the service. It ends the supervisor (succeeding with how) when it ends before it was ready,
      // or succeeds after; it fails, with the squashed cause as the schedule's input, when it may restart.
      const once = Effect.flatMap(
        Effect.exit(Effect.suspend(() => {
          if (runs++ > 0) this.restartCount++
          return service(signal)
        })),
        (exit): Effect.Effect<Exit.Exit<void, unknown>, unknown, never> => {
          if (!isReady) return Effect.succeed(exit._tag === "Success" ? Exit.fail(notReady(name)) : exit)
          if (exit._tag === "Success") return Effect.succeed(Exit.void)
          failure = exit.cause
          return Effect.fail(Cause.squash(exit.cause))
        }
      )
      // A failure after readiness with no restart left is escalated.
      const exhausted = Effect.sync(() => {
        engine.escalate(name, failure)
        return Exit.void
      })
      const supervised = Effect.flatten(
        options?.restart === undefined
          ? Effect.catch(once, () => exhausted)
          : Effect.retryOrElse(once, options.restart, () => exhausted)
      )
      // Owned by the engine, like task fibers: shutdown stops it, bounded by finalizerTimeout.
      const fiber = yield* Effect.forkDetach(supervised, { startImmediately: true })
      engine.fibers.addService(fiber)
      fiber.addObserver((exit) => {
        if (!isReady) {
          Deferred.doneUnsafe(
            ready,
            exit._tag === "Success"
              ? Exit.fail(notReady(name))
              // Stopped by the executor's shutdown before it was ready: the caller is told so (I17), and does
              // not look interrupted itself.
              : Cause.hasInterruptsOnly(exit.cause) && !engine.isAccepting
              ? Exit.fail(engine.closedError())
              : Exit.failCause(exit.cause as Cause.Cause<E1 | ExecutorError.ExecutorError>)
          )
        }
      })
      const value = yield* Deferred.await(ready).pipe(Effect.onInterrupt(() => Fiber.interrupt(fiber)))
      return { name, value, stop: Effect.asVoid(Fiber.interrupt(fiber)) }
    })
  }
}
