import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { fastRetry, runAgainst, sandboxProviders, SEGMENT_KEY } from '../helpers/sandbox.js';

let sandbox: Sandbox;
beforeAll(async () => {
  sandbox = await startSandbox();
});
afterAll(async () => sandbox.close());
beforeEach(() => sandbox.segment.reset());

const flow = (action: string, withBlock: string): string => `
name: seg
${fastRetry}
${sandboxProviders(sandbox)}
steps:
  - id: seg
    action: segment.${action}
    with:
${withBlock}
`;

describe('segment.identify_user', () => {
  it('sends Basic auth with the write key, email and name inside traits, and a derived messageId', async () => {
    const summary = await runAgainst(flow('identify_user', `      userId: user_1001
      email: ada@example.com
      name: Ada
      traits: '{"plan":"pro"}'`), { runId: 'RUN_S' });
    expect(summary.status).toBe('succeeded');
    expect(summary.steps.seg?.output).toEqual({ success: true });
    const [req] = sandbox.segment.requests;
    expect(req?.path).toBe('/v1/identify');
    expect(req?.headers.authorization).toBe(`Basic ${Buffer.from(`${SEGMENT_KEY}:`).toString('base64')}`);
    const body = req?.body as Record<string, unknown>;
    expect(body).toMatchObject({ type: 'identify', userId: 'user_1001', traits: { plan: 'pro', email: 'ada@example.com', name: 'Ada' } });
    expect(body.messageId).toMatch(/^ferry-[0-9a-f]{24}-0$/);
  });

  it('accepts traits as an object and reports invalid JSON traits as an input error', async () => {
    const ok = await runAgainst(flow('identify_user', `      userId: user_1001
      traits: { plan: pro }`));
    expect(ok.status).toBe('succeeded');
    const bad = await runAgainst(flow('identify_user', `      userId: user_1001
      traits: <<inputs.traits>>`), { inputs: { traits: '{plan}' } });
    expect(bad.error?.message).toMatch(/`traits` is not valid JSON/);
    expect(sandbox.segment.requests).toHaveLength(1);
  });

  it('refuses a message over 32 KB before sending', async () => {
    const summary = await runAgainst(flow('identify_user', `      userId: user_1001
      traits: { blob: "${'x'.repeat(33 * 1024)}" }`));
    expect(summary.error?.message).toMatch(/Segment accepts at most 32768 bytes/);
    expect(sandbox.segment.requests).toHaveLength(0);
  });
});

describe('segment.track', () => {
  it('sends the event with properties and converts a ms timestamp to ISO', async () => {
    const summary = await runAgainst(flow('track', `      userId: user_1001
      event: Order Completed
      properties: { total: 42 }
      timestamp: 1764064800000`));
    expect(summary.status).toBe('succeeded');
    expect(sandbox.segment.requests[0]?.body).toMatchObject({ type: 'track', event: 'Order Completed', properties: { total: 42 }, timestamp: '2025-11-25T10:00:00.000Z' });
  });

  it('sends the message as written, then its type, then the derived messageId, as one JSON text', async () => {
    const summary = await runAgainst(flow('track', `      userId: user_1001
      event: Order Completed
      properties: { total: 42, plan: pro }`), { runId: 'RUN_T' });
    expect(summary.status).toBe('succeeded');
    const raw = sandbox.segment.requests[0]?.rawBody ?? '';
    const messageId = (JSON.parse(raw) as { messageId: string }).messageId;
    expect(messageId).toMatch(/^ferry-[0-9a-f]{24}-0$/);
    expect(raw).toBe(`{"userId":"user_1001","event":"Order Completed","properties":{"total":42,"plan":"pro"},"type":"track","messageId":"${messageId}"}`);
  });

  it('keeps a given messageId, and the emulator counts a resend as a duplicate', async () => {
    const yaml = flow('track', `      userId: user_1001
      event: x
      messageId: order-77`);
    await runAgainst(yaml);
    await runAgainst(yaml);
    expect(sandbox.segment.messages.size).toBe(1);
    expect(sandbox.segment.duplicateMessageIds).toBe(1);
  });

  it('waits for Retry-After on 429 and succeeds', async () => {
    sandbox.segment.inject({ kind: 'status', status: 429, retryAfter: 1 });
    const summary = await runAgainst(flow('track', `      anonymousId: anon-1
      event: x`));
    expect(summary.status).toBe('succeeded');
    const [a, b] = sandbox.segment.requests;
    expect((b?.at ?? 0) - (a?.at ?? 0)).toBeGreaterThanOrEqual(950);
  });
});
