/** Faults an emulator injects on request, for tests and `ferry test`. */
export type Fault =
  | { kind: 'status'; status: number; times?: number; retryAfter?: number | string; path?: string; body?: unknown }
  | { kind: 'reset'; times?: number; path?: string }
  /** Permanent: every request that carries this user id is refused. Never consumed. */
  | { kind: 'reject-user'; userId: string; status?: number }
  /** Amplitude: a 429 naming this user's events in `throttled_events`. */
  | { kind: 'throttle-user'; userId: string; times?: number }
  /** Each request independently, from a seeded PRNG: the same seed gives the same faults. */
  | { kind: 'random'; rate429?: number; rate503?: number; rateReset?: number; retryAfter?: number; seed?: number };

export type FaultDecision =
  | { kind: 'none' }
  | { kind: 'reset' }
  | { kind: 'status'; status: number; retryAfter: number | string | undefined; body: unknown }
  | { kind: 'reject-user'; status: number; userId: string }
  | { kind: 'throttle-user'; userId: string };

interface Slot {
  fault: Fault;
  left: number;
  random?: () => number;
}

/** A small deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Faults {
  #slots: Slot[] = [];

  inject(fault: Fault): void {
    const times = 'times' in fault && fault.times !== undefined ? fault.times : 1;
    const slot: Slot = { fault, left: fault.kind === 'reject-user' || fault.kind === 'random' ? Infinity : times };
    if (fault.kind === 'random') slot.random = prng(fault.seed ?? 1);
    this.#slots.push(slot);
  }

  clear(): void {
    this.#slots = [];
  }

  /** The fault for one request (path, user ids it carries); consumes one use of it. */
  decide(path: string, users: readonly string[]): FaultDecision {
    for (const slot of this.#slots) {
      const f = slot.fault;
      if (slot.left <= 0) continue;
      switch (f.kind) {
        case 'reject-user':
          if (users.includes(f.userId)) return { kind: 'reject-user', status: f.status ?? 400, userId: f.userId };
          break;
        case 'throttle-user':
          if (users.includes(f.userId)) {
            slot.left--;
            return { kind: 'throttle-user', userId: f.userId };
          }
          break;
        case 'status':
          if (f.path === undefined || f.path === path) {
            slot.left--;
            return { kind: 'status', status: f.status, retryAfter: f.retryAfter, body: f.body };
          }
          break;
        case 'reset':
          if (f.path === undefined || f.path === path) {
            slot.left--;
            return { kind: 'reset' };
          }
          break;
        case 'random': {
          const r = (slot.random as () => number)();
          const p429 = f.rate429 ?? 0;
          const p503 = f.rate503 ?? 0;
          const pReset = f.rateReset ?? 0;
          if (r < p429) return { kind: 'status', status: 429, retryAfter: f.retryAfter ?? 0, body: undefined };
          if (r < p429 + p503) return { kind: 'status', status: 503, retryAfter: undefined, body: undefined };
          if (r < p429 + p503 + pReset) return { kind: 'reset' };
          break;
        }
      }
    }
    this.#slots = this.#slots.filter((s) => s.left > 0);
    return { kind: 'none' };
  }
}
