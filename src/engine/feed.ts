/**
 * A loop's item slots as a batcher sees them. The loop starts an item while fewer than
 * `concurrency` items hold a slot; a batch's items lend their slots while its request is on the
 * wire, all or none (so that the loop starts the next items and the provider's other request slots fill),
 * and takes it back when the answer comes, even beyond `concurrency` (that item is never kept
 * waiting; only new items are). Lending stops at IN_FLIGHT items of the loop in all: it lets a
 * small loop keep several batches in flight, never a large one hold more items than it asked.
 *
 * `arriving` is how many of the loop's items could still reach a batcher: items that run
 * (not waiting in a batcher) and free slots the loop will fill. At 0, every slot waits on a
 * batcher: waiting longer for company cannot help, so a batch flushes then.
 */
export class Feed {
  readonly #concurrency: number;
  /** Items holding a slot. */
  #held = 0;
  /** Items whose batched request is on the wire: they lent their slot. */
  #lent = 0;
  /** Items in flight (holding a slot or lent) at most: max(concurrency, IN_FLIGHT). */
  readonly #limit: number;
  /** Of those, items waiting in a batcher (for a batch, a slot in the queue, a backoff). */
  #parked = 0;
  /** The loop may still start items (its source is not done and the run not stopping). */
  #open = true;
  /** Batches waiting for this loop to go idle. */
  readonly #idle = new Set<() => void>();
  /** The loop waiting for a free slot. */
  #wake: (() => void) | undefined;

  constructor(concurrency: number) {
    this.#concurrency = concurrency;
    this.#limit = Math.max(concurrency, IN_FLIGHT);
  }

  /** Items of this loop that could still reach a batcher. */
  get arriving(): number {
    return this.#held + (this.#open ? this.#free : 0) - this.#parked;
  }

  /** Slots the loop may fill now. */
  get #free(): number {
    return Math.max(0, Math.min(this.#concurrency - this.#held, this.#limit - this.#held - this.#lent));
  }

  /** Resolves once the loop may start an item (at once when a slot is free). */
  whenFree(): Promise<void> | undefined {
    if (this.#free > 0) return undefined;
    return new Promise((resolve) => {
      this.#wake = resolve;
    });
  }

  /** The loop starts an item. */
  take(): void {
    this.#held++;
  }

  /** An item is done (or its slot was not used): the loop may start another. */
  drop(): void {
    this.#held--;
    this.#freed();
  }

  /** The loop starts no more items: what holds a slot now is all that can still arrive. */
  close(): void {
    this.#open = false;
    this.#changed();
  }

  /** An item waits in a batcher; the batcher calls `changed` once the item is in its batch. */
  park(): void {
    this.#parked++;
  }

  /** An item leaves the batcher with its result and runs on. */
  unpark(): void {
    this.#parked--;
  }

  /**
   * `count` parked items of one batch leave: their slots go to the next items while they are on
   * the wire, all or none (a part would start a small batch). False when lending them would take
   * the loop past its limit: they keep their slots until their answer.
   */
  lend(count: number): boolean {
    if (this.#held + this.#lent + count > this.#limit) return false;
    this.#parked -= count;
    this.#held -= count;
    this.#lent += count;
    this.#freed();
    return true;
  }

  /**
   * Its request is answered: the item holds a slot again, parked until the batcher settles it.
   * The batcher calls `changed` once it has settled the answer's items (most run on at once).
   */
  back(): void {
    this.#lent--;
    this.#held++;
    this.#parked++;
  }

  /** Calls `fn` once, the next time no item of this loop can arrive. */
  whenIdle(fn: () => void): void {
    this.#idle.add(fn);
  }

  #freed(): void {
    const wake = this.#wake;
    if (wake && this.#free > 0) {
      this.#wake = undefined;
      wake();
    }
    this.#changed();
  }

  /** Calls back the batches waiting for this loop when none of its items can arrive. */
  changed(): void {
    this.#changed();
  }

  #changed(): void {
    if (this.#idle.size === 0 || this.arriving > 0) return;
    const waiting = [...this.#idle];
    this.#idle.clear();
    for (const fn of waiting) fn();
  }
}

/**
 * How many items a loop with a lower `concurrency` may have in flight while their batches are
 * on the wire: enough for a loop of 16 to keep 16 request slots busy with batches, and a
 * bound on memory (a loop of 1024 or more lends nothing: its batches are large already).
 */
const IN_FLIGHT = 1024;
