/**
 * The output of `pile run`: one JSON record per finished request, one per line, in completion order, and
 * the scan that `--resume` uses to find which ids are already done.
 *
 * A record is written only when its request is finished for good: it succeeded, or it failed in a way that
 * retrying will not fix (a 4xx other than 429, retries exhausted, an invalid input line). A request
 * interrupted by Ctrl-C gets no record, so a resumed run sends it again.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect";
import * as Stream from "effect/Stream";
/**
 * A record as one line of the output file, newline included.
 *
 * **When to use**
 *
 * To write records in the exact format `pile run` writes and `scan` reads.
 *
 * **Details**
 *
 * Fields that are `undefined` are left out.
 *
 * **Gotchas**
 *
 * None.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import { Output } from "@pile/cli"
 *
 * assert.equal(
 *   Output.encode({ id: 1, line: 1, ok: true, status: 204, attempts: 1, latencyMs: 12 }),
 *   `{"id":1,"line":1,"ok":true,"status":204,"attempts":1,"latencyMs":12}\n`
 * )
 * ```
 *
 * @category encoding
 * @since 0.1.0
 */
export const encode = (record) => JSON.stringify(record) + "\n";
const isRecordLike = (u) => typeof u === "object" && u !== null && !Array.isArray(u) &&
    (typeof u.id === "string" || (typeof u.id === "number" && Number.isFinite(u.id))) &&
    typeof u.ok === "boolean";
const parseRecord = (text) => {
    try {
        const value = JSON.parse(text);
        return isRecordLike(value) ? value : undefined;
    }
    catch {
        return undefined;
    }
};
/**
 * Reads an output file (as a byte stream) and returns which ids are done, tolerating a torn last line.
 *
 * **When to use**
 *
 * Before resuming a run: `pile run --resume` scans `--out` first.
 *
 * **Details**
 *
 * Reads the file as a stream, line by line; memory grows with the number of ids, not with the file size.
 * A crash (even `kill -9`) can leave at most one incomplete record at the end of the file: the scan reports
 * it as a `"torn"` tail instead of failing.
 *
 * **Gotchas**
 *
 * The scan does not change the file: the caller truncates it to `validBytes` (or adds the missing line
 * break) before appending.
 *
 * **Example**
 *
 * ```ts
 * import assert from "node:assert/strict"
 * import { Effect, Stream } from "effect"
 * import { Output } from "@pile/cli"
 *
 * const first = `{"id":1,"line":1,"ok":true,"status":200,"attempts":1,"latencyMs":5}\n`
 * const file = first + `{"id":2,"li` // a crash cut the second record short
 * const scan = await Effect.runPromise(Output.scan(Stream.make(new TextEncoder().encode(file))))
 * assert.deepEqual([...scan.done], ["1"])
 * assert.equal(scan.tail, "torn")
 * assert.equal(scan.validBytes, first.length)
 * ```
 *
 * @category resume
 * @since 0.1.0
 */
export const scan = (bytes) => Effect.suspend(() => {
    const done = new Set();
    let ok = 0;
    let failed = 0;
    let corrupt = 0;
    let offset = 0;
    let validBytes = 0;
    let pending = [];
    const decoder = new TextDecoder();
    const take = (last) => {
        if (pending.length === 0)
            return decoder.decode(last);
        const parts = [...pending, last];
        pending = [];
        const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
        let at = 0;
        for (const part of parts) {
            all.set(part, at);
            at += part.length;
        }
        return decoder.decode(all);
    };
    const add = (record) => {
        const key = String(record.id);
        if (done.has(key))
            return;
        done.add(key);
        if (record.ok)
            ok++;
        else
            failed++;
    };
    return Stream.runForEach(bytes, (chunk) => Effect.sync(() => {
        let from = 0;
        while (true) {
            const nl = chunk.indexOf(10, from);
            if (nl < 0)
                break;
            const text = take(chunk.subarray(from, nl));
            if (text.trim() !== "") {
                const record = parseRecord(text);
                if (record === undefined)
                    corrupt++;
                else
                    add(record);
            }
            validBytes = offset + nl + 1;
            from = nl + 1;
        }
        if (from < chunk.length)
            pending.push(chunk.slice(from));
        offset += chunk.length;
    })).pipe(Effect.map(() => {
        const rest = take(new Uint8Array(0));
        let tail = "none";
        if (rest.trim() !== "") {
            const record = parseRecord(rest);
            if (record === undefined)
                tail = "torn";
            else {
                tail = "unterminated";
                add(record);
            }
        }
        else if (rest.length > 0) {
            tail = "torn";
        }
        return { done, ok, failed, validBytes, tail, corrupt };
    }));
});
