import { parseArgs, type ParseArgsConfig } from 'node:util';
import { errorMessage, UsageError, WorkflowError } from '../errors.js';
import type { CommandIO } from './io.js';
import { actionsCommand } from './commands/actions.js';
import { runCommandMain } from './commands/run.js';
import { retryCommand } from './commands/retry.js';
import { runsCommand, showCommand } from './commands/runs.js';
import { schemaCommand } from './commands/schema.js';
import { validateCommand } from './commands/validate.js';

export const EXIT = { ok: 0, failed: 1, invalid: 2 } as const;

export interface Command {
  summary: string;
  usage: string;
  options: NonNullable<ParseArgsConfig['options']>;
  run(args: { values: Record<string, unknown>; positionals: string[] }, io: CommandIO): Promise<number>;
}

const commands: Record<string, Command> = {
  validate: validateCommand,
  run: runCommandMain,
  retry: retryCommand,
  runs: runsCommand,
  show: showCommand,
  actions: actionsCommand,
  schema: schemaCommand,
};

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
  const command = commands[name];
  if (!command) {
    io.stderr(`ferry: unknown command \`${name}\`\n\n${help()}`);
    return EXIT.invalid;
  }
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args: rest, options: { ...command.options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true }) as typeof parsed;
  } catch (error) {
    io.stderr(`ferry ${name}: ${errorMessage(error)}\nUsage: ${command.usage}\n`);
    return EXIT.invalid;
  }
  if (parsed.values.help) {
    io.stdout(`Usage: ${command.usage}\n`);
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
