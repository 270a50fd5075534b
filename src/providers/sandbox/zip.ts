import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { crc32, createGzip } from 'node:zlib';

/** One zip entry: its name and the text chunks (NDJSON lines) to gzip into it. */
export interface ZipEntrySource {
  name: string;
  lines: Iterable<string> | AsyncIterable<string>;
}

async function write(out: Writable, data: Buffer): Promise<void> {
  if (!out.write(data)) await once(out, 'drain');
}

/**
 * Streams a zip archive of gzipped entries to `out`, as Amplitude's export does: entries are
 * stored (the gzip is the compression) with data descriptors, so nothing is buffered whole.
 */
export async function writeZip(out: Writable, entries: Iterable<ZipEntrySource>): Promise<void> {
  const central: Buffer[] = [];
  let offset = 0;
  let count = 0;
  const { time, date } = dosTime(new Date());
  for (const entry of entries) {
    const name = Buffer.from(entry.name, 'utf8');
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x0808, 6); // bit 3: sizes in the data descriptor; bit 11: UTF-8 name
    local.writeUInt16LE(0, 8); // stored
    local.writeUInt16LE(time, 10);
    local.writeUInt16LE(date, 12);
    local.writeUInt16LE(name.length, 26);
    await write(out, local);
    await write(out, name);
    const headerOffset = offset;
    offset += local.length + name.length;

    let crc = 0;
    let size = 0;
    const gzip = createGzip();
    const pump = (async () => {
      for await (const line of entry.lines) {
        if (!gzip.write(line.endsWith('\n') ? line : `${line}\n`)) await once(gzip, 'drain');
      }
      gzip.end();
    })();
    for await (const chunk of gzip) {
      const buf = chunk as Buffer;
      crc = crc32(buf, crc);
      size += buf.length;
      await write(out, buf);
    }
    await pump;
    offset += size;

    const descriptor = Buffer.alloc(16);
    descriptor.writeUInt32LE(0x08074b50, 0);
    descriptor.writeUInt32LE(crc >>> 0, 4);
    descriptor.writeUInt32LE(size, 8);
    descriptor.writeUInt32LE(size, 12);
    await write(out, descriptor);
    offset += descriptor.length;

    const record = Buffer.alloc(46);
    record.writeUInt32LE(0x02014b50, 0);
    record.writeUInt16LE(20, 4);
    record.writeUInt16LE(20, 6);
    record.writeUInt16LE(0x0808, 8);
    record.writeUInt16LE(0, 10);
    record.writeUInt16LE(time, 12);
    record.writeUInt16LE(date, 14);
    record.writeUInt32LE(crc >>> 0, 16);
    record.writeUInt32LE(size, 20);
    record.writeUInt32LE(size, 24);
    record.writeUInt16LE(name.length, 28);
    record.writeUInt32LE(headerOffset, 42);
    central.push(record, name);
    count++;
  }
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(count, 8);
  end.writeUInt16LE(count, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  await write(out, cd);
  await write(out, end);
}

function dosTime(d: Date): { time: number; date: number } {
  return {
    time: (d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | Math.floor(d.getUTCSeconds() / 2),
    date: ((d.getUTCFullYear() - 1980) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate(),
  };
}
