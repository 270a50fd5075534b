import { parseArgs, type ParseArgsConfig } from 'node:util';
import { errorMessage, UsageError, WorkflowError } from '../errors.js';
import type { CommandIO } from './io.js';
export const EXIT = { ok: 0, failed: 1, invalid: 2 } as const;

/** One option of a command: what `parseArgs` needs, and the line `ferry <command> --help` shows. */
export type CommandOption = NonNullable<ParseArgsConfig['options']>[string] & {
  /** What the option does, in one line (its default is added from `default`). */
  help: string;
  /** The value's placeholder in the help, e.g. `FILE`, `k=v`. @default the option's name in capitals */
  value?: string;
};

export interface Command {
  usage: string;
  options: Record<string, CommandOption>;
  run(args: { values: Record<string, unknown>; positionals: string[] }, io: CommandIO): Promise<number>;
}

interface CommandEntry {
  summary: string;
  load(): Promise<Command>;
}

// Each command's module (and what it pulls in: the engine, undici, the server, the test
// harness) is loaded only when that command runs: `ferry validate` starts in a fraction of
// the time. The summaries here keep `ferry --help` from loading anything.
const commands: Record<string, CommandEntry> = {
  validate: { summary: 'check workflow files without running them', load: async () => (await import('./commands/validate.js')).validateCommand },
  test: { summary: 'run *.test.yaml cases against the built-in emulators', load: async () => (await import('./commands/test.js')).testCommand },
  run: { summary: 'run a workflow once', load: async () => (await import('./commands/run.js')).runCommandMain },
  retry: { summary: 'resume a failed or killed run where it stopped', load: async () => (await import('./commands/retry.js')).retryCommand },
  runs: { summary: 'list runs in the state dir, newest first', load: async () => (await import('./commands/runs.js')).runsCommand },
  show: { summary: 'show one run with its steps, attempts and error', load: async () => (await import('./commands/runs.js')).showCommand },
  actions: { summary: 'list the registered actions and their inputs', load: async () => (await import('./commands/actions.js')).actionsCommand },
  schema: { summary: 'print the workflow JSON Schema (for editors)', load: async () => (await import('./commands/schema.js')).schemaCommand },
  init: { summary: 'scaffold a workflow, its tests and a GitHub Actions file', load: async () => (await import('./commands/init.js')).initCommand },
  docs: { summary: 'print a generated reference (Markdown) or the test file JSON Schema', load: async () => (await import('./commands/docs.js')).docsCommand },
  serve: { summary: 'listen for webhooks and start runs', load: async () => (await import('./commands/serve.js')).serveCommand },
  worker: { summary: 'join a backend\'s pool (--backend): run queued runs and provider calls', load: async () => (await import('./commands/worker.js')).workerCommand },
};

/** `ferry <command> --help`: the usage line, what the command does, and one line per option. */
export function commandHelp(name: string, command: Command, summary = commands[name]?.summary): string {
  const rows: [string, string][] = Object.entries(command.options).map(([flag, o]) => {
    const shown = `${o.short ? `-${o.short}, ` : ''}--${flag}${o.type === 'string' ? ` ${o.value ?? flag.toUpperCase()}` : ''}`;
    const def = o.default === undefined ? '' : ` (default: ${String(o.default)})`;
    return [shown, `${o.help}${o.multiple ? '; may be repeated' : ''}${def}`];
  });
  rows.push(['-h, --help', 'show this help']);
  const width = Math.max(...rows.map(([flag]) => flag.length));
  const lines = [`Usage: ${command.usage}`, ...(summary ? ['', `${summary[0]?.toUpperCase() ?? ''}${summary.slice(1)}.`] : []), '', 'Options:'];
  for (const [flag, text] of rows) lines.push(`  ${flag.padEnd(width)}  ${text}`);
  return `${lines.join('\n')}\n`;
}

/** The options as `parseArgs` takes them: without the help text. */
function parseOptions(options: Record<string, CommandOption>): NonNullable<ParseArgsConfig['options']> {
  return Object.fromEntries(Object.entries(options).map(([flag, { help: _help, value: _value, ...o }]) => [flag, o]));
}

function help(): string {
  const lines = ['ferry — declarative YAML workflows for data-sync automations', '', 'Usage: ferry <command> [options]', '', 'Commands:'];
  for (const [name, c] of Object.entries(commands)) lines.push(`  ${name.padEnd(10)} ${c.summary}`);
  lines.push('', 'Run `ferry <command> --help` for its options.', '');
  return lines.join('\n');
}

/** Runs one ferry command line and returns its exit code; never touches `process`. */
export async function runCommand(argv: string[], io: CommandIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout(help());
    return name === undefined ? EXIT.invalid : EXIT.ok;
  }
  if (name === '--version' || name === '-v') {
    io.stdout(`${VERSION}\n`);
    return EXIT.ok;
  }
  const entry = commands[name];
  if (!entry) {
    io.stderr(`ferry: unknown command \`${name}\`\n\n${help()}`);
    return EXIT.invalid;
  }
  const command = await entry.load();
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args: rest, options: { ...parseOptions(command.options), help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true }) as typeof parsed;
  } catch (error) {
    io.stderr(`ferry ${name}: ${errorMessage(error)}\nUsage: ${command.usage}\n`);
    return EXIT.invalid;
  }
  if (parsed.values.help) {
    io.stdout(commandHelp(name, command));
    return EXIT.ok;
  }
  try {
    return await command.run(parsed, io);
  } catch (error) {
    if (error instanceof WorkflowError) {
      io.stderr(`${error.message}\n`);
      return EXIT.invalid;
    }
    if (error instanceof UsageError) {
      io.stderr(`ferry ${name}: ${error.message}\n`);
      return EXIT.invalid;
    }
    io.stderr(`ferry ${name}: ${errorMessage(error)}\n`);
    return EXIT.failed;
  }
}

declare const __FERRY_VERSION__: string | undefined;
const VERSION = typeof __FERRY_VERSION__ === 'string' ? __FERRY_VERSION__ : '0.1.0';
