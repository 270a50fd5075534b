import { ActionInputError } from '../../errors.js';
import { defineAction } from '../define.js';
import { commonProperties, needsIdentity, sendMessage, type SegmentConfig, type SegmentHost } from './client.js';

interface IdentifyInput {
  userId?: string;
  anonymousId?: string;
  email?: string;
  name?: string;
  traits?: Record<string, unknown> | string;
  [field: string]: unknown;
}

export const identifyUser = defineAction<IdentifyInput, { success: true }, SegmentConfig, SegmentHost>({
  name: 'identify_user',
  description: 'Identifies a user in Segment with traits; `email` and `name` are sent inside traits.',
  input: {
    type: 'object',
    additionalProperties: false,
    properties: {
      ...commonProperties,
      email: { type: 'string', description: 'Sent as traits.email.', examples: ['<<user.email>>'] },
      name: { type: 'string', description: 'Sent as traits.name.', examples: ['<<user.name>>'] },
      traits: { type: ['object', 'string'], description: 'Traits as an object, or a JSON string of an object.', examples: ['<<user.traits>>'] },
    },
    anyOf: needsIdentity,
  },
  output: { type: 'object', description: 'Segment accepted the call (it answers this even for an unknown write key).', properties: { success: { const: true, description: 'Always true.' } } },
  checks: [{ reads: ['traits'], check: (input) => void (typeof input.traits === 'string' && parseTraits(input.traits)) }],
  prepare(input) {
    const traits = typeof input.traits === 'string' ? parseTraits(input.traits) : (input.traits ?? {});
    const { email, name, traits: _traits, ...rest } = input;
    return { ...rest, traits: { ...traits, ...(email === undefined ? {} : { email }), ...(name === undefined ? {} : { name }) } };
  },
  run: (input, context) => sendMessage(context, 'identify', input),
});

/** The object a `traits` string holds. */
function parseTraits(text: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ActionInputError(`\`traits\` is not valid JSON: ${(error as Error).message}`, 'traits');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ActionInputError('`traits` must hold a JSON object', 'traits');
  return parsed as Record<string, unknown>;
}
