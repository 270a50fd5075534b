import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { builtinRegistry } from '../../providers/index.js';
import { githubReport, junitReport, textReport, totals } from '../../testing/report.js';
import { findTestFiles, runTestFiles } from '../../testing/run.js';
import type { Command } from '../run-command.js';

const REPORTERS = ['text', 'github', 'junit'];

export const testCommand: Command = {
  usage: 'ferry test [file or dir]... [--reporter text|github|junit]... [--output FILE]',
  options: {
    reporter: { type: 'string', multiple: true, value: 'NAME', help: 'text (always printed), github (annotations) or junit (XML)' },
    output: { type: 'string', value: 'FILE', help: 'with --reporter junit: write the XML to this file (without it, the XML goes to stdout)' },
  },
  async run({ values, positionals }, io) {
    // The readable report always prints; `github` adds annotations, `junit` the XML.
    const reporters = new Set((values.reporter as string[] | undefined) ?? ['text']);
    const unknown = [...reporters].find((r) => !REPORTERS.includes(r));
    if (unknown !== undefined) {
      io.stderr(`ferry test: --reporter must be text, github or junit, got \`${unknown}\`\n`);
      return 2;
    }
    const output = values.output as string | undefined;
    if (output !== undefined && !reporters.has('junit')) {
      io.stderr('ferry test: --output goes with --reporter junit\n');
      return 2;
    }
    const { files, missing } = await findTestFiles(positionals.length > 0 ? positionals : ['.'], io.cwd);
    if (missing.length > 0) {
      io.stderr(`ferry test: no such file or folder: ${missing.join(', ')}\n`);
      return 2;
    }
    if (files.length === 0) {
      io.stderr(`ferry test: no test files (*.test.yaml) under ${positionals.join(', ') || 'this folder'}\n`);
      return 2;
    }
    const started = performance.now();
    const results = await runTestFiles(files, { cwd: io.cwd, registry: builtinRegistry(), ...(io.onRun ? { onRun: io.onRun } : {}) });
    const t = totals(results, Math.round(performance.now() - started));
    const text = textReport(results, t);
    // JUnit without --output owns stdout; the readable report then goes to stderr.
    const xmlOnStdout = reporters.has('junit') && output === undefined;
    (xmlOnStdout ? io.stderr : io.stdout)(text);
    if (reporters.has('github')) (xmlOnStdout ? io.stderr : io.stdout)(githubReport(results));
    if (reporters.has('junit')) {
      const report = junitReport(results, t);
      if (output === undefined) io.stdout(report);
      else {
        const target = path.resolve(io.cwd, output);
        await mkdir(path.dirname(target), { recursive: true });
        await writeFile(target, report);
      }
    }
    if (t.invalid > 0) return 2;
    return t.failed > 0 ? 1 : 0;
  },
};
