/**
 * The one place where the engine resumes other fibers: wake-ups found during a transition wait here and are
 * delivered once the transition, and every transition enclosing it, has finished.
 *
 * Why: resuming a fiber runs its code at once, on the caller's stack (Effect's `resume` evaluates the fiber
 * synchronously, and so do `runForkWith` and `interruptUnsafe`). A submitter handed a freed place, a fiber
 * waiting for an outcome, a task body that starts: each may at once submit, cancel or shut down. If that
 * happened in the middle of a transition, it would see a task half moved (dequeued but not started, finished
 * but its outcome not yet recorded). So no transition resumes anyone: it posts the wake-up here, and the
 * outermost transition delivers them all when the engine's state is consistent again (docs/architecture.md,
 * "The wake-up rule").
 */

/** A wake-up: a function that resumes a fiber (or starts one), or a value the `Forker` delivers. */
export type Wakeup<T> = T | (() => void)

/** Who delivers the wake-ups that are not functions (the engine: it forks a task's attempt). */
export interface Forker<T> {
  fork(item: T): void
}

/**
 * Told when an outermost transition begins (the histograms' clock). An object with a method, not a closure: every
 * executor has its own, and a call site that saw one closure is deoptimized by the next executor's.
 */
export interface EntryWatcher {
  enter(): void
}

export class Outbox<T extends object> {
  /**
   * The wake-ups posted and not yet delivered: `items[head..tail)`. The array is kept between deliveries (its
   * delivered slots cleared), so a transition that posts one wake-up allocates nothing.
   * Invariant: empty (`head === tail === 0`) whenever `depth === 0 && !delivering`.
   */
  // Stryker disable next-line ArrayDeclaration: the first post writes slot 0 before anything reads the array
  private readonly items: Array<Wakeup<T> | undefined> = []
  private head = 0
  private tail = 0
  /** Transitions in progress on the current stack. */
  private depth = 0
  private delivering = false
  /** Delivers a wake-up that is not a function (the engine's: fork a task's attempt). */
  private readonly forker: Forker<T>
  /** Told when an outermost transition begins (not one nested in another, or in a delivery). */
  private readonly watcher: EntryWatcher

  constructor(forker: Forker<T>, watcher: EntryWatcher) {
    this.forker = forker
    this.watcher = watcher
  }

  /** A transition begins: wake-ups it posts wait until it ends. */
  begin(): void {
    if (this.depth++ === 0 && !this.delivering) this.watcher.enter()
  }

  /** A transition ends; the outermost one delivers what was posted. */
  end(): void {
    // Stryker disable next-line ConditionalExpression,EqualityOperator: delivering nothing does nothing
    if (--this.depth === 0 && this.tail > 0) this.deliver()
  }

  /** Runs `transition` between `begin` and `end` (for entry points off the hot path: it takes a closure). */
  transition(transition: () => void): void {
    this.begin()
    transition()
    this.end()
  }

  /** Posts a wake-up, delivered after the current transition (at once when none is in progress). */
  post(item: Wakeup<T>): void {
    this.items[this.tail++] = item
    if (this.depth === 0) this.deliver()
  }

  /**
   * Delivers in the order posted. A delivered wake-up may run user code that enters the engine again: that
   * transition's wake-ups join the end of this same loop (never a nested one), so delivery stays in order.
   */
  private deliver(): void {
    if (this.delivering) return
    this.delivering = true
    const items = this.items
    while (this.head < this.tail) {
      const item = items[this.head]!
      items[this.head++] = undefined
      if (typeof item === "function") item()
      else this.forker.fork(item)
    }
    this.head = 0
    this.tail = 0
    // A long delivery (a burst of wake-ups) may have grown the array: it is not kept beyond a few thousand.
    // Stryker disable next-line ConditionalExpression,EqualityOperator: a lower threshold only reallocates the array more often
    if (items.length > 4096) items.length = 0
    this.delivering = false
  }
}
