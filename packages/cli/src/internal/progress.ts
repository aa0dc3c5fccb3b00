/**
 * Progress on stderr: a live bar redrawn in place on a terminal, plain periodic lines otherwise, nothing in
 * quiet mode. Messages (warnings, the drain notice) go through `log`, which keeps them above the bar. It also
 * says why a host is waiting: held for the wait a server asked for (`hold`), or slowed after 429s.
 */
import { formatDuration } from "./flags.ts"

export type Mode = "bar" | "lines" | "none"

/** What the progress shows; `done` counts every line this run has settled (records written, duplicates). */
export interface Snapshot {
  readonly total: number | undefined
  readonly done: number
  readonly ok: number
  readonly failed: number
  readonly running: number
  readonly waiting: number
  readonly rateLimited: number
  readonly retries: number
  /** Hosts whose adaptive rate is below the configured limit, with the share in force. */
  readonly slowed: ReadonlyArray<{ readonly host: string; readonly factor: number }>
  readonly now: number
}

interface Sample {
  readonly at: number
  readonly done: number
}

const fmt = (n: number): string => n.toLocaleString("en-US")

export class Reporter {
  readonly mode: Mode
  private readonly out: NodeJS.WriteStream
  private drawn = false
  private samples: Array<Sample> = []
  /** Hosts held by a server's wait: until when, and why. */
  private readonly holds = new Map<string, { readonly until: number; readonly reason: string }>()

  constructor(mode: Mode, out: NodeJS.WriteStream = process.stderr) {
    this.mode = mode
    this.out = out
  }

  /** Starts the rate measurement at the run's start. */
  start(now: number): void {
    this.samples = [{ at: now, done: 0 }]
  }

  /** A message line; shown in every mode but "none" for notices, always for warnings. */
  log(message: string, options?: { readonly always?: boolean }): void {
    if (this.mode === "none" && options?.always !== true) return
    this.clear()
    this.out.write(message + "\n")
  }

  /** A server asked `host` to wait until `until` (ms): progress says so while it lasts. */
  hold(host: string, until: number, reason: string): void {
    const current = this.holds.get(host)
    if (current === undefined || until > current.until) this.holds.set(host, { until, reason })
  }

  /** Why hosts are waiting, at `now`: at most two named, then how many more. */
  private why(snapshot: Snapshot): Array<string> {
    const reasons: Array<string> = []
    for (const [host, hold] of this.holds) {
      if (hold.until <= snapshot.now) this.holds.delete(host)
      else reasons.push(`${host} waits ${formatDuration(hold.until - snapshot.now)}: ${hold.reason}`)
    }
    for (const { factor, host } of snapshot.slowed) {
      reasons.push(`${host} slowed to ${Math.round(factor * 100)}% after 429s`)
    }
    return reasons.length <= 2 ? reasons : [...reasons.slice(0, 2), `${reasons.length - 2} more host(s) waiting`]
  }

  /** Requests per second over the last ten seconds (or since the first sample). */
  private rate(snapshot: Snapshot): number | undefined {
    this.samples.push({ at: snapshot.now, done: snapshot.done })
    while (this.samples.length > 2 && snapshot.now - this.samples[1]!.at >= 10_000) this.samples.shift()
    const first = this.samples[0]!
    const span = snapshot.now - first.at
    return span >= 500 ? ((snapshot.done - first.done) * 1000) / span : undefined
  }

  update(snapshot: Snapshot): void {
    if (this.mode === "none") return
    const rate = this.rate(snapshot)
    const { total, done } = snapshot
    const left = total === undefined ? undefined : Math.max(0, total - done)
    const eta = left === undefined || rate === undefined || rate <= 0 ? undefined : (left / rate) * 1000
    const parts = [
      `ok ${fmt(snapshot.ok)}`,
      `failed ${fmt(snapshot.failed)}`,
      rate === undefined ? "-/s" : `${rate.toFixed(1)}/s`,
      `in flight ${snapshot.running}`,
      `waiting ${snapshot.waiting}`,
      `429s ${fmt(snapshot.rateLimited)}`,
      `retries ${fmt(snapshot.retries)}`
    ]
    if (left === 0) parts.push("finishing")
    else if (eta !== undefined) parts.push(`ETA ${formatDuration(eta)}`)
    parts.push(...this.why(snapshot))
    if (this.mode === "lines") {
      const count = total === undefined ? `${fmt(done)} done` : `${fmt(done)}/${fmt(total)} done`
      this.out.write(`pile: ${count}: ${parts.join(", ")}\n`)
      return
    }
    let head: string
    if (total === undefined || total === 0) {
      head = `${fmt(done)} done`
    } else {
      const fraction = Math.min(1, done / total)
      const width = 20
      const full = Math.round(fraction * width)
      head = `${String(Math.floor(fraction * 100)).padStart(3)}% ${"█".repeat(full)}${"░".repeat(width - full)} ${
        fmt(done)
      }/${fmt(total)}`
    }
    const columns = this.out.columns ?? 100
    let line = [head, ...parts].join(" │ ")
    if (line.length > columns - 1) line = line.slice(0, Math.max(0, columns - 2)) + "…"
    this.out.write(`\r\x1b[2K${line}`)
    this.drawn = true
  }

  /** Removes the bar (before the summary, or before a message). */
  clear(): void {
    if (!this.drawn) return
    this.out.write("\r\x1b[2K")
    this.drawn = false
  }
}
