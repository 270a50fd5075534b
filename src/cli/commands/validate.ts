import type { Dirent } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { WorkflowIssue } from '../../errors.js';
import { accountUses, limitConflicts, type NamedWorkflow } from '../../engine/accounts.js';
import { builtinRegistry } from '../../providers/index.js';
import { readSource } from '../../workflow/load.js';
import { validateSource, WorkflowCompiler } from '../../workflow/validate.js';
import type { Command } from '../run-command.js';

const isWorkflowFile = (name: string): boolean => /\.ya?ml$/.test(name) && !/\.test\.ya?ml$/.test(name);

/**
 * Expands files and folders (recursively) into workflow files, sorted. In a folder, an entry
 * named like a workflow that is not a regular file (a FIFO, a device, a link) is skipped,
 * and `warn` is told.
 */
export async function expandPaths(inputs: string[], cwd: string, warn?: (message: string) => void): Promise<string[]> {
  const out: string[] = [];
  for (const input of inputs) {
    const abs = path.resolve(cwd, input);
    const info = await stat(abs).catch(() => undefined);
    if (!info) {
      out.push(input); // reported as unreadable by the caller
    } else if (info.isDirectory()) {
      const entries = await readdir(abs, { recursive: true, withFileTypes: true });
      const named = (e: Dirent): string => path.join(path.relative(cwd, e.parentPath) || '.', e.name);
      const workflows = entries.filter((e) => !e.isDirectory() && isWorkflowFile(e.name) && !path.relative(abs, e.parentPath).split(path.sep).some((part) => part.startsWith('.') || part === 'node_modules'));
      for (const e of workflows) if (!e.isFile()) warn?.(`skipping ${named(e)}: not a regular file`);
      out.push(...workflows.filter((e) => e.isFile()).map(named).sort());
    } else {
      out.push(input);
    }
  }
  return out;
}

export function formatIssueLine(issue: WorkflowIssue, format: string): string {
  if (format === 'github') {
    const escape = (s: string): string => s.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
    return `::error file=${issue.file},line=${issue.line},col=${issue.col}::${escape(issue.message)}`;
  }
  return `${issue.file}:${issue.line}:${issue.col}: ${issue.message}`;
}

export const validateCommand: Command = {
  usage: 'ferry validate <file or dir>... [--format text|github|json] [--verbose]',
  options: {
    format: { type: 'string', default: 'text', help: 'text (file:line:col: message), github (annotations) or json' },
    verbose: { type: 'boolean', help: 'also list the files that are valid' },
  },
  async run({ values, positionals }, io) {
    const format = String(values.format);
    if (!['text', 'github', 'json'].includes(format)) {
      io.stderr(`ferry validate: --format must be text, github or json, got \`${format}\`\n`);
      return 2;
    }
    if (positionals.length === 0) {
      io.stderr(`ferry validate: name at least one workflow file or folder\nUsage: ${this.usage}\n`);
      return 2;
    }
    const registry = builtinRegistry();
    // One compiler for every file: the schema, templates and input schemas are compiled once.
    const compiler = new WorkflowCompiler(registry);
    const files = await expandPaths(positionals, io.cwd, (message) => io.stderr(`ferry validate: warning: ${message}\n`));
    const all: WorkflowIssue[] = [];
    const names = new Map<string, string>();
    const loaded: NamedWorkflow[] = [];
    for (const file of files) {
      // Each file is read asynchronously: SIGINT/SIGTERM are handled between files, and the
      // bounds on a file (src/limits.ts) keep validating any one of them short.
      const read = await readSource(path.resolve(io.cwd, file), file);
      if (io.signal?.aborted) {
        io.stderr(`ferry validate: stopped by ${String(io.signal.reason)} before ${file}\n`);
        return io.signal.reason === 'SIGINT' ? 130 : 143;
      }
      if ('issue' in read) {
        all.push(read.issue);
        continue;
      }
      const { workflow, issues } = validateSource(file, read.text, compiler);
      all.push(...issues);
      if (workflow) {
        loaded.push({ file, workflow });
        // Workflow names are unique per folder: `ferry serve` and `ferry runs` key on them.
        const key = `${path.dirname(path.resolve(io.cwd, file))}\0${workflow.name}`;
        const other = names.get(key);
        if (other) all.push({ file, line: 1, col: 1, code: 'FERRY_NAME_DUPLICATE', message: `workflow name \`${workflow.name}\` is already used by ${other}` });
        else names.set(key, file);
        if (values.verbose && issues.length === 0) io.stderr(`ok ${file}\n`);
      }
    }
    if (format === 'json') io.stdout(`${JSON.stringify(all.map(({ file, line, col, code, message }) => ({ file, line, col, code, message })), null, 2)}\n`);
    else for (const issue of all) io.stdout(`${formatIssueLine(issue, format)}\n`);
    // Workflows that name one provider account with different limits: a warning, not an error.
    for (const warning of limitConflicts(accountUses(loaded, registry))) {
      if (format === 'github') io.stdout(`::warning::${warning}\n`);
      else io.stderr(`warning: ${warning}\n`);
    }
    if (files.length === 0) {
      io.stderr('ferry validate: no workflow files found\n');
      return 2;
    }
    return all.length > 0 ? 2 : 0;
  },
};
