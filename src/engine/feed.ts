/**
 * A loop's item slots as a batcher sees them. The loop starts an item while fewer than
 * `concurrency` items hold a slot; an item gives its slot back while its batched request is
 * on the wire (so that the loop starts the next item and the provider's other request slots
 * fill), and takes it again when the answer comes, even beyond `concurrency` (that item is
 * never kept waiting; only new items are).
 *
 * `arriving` is how many of the loop's items could still reach a batcher: items that run
 * (not waiting in a batcher) and free slots the loop will fill. At 0, every slot waits on a
 * batcher: waiting longer for company cannot help, so a batch flushes then.
 */
export class Feed {
  readonly #concurrency: number;
  /** Items holding a slot. */
  #held = 0;
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
  }

  /** Items of this loop that could still reach a batcher. */
  get arriving(): number {
    return (this.#open ? Math.max(this.#held, this.#concurrency) : this.#held) - this.#parked;
  }

  /** Resolves once the loop may start an item (at once when a slot is free). */
  whenFree(): Promise<void> | undefined {
    if (this.#held < this.#concurrency) return undefined;
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

  /** A parked item's request leaves: its slot goes to the next item while it is on the wire. */
  send(): void {
    this.#parked--;
    this.#held--;
    this.#freed();
  }

  /**
   * Its request is answered: the item holds a slot again, parked until the batcher settles it.
   * The batcher calls `changed` once it has settled the answer's items (most run on at once).
   */
  back(): void {
    this.#held++;
    this.#parked++;
  }

  /** Calls `fn` once, the next time no item of this loop can arrive. */
  whenIdle(fn: () => void): void {
    this.#idle.add(fn);
  }

  #freed(): void {
    const wake = this.#wake;
    if (wake && this.#held < this.#concurrency) {
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
