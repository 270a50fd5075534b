/**
 * Partial matching of expectations against what a run produced, and the words for a
 * mismatch. A mapping matches when every key it lists matches (other keys are ignored); a
 * list matches a list of the same length item by item; anything else must be equal.
 */

export type Path = (string | number)[];

export interface Mismatch {
  /** Where inside the expected value, as keys and indexes. */
  path: Path;
  message: string;
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** A value in a message: compact JSON, cut to a readable length. */
export function show(value: unknown, max = 100): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function kind(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `a list of ${value.length}`;
  if (isObject(value)) return 'a mapping';
  return show(value);
}

/** Every way `actual` fails to match `expected`; empty when it matches. */
export function mismatches(expected: unknown, actual: unknown, at: Path = []): Mismatch[] {
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return [{ path: at, message: `expected a list of ${expected.length}, got ${kind(actual)}` }];
    if (actual.length !== expected.length) return [{ path: at, message: `expected a list of ${expected.length}, got a list of ${actual.length}: ${show(actual)}` }];
    return expected.flatMap((e, i) => mismatches(e, actual[i], [...at, i]));
  }
  if (isObject(expected)) {
    if (!isObject(actual)) return [{ path: at, message: `expected a mapping, got ${kind(actual)}` }];
    return Object.entries(expected).flatMap(([k, e]) => (k in actual ? mismatches(e, actual[k], [...at, k]) : [{ path: [...at, k], message: `missing; expected ${show(e)}` }]));
  }
  if (Object.is(expected, actual) || expected === actual) return [];
  return [{ path: at, message: `expected ${show(expected)}, got ${show(actual)}` }];
}

export const matches = (expected: unknown, actual: unknown): boolean => mismatches(expected, actual).length === 0;

/** `body.events[0].user_id` */
export function formatPath(path: Path): string {
  let out = '';
  for (const part of path) out += typeof part === 'number' ? `[${part}]` : out === '' ? part : `.${part}`;
  return out;
}

export type ListFailure =
  /** No received item matches; `closest` is the received item with the fewest differences. */
  | { kind: 'missing'; index: number; closest: { at: number; mismatches: Mismatch[] } | undefined }
  /** A received item matches, but not after the one that matched the previous expectation. */
  | { kind: 'order'; index: number; matchedAt: number; after: number }
  /** Every received item that matches is already taken by another expectation. */
  | { kind: 'taken'; index: number; candidates: number[] };

/**
 * Matches each expected item to a distinct received one. `sequence` keeps the expected
 * order (other items may come between); `set` allows any order.
 */
export function matchList(expected: readonly unknown[], actual: readonly unknown[], order: 'sequence' | 'set'): ListFailure[] {
  const candidates = expected.map((e) => actual.flatMap((a, j) => (matches(e, a) ? [j] : [])));
  const failures: ListFailure[] = [];
  if (order === 'sequence') {
    // Taking the earliest match each time finds a subsequence whenever one exists.
    let next = 0;
    candidates.forEach((found, index) => {
      const j = found.find((x) => x >= next);
      if (j !== undefined) next = j + 1;
      else if (found.length > 0) failures.push({ kind: 'order', index, matchedAt: found[0] as number, after: next - 1 });
      else failures.push({ kind: 'missing', index, closest: closest(expected[index], actual) });
    });
    return failures;
  }
  const owner = new Array<number | undefined>(actual.length).fill(undefined);
  // Kuhn's augmenting paths: lists in tests are short, so the simple algorithm is plenty.
  const assign = (index: number, seen: Set<number>): boolean => {
    for (const j of candidates[index] ?? []) {
      if (seen.has(j)) continue;
      seen.add(j);
      const current = owner[j];
      if (current === undefined || assign(current, seen)) {
        owner[j] = index;
        return true;
      }
    }
    return false;
  };
  candidates.forEach((found, index) => {
    if (assign(index, new Set())) return;
    if (found.length > 0) failures.push({ kind: 'taken', index, candidates: found });
    else failures.push({ kind: 'missing', index, closest: closest(expected[index], actual) });
  });
  return failures;
}

function closest(expected: unknown, actual: readonly unknown[]): { at: number; mismatches: Mismatch[] } | undefined {
  let best: { at: number; mismatches: Mismatch[] } | undefined;
  actual.forEach((a, at) => {
    const found = mismatches(expected, a);
    if (!best || found.length < best.mismatches.length) best = { at, mismatches: found };
  });
  return best;
}
