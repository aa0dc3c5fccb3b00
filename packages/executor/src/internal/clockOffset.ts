/**
 * The offset between the caller's clock and a store's (caller minus store), bounded from round trips, for
 * translating times from one clock to the other without adding each round trip's own delay.
 *
 * A store's answer stamped `stamp` on its clock, asked when the caller's clock read `asked` and read when it
 * read `answered`, says `asked - stamp <= offset <= answered - stamp`. The tightest bounds seen are kept,
 * each widened by `drift` per millisecond as it ages (the clocks may drift apart), and both are replaced by a
 * sample that contradicts them (a clock was stepped). Translating with the upper bound gives a caller's time
 * never earlier than the store's instant; with the lower bound, a store's time never earlier than the
 * caller's instant. Both shift every time by the same amount: translated times keep their spacing, unlike
 * times translated with each round trip's own measure, which spreads them by the round trips' jitter.
 */
export class ClockOffset {
  /**
   * Invariant: lower - drift * (t - at) <= the true offset at t <= upper + drift * (t - at), for every caller's
   * time t >= at (`at`: when the last sample was asked; each sample holds from then on).
   */
  private lower = Number.NEGATIVE_INFINITY
  private upper = Number.POSITIVE_INFINITY
  private at = Number.NEGATIVE_INFINITY

  /** How far the clocks may drift apart per millisecond (1e-3: a millisecond per second). */
  private readonly drift: number

  constructor(drift = 1e-3) {
    this.drift = drift
  }

  /** One round trip: asked at `asked`, answered at `answered` (caller's clock), stamped `stamp` (store's). */
  sample(asked: number, answered: number, stamp: number): void {
    const lower = asked - stamp
    const upper = Math.max(answered, asked) - stamp
    const aged = Math.max(0, answered - this.at) * this.drift
    const agedLower = this.lower - aged
    const agedUpper = this.upper + aged
    if (lower > agedUpper || upper < agedLower) {
      this.lower = lower
      this.upper = upper
    } else {
      this.lower = Math.max(agedLower, lower)
      this.upper = Math.min(agedUpper, upper)
    }
    this.at = Math.max(this.at, asked)
  }

  /** A store's time on the caller's clock: never earlier than the caller's clock reads at that instant. */
  toCaller(storeTime: number): number {
    const callerTime = storeTime + this.upper
    return callerTime + Math.max(0, callerTime - this.at) * this.drift
  }

  /** A caller's time on the store's clock: never earlier than the store's clock reads at that instant. */
  toStore(callerTime: number): number {
    return callerTime - this.lower + Math.max(0, callerTime - this.at) * this.drift
  }
}
