// The task of the cluster benchmark: an input number; the reply names the runner that ran it.
import { Task } from "@pile/cluster"
import { Schema } from "effect"

export const Bench = Task.make("pile-bench", { input: Schema.Number, success: Schema.String, id: (n) => `b${n}` })
