import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { errorMessage } from '../errors.js';
import { splitTarget, type Handler, type HandlerResponse } from './handler.js';

/** DESIGN.md §6: a delivery's body is at most 1 MiB. */
export const MAX_BODY_BYTES = 1024 * 1024;

export interface ListenOptions {
  handler: Handler;
  /** @default '127.0.0.1' */
  host?: string;
  /** 0 picks a free port. @default 8787 */
  port?: number;
  /** Bodies over this many bytes are answered 413 without being read. @default MAX_BODY_BYTES */
  maxBodyBytes?: number;
  /** Where request-level failures (a handler that threw) and refused requests are reported. */
  log: (line: string) => void;
}

export interface Listener {
  /** `http://host:port`, with the port actually bound. */
  url: string;
  port: number;
  /**
   * Stops accepting: the listening socket closes, idle connections are closed, and requests
   * that still arrive on open connections are answered 503. Requests already being handled
   * finish. Resolves once every connection is gone.
   */
  close(): Promise<void>;
  /** Cuts every connection still open, answered or not: the end of a drain that took too long. */
  closeAll(): void;
}

/** Bytes the sender may still push after a 413 before we stop reading them. */
const LINGER_BYTES = 4 * MAX_BODY_BYTES;
/** How long a connection lingers after a 413 to let the sender read it. */
const LINGER_MS = 2_000;

const TOO_LARGE = Symbol('too large');

type ClientError = readonly [status: number, reason: string, message: string];
const MALFORMED: ClientError = [400, 'Bad Request', 'malformed request'];
const CLIENT_ERRORS: Record<string, ClientError> = {
  // Oversized headers get the same 413 as an oversized body: "too large" has one answer.
  HPE_HEADER_OVERFLOW: [413, 'Payload Too Large', 'request headers too large'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'Request Timeout', 'request timeout'],
};

/** The process edge of `ferry serve`: owns the socket, bounds bodies, and drains on close. */
export async function listen(options: ListenOptions): Promise<Listener> {
  const limit = options.maxBodyBytes ?? MAX_BODY_BYTES;
  let closing = false;
  /** Connections lingering after a 413: answered, nothing left to deliver. */
  const lingering = new Set<Socket>();
  /** A refused request in one line: status, method, path and reason; never the body, the query or a header. */
  const refused = (req: IncomingMessage, response: HandlerResponse): void => {
    if (response.status < 400) return;
    const reason = response.reason ?? (response.body as { error?: unknown } | undefined)?.error;
    const target = splitTarget(req.url ?? '/').path || '?';
    const shown = target.length > 200 ? `${target.slice(0, 200)}…` : target;
    options.log(`refused ${req.method ?? '?'} ${shown}: ${response.status}${typeof reason === 'string' ? ` ${reason}` : ''}`);
  };
  const server = createServer({ requestTimeout: 30_000, headersTimeout: 15_000 }, (req, res) => {
    if (closing) {
      // A request on a keep-alive connection opened before the stop: 503 asks to deliver again later.
      req.resume();
      const response: HandlerResponse = { status: 503, body: { error: 'shutting down' } };
      refused(req, response);
      return send(res, response, true);
    }
    void serve(req, res);
  });

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const body = await readBody(req, limit);
      if (body === TOO_LARGE) {
        refused(req, { status: 413, body: { error: `body over ${limit} bytes` } });
        return tooLarge(req, res, limit, lingering);
      }
      const response = await options.handler({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, body });
      refused(req, response);
      send(res, response, closing);
    } catch (error) {
      if (req.destroyed && !req.complete) return; // the sender hung up mid-body: nobody to answer
      options.log(`request ${req.method ?? '?'} ${req.url ?? '?'} failed: ${errorMessage(error)}`);
      if (!res.headersSent) send(res, { status: 500, body: { error: 'internal error' } }, true);
    }
  }

  // Malformed requests never reach the handler: node's parser reports them here.
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable) return void socket.destroy();
    const [status, reason, message] = CLIENT_ERRORS[error.code ?? ''] ?? MALFORMED;
    options.log(`refused a request that could not be read: ${status} ${message}`);
    const body = JSON.stringify({ error: message });
    socket.end(`HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 8787, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port, address, family } = server.address() as AddressInfo;
  const host = family === 'IPv6' ? `[${address}]` : address;

  return {
    url: `http://${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        closing = true;
        server.close(() => resolve());
        server.closeIdleConnections();
        // A half-closed socket that no longer reads holds no event-loop handle of its own.
        for (const socket of lingering) socket.destroy();
      }),
    closeAll: () => server.closeAllConnections(),
  };
}

function send(res: ServerResponse, response: HandlerResponse, close: boolean): void {
  const text = `${JSON.stringify(response.body)}\n`;
  res.writeHead(response.status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...(close ? { connection: 'close' } : {}),
    ...response.headers,
  });
  res.end(text);
}

/** The body, or TOO_LARGE as soon as the declared or streamed size passes `limit`. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | typeof TOO_LARGE> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.resolve(TOO_LARGE);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        chunks.length = 0;
        resolve(TOO_LARGE);
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (error: Error): void => {
      cleanup();
      reject(error);
    };
    const onClose = (): void => {
      if (!req.complete) onError(new Error('the sender closed the connection before the body ended'));
    };
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/**
 * Answers 413 and stops keeping the body. Closing the socket once the answer is written (what
 * node does for a `connection: close` answer) resets the connection when the sender's body
 * keeps arriving, and a reset can destroy the 413 before the sender reads it. So the answer
 * goes out as a keep-alive one and the socket is only half-closed once it is written: the
 * sender reads the 413 and the end of the stream, the rest of its body is discarded up to
 * LINGER_BYTES and then no longer read (its writes stall on TCP flow control), and the
 * connection is cut after LINGER_MS unless the sender closes it first.
 */
function tooLarge(req: IncomingMessage, res: ServerResponse, limit: number, lingering: Set<Socket>): void {
  let discarded = 0;
  const socket = req.socket;
  const cut = (): void => void socket.destroy();
  const timer = setTimeout(cut, LINGER_MS);
  timer.unref();
  lingering.add(socket);
  socket.once('close', () => {
    clearTimeout(timer);
    lingering.delete(socket);
  });
  req.on('data', (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > LINGER_BYTES) req.pause();
  });
  // The whole body arrived: nothing is left unread, so closing cannot reset the answer.
  req.on('end', cut);
  req.on('error', () => undefined);
  res.on('finish', () => void socket.end());
  send(res, { status: 413, body: { error: `body over ${limit} bytes` } }, false);
}
