/** Faults an emulator injects on request, for ferry's tests and benchmarks. */
export type Fault =
  | {
      kind: 'status';
      status: number;
      /** @default 1 */
      times?: number;
      /** Seconds or an HTTP date, sent as `Retry-After`. */
      retryAfter?: number | string;
      /** Only requests to this path (exact pathname). */
      path?: string;
      /** Replaces the provider's answer body (a string is sent as text, anything else as JSON). */
      body?: unknown;
    }
  | { kind: 'reset'; times?: number; path?: string }
  /** Permanent: every request carrying this user id is refused with the provider's 400 body. Never consumed. */
  | { kind: 'reject-user'; userId: string; status?: number }
  /** Amplitude only: a 429 naming this user's events in `throttled_events`. */
  | { kind: 'throttle-user'; userId: string; times?: number; retryAfter?: number | string }
  /** Each request independently, from a seeded PRNG: the same seed and requests give the same faults. `retryAfter` goes on the 429s. */
  | { kind: 'random'; rate429?: number; rate503?: number; rateReset?: number; retryAfter?: number; seed?: number };

export type FaultDecision =
  | { kind: 'none' }
  | { kind: 'reset' }
  | { kind: 'status'; status: number; retryAfter: number | string | undefined; body: unknown }
  | { kind: 'reject-user'; status: number; userId: string }
  | { kind: 'throttle-user'; userId: string; retryAfter: number | string | undefined };

/** A decision that is answered (not a socket reset, not "no fault"). */
export type AnsweredFault = Exclude<FaultDecision, { kind: 'none' } | { kind: 'reset' }>;

interface Slot {
  fault: Fault;
  left: number;
  random: (() => number) | undefined;
}

/** mulberry32: tiny, fast and good enough to spread faults; the point is determinism per seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NONE: FaultDecision = { kind: 'none' };

/** The queue of injected faults. Each request walks it in injection order; the first that matches applies. */
export class Faults {
  #slots: Slot[] = [];

  get size(): number {
    return this.#slots.length;
  }

  inject(fault: Fault): void {
    const permanent = fault.kind === 'reject-user' || fault.kind === 'random';
    const times = permanent ? Number.POSITIVE_INFINITY : (fault.times ?? 1);
    if (!(times > 0)) return;
    this.#slots.push({ fault, left: times, random: fault.kind === 'random' ? prng(fault.seed ?? 1) : undefined });
  }

  clear(): void {
    this.#slots = [];
  }

  /** The fault for one request (its path and the user/device ids it carries); consumes one use. */
  decide(path: string, users: ReadonlySet<string>): FaultDecision {
    if (this.#slots.length === 0) return NONE;
    for (const slot of this.#slots) {
      const decision = this.#match(slot, path, users);
      if (decision === undefined) continue;
      if (slot.left !== Number.POSITIVE_INFINITY && --slot.left <= 0) this.#slots = this.#slots.filter((s) => s !== slot);
      return decision;
    }
    return NONE;
  }

  #match(slot: Slot, path: string, users: ReadonlySet<string>): FaultDecision | undefined {
    const f = slot.fault;
    switch (f.kind) {
      case 'reject-user':
        return users.has(f.userId) ? { kind: 'reject-user', status: f.status ?? 400, userId: f.userId } : undefined;
      case 'throttle-user':
        return users.has(f.userId) ? { kind: 'throttle-user', userId: f.userId, retryAfter: f.retryAfter } : undefined;
      case 'status':
        return f.path === undefined || f.path === path ? { kind: 'status', status: f.status, retryAfter: f.retryAfter, body: f.body } : undefined;
      case 'reset':
        return f.path === undefined || f.path === path ? { kind: 'reset' } : undefined;
      case 'random': {
        // One draw per request whatever the outcome, so the sequence depends only on the seed and request order.
        const r = (slot.random as () => number)();
        const p429 = f.rate429 ?? 0;
        const p503 = p429 + (f.rate503 ?? 0);
        const pReset = p503 + (f.rateReset ?? 0);
        if (r < p429) return { kind: 'status', status: 429, retryAfter: f.retryAfter, body: undefined };
        if (r < p503) return { kind: 'status', status: 503, retryAfter: undefined, body: undefined };
        if (r < pReset) return { kind: 'reset' };
        return undefined;
      }
    }
  }
}
