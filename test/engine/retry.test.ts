import { describe, expect, it } from 'vitest';
import { ProviderError } from '../../src/errors.js';
import { backoffMs, decide, outcomeOf, type FailedOutcome } from '../../src/engine/retry.js';
import type { RetryPolicy } from '../../src/workflow/types.js';

const policy: RetryPolicy = { attempts: 3, initialMs: 100, factor: 2, maxMs: 1000, jitter: 'none' };
const jittered: RetryPolicy = { ...policy, jitter: 'full' };
const MAX_WAIT = 60_000;

const status = (s: number, extra: { retryAfterMs?: number; code?: string } = {}) => new ProviderError('amplitude', `answered ${s}`, { status: s, ...extra });
const network = (code: string) => new ProviderError('amplitude', 'could not be reached', { code });

describe('outcomeOf: a thrown error judged by status and code only', () => {
  it.each([
    ['429 without a wait', status(429), 'throttled', undefined],
    ['429 with Retry-After', status(429, { retryAfterMs: 2000 }), 'throttled', 2000],
    ['503 with Retry-After', status(503, { retryAfterMs: 1000 }), 'throttled', 1000],
    ['500', status(500), 'retryable', undefined],
    ['502', status(502), 'retryable', undefined],
    ['503', status(503), 'retryable', undefined],
    ['501', status(501), 'final', undefined],
    ['413', status(413), 'split', undefined],
    ['400', status(400), 'final', undefined],
    ['401', status(401), 'final', undefined],
    ['404', status(404), 'final', undefined],
    ['a connection error', network('FERRY_PROVIDER_NETWORK'), 'retryable', undefined],
    ['a timeout', network('FERRY_PROVIDER_TIMEOUT'), 'retryable', undefined],
    ['a call not sent because the run stops', network('FERRY_ABORTED'), 'final', undefined],
    ['a wait over max_wait', status(429, { code: 'FERRY_PROVIDER_WAIT_TOO_LONG', retryAfterMs: 9e9 }), 'final', undefined],
    ['an error that is not a provider error', new TypeError('boom'), 'final', undefined],
  ])('%s is %s', (_name, error, kind, afterMs) => {
    const outcome = outcomeOf(error);
    expect(outcome.kind).toBe(kind);
    if (outcome.kind === 'throttled') expect(outcome.afterMs).toBe(afterMs);
  });

  it('never reads the message: a 400 saying "retry later, server overloaded (503)" is final', () => {
    expect(outcomeOf(new ProviderError('http', 'retry later, server overloaded (503) timeout ECONNRESET', { status: 400 })).kind).toBe('final');
  });
});

describe('decide: the one retry decision for single calls and batched items', () => {
  const error = status(503);
  const cases: [string, FailedOutcome, number, RetryPolicy, ReturnType<typeof decide>][] = [
    ['retryable, first try: the first backoff', { kind: 'retryable', error }, 1, policy, { retry: true, waitMs: 100, pauseQueue: false }],
    ['retryable, second try: the backoff doubles', { kind: 'retryable', error }, 2, policy, { retry: true, waitMs: 200, pauseQueue: false }],
    ['retryable, tries used up', { kind: 'retryable', error }, 3, policy, { retry: false, error }],
    ['retryable, backoff capped at max', { kind: 'retryable', error }, 9, { ...policy, attempts: 10 }, { retry: true, waitMs: 1000, pauseQueue: false }],
    ['throttled with a wait: the queue pauses for it', { kind: 'throttled', error, afterMs: 5000 }, 1, policy, { retry: true, waitMs: 5000, pauseQueue: true }],
    ['throttled without a wait: the backoff, no pause', { kind: 'throttled', error, afterMs: undefined }, 2, policy, { retry: true, waitMs: 200, pauseQueue: false }],
    ['throttled, tries used up', { kind: 'throttled', error, afterMs: 5000 }, 3, policy, { retry: false, error }],
    ['resend: at once, whatever the tries', { kind: 'resend', error }, 3, policy, { retry: true, waitMs: 0, pauseQueue: false }],
    ['auth: never retried', { kind: 'auth', error }, 1, policy, { retry: false, error }],
    ['item-fault: never retried', { kind: 'item-fault', error }, 1, policy, { retry: false, error }],
    ['final: never retried', { kind: 'final', error }, 1, policy, { retry: false, error }],
    ['a split that reached a lone item: final', { kind: 'split', error }, 1, policy, { retry: false, error }],
  ];
  it.each(cases)('%s', (_name, outcome, tries, p, expected) => {
    expect(decide(outcome, tries, p, MAX_WAIT)).toEqual(expected);
  });

  it('fails at once, naming the wait and the cap, when the provider asks to wait longer than max_wait, even with tries left', () => {
    const asked = new ProviderError('segment', 'answered 429', { status: 429, retryAfterMs: 3_600_000, retryAfterHeader: '3600' });
    const decision = decide({ kind: 'throttled', error: asked, afterMs: 3_600_000 }, 1, policy, 120_000);
    expect(decision.retry).toBe(false);
    const tooLong = (decision as { error: ProviderError }).error;
    expect(tooLong.code).toBe('FERRY_PROVIDER_WAIT_TOO_LONG');
    expect(tooLong.message).toContain('segment asked to wait 1h (Retry-After: 3600); longer than the 2m this workflow allows (providers.segment.max_wait)');
  });

  it('picks a full-jitter backoff uniformly between 0 and the exponential wait', () => {
    expect(decide({ kind: 'retryable', error }, 2, jittered, MAX_WAIT, () => 0)).toEqual({ retry: true, waitMs: 0, pauseQueue: false });
    expect(decide({ kind: 'retryable', error }, 2, jittered, MAX_WAIT, () => 0.5)).toEqual({ retry: true, waitMs: 100, pauseQueue: false });
    expect(decide({ kind: 'retryable', error }, 2, jittered, MAX_WAIT, () => 0.999)).toEqual({ retry: true, waitMs: 200, pauseQueue: false });
    expect(backoffMs(2, jittered, () => 0.25)).toBe(50);
  });

  it('never applies jitter to a wait the provider asked for', () => {
    expect(decide({ kind: 'throttled', error, afterMs: 1500 }, 1, jittered, MAX_WAIT, () => 0)).toEqual({ retry: true, waitMs: 1500, pauseQueue: true });
  });
});
