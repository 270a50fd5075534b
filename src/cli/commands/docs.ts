import { UsageError } from '../../errors.js';
import { builtinRegistry } from '../../providers/index.js';
import { testFileSchema } from '../../testing/schema.js';
import { workflowSchema } from '../../workflow/validate.js';
import { actionsReference, testReference, workflowReference } from '../reference.js';
import type { Command } from '../run-command.js';

/** Each generated document, by the name `ferry docs` takes; `npm run docs` writes them all. */
export const GENERATED_DOCS: Record<string, { file: string; render(): string }> = {
  'workflow-reference': { file: 'docs/workflow-reference.md', render: () => workflowReference(workflowSchema(builtinRegistry()).schema) },
  'actions-reference': { file: 'docs/actions-reference.md', render: () => actionsReference(builtinRegistry()) },
  'test-reference': { file: 'docs/test-reference.md', render: () => testReference(testFileSchema()) },
  'test-schema': { file: 'schemas/test.schema.json', render: () => `${JSON.stringify(testFileSchema(), null, 2)}\n` },
};

export const docsCommand: Command = {
  usage: `ferry docs <${Object.keys(GENERATED_DOCS).join('|')}> | ferry docs --list`,
  options: { list: { type: 'boolean', help: 'list the documents it can print' } },
  async run({ values, positionals }, io) {
    if (values.list) {
      // `name<TAB>file` per line: what scripts/docs.mjs writes where.
      for (const [name, doc] of Object.entries(GENERATED_DOCS)) io.stdout(`${name}\t${doc.file}\n`);
      return 0;
    }
    const doc = GENERATED_DOCS[positionals[0] ?? ''];
    if (positionals.length !== 1 || !doc) throw new UsageError(`name one of ${Object.keys(GENERATED_DOCS).join(', ')}\nUsage: ${this.usage}`);
    io.stdout(doc.render());
    return 0;
  },
};
