/**
 * ferry's error hierarchy: one class per failure a user acts on. Every error carries a
 * stable `code` (listed in docs/ERRORS.md); retryability is decided in engine/retry.ts from
 * `status` and `code`, never from message text.
 */
export class FerryError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A position in a workflow file, 1-based. */
export interface SourcePosition {
  file: string;
  line: number;
  col: number;
}

/** One problem found in a workflow file. */
export interface WorkflowIssue extends SourcePosition {
  code: string;
  message: string;
}

/** A workflow file that cannot be loaded: holds every issue found in it. */
export class WorkflowError extends FerryError {
  readonly issues: WorkflowIssue[];
  readonly file: string;
  readonly line: number;
  readonly col: number;
  constructor(issues: WorkflowIssue[]) {
    const first = issues[0];
    super(first?.code ?? 'FERRY_WORKFLOW_INVALID', issues.map(formatIssue).join('\n'));
    this.issues = issues;
    this.file = first?.file ?? '';
    this.line = first?.line ?? 0;
    this.col = first?.col ?? 0;
  }
}

export function formatIssue(issue: WorkflowIssue): string {
  return `${issue.file}:${issue.line}:${issue.col}: ${issue.message}`;
}

/** A template that cannot be rendered: a missing path, a helper that failed. */
export class TemplateError extends FerryError {
  readonly template: string;
  step: string | undefined;
  field: string | undefined;
  constructor(code: string, message: string, template: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.template = template;
  }
}

/** Inputs that do not match an action's input schema, or a run's trigger inputs. */
export class ActionInputError extends FerryError {
  /** The input field at fault, as a JSON pointer-ish path (`user_properties_json`, `events/0/time`). */
  readonly field: string;
  constructor(message: string, field: string, code = 'FERRY_ACTION_INPUT') {
    super(code, message);
    this.field = field;
  }
}

/**
 * What a provider answered, in its own words, kept beside ferry's explanation (DESIGN.md §4):
 * it goes into the run error, the journal and `ferry show`.
 */
export interface ProviderAnswer {
  status: number;
  /** The provider's own error text: Amplitude's `error`, Segment's `error`, a JSON body's `error` or `message`. */
  error?: string;
  /**
   * The answer's other structured fields, limited to what concerns the failed call or loop
   * item: for one event of an Amplitude batch, `{ invalid_fields: ["time"] }`, not the whole batch's indexes.
   */
  detail?: Record<string, unknown>;
  /** An excerpt of a body that holds no such text (HTML, plain text), cut to a readable length. */
  body?: string;
}

/** A provider answered with an error, or could not be reached. */
export class ProviderError extends FerryError {
  readonly provider: string;
  /** HTTP status, or undefined for a network error or timeout. */
  readonly status: number | undefined;
  /** The answer body (text), cut to a readable length. */
  readonly body: string | undefined;
  /** How long the provider asked us to wait (Retry-After or a documented pause), in ms. */
  readonly retryAfterMs: number | undefined;
  /** The provider's answer as it concerns this call or item; undefined when nothing came back. */
  readonly answer: ProviderAnswer | undefined;
  /** The `Retry-After` header as sent, when `retryAfterMs` was read from it. */
  readonly retryAfterHeader: string | undefined;
  constructor(
    provider: string,
    message: string,
    details: {
      status?: number | undefined;
      body?: string | undefined;
      retryAfterMs?: number | undefined;
      retryAfterHeader?: string | undefined;
      code?: string | undefined;
      answer?: ProviderAnswer | undefined;
      cause?: unknown;
    } = {},
  ) {
    super(details.code ?? (details.status === undefined ? 'FERRY_PROVIDER_NETWORK' : 'FERRY_PROVIDER_STATUS'), message, { cause: details.cause });
    this.provider = provider;
    this.status = details.status;
    this.body = details.body;
    this.retryAfterMs = details.retryAfterMs;
    this.answer = details.answer;
    this.retryAfterHeader = details.retryAfterHeader;
  }
}

/** A run stopped because a step failed after its retries. */
export class RunFailedError extends FerryError {
  readonly step: string;
  readonly item: number[] | null;
  /** The line of the loop file the failed item came from (1-based; a CSV's header is line 1). */
  readonly line: number | undefined;
  constructor(step: string, item: number[] | null, message: string, options?: { cause?: unknown; line?: number }) {
    super('FERRY_RUN_FAILED', message, options);
    this.step = step;
    this.item = item;
    this.line = options?.line;
  }
}

/** Bad command line use or run inputs: exit code 2. */
export class UsageError extends FerryError {
  constructor(message: string, code = 'FERRY_USAGE') {
    super(code, message);
  }
}

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
