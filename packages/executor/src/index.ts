/**
 * @pile/executor: a bounded, rate-limited, failure-containing executor for Effect 4.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Executor from "./Executor.ts"
/** @since 0.1.0 */
export * as ExecutorError from "./ExecutorError.ts"
/** @since 0.1.0 */
export * as Outcome from "./Outcome.ts"
/** @since 0.1.0 */
export * as Pile from "./Pile.ts"
