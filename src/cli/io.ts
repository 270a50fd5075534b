import { Redactor } from '../redact.js';
import type { RunSession } from '../engine/session.js';
import { escapeControls } from '../terminal.js';

/**
 * Where a command writes. Everything passes through the redactor, and control characters
 * are escaped: nothing from a provider or a journal reaches the terminal raw.
 */
export interface CommandIO {
  stdout(text: string): void;
  stderr(text: string): void;
  /**
   * A value as indented JSON on stdout, secrets redacted in its values (never in the JSON
   * text, which a secret like `true` would break).
   */
  json(value: unknown): void;
  /** ferry's own terminal control sequences (the live progress display) on stderr, as they are. */
  terminal(sequence: string): void;
  env: Record<string, string | undefined>;
  cwd: string;
  /** True when stderr is a terminal (progress and colour). */
  isTTY: boolean;
  /** The terminal's size now, when stderr is one: the live display never wraps or outgrows it. */
  terminalSize?: () => { columns: number; rows: number } | undefined;
  redactor: Redactor;
  /** Aborted with 'SIGINT' or 'SIGTERM' when the process is asked to stop. */
  signal?: AbortSignal;
  /**
   * Told of each run session a command starts (`run`, `retry`, `serve`, `test`, `--dry-run`),
   * before its first event: an embedder (or a test) subscribes to what happens in it.
   */
  onRun?: (session: RunSession) => void;
}

export interface CapturedIO extends CommandIO {
  out: string;
  err: string;
}

/** Text as it may be shown: secrets redacted, control characters escaped. */
const clean = (redactor: Redactor, text: string): string => escapeControls(redactor.redact(text));
/** JSON.stringify escapes C0 controls already; the rest (DEL, C1) get valid `\u` escapes. */
const cleanJson = (redactor: Redactor, value: unknown): string => `${escapeControls(redactor.redactJson(value, 2))}\n`;

/** An IO that collects output in memory: for tests and embedding. */
export function captureIO(env: Record<string, string | undefined> = {}, cwd = process.cwd()): CapturedIO {
  const io: CapturedIO = {
    out: '',
    err: '',
    env,
    cwd,
    isTTY: false,
    redactor: new Redactor(),
    stdout: (text) => {
      io.out += clean(io.redactor, text);
    },
    stderr: (text) => {
      io.err += clean(io.redactor, text);
    },
    json: (value) => {
      io.out += cleanJson(io.redactor, value);
    },
    terminal: (sequence) => {
      io.err += sequence;
    },
  };
  return io;
}

export function processIO(signal?: AbortSignal): CommandIO {
  const redactor = new Redactor();
  return {
    ...(signal ? { signal } : {}),
    env: process.env,
    cwd: process.cwd(),
    isTTY: Boolean(process.stderr.isTTY) && process.env.CI !== 'true',
    terminalSize: () => (process.stderr.isTTY ? { columns: process.stderr.columns, rows: process.stderr.rows } : undefined),
    redactor,
    stdout: (text) => void process.stdout.write(clean(redactor, text)),
    stderr: (text) => void process.stderr.write(clean(redactor, text)),
    json: (value) => void process.stdout.write(cleanJson(redactor, value)),
    terminal: (sequence) => void process.stderr.write(sequence),
  };
}
