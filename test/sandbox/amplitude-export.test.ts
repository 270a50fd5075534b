import yauzl from 'yauzl';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startAmplitudeEmulator, type AmplitudeEmulator } from '../../src/sandbox/index.js';
import { AMP_KEY, AMP_SECRET, basic, get, lines, sleep, unzip } from './helpers.js';

let amp: AmplitudeEmulator;
beforeAll(async () => {
  amp = await startAmplitudeEmulator();
});
afterAll(async () => amp.close());
beforeEach(() => amp.reset());

const auth = { authorization: basic(AMP_KEY, AMP_SECRET) };
const exportUrl = (start: string, end: string) => `${amp.url}/api/2/export?start=${start}&end=${end}`;
const fetchExport = (start: string, end: string, headers: Record<string, string> = auth) => get(exportUrl(start, end), headers);

function threeHours(): Map<string, object[]> {
  const hours = new Map<string, object[]>();
  hours.set('20260101T04', [{ event_type: 'a', user_id: 'user_1', n: 1 }]);
  hours.set('20260101T05', [{ event_type: 'b', user_id: 'user_2', n: 2 }, { event_type: 'c', user_id: 'user_3', n: 3 }]);
  hours.set('20260101T06', [{ event_type: 'd', user_id: 'user_4', n: 4, note: 'ünïcode ✓' }]);
  return hours;
}

describe('Amplitude Export API emulator', () => {
  it('serves a 3-hour Map as a zip with one gzipped NDJSON entry per hour, exact events included', async () => {
    const hours = threeHours();
    amp.setExportData(hours);
    const res = await fetchExport('20260101T03', '20260101T07');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/zip');
    const entries = unzip(Buffer.from(await res.arrayBuffer()));
    expect(entries.map((e) => e.name)).toEqual(['187520/187520_2026-01-01_4#0.json.gz', '187520/187520_2026-01-01_5#0.json.gz', '187520/187520_2026-01-01_6#0.json.gz']);
    expect(entries.every((e) => e.flags & 0x08 && e.method === 0)).toBe(true);
    expect(entries.map((e) => lines(e.text))).toEqual([...hours.values()]);
    expect(entries.every((e) => e.text.endsWith('\n'))).toBe(true);
  });

  it('writes a zip that yauzl reads, sizes and CRCs checked', async () => {
    amp.setExportData(threeHours());
    const zip = Buffer.from(await (await fetchExport('20260101T04', '20260101T06')).arrayBuffer());
    const names = await new Promise<string[]>((resolve, reject) => {
      yauzl.fromBuffer(zip, { lazyEntries: true, validateEntrySizes: true }, (err, file) => {
        if (err) return reject(err);
        const seen: string[] = [];
        file.on('entry', (entry: yauzl.Entry) => {
          file.openReadStream(entry, (e, stream) => {
            if (e) return reject(e);
            stream.on('error', reject);
            stream.on('end', () => {
              seen.push(entry.fileName);
              file.readEntry();
            });
            stream.resume();
          });
        });
        file.on('end', () => resolve(seen));
        file.on('error', reject);
        file.readEntry();
      });
    });
    expect(names).toHaveLength(3);
  });

  it('carries a line longer than the packing buffer intact', async () => {
    const long = { event_type: 'long', note: 'ł'.repeat(400_000) };
    amp.setExportData(new Map([['20260101T00', [{ n: 1 }, long, { n: 2 }]]]));
    const [entry] = unzip(Buffer.from(await (await fetchExport('20260101T00', '20260101T00')).arrayBuffer()));
    expect(lines(entry?.text ?? '')).toEqual([{ n: 1 }, long, { n: 2 }]);
  });

  it('treats the hours as inclusive: start = end serves that one hour', async () => {
    amp.setExportData(threeHours());
    const entries = unzip(Buffer.from(await (await fetchExport('20260101T05', '20260101T05')).arrayBuffer()));
    expect(entries.map((e) => lines(e.text).length)).toEqual([2]);
  });

  it('answers 404 when the range holds no data', async () => {
    amp.setExportData(threeHours());
    expect((await fetchExport('20260102T00', '20260102T23')).status).toBe(404);
    amp.setExportData(new Map([['20260101T00', []]]));
    expect((await fetchExport('20260101T00', '20260101T00')).status).toBe(404);
  });

  it('answers 401 for wrong or missing Basic auth', async () => {
    amp.setExportData(threeHours());
    expect((await fetchExport('20260101T04', '20260101T06', { authorization: basic(AMP_KEY, 'nope') })).status).toBe(401);
    expect((await fetchExport('20260101T04', '20260101T06', { authorization: basic('other-key', AMP_SECRET) })).status).toBe(401);
    expect((await fetchExport('20260101T04', '20260101T06', {})).status).toBe(401);
  });

  it('answers 400 for a malformed hour, an impossible date, end before start, and over 365 days', async () => {
    amp.setExportData(threeHours());
    const cases: [string, string, RegExp][] = [
      ['2026-01-01T04', '20260101T06', /Invalid start/],
      ['20260101T04', '20260101T24', /Invalid end/],
      ['20260230T00', '20260301T00', /Invalid start/],
      ['20260101T06', '20260101T04', /end 20260101T04 is before start 20260101T06/],
      ['20250101T00', '20260101T01', /365 days/],
    ];
    for (const [start, end, message] of cases) {
      const res = await fetchExport(start, end);
      expect(res.status).toBe(400);
      expect(await res.text()).toMatch(message);
    }
    expect((await fetchExport('20250101T04', '20260101T04')).status).toBe(200);
  });

  it('answers 400 "Raw data size exceeds 4GB" when the range is over the set limit', async () => {
    amp.setExportData(threeHours());
    amp.setExportLimitBytes(100);
    const res = await fetchExport('20260101T04', '20260101T06');
    expect(res.status).toBe(400);
    expect(await res.text()).toMatch(/^Raw data size exceeds 4GB/);
    expect((await fetchExport('20260101T04', '20260101T04')).status).toBe(200);
  });

  it('asks sizeOf for the raw size of a generator range', async () => {
    const asked: string[] = [];
    amp.setExportData((hour) => (hour === '20260101T00' ? ['{"n":1}'] : null), (start, end) => {
      asked.push(`${start}..${end}`);
      return 5e9;
    });
    amp.setExportLimitBytes(4e9);
    expect((await fetchExport('20260101T00', '20260101T03')).status).toBe(400);
    expect(asked).toEqual(['20260101T00..20260101T03']);
  });

  it('answers an injected 504 on the export path', async () => {
    amp.setExportData(threeHours());
    amp.inject({ kind: 'status', status: 504, path: '/api/2/export' });
    expect((await fetchExport('20260101T04', '20260101T06')).status).toBe(504);
    expect((await fetchExport('20260101T04', '20260101T06')).status).toBe(200);
  });

  it('streams a generator source: an endless hour still answers, and a client that leaves stops the generator', async () => {
    let produced = 0;
    let closed = false;
    amp.setExportData((hour) =>
      hour === '20261101T00'
        ? (function* () {
            try {
              for (;;) {
                produced++;
                yield `{"event_type":"endless","n":${produced}}`;
              }
            } finally {
              closed = true;
            }
          })()
        : null,
    );
    const controller = new AbortController();
    const res = await get(exportUrl('20261101T00', '20261101T01'), auth, controller.signal);
    // Buffering the export whole would never answer at all.
    expect(res.status).toBe(200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    expect(first.value?.subarray(0, 4)).toEqual(new Uint8Array([0x50, 0x4b, 0x03, 0x04]));
    controller.abort();
    for (let i = 0; i < 100 && (!closed || amp.inFlight > 0); i++) await sleep(10);
    expect(closed).toBe(true);
    expect(amp.inFlight).toBe(0);
  });

  it('streams every line of a generator source across hours', async () => {
    const perHour = 20_000;
    let produced = 0;
    amp.setExportData((hour) => {
      if (!hour.startsWith('20261101T0')) return null;
      return (function* () {
        for (let i = 0; i < perHour; i++) {
          produced++;
          yield JSON.stringify({ event_type: 'bench', hour, i });
        }
      })();
    });
    const res = await fetchExport('20261031T20', '20261101T02');
    const entries = unzip(Buffer.from(await res.arrayBuffer()));
    expect(entries.map((e) => e.name)).toEqual(['187520/187520_2026-11-01_0#0.json.gz', '187520/187520_2026-11-01_1#0.json.gz', '187520/187520_2026-11-01_2#0.json.gz']);
    const parsed = entries.map((e) => lines(e.text) as { hour: string; i: number }[]);
    expect(parsed.map((p) => p.length)).toEqual([perHour, perHour, perHour]);
    expect(parsed[2]?.[perHour - 1]).toEqual({ event_type: 'bench', hour: '20261101T02', i: perHour - 1 });
    expect(produced).toBe(3 * perHour);
  });

  it('reads async generators, and skips hours whose generator yields nothing', async () => {
    amp.setExportData((hour) => {
      if (hour === '20260101T01') return (async function* () {})();
      if (hour === '20260101T02') return (async function* () {
        yield '{"n":1}\n';
        await sleep(1);
        yield '{"n":2}';
      })();
      return null;
    });
    const entries = unzip(Buffer.from(await (await fetchExport('20260101T00', '20260101T03')).arrayBuffer()));
    expect(entries.map((e) => [e.name, e.text])).toEqual([['187520/187520_2026-01-01_2#0.json.gz', '{"n":1}\n{"n":2}\n']]);
    amp.setExportData(() => (async function* () {})());
    expect((await fetchExport('20260101T00', '20260101T03')).status).toBe(404);
  });
});
