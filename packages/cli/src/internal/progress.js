/**
 * Progress on stderr: a live bar redrawn in place on a terminal, plain periodic lines otherwise, nothing in
 * quiet mode. Messages (warnings, the drain notice) go through `log`, which keeps them above the bar.
 */
import { formatDuration } from "./flags.js";
const fmt = (n) => n.toLocaleString("en-US");
export class Reporter {
    mode;
    out;
    drawn = false;
    samples = [];
    constructor(mode, out = process.stderr) {
        this.mode = mode;
        this.out = out;
    }
    /** Starts the rate measurement at the run's start. */
    start(now) {
        this.samples = [{ at: now, done: 0 }];
    }
    /** A message line; shown in every mode but "none" for notices, always for warnings. */
    log(message, options) {
        if (this.mode === "none" && options?.always !== true)
            return;
        this.clear();
        this.out.write(message + "\n");
    }
    /** Requests per second over the last ten seconds (or since the first sample). */
    rate(snapshot) {
        this.samples.push({ at: snapshot.now, done: snapshot.done });
        while (this.samples.length > 2 && snapshot.now - this.samples[1].at >= 10_000)
            this.samples.shift();
        const first = this.samples[0];
        const span = snapshot.now - first.at;
        return span >= 500 ? ((snapshot.done - first.done) * 1000) / span : undefined;
    }
    update(snapshot) {
        if (this.mode === "none")
            return;
        const rate = this.rate(snapshot);
        const { total, done } = snapshot;
        const left = total === undefined ? undefined : Math.max(0, total - done);
        const eta = left === undefined || rate === undefined || rate <= 0 ? undefined : (left / rate) * 1000;
        const parts = [
            `ok ${fmt(snapshot.ok)}`,
            `failed ${fmt(snapshot.failed)}`,
            rate === undefined ? "-/s" : `${rate.toFixed(1)}/s`,
            `in flight ${snapshot.running}`,
            `waiting ${snapshot.waiting}`,
            `429s ${fmt(snapshot.rateLimited)}`,
            `retries ${fmt(snapshot.retries)}`
        ];
        if (left === 0)
            parts.push("finishing");
        else if (eta !== undefined)
            parts.push(`ETA ${formatDuration(eta)}`);
        if (this.mode === "lines") {
            const count = total === undefined ? `${fmt(done)} done` : `${fmt(done)}/${fmt(total)} done`;
            this.out.write(`pile: ${count}: ${parts.join(", ")}\n`);
            return;
        }
        let head;
        if (total === undefined || total === 0) {
            head = `${fmt(done)} done`;
        }
        else {
            const fraction = Math.min(1, done / total);
            const width = 20;
            const full = Math.round(fraction * width);
            head = `${String(Math.floor(fraction * 100)).padStart(3)}% ${"█".repeat(full)}${"░".repeat(width - full)} ${fmt(done)}/${fmt(total)}`;
        }
        const columns = this.out.columns ?? 100;
        let line = [head, ...parts].join(" │ ");
        if (line.length > columns - 1)
            line = line.slice(0, Math.max(0, columns - 2)) + "…";
        this.out.write(`\r\x1b[2K${line}`);
        this.drawn = true;
    }
    /** Removes the bar (before the summary, or before a message). */
    clear() {
        if (!this.drawn)
            return;
        this.out.write("\r\x1b[2K");
        this.drawn = false;
    }
}
