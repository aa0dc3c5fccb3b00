/**
 * Observation for people: `stats`, a plain snapshot of the engine's counters and of each step's sizes, and
 * `progress`, snapshots at an interval with the rates between them. Reads only; it changes nothing.
 */
import * as Stream from "effect/Stream"
import type { Progress, Stats } from "../Executor.ts"
import type * as Outcome from "../Outcome.ts"
import type { Engine } from "./engine.ts"

/** A snapshot of `engine`; `restarts` counts the services' restarts (the supervisor's count). */
export const snapshot = (engine: Engine, restarts: number): Stats => {
  const c = engine.counts
  let finished = 0
  for (const kind in c.finished) finished += c.finished[kind as Outcome.Kind]
  return {
    phase: engine.phase,
    submitted: c.accepted + engine.intake.rejected,
    accepted: c.accepted,
    rejected: engine.intake.rejected,
    queued: engine.intake.size,
    waiting: engine.admission.waiting,
    retrying: engine.admission.retrying,
    running: engine.runningCount,
    finished,
    outcomes: { ...c.finished },
    blockedSubmitters: engine.intake.blocked,
    peakQueued: engine.intake.peakQueued,
    capacity: engine.intake.capacity,
    concurrency: engine.concurrency,
    pileBuffered: engine.sinks.pile?.size ?? 0,
    abandoned: c.abandoned,
    retries: engine.attempts.retries,
    pauses: engine.admission.pauses,
    services: { running: engine.fibers.serviceCount, restarts }
  }
}

/** What `progress` remembers between two ticks: the first snapshot and the last one. */
interface Seen {
  readonly first: Progress
  readonly previous: Progress
}

/**
 * A snapshot every `millis` ms, with the time since the first one and the throughput since the last one,
 * until the executor is closed (the last snapshot says "closed").
 */
export const progress = (engine: Engine, stats: () => Stats, millis: number): Stream.Stream<Progress> =>
  Stream.tick(millis).pipe(
    Stream.mapAccum(
      (): Seen | undefined => undefined,
      (seen): readonly [Seen, ReadonlyArray<Progress>] => {
        const current = stats()
        const at = engine.clock.currentTimeMillisUnsafe()
        const seconds = seen === undefined ? 0 : (at - seen.previous.at) / 1000
        const next: Progress = {
          ...current,
          at,
          elapsed: seen === undefined ? 0 : at - seen.first.at,
          throughput: seen === undefined || seconds <= 0 ? 0 : (current.finished - seen.previous.finished) / seconds
        }
        return [{ first: seen?.first ?? next, previous: next }, [next]]
      }
    ),
    Stream.takeUntil((progress) => progress.phase === "closed")
  )
