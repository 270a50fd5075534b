// "Did you mean": used by validation (keys, values, zones) and templates (helpers, paths).

/** The option nearest to `word` (case aside) within a few edits, for a "did you mean". */
export function closest(word: string, options: string[]): string | undefined {
  let best: { option: string; distance: number } | undefined;
  for (const option of options) {
    const d = editDistance(word.toLowerCase(), option.toLowerCase());
    if (d <= Math.max(2, Math.floor(option.length / 3)) && (!best || d < best.distance)) best = { option, distance: d };
  }
  return best?.option;
}

/** Edits between two words, a swap of neighbours counting as one (`emial` is one edit from `email`). */
function editDistance(a: string, b: string): number {
  // Three rows of the optimal-string-alignment table: two back for the swap.
  let before = new Array<number>(b.length + 1).fill(0);
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      let d = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, (before[j - 2] as number) + 1);
      row.push(d);
    }
    before = prev;
    prev = row;
  }
  return prev[b.length] as number;
}

/**
 * For a path the data does not have, the same path with its first missing name replaced by
 * the nearest name the data has there (`user.emial` -> `user.email`). Only on the error path.
 */
export function nearPath(parts: readonly string[], context: unknown): string | undefined {
  let value = context;
  for (const [i, part] of parts.entries()) {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
    if (!Object.hasOwn(value, part)) {
      const near = closest(part, Object.keys(value).slice(0, 1000));
      return near === undefined ? undefined : [...parts.slice(0, i), near, ...parts.slice(i + 1)].join('.');
    }
    value = (value as Record<string, unknown>)[part];
  }
  return undefined;
}
