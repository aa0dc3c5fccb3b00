/**
 * Rate-limit admissions anchored at the moment each request really left: when undici wrote its headers to
 * the socket, not when its task was admitted or started. Between the two lie the task's start, the HTTP
 * client's work and, for the first requests of a run (and any request that has to open a connection), a
 * connection: delays that vary with the load of the machine. Anchored at their admission, requests admitted a
 * window apart could reach the server less than a window apart; anchored at their departure, they cannot.
 *
 * It works on every store with `anchor` (the in-memory store and the Redis store), for `pile run` and `pile
 * worker` alike: the executor gives each attempt's fiber its reservation (`RateLimit.CurrentReservation`,
 * inherited by the HTTP client's child fibers); the first undici request created in that fiber
 * (`undici:request:create`, published synchronously there) takes it, and when that request's headers are
 * written (`undici:client:sendHeaders`) the store moves the admission to that moment. Anchoring only moves an
 * admission later, so the limit's bound holds on the departures (docs/decisions/0007).
 */
import * as RateLimit from "@pile/executor/RateLimit"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import type * as Scope from "effect/Scope"
import * as DiagnosticsChannel from "node:diagnostics_channel"

/** Anchors the admissions of `store` at the departures of their requests, for the current scope. */
export const anchorAtDeparture = (store: RateLimit.RateLimitStore): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const anchor = store.anchor
    if (anchor === undefined) return
    const clock = yield* Clock.Clock
    // The executor's clock, as its engine reads it (fractions of a millisecond).
    const now = () => Number(clock.currentTimeNanosUnsafe()) / 1e6
    // An asynchronous store (Redis) anchors in a fiber of this scope: the request does not wait for it. A
    // failed anchor leaves the admission where it was, and the bound holds on that.
    const run = yield* FiberSet.makeRuntime<never, void, never>()
    // Reservations a request has taken: a redirect's next request was not admitted, it does not move them.
    const taken = new WeakSet<RateLimit.Reservation>()
    const byRequest = new WeakMap<object, RateLimit.Reservation>()
    const onCreate = (message: unknown) => {
      const reservation = Fiber.getCurrent()?.getRef(RateLimit.CurrentReservation)
      if (reservation === undefined || taken.has(reservation)) return
      taken.add(reservation)
      byRequest.set((message as { readonly request: object }).request, reservation)
    }
    const onSendHeaders = (message: unknown) => {
      const request = (message as { readonly request: object }).request
      const reservation = byRequest.get(request)
      if (reservation === undefined) return
      byRequest.delete(request)
      // undici publishes this message, then writes the headers to the socket in the same synchronous step: read
      // the clock once that step is over, so that the anchor is never earlier than the request's departure (a
      // process descheduled between the two only makes it later).
      queueMicrotask(() => {
        const at = now()
        // The in-memory store at once; another store through its effect.
        if (store.memory !== undefined) store.memory.anchor(reservation, at)
        else run(Effect.ignore(anchor(reservation, at)))
      })
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        DiagnosticsChannel.subscribe("undici:request:create", onCreate)
        DiagnosticsChannel.subscribe("undici:client:sendHeaders", onSendHeaders)
      }),
      () =>
        Effect.sync(() => {
          DiagnosticsChannel.unsubscribe("undici:request:create", onCreate)
          DiagnosticsChannel.unsubscribe("undici:client:sendHeaders", onSendHeaders)
        })
    )
  })
