import { defineProvider } from '../define.js';
import { exportAuth, HOSTS, type AmplitudeConfig } from './client.js';
import { exportEvents } from './export-events.js';
import { identifyUser } from './identify-user.js';
import { sendEvent } from './send-event.js';

export const amplitude = defineProvider({
  name: 'amplitude',
  description: 'Amplitude: Identify, HTTP V2 and Export APIs.',
  config: {
    properties: {
      api_key: { type: 'string', minLength: 1, description: 'Project API key; usually `<<secrets.AMPLITUDE_API_KEY>>`.', examples: ['<<secrets.AMPLITUDE_API_KEY>>'] },
      secret_key: { type: 'string', minLength: 1, description: 'Project secret key, needed by `export_events` only.', examples: ['<<secrets.AMPLITUDE_SECRET_KEY>>'] },
    },
    required: ['api_key'],
  },
  hosts: HOSTS,
  secretFields: ['api_key', 'secret_key'],
  // A project is its API key: the secret key (export only) belongs to the same project and limits.
  accountFields: ['api_key'],
  // The API key travels in clear in the Identify form and the HTTP V2 body (covered by
  // secretFields); only the Export API encodes it, together with the secret key.
  credentialForms: (config) => {
    if (typeof config.api_key !== 'string') return [];
    const { header, encoded } = exportAuth(config as AmplitudeConfig);
    return [header, encoded];
  },
  // Amplitude throttles per user/device (30 events/s); 10 in flight keeps a loop well inside it.
  defaults: { concurrency: 10 },
  actions: [identifyUser, sendEvent, exportEvents],
});
