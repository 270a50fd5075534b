/**
 * Secret values never leave the process in clear: every record, summary, log line and
 * error message passes through a Redactor at the place it is written.
 */
export const REDACTED = '[redacted]';

export class Redactor {
  readonly #values = new Set<string>();
  #pattern: RegExp | undefined;

  /** Adds a secret value (and the encoded forms a provider may echo back). */
  add(value: string | undefined): void {
    // Very short values would redact ordinary text; they are not plausible secrets.
    if (value === undefined || value.length < 4) return;
    const before = this.#values.size;
    for (const form of [value, encodeURIComponent(value), JSON.stringify(value).slice(1, -1), Buffer.from(value).toString('base64')]) {
      if (form.length >= 4) this.#values.add(form);
    }
    if (this.#values.size !== before) this.#pattern = undefined;
  }

  get size(): number {
    return this.#values.size;
  }

  redact(text: string): string {
    if (this.#values.size === 0) return text;
    this.#pattern ??= new RegExp(
      [...this.#values]
        .sort((a, b) => b.length - a.length)
        .map((v) => v.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
        .join('|'),
      'g',
    );
    return text.replace(this.#pattern, REDACTED);
  }

  /** A deep copy of a JSON-like value with every string redacted. */
  redactValue<T>(value: T): T {
    if (this.#values.size === 0) return value;
    return JSON.parse(this.redact(JSON.stringify(value) ?? 'null')) as T;
  }
}
