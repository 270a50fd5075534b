import { Redactor } from '../engine/redact.js';

/** Where a command writes; everything passes through the redactor. */
export interface CommandIO {
  stdout(text: string): void;
  stderr(text: string): void;
  env: Record<string, string | undefined>;
  cwd: string;
  /** True when stderr is a terminal (progress and colour). */
  isTTY: boolean;
  redactor: Redactor;
  /** Aborted with 'SIGINT' or 'SIGTERM' when the process is asked to stop. */
  signal?: AbortSignal;
}

export interface CapturedIO extends CommandIO {
  out: string;
  err: string;
}

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
      io.out += io.redactor.redact(text);
    },
    stderr: (text) => {
      io.err += io.redactor.redact(text);
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
    redactor,
    stdout: (text) => void process.stdout.write(redactor.redact(text)),
    stderr: (text) => void process.stderr.write(redactor.redact(text)),
  };
}
