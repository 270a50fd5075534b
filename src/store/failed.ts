import { appendFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Redactor } from '../redact.js';
import type { RunErrorInfo } from '../types.js';
import type { ItemEntry } from './journal.js';

/** `<run-dir>/failed.jsonl`: the loop items set aside by `on_error: continue` that are failed now. */
export const FAILED_FILE = 'failed.jsonl';

/**
 * One line of failed.jsonl, from the journal's `item` entry: where the item is (the loop,
 * its 0-based position, the path of positions when loops nest, the file and line it came
 * from), the item itself, the step that failed, ferry's error and the provider's answer.
 */
export function failedLine(entry: ItemEntry): Record<string, unknown> {
  const { provider, ...error }: Partial<RunErrorInfo> = entry.error ?? {};
  return {
    loop: entry.id,
    position: entry.item.at(-1) ?? 0,
    ...(entry.item.length > 1 ? { path: entry.item } : {}),
    ...(entry.file === undefined ? {} : { file: entry.file }),
    ...(entry.line === undefined ? {} : { line: entry.line }),
    step: entry.step ?? null,
    item: entry.value ?? null,
    error: { message: error.message ?? null, ...(error.code === undefined ? {} : { code: error.code }), ...(error.status === undefined ? {} : { status: error.status }) },
    provider: provider ?? null,
  };
}

/**
 * Writes failed.jsonl beside the journal, redacted like it. The journal is the truth: the
 * file is appended to as items are set aside, and written anew from the journal when a run
 * is taken up again, so it always lists the items that are failed now.
 */
export class FailedFile {
  readonly path: string;
  #pending = '';

  constructor(
    journalFile: string,
    readonly redactor: Redactor | undefined,
  ) {
    this.path = path.join(path.dirname(journalFile), FAILED_FILE);
  }

  add(entry: ItemEntry): void {
    if (entry.status === 'failed') this.#pending += `${JSON.stringify(failedLine(entry))}\n`;
  }

  /** Appends what was added since the last write; throws when it cannot (the journal's failure). */
  write(): void {
    if (this.#pending === '') return;
    const text = this.#redact(this.#pending);
    this.#pending = '';
    appendFileSync(this.path, text, { mode: 0o600 });
  }

  /** Replaces the file with these items (none: the file is removed), atomically. */
  reset(entries: Iterable<ItemEntry>): void {
    let text = '';
    for (const entry of entries) text += `${JSON.stringify(failedLine(entry))}\n`;
    if (text === '') {
      rmSync(this.path, { force: true });
      return;
    }
    const tmp = `${this.path}.${process.pid}`;
    writeFileSync(tmp, this.#redact(text), { mode: 0o600 });
    renameSync(tmp, this.path);
  }

  #redact(text: string): string {
    return this.redactor ? this.redactor.redactJsonLines(text) : text;
  }
}
