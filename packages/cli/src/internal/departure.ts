/**
 * Rate-limit admissions anchored at the moment each request really left: when undici wrote its headers to
 * the socket, not when its task started. The first requests of a run (and any request that has to open a
 * connection) leave later than their admission; anchored at their start, the requests admitted a window
 * later would reach the server less than a window after them. Anchored at their departure, they cannot.
 *
 * It works on the in-memory store only: the executor anchors each admission at the start of the task's
 * fiber (`memory.anchor`); this remembers which fiber holds which reservation, hands it to the attempt's
 * send effect (a reference its child fibers inherit), follows it to the undici request created there
 * (`undici:request:create`, published synchronously inside that fiber), and anchors again when that
 * request's headers are written (`undici:client:sendHeaders`). Anchoring only ever moves an admission
 * later, so the limit's bound holds on the departures.
 */
import type * as RateLimit from "@pile/executor/RateLimit"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type * as Scope from "effect/Scope"
import * as DiagnosticsChannel from "node:diagnostics_channel"

type Memory = NonNullable<RateLimit.RateLimitStore["memory"]>

/** The reservation of the attempt running in this fiber and its children, until its request takes it. */
const Slot = Context.Reference<{ reservation: RateLimit.Reservation | undefined } | undefined>(
  "@pile/cli/Departure/Slot",
  { defaultValue: () => undefined }
)

/** Wraps an attempt's effect (run it first thing in the attempt's fiber) so that its request anchors it. */
export type Anchored = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

/** Installs the departure anchoring on `memory` for the current scope. */
export const anchorAtDeparture = (memory: Memory): Effect.Effect<Anchored, never, Scope.Scope> =>
  Effect.gen(function*() {
    const clock = yield* Clock.Clock
    // The executor's clock, as its engine reads it (fractions of a millisecond).
    const now = () => Number(clock.currentTimeNanosUnsafe()) / 1e6
    const original = memory.anchor
    const anchor = original.bind(memory)
    // Written when an attempt's fiber starts; taken by the first request that fiber creates.
    const byFiber = new WeakMap<object, RateLimit.Reservation>()
    const byRequest = new WeakMap<object, RateLimit.Reservation>()
    const onCreate = (message: unknown) => {
      const slot = Fiber.getCurrent()?.getRef(Slot)
      const reservation = slot?.reservation
      if (slot === undefined || reservation === undefined) return
      slot.reservation = undefined // a redirect's next request was not admitted: it does not move the admission
      byRequest.set((message as { readonly request: object }).request, reservation)
    }
    const onSendHeaders = (message: unknown) => {
      const request = (message as { readonly request: object }).request
      const reservation = byRequest.get(request)
      if (reservation === undefined) return
      byRequest.delete(request)
      anchor(reservation, now())
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        memory.anchor = (reservation, at) => {
          anchor(reservation, at)
          const fiber = Fiber.getCurrent()
          if (fiber !== undefined) byFiber.set(fiber, reservation)
        }
        DiagnosticsChannel.subscribe("undici:request:create", onCreate)
        DiagnosticsChannel.subscribe("undici:client:sendHeaders", onSendHeaders)
      }),
      () =>
        Effect.sync(() => {
          DiagnosticsChannel.unsubscribe("undici:request:create", onCreate)
          DiagnosticsChannel.unsubscribe("undici:client:sendHeaders", onSendHeaders)
          memory.anchor = original
        })
    )
    const anchored: Anchored = (effect) =>
      Effect.suspend(() => {
        const fiber = Fiber.getCurrent()
        const reservation = fiber === undefined ? undefined : byFiber.get(fiber)
        if (fiber === undefined || reservation === undefined) return effect
        byFiber.delete(fiber)
        return Effect.provideService(effect, Slot, { reservation })
      })
    return anchored
  })
