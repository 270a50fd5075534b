import { hostname } from 'node:os';
import { UsageError } from '../../errors.js';
import { parseDuration } from '../../workflow/types.js';
import type { Command } from '../run-command.js';
import { commandBackend } from '../backend.js';

export const workerCommand: Command = {
  usage: 'ferry worker --backend redis://HOST:PORT/DB [--runs N] [--calls N] [--takeover 15s]',
  options: {
    backend: { type: 'string', value: 'URL', help: 'share runs and provider limits through Redis: redis://HOST:PORT/DB (default: $FERRY_BACKEND)' },
    runs: { type: 'string', value: 'N', help: 'queued runs this worker runs at once (default: 4)' },
    calls: { type: 'string', value: 'N', help: 'provider calls it sends at once per account (default: 32)' },
    takeover: { type: 'string', value: 'DURATION', help: 'how soon a run whose process died is taken over, 3s or more (default: 15s)' },
  },
  async run({ values }, io) {
    const url = commandBackend(values, io);
    if (url === undefined) throw new UsageError(`a worker joins a backend's pool: give --backend redis://HOST:PORT/DB or set FERRY_BACKEND\nUsage: ${this.usage}`);
    const runs = positive(values.runs, '--runs');
    const calls = positive(values.calls, '--calls');
    const takeover = values.takeover === undefined ? undefined : parseDuration(String(values.takeover));
    if (values.takeover !== undefined && (takeover === undefined || takeover < 3000)) throw new UsageError(`Expected \`--takeover\` to be a duration of 3s or more (e.g. 15s), got \`${String(values.takeover)}\``);
    const { Pool } = await import('../../backend/pool.js');
    const pool = await Pool.open(url, { env: io.env, ...(calls === undefined ? {} : { calls }), ...(takeover === undefined ? {} : { takeoverMs: takeover }) });
    try {
      await pool.work({ ...(runs === undefined ? {} : { runs }), log: (line) => io.stderr(`${line}\n`) });
      io.stderr(`worker ${hostname()} pid ${process.pid} joined ${pool.backend.label}: runs queued runs and provider calls until SIGTERM\n`);
      await new Promise<void>((resolve) => {
        if (io.signal?.aborted) resolve();
        io.signal?.addEventListener('abort', () => resolve(), { once: true });
      });
      io.stderr('draining: no new work; runs in progress go back to the pool\n');
    } finally {
      await pool.close();
    }
    return 0;
  },
};

function positive(raw: unknown, flag: string): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`Expected \`${flag}\` to be a positive integer, got \`${String(raw)}\``);
  return n;
}
