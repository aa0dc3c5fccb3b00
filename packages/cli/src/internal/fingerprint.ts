/**
 * The input's fingerprint, kept beside the output (`<out>.pile.json`), so that `--resume` with another input
 * (or another `--shard`) is refused instead of mixing two batches in one output.
 *
 * The fingerprint is the SHA-256 of the input's first bytes (up to 1 MiB): an input that grew at its end
 * (lines appended) still matches; another file does not.
 */
import * as Effect from "effect/Effect"
import type * as FileSystem from "effect/FileSystem"
import type * as PlatformError from "effect/PlatformError"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"

/** What the sidecar file holds. */
export interface Fingerprint {
  readonly version: 1
  /** The input's path as given (only for the message), or "-" for standard input. */
  readonly input: string
  /** How many bytes from the start were hashed, and their SHA-256 (hex); undefined for standard input. */
  readonly bytes: number | undefined
  readonly sha256: string | undefined
  /** The shard, as `i/n`, or undefined. */
  readonly shard: string | undefined
}

const prefixBytes = 1024 * 1024

export const sidecarOf = (output: string): string => `${output}.pile.json`

/** SHA-256 of the first `bytes` bytes of `path`, and how many there were. */
const hashPrefix = (fs: FileSystem.FileSystem, path: string, bytes: number) =>
  Effect.suspend(() => {
    const hash = createHash("sha256")
    let read = 0
    return fs.stream(path, { bytesToRead: bytes, chunkSize: 64 * 1024 }).pipe(
      Stream.runForEach((chunk) =>
        Effect.sync(() => {
          hash.update(chunk)
          read += chunk.length
        })
      ),
      Effect.map(() => ({ bytes: read, sha256: hash.digest("hex") }))
    )
  })

/** The fingerprint of this run's input and shard. */
export const make = (
  fs: FileSystem.FileSystem,
  input: string,
  shard: { readonly index: number; readonly count: number } | undefined
): Effect.Effect<Fingerprint, PlatformError.PlatformError> => {
  const shardText = shard === undefined ? undefined : `${shard.index}/${shard.count}`
  if (input === "-") {
    return Effect.succeed({ version: 1, input, bytes: undefined, sha256: undefined, shard: shardText })
  }
  return Effect.map(
    hashPrefix(fs, input, prefixBytes),
    ({ bytes, sha256 }) => ({ version: 1, input, bytes, sha256, shard: shardText })
  )
}

/** Reads a sidecar; undefined when there is none or it is not one (then nothing is checked). */
export const read = (fs: FileSystem.FileSystem, output: string): Effect.Effect<Fingerprint | undefined> =>
  fs.readFileString(sidecarOf(output)).pipe(
    Effect.flatMap((text) => Effect.try(() => JSON.parse(text) as Partial<Fingerprint> | null)),
    Effect.map((value) => value?.version === 1 ? value as Fingerprint : undefined),
    Effect.orElseSucceed(() => undefined)
  )

export const write = (
  fs: FileSystem.FileSystem,
  output: string,
  fingerprint: Fingerprint
): Effect.Effect<void, PlatformError.PlatformError> =>
  fs.writeFileString(sidecarOf(output), JSON.stringify(fingerprint) + "\n")

/**
 * Why `resume` must not continue from `before` with this run's input, or undefined when it may: the shard
 * differs, or the input's first bytes (as many as were hashed before) differ.
 */
export const mismatch = (
  fs: FileSystem.FileSystem,
  before: Fingerprint,
  now: Fingerprint
): Effect.Effect<string | undefined, PlatformError.PlatformError> => {
  if (before.shard !== now.shard) {
    return Effect.succeed(
      `it was started with ${before.shard === undefined ? "no --shard" : `--shard ${before.shard}`}, not ${
        now.shard === undefined ? "without --shard" : `--shard ${now.shard}`
      }`
    )
  }
  if (before.sha256 === undefined || before.bytes === undefined || now.input === "-") return Effect.succeed(undefined)
  if (now.sha256 === undefined || now.bytes === undefined) return Effect.succeed(undefined)
  const same = (sha256: string) =>
    sha256 === before.sha256
      ? undefined
      : `it was started with another input (${before.input}): the first ${before.bytes} bytes differ`
  if (now.bytes === before.bytes) return Effect.succeed(same(now.sha256))
  if (now.bytes < before.bytes) {
    return Effect.succeed(`it was started with another input (${before.input}): this one is shorter`)
  }
  return Effect.map(hashPrefix(fs, now.input, before.bytes), (prefix) => same(prefix.sha256))
}
