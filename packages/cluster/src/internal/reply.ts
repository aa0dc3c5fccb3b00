// The two ends of a message: which entity instance an id goes to, and the Outcome a stored reply becomes.
import type { Outcome } from "@pile/executor"
import type { Exit } from "effect"

/**
 * The entity instance an id belongs to: FNV-1a of the id, modulo the task's number of entities. Stable across
 * processes and versions, since stored replies are found by it.
 */
export const bucketOf = (id: string, entities: number): string => {
  let hash = 0x811c9dc5
  for (let i = 0; i < id.length; i++) {
    hash ^= id.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return String(hash % entities)
}

/** What a runner stores as a message's reply: how its task ended. */
export interface Reply<A, E> {
  readonly kind: Outcome.Kind
  readonly attempts: number
  readonly exit: Exit.Exit<A, E>
}

/** The Outcome of the `index`-th input of a batch, from its message's reply. */
export const toOutcome = <A, E, I>(index: number, input: I, reply: Reply<A, E>): Outcome.Outcome<A, E, I> => ({
  id: index,
  input,
  kind: reply.kind,
  exit: reply.exit,
  attempts: reply.attempts
})
