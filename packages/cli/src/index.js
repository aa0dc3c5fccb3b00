/**
 * @pile/cli: `pile`, a command line that runs JSONL batches of HTTP requests under rate limits on
 * `@pile/executor`, and the modules it is made of.
 *
 * @since 0.1.0
 */
/** @since 0.1.0 */
export * as Cli from "./Cli.js";
/** @since 0.1.0 */
export * as Input from "./Input.js";
/** @since 0.1.0 */
export * as MockServer from "./MockServer.js";
/** @since 0.1.0 */
export * as Output from "./Output.js";
/** @since 0.1.0 */
export * as Run from "./Run.js";
