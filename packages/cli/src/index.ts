/**
 * @pile/cli: `pile`, a command line that runs JSONL batches of HTTP requests under rate limits on
 * `@pile/executor`, and the modules it is made of.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Cli from "./Cli.ts"
/** @since 0.1.0 */
export * as Input from "./Input.ts"
/** @since 0.1.0 */
export * as MockServer from "./MockServer.ts"
/** @since 0.1.0 */
export * as Output from "./Output.ts"
/** @since 0.1.0 */
export * as Run from "./Run.ts"
