import type { FileResult } from './run.js';

export interface Totals {
  files: number;
  passed: number;
  failed: number;
  /** Files that could not run: invalid test file or workflow. */
  invalid: number;
  durationMs: number;
}

export function totals(results: readonly FileResult[], durationMs: number): Totals {
  const cases = results.flatMap((r) => r.cases);
  return {
    files: results.length,
    passed: cases.filter((c) => c.failures.length === 0).length,
    failed: cases.filter((c) => c.failures.length > 0).length,
    invalid: results.filter((r) => r.issues.length > 0).length,
    durationMs,
  };
}

const seconds = (ms: number): string => (ms < 1000 ? `${ms}ms` : `${(ms / 1000).toFixed(1)}s`);

/**
 * The human report: a line per case, and under a failing case each expectation that did
 * not hold as `file:line:col: message` (editors and CI logs link it) with its detail.
 */
export function textReport(results: readonly FileResult[], t: Totals): string {
  const out: string[] = [];
  for (const r of results) {
    if (r.issues.length > 0) {
      out.push(`✗ ${r.file}: cannot run`);
      for (const i of r.issues) out.push(`  ${i.file}:${i.line}:${i.col}: ${i.message}`);
      continue;
    }
    out.push(`${r.cases.every((c) => c.failures.length === 0) ? '✓' : '✗'} ${r.file}`);
    for (const c of r.cases) {
      out.push(`  ${c.failures.length === 0 ? '✓' : '✗'} ${c.name}  ${seconds(c.durationMs)}`);
      for (const f of c.failures) {
        out.push(`    ${r.file}:${f.line}:${f.col}: ${f.message}`);
        for (const d of f.details) out.push(`        ${d}`);
      }
    }
  }
  const parts = [`${t.passed} passed`];
  if (t.failed > 0) parts.push(`${t.failed} failed`);
  if (t.invalid > 0) parts.push(`${t.invalid} file${t.invalid === 1 ? '' : 's'} could not run`);
  out.push('', `${parts.join(', ')} — ${t.files} file${t.files === 1 ? '' : 's'} in ${seconds(t.durationMs)}`);
  return `${out.join('\n')}\n`;
}

/** GitHub workflow commands: each failure becomes an annotation on the line of the expectation. */
export function githubReport(results: readonly FileResult[]): string {
  const escape = (s: string): string => s.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
  const prop = (s: string): string => escape(s).replace(/:/g, '%3A').replace(/,/g, '%2C');
  const lines: string[] = [];
  for (const r of results) {
    for (const i of r.issues) lines.push(`::error file=${prop(i.file)},line=${i.line},col=${i.col},title=${prop('ferry test: cannot run')}::${escape(i.message)}`);
    for (const c of r.cases) {
      for (const f of c.failures) {
        lines.push(`::error file=${prop(r.file)},line=${f.line},col=${f.col},title=${prop(`ferry test: ${c.name}`)}::${escape([f.message, ...f.details].join('\n'))}`);
      }
    }
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}

const xml = (s: string): string =>
  s
    // Characters XML 1.0 cannot hold at all are dropped rather than breaking the report.
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');

/** JUnit XML as CI systems read it: a suite per test file, a testcase per case. */
export function junitReport(results: readonly FileResult[], t: Totals): string {
  const out = ['<?xml version="1.0" encoding="UTF-8"?>'];
  out.push(`<testsuites name="ferry test" tests="${t.passed + t.failed + t.invalid}" failures="${t.failed}" errors="${t.invalid}" time="${(t.durationMs / 1000).toFixed(3)}">`);
  for (const r of results) {
    const failed = r.cases.filter((c) => c.failures.length > 0).length;
    const errors = r.issues.length > 0 ? 1 : 0;
    out.push(`  <testsuite name="${xml(r.file)}" file="${xml(r.file)}" tests="${r.cases.length + errors}" failures="${failed}" errors="${errors}" skipped="0" time="${(r.durationMs / 1000).toFixed(3)}">`);
    if (errors) {
      const text = r.issues.map((i) => `${i.file}:${i.line}:${i.col}: ${i.message}`).join('\n');
      out.push(`    <testcase name="${xml(`${r.file} is valid`)}" classname="${xml(r.file)}" file="${xml(r.file)}" time="0">`);
      out.push(`      <error message="${xml(r.issues[0]?.message ?? 'invalid')}" type="invalid">${xml(text)}</error>`);
      out.push('    </testcase>');
    }
    for (const c of r.cases) {
      const attrs = `name="${xml(c.name)}" classname="${xml(r.file)}" file="${xml(r.file)}" line="${c.line}" time="${(c.durationMs / 1000).toFixed(3)}"`;
      if (c.failures.length === 0) {
        out.push(`    <testcase ${attrs}/>`);
        continue;
      }
      const text = c.failures.map((f) => [`${r.file}:${f.line}:${f.col}: ${f.message}`, ...f.details.map((d) => `    ${d}`)].join('\n')).join('\n');
      out.push(`    <testcase ${attrs}>`);
      out.push(`      <failure message="${xml(c.failures[0]?.message ?? 'failed')}" type="expectation">${xml(text)}</failure>`);
      out.push('    </testcase>');
    }
    out.push('  </testsuite>');
  }
  out.push('</testsuites>');
  return `${out.join('\n')}\n`;
}
