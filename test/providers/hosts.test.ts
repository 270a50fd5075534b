import { describe, expect, it } from 'vitest';
import { exportUrl, ingestUrl } from '../../src/providers/amplitude/client.js';

describe('Amplitude hosts', () => {
  it.each([
    [{ api_key: 'k' }, 'https://api2.amplitude.com/identify', 'https://amplitude.com/api/2/export'],
    [{ api_key: 'k', region: 'eu' as const }, 'https://api.eu.amplitude.com/identify', 'https://analytics.eu.amplitude.com/api/2/export'],
    [{ api_key: 'k', region: 'eu' as const, base_url: 'http://127.0.0.1:9100/' }, 'http://127.0.0.1:9100/identify', 'http://127.0.0.1:9100/api/2/export'],
  ])('region and base_url pick the ingestion and export hosts (%j)', (config, ingest, exp) => {
    expect(ingestUrl(config, '/identify')).toBe(ingest);
    expect(exportUrl(config, '/api/2/export')).toBe(exp);
  });
});
