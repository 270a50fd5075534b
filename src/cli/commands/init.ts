import { appendFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../../errors.js';
import type { Command } from '../run-command.js';

// The scaffold assumes ferry is a dev dependency (installed from its git repository: there is
// no `ferry` package on the npm registry), so the editor schemas are read from node_modules.
const INSTALL = 'npm install --save-dev git+https://github.com/ferry-dev/ferry.git';

const WORKFLOW = `# yaml-language-server: $schema=../node_modules/ferry/schemas/workflow.schema.json
name: sync-users
description: Identify users in Amplitude, and those with an email in Segment.
triggers:
  - type: manual
    inputs:
      users:
        type: array
        items:
          type: object
          required: [id]
          properties:
            id: { type: string }
            email: { type: string }
            plan: { type: string }
        # Replace with your users, or pass --input users=@users.json
        default:
          - { id: user_0001, email: ada@example.com, plan: pro }
          - { id: user_0002, plan: free }
secrets: [AMPLITUDE_API_KEY, SEGMENT_WRITE_KEY]
providers:
  amplitude:
    api_key: <<secrets.AMPLITUDE_API_KEY>>
  segment:
    write_key: <<secrets.SEGMENT_WRITE_KEY>>
steps:
  - id: each_user
    loop:
      over: <<inputs.users>>
      as: user
      concurrency: 10
    steps:
      - id: amp
        action: amplitude.identify_user
        with:
          user_id: <<user.id>>
          user_properties:
            plan: <<default user.plan "free">>
      - id: seg
        action: segment.identify_user
        if: <<user.email>>
        with:
          userId: <<user.id>>
          email: <<user.email>>
          traits:
            plan: <<default user.plan "free">>
  - id: report
    action: core.log
    with:
      message: "synced <<steps.each_user.output.count>> users"
`;

const TEST = `# yaml-language-server: $schema=../node_modules/ferry/schemas/test.schema.json
# Run with \`npx ferry test\`: each case runs against fresh Amplitude and Segment emulators.
workflow: sync-users.yaml
cases:
  - name: identifies every user in Amplitude, and users with an email in Segment
    inputs:
      users:
        - { id: user_0001, email: ada@example.com, plan: pro }
        - { id: user_0002 }
    expect:
      status: succeeded
      outputs:
        each_user: { count: 2 }
      users:
        user_0001: { plan: pro }
        user_0002: { plan: free }
      messages:
        count: 1
        items:
          - { type: identify, userId: user_0001, traits: { email: ada@example.com, plan: pro } }

  - name: retries when Amplitude throttles, and stores each user once
    inputs:
      users: [{ id: user_0001 }]
    faults:
      amplitude: [{ status: 429, times: 2 }]
    expect:
      calls:
        amplitude:
          count: 3
          requests: [{ status: 429 }, { status: 429 }, { status: 200 }]
      identifications: { count: 1 }

  - name: stops at a user Amplitude refuses, naming the loop item
    inputs:
      users: [{ id: user_0001 }, { id: user_0009 }]
    faults:
      amplitude: [{ reject_user: user_0009 }]
    expect:
      status: failed
      error: { step: amp, item: 1 }
`;

const GITHUB = `# Pull requests: every workflow is validated and tested (annotations on the lines at fault).
# Schedule: the workflows run with the keys from Settings → Secrets and variables → Actions.
name: ferry
on:
  pull_request:
  push:
    branches: [main]
  schedule:
    - cron: "17 3 * * *" # every day at 03:17 UTC
  workflow_dispatch:

permissions:
  contents: read

jobs:
  check:
    if: github.event_name == 'pull_request' || github.event_name == 'push'
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-node@v4
        with:
          node-version: 20
          cache: npm
      - run: npm ci
      - name: Validate workflows
        run: ./node_modules/.bin/ferry validate workflows --format github
      - name: Test workflows
        run: ./node_modules/.bin/ferry test workflows --reporter github --reporter junit --output reports/ferry-test.xml
      - uses: actions/upload-artifact@v4
        if: always()
        with:
          name: ferry-test-report
          path: reports/ferry-test.xml

  run:
    if: github.event_name == 'schedule' || github.event_name == 'workflow_dispatch'
    runs-on: ubuntu-latest
    # One run at a time: a slow run is never overtaken by the next schedule.
    concurrency:
      group: ferry-run
      cancel-in-progress: false
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-node@v4
        with:
          node-version: 20
          cache: npm
      - run: npm ci
      # A cancelled job signals the step's shell only, and \`npx\` would not pass it on: with
      # \`exec\` of the installed binary, the shell is ferry, which stops gracefully (calls on
      # the wire finish, the journal records where it stopped) so that a retry goes on from there.
      - name: Run sync-users
        run: exec ./node_modules/.bin/ferry run workflows/sync-users.yaml
        env:
          AMPLITUDE_API_KEY: \${{ secrets.AMPLITUDE_API_KEY }}
          SEGMENT_WRITE_KEY: \${{ secrets.SEGMENT_WRITE_KEY }}
      # A failed run keeps its journal: download it and resume with \`npx ferry retry <run-id>\`.
      - uses: actions/upload-artifact@v4
        if: failure()
        with:
          name: ferry-state
          path: .ferry
          include-hidden-files: true
`;

/** The files `ferry init` writes, relative to the target folder. */
export const SCAFFOLD: readonly { path: string; text: string }[] = [
  { path: 'workflows/sync-users.yaml', text: WORKFLOW },
  { path: 'workflows/sync-users.test.yaml', text: TEST },
  { path: '.github/workflows/ferry.yml', text: GITHUB },
];

export const initCommand: Command = {
  usage: 'ferry init [dir]',
  options: {},
  async run({ positionals }, io) {
    if (positionals.length > 1) throw new UsageError(`name at most one folder\nUsage: ${this.usage}`);
    const dir = path.resolve(io.cwd, positionals[0] ?? '.');
    const shown = (p: string): string => path.relative(io.cwd, path.join(dir, p)) || p;
    const existing: string[] = [];
    for (const file of SCAFFOLD) {
      if (await stat(path.join(dir, file.path)).then(() => true, () => false)) existing.push(shown(file.path));
    }
    if (existing.length > 0) {
      throw new UsageError(`not overwriting ${existing.join(', ')}; move ${existing.length === 1 ? 'it' : 'them'} away or run \`ferry init\` in another folder`, 'FERRY_INIT_EXISTS');
    }
    for (const file of SCAFFOLD) {
      const target = path.join(dir, file.path);
      await mkdir(path.dirname(target), { recursive: true });
      // `wx`: a file that appeared since the check above is still not overwritten.
      await writeFile(target, file.text, { flag: 'wx' });
      io.stdout(`created ${shown(file.path)}\n`);
    }
    io.stdout(await ignoreStateDir(dir, shown('.gitignore')));
    const rel = path.relative(io.cwd, dir);
    const next = [
      ...(rel ? [`  cd ${rel}`] : []),
      ...((await hasFerry(dir)) ? [] : [`  ${INSTALL}     # ferry is not on the npm registry: npm builds it from git`]),
      '  npx ferry validate workflows',
      '  npx ferry test workflows',
      '  npx ferry run workflows/sync-users.yaml --dry-run',
      '  then add AMPLITUDE_API_KEY and SEGMENT_WRITE_KEY in the repository settings (Secrets and variables → Actions)',
    ];
    io.stdout(`\nnext:\n${next.join('\n')}\n`);
    return 0;
  },
};

/** Runs are local state, never committed: `.ferry/` goes into the folder's .gitignore, once. */
async function ignoreStateDir(dir: string, shown: string): Promise<string> {
  const file = path.join(dir, '.gitignore');
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (text === undefined) {
    await writeFile(file, '.ferry/\n', { flag: 'wx' });
    return `created ${shown} (.ferry/: the runs' journals stay out of git)\n`;
  }
  if (text.split(/\r?\n/).some((line) => /^\/?\.ferry\/?$/.test(line.trim()))) return '';
  await appendFile(file, `${text === '' || text.endsWith('\n') ? '' : '\n'}.ferry/\n`);
  return `added .ferry/ to ${shown} (the runs' journals stay out of git)\n`;
}

/** Whether the folder's package.json already depends on ferry (then the hint skips the install). */
async function hasFerry(dir: string): Promise<boolean> {
  const text = await readFile(path.join(dir, 'package.json'), 'utf8').catch(() => undefined);
  if (text === undefined) return false;
  try {
    const pkg = JSON.parse(text) as { dependencies?: Record<string, unknown>; devDependencies?: Record<string, unknown> };
    return pkg.devDependencies?.ferry !== undefined || pkg.dependencies?.ferry !== undefined;
  } catch {
    return false;
  }
}
