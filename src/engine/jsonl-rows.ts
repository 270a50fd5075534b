import { open, type FileHandle } from 'node:fs/promises';
import { FerryError } from '../errors.js';

/**
 * A loop file's rows, pulled one at a time. `next()` answers at once while the chunk read last
 * still holds rows, and with a promise only when the next chunk must be read: a JSONL row is
 * parsed when the loop asks for it, never ahead, so a loop over a million rows holds two chunks
 * of the file (the one in hand, the next one being read) and the rows in flight, and pays no
 * promise per row.
 */
export interface RowSource {
  next(): IteratorResult<unknown> | Promise<IteratorResult<unknown>>;
  /** The 1-based line the row `next()` gave last starts on (CSV counts the header; none for a .json array). */
  readonly line: number | undefined;
  /** Stops reading and releases the file (a loop that stops early). */
  close(): void;
}

/** Where the reader is: the bytes of the file up to the end of the last item it yielded (for progress). */
export interface ReadPosition {
  bytes: number;
}

export function fileError(file: string, where: string, message: string): FerryError {
  return new FerryError('FERRY_LOOP_FILE', `loop.file ${file}, ${where}: ${message}`);
}

/** Bytes of a JSONL file read at a time: what a file loop holds besides its rows in flight. */
const JSONL_CHUNK = 64 * 1024;

const EMPTY = Buffer.alloc(0);

/**
 * JSONL rows cut from the file's chunks at `\n` and parsed one by one as the loop pulls them
 * (a blank line is skipped, its line number counted; a `\r` before the `\n` is JSON
 * whitespace). Chunks are read into two buffers in turn, the next one while the loop works
 * through this one (so that a batch never waits on the disk): a stream would allocate a new
 * 64 KB Buffer per read, whose bytes live outside the heap until the GC collects it, long after
 * its rows ran. Only a line that spans two chunks is copied; the others are decoded straight
 * from the chunk. Any error it throws closes the file.
 */
export class JsonLines implements RowSource {
  readonly #file: string;
  readonly #position: ReadPosition | undefined;
  readonly #buffers = [Buffer.allocUnsafeSlow(JSONL_CHUNK), Buffer.allocUnsafeSlow(JSONL_CHUNK)] as const;
  #handle: Promise<FileHandle> | undefined;
  /** The read under way into the buffer `#chunk` is not in. */
  #ahead: { buffer: Buffer; bytes: Promise<number> } | undefined;
  /** The bytes of a buffer the last read filled. */
  #chunk: Buffer = EMPTY;
  #at = 0;
  /** Bytes of the file before `#chunk`: where the next read starts once it is used up. */
  #before = 0;
  /** The start of a line whose end is in a later chunk (a copy: the buffer is read into again). */
  #carry: Buffer | undefined;
  #lines = 0;
  #ended = false;
  line: number | undefined;

  constructor(file: string, position: ReadPosition | undefined) {
    this.#file = file;
    this.#position = position;
  }

  next(): IteratorResult<unknown> | Promise<IteratorResult<unknown>> {
    for (;;) {
      const chunk = this.#chunk;
      const nl = chunk.indexOf(0x0a, this.#at);
      if (nl === -1) break;
      let text: string;
      if (this.#carry) {
        text = Buffer.concat([this.#carry, chunk.subarray(this.#at, nl)]).toString('utf8');
        this.#carry = undefined;
      } else text = chunk.toString('utf8', this.#at, nl);
      this.#at = nl + 1;
      this.#lines++;
      if (this.#position) this.#position.bytes = this.#before + this.#at;
      const row = this.#parse(text);
      if (row) return row;
    }
    return this.#read();
  }

  async #read(): Promise<IteratorResult<unknown>> {
    for (;;) {
      if (this.#at < this.#chunk.length) {
        const rest = this.#chunk.subarray(this.#at);
        this.#carry = this.#carry ? Buffer.concat([this.#carry, rest]) : Buffer.from(rest);
      }
      this.#before += this.#chunk.length;
      this.#chunk = EMPTY;
      this.#at = 0;
      if (this.#ended) break;
      const ahead = this.#ahead ?? this.#readAhead(this.#buffers[0], this.#before);
      this.#ahead = undefined;
      let read: number;
      try {
        read = await ahead.bytes;
      } catch (error) {
        this.close();
        throw error;
      }
      if (read === 0) {
        this.close();
        break;
      }
      this.#chunk = ahead.buffer.subarray(0, read);
      // The other buffer is free (a line left over from it was copied into `#carry`).
      if (!this.#ended) this.#ahead = this.#readAhead(ahead.buffer === this.#buffers[0] ? this.#buffers[1] : this.#buffers[0], this.#before + read);
      if (this.#chunk.indexOf(0x0a) !== -1) return this.next();
    }
    // The last line needs no newline after it.
    const last = this.#carry;
    this.#carry = undefined;
    if (last) {
      this.#lines++;
      if (this.#position) this.#position.bytes = this.#before;
      const row = this.#parse(last.toString('utf8'));
      if (row) return row;
    }
    return { done: true, value: undefined };
  }

  /** Starts reading the chunk at `position` into `buffer`; its error, if any, is thrown where it is awaited. */
  #readAhead(buffer: Buffer, position: number): { buffer: Buffer; bytes: Promise<number> } {
    const bytes = (this.#handle ??= open(this.#file, 'r')).then(async (handle) => (await handle.read(buffer, 0, JSONL_CHUNK, position)).bytesRead);
    // Not awaited when the loop stops first.
    bytes.catch(() => undefined);
    return { buffer, bytes };
  }

  #parse(text: string): IteratorResult<unknown> | undefined {
    if (text.trim() === '') return undefined;
    this.line = this.#lines;
    try {
      return { done: false, value: JSON.parse(text) as unknown };
    } catch (error) {
      this.close();
      throw fileError(this.#file, `line ${this.#lines}`, `not JSON (${(error as Error).message})`);
    }
  }

  close(): void {
    this.#ended = true;
    const handle = this.#handle;
    this.#handle = undefined;
    void handle?.then(
      (h) => h.close().catch(() => undefined),
      () => undefined,
    );
  }
}

