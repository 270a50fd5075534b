import type { Dispatcher } from 'undici';
import type { ProviderError } from '../../errors.js';
import type { ActionContext, BatchContext, BatchDeclaration } from '../define.js';
import { answerOf, header, send, statusError, type HttpAnswer } from '../http.js';

export interface AmplitudeConfig {
  [field: string]: unknown;
  api_key: string;
  secret_key?: string;
}

/**
 * Amplitude's hosts by region: ingestion (Identify, HTTP V2) and export. The engine gives an
 * action the account's URL of each as `context.urls` (a block's `base_url` replaces both).
 */
export const HOSTS = {
  ingest: { us: 'https://api2.amplitude.com', eu: 'https://api.eu.amplitude.com' },
  export: { us: 'https://amplitude.com', eu: 'https://analytics.eu.amplitude.com' },
};
export type AmplitudeHost = keyof typeof HOSTS;

export type AmplitudeContext = ActionContext<AmplitudeConfig, AmplitudeHost>;
export type AmplitudeBatchContext = BatchContext<AmplitudeConfig, AmplitudeHost>;
export type AmplitudeBatch<Item, Result, Variant extends number | undefined = undefined> = BatchDeclaration<Item, Result, AmplitudeConfig, AmplitudeHost, Variant>;

/**
 * The Export API's Authorization header: Basic auth with `api_key:secret_key`. Its forms are
 * declared for redaction (see `credentialForms`) from this same function.
 */
export function exportAuth(config: AmplitudeConfig): { header: string; encoded: string } {
  const encoded = Buffer.from(`${config.api_key}:${config.secret_key ?? ''}`).toString('base64');
  return { header: `Basic ${encoded}`, encoded };
}

/** Amplitude's documented pauses when a 429 carries no Retry-After (PROVIDERS.md). */
export const THROTTLE_WAIT_MS = { events: 30_000, identify: 15_000 };

/**
 * Amplitude answers JSON with an `error` field (the Identify API answers plain text): the
 * message quotes it and adds the part a user acts on.
 */
export function amplitudeError(answer: HttpAnswer, throttleWaitMs: number): ProviderError {
  const said = answerOf(answer.status, answer.text, { textIsError: true });
  let explanation: string | undefined;
  try {
    const body = JSON.parse(answer.text) as { missing_field?: string; events_with_invalid_fields?: unknown; events_with_missing_fields?: unknown };
    const parts: string[] = [];
    if (body.missing_field) parts.push(`missing field ${body.missing_field}`);
    if (body.events_with_invalid_fields) parts.push(`invalid fields ${JSON.stringify(body.events_with_invalid_fields)}`);
    if (body.events_with_missing_fields) parts.push(`missing fields ${JSON.stringify(body.events_with_missing_fields)}`);
    explanation = parts.join('; ') || undefined;
  } catch {
    // Plain text: it is the error text, quoted as such.
  }
  // A 429 without Retry-After still asks for Amplitude's documented pause.
  const wait = answer.status === 429 && header(answer, 'retry-after') === undefined ? throttleWaitMs : undefined;
  return statusError('amplitude', answer, explanation, wait, said);
}

/** One POST attempt and its answer, whatever the status; a network failure throws. */
export function postAnswer(http: Dispatcher, context: AmplitudeBatchContext, url: string, body: string, contentType: string): Promise<HttpAnswer> {
  return send('amplitude', http, { method: 'POST', url, body, headers: { 'content-type': contentType }, timeoutMs: context.timeoutMs, signal: context.signal });
}

/** One POST attempt; a non-200 answer becomes a ProviderError for the retry policy to judge. */
export async function post(http: Dispatcher, context: AmplitudeBatchContext, url: string, body: string, contentType: string, throttleWaitMs: number): Promise<HttpAnswer> {
  const answer = await postAnswer(http, context, url, body, contentType);
  if (answer.status !== 200) throw amplitudeError(answer, throttleWaitMs);
  return answer;
}
