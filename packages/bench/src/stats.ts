/** Small statistics helpers. */

export const median = (values: ReadonlyArray<number>): number => {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/**
 * Sliding windows over sorted start times: for the window [s, s + windowMs) opened at each start s, how many
 * starts it holds. Returns the largest count and how many windows held more than `limit`. The maximum over all
 * windows is reached at a window that opens on a start, so these windows cover every case.
 */
export const slidingMax = (
  sorted: ReadonlyArray<number>,
  windowMs: number,
  limit: number
): { max: number; over: number } => {
  let max = 0
  let over = 0
  let j = 0
  for (let i = 0; i < sorted.length; i++) {
    if (j < i) j = i
    while (j < sorted.length && sorted[j]! < sorted[i]! + windowMs) j++
    const count = j - i
    if (count > max) max = count
    if (count > limit) over++
  }
  return { max, over }
}
