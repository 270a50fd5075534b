/**
 * Secret values never leave the process in clear: every record, summary, log line and
 * error message passes through a Redactor at the place it is written.
 *
 * Text is redacted by substring; structured values (summaries, journal entries, `--json`)
 * are redacted value by value, never as serialized JSON text, so a secret that happens to
 * read `true` or `1234` cannot break the JSON around it.
 */
export const REDACTED = '[redacted]';

/**
 * Shorter secrets are redacted only where they are a whole string value: replacing every
 * `ab` inside ordinary text would destroy the output without hiding anything.
 */
export const MIN_SUBSTRING_LENGTH = 4;

export class Redactor {
  /** Forms redacted wherever they occur inside a string. */
  readonly #forms = new Set<string>();
  /** Values redacted where a string is exactly one of them, whatever their length. */
  readonly #whole = new Set<string>();
  #pattern: RegExp | undefined;
  #detector: RegExp | undefined;

  /**
   * Adds a secret value with the forms a provider may echo back: upper and lower case (the
   * `upper`/`lower` helpers), URI, form and JSON escaping, base64. Encodings that mix the
   * value with other text (a Basic header of `key:`) are added by whoever encodes them.
   */
  add(value: string | undefined): void {
    if (value === undefined || value === '') return;
    const before = this.#forms.size + this.#whole.size;
    for (const base of new Set([value, value.toUpperCase(), value.toLowerCase()])) {
      this.#whole.add(base);
      if (base.length < MIN_SUBSTRING_LENGTH) continue;
      for (const form of encodings(base)) if (form.length >= MIN_SUBSTRING_LENGTH) this.#forms.add(form);
    }
    if (this.#forms.size + this.#whole.size !== before) {
      this.#pattern = undefined;
      this.#detector = undefined;
    }
  }

  /** How many values and forms it redacts; 0 means every method returns its input. */
  get size(): number {
    return this.#whole.size;
  }

  /** Text with every substring form replaced (values shorter than 4 characters stay). */
  redact(text: string): string {
    if (this.#forms.size === 0) return text;
    return text.replace(this.#substrings(), REDACTED);
  }

  /**
   * A deep copy of a JSON-like value with its strings redacted: a string that is exactly a
   * secret (of any length) becomes `[redacted]`, forms inside longer strings are replaced,
   * and a number that spells a secret of 4 characters or more becomes the string `[redacted]`.
   */
  redactValue<T>(value: T): T {
    if (this.#whole.size === 0) return value;
    return this.#walk(value) as T;
  }

  /**
   * `JSON.stringify(value, null, space)` with secrets redacted in the values. Cheap when no
   * secret is in it: one search over the text, and the value is walked only on a hit.
   */
  redactJson(value: unknown, space?: number): string {
    const text = JSON.stringify(value, null, space) ?? 'null';
    if (this.#whole.size === 0) return text;
    if (text.search(this.#detect()) === -1) return text;
    return JSON.stringify(this.redactValue(value), null, space) ?? 'null';
  }

  /**
   * JSON lines (one JSON value per line, as the journal writes them) with secrets redacted in
   * their values. One search over the whole text; only lines that hold a secret are parsed,
   * redacted value by value and written again.
   */
  redactJsonLines(text: string): string {
    if (this.#whole.size === 0) return text;
    const detector = this.#detect();
    if (text.search(detector) === -1) return text;
    return text
      .split('\n')
      .map((line) => (line === '' || line.search(detector) === -1 ? line : JSON.stringify(this.redactValue(JSON.parse(line) as unknown))))
      .join('\n');
  }

  #detect(): RegExp {
    this.#detector ??= alternation([...this.#forms, ...[...this.#whole].map((w) => JSON.stringify(w))]);
    return this.#detector;
  }

  #substrings(): RegExp {
    this.#pattern ??= alternation([...this.#forms], 'g');
    return this.#pattern;
  }

  #walk(value: unknown): unknown {
    if (typeof value === 'string') return this.#whole.has(value) ? REDACTED : this.redact(value);
    // A number is only redacted when it spells a secret of 4 characters or more: a secret `1`
    // must not turn every count of 1 into `[redacted]`.
    if (typeof value === 'number' || typeof value === 'bigint') {
      return this.#forms.size > 0 && String(value).search(this.#substrings()) !== -1 ? REDACTED : value;
    }
    if (value === null || typeof value !== 'object') return value;
    if (Array.isArray(value)) return value.map((v) => this.#walk(v));
    const toJSON = (value as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') return this.#walk((toJSON as () => unknown).call(value));
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[this.redact(k)] = this.#walk(v);
    return out;
  }
}

function encodings(value: string): string[] {
  return [
    value,
    encodeURIComponent(value),
    // application/x-www-form-urlencoded (Amplitude's Identify body, URL query strings): spaces as `+`.
    new URLSearchParams([['', value]]).toString().slice(1),
    JSON.stringify(value).slice(1, -1),
    Buffer.from(value).toString('base64'),
  ];
}

function alternation(forms: string[], flags?: string): RegExp {
  return new RegExp(
    forms
      .sort((a, b) => b.length - a.length)
      .map((v) => v.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
      .join('|'),
    flags,
  );
}
