import { defineProvider } from '../define.js';
import { basicAuth, HOSTS } from './client.js';
import { identifyUser } from './identify-user.js';
import { track } from './track.js';

export const segment = defineProvider({
  name: 'segment',
  description: 'Segment HTTP Tracking API.',
  config: {
    properties: {
      write_key: { type: 'string', minLength: 1, description: 'Source write key; usually `<<secrets.SEGMENT_WRITE_KEY>>`.', examples: ['<<secrets.SEGMENT_WRITE_KEY>>'] },
    },
    required: ['write_key'],
  },
  hosts: HOSTS,
  secretFields: ['write_key'],
  credentialForms: (config) => {
    if (typeof config.write_key !== 'string') return [];
    const { header, encoded } = basicAuth(config.write_key);
    return [header, encoded];
  },
  // Segment allows about 1000 requests/s per workspace; 20 in flight stays far below it.
  defaults: { concurrency: 20 },
  actions: [identifyUser, track],
});
