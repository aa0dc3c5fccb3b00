/**
 * `--tokenizer`: a real tokenizer for the token estimate, loaded on demand from the optional package
 * `gpt-tokenizer` (`o200k`: GPT-4o and later; `cl100k`: GPT-4 and GPT-3.5), or `estimate`, the default rule of
 * thumb (4 characters per token), which needs nothing.
 */
import * as Effect from "effect/Effect"
import type * as Input from "../Input.ts"

export const names = ["estimate", "o200k", "cl100k"] as const
export type Name = (typeof names)[number]

const modules = {
  o200k: () => import("gpt-tokenizer/encoding/o200k_base"),
  cl100k: () => import("gpt-tokenizer/encoding/cl100k_base")
} as const

/** The counter of `name` (undefined for `estimate`), or why it cannot be loaded. */
export const load = (name: Name): Effect.Effect<Input.CountTokens | undefined, string> =>
  name === "estimate"
    ? Effect.succeed(undefined)
    : Effect.tryPromise({
      try: () => modules[name](),
      catch: () =>
        `--tokenizer ${name} needs the optional package gpt-tokenizer, which is not installed ` +
        `(npm install gpt-tokenizer), or use --tokenizer estimate`
    }).pipe(
      Effect.map((tokenizer): Input.CountTokens => (text) => {
        // Text that spells a special token (<|endoftext|>...) is counted as plain text by the estimate.
        try {
          return tokenizer.countTokens(text)
        } catch {
          return Math.ceil(text.length / 4)
        }
      })
    )
