/**
 * The practical floor: the smallest promise pool that still does the job.
 *
 * - `runAll` is the batch form: `concurrency` worker loops pull the next index from a shared counter, so a task
 *   costs one call of `f`, one `await` and one counter update (no wrapper promise, no queue entry).
 * - `add` is the queued form (for the memory scenario): a task waits in an array as its function plus the
 *   resolve/reject pair of the promise `add` returns, which is the least a promise API can keep per task.
 */

export interface Settled {
  outcomes: number
  failures: number
}

/** Runs `f` on 0..n-1, at most `concurrency` at once; counts every settled task. */
export const runAll = async (
  n: number,
  concurrency: number,
  f: (i: number) => Promise<unknown>
): Promise<Settled> => {
  const settled: Settled = { outcomes: 0, failures: 0 }
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++
      try {
        await f(i)
      } catch {
        settled.failures++
      }
      settled.outcomes++
    }
  }
  const workers: Array<Promise<void>> = []
  for (let w = 0; w < Math.min(concurrency, n); w++) workers.push(worker())
  await Promise.all(workers)
  return settled
}

interface Entry {
  readonly fn: () => Promise<unknown>
  readonly resolve: (value: unknown) => void
  readonly reject: (error: unknown) => void
}

/** A queued pool: `add` returns the task's promise; tasks start in order, at most `concurrency` at once. */
export class Pool {
  private readonly queue: Array<Entry | undefined> = []
  private head = 0
  private active = 0
  private readonly concurrency: number

  constructor(concurrency: number) {
    this.concurrency = concurrency
  }

  get size(): number {
    return this.queue.length - this.head
  }

  add(fn: () => Promise<unknown>): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.queue.push({ fn, resolve, reject })
      this.drain()
    })
  }

  private drain(): void {
    while (this.active < this.concurrency && this.head < this.queue.length) {
      const entry = this.queue[this.head]!
      this.queue[this.head++] = undefined
      this.active++
      entry.fn().then(
        (value) => this.done(entry.resolve, value),
        (error) => this.done(entry.reject, error)
      )
    }
  }

  private done(settle: (value: unknown) => void, value: unknown): void {
    this.active--
    settle(value)
    this.drain()
  }
}
