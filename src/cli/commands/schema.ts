import { builtinRegistry } from '../../providers/index.js';
import { workflowSchema } from '../../workflow/validate.js';
import type { Command } from '../run-command.js';

export const schemaCommand: Command = {
  usage: 'ferry schema',
  options: {},
  async run(_args, io) {
    io.stdout(`${JSON.stringify(workflowSchema(builtinRegistry()).schema, null, 2)}\n`);
    return 0;
  },
};
