import { defineAction, defineProvider } from '../define.js';
import { ProviderError } from '../../errors.js';
import { answerOf, flattenHeaders, header, send, statusError, type HttpAnswer } from '../http.js';

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

/** Inside a loop, `headers` and `body` are left out when no template reads them (ActionContext.outputReads). */
interface HttpRequestOutput {
  status: number;
  headers?: Record<string, string>;
  body?: unknown;
}

const httpRequest = defineAction<HttpRequestInput, HttpRequestOutput>({
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
    description:
      'The answer: status, headers (lower-case names) and body. Inside a loop, `headers` and `body` are kept only when a template reads them (`steps.<id>.output.body` in a later step of the item, or the loop\'s `items` after it); otherwise the step\'s output is `{ status }`.',
    properties: { status: { type: 'integer', description: 'HTTP status.' }, headers: { type: 'object', description: 'Answer headers, lower-case names.' }, body: { description: 'Parsed JSON when the answer is JSON, else text.' } },
  },
  async run(input, context) {
    const url = new URL(input.url);
    if (input.query !== undefined) for (const [k, v] of Object.entries(input.query)) url.searchParams.append(k, String(v));
    const method = input.method ?? 'GET';
    // The input's own headers are sent as they are; a copy only when one is added.
    let headers = input.headers ?? NO_HEADERS;
    let body: string | undefined = input.body;
    if (input.json !== undefined) {
      body = JSON.stringify(input.json);
      if (!hasHeader(headers, 'content-type')) headers = { ...headers, 'content-type': 'application/json' };
    }
    const expected = input.expect;
    // A loop that nobody reads the answers of keeps only each one's status: no header object
    // and no parsed body per item, for the loop's whole length.
    const reads = context.outputReads;
    const keepHeaders = reads === undefined || reads.has('headers');
    const keepBody = reads === undefined || reads.has('body');
    return context.call(async (http) => {
      const answer = await send('http', http, { method: method as 'GET', url, headers, ...(body === undefined ? {} : { body }), timeoutMs: context.timeoutMs, signal: context.signal });
      const ok = expected ? expected.includes(answer.status) : answer.status >= 200 && answer.status < 300;
      if (!ok) {
        // A JSON body's `error`/`message` is quoted as the server's words; another body follows the URL.
        const said = answerOf(answer.status, answer.text);
        const where = `${method} ${url.origin}${url.pathname}`;
        const error = statusError('http', answer, said.error === undefined && answer.text ? `${where} ${answer.text.slice(0, 500)}` : where, undefined, said);
        // An expected-list miss on a status that would otherwise count as success is final.
        if (answer.status < 400) throw new ProviderError('http', error.message, { status: answer.status, body: error.body, code: 'FERRY_HTTP_UNEXPECTED_STATUS', answer: said });
        throw error;
      }
      const output: HttpRequestOutput = { status: answer.status };
      if (keepHeaders) output.headers = flattenHeaders(answer.headers);
      if (keepBody) output.body = bodyOf(answer);
      return output;
    });
  },
});

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

function hasHeader(headers: Readonly<Record<string, string>>, name: string): boolean {
  for (const key in headers) if (key.toLowerCase() === name) return true;
  return false;
}

/** Parsed JSON when the answer says it is JSON (and it parses), else the text. */
function bodyOf(answer: HttpAnswer): unknown {
  if (answer.text === '' || !/json/i.test(header(answer, 'content-type') ?? '')) return answer.text;
  try {
    return JSON.parse(answer.text) as unknown;
  } catch {
    return answer.text;
  }
}

export const http = defineProvider({
  name: 'http',
  description: 'Plain HTTP requests to any URL.',
  defaults: { concurrency: 16 },
  actions: [httpRequest],
});
