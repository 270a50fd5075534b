import { describe, expect, it } from 'vitest';
import { accountUrls } from '../../src/engine/accounts.js';
import { defineProvider } from '../../src/providers/define.js';
import { amplitude } from '../../src/providers/amplitude/index.js';
import { segment } from '../../src/providers/segment/index.js';

// Providers declare their hosts; the engine resolves an account's URLs once per step and hands
// them to the actions as `context.urls` (no action reads `base_url` or `region`).
describe('provider hosts', () => {
  it.each([
    [{ api_key: 'k' }, { ingest: 'https://api2.amplitude.com', export: 'https://amplitude.com' }],
    [{ api_key: 'k', region: 'eu' }, { ingest: 'https://api.eu.amplitude.com', export: 'https://analytics.eu.amplitude.com' }],
    [{ api_key: 'k', region: 'eu', base_url: 'http://127.0.0.1:9100/' }, { ingest: 'http://127.0.0.1:9100', export: 'http://127.0.0.1:9100' }],
  ])('region and base_url pick the Amplitude ingestion and export URLs (%j)', (config, urls) => {
    expect(accountUrls(amplitude, config)).toEqual(urls);
  });

  it.each([
    [{ write_key: 'w' }, { api: 'https://api.segment.io' }],
    [{ write_key: 'w', region: 'eu' }, { api: 'https://events.eu1.segmentapis.com' }],
    [{ write_key: 'w', base_url: 'http://127.0.0.1:9200//' }, { api: 'http://127.0.0.1:9200' }],
  ])('region and base_url pick the Segment URL (%j)', (config, urls) => {
    expect(accountUrls(segment, config)).toEqual(urls);
  });

  it('says which host a region lacks and what to set instead', () => {
    const provider = defineProvider({ name: 'crm', description: 'x', hosts: { api: { us: 'https://us.example' } }, defaults: { concurrency: 1 }, actions: [] });
    expect(() => accountUrls(provider, { region: 'eu' })).toThrow('provider `crm` has no `api` host in region `eu` (it has us); set `base_url` or another `region`');
    expect(accountUrls(provider, {})).toEqual({ api: 'https://us.example' });
  });
});
