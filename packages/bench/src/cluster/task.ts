// The tasks of the cluster benchmark: an input number; the reply names the runner that ran it.
import { Task } from "@pile/cluster"
import { Schema } from "effect"

export const Bench = Task.make("pile-bench", { input: Schema.Number, success: Schema.String, id: (n) => `b${n}` })

/** The same task with (in effect) one entity per message: what the default bounded set of 64 is measured against. */
export const BenchWide = Task.make("pile-bench-wide", {
  input: Schema.Number,
  success: Schema.String,
  id: (n) => `b${n}`,
  entities: 1_000_000
})
