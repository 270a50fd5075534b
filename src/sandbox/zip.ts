import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32, createGzip } from 'node:zlib';

/** One zip entry: its name and the NDJSON lines to gzip into it (a missing final newline is added). */
export interface ZipEntrySource {
  name: string;
  lines: Iterable<string> | AsyncIterable<string>;
}

const FLAGS = 0x0808; // bit 3: CRC and sizes follow the data in a descriptor; bit 11: UTF-8 names
const VERSION = 20; // 2.0: data descriptors, no zip64
const LIMIT_32 = 0xffffffff;
const CHUNK = 1024 * 1024;

/** Writes with backpressure; rejects when the destination goes away instead of waiting for a drain forever. */
function put(out: Writable, data: Buffer): Promise<void> {
  if (out.destroyed || out.writableEnded) return Promise.reject(new Error('the response was closed'));
  if (out.write(data)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (error?: Error): void => {
      out.off('drain', onDrain);
      out.off('close', onClose);
      out.off('error', done);
      if (error) reject(error);
      else resolve();
    };
    const onDrain = (): void => done();
    const onClose = (): void => done(new Error('the response was closed'));
    out.on('drain', onDrain);
    out.on('close', onClose);
    out.on('error', done);
  });
}

/**
 * Packs lines into ~1 MB buffers: one gzip write per line, or string concatenation, would
 * dominate the cost of a big export. A sync source is read without an await per line.
 */
async function* packed(lines: Iterable<string> | AsyncIterable<string>): AsyncGenerator<Buffer> {
  let buf = Buffer.allocUnsafe(CHUNK);
  let used = 0;
  const add = (line: string): Buffer | undefined => {
    let out: Buffer | undefined;
    // A UTF-16 unit is at most 3 UTF-8 bytes: with that much room the write cannot be cut short.
    if (used + line.length * 3 + 1 > CHUNK && used > 0) {
      out = buf.subarray(0, used);
      buf = Buffer.allocUnsafe(CHUNK);
      used = 0;
    }
    if (line.length * 3 + 1 > CHUNK) {
      const big = Buffer.from(line.endsWith('\n') ? line : `${line}\n`);
      return out ? Buffer.concat([out, big]) : big;
    }
    used += buf.write(line, used);
    if (line.charCodeAt(line.length - 1) !== 10) buf[used++] = 10;
    return out;
  };
  if (Symbol.asyncIterator in lines) {
    for await (const line of lines) {
      const out = add(line);
      if (out) yield out;
    }
  } else {
    for (const line of lines) {
      const out = add(line);
      if (out) yield out;
    }
  }
  if (used > 0) yield buf.subarray(0, used);
}

function dosDateTime(d: Date): { time: number; date: number } {
  return {
    time: (d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | Math.floor(d.getUTCSeconds() / 2),
    date: ((d.getUTCFullYear() - 1980) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate(),
  };
}

/**
 * Streams a zip archive of gzipped NDJSON entries to `out` and ends it, as Amplitude's export
 * answers. Each entry is stored (method 0: the gzip is the compression) and followed by a data
 * descriptor, so neither an entry nor the archive is ever held in memory; only the central
 * directory (a few dozen bytes per entry) is. Archives past 4 GiB would need zip64: they fail.
 */
export async function writeZip(out: Writable, entries: Iterable<ZipEntrySource> | AsyncIterable<ZipEntrySource>, now = new Date()): Promise<void> {
  const central: Buffer[] = [];
  let offset = 0;
  let count = 0;
  const { time, date } = dosDateTime(now);
  for await (const entry of entries) {
    const name = Buffer.from(entry.name, 'utf8');
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(VERSION, 4);
    local.writeUInt16LE(FLAGS, 6);
    local.writeUInt16LE(0, 8); // stored
    local.writeUInt16LE(time, 10);
    local.writeUInt16LE(date, 12);
    // CRC and sizes (14..25) stay 0: bit 3 puts them in the descriptor.
    local.writeUInt16LE(name.length, 26);
    const headerOffset = offset;
    await put(out, Buffer.concat([local, name]));
    offset += local.length + name.length;

    let crc = 0;
    let size = 0;
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        crc = crc32(chunk, crc);
        size += chunk.length;
        put(out, chunk).then(() => callback(), callback);
      },
    });
    // Level 1: the fastest real compression, so that a 1 GB benchmark export is bound by the client.
    await pipeline(Readable.from(packed(entry.lines), { objectMode: false }), createGzip({ level: 1 }), sink);
    if (offset + size + 16 > LIMIT_32) throw new Error('the export is over 4 GiB, which needs zip64');
    offset += size;

    const descriptor = Buffer.alloc(16);
    descriptor.writeUInt32LE(0x08074b50, 0);
    descriptor.writeUInt32LE(crc >>> 0, 4);
    descriptor.writeUInt32LE(size, 8);
    descriptor.writeUInt32LE(size, 12);
    await put(out, descriptor);
    offset += descriptor.length;

    const record = Buffer.alloc(46);
    record.writeUInt32LE(0x02014b50, 0);
    record.writeUInt16LE(VERSION, 4); // made by: MS-DOS attributes, version 2.0
    record.writeUInt16LE(VERSION, 6);
    record.writeUInt16LE(FLAGS, 8);
    record.writeUInt16LE(0, 10);
    record.writeUInt16LE(time, 12);
    record.writeUInt16LE(date, 14);
    record.writeUInt32LE(crc >>> 0, 16);
    record.writeUInt32LE(size, 20);
    record.writeUInt32LE(size, 24);
    record.writeUInt16LE(name.length, 28);
    // extra, comment, disk, internal and external attributes (30..41) stay 0
    record.writeUInt32LE(headerOffset, 42);
    central.push(record, name);
    count++;
  }
  const directory = Buffer.concat(central);
  if (count > 0xffff || offset + directory.length > LIMIT_32) throw new Error('the export needs zip64');
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(count, 8);
  end.writeUInt16LE(count, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  await put(out, Buffer.concat([directory, end]));
  out.end();
}
