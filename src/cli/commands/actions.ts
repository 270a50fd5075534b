import { builtinRegistry } from '../../providers/index.js';
import type { JsonSchema } from '../../workflow/schema.js';
import type { Command } from '../run-command.js';

function typeOf(schema: JsonSchema): string {
  if (schema.enum) return (schema.enum as unknown[]).map((v) => JSON.stringify(v)).join('|');
  if (schema.type) return Array.isArray(schema.type) ? schema.type.join('|') : String(schema.type);
  if (schema.anyOf || schema.oneOf) return ((schema.anyOf ?? schema.oneOf) as JsonSchema[]).map(typeOf).join('|');
  return 'any';
}

export const actionsCommand: Command = {
  usage: 'ferry actions [--json]',
  options: { json: { type: 'boolean', help: 'print the actions and their input schemas as JSON' } },
  async run({ values }, io) {
    const actions = builtinRegistry().actions;
    if (values.json) {
      io.stdout(`${JSON.stringify(actions.map((a) => ({ name: a.fullName, description: a.definition.description, input: a.definition.input, output: a.definition.output ?? null })), null, 2)}\n`);
      return 0;
    }
    for (const a of actions) {
      io.stdout(`${a.fullName}\n  ${a.definition.description}\n`);
      const props = (a.definition.input.properties ?? {}) as Record<string, JsonSchema>;
      const required = new Set((a.definition.input.required as string[] | undefined) ?? []);
      for (const [name, schema] of Object.entries(props)) {
        io.stdout(`    ${(name + (required.has(name) ? '*' : '')).padEnd(24)} ${typeOf(schema).padEnd(16)} ${String(schema.description ?? '')}\n`);
      }
      io.stdout('\n');
    }
    io.stdout('* required\n');
    return 0;
  },
};
