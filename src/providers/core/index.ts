import { defineAction, defineProvider } from '../define.js';
import { ProviderError } from '../../errors.js';
import { answerOf, flattenHeaders, header, send, statusError } from '../http.js';

const log = defineAction<{ message: unknown; level?: 'debug' | 'info' | 'warn' | 'error' }, null>({
  name: 'log',
  description: 'Writes a message to the run output (stderr). `debug` lines show with --verbose.',
  input: {
    type: 'object',
    additionalProperties: false,
    required: ['message'],
    properties: {
      message: { description: 'Text to print; objects print as JSON.', examples: ['synced <<steps.each_user.output.count>> users'] },
      level: { type: 'string', enum: ['debug', 'info', 'warn', 'error'], default: 'info', description: 'Log level.' },
    },
  },
  output: { type: 'null', description: 'Nothing.' },
  async run(input, context) {
    const text = typeof input.message === 'string' ? input.message : JSON.stringify(input.message);
    context.log(input.level ?? 'info', text);
    return null;
  },
});

export const core = defineProvider({
  name: 'core',
  description: 'Built-in steps that call no provider.',
  defaults: { concurrency: 1000 },
  actions: [log],
});

interface HttpRequestInput {
  method?: string;
  url: string;
  headers?: Record<string, string>;
  query?: Record<string, string | number | boolean>;
  json?: unknown;
  body?: string;
  expect?: number[];
}

const httpRequest = defineAction<HttpRequestInput, { status: number; headers: Record<string, string>; body: unknown }>({
  name: 'request',
  description: 'Sends one HTTP request. A status outside `expect` (default: any 2xx) fails the step; 429 and 5xx are retried.',
  input: {
    type: 'object',
    additionalProperties: false,
    required: ['url'],
    properties: {
      method: { type: 'string', enum: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'], default: 'GET', description: 'HTTP method.' },
      url: { type: 'string', pattern: '^https?://', description: 'Absolute http(s) URL.', examples: ['https://api.example.com/users'] },
      headers: { type: 'object', additionalProperties: { type: 'string' }, description: 'Request headers.', examples: [{ authorization: 'Bearer <<secrets.CRM_TOKEN>>' }] },
      query: { type: 'object', additionalProperties: { type: ['string', 'number', 'boolean'] }, description: 'Query parameters added to the URL.', examples: [{ page: 1, email: '<<user.email>>' }] },
      json: { description: 'A JSON body (sets content-type: application/json).', examples: [{ id: '<<user.id>>', email: '<<user.email>>' }] },
      body: { type: 'string', description: 'A raw text body.', examples: ['name=<<user.name>>'] },
      expect: { type: 'array', items: { type: 'integer', minimum: 100, maximum: 599 }, minItems: 1, description: 'Statuses that count as success.', examples: [[200, 404]] },
    },
    not: { required: ['json', 'body'] },
  },
  output: {
    type: 'object',
    description: 'The answer: status, headers (lower-case names) and body.',
    properties: { status: { type: 'integer', description: 'HTTP status.' }, headers: { type: 'object', description: 'Answer headers, lower-case names.' }, body: { description: 'Parsed JSON when the answer is JSON, else text.' } },
  },
  async run(input, context) {
    const url = new URL(input.url);
    for (const [k, v] of Object.entries(input.query ?? {})) url.searchParams.append(k, String(v));
    const headers: Record<string, string> = { ...input.headers };
    let body: string | undefined = input.body;
    if (input.json !== undefined) {
      body = JSON.stringify(input.json);
      if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
    }
    const expected = input.expect;
    return context.call(async (http) => {
      const answer = await send('http', http, {
        method: (input.method ?? 'GET') as 'GET',
        url: url.toString(),
        headers,
        ...(body === undefined ? {} : { body }),
        timeoutMs: context.timeoutMs,
        signal: context.signal,
      });
      const ok = expected ? expected.includes(answer.status) : answer.status >= 200 && answer.status < 300;
      if (!ok) {
        // A JSON body's `error`/`message` is quoted as the server's words; another body follows the URL.
        const said = answerOf(answer.status, answer.text);
        const where = `${input.method ?? 'GET'} ${url.origin}${url.pathname}`;
        const error = statusError('http', answer, said.error === undefined && answer.text ? `${where} ${answer.text.slice(0, 500)}` : where, undefined, said);
        // An expected-list miss on a status that would otherwise count as success is final.
        if (answer.status < 400) throw new ProviderError('http', error.message, { status: answer.status, body: error.body, code: 'FERRY_HTTP_UNEXPECTED_STATUS', answer: said });
        throw error;
      }
      const type = header(answer, 'content-type') ?? '';
      let parsed: unknown = answer.text;
      if (/json/i.test(type) && answer.text !== '') {
        try {
          parsed = JSON.parse(answer.text);
        } catch {
          parsed = answer.text;
        }
      }
      return { status: answer.status, headers: flattenHeaders(answer.headers), body: parsed };
    });
  },
});

export const http = defineProvider({
  name: 'http',
  description: 'Plain HTTP requests to any URL.',
  defaults: { concurrency: 16 },
  actions: [httpRequest],
});
