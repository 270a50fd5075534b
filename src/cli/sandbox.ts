import { startSandbox, describeDropped, describeReceived } from '../sandbox/index.js';
import type { CliSandbox } from './commands/run.js';

/** Starts the built-in emulators and points the providers at them, with the keys they accept. */
export async function startCliSandbox(): Promise<CliSandbox> {
  const sandbox = await startSandbox();
  return {
    overrides: {
      amplitude: { base_url: sandbox.amplitude.url, api_key: 'sandbox-amplitude-key', secret_key: 'sandbox-amplitude-secret' },
      segment: { base_url: sandbox.segment.url, write_key: 'sandbox-segment-key' },
    },
    describe: (verbose) => {
      const dropped = sandbox.segment.dropped.length === 0 ? [] : verbose ? describeDropped(sandbox.segment) : ['(--verbose says which Segment messages would be dropped, and why)'];
      return [describeReceived(sandbox), ...dropped].join('\n');
    },
    close: () => sandbox.close(),
  };
}
