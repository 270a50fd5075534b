import { defineAction } from '../define.js';
import { commonProperties, needsIdentity, sendMessage, type SegmentConfig, type SegmentHost } from './client.js';

interface TrackInput {
  userId?: string;
  anonymousId?: string;
  event: string;
  properties?: Record<string, unknown>;
  [field: string]: unknown;
}

export const track = defineAction<TrackInput, { success: true }, SegmentConfig, SegmentHost>({
  name: 'track',
  description: 'Records an event in Segment.',
  input: {
    type: 'object',
    additionalProperties: false,
    required: ['event'],
    properties: {
      ...commonProperties,
      event: { type: 'string', minLength: 1, description: 'The event name.', examples: ['Order Completed'] },
      properties: { type: 'object', description: 'Event properties.', examples: [{ order_id: '<<order.id>>', total: '<<order.total>>' }] },
    },
    anyOf: needsIdentity,
  },
  output: { type: 'object', description: 'Segment accepted the call (it answers this even for an unknown write key).', properties: { success: { const: true, description: 'Always true.' } } },
  run: (input, context) => sendMessage(context, 'track', input),
});
